"""The backbone's context input (policies.backbone: spec.d_context, observation["context"]) on libero_vla."""

from __future__ import annotations

import numpy as np
import pytest

from policies.backbone import BackboneError, BackboneSpec
from policies.factory import make_backbone


def test_a_context_stands_in_for_the_instruction_exactly(tiny_ckpt, tiny_model_config, make_observation):
    b = make_backbone("libero_vla", {"checkpoint": str(tiny_ckpt), "device": "cpu"})
    assert b.spec.d_context == tiny_model_config.d_text
    twin = b.twin()
    assert twin.net is b.net and twin.execution == b.execution and twin.executor is not b.executor
    rng = np.random.default_rng(0)
    for seed in range(3):
        obs = make_observation(seed=seed, language=f"pick up the {rng.integers(100)} and place it")
        c = b.context(obs["language"])
        assert c.dtype == np.float32 and c.shape == (b.spec.d_context,)
        b.reset(), twin.reset()
        z, a = b(obs)
        z_c, a_c = twin({**obs, "language": "", "context": c})  # the blanked instruction, restored
        assert np.array_equal(z, z_c) and np.array_equal(a, a_c)
        twin.reset()
        z_blank, _ = twin({**obs, "language": ""})
        assert not np.allclose(z, z_blank)  # the context is what carried the instruction
    assert np.array_equal(b.context("x"), b.context("x"))  # cached, and a copy each time
    b.context("x")[:] = 0
    assert np.abs(b.context("x")).sum() > 0


def test_a_bad_context_is_a_clear_error(tiny_ckpt, make_observation):
    b = make_backbone("libero_vla", {"checkpoint": str(tiny_ckpt), "device": "cpu"})
    n = b.spec.d_context
    for bad in (np.zeros(n + 1, np.float32), np.full(n, np.nan, np.float32), "goal"):
        b.reset()
        with pytest.raises((BackboneError, ValueError), match="context"):
            b({**make_observation(), "context": bad})


def test_a_backbone_without_a_context_refuses_one(default_onnx, make_observation):
    b = make_backbone("libero_vla_onnx", {"model": str(default_onnx[0])})
    assert b.spec.d_context == 0
    with pytest.raises(BackboneError, match="takes none"):
        b({**make_observation(size=b.spec.image_size), "context": np.zeros(128, np.float32)})


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_spec_d_context_is_validated(bad):
    with pytest.raises(BackboneError, match="d_context"):
        BackboneSpec(d_model=4, d_action=7, d_context=bad)


def test_a_fresh_context_memory_leaves_the_backbone_as_it_is(tiny_ckpt, make_observation):
    """ContextActor, fresh AuraMem (W_c = 0): c-hat_t = c_t, so the twin acts exactly as the backbone does."""
    import torch

    from aura.layer import AuraMem, AuraMemConfig
    from sim.libero.arms import ContextActor, MemoryArm, context_actor

    b = make_backbone("libero_vla", {"checkpoint": str(tiny_ckpt), "device": "cpu"})
    reference = b.twin()
    torch.manual_seed(0)
    model = AuraMem(AuraMemConfig(d_model=b.spec.d_model, d_action=b.spec.d_context, output="context")).eval()
    assert context_actor("base", b, model) is None
    for name in ("aura", "always", "oracle"):
        actor = context_actor(name, b, model)
        assert isinstance(actor, ContextActor)
        arm = MemoryArm(name, model)
        arm.reset([0] if name == "oracle" else None)
        b.reset(), actor.reset(), reference.reset()
        for t in range(6):
            obs = make_observation(seed=t, language="put the bowl on the plate" if t < 1 else "")
            z, _ = b(obs)
            context, _, _ = arm.step(z, actor.context(obs))
            assert np.array_equal(context.astype(np.float32), b.context(obs["language"]))
            assert np.array_equal(actor.act(obs, context), reference(obs)[1])
    with pytest.raises(ValueError, match="context of 5 dims"):
        ContextActor(b, AuraMem(AuraMemConfig(d_model=b.spec.d_model, d_action=5, output="context")))


def test_cli_context_data_uses_the_recorded_backbone(tiny_ckpt, tmp_path, capsys):
    import json

    from aura.training.data import save_sequences
    from cli import main

    n, t = 2, 3
    z = np.zeros((n, t, 16), np.float32)
    actions = np.zeros((n, t, 7), np.float32)
    meta = dict(instruction_steps=1, backbone="libero_vla", backbone_args={"checkpoint": str(tiny_ckpt)})
    data = tmp_path / "f.safetensors"
    save_sequences(data, z, actions, actions, metadata={"aura.features": json.dumps(meta)})
    files = [dict(task=0, demos=2, language="put the bowl on the plate")]
    data.with_suffix(".json").write_text(json.dumps({"files": files}))
    out = tmp_path / "c.safetensors"
    assert main(["sim", "context-data", "--data", str(data), "--out", str(out)]) == 0
    assert "context targets of 16 dims for 1 instruction" in capsys.readouterr().out
    assert json.loads(out.with_suffix(".json").read_text())["backbone_args"]["checkpoint"] == str(tiny_ckpt)
    assert main(["sim", "context-data", "--data", str(data), "--out", str(data)]) == 2
    assert "is --data" in capsys.readouterr().err


def test_the_twin_follows_a_visible_instruction_and_the_memory_only_when_blank(tiny_ckpt, make_observation):
    from aura.layer import AuraMem, AuraMemConfig
    from sim.libero.arms import ContextActor

    b = make_backbone("libero_vla", {"checkpoint": str(tiny_ckpt), "device": "cpu"})
    actor = ContextActor(b, AuraMem(AuraMemConfig(d_model=16, d_action=b.spec.d_context, output="context")))
    seen, remembered = "put the bowl on the plate", b.context("open the drawer")
    reference = b.twin()
    for language, context in ((seen, None), ("", remembered)):
        obs = make_observation(seed=1, language=language)
        actor.reset(), reference.reset()
        expected = reference(obs if context is None else {**obs, "context": context})[1]
        assert np.array_equal(actor.act(obs, remembered), expected)
