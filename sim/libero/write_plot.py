"""Where the arms write: write positions within episodes against sub-task boundaries (write_positions.png).

One panel per task (two columns; the first few init states of each); in it one line per (init state, arm)
for the gated and budget arms (``aura``, ``random``, ``periodic``: the always and kv arms write every step,
which says nothing about position). Time is normalised, x = t / T (T the episode's steps), so episodes of
different length share an axis. Ticks are writes; tall blue marks are the sub-task boundaries tau_j
(``sim.libero.subgoals``: the first step at which goal predicate g_j holds) of that episode.

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


def plot_write_positions(records: list[dict], path: Path, max_inits: int = 3) -> Path | None:
    """Write the figure (module docstring) to ``path``; None if no episode of a plotted arm exists.

    Each task shows its first ``max_inits`` init states (so a 150-episode panel stays one readable page; the
    ``near_subgoal`` numbers count every episode), tasks in two columns."""
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
    shown, totals = {}, {}
    for t in tasks:
        inits = sorted({r["init_state"] for r in by_task[t]})
        keep = set(inits[:max_inits])
        totals[t] = len(inits)
        shown[t] = sorted(
            (r for r in by_task[t] if r["init_state"] in keep),
            key=lambda r: (r["init_state"], PLOT_ARMS.index(r["arm"])),
        )
    cols = 2 if len(tasks) > 1 else 1
    grid_rows = -(-len(tasks) // cols)
    per_row = [max(len(shown[t]) for t in tasks[i * cols : (i + 1) * cols]) for i in range(grid_rows)]
    fig, axes = plt.subplots(
        grid_rows,
        cols,
        figsize=(7 * cols, 0.9 + 0.25 * sum(per_row) + 0.5 * grid_rows),
        gridspec_kw={"height_ratios": per_row},
        squeeze=False,
    )
    for i, ax in enumerate(axes.flat):
        if i >= len(tasks):
            ax.axis("off")
            continue
        task, rows = tasks[i], shown[tasks[i]]
        labels = []
        for y, r in enumerate(rows):
            T = r["steps"]
            xs = [w / T for w in r["write_steps"]]
            ax.vlines(xs, y - 0.35, y + 0.35, colors=COLOURS[r["arm"]], linewidth=0.8)
            taus = [s / T for s in r.get("subgoal_steps") or [] if s is not None]
            ax.vlines(taus, y - 0.5, y + 0.5, colors="tab:blue", linewidth=2.0)
            labels.append(f"init {r['init_state']} {r['arm']}" + (" ok" if r.get("success") else ""))
        ax.set_yticks(range(len(rows)), labels, fontsize=6)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlim(0, 1)
        more = f", {min(max_inits, totals[task])} of {totals[task]} init states"
        ax.set_title(f"task {task}: writes (ticks), sub-task boundaries (blue){more}", fontsize=8, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes[-1, :]:
        ax.set_xlabel("t / T (episode time, normalised)", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
