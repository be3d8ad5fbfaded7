"""Synthetic benchmark: budget-matched schedules, CI, every arm runs, the shipped checkpoint works."""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from aura.baselines.arms import AuraArm, SkipRNNArm
from aura.baselines.gru import GRUArm
from aura.baselines.kv import KVAttentionArm
from aura.baselines.stream import ThreeGateStream
from aura.layer import AuraMem
from aura.schedules import budget_matched
from cli import bench_synthetic
from sim.synthetic import bench
from sim.synthetic.arms import aura_config, to_torch
from sim.synthetic.config import get_config
from sim.synthetic.generator import DISTRACTOR, EVENT, generate

ROOT = Path(__file__).resolve().parents[2]


def test_budget_matched_schedules_have_exactly_the_requested_writes():
    counts = np.array([0, 1, 7, 40, 128])
    rand, per = budget_matched(counts, 128, seed=0)
    assert np.array_equal(rand.sum(1), counts) and np.array_equal(per.sum(1), counts)
    gaps = np.diff(np.nonzero(per[3])[0])
    assert gaps.min() >= 3 and gaps.max() <= 4  # evenly spaced


def test_summary_mean_and_student_t_interval():
    def seed(acc, writes):
        arm = {"accuracy": acc, "writes_per_episode": writes, "state_bytes": 4224, "kv_bytes_at_N": None,
               "kv_bytes_at_100k": None, "p_write_event": None, "p_write_distractor": None,
               "write_frac_event": None, "write_frac_distractor": None, "train_seconds": 1.0}  # fmt: skip
        return {"arms": {"always-write": dict(arm, writes_per_episode=100.0), "aura": arm}}

    s = bench.summarize([seed(0.8, 10.0), seed(0.9, 10.0), seed(0.85, 10.0)])["aura"]
    assert s["accuracy_mean"] == pytest.approx(0.85)
    assert s["accuracy_ci95"] == pytest.approx(4.303 * 0.05 / math.sqrt(3))
    assert s["writes_ratio_vs_always"] == pytest.approx(10.0)


def test_every_arm_runs_and_reports_writes():
    cfg = get_config("hard", horizon=24)
    z, base, _ = to_torch(generate(cfg, 3, seed=0))
    mem = AuraMem(aura_config(cfg))
    arms = [AuraArm(mem), AuraArm(mem, mode="dense"), SkipRNNArm(mem), GRUArm(64, 8), KVAttentionArm(64, 8),
            ThreeGateStream(64, 8)]  # fmt: skip
    for arm in arms:
        with torch.no_grad():
            out = arm.eval()(z, base)
        assert out.action.shape == (3, 24, 8) and out.write.shape == (3, 24) and out.write.dtype == torch.bool
    assert KVAttentionArm(64, 8).bytes_at(100_000) == 25_600_000
    assert ThreeGateStream(64, 8).state_bytes == 4224


def test_shipped_hard_checkpoint_gates_events_not_distractors():
    path = ROOT / "checkpoints" / "synthetic-hard"
    m = AuraMem.load(path)
    cfg = get_config("hard")
    ep = generate(cfg, 48, seed=123)
    z, base, _ = to_torch(ep)
    with torch.no_grad():
        out = m(z, base)
    q = ep.target >= 0
    acc = (out.action.argmax(-1).numpy()[q] == ep.target[q]).mean()
    w = out.write.numpy()
    assert acc > 0.7, acc
    assert w[ep.kind == EVENT].mean() > 0.85 and w[ep.kind == DISTRACTOR].mean() < 0.2
    assert w.sum(1).mean() < cfg.horizon / 6.2


@pytest.mark.slow
def test_quick_bench_end_to_end(tmp_path):
    parser = argparse.ArgumentParser()
    bench_synthetic.add_arguments(parser)
    args = parser.parse_args(["--quick", "--seeds", "2", "--json", str(tmp_path / "b.json")])
    assert bench_synthetic.run(args) == 0
    res = json.loads((tmp_path / "b.json").read_text())
    hard = res["configs"]["hard"]
    assert set(hard["summary"]) == set(bench.ARM_ORDER)
    assert hard["checks"]["kv_over_aura_bytes_at_100k"] == pytest.approx(25_600_000 / 4224)
    assert (tmp_path / "b.png").stat().st_size > 0
