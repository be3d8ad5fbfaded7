"""Where the arms write: write positions within episodes against sub-task boundaries (write_positions.png).

One panel per task; in it one line per (init state, arm) for the gated and budget arms (``aura``, ``random``,
``periodic``: the always and kv arms write every step, which says nothing about position). Time is
normalised, x = t / T (T the episode's steps), so episodes of different length share an axis. Ticks are
writes; tall blue marks are the sub-task boundaries tau_j (``sim.libero.subgoals``: the first step at
which goal predicate g_j holds) of that episode.

``near_subgoal`` is a number to go with the picture: the fraction of an arm's writes at most ``window`` steps
before or after some tau_j of the same episode, over all its episodes that reached a boundary.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

PLOT_ARMS = ("aura", "random", "periodic")
COLOURS = {"aura": "tab:red", "random": "tab:grey", "periodic": "tab:green"}


def _episodes(records: list[dict]) -> list[dict]:
    return [
        r
        for r in records
        if r.get("status") == "ok" and r.get("arm") in PLOT_ARMS and r.get("steps") and "write_steps" in r
    ]


def near_subgoal(records: list[dict], window: int = 10) -> dict:
    """Per arm: ``{"writes": n, "near": k, "fraction": k / n}`` over episodes with a reached boundary."""
    counts = defaultdict(lambda: [0, 0])
    for r in _episodes(records):
        taus = [s for s in r.get("subgoal_steps") or [] if s is not None]
        if not taus:
            continue
        c = counts[r["arm"]]
        c[0] += len(r["write_steps"])
        c[1] += sum(any(abs(w - s) <= window for s in taus) for w in r["write_steps"])
    return {
        arm: {"writes": n, "near": k, "fraction": k / n if n else None, "window": window}
        for arm, (n, k) in sorted(counts.items())
    }


def plot_write_positions(records: list[dict], path: Path) -> Path | None:
    """Write the figure (module docstring) to ``path``; None if no episode of a plotted arm exists."""
    eps = _episodes(records)
    if not eps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_task = defaultdict(list)
    for r in eps:
        by_task[r["task"]].append(r)
    tasks = sorted(by_task)
    heights = [max(1, len(by_task[t])) for t in tasks]
    fig, axes = plt.subplots(
        len(tasks),
        1,
        figsize=(10, 0.9 + 0.25 * sum(heights) + 0.4 * len(tasks)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, task in zip(axes[:, 0], tasks, strict=True):
        rows = sorted(by_task[task], key=lambda r: (r["init_state"], PLOT_ARMS.index(r["arm"])))
        labels = []
        for y, r in enumerate(rows):
            T = r["steps"]
            xs = [w / T for w in r["write_steps"]]
            ax.vlines(xs, y - 0.35, y + 0.35, colors=COLOURS[r["arm"]], linewidth=0.6)
            taus = [s / T for s in r.get("subgoal_steps") or [] if s is not None]
            ax.vlines(taus, y - 0.5, y + 0.5, colors="tab:blue", linewidth=2.0)
            labels.append(f"init {r['init_state']} {r['arm']}" + (" ok" if r.get("success") else ""))
        ax.set_yticks(range(len(rows)), labels, fontsize=6)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlim(0, 1)
        ax.set_title(f"task {task}: writes (ticks) and sub-task boundaries (blue)", fontsize=8, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel("t / T (episode time, normalised)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
