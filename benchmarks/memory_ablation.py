"""Does an AuraMem checkpoint's action come from memory, or from a read-out of z_t? Held-out action error
under four write schedules.

    python benchmarks/memory_ablation.py --data HELD_OUT.safetensors [--data ...] --checkpoint DIR \
        [--checkpoint DIR ...] [--instruction-steps K] [--task ID] [--windows 8-40,40-100] [--json OUT]

For each checkpoint, on the held-out sequences (``aura train`` data files: features z_t, base actions,
target actions; NaN targets unsupervised), the mean squared action error (``aura.training.train.action_loss``,
the training loss of file data) of a_t = a_t^base + correction(r_t, z_t) when the memory is written

    gate     where the checkpoint's own gate decides (what the aura arm deploys)
    none     never: r_t = 0 and the correction sees z_t only (the mlp read-out's memory-free part)
    instr    exactly at t < K, the steps that carry the instruction (the evaluation's oracle arm)
    always   at every step (dense GDN-2)

next to the base action alone; per action dimension for the base and the gate (``base_per_dim``,
``gate_per_dim``: which dimensions the correction fixes), and how often the last dimension, the gripper, is
commanded closed (> 0) by the base, the gate's action and the target (``gripper_closed``). In the
transient-instruction variant (issue 13) a memory that carries the
goal shows as gate ~ instr < none; gate ~ none means the read-out explains the targets without memory (on
demos the arm's motion reveals the goal after a few steps). Writes per sequence are the gate's.

``--task ID`` keeps the sequences of one task (the files' ``episode_task``, as ``aura sim rollouts`` writes
it); ``--windows lo-hi,...`` adds, per step window [lo, hi), the translation error (dimensions 0-2) of the
base and of the gate's action, and the mean norm of the correction a_t - a_t^base against the mean norm of
the needed move a*_t - a_t^base: how much of the move the memory makes where a goal decision is taken.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from aura.layer import AuraMem  # noqa: E402  (runs from a checkout too)
from aura.training.data import NAMES, load_many  # noqa: E402
from aura.training.train import action_loss  # noqa: E402

SCHEDULES = ("gate", "none", "instr", "always")


def ablate(model: AuraMem, z, base, target, k: int | None, windows=()) -> dict:
    """Held-out error per schedule (module docstring), the base's, and the gate's writes per sequence;
    with ``windows``, the per-window table of the gate's action (``windows_table``)."""
    model.eval()
    n, t = z.shape[:2]
    fixed = {"none": torch.zeros(n, t, dtype=torch.bool), "always": torch.ones(n, t, dtype=torch.bool)}
    if k is not None:
        fixed["instr"] = torch.arange(t)[None, :].expand(n, t) < k
    rec = {"base": float(action_loss(base, target, "mse"))}
    with torch.no_grad():
        out = model(z, base)
        rec["gate"] = float(action_loss(out.action, target, "mse"))
        rec["gate_writes_per_sequence"] = float(out.write.sum(1).float().mean())
        ok = torch.isfinite(target).all(-1)
        for name, action in (("base", base), ("gate", out.action)):
            rec[f"{name}_per_dim"] = ((action[ok] - target[ok]) ** 2).mean(0).tolist()
        rec["gripper_closed"] = {
            name: float((a[ok][:, -1] > 0).float().mean())
            for name, a in (("base", base), ("gate", out.action), ("target", target))
        }
        for name, schedule in fixed.items():
            rec[name] = float(action_loss(model.forward_fixed(z, base, schedule).action, target, "mse"))
        if k is not None:  # the gate's margin: p_t at the instruction steps against the steps after
            rec["gate_p_instr_min"] = float(out.gate_prob[:, :k].min())
            rec["gate_p_after_max"] = float(out.gate_prob[:, k:].max()) if t > k else None
    if windows:
        rec["windows"] = windows_table(out.action, base, target, windows)
    return rec


def windows_table(action, base, target, windows: list[tuple[int, int]]) -> list[dict]:
    """Per window [lo, hi) of supervised steps: translation mse of the base and of ``action`` (the gate's),
    their mse over every dimension, mean |action - base| (the correction), mean |target - base| (module
    docstring)."""
    rows = []
    for lo, hi in windows:
        ok = torch.isfinite(target[:, lo:hi]).all(-1)
        b_all, a_all, y_all = base[:, lo:hi][ok], action[:, lo:hi][ok], target[:, lo:hi][ok]
        b, a, y = b_all[:, :3], a_all[:, :3], y_all[:, :3]
        if len(y) == 0:
            rows.append(dict(window=[lo, hi], steps=0))
            continue
        rows.append(
            dict(
                window=[lo, hi],
                steps=len(y),
                base_xyz=float(((b - y) ** 2).mean()),
                gate_xyz=float(((a - y) ** 2).mean()),
                base_mse=float(((b_all - y_all) ** 2).mean()),
                gate_mse=float(((a_all - y_all) ** 2).mean()),
                correction_norm=float((a - b).norm(dim=-1).mean()),
                needed_norm=float((y - b).norm(dim=-1).mean()),
            )
        )
    return rows


def _windows(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if not (lo.isdigit() and hi.isdigit() and int(lo) < int(hi)):
            raise ValueError(f"--windows {text!r}: expected lo-hi[,lo-hi...] with lo < hi, e.g. 8-40,40-100")
        out.append((int(lo), int(hi)))
    return out


def _task_rows(paths, task: int):
    """Row mask of the sequences of ``task`` across the --data files (their ``episode_task`` arrays)."""
    import numpy as np
    from safetensors import safe_open

    tasks = []
    for path in paths:
        with safe_open(str(path), "np") as f:
            if "episode_task" not in f.keys():
                raise ValueError(
                    f"--task: --data {path} has no episode_task (aura sim rollouts files have it)"
                )
            tasks.append(f.get_tensor("episode_task"))
    mask = np.concatenate(tasks) == task
    if not mask.any():
        raise ValueError(f"--task {task}: no sequence of that task in the --data files")
    return torch.from_numpy(mask)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True, help="held-out aura train data (repeatable)")
    ap.add_argument(
        "--checkpoint", action="append", required=True, help="AuraMem checkpoint dir (repeatable)"
    )
    ap.add_argument("--instruction-steps", type=int, default=None, metavar="K", help="the instr schedule's K")
    ap.add_argument("--task", type=int, default=None, help="only the sequences of this task id")
    ap.add_argument("--windows", default=None, help="step windows lo-hi,... for the per-window table")
    ap.add_argument("--json", default=None, help="write the table here as JSON")
    args = ap.parse_args(argv)
    if args.instruction_steps is not None and args.instruction_steps < 1:
        ap.error(f"--instruction-steps must be >= 1, got {args.instruction_steps}")
    try:
        windows = _windows(args.windows) if args.windows else []
        arrays = load_many(args.data)
        z, base, target = (torch.from_numpy(arrays[name]) for name in NAMES)
        if args.task is not None:
            keep = _task_rows(args.data, args.task)
            z, base, target = z[keep], base[keep], target[keep]
    except ValueError as exc:
        ap.error(str(exc))
    rows = {}
    for path in args.checkpoint:
        if not Path(path).is_dir():
            ap.error(f"--checkpoint {path}: no such checkpoint directory")
        model = AuraMem.load(path)
        if model.config.d_model != z.shape[-1]:
            ap.error(f"--checkpoint {path}: d_model {model.config.d_model}, the data's is {z.shape[-1]}")
        rows[path] = ablate(model, z, base, target, args.instruction_steps, windows)
    cols = ["base", *[s for s in SCHEDULES if s != "instr" or args.instruction_steps is not None]]
    which = "" if args.task is None else f" of task {args.task}"
    print(f"held-out: {z.shape[0]} sequences{which} x {z.shape[1]} steps from {len(args.data)} file(s); mse")
    print("| checkpoint | " + " | ".join(cols) + " | gate writes / seq |")
    print("|---" * (len(cols) + 2) + "|")
    for path, r in rows.items():
        vals = " | ".join(f"{r[c]:.4f}" for c in cols)
        print(f"| {path} | {vals} | {r['gate_writes_per_sequence']:.2f} |")
    for path, r in rows.items():
        dims = ", ".join(
            f"{b:.3f}->{g:.3f}" for b, g in zip(r["base_per_dim"], r["gate_per_dim"], strict=True)
        )
        closed = r["gripper_closed"]
        print(
            f"{path}: per-dimension mse base->gate [{dims}]; gripper closed on "
            f"{closed['base']:.0%} (base) / {closed['gate']:.0%} (gate) / {closed['target']:.0%} (target)"
        )
    for path, r in rows.items():
        if "gate_p_instr_min" in r:
            after = "-" if r["gate_p_after_max"] is None else f"{r['gate_p_after_max']:.3f}"
            print(f"{path}: gate p_t at t < K: min {r['gate_p_instr_min']:.3f}; after: max {after}")
        for w in r.get("windows", []):
            if w["steps"]:
                print(
                    f"{path}: steps {w['window'][0]}-{w['window'][1]}: translation mse base"
                    f" {w['base_xyz']:.4f} -> gate {w['gate_xyz']:.4f} (all dimensions {w['base_mse']:.4f}"
                    f" -> {w['gate_mse']:.4f}); |correction|"
                    f" {w['correction_norm']:.3f} of the needed |target - base| {w['needed_norm']:.3f}"
                )
    if args.json:
        doc = dict(data=args.data, instruction_steps=args.instruction_steps, task=args.task, rows=rows)
        Path(args.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
