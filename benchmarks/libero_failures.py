"""Where a LIBERO evaluation's failed episodes stopped: per task, how many of the task's sub-goals each
failure had reached at some step, and which ones.

    python benchmarks/libero_failures.py EPISODES.jsonl[:ARM] [--json OUT]

A LIBERO-Long goal is a conjunction of sub-goals g_1 .. g_n (``sim.libero.subgoals``; the records of ``aura
eval libero`` carry ``subgoals`` and ``subgoal_steps``, the first step at which each held, or null). For the
failed episodes of task t the table counts r = #{i : g_i held at some step}: r = 0 says the policy never
achieved any part (a grasp or first placement failed), 0 < r < n that it stalled between parts, r = n that
each part held at some time but never all together (one undone by another). Read as ``aura eval libero``
reads the file (a torn last line skipped, one record per episode, the final attempt's record).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.libero.report import ok_records  # noqa: E402  (runs from a checkout too)


def failures(records: list[dict]) -> dict[int, dict]:
    """Per task: episodes, successes, and the failures by sub-goals reached (count and names)."""
    out: dict[int, dict] = defaultdict(
        lambda: dict(episodes=0, successes=0, reached=Counter(), which=Counter())
    )
    for r in records:
        row = out[r["task"]]
        row["episodes"] += 1
        if r["success"]:
            row["successes"] += 1
            continue
        got = [g for g, s in zip(r.get("subgoals") or [], r.get("subgoal_steps") or []) if s is not None]
        row["n_subgoals"] = len(r.get("subgoals") or [])
        row["reached"][len(got)] += 1
        row["which"]["+".join(sorted(got)) or "-"] += 1
    return dict(sorted(out.items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("episodes", help="an aura eval libero episodes.jsonl, optionally :ARM")
    ap.add_argument("--json", type=Path, help="write the table as JSON here")
    args = ap.parse_args(argv)
    table = failures(ok_records(args.episodes))
    print("| task | success | failures | sub-goals reached by the failures (r of n: episodes) | which |")
    print("|---|---|---|---|---|")
    for t, row in table.items():
        fails = row["episodes"] - row["successes"]
        n = row.get("n_subgoals", "?")
        reached = ", ".join(f"{r} of {n}: {c}" for r, c in sorted(row["reached"].items()))
        which = "; ".join(f"{k} ({c})" for k, c in row["which"].most_common(3))
        print(f"| {t} | {row['successes']}/{row['episodes']} | {fails} | {reached or '-'} | {which or '-'} |")
    if args.json:
        doc = {
            str(t): dict(row, reached=dict(row["reached"]), which=dict(row["which"]))
            for t, row in table.items()
        }
        args.json.write_text(json.dumps(dict(episodes=args.episodes, tasks=doc), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
