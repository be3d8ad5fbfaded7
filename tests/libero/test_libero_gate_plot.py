"""gate_prob.png and the per-step gate record without a simulator: the gated arm's records keep p_t and tau
(compact), the plot is bounded whatever the number of episodes and shades exactly the instruction steps
t < K, and records without the new fields (other arms, older results) summarise as before with no plot."""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from aura.layer import AuraMem, AuraMemConfig
from sim.libero import report
from sim.libero.arms import MemoryArm, gate_fields
from sim.libero.gate_plot import gate_prob_figure, instruction_steps, plot_gate_probs


def _rec(task, init, arm="aura", steps=120, k=None, gated=True, seed=0):
    """A finished episode; with ``gated`` the gate's p_t peaks over t < k and at the sub-task boundary."""
    rng = np.random.default_rng([seed, task, init])
    p = np.clip(0.2 + 0.05 * rng.standard_normal(steps), 0.0, 1.0)
    if k:
        p[:k] = 0.9
    p[steps // 2] = 0.8
    r = dict(task=task, init_state=init, arm=arm, seed=0, status="ok", success=bool(init % 2), steps=steps,
             writes=int((p > 0.5).sum()), bytes=0, wall_s=1.0, write_steps=np.flatnonzero(p > 0.5).tolist(),
             subgoal_steps=[steps // 2, None], gate_prob_mean=float(p.mean()))  # fmt: skip
    if gated:
        r.update(gate_probs=[round(float(x), 4) for x in p], gate_threshold=0.5, instruction_steps=k)
    return r


def _spans(fig) -> list[tuple[float, float]]:
    """x extents (data coordinates) of the instruction shading of every panel."""
    out = []
    for ax in fig.axes:
        for patch in ax.patches:
            if patch.get_gid() == "instruction":
                bb = patch.get_path().get_extents(patch.get_patch_transform())
                out.append((bb.x0, bb.x1))
    return out


def test_gated_arm_records_p_t_per_step_compactly():
    torch.manual_seed(0)
    model = AuraMem(
        AuraMemConfig(d_model=16, d_action=7, threshold=0.89)
    ).eval()  # a fresh gate's p_t: 0.87-0.92
    arm = MemoryArm("aura", model)
    arm.reset()
    rng = np.random.default_rng(0)
    steps = [
        arm.step(rng.standard_normal(16).astype(np.float32), np.zeros(7, np.float32)) for _ in range(520)
    ]
    probs = [s[2] for s in steps]
    rec = gate_fields("aura", model, probs)
    assert rec["gate_threshold"] == 0.89 and len(rec["gate_probs"]) == 520
    assert rec["gate_probs"] == pytest.approx(probs, abs=5e-5)
    assert all(len(repr(p)) <= 6 for p in rec["gate_probs"])  # 4 decimals, not 17 digits
    assert len(json.dumps(rec)) < 5000  # a 520-step episode adds ~4 KB to its JSONL line
    wrote = [s[1] for s in steps]
    assert any(wrote) and not all(wrote)  # both sides of tau occur: the check below means something
    assert all(w == (p > 0.89) for w, p in zip(wrote, probs, strict=True))
    for other in ("base", "always", "random", "periodic", "oracle", "kv"):
        assert gate_fields(other, model, probs) == {}


def test_gate_plot_is_bounded_and_shades_the_instruction_steps(tmp_path):
    many = [_rec(t, i, k=7) for t in range(12) for i in range(8)]
    path = plot_gate_probs(many + [_rec(0, 0, arm="base", gated=False)], tmp_path / "gate_prob.png")
    assert path == tmp_path / "gate_prob.png" and path.stat().st_size > 10_000
    w, h = Image.open(path).size
    assert w <= 1600 and h <= 1400  # 96 episodes of 12 tasks: 10 panels of 3 init states
    fig = gate_prob_figure(many)
    try:
        panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
        assert len(panels) == 10
        # 3 curves, tau, 3 sub-task boundaries, and the shading's end as a line (visible at K = 1)
        assert all(len(ax.lines) == 3 + 1 + 3 + 1 for ax in panels)
        assert _spans(fig) == [pytest.approx((-0.5, 6.5))] * 10  # steps 0..6 shaded, 7 not
        ends = [ln.get_xdata()[0] for ax in panels for ln in ax.lines if ln.get_gid() == "instruction_end"]
        assert ends == [6.5] * 10
    finally:
        plt.close(fig)
    for k, want in ((25, 24.5), (None, None)):
        fig = gate_prob_figure([_rec(0, i, k=k) for i in range(2)])
        assert _spans(fig) == ([] if want is None else [pytest.approx((-0.5, want))])
        plt.close(fig)
    assert instruction_steps([_rec(0, 0, k=3), _rec(0, 1), _rec(0, 2, gated=False)]) == [3]


def _zooms(fig) -> list:
    return [c for ax in fig.axes for c in ax.child_axes if c.get_gid() == "zoom"]


def test_a_short_instruction_gets_an_inset_with_the_writes_as_dots():
    """K = 1 on 520 steps is one pixel of the axis: the inset shows the first 16 steps, a write at t = 0 as a
    dot on its curve; a K that is already a quarter of the axis (25 of 120 steps) gets none."""
    fig = gate_prob_figure([_rec(0, i, k=1, steps=520) for i in range(2)])
    try:
        (zoom,) = _zooms(fig)
        assert zoom.get_xlim() == (-0.5, 15.5)
        dots = [ln for ln in zoom.lines if ln.get_marker() == "o"]
        assert len(dots) == 2 and all(0 in list(ln.get_xdata()) for ln in dots)  # both wrote at t = 0
        assert all(y == 0.9 for ln in dots for x, y in zip(ln.get_xdata(), ln.get_ydata()) if x == 0)
    finally:
        plt.close(fig)
    fig = gate_prob_figure([_rec(0, i, k=25) for i in range(2)])
    assert not _zooms(fig)
    plt.close(fig)


def test_records_without_gate_probs_summarise_with_no_gate_plot(tmp_path):
    old = [_rec(0, i, arm=arm, gated=False) for i in range(2) for arm in ("aura", "base")]  # older results
    assert plot_gate_probs(old, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    path = tmp_path / "episodes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    s = report.write_summary(report.read_records([path]), tmp_path)
    assert {r["arm"] for r in s["rows"]} == {"aura", "base"} and (tmp_path / "write_positions.png").exists()
    assert not (tmp_path / "gate_prob.png").exists() and not any(
        Path(p).name == "gate_prob.png" for p in s["plots"]
    )
    # a resumed directory: old lines and new ones together; only the new ones are plotted
    new = _rec(1, 0, k=4)
    with open(path, "a") as f:
        f.write(json.dumps(new) + "\n")
    s = report.write_summary(report.read_records([path]), tmp_path)
    assert (
        str(tmp_path / "gate_prob.png") in s["plots"] and (tmp_path / "gate_prob.png").stat().st_size > 1000
    )
    rows = {(r["arm"], r["task"]): r for r in s["rows"]}
    assert rows[("aura", "all")]["episodes"] == 3
    fig = gate_prob_figure(report.final_records(report.read_records([path])))
    assert len([ax for ax in fig.axes if ax.axison]) == 1 and _spans(fig) == [pytest.approx((-0.5, 3.5))]
    plt.close(fig)
