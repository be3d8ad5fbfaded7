"""AuraMem's read-out option (aura/readout.py): readout="mlp" adds W_2 GELU(W_1 [z_t; r_t] + b_1) + b_2.

A fresh "mlp" AuraMem returns the base action exactly; step == sequence; checkpoints carry the option (old
ones load as "linear"); `aura train --readout mlp` fits a target that needs z_t and the memory together.
"""

import json

import numpy as np
import pytest
import torch

from aura.baselines.arms import SkipRNNArm
from aura.layer import RULES, AuraMem, AuraMemConfig, CheckpointError
from aura.training.data import save_sequences
from cli import train as train_cli

from .conftest import train_args


def _mlp_model(rule="gdn2", heads=1, seed=0, gate_bias=0.0, dtype=torch.float32, hidden=16):
    """An "mlp" AuraMem with every weight moved off its init (fc2 = W_2, b_2 included)."""
    torch.manual_seed(seed)
    cfg = AuraMemConfig(
        d_model=24, d_key=8, d_val=6, d_action=5, heads=heads, rule=rule, readout="mlp", readout_hidden=hidden
    )
    m = AuraMem(cfg)
    with torch.no_grad():
        m.head.weight.normal_()
        m.readout.fc2.weight.normal_()
        m.readout.fc2.bias.normal_()
        m.gate.mlp[2].bias.fill_(gate_bias)  # near 0: the gate sits near p = 0.5, both decisions occur
    return m.to(dtype).eval()


def _inputs(b=3, t=40, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 24, generator=g, dtype=dtype), torch.randn(b, t, 5, generator=g, dtype=dtype)


@pytest.mark.parametrize("rule", RULES)
def test_fresh_mlp_readout_returns_the_base_action_exactly(rule):
    torch.manual_seed(0)
    m = AuraMem(AuraMemConfig(d_model=24, d_action=5, rule=rule, readout="mlp")).eval()
    assert m.readout.fc1.weight.abs().sum() > 0  # W_1 is random: only W_2 = b_2 = 0 keep the term at 0
    z, a = _inputs()
    seq = m(z, a)
    assert seq.write.any() and torch.equal(seq.action, a)
    state = torch.randn(3, *m.config.state_shape)
    assert torch.equal(m.step(z[:, 0], a[:, 0], state).action, a[:, 0])
    assert torch.equal(m.forward_fixed(z, a, torch.ones(3, 40, dtype=torch.bool)).action, a)
    assert torch.equal(m.train()(z, a).action, a)


@pytest.mark.parametrize("rule,heads", [("gdn2", 1), ("gdn2", 2), ("kda", 1), ("deltanet", 1)])
def test_mlp_readout_step_api_equals_sequence_api(rule, heads):
    m = _mlp_model(rule, heads)
    z, a = _inputs()
    state0 = torch.randn(3, *m.config.state_shape) * 0.1
    seq = m(z, a, state0)
    assert seq.write.any() and (~seq.write).any()
    state = state0
    for t in range(z.shape[1]):
        out = m.step(z[:, t], a[:, t], state)
        assert torch.equal(out.write, seq.write[:, t])
        assert torch.equal(out.action, seq.action[:, t])  # bit for bit, as with the linear read-out
        state = out.state
    assert torch.equal(state, seq.state)
    # the MLP term is really in the action: the linear part alone is something else
    r = m.read(state, m.project(z[:, -1]).q)
    assert (out.action - a[:, -1] - m.head(r.flatten(1))).abs().max() > 1e-2


def test_mlp_readout_training_mode_and_fixed_schedule_agree_with_eval():
    m = _mlp_model(dtype=torch.float64)
    z, a = _inputs(dtype=torch.float64)
    sched = torch.rand(3, 40, generator=torch.Generator().manual_seed(2)) < 0.3
    ref = m(z, a, schedule=sched)
    torch.testing.assert_close(m.forward_fixed(z, a, sched).action, ref.action, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(m.train()(z, a, schedule=sched).action, ref.action, rtol=1e-9, atol=1e-9)


def test_mlp_readout_is_trained_and_needs_z():
    m = _mlp_model().train()
    z, a = _inputs(t=10)
    m(z, a).action.pow(2).mean().backward()
    assert m.readout.fc1.weight.grad.abs().sum() > 0 and m.readout.fc2.weight.grad.abs().sum() > 0
    skip = SkipRNNArm(m)  # the Skip-RNN ablation reads through the same read-out
    assert skip(z, a).action.shape == a.shape
    with pytest.raises(ValueError, match="readout 'mlp' needs the features"):
        m.correction(torch.zeros(3, 1, 6))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(readout="deep"), r"AuraMemConfig.readout must be one of \('linear', 'mlp'\), got 'deep'"),
        (dict(readout="mlp", readout_hidden=0), "AuraMemConfig.readout_hidden must be a positive int"),
    ],
)
def test_bad_readout_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AuraMemConfig(d_model=8, **kwargs)


def test_mlp_checkpoint_round_trip_and_old_checkpoints_load_as_linear(tmp_path):
    m = _mlp_model(hidden=12)
    m.save(tmp_path / "mlp")
    doc = json.loads((tmp_path / "mlp" / "config.json").read_text())
    assert doc["config"]["readout"] == "mlp" and doc["config"]["readout_hidden"] == 12
    loaded = AuraMem.load(tmp_path / "mlp")
    assert loaded.config == m.config
    z, a = _inputs()
    for x, y in zip(m(z, a), loaded(z, a)):
        assert torch.equal(x, y)
    # a linear checkpoint's config.json has no read-out fields (as before the option existed) ...
    lin = AuraMem(AuraMemConfig(d_model=24, d_action=5))
    lin.save(tmp_path / "lin")
    doc = json.loads((tmp_path / "lin" / "config.json").read_text())
    assert "readout" not in doc["config"] and "readout_hidden" not in doc["config"]
    assert not any(name.startswith("readout.") for name in lin.state_dict())  # nor new weights
    # ... and a config without them loads as "linear"
    assert AuraMem.load(tmp_path / "lin").config.readout == "linear"
    # a bad value or a config that does not match the weights is a CheckpointError naming the file
    cfg = tmp_path / "mlp" / "config.json"
    good = json.loads(cfg.read_text())
    cfg.write_text(json.dumps(dict(good, config=dict(good["config"], readout="deep"))))
    with pytest.raises(
        CheckpointError, match=r"config.json: bad config: AuraMemConfig.readout must be one of"
    ):
        AuraMem.load(tmp_path / "mlp")
    cfg.write_text(json.dumps(dict(good, config=dict(good["config"], readout="linear"))))
    with pytest.raises(CheckpointError, match=r"unexpected \['readout.fc1.bias'"):
        AuraMem.load(tmp_path / "mlp")


def _goal_times_state(tmp_path, n=256, t=8, seed=0):
    """A transient instruction: the goal g = +-1 is shown only at t = 0, and the target is a_t* = g x_t, where
    x_t (2-d, fresh each step) is in z_t. Without the memory the best guess is 0 (MSE 1: E[g x | x] = 0)."""
    rng = np.random.default_rng(seed)
    g = rng.choice([-1.0, 1.0], size=n).astype(np.float32)
    f = np.zeros((n, t, 4), np.float32)
    f[:, 0, 0], f[:, 0, 3] = g, 1.0  # the instruction and a "first step" flag
    f[:, 1:, 1:3] = rng.standard_normal((n, t - 1, 2))
    target = g[:, None, None] * f[:, :, 1:3]
    target[:, 0] = np.nan  # unsupervised
    path = tmp_path / "goal.safetensors"
    save_sequences(path, f, np.zeros((n, t, 2), np.float32), target)
    return path


def test_aura_train_mlp_readout_fits_a_target_that_needs_z_and_the_memory(tmp_path, capsys):
    """With d_val = 1 the linear correction W_c r_t lies on one fixed line of the 2-d action space, so it
    leaves at least half of g x_t's variance (MSE >= 0.5, whatever it learns); the MLP sees z_t and r_t."""
    data = _goal_times_state(tmp_path)
    losses = {}
    for readout in ("linear", "mlp"):
        extra = {"readout_hidden": 32} if readout == "mlp" else {}
        args = train_args(data=data, out=tmp_path / readout, d_key=4, d_val=1, readout=readout,
                          dense_steps=600, gate_steps=0, batch=32, lr=3e-2, val_frac=0.25, quiet=True,
                          **extra)  # fmt: skip
        assert train_cli.run(args) == 0
        m = AuraMem.load(tmp_path / readout)
        assert m.config.readout == readout
        losses[readout] = m.meta["training"]["validation"]["action_loss"]
    assert losses["linear"] > 0.4, losses
    assert losses["mlp"] < 0.2, losses  # below 0.5: it uses z_t; below 1: it uses the memory


def test_aura_train_readout_options_are_checked(tmp_path):
    data = _goal_times_state(tmp_path, n=8)
    with pytest.raises(ValueError, match="--readout-hidden applies only to --readout mlp"):
        train_cli.run(train_args(data=data, out=tmp_path / "a", readout_hidden=8))
    with pytest.raises(ValueError, match="--readout-hidden must be >= 1"):
        train_cli.run(train_args(data=data, out=tmp_path / "a", readout="mlp", readout_hidden=0))
    with pytest.raises(ValueError, match="--arm kv .*--readout"):
        train_cli.run(train_args(data=data, out=tmp_path / "a", arm="kv", readout="mlp"))
    AuraMem(AuraMemConfig(d_model=4, d_action=2)).save(tmp_path / "lin")
    with pytest.raises(ValueError, match="--readout mlp: the --init .* has readout 'linear'"):
        train_cli.run(train_args(data=data, out=tmp_path / "a", init=tmp_path / "lin", readout="mlp"))
