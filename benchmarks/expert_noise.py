"""How much DART action noise the scripted expert tolerates, and how far it takes the demos off its path.

    python benchmarks/expert_noise.py --tasks 0-9 --episodes 5 --noise 0.1,0.03 --noise 0.1,0.03,5,0.015 \
        --workers 2 --json benchmarks/results/libero_expert/noise_transit.json

For each fresh placement (seeds of their own, not the backbone's demos'), the expert runs camera-free once
clean and once per ``--noise POS,ROT[,TAU[,TRANSIT]]`` setting (``sim.libero.action_noise``: the env executes
the perturbed action, the expert answers the state it finds; TRANSIT m > 0 perturbs only its transit moves).
Per setting: the expert's success (only successes become demos, so this is what a noisy recording costs in
tries); the **tube distance**: for every step of the noisy run, the distance of the hand (eef position) from
the nearest point of the clean run's hand path, in mm - how far off the expert's own path the noisy demos
go, i.e. which states they add; the **step ratio**: noisy / clean episode length over the placements both
solve - the time the expert spends fighting the noise, mostly hovering at a precision goal until it lets
the hand in, which fills the demos with "hold here" labels; and the fraction of steps perturbed. Writes a
JSON with every episode and prints a table with Wilson 95 % intervals.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEED_BASE = 7_000_000  # placement seeds of this analysis only


def parse_noise(text: str):
    from sim.libero.action_noise import ActionNoise

    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--noise {text!r}: POS,ROT[,TAU[,TRANSIT]] numbers") from None
    if len(vals) not in (2, 3, 4):
        raise argparse.ArgumentTypeError(f"--noise {text!r}: POS,ROT[,TAU[,TRANSIT]]")
    try:
        return ActionNoise(*vals)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def tube_mm(path: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per point of ``path`` [T, 3], the distance (mm) to the nearest point of ``ref`` [S, 3]."""
    d = np.linalg.norm(path[:, None, :] - ref[None, :, :], axis=-1)
    return 1000.0 * d.min(axis=1)


def run_task(job: tuple) -> dict:
    from policies.factory import make_backbone
    from sim.libero.action_noise import ActionNoise, episode_rng
    from sim.libero.env import LiberoEnv
    from sim.libero.recording import rollout

    task, episodes, settings = job
    env, expert = LiberoEnv(task, cameras=()), make_backbone("libero_expert")
    rows = []
    for k in range(episodes):
        episode = {"placement_seed": SEED_BASE + 10_007 * task + k}
        clean = rollout(env, expert, episode, 0)
        ref = clean["raw"][:, :3]
        row = dict(task=task, **episode, clean=dict(success=clean["success"], steps=clean["steps"]), noisy=[])
        for s in settings:
            noise = ActionNoise(**s)
            ep = rollout(env, expert, episode, 0, noise=noise.process(episode_rng(0, task, episode)))
            tube = tube_mm(ep["raw"][:, :3], ref)
            row["noisy"].append(
                dict(
                    s,
                    success=ep["success"],
                    steps=ep["steps"],
                    tube_mean_mm=float(tube.mean()),
                    tube_p90_mm=float(np.percentile(tube, 90)),
                    label_gap=float(np.abs(ep["executed"][:, :6] - ep["actions"][:, :6]).mean()),
                    perturbed=float(np.any(ep["executed"][:, :6] != ep["actions"][:, :6], axis=1).mean()),
                )
            )
        rows.append(row)
        print(f"[noise] task {task} placement {episode['placement_seed']} done", flush=True)
    env.close()
    return dict(task=task, episodes=rows)


def main(argv=None) -> int:
    from sim.libero.report import wilson
    from sim.libero.tasks import parse_tasks

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="0-9", help="tasks (the CLI's names: 0-9, groups)")
    ap.add_argument("--episodes", type=int, default=5, help="fresh placements per task")
    ap.add_argument(
        "--noise", type=parse_noise, action="append", required=True, help="POS,ROT[,TAU] (repeat)"
    )
    ap.add_argument("--workers", type=int, default=2, help="processes (one task each at a time)")
    ap.add_argument("--json", default=None, help="write every episode here")
    args = ap.parse_args(argv)
    if args.episodes < 1 or args.workers < 1:
        ap.error("--episodes and --workers must be >= 1")
    tasks = parse_tasks(args.tasks, "--tasks")
    settings = [n.as_dict() for n in args.noise]
    t0 = time.perf_counter()
    jobs = [(t, args.episodes, settings) for t in tasks]
    with mp.get_context("spawn").Pool(min(args.workers, len(jobs))) as pool:
        per_task = list(pool.imap(run_task, jobs))
    eps = [e for r in per_task for e in r["episodes"]]
    n = len(eps)
    clean_ok = sum(e["clean"]["success"] for e in eps)
    lo, hi = wilson(clean_ok, n)
    summary = [dict(setting="clean", success=clean_ok, episodes=n, ci=[lo, hi])]
    print(
        "| noise (pos, rot, tau, transit m) | expert success | 95 % CI | tube mean mm | tube p90 mm "
        "| mean label gap | steps perturbed | step ratio (pairs) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(f"| none | {clean_ok}/{n} | {100 * lo:.0f}-{100 * hi:.0f} % | 0 | 0 | 0 | 0 | 1 |")
    for i, s in enumerate(settings):
        rs = [e["noisy"][i] for e in eps]
        ok = sum(r["success"] for r in rs)
        lo, hi = wilson(ok, n)
        both = [
            (e["clean"]["steps"], r["steps"])
            for e, r in zip(eps, rs)
            if e["clean"]["success"] and r["success"]
        ]
        row = dict(
            setting=s,
            success=ok,
            episodes=n,
            ci=[lo, hi],
            tube_mean_mm=float(np.mean([r["tube_mean_mm"] for r in rs])),
            tube_p90_mm=float(np.mean([r["tube_p90_mm"] for r in rs])),
            label_gap=float(np.mean([r["label_gap"] for r in rs])),
            perturbed=float(np.mean([r["perturbed"] for r in rs])),
            step_ratio=float(np.mean([b / a for a, b in both])) if both else None,
            step_ratio_pairs=len(both),
            per_task={str(t): sum(r["success"] for e, r in zip(eps, rs) if e["task"] == t) for t in tasks},
        )
        summary.append(row)
        ratio = "-" if not both else f"{row['step_ratio']:.2f} ({len(both)})"
        print(
            f"| {s['pos']}, {s['rot']}, {s['tau']}, {s['transit'] or '-'} | {ok}/{n} "
            f"| {100 * lo:.0f}-{100 * hi:.0f} % "
            f"| {row['tube_mean_mm']:.1f} | {row['tube_p90_mm']:.1f} | {row['label_gap']:.3f} "
            f"| {100 * row['perturbed']:.0f} % | {ratio} |"
        )
    doc = dict(
        command="python benchmarks/expert_noise.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        episodes_per_task=args.episodes,
        summary=summary,
        episodes=eps,
        wall_s=time.perf_counter() - t0,
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"[noise] {args.json} ({doc['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
