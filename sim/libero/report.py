"""Results of ``aura eval libero``: JSONL records, Wilson intervals, summary table, plots, videos.

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
    return max(0.0, centre - half), min(1.0, centre + half)


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


def summarize(records: list[dict]) -> dict:
    """Per arm and per (arm, task): episodes, successes, rate, Wilson 95 %, mean steps/writes/bytes."""
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
                wall_s=mean("wall_s"),
            )
        )
    retried = sum(1 for r in records if r.get("status") != "ok")
    return {"rows": rows, "records": len(records), "failed_attempts": retried}


def table_markdown(summary: dict, per_task: bool = True) -> str:
    head = "| arm | task | episodes | success | 95 % CI | steps | writes | bytes | wall s | failed |"
    lines = [head, "|" + "---|" * 10]
    for r in summary["rows"]:
        if r["task"] != "all" and not per_task:
            continue
        if not r["episodes"]:  # every attempt failed: nothing to average
            lines.append(f"| {r['arm']} | {r['task']} | 0 | - | - | - | - | - | - | {r['failed']} |")
            continue
        lines.append(
            f"| {r['arm']} | {r['task']} | {r['episodes']} | {r['successes']}/{r['episodes']} "
            f"({100 * r['success_rate']:.0f} %) | {100 * r['ci95'][0]:.0f}-{100 * r['ci95'][1]:.0f} % "
            f"| {r['steps']:.0f} | {r['writes']:.1f} | {r['bytes']:.0f} | {r['wall_s']:.1f} | {r['failed']} |"
        )
    return "\n".join(lines)


def print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="LIBERO-Long evaluation (per arm over all chosen tasks)")
    for col in ("arm", "episodes", "success", "95 % CI", "steps", "writes", "bytes", "failed"):
        t.add_column(col, justify="right")
    for r in summary["rows"]:
        if r["task"] == "all":
            t.add_row(
                r["arm"],
                str(r["episodes"]),
                f"{r['successes']}/{r['episodes']}",
                f"{100 * r['ci95'][0]:.0f}-{100 * r['ci95'][1]:.0f} %",
                f"{r['steps']:.0f}",
                f"{r['writes']:.1f}",
                f"{r['bytes']:.0f}",
                str(r["failed"]),
            )
    Console().print(t)


def plot(summary: dict, out_dir: Path) -> list[Path]:
    """success rate with Wilson 95 % bars per task and arm; mean writes per episode per arm."""
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
    for metric, ylabel, fname in (
        ("success_rate", "success rate", "success.png"),
        ("writes", "writes / episode", "writes.png"),
    ):
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks) + 2), 4))
        for i, arm in enumerate(arms):
            sel = {r["task"]: r for r in rows if r["arm"] == arm}
            x = np.array([tasks.index(t) for t in sel]) + (i - (len(arms) - 1) / 2) * width
            y = np.array([sel[t][metric] for t in sel])
            if metric == "success_rate":
                lo = y - np.array([sel[t]["ci95"][0] for t in sel])
                hi = np.array([sel[t]["ci95"][1] for t in sel]) - y
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


def write_summary(records: list[dict], out_dir: Path, throughput: dict | None = None) -> dict:
    summary = summarize(records)
    if throughput:
        summary["throughput"] = throughput
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "summary.md").write_text(table_markdown(summary) + "\n")
    summary["plots"] = [str(p) for p in plot(summary, out_dir)]
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
