"""Results of ``aura eval libero``: JSONL records, Wilson intervals, summary table, plots, videos.

Bytes, pages and lifetime per episode are ``sim.libero.arms.episode_bytes``'s; a row's lifetime is the same
projection for the row's total pages over its total steps (not a mean of per-episode lifetimes). Ratios
(``summary["ratios"]``) are taken over the (task, init state) pairs both arms finished:
``always_over_aura_writes`` = sum always writes / sum aura writes, ``kv_over_aura_journal_bytes`` = sum
KV bytes / sum aura journal bytes (the paper's byte caveat compares these), ``aura_dense_over_kv_bytes``.

Wilson score interval for k successes in n episodes (z = 1.96 for 95 %), with p = k / n::

    centre = (p + z^2 / 2n) / (1 + z^2 / n)
    half   = z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n)
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval ``(lo, hi)`` for ``k`` successes out of ``n`` (``(0, 1)`` if n = 0)."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # exact at the ends: in floating point centre + half can land just below 1 at k = n (a negative error bar)
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def read_records(paths) -> list[dict]:
    """All JSON lines of ``paths``; a torn last line (a killed writer) is skipped, not fatal."""
    out = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                print(f"[eval] skipping unreadable line {path}:{n}")
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def final_records(records: list[dict]) -> list[dict]:
    """One record per (task, init_state, arm, seed): the successful attempt if any, else the last."""
    best: dict[tuple, dict] = {}
    for r in records:
        key = (r.get("task"), r.get("init_state"), r.get("arm"), r.get("seed"))
        if r.get("status") == "ok" or best.get(key, {}).get("status") != "ok":
            best[key] = r
    return list(best.values())


def ok_records(spec: str) -> list[dict]:
    """The final ``ok`` records of ``EPISODES.jsonl[:ARM]`` (one arm's when ``:ARM`` is given), as the
    benchmark scripts take an evaluation; SystemExit naming the file when it is missing or holds none."""
    path, _, arm = spec.rpartition(":") if not Path(spec).exists() else (spec, "", "")
    if not Path(path).is_file():
        raise SystemExit(f"{path}: no such episodes file")
    recs = [
        r
        for r in final_records(read_records([path]))
        if r.get("status") == "ok" and (not arm or r["arm"] == arm)
    ]
    if not recs:
        raise SystemExit(f"{spec}: no ok episodes" + (f" of arm {arm!r}" if arm else ""))
    return recs


BYTE_FIELDS = ("journal_bytes", "dense_bytes", "kv_bytes", "kv_equiv_bytes")


def _mean(rs: list[dict], field: str) -> float | None:
    """Mean of ``field`` over the records that have it (None: no record has it, e.g. journal bytes of kv)."""
    xs = [r[field] for r in rs if r.get(field) is not None]
    return float(np.mean(xs)) if xs else None


def _lifetime(rs: list[dict], flash=None, control_hz: float | None = None) -> float | None:
    from sim.libero.arms import CONTROL_HZ, lifetime_years

    rs = [r for r in rs if r.get("pages") is not None]
    if not rs:
        return None
    return lifetime_years(
        sum(r["pages"] for r in rs), sum(r["steps"] for r in rs), flash, control_hz or CONTROL_HZ
    )


def ratios(final: list[dict]) -> dict:
    """Write and byte ratios between arms over the pairs both finished (module docstring); None if none."""
    by = defaultdict(dict)
    for r in final:
        if r.get("status") == "ok":
            by[r["arm"]][(r["task"], r["init_state"], r.get("seed"))] = r

    def ratio(num_arm, num, den_arm, den):
        keys = sorted(set(by[num_arm]) & set(by[den_arm]), key=str)
        a = [by[num_arm][k].get(num) for k in keys]
        b = [by[den_arm][k].get(den) for k in keys]
        if not keys or None in a or None in b or sum(b) == 0:
            return None, len(keys)
        return sum(a) / sum(b), len(keys)

    out = {}
    for name, args in (
        ("always_over_aura_writes", ("always", "writes", "aura", "writes")),
        ("kv_over_aura_journal_bytes", ("kv", "kv_bytes", "aura", "journal_bytes")),
        ("aura_dense_over_kv_bytes", ("aura", "dense_bytes", "kv", "kv_bytes")),
        ("kv_equiv_over_aura_journal_bytes", ("aura", "kv_equiv_bytes", "aura", "journal_bytes")),
    ):
        value, pairs = ratio(*args)
        out[name] = value
        out[name + "_pairs"] = pairs
    return out


def summarize(records: list[dict], flash=None, control_hz: float | None = None) -> dict:
    """Per arm and per (arm, task): episodes, successes, rate, Wilson 95 %, mean steps/writes/bytes, pages,
    lifetime; the ratios between arms; the flash model the pages and lifetimes assume (``flash``: a
    FlashConfig, default the default part; ``control_hz`` default CONTROL_HZ)."""
    from dataclasses import asdict

    from deploy.runtime.budget import FlashConfig
    from sim.libero.arms import CONTROL_HZ

    final = final_records(records)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in final:
        groups[(r["arm"], "all")].append(r)
        groups[(r["arm"], r["task"])].append(r)
    rows = []
    for (arm, task), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        ok = [r for r in rs if r.get("status") == "ok"]
        k, n = sum(bool(r["success"]) for r in ok), len(ok)
        lo, hi = wilson(k, n)

        def mean(field, rs=ok):
            return float(np.mean([r[field] for r in rs])) if rs else float("nan")

        rows.append(
            dict(
                arm=arm,
                task=task,
                episodes=n,
                failed=len(rs) - n,
                successes=k,
                success_rate=k / n if n else float("nan"),
                ci95=[lo, hi],
                steps=mean("steps"),
                writes=mean("writes"),
                bytes=mean("bytes"),
                **{f: _mean(ok, f) for f in BYTE_FIELDS},
                pages=_mean(ok, "pages"),
                lifetime_years=_lifetime(ok, flash, control_hz),
                wall_s=mean("wall_s"),
            )
        )
    retried = sum(1 for r in records if r.get("status") != "ok")
    flash = dict(asdict(flash or FlashConfig()), control_hz=control_hz or CONTROL_HZ)
    from sim.libero.write_plot import near_subgoal

    return {
        "rows": rows,
        "ratios": ratios(final),
        "near_subgoal": near_subgoal(final),
        "flash": flash,
        "records": len(records),
        "failed_attempts": retried,
    }


def _num(x, fmt: str = ",.0f") -> str:
    return "-" if x is None or x != x else format(x, fmt)


def _years(x) -> str:
    return "-" if x is None else (f"{x:.1f}" if x < 100 else f"{x:,.0f}")


COLUMNS = ("arm", "task", "episodes", "success", "95 % CI", "steps", "writes", "journal B", "dense B", "KV B",
           "pages", "lifetime y", "wall s", "failed")  # fmt: skip


def _cells(r: dict) -> list[str]:
    if not r["episodes"]:  # every attempt failed: nothing to average
        return [r["arm"], str(r["task"]), "0"] + ["-"] * 10 + [str(r["failed"])]
    return [
        r["arm"],
        str(r["task"]),
        str(r["episodes"]),
        f"{r['successes']}/{r['episodes']} ({100 * r['success_rate']:.0f} %)",
        f"{100 * r['ci95'][0]:.0f}-{100 * r['ci95'][1]:.0f} %",
        f"{r['steps']:.0f}",
        f"{r['writes']:.1f}",
        _num(r.get("journal_bytes")),
        _num(r.get("dense_bytes")),
        _num(r.get("kv_bytes")),
        _num(r.get("pages"), ",.1f"),
        _years(r.get("lifetime_years")),
        f"{r['wall_s']:.1f}",
        str(r["failed"]),
    ]


def ratio_lines(summary: dict) -> list[str]:
    q = summary.get("ratios", {})

    def line(key, what):
        v = q.get(key)
        return f"- {what}: " + ("-" if v is None else f"{v:.2f}x") + f" ({q.get(key + '_pairs', 0)} episodes)"

    return [
        line("always_over_aura_writes", "always-write writes / AURA writes"),
        line("kv_over_aura_journal_bytes", "KV bytes / AURA journal bytes"),
        line("aura_dense_over_kv_bytes", "AURA dense-rewrite bytes / KV bytes"),
        line(
            "kv_equiv_over_aura_journal_bytes",
            "KV-equivalent bytes of the AURA episodes / AURA journal bytes",
        ),
    ]


def table_markdown(summary: dict, per_task: bool = True) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in summary["rows"]:
        if r["task"] != "all" and not per_task:
            continue
        lines.append("| " + " | ".join(_cells(r)) + " |")
    f = summary.get("flash")
    if f:
        lines += [
            "",
            f"Bytes and pages per episode; lifetime: projected years at {f['control_hz']:g} Hz of a "
            f"{f['reserved_bytes'] / 2**30:g} GiB region, {f['pe_cycles']} P/E cycles, "
            f"{f['page_bytes']} B pages, write amplification {f['write_amplification']:g} "
            "(journal for memory arms, appends for kv).",
            "",
            *ratio_lines(summary),
        ]
    return "\n".join(lines)


def print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="LIBERO-Long evaluation (per arm over all chosen tasks)")
    keep = [c for c in COLUMNS if c not in ("task", "wall s")]
    for col in keep:
        t.add_column(col, justify="right")
    for r in summary["rows"]:
        if r["task"] == "all":
            cells = dict(zip(COLUMNS, _cells(r), strict=True))
            t.add_row(*(cells[c] for c in keep))
    console = Console()
    if not console.is_terminal:  # a log file: no 80-column wrap of a 12-column table
        console = Console(width=160)
    console.print(t)
    for line in ratio_lines(summary):
        console.print(line)


def plot(summary: dict, out_dir: Path) -> list[Path]:
    """success rate with Wilson 95 % bars per task and arm; mean writes per episode per arm (only when some
    arm wrote: a base-only evaluation gets no empty writes plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["rows"] if r["task"] != "all" and r["episodes"] > 0]
    if not rows:
        return []
    arms = sorted({r["arm"] for r in rows})
    tasks = sorted({r["task"] for r in rows})
    width = 0.8 / len(arms)
    paths = []
    metrics = [("success_rate", "success rate", "success.png")]
    if any(r["writes"] > 0 for r in rows):
        metrics.append(("writes", "writes / episode", "writes.png"))
    for metric, ylabel, fname in metrics:
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks) + 2), 4))
        for i, arm in enumerate(arms):
            sel = {r["task"]: r for r in rows if r["arm"] == arm}
            x = np.array([tasks.index(t) for t in sel]) + (i - (len(arms) - 1) / 2) * width
            y = np.array([sel[t][metric] for t in sel])
            if metric == "success_rate":
                lo = np.maximum(y - np.array([sel[t]["ci95"][0] for t in sel]), 0.0)  # rounded CIs
                hi = np.maximum(np.array([sel[t]["ci95"][1] for t in sel]) - y, 0.0)
                ax.bar(x, y, width, yerr=[lo, hi], capsize=2, label=arm)
            else:
                ax.bar(x, y, width, label=arm)
        ax.set_xticks(range(len(tasks)), [f"task {t}" for t in tasks])
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def write_summary(
    records: list[dict], out_dir: Path, throughput: dict | None = None, flash=None, control_hz=None
) -> dict:
    summary = summarize(records, flash, control_hz)
    if throughput:
        summary["throughput"] = throughput
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "summary.md").write_text(table_markdown(summary) + "\n")
    from sim.libero.gate_plot import plot_gate_probs
    from sim.libero.write_plot import plot_write_positions

    final = final_records(records)
    paths = plot(summary, out_dir)
    where = plot_write_positions(final, out_dir / "write_positions.png")
    gate = plot_gate_probs(final, out_dir / "gate_prob.png")  # only records with gate_probs
    summary["plots"] = [str(p) for p in [*paths, *(x for x in (where, gate) if x)]]
    return summary


def timeline_frame(
    frame: np.ndarray, t: int, horizon: int, write_steps: list[int], height: int = 12
) -> np.ndarray:
    """``frame`` with a timeline strip below: grey bar, red ticks at writes, white cursor at ``t``."""
    h, w, _ = frame.shape
    strip = np.full((height, w, 3), 60, dtype=np.uint8)
    scale = (w - 1) / max(horizon - 1, 1)
    for s in write_steps:
        if s <= t:
            strip[:, int(round(s * scale))] = (230, 40, 40)
    strip[: height // 3, int(round(min(t, horizon - 1) * scale))] = 255
    return np.concatenate([frame, strip], axis=0)


def write_contact_sheet(
    path: Path, frames: list[np.ndarray], write_steps: list[int], n: int = 12, cols: int = 6
) -> Path:
    """PNG of ``n`` evenly spaced frames (first and last included), ``cols`` a row, each over its timeline:
    where an episode stalled or went wrong, at a glance and without playing the MP4."""
    from matplotlib.image import imsave

    horizon = len(frames)
    idx = np.linspace(0, horizon - 1, min(n, horizon)).round().astype(int)
    tiles = [timeline_frame(frames[i], int(i), horizon, write_steps) for i in idx]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % cols)
    rows = [np.concatenate(tiles[r : r + cols], axis=1) for r in range(0, len(tiles), cols)]
    imsave(path, np.concatenate(rows, axis=0))
    return path


def write_video(path: Path, frames: list[np.ndarray], write_steps: list[int], fps: int = 20) -> None:
    """MP4 of the episode with write events marked on a timeline: H.264 through imageio-ffmpeg, or MPEG-4
    part 2 through OpenCV where imageio-ffmpeg is not installed (the GPU machines have OpenCV only)."""
    import importlib.util

    horizon = len(frames)
    marked = (timeline_frame(f, t, horizon, write_steps) for t, f in enumerate(frames))
    if importlib.util.find_spec("imageio_ffmpeg") is not None or importlib.util.find_spec("cv2") is None:
        import imageio.v2 as imageio

        with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1, quality=7) as w:
            for f in marked:
                w.append_data(f)
        return
    import cv2

    first = next(marked)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (first.shape[1], first.shape[0]))
    if not w.isOpened():
        raise OSError(f"{path}: OpenCV cannot open an MPEG-4 writer")
    try:
        for f in (first, *marked):
            w.write(np.ascontiguousarray(f[:, :, ::-1]))  # OpenCV takes BGR
    finally:
        w.release()
