"""`aura sim features --instruction-steps K` (issue 13): a small fake backbone that encodes the instruction it
was handed in its features and base action, over a two-demo HDF5 file: the instruction reaches the backbone at
demo steps t < K only (never after), exactly where `LiberoEnv(instruction_steps=K)` shows it; the targets stay
the demo's actions; K is in the file's metadata and the JSON record; without the option every step sees it;
K < 1 is a usage error naming the option."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

import cli
from policies.backbone import BackboneSpec

LANGUAGE = "pick up the milk and put it in the basket"
LENGTHS = (6, 4)  # two demos of different lengths: the second is padded


class _InstructionProbe:
    """z_t = [len(language), t, 1 if language is the demo's else 0]; base action = len(language) * ones."""

    spec = BackboneSpec(d_model=3, d_action=7, language=True)

    def __init__(self):
        self.t = 0

    def reset(self):
        self.t = 0

    def __call__(self, obs):
        lang = obs["language"]
        z = np.array([len(lang), self.t, float(lang == LANGUAGE)], np.float32)
        self.t += 1
        return z, np.full(7, len(lang), np.float32)


@pytest.fixture
def probe(monkeypatch):
    from policies import factory

    monkeypatch.setitem(factory._REGISTERED, "instruction_probe", (_InstructionProbe, {}))
    return "instruction_probe"


@pytest.fixture
def demos(tmp_path):
    import h5py

    path = tmp_path / "demos" / "task152_b000_demo.hdf5"
    path.parent.mkdir()
    rng = np.random.default_rng(0)
    actions = []
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["language"], data.attrs["task_id"] = LANGUAGE, 152
        for i, n in enumerate(LENGTHS):
            g = data.create_group(f"demo_{i}")
            actions.append(rng.uniform(-1, 1, (n, 7)).astype(np.float32))
            g.create_dataset("actions", data=actions[-1])
            g.create_group("obs").create_dataset("state", data=rng.normal(size=(n, 8)).astype(np.float32))
    return path.parent, actions


def _features(probe, demos_dir, out, *extra):
    return cli.main(["sim", "features", "--demos", str(demos_dir), "--backbone", probe, "--out", str(out),
                     "--quiet", *extra])  # fmt: skip


def _load(out):
    from safetensors import safe_open

    from aura.training.data import load_sequences
    from sim.libero.features import FEATURES_META_KEY

    with safe_open(str(out), "np") as f:
        meta = json.loads(f.metadata()[FEATURES_META_KEY])
    return load_sequences(out), meta, json.loads(out.with_suffix(".json").read_text())


@pytest.mark.parametrize("k", [1, 2, 5])
def test_instruction_reaches_the_backbone_only_before_k(probe, demos, tmp_path, k):
    demos_dir, actions = demos
    out = tmp_path / "f.safetensors"
    assert _features(probe, demos_dir, out, "--instruction-steps", str(k)) == 0
    arrays, meta, record = _load(out)
    z, base, target = arrays["features"], arrays["base_actions"], arrays["target_actions"]
    assert z.shape == (2, max(LENGTHS), 3)
    for i, n in enumerate(LENGTHS):
        t = np.arange(n)
        np.testing.assert_array_equal(z[i, :n, 1], t)  # one backbone call per demo step, reset per demo
        seen = t < k
        # the demo's instruction, verbatim, at t < K; nothing at all from K on
        np.testing.assert_array_equal(z[i, :n, 2], seen.astype(np.float32))
        np.testing.assert_array_equal(z[i, :n, 0], np.where(seen, len(LANGUAGE), 0))
        np.testing.assert_array_equal(base[i, :n], np.where(seen, len(LANGUAGE), 0)[:, None] * np.ones(7))
        np.testing.assert_array_equal(target[i, :n], actions[i])  # the targets stay the demo's
        assert np.isnan(target[i, n:]).all()
    assert meta["instruction_steps"] == k and record["instruction_steps"] == k
    assert meta["backbone"] == probe


def test_same_steps_as_the_env_shows_the_instruction(probe, demos, tmp_path):
    """Demo step t gets what LiberoEnv(instruction_steps=K).observation gives a policy at its step t."""
    from sim.libero.env import LiberoEnv

    k = 3
    out = tmp_path / "f.safetensors"
    assert _features(probe, demos[0], out, "--instruction-steps", str(k)) == 0
    z = _load(out)[0]["features"]
    for t in range(LENGTHS[0]):
        env = SimpleNamespace(language=LANGUAGE, instruction_steps=k, steps=t)
        assert LiberoEnv.observation(env, {})["language"] == (LANGUAGE if z[0, t, 2] else "")


def test_default_shows_the_instruction_at_every_step(probe, demos, tmp_path):
    out = tmp_path / "f.safetensors"
    assert _features(probe, demos[0], out) == 0
    arrays, meta, record = _load(out)
    for i, n in enumerate(LENGTHS):
        assert (arrays["features"][i, :n, 2] == 1).all()
    assert meta["instruction_steps"] is None and record["instruction_steps"] is None


@pytest.mark.parametrize("k", ["0", "-2"])
def test_instruction_steps_below_one_is_a_usage_error(probe, demos, tmp_path, capsys, k):
    out = tmp_path / "f.safetensors"
    assert _features(probe, demos[0], out, "--instruction-steps", k) == 2
    assert "--instruction-steps must be >= 1" in capsys.readouterr().err
    assert not out.exists()


def test_extract_refuses_a_bad_k_naming_the_option(demos):
    from sim.libero.features import demo_files, extract

    with pytest.raises(ValueError, match="--instruction-steps"):
        extract(_InstructionProbe(), demo_files(demos[0]), progress=False, instruction_steps=0)
