"""Where an evaluation's arms wrote: the gate's p_t at the instruction steps and the writes after them.

    python benchmarks/gate_writes.py EPISODES.jsonl[:ARM] [--instruction-steps K] [--chunk N] [--json OUT]

Per arm (the final ``ok`` record of each episode, read as ``aura eval libero`` reads them): episodes, those
that never wrote, the writes, and with ``--chunk N`` the distinct (episode, t // N) chunks they fall in (with
the backbone run once per open-loop chunk of N, ``fresh_features=false``, every step of a chunk sees the
same z_t: writes minus chunks is how many wrote a z_t already written). Then, given K, the episodes with a
write at t < K, the earliest write step, the episodes writing after step K - 1 and their write steps past
K, and for a gated arm (records with ``gate_probs``) the smallest and largest p_t at t < K and the largest
after. K defaults to the records' ``instruction_steps`` (``aura eval libero --instruction-steps``); records
without one (the instruction always visible) get the first part only. This is what tells a gate that
writes at the instruction step (the transient-instruction variant, docs/libero.md) from one that writes
anywhere, next to the random and periodic arms at its budget.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.libero.report import ok_records  # noqa: E402  (runs from a checkout too)


def arm_stats(recs: list[dict], k: int | None, chunk: int | None = None) -> dict:
    """The numbers of the module docstring for one arm's records."""
    writes = [sorted(r.get("write_steps") or []) for r in recs]
    out = dict(episodes=len(recs), no_write=sum(not w for w in writes), writes=sum(map(len, writes)))
    if chunk is not None:
        out["chunks_written"] = sum(len({s // chunk for s in w}) for w in writes)
    if k is None:
        return out
    late = {(r["task"], r["init_state"]): [s for s in w if s >= k] for r, w in zip(recs, writes)}
    late = {key: v for key, v in late.items() if v}
    out.update(
        wrote_before_k=sum(any(s < k for s in w) for w in writes),
        first_write=min((w[0] for w in writes if w), default=None),
        episodes_writing_after=len(late),
        writes_after={f"{t}/{i}": v for (t, i), v in sorted(late.items())},
    )
    probs = [r["gate_probs"] for r in recs if r.get("gate_probs")]
    if probs:
        before = [p for ps in probs for p in ps[:k]]
        after = [p for ps in probs for p in ps[k:]]
        out.update(p_before_min=min(before), p_before_max=max(before), p_after_max=max(after, default=None))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("episodes", help="episodes.jsonl[:ARM]")
    ap.add_argument("--instruction-steps", type=int, default=None, help="K; unset: the records' own")
    ap.add_argument("--chunk", type=int, default=None, help="N: count the distinct t // N chunks written")
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    recs = ok_records(args.episodes)
    k = args.instruction_steps
    if k is None:
        ks = {r.get("instruction_steps") for r in recs} - {None}
        if len(ks) > 1:
            raise SystemExit(f"{args.episodes}: records K {sorted(ks)}; give --instruction-steps K")
        k = int(ks.pop()) if ks else None
    if k is not None and k < 1:
        raise SystemExit(f"--instruction-steps must be >= 1, got {k}")
    if args.chunk is not None and args.chunk < 1:
        raise SystemExit(f"--chunk must be >= 1, got {args.chunk}")
    by_arm = defaultdict(list)
    for r in recs:
        by_arm[r["arm"]].append(r)
    stats = {arm: arm_stats(rs, k, args.chunk) for arm, rs in sorted(by_arm.items())}
    print("| arm | episodes | no write | writes |" + (" chunks written |" if args.chunk else ""))
    print("|---|---|---|---|" + ("---|" if args.chunk else ""))
    for arm, s in stats.items():
        chunks = f" {s['chunks_written']} |" if args.chunk else ""
        print(f"| {arm} | {s['episodes']} | {s['no_write']} | {s['writes']} |{chunks}")
    if k is None:
        print("K: none recorded (the instruction always visible); give --instruction-steps K for the rest")
    else:
        print(f"K = {k}")
        print(
            "| arm | episodes | wrote at t < K | first write | writing after | p_t at t < K | max p_t after |"
        )
        print("|---|---|---|---|---|---|---|")
        for arm, s in stats.items():
            p = f"{s['p_before_min']:.3f}-{s['p_before_max']:.3f}" if "p_before_min" in s else "-"
            after = f"{s['p_after_max']:.3f}" if s.get("p_after_max") is not None else "-"
            print(f"| {arm} | {s['episodes']} | {s['wrote_before_k']} | {s['first_write']} | "
                  f"{s['episodes_writing_after']} | {p} | {after} |")  # fmt: skip
        for arm, s in stats.items():
            if s["writes_after"] and s["episodes_writing_after"] <= 10:  # sparse arms: where they wrote late
                print(f"{arm}: writes after t < K (task/init: steps): {s['writes_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(episodes=args.episodes, k=k, arms=stats), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
