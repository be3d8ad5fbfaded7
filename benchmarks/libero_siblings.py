"""Scripted-expert success on LIBERO tasks named by ``sim.libero.tasks`` (ids, SUITE:NAME, groups), on fresh
placements exactly as ``aura sim demos --placements fresh`` tries them.

    python benchmarks/libero_siblings.py --tasks living_room_scene2 --episodes 5 \
        --out benchmarks/results/libero_siblings/fresh

Try ``k`` of task ``t`` lays the scene out with ``sim.libero.recording.placement_seed(seed, t, k)`` and runs
``sim.libero.recording.rollout`` with the ``libero_expert`` backbone in a camera-free ``LiberoEnv``: the
first pass of ``aura sim demos`` (whose kept demos are these episodes replayed with cameras), never one of the
50 fixed init states (those are measured by ``aura eval libero --arms base``). Each episode also records how
far its layout is from the nearest fixed init state of its own task and of every task in its group (the
siblings share a scene, so a sibling's init state is evaluation data too).

Writes ``episodes.jsonl`` (task, name, try, placement seed, success, steps, goal predicates that held, the
skill running at the end, nearest init-state distances, wall time) and ``summary.json`` (per task: Wilson
95 % interval, mean steps); a rerun with the same ``--out`` skips finished episodes. One process: LIBERO
jobs on the shared 2-core machine run one at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.libero.report import wilson  # noqa: E402  (after the path insert: runs from a checkout too)


def nearest_mm(env, sibling_states: dict[int, object]) -> dict[str, float]:
    """Largest object displacement (mm) to the nearest fixed init state of each task in ``sibling_states``."""
    pos = env.object_positions(env.layout)
    out = {}
    for tid, states in sibling_states.items():
        d = min(float(abs(env.object_positions(s) - pos).max()) for s in states)
        out[str(tid)] = round(1000 * d, 1)
    return out


def run(tasks: list[int], episodes: int, seed: int, out: Path) -> dict:
    from policies.factory import make_backbone
    from sim.libero.env import LiberoEnv
    from sim.libero.recording import placement_seed, rollout
    from sim.libero.tasks import group_of, resolve_task, task_name, task_spec

    out.mkdir(parents=True, exist_ok=True)
    path = out / "episodes.jsonl"
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            done[(r["task"], r["try"])] = r
    backbone = make_backbone("libero_expert", {})
    t_start = time.perf_counter()
    for t in tasks:
        todo = [k for k in range(episodes) if (t, k) not in done]
        if not todo:
            continue
        env = LiberoEnv(t, cameras=())
        group = group_of(t)
        siblings = [resolve_task(n) for n in group.names()] if group else [t]
        sibling_states = {s: task_spec(s)[2] for s in siblings}
        for k in todo:
            t0 = time.perf_counter()
            ps = placement_seed(seed, t, k)
            ep = rollout(env, backbone, {"placement_seed": ps}, seed)
            expert = backbone.expert
            sc = expert._ctx.scene
            rec = dict(
                task=t,
                name=task_name(t),
                group=group.name if group else None,
                seed=seed,
                placement_seed=ps,
                success=ep["success"],
                steps=ep["steps"],
                goal={" ".join(g): bool(sc.holds(g)) for g in sc.goal},
                stage=expert.stage,
                nearest_init_mm=nearest_mm(env, sibling_states),
                wall_s=round(time.perf_counter() - t0, 2),
            )
            rec["try"] = k
            done[(t, k)] = rec
            with open(path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(
                f"[siblings] {rec['name']} try {k}: {'success' if rec['success'] else 'FAIL'} "
                f"{rec['steps']} steps, {rec['wall_s']} s, stage {rec['stage']}",
                flush=True,
            )
        env.close()
    recs = [r for r in done.values() if r["task"] in tasks]
    per = {}
    for t in tasks:
        rs = [r for r in recs if r["task"] == t]
        k = sum(r["success"] for r in rs)
        lo, hi = wilson(k, len(rs))
        ok = [r["steps"] for r in rs if r["success"]]
        per[str(t)] = dict(
            name=rs[0]["name"] if rs else None,
            episodes=len(rs),
            successes=k,
            rate=k / len(rs) if rs else None,
            wilson95=[round(lo, 3), round(hi, 3)],
            mean_steps_success=round(sum(ok) / len(ok), 1) if ok else None,
            min_nearest_init_mm=min((min(r["nearest_init_mm"].values()) for r in rs), default=None),
            mean_wall_s=round(sum(r["wall_s"] for r in rs) / len(rs), 2) if rs else None,
        )
    n, k = len(recs), sum(r["success"] for r in recs)
    lo, hi = wilson(k, n)
    summary = dict(
        placements="fresh",
        seed=seed,
        episodes_per_task=episodes,
        tasks=per,
        all=dict(episodes=n, successes=k, rate=k / n if n else None, wilson95=[round(lo, 3), round(hi, 3)]),
        wall_s_this_run=round(time.perf_counter() - t_start, 1),
        command=" ".join(["python", *sys.argv]),
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def check_assets(tasks: list[int], out: Path) -> dict:
    """Do ``tasks`` open any mesh or texture that libero_10's envs do not? ``aura sim bundle`` packs exactly
    the asset files its probe (``sim.libero.bundle.probe``: files opened by Python and ``file=`` references
    of the composed MuJoCo XML, envs with both cameras reset and stepped) finds for tasks 0-9; the same
    probe runs here on ``tasks``, and the asset files (``bundle.ASSET_SUFFIXES``) are compared."""
    import os

    from sim.libero import bundle

    def assets(probed: dict) -> set[str]:
        paths = (os.path.realpath(p) for p in (*probed["opened"], *probed["xml"]))
        return {p for p in paths if Path(p).suffix.lower() in bundle.ASSET_SUFFIXES}

    t0 = time.perf_counter()
    base, mine = assets(bundle.probe(range(10), workers=1)), assets(bundle.probe(tasks, workers=1))
    doc = dict(
        libero_10_assets=len(base),
        tasks=tasks,
        task_assets=len(mine),
        not_in_libero_10=sorted(mine - base),
        wall_s=round(time.perf_counter() - t0, 1),
        command=" ".join(["python", *sys.argv]),
    )
    (out / "assets_check.json").write_text(json.dumps(doc, indent=1))
    print(
        f"[siblings] assets: {len(mine)} files, {len(doc['not_in_libero_10'])} not among "
        f"libero_10's {len(base)}"
    )
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="living_room_scene2", help="ids, SUITE:NAME or group names, e.g. 0,1")
    ap.add_argument("--episodes", type=int, default=5, help="fresh placements per task (tries 0..N-1)")
    ap.add_argument("--seed", type=int, default=0, help="as aura sim demos --seed (placement seeds' base)")
    ap.add_argument("--out", default="runs/libero_siblings", help="results directory")
    ap.add_argument(
        "--check-assets", action="store_true", help="only compare the tasks' asset files with libero_10's"
    )
    args = ap.parse_args(argv)
    from sim.libero.tasks import parse_tasks

    if args.episodes < 1:
        raise SystemExit(f"--episodes must be >= 1, got {args.episodes}")
    if args.check_assets:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        return 1 if check_assets(parse_tasks(args.tasks), Path(args.out))["not_in_libero_10"] else 0
    summary = run(parse_tasks(args.tasks), args.episodes, args.seed, Path(args.out))
    print("task | name | success | Wilson 95 % | mean steps (ok) | min mm to a fixed init state")
    print("---|---|---|---|---|---")
    for t, v in summary["tasks"].items():
        print(
            f"{t} | {v['name']} | {v['successes']}/{v['episodes']} | {v['wilson95']} | "
            f"{v['mean_steps_success']} | {v['min_nearest_init_mm']}"
        )
    a = summary["all"]
    print(f"all | | {a['successes']}/{a['episodes']} | {a['wilson95']} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
