"""Per-task success of the scripted LIBERO-Long expert over fixed init states.

    python benchmarks/libero_expert.py --tasks 0-9 --init-states 0-49 --workers 2 \
        --out benchmarks/results/libero_expert

Writes ``episodes.jsonl`` (one line per episode: task, init state, success, steps, wall time, the
goal predicates that held, the skill running at the end) and ``summary.json`` plus a table with
Wilson 95 % intervals. Re-running with the same ``--out`` resumes: finished (task, init) pairs are
skipped. Episodes run in camera-free envs (no GL context), 10 no-op wait steps, then at most 520
expert steps. Each worker process keeps one env per task and rebuilds it when the task changes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.libero.report import wilson  # noqa: E402  (after the path insert: runs from a checkout too)

MAX_STEPS = 520


def parse_ids(spec: str, upper: int, what: str) -> list[int]:
    """'0-4,7' -> [0, 1, 2, 3, 4, 7]; every id must lie in [0, upper)."""
    out: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
    except ValueError as e:
        raise ValueError(f"--{what}: cannot parse {spec!r} (use e.g. '0-4,7')") from e
    bad = [i for i in out if not 0 <= i < upper]
    if bad or not out:
        raise ValueError(f"--{what}: ids must lie in [0, {upper}), got {spec!r}")
    return sorted(set(out))


_ENV: dict = {}


def run_episode(item: tuple[int, int]) -> dict:
    """One expert episode of task ``item[0]`` from init state ``item[1]`` (runs in a worker)."""
    task_id, init = item
    import numpy as np

    from policies.libero_expert import ScriptedExpert
    from sim.libero.expert_env import make_env, reset_to

    t0 = time.time()
    rec = {"task": task_id, "init_state": init, "success": False, "steps": 0}
    try:
        if _ENV.get("task") != task_id:
            if "env" in _ENV:
                _ENV["env"].close()
            _ENV.clear()
            _ENV["env"], _, _ENV["inits"] = make_env(task_id)
            _ENV["task"] = task_id
        env = _ENV["env"]
        obs = reset_to(env, _ENV["inits"], init)
        expert = ScriptedExpert(task_id)
        expert.reset(env)
        for _ in range(MAX_STEPS):
            obs, _, done, _ = env.step(expert.act(env, obs))
            rec["steps"] += 1
            if done:
                rec["success"] = True
                break
        rec["stage"] = expert.stage
        sc = expert._ctx.scene
        rec["goal"] = {" ".join(g): bool(sc.holds(g)) for g in sc.goal}
        rec["finite"] = bool(np.all(np.isfinite(obs["robot0_eef_pos"])))
    except Exception as e:  # recorded, never fatal to the sweep
        rec["error"] = f"{type(e).__name__}: {e}"
        _ENV.clear()
    rec["wall_s"] = round(time.time() - t0, 2)
    rec["pid"] = os.getpid()
    return rec


def summarize(records: list[dict], tasks: list[int]) -> dict:
    per = {}
    for t in tasks:
        rs = [r for r in records if r["task"] == t]
        k = sum(r["success"] for r in rs)
        lo, hi = wilson(k, len(rs))
        ok_steps = [r["steps"] for r in rs if r["success"]]
        per[str(t)] = {
            "episodes": len(rs),
            "successes": k,
            "success_rate": k / len(rs) if rs else None,
            "wilson95": [round(lo, 4), round(hi, 4)],
            "mean_steps_success": round(sum(ok_steps) / len(ok_steps), 1) if ok_steps else None,
            "max_steps_success": max(ok_steps) if ok_steps else None,
            "errors": sum("error" in r for r in rs),
            "mean_wall_s": round(sum(r["wall_s"] for r in rs) / len(rs), 2) if rs else None,
        }
    rates = [v["success_rate"] for v in per.values() if v["success_rate"] is not None]
    return {
        "suite": "libero_10",
        "max_steps": MAX_STEPS,
        "episodes": len(records),
        "tasks": per,
        "tasks_ge_90": sum(r >= 0.9 for r in rates),
        "tasks_ge_50": sum(r >= 0.5 for r in rates),
    }


def table(summary: dict) -> str:
    lines = [
        "task | success | rate | Wilson 95% | mean steps (ok) | max steps (ok) | errors",
        "---|---|---|---|---|---|---",
    ]
    for t, v in summary["tasks"].items():
        if not v["episodes"]:
            continue
        lines.append(
            f"{t} | {v['successes']}/{v['episodes']} | {v['success_rate']:.2f} | "
            f"[{v['wilson95'][0]:.2f}, {v['wilson95'][1]:.2f}] | {v['mean_steps_success']} | "
            f"{v['max_steps_success']} | {v['errors']}"
        )
    lines.append(f"tasks >= 90 %: {summary['tasks_ge_90']}, tasks >= 50 %: {summary['tasks_ge_50']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="0-9", help="task ids, e.g. '0-9' or '0,3,5'")
    ap.add_argument("--init-states", default="0-49", help="init-state indices, e.g. '0-49'")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/libero_expert")
    args = ap.parse_args(argv)
    try:
        tasks = parse_ids(args.tasks, 10, "tasks")
        inits = parse_ids(args.init_states, 50, "init-states")
    except ValueError as e:
        ap.error(str(e))
    if args.workers < 1:
        ap.error("--workers must be >= 1")

    from tqdm import tqdm

    from sim.libero.install import ensure_libero

    ensure_libero()  # once, before workers import libero (it would prompt on a missing config)

    def _stop(signum, frame):
        raise KeyboardInterrupt

    # A background job (nohup ... &) ignores SIGINT; make both SIGINT and SIGTERM end the sweep
    # with a summary of what finished.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "episodes.jsonl"
    done: dict[tuple[int, int], dict] = {}
    if jsonl.exists():
        for line in jsonl.read_text().splitlines():
            try:
                r = json.loads(line)
                done[(r["task"], r["init_state"])] = r
            except (json.JSONDecodeError, KeyError):
                print(f"skipping a malformed line in {jsonl}", file=sys.stderr)
    # Blocks of 10 init states across all tasks: an interrupted sweep still covers every task
    # evenly, and a worker rebuilds its env only when the task changes.
    todo = [
        (t, i)
        for b in range(0, 50, 10)
        for t in tasks
        for i in inits
        if b <= i < b + 10 and (t, i) not in done
    ]
    print(f"{len(todo)} episodes to run, {len(done)} already in {jsonl}", flush=True)
    bar = tqdm(total=len(todo), desc="libero_10 expert", unit="ep")
    ok = 0
    with open(jsonl, "a") as f:
        if args.workers == 1:
            results = map(run_episode, todo)
            pool = None
        else:
            pool = mp.get_context("spawn").Pool(args.workers, maxtasksperchild=None)
            results = pool.imap_unordered(run_episode, todo, chunksize=1)
        try:
            for rec in results:
                f.write(json.dumps(rec) + "\n")
                f.flush()
                done[(rec["task"], rec["init_state"])] = rec
                ok += rec["success"]
                bar.update(1)
                bar.set_postfix(task=rec["task"], ok=f"{ok}/{bar.n}")
        except KeyboardInterrupt:
            # Stopped early (Ctrl-C / SIGINT): summarize what finished; a rerun resumes.
            print("\nstopped: summarizing the finished episodes", file=sys.stderr)
            if pool is not None:
                pool.terminate()
                pool = None
        if pool is not None:
            pool.close()
            pool.join()
    bar.close()
    records = [r for (t, i), r in done.items() if t in tasks and i in inits]
    summary = summarize(records, tasks)
    summary["init_states"] = args.init_states
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = table(summary)
    (out / "summary.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
