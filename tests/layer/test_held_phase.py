"""The held phase of `aura train` (--held-steps): a read-out of a state written at t < K and held, then a
gate that learns to make exactly those writes - the transient-instruction variant (issue 13) in small."""

import json

import numpy as np
import pytest
import torch

from aura.baselines.arms import AuraArm
from aura.layer import AuraMem, AuraMemConfig
from aura.training.data import save_sequences
from cli import train as train_cli

from .conftest import train_args as _args


def _goal_at_first_step(n: int, t: int, d: int, seed: int):
    """The goal g = +-1 shows in z_0 only (feature 0 = 3 g; feature 1 = 3 marks the step); the target is
    g * (0.5, -0.5) at every step and the base action 0, so every later action needs z_0 remembered."""
    rng = np.random.default_rng(seed)
    g = rng.choice([-1.0, 1.0], size=n).astype(np.float32)
    z = rng.standard_normal((n, t, d)).astype(np.float32)
    z[:, 0, 0] = 3.0 * g
    z[:, 0, 1] = 3.0  # "an instruction is shown": what tells the first step apart, as in LIBERO
    base = np.zeros((n, t, 2), np.float32)
    target = (g[:, None, None] * np.array([0.5, -0.5], np.float32)).repeat(t, 1)
    return z, base, target


def test_the_prefix_arm_writes_exactly_the_first_k_steps():
    torch.manual_seed(0)
    m = AuraMem(AuraMemConfig(d_model=6, d_key=4, d_val=4, d_action=2))
    z, base = torch.randn(3, 10, 6), torch.zeros(3, 10, 2)
    out = AuraArm(m, mode="prefix", prefix=2)(z, base)
    expected = torch.zeros(3, 10, dtype=torch.bool)
    expected[:, :2] = True
    assert torch.equal(out.write, expected)
    ref = m.forward(z, base, schedule=expected)  # the oracle schedule through the recurrent path
    torch.testing.assert_close(out.action, ref.action, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="prefix >= 1"):
        AuraArm(m, mode="prefix", prefix=0)


def test_held_phase_then_the_gate_writes_the_goal_step_only(tmp_path, capsys):
    z, base, target = _goal_at_first_step(96, 24, 8, seed=0)
    data = tmp_path / "goal.safetensors"
    # K recorded in the header as `aura sim features --instruction-steps 1` does; --held-k comes from it
    save_sequences(data, z, base, target, metadata={"aura.features": json.dumps({"instruction_steps": 1})})
    args = _args(
        data=data, out=tmp_path / "ck", d_key=8, d_val=8, dense_steps=60, held_steps=200, gate_steps=200,
        gate_only=True, lr=1e-2, gate_lr=1e-2, batch=16, sparsity=0.1, budget=0.1, quiet=True,
    )  # fmt: skip
    assert train_cli.run(args) == 0
    m = AuraMem.load(tmp_path / "ck")
    rec = m.meta["training"]
    recorded = (rec["held_steps"], rec["held_k"], rec["gate_only"], rec["gate_start_logit"])
    assert recorded == (200, 1, True, 0.0)
    log = [json.loads(x)["desc"] for x in (tmp_path / "ck" / "train.jsonl").read_text().splitlines()]
    assert "held (writes at t < 1)" in log

    zt, bt, yt = (torch.from_numpy(x) for x in _goal_at_first_step(64, 24, 8, seed=1))
    with torch.no_grad():
        out = m.eval()(zt, bt)
    base_err = ((bt - yt) ** 2).mean().item()  # 0.25
    err = ((out.action - yt) ** 2).mean().item()
    writes = out.write.float()
    assert writes[:, 0].mean() > 0.8, writes.sum(1)  # the goal step is written ...
    assert writes[:, 1:].sum(1).mean() < 1.0, writes.sum(1)  # ... and little else
    assert err < 0.3 * base_err, (err, base_err)  # and the held write carries the goal to every step


def test_the_written_steps_come_from_the_data_or_a_clear_error(tmp_path):
    z, base, target = _goal_at_first_step(8, 6, 4, seed=2)
    plain = tmp_path / "plain.safetensors"
    save_sequences(plain, z, base, target)
    common = dict(out=tmp_path / "ck", d_key=4, d_val=4, dense_steps=1, gate_steps=1, batch=4, quiet=True)
    with pytest.raises(ValueError, match=r"plain\.safetensors records no instruction_steps; give --held-k"):
        train_cli.run(_args(data=plain, held_steps=1, **common))
    assert not (tmp_path / "ck").exists()  # refused before anything was written
    with pytest.raises(ValueError, match="--held-k applies only with --held-steps"):
        train_cli.run(_args(data=plain, held_k=2, **common))
    with pytest.raises(ValueError, match="--held-k must be >= 1"):
        train_cli.run(_args(data=plain, held_steps=1, held_k=0, **common))
    other = tmp_path / "k3.safetensors"
    meta = {"aura.rollouts": json.dumps({"args": {"instruction_steps": 3}})}  # as `aura sim rollouts` writes
    save_sequences(other, z, base, target, metadata=meta)
    k1 = tmp_path / "k1.safetensors"
    save_sequences(k1, z, base, target, metadata={"aura.features": json.dumps({"instruction_steps": 1})})
    both = _args(data=other, held_steps=1, **common)
    both.data.append(str(k1))  # --data other --data k1
    with pytest.raises(ValueError, match="disagree on instruction_steps"):
        train_cli.run(both)
    assert train_cli.run(_args(data=other, held_steps=1, **common)) == 0
    assert AuraMem.load(tmp_path / "ck").meta["training"]["held_k"] == 3


def test_gate_margin_widens_the_goal_steps_margin(tmp_path):
    """--gate-margin 0.2 (threshold tau + U(-0.2, 0.2) while the gate trains): on held-out sequences every
    goal step is written with p_0 well over tau, where the same recipe without it leaves p_0 at tau's edge."""
    z, base, target = _goal_at_first_step(96, 24, 8, seed=0)
    data = tmp_path / "goal.safetensors"
    save_sequences(data, z, base, target, metadata={"aura.features": json.dumps({"instruction_steps": 1})})
    zt, bt, _ = (torch.from_numpy(x) for x in _goal_at_first_step(64, 24, 8, seed=1))
    p0, writes = {}, {}
    for margin in (0.0, 0.2):
        out_dir = tmp_path / f"ck{margin}"
        args = _args(
            data=data, out=out_dir, d_key=8, d_val=8, dense_steps=60, held_steps=200, gate_steps=200,
            gate_only=True, lr=1e-2, gate_lr=1e-2, batch=16, sparsity=0.1, budget=0.1, gate_margin=margin,
            quiet=True,
        )  # fmt: skip
        assert train_cli.run(args) == 0
        m = AuraMem.load(out_dir)
        assert m.config.train_margin == margin
        with torch.no_grad():
            out = m.eval()(zt, bt)
        p0[margin], writes[margin] = out.gate_prob[:, 0].min().item(), out.write.float()
    assert writes[0.2][:, 0].all() and p0[0.2] > 0.6, p0
    assert p0[0.2] > p0[0.0] + 0.1, p0
    assert writes[0.2][:, 1:].sum(1).mean() < 0.5, writes[0.2].sum(1)


def test_gate_margin_given_with_init_replaces_the_checkpoints(tmp_path):
    z, base, target = _goal_at_first_step(8, 6, 4, seed=3)
    data = tmp_path / "goal.safetensors"
    save_sequences(data, z, base, target)
    common = dict(data=data, d_key=4, d_val=4, dense_steps=1, gate_steps=1, batch=4, quiet=True)
    assert train_cli.run(_args(out=tmp_path / "a", gate_margin=0.1, **common)) == 0
    assert train_cli.run(_args(out=tmp_path / "b", init=tmp_path / "a", **common)) == 0
    assert AuraMem.load(tmp_path / "b").config.train_margin == 0.1  # not given: the checkpoint's
    assert train_cli.run(_args(out=tmp_path / "c", init=tmp_path / "a", gate_margin=0.3, **common)) == 0
    assert AuraMem.load(tmp_path / "c").config.train_margin == 0.3
    with pytest.raises(ValueError, match="train_margin"):
        train_cli.run(_args(out=tmp_path / "d", init=tmp_path / "a", gate_margin=0.5, **common))
