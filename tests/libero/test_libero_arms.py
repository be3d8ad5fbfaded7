"""The LIBERO arms without a simulator: the kv arm steps like its model, fresh arms equal base, the byte /
page / lifetime accounting against independent closed forms, the ratios and the write-position plot."""

import math

import numpy as np
import pytest
import torch

from aura.baselines.kv import KVAttentionArm
from aura.layer import AuraMem, AuraMemConfig
from sim.libero import report
from sim.libero.arms import MemoryArm, build_kv_model, episode_bytes, lifetime_years
from sim.libero.write_plot import near_subgoal, plot_write_positions

P, WA, E = 4096, 2.0, (1 << 30) * 3000  # the default FlashConfig: page, write amplification, endurance


def _years(pages: int, steps: int) -> float:
    """E / (flash bytes per hour) in years of 24 h days, at 20 Hz: the projection written out by hand."""
    hours = steps / 20.0 / 3600.0
    return E / (pages * P * WA / hours) / (365.25 * 24)


def _append_pages(sizes, start=0) -> int:
    """Pages programmed by appends each synced at once: ceil(end / P) - floor(start / P) per append."""
    pages, off = 0, start
    for n in sizes:
        pages += math.ceil((off + n) / P) - off // P
        off += n
    return pages


def test_kv_arm_steps_like_its_model_and_fresh_arms_equal_base():
    rng = np.random.default_rng(0)
    z, base = (
        rng.standard_normal((30, 16)).astype(np.float32),
        rng.standard_normal((30, 7)).astype(np.float32),
    )
    torch.manual_seed(0)
    trained = KVAttentionArm(16, 7)  # a random head: actions differ from base
    arm = MemoryArm("kv", trained)
    arm.reset()
    got = [arm.step(z[t], base[t]) for t in range(30)]
    with torch.no_grad():
        ref = trained(torch.from_numpy(z)[None], torch.from_numpy(base)[None]).action[0].numpy()
    np.testing.assert_allclose(np.stack([g[0] for g in got]), ref, rtol=1e-5, atol=1e-6)
    assert all(g[1] and g[2] == 1.0 for g in got) and arm.state.length == 30
    fresh = MemoryArm("kv", build_kv_model(None, 16, seed=0))
    fresh.reset()
    assert all(np.array_equal(fresh.step(z[t], base[t])[0], base[t]) for t in range(30))
    with pytest.raises(ValueError, match="KVAttentionArm"):
        MemoryArm("kv")


@pytest.mark.parametrize("steps, writes", [(520, 0), (520, 37), (300, 300), (7, 3)])
def test_episode_bytes_pages_and_lifetime_match_closed_forms(steps, writes):
    mem = AuraMem(AuraMemConfig(d_model=8))
    b = episode_bytes("aura", mem, steps, writes)
    assert b["journal_bytes"] == writes * 536 and b["dense_bytes"] == b["bytes"] == writes * 4224
    assert b["kv_equiv_bytes"] == steps * 256 and b["kv_bytes"] is None
    # an episode starts with a snapshot (80 B header + 4,224 B state + CRC: 2 pages), a 76 B segment header
    assert b["journal_pages"] == b["pages"] == 2 + 1 + _append_pages([536] * writes, start=76)
    assert b["dense_pages"] == 2 * writes  # 4,224 B spans two 4 KiB pages
    assert b["lifetime_years"] == pytest.approx(_years(b["journal_pages"], steps), rel=1e-12)
    if writes:
        assert b["lifetime_years_dense"] == pytest.approx(_years(2 * writes, steps), rel=1e-12)
    kv = episode_bytes("kv", KVAttentionArm(8, 7), steps, steps)
    assert kv["kv_bytes"] == kv["bytes"] == 256 * steps and kv["journal_bytes"] is None
    assert kv["kv_pages"] == _append_pages([256] * steps) and kv["lifetime_years"] == pytest.approx(
        _years(kv["kv_pages"], steps), rel=1e-12
    )
    base = episode_bytes("base", None, steps, 0)
    assert base["pages"] == 0 and base["lifetime_years"] is None and base["journal_bytes"] is None
    assert lifetime_years(0, steps) is None


def _rec(arm, init, writes, steps=100, **kw):
    mem, kv = AuraMem(AuraMemConfig(d_model=8)), KVAttentionArm(8, 7)
    model = kv if arm == "kv" else (None if arm == "base" else mem)
    r = dict(task=init % 2, init_state=init, arm=arm, seed=0, status="ok", success=True, steps=steps,
             writes=writes, wall_s=1.0, write_steps=list(range(writes)), **kw)  # fmt: skip
    return r | episode_bytes(arm, model, steps, writes)


def test_summary_ratios_are_over_pairs_both_arms_finished(tmp_path):
    recs = [_rec("aura", 0, 10), _rec("aura", 1, 30), _rec("always", 0, 100), _rec("always", 1, 100)]
    recs += [_rec("kv", 0, 100), _rec("aura", 2, 99)]  # kv lacks init 1 and 2: those pairs are left out
    q = report.summarize(recs)["ratios"]
    assert q["always_over_aura_writes"] == pytest.approx(200 / 40) and q["always_over_aura_writes_pairs"] == 2
    assert q["kv_over_aura_journal_bytes"] == pytest.approx(100 * 256 / (10 * 536))
    assert q["kv_over_aura_journal_bytes_pairs"] == 1
    assert q["aura_dense_over_kv_bytes"] == pytest.approx(10 * 4224 / (100 * 256))
    rows = {(r["arm"], r["task"]): r for r in report.summarize(recs)["rows"]}
    aura = rows[("aura", "all")]
    assert aura["journal_bytes"] == pytest.approx(536 * (10 + 30 + 99) / 3) and aura["kv_bytes"] is None
    pages = sum(r["pages"] for r in recs if r["arm"] == "aura")
    assert aura["lifetime_years"] == pytest.approx(_years(pages, 300), rel=1e-12)


def test_write_positions_plot_and_near_subgoal(tmp_path):
    recs = [
        _rec("aura", 0, 0, steps=200, subgoal_steps=[50, 150]) | {"write_steps": [48, 55, 100, 151]},
        _rec("random", 0, 0, steps=200, subgoal_steps=[50, 150]) | {"write_steps": [5, 70, 120, 199]},
        _rec("aura", 1, 0, steps=90, subgoal_steps=[None, None]) | {"write_steps": [1, 2]},  # no boundary
    ]
    near = near_subgoal(recs, window=5)
    assert near["aura"] == {"writes": 4, "near": 3, "fraction": 0.75, "window": 5}
    assert near["random"]["near"] == 0 and near["random"]["fraction"] == 0.0
    path = plot_write_positions(recs, tmp_path / "w.png")
    assert path.stat().st_size > 1000
    assert plot_write_positions([_rec("base", 0, 0)], tmp_path / "none.png") is None


def test_oracle_arm_writes_exactly_at_its_schedule():
    """The oracle arm of the transient-instruction variant writes at the instruction steps and nowhere
    else, whatever its gate would say; it needs the schedule."""
    rng = np.random.default_rng(1)
    z, base = (
        rng.standard_normal((12, 16)).astype(np.float32),
        rng.standard_normal((12, 7)).astype(np.float32),
    )
    torch.manual_seed(0)
    arm = MemoryArm("oracle", AuraMem(AuraMemConfig(d_model=16, d_action=7)))
    arm.reset(schedule=range(3))
    wrote = [arm.step(z[t], base[t])[1] for t in range(12)]
    assert wrote == [True] * 3 + [False] * 9
    with pytest.raises(ValueError, match="instruction steps"):
        arm.reset()
