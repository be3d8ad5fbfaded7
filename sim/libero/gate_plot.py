"""What the gate said over an episode: p_t against t, tau, the writes, the instruction steps (gate_prob.png).

Records of the gated arm (``sim.libero.arms.GATE_ARMS``: ``aura``) carry ``gate_probs``, the gate's write
probability p_t at every control step t (``sim.libero.arms.gate_fields``), and ``gate_threshold`` tau (the arm
wrote iff p_t > tau). The figure has one panel per task (two columns) with the first ``max_inits`` init states
of that task, one colour per init state:

* p_t against the step t (a curve per episode), tau as a dashed black line;
* the episode's writes (``write_steps``) as ticks under the curves, one row of ticks per init state;
* the instruction steps t < K of the transient-instruction variant shaded grey and their end drawn as a
  grey line (K: the records' ``instruction_steps``, ``aura eval libero --instruction-steps K``; none
  without it);
* the sub-task boundaries (``subgoal_steps``: the first step each BDDL goal predicate holds) as dotted
  vertical lines in the episode's colour;
* with the variant, when its first ``zoom_steps(K)`` steps are under a quarter of the axis (K = 1 on a
  520-step episode is one pixel wide), an inset of those steps: the same curves, tau, the grey t < K, and
  each write as a dot on its curve, so whether the gate wrote at the instruction step can be read off.

At most ``max_tasks`` panels of ``max_inits`` curves each, so the figure stays one bounded page whatever the
number of episodes. Records without ``gate_probs`` (the other arms, results written before the field) are
left out; without any such record no figure is written.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange")
TICK_ROW = 0.07  # height of one row of write ticks under p = 0, in p units


def _episodes(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("status") == "ok" and r.get("gate_probs")]


def instruction_steps(records: list[dict]) -> list[int]:
    """The distinct K (``instruction_steps``) of ``records``, sorted; [] when none ran the variant. A results
    directory pins K (``config.json``), so this is one value or none."""
    return sorted({int(r["instruction_steps"]) for r in records if r.get("instruction_steps") is not None})


def zoom_steps(k: int) -> int:
    """How many first steps the inset shows for K instruction steps: max(4 K, 16)."""
    return max(4 * k, 16)


def _zoom(ax, rows: list[dict], k: int, taus: list[float]) -> None:
    n = zoom_steps(k)
    ins = ax.inset_axes([0.07, 0.42, 0.22, 0.5])
    ins.set_gid("zoom")
    for j, r in enumerate(rows):
        c = COLOURS[j % len(COLOURS)]
        p = r["gate_probs"][:n]
        ins.plot(range(len(p)), p, color=c, linewidth=0.9)
        wrote = [s for s in r.get("write_steps") or [] if s < len(p)]
        ins.plot(wrote, [p[s] for s in wrote], "o", color=c, markersize=3)
    ins.axvspan(-0.5, k - 0.5, color="0.75", alpha=0.5, linewidth=0)
    for tau in taus:
        ins.axhline(tau, color="black", linestyle="--", linewidth=0.8)
    ins.set_xlim(-0.5, n - 0.5)
    ins.set_ylim(0, 1)
    ins.set_yticks([0, 0.5, 1])
    ins.tick_params(labelsize=6)
    ins.set_title(f"first {n} steps (dots: writes)", fontsize=6)


def _panel(ax, task: int, rows: list[dict], total: int) -> None:
    for j, r in enumerate(rows):
        c = COLOURS[j % len(COLOURS)]
        p = r["gate_probs"]
        ok = " ok" if r.get("success") else ""
        ax.plot(range(len(p)), p, color=c, linewidth=0.9, label=f"init {r['init_state']}{ok}")
        y = -TICK_ROW * (j + 1)
        ax.vlines(r.get("write_steps") or [], y - 0.4 * TICK_ROW, y + 0.4 * TICK_ROW, colors=c, linewidth=0.8)
        for s in r.get("subgoal_steps") or []:
            if s is not None:
                ax.axvline(s, color=c, linestyle=":", linewidth=1.2)
    ks = instruction_steps(rows)
    for k in ks:  # step t occupies [t - 1/2, t + 1/2): t < K is [-1/2, K - 1/2)
        ax.axvspan(
            -0.5, k - 0.5, color="0.75", alpha=0.5, linewidth=0, gid="instruction", label=f"t < K = {k}"
        )
        # K = 1 on a 520-step axis shades ~1 px: the span's end is also drawn as a line, visible at any K
        ax.axvline(k - 0.5, color="0.45", linewidth=1.0, gid="instruction_end")
    taus = sorted({float(r.get("gate_threshold", 0.5)) for r in rows})
    for tau in taus:
        ax.axhline(tau, color="black", linestyle="--", linewidth=0.8, label=f"tau {tau:g}")
    horizon = max([len(r["gate_probs"]) for r in rows] + ks)
    if ks and 4 * zoom_steps(ks[0]) <= horizon:
        _zoom(ax, rows, ks[0], taus)
    ax.set_xlim(-0.5, horizon - 0.5)
    ax.set_ylim(-TICK_ROW * (len(rows) + 1), 1.04)
    ax.set_yticks([0, 0.5, 1])
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="upper right", ncol=2, framealpha=0.8)
    ax.set_title(
        f"task {task}: gate p_t, writes (ticks below), sub-task boundaries (dotted); "
        f"{len(rows)} of {total} init states",
        fontsize=8,
        loc="left",
    )


def gate_prob_figure(records: list[dict], max_inits: int = 3, max_tasks: int = 10):
    """The figure of the module docstring (a matplotlib Figure; the caller closes it), or None if no record
    has ``gate_probs``. Per task its first ``max_inits`` init states (one episode each: the first arm in
    name order if several carry ``gate_probs``); the first ``max_tasks`` tasks."""
    eps = _episodes(records)
    if not eps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_task = defaultdict(dict)
    for r in sorted(eps, key=lambda r: (r["task"], r["init_state"], r["arm"]), reverse=True):
        by_task[r["task"]][r["init_state"]] = r  # reversed: the first arm in name order wins
    all_tasks = sorted(by_task)
    tasks = all_tasks[:max_tasks]
    cols = 2 if len(tasks) > 1 else 1
    grid_rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(7 * cols, 0.7 + 2.4 * grid_rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(tasks):
            ax.axis("off")
            continue
        inits = by_task[tasks[i]]
        _panel(ax, tasks[i], [inits[s] for s in sorted(inits)[:max_inits]], len(inits))
    for ax in axes[-1, :]:
        ax.set_xlabel("t (control step)", fontsize=7)
    if len(all_tasks) > len(tasks):
        fig.suptitle(f"first {len(tasks)} of {len(all_tasks)} tasks", fontsize=8)
    fig.tight_layout()
    return fig


def plot_gate_probs(records: list[dict], path: Path, max_inits: int = 3, max_tasks: int = 10) -> Path | None:
    """Write :func:`gate_prob_figure` to ``path`` (PNG, 110 dpi: at most 1,540 x 1,397 px); None, and no
    file, if no record has ``gate_probs``."""
    fig = gate_prob_figure(records, max_inits, max_tasks)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
