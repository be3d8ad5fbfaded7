"""How far, and which way, the scripted expert turns the hand before its first grasp (evidence for a
multimodal action head).

The expert picks a grasp yaw mod pi (the gripper is symmetric) nearest the current yaw
(``policies.libero_expert.skills.nearest_yaw``), so the turn before a grasp lies in (-90 deg, +90 deg] and
flips sign where the object's orientation crosses the boundary: two layouts that look almost the same can
have the hand turn +85 deg in one demo and -85 deg in the other. A regression head trained on both outputs
a turn of ~0 there and the hand stalls. This counts how often that boundary is near: per task, the turn
Delta psi = wrap(psi_grasp - psi_0) of the hand's yaw psi (the angle of its x axis in the world's xy plane)
from the first step to the first close command, over fresh placements, camera-free.

    python benchmarks/expert_turns.py --tasks 0-9 --episodes 50 \
        --json benchmarks/results/libero_expert/turns.json

Prints a table (per task: episodes, turns of each sign, |turn| >= 60 deg and >= 75 deg) and writes the
per-episode turns as JSON. Placements use seeds of their own (base 7,000,000: never `aura sim demos`' or the
rollouts' seeds, and these episodes are analysed, not trained on).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEED_BASE = 7_000_000


def hand_yaw(axis_angle: np.ndarray) -> float:
    """psi: the angle of the hand's x axis projected on the world's xy plane."""
    from scipy.spatial.transform import Rotation

    r = Rotation.from_rotvec(axis_angle).as_matrix()
    return float(np.arctan2(r[1, 0], r[0, 0]))


def wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


def first_turn(env, expert, placement: int, max_steps: int) -> dict:
    """Run until the expert first commands the gripper closed; the hand's turn up to there."""
    obs, _ = env.reset(seed=0, options={"placement_seed": placement})
    expert.reset()
    psi0 = hand_yaw(obs["state"][3:6])
    for t in range(max_steps):
        a = expert(env.observation(obs, expert.spec.privileged))[1]
        if a[6] > 0:
            return dict(
                placement_seed=placement,
                step=t,
                turn_deg=float(np.degrees(wrap(hand_yaw(obs["state"][3:6]) - psi0))),
            )
        obs, *_ = env.step(a)
    return dict(placement_seed=placement, step=None, turn_deg=None)


def main(argv=None) -> int:
    from policies.factory import make_backbone
    from sim.libero.env import LiberoEnv
    from sim.libero.tasks import parse_tasks, task_name

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="7-9", help="tasks (the CLI's names: 0-9, 150-154, groups)")
    ap.add_argument("--episodes", type=int, default=30, help="fresh placements per task")
    ap.add_argument("--max-steps", type=int, default=200, help="steps to wait for the first close")
    ap.add_argument("--json", default=None, help="write the per-episode turns here")
    args = ap.parse_args(argv)
    if args.episodes < 1:
        ap.error("--episodes must be >= 1")
    expert = make_backbone("libero_expert")
    doc, t0 = {"episodes_per_task": args.episodes, "tasks": {}}, time.perf_counter()
    print("| task | episodes | turn > 0 | turn < 0 | abs turn >= 60 deg | abs turn >= 75 deg | no close |")
    print("|---|---|---|---|---|---|---|")
    for task in parse_tasks(args.tasks, "--tasks"):
        env = LiberoEnv(task, cameras=())
        rows = [
            first_turn(env, expert, SEED_BASE + 10_007 * task + k, args.max_steps)
            for k in range(args.episodes)
        ]
        env.close()
        turns = np.array([r["turn_deg"] for r in rows if r["turn_deg"] is not None])
        counts = dict(
            positive=int((turns > 0).sum()),
            negative=int((turns < 0).sum()),
            abs_ge_60=int((np.abs(turns) >= 60).sum()),
            abs_ge_75=int((np.abs(turns) >= 75).sum()),
            no_close=len(rows) - len(turns),
        )
        doc["tasks"][str(task)] = dict(name=task_name(task), counts=counts, episodes=rows)
        print(
            f"| {task} | {len(rows)} | {counts['positive']} | {counts['negative']} | {counts['abs_ge_60']} "
            f"| {counts['abs_ge_75']} | {counts['no_close']} |",
            flush=True,
        )
    doc["wall_s"] = time.perf_counter() - t0
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"[turns] {args.json} ({doc['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
