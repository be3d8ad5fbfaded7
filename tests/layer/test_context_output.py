"""Context targets (sim.libero.context, `aura sim context-data`) and AuraMem's output="context"."""

import json

import numpy as np
import pytest

from aura.baselines.kv import KVAttentionArm, KVConfig
from aura.layer import AuraMem, AuraMemConfig
from aura.training.data import save_sequences
from cli import train as train_cli
from sim.libero import context as ctx

from .conftest import train_args as _args

D_CONTEXT = 6


class _Spec:
    d_context = D_CONTEXT


class _ContextBackbone:
    """Only what the converter reads: spec.d_context and context(language), a fixed vector per string."""

    spec = _Spec()

    def context(self, language: str) -> np.ndarray:
        rng = np.random.default_rng(sum(language.encode()) + len(language))
        return rng.standard_normal(D_CONTEXT).astype(np.float32)


def _features_file(tmp_path, k=2, languages=("open the drawer", "close the drawer"), demos=(2, 1), t=5):
    n = sum(demos)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, t, 4)).astype(np.float32)
    base = rng.standard_normal((n, t, 7)).astype(np.float32)
    target = rng.standard_normal((n, t, 7)).astype(np.float32)
    target[0, -2:] = np.nan  # padding of a shorter demo
    path = tmp_path / "features.safetensors"
    save_sequences(path, z, base, target, metadata={"aura.features": json.dumps({"instruction_steps": k})})
    files = [dict(file=f"task{i}_demo.hdf5", task=i, demos=d, language=lang)
             for i, (lang, d) in enumerate(zip(languages, demos))]  # fmt: skip
    path.with_suffix(".json").write_text(json.dumps({"files": files}))
    return path, z, target


def test_targets_are_the_instruction_and_the_base_what_the_backbone_sees(tmp_path):
    path, z, target = _features_file(tmp_path)
    b = _ContextBackbone()
    arrays, meta, summary = ctx.context_sequences(path, b)
    assert np.array_equal(arrays["features"], z)
    goals = [b.context("open the drawer")] * 2 + [b.context("close the drawer")]
    for i, goal in enumerate(goals):
        for t in range(5):
            assert np.array_equal(arrays["base_actions"][i, t], goal if t < 2 else b.context(""))
            if np.isfinite(target[i, t]).all():
                assert np.array_equal(arrays["target_actions"][i, t], goal)
            else:
                assert np.isnan(arrays["target_actions"][i, t]).all()  # unsupervised stays unsupervised
    assert "aura.features" in meta  # aura train --held-steps still finds K
    doc = json.loads(meta[ctx.CONTEXT_META_KEY])
    assert (doc["instruction_steps"], doc["d_context"]) == (2, D_CONTEXT)
    assert summary["labelled_steps"] == 13 and summary["tasks"] == 2


def test_rollouts_take_each_episode_task_instruction(tmp_path, monkeypatch):
    import sim.libero.tasks as tasks

    monkeypatch.setattr(tasks, "task_spec", lambda t: ({0: "soup", 1: "sauce"}[t], "", None))
    n, t = 3, 4
    zeros = np.zeros((n, t, 7), np.float32)
    arrays = dict(features=np.zeros((n, t, 4), np.float32), base_actions=zeros, target_actions=zeros,
                  episode_task=np.array([1, 0, 1]))  # fmt: skip
    meta = {"aura.rollouts": json.dumps({"args": {"instruction_steps": 1, "backbone": "libero_vla"}})}
    from safetensors.numpy import save_file

    save_file(arrays, str(tmp_path / "r.safetensors"), metadata=meta)
    b = _ContextBackbone()
    summary = ctx.write_context_sequences(tmp_path / "r.safetensors", b, tmp_path / "c.safetensors")
    assert summary["rows"] == 3
    from safetensors.numpy import load_file

    out = load_file(str(tmp_path / "c.safetensors"))
    assert np.array_equal(out["episode_task"], [1, 0, 1])  # the other arrays come along
    for i, lang in enumerate(("sauce", "soup", "sauce")):
        assert np.array_equal(out["target_actions"][i, 3], b.context(lang))
        assert np.array_equal(out["base_actions"][i, 0], b.context(lang))
        assert np.array_equal(out["base_actions"][i, 1], b.context(""))


def test_bad_sources_name_the_file(tmp_path):
    b = _ContextBackbone()
    with pytest.raises(ValueError, match="no such file"):
        ctx.context_sequences(tmp_path / "nope.safetensors", b)
    path, *_ = _features_file(tmp_path, k=None)
    with pytest.raises(ValueError, match="always visible"):
        ctx.context_sequences(path, b)
    path, *_ = _features_file(tmp_path)
    path.with_suffix(".json").write_text("{")
    with pytest.raises(ValueError, match="features.json"):
        ctx.context_sequences(path, b)
    save_sequences(tmp_path / "bare.safetensors", *(np.zeros((1, 2, 7), np.float32),) * 3)
    with pytest.raises(ValueError, match="bare.safetensors: no"):
        ctx.context_sequences(tmp_path / "bare.safetensors", b)

    class _NoContext:
        class spec:
            d_context = 0

    path, *_ = _features_file(tmp_path)
    with pytest.raises(ValueError, match="takes no context"):
        ctx.context_sequences(path, _NoContext())


def test_output_is_part_of_the_config_and_checkpoint(tmp_path):
    cfg = AuraMemConfig(d_model=4, d_action=6, output="context")
    assert AuraMemConfig.from_dict(cfg.to_dict()) == cfg
    assert "output" not in AuraMemConfig(d_model=4).to_dict()  # action checkpoints are written as before
    with pytest.raises(ValueError, match="output"):
        AuraMemConfig(d_model=4, output="torque")


def test_train_on_context_targets_makes_a_context_checkpoint(tmp_path):
    path, *_ = _features_file(tmp_path)
    data = tmp_path / "ctx.safetensors"
    ctx.write_context_sequences(path, _ContextBackbone(), data)
    assert ctx.data_output([data]) == "context" and ctx.data_output([path]) == "action"
    args = _args(data=data, out=tmp_path / "ck", d_key=4, d_val=4, dense_steps=2, held_steps=2, gate_steps=2,
                 gate_only=True, batch=2, quiet=True, val_frac=0.34)  # fmt: skip
    assert train_cli.run(args) == 0
    m = AuraMem.load(tmp_path / "ck")
    assert (m.config.output, m.config.d_action) == ("context", D_CONTEXT)
    mixed = _args(data=data, out=tmp_path / "mix", dense_steps=1, gate_steps=0, quiet=True)
    mixed.data = [str(data), str(path)]
    with pytest.raises(ValueError, match="mixes context-target and action-target"):
        train_cli.run(mixed)
    with pytest.raises(ValueError, match="outputs 'context', the --data 'action'"):
        train_cli.run(
            _args(data=path, out=tmp_path / "again", init=tmp_path / "ck", dense_steps=1, quiet=True)
        )
    # the KV arm learns the same context targets (its config says so; the eval conditions the backbone on it)
    assert train_cli.run(_args(data=data, out=tmp_path / "kv", arm="kv", kv_steps=2, quiet=True)) == 0
    kv = KVAttentionArm.load(tmp_path / "kv")
    assert (kv.config.output, kv.config.d_action) == ("context", D_CONTEXT)
    assert KVConfig(d_model=4, d_action=7) == KVAttentionArm(4, 7).config
    with pytest.raises(ValueError, match="KVConfig.output"):
        KVConfig(d_model=4, d_action=7, output="torque")
    with pytest.raises(ValueError, match="outputs 'context', the --data 'action'"):
        train_cli.run(
            _args(data=path, out=tmp_path / "kv2", arm="kv", init=tmp_path / "kv", kv_steps=1, quiet=True)
        )


def test_an_action_kv_checkpoint_is_written_as_before(tmp_path):
    KVAttentionArm(4, 7).save(tmp_path / "kv")
    assert "output" not in json.loads((tmp_path / "kv" / "config.json").read_text())["config"]
    assert KVAttentionArm.load(tmp_path / "kv").config.output == "action"
