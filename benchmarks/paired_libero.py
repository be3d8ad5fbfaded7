"""Paired comparison of two LIBERO evaluations on the same (task, init state, seed): who solved what.

    python benchmarks/paired_libero.py A/episodes.jsonl[:ARM] B/episodes.jsonl[:ARM] [--json OUT]

Only episodes with an ``ok`` record in both are compared (read as ``aura eval libero`` reads them: a torn last
line skipped, one record per episode, a retry's success counting). Prints per-task and overall success of
each (overall with its Wilson 95 % interval), the
discordant pairs (A only, B only) and the exact two-sided McNemar p-value (binomial test of the discordant
pairs against 1/2): a paired test, far tighter than comparing two Wilson intervals, since most episodes end
the same way under either setting.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from math import comb
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.libero.report import ok_records, wilson  # noqa: E402  (runs from a checkout too)


def load(spec: str) -> dict[tuple[int, int, int], bool]:
    return {(r["task"], r["init_state"], r["seed"]): bool(r["success"]) for r in ok_records(spec)}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="episodes.jsonl[:ARM]")
    ap.add_argument("b", help="episodes.jsonl[:ARM]")
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    a, b = load(args.a), load(args.b)
    keys = sorted(set(a) & set(b))
    if not keys:
        raise SystemExit("no (task, init state, seed) in both")
    per = defaultdict(lambda: [0, 0, 0])
    for k in keys:
        per[k[0]][0] += 1
        per[k[0]][1] += a[k]
        per[k[0]][2] += b[k]
    print("| task | pairs | A | B |\n|---|---|---|---|")
    for t, (n, sa, sb) in sorted(per.items()):
        print(f"| {t} | {n} | {sa}/{n} | {sb}/{n} |")
    only_a = sum(a[k] and not b[k] for k in keys)
    only_b = sum(b[k] and not a[k] for k in keys)
    n, sa, sb = len(keys), sum(a[k] for k in keys), sum(b[k] for k in keys)
    p = mcnemar_exact(only_a, only_b)
    ci = {"a": wilson(sa, n), "b": wilson(sb, n)}
    cell = {
        x: f"{k}/{n} {100 * k / n:.1f} % [{100 * ci[x][0]:.0f}-{100 * ci[x][1]:.0f} %]"
        for x, k in (("a", sa), ("b", sb))
    }
    print(
        f"| all | {n} | {cell['a']} | {cell['b']} |\n"
        f"A only {only_a}, B only {only_b}; exact McNemar p = {p:.2g}"
    )
    if args.json:
        res = dict(a=args.a, b=args.b, pairs=n, a_success=sa, b_success=sb, a_only=only_a, b_only=only_b)
        res.update(a_ci95=list(ci["a"]), b_ci95=list(ci["b"]))
        res.update(mcnemar_p=p, per_task={t: dict(zip(("pairs", "a", "b"), v)) for t, v in per.items()})
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
