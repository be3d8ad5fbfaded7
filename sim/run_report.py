"""Pictures of an ``aura run``: a PNG timeline per episode from ``steps.jsonl`` and, for robots that keep
their camera frames (``sim.libero.robot.LiberoRobot(video_dir=...)``), an MP4 with the write events marked.

Timeline (one row per episode): the gate probability p_t over t, a tick at every committed write, a cross at
every write the flash budget suppressed and a bar at every safe fallback (base action, no write). Reads the
step log written with ``--step-log full`` (a sampled log draws what it has). Torch-free (matplotlib, numpy).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path


def read_steps(path) -> dict[int, dict[str, list]]:
    """``{episode: {t, p, write, suppressed, fallback}}`` from a steps.jsonl (lines that do not parse are
    counted in ``["bad_lines"]`` of episode -1 rather than dropped silently)."""
    eps: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    bad = 0
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
                e = eps[int(r["episode"])]
                e["t"].append(int(r["t"]))
                e["p"].append(float("nan") if r.get("gate_prob") is None else float(r["gate_prob"]))
                e["write"].append(bool(r.get("write")))
                e["suppressed"].append("suppressed" in r)
                e["fallback"].append("fallback" in r)
            except (ValueError, KeyError, TypeError):
                bad += 1
    if bad:
        eps[-1]["bad_lines"].append(bad)
    return dict(eps)


def write_steps(steps: dict[str, list]) -> list[int]:
    """The steps of an episode on which a write was committed."""
    return [t for t, w in zip(steps["t"], steps["write"]) if w]


def timeline_png(steps_path, out_png, title: str = "aura run") -> Path:
    """One row per episode: p_t, writes, suppressed writes and fallbacks over t (module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = {k: v for k, v in read_steps(steps_path).items() if k >= 0}
    if not eps:
        raise ValueError(f"{steps_path}: no steps logged (run with --step-log full)")
    fig, axes = plt.subplots(len(eps), 1, figsize=(11, 1.9 * len(eps) + 0.6), squeeze=False, sharex=True)
    for ax, (ep, s) in zip(axes[:, 0], sorted(eps.items())):
        ax.plot(s["t"], s["p"], lw=1, color="tab:blue", label="gate probability p_t")
        w = write_steps(s)
        ax.vlines(w, 0, 1, color="tab:red", lw=0.6, alpha=0.7, label=f"writes ({len(w)})")
        sup = [t for t, x in zip(s["t"], s["suppressed"]) if x]
        if sup:
            ax.plot(
                sup, [1.02] * len(sup), "x", color="black", ms=4, label=f"suppressed by budget ({len(sup)})"
            )
        fb = [t for t, x in zip(s["t"], s["fallback"]) if x]
        if fb:
            ax.plot(fb, [-0.04] * len(fb), "|", color="tab:orange", ms=8, label=f"fallbacks ({len(fb)})")
        ax.set_ylim(-0.08, 1.08)
        ax.set_ylabel(f"episode {ep}")
        ax.legend(loc="lower right", fontsize=7, ncol=4, framealpha=0.85)
    axes[-1, 0].set_xlabel("control step t")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
