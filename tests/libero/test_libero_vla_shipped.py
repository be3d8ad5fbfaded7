"""The shipped LIBERO backbone and the record of its training data: the checkpoint loads and conforms to the
contract within the size limits, and no training episode's layout is a fixed init state (the evaluation
set)."""

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "checkpoints" / "libero-vla"
RESULTS = ROOT / "benchmarks" / "results" / "libero_vla_e56"  # the shipped checkpoint's run


def test_shipped_checkpoint_conforms_and_is_small():
    pytest.importorskip("torch")
    from policies.backbone import check_outputs
    from policies.factory import make_backbone

    assert (CKPT / "model.safetensors").stat().st_size <= 20 * 2**20
    doc = json.loads((CKPT / "config.json").read_text())
    assert doc["weights"]["params"] <= 20_000_000 and doc["training"]["seed"] == 0
    b = make_backbone("libero_vla", {"checkpoint": str(CKPT), "device": "cpu"})
    assert b.spec.d_model == 256 and b.spec.cameras == ("image", "wrist_image") and b.spec.language
    b.reset()
    rng = np.random.default_rng(0)
    obs = {c: rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for c in ("image", "wrist_image")}
    obs.update(state=np.zeros(8, np.float32), language="an instruction it never saw")
    z, a = b(obs)
    check_outputs(b.spec, z, a)
    assert np.isfinite(z).all() and np.all(np.abs(a) <= 1.0)


def test_training_demos_never_used_a_fixed_init_state():
    demos = json.loads((RESULTS / "demos.json").read_text())
    assert demos["args"]["placements"] == "fresh"
    tried = [e for job in demos["jobs"] for e in job["tried"]]
    assert tried and all("placement_seed" in e and "init_state" not in e for e in tried)
    split = json.loads((RESULTS / "split.json").read_text())
    assert split["demos"] == sum(r["demos"] for r in demos["results"]) and split["min_nearest_mm"] > 1.0


def test_recorded_placements_reproduce_layouts_away_from_the_evaluation_set():
    """Re-lay the scenes of task 0's and task 5's first kept training episodes: each is > 1 mm from all 50."""
    pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")
    from sim.libero.demos import SPLIT_MIN_MM
    from sim.libero.env import LiberoEnv

    demos = json.loads((RESULTS / "demos.json").read_text())
    for task in (0, 5):
        seeds = [
            e["placement_seed"]
            for j in demos["jobs"]
            if j["task"] == task
            for e in j["tried"]
            if e["success"]
        ]
        env = LiberoEnv(task, cameras=())
        try:
            for s in seeds[:3]:
                env.reset(options={"placement_seed": s})
                assert 1000 * env.nearest_init_state(env.layout)[1] > SPLIT_MIN_MM
        finally:
            env.close()
