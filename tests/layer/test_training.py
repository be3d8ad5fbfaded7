"""Gate training: masked action loss, the write budget is respected, chunked fixed schedules, `aura train`."""

import json

import numpy as np
import pytest
import torch

from aura.baselines.arms import AuraArm
from aura.layer import AuraMem, AuraMemConfig
from aura.training.data import load_sequences, save_sequences
from aura.training.train import TrainConfig, action_loss, fit
from cli import train as train_cli

from .conftest import train_args as _args


def test_action_loss_ignores_unsupervised_rows():
    a = torch.randn(2, 5, 3)
    y = torch.full((2, 5, 3), float("nan"))
    y[0, 2] = torch.tensor([0.0, 1.0, 0.0])
    y[1, 4] = torch.tensor([1.0, 0.0, 0.0])
    ce = action_loss(a, y, "ce")
    ref = torch.nn.functional.cross_entropy(torch.stack([a[0, 2], a[1, 4]]), torch.tensor([1, 0]))
    torch.testing.assert_close(ce, ref)
    mse = action_loss(a, y, "mse")
    torch.testing.assert_close(mse, ((torch.stack([a[0, 2], a[1, 4]]) - y[[0, 1], [2, 4]]) ** 2).mean())
    assert action_loss(a, torch.full_like(y, float("nan"))).item() == 0.0


def test_training_respects_the_write_budget():
    torch.manual_seed(0)
    m = AuraMem(AuraMemConfig(d_model=8, d_key=4, d_val=4, d_action=2))
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 24, 8, generator=g)
    base = torch.zeros(64, 24, 2)
    target = torch.randn(64, 24, 2, generator=g)

    def batches(step):
        idx = torch.randperm(64, generator=torch.Generator().manual_seed(step))[:16]
        return z[idx], base[idx], target[idx]

    assert m(z, base).write.float().mean() > 0.8  # the fresh gate writes nearly always
    arm = AuraArm(m, mode="gate", budget=0.2, budget_weight=5.0)
    fit(arm, batches, TrainConfig(steps=60, lr=0.05, loss="mse", warmup=1), progress=False)
    rate = m.eval()(z, base).write.float().mean().item()
    assert rate <= 0.2 + 0.05, rate


def test_fixed_schedule_chunked_path_equals_the_recurrent_one():
    torch.manual_seed(0)
    m = AuraMem(AuraMemConfig(d_model=12, d_key=8, d_val=8, d_action=3)).double().eval()
    with torch.no_grad():
        m.head.weight.normal_()
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 150, 12, generator=g, dtype=torch.float64)
    a = torch.randn(2, 150, 3, generator=g, dtype=torch.float64)
    sched = torch.rand(2, 150, generator=g) < 0.2
    s0 = torch.randn(2, *m.config.state_shape, dtype=torch.float64) * 0.1
    ref = m.forward(z, a, s0, schedule=sched)
    out = m.forward_fixed(z, a, sched, s0)
    assert torch.equal(out.write, ref.write)
    torch.testing.assert_close(out.action, ref.action, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out.state, ref.state, rtol=1e-9, atol=1e-9)


def test_aura_train_on_a_data_file_writes_a_loadable_checkpoint(tmp_path, capsys):
    rng = np.random.default_rng(0)
    f = rng.standard_normal((12, 20, 6)).astype(np.float32)
    base = rng.standard_normal((12, 20, 2)).astype(np.float32)
    tgt = np.full((12, 20, 2), np.nan, np.float32)
    tgt[:, ::4] = base[:, ::4] + 1.0
    data = tmp_path / "d.safetensors"
    save_sequences(data, f, base, tgt)
    args = _args(
        data=data, out=tmp_path / "ck", d_key=4, d_val=4, dense_steps=3, gate_steps=2, batch=4, quiet=True
    )
    assert train_cli.run(args) == 0
    m = AuraMem.load(tmp_path / "ck")
    assert m.config.d_model == 6 and m.config.d_action == 2
    assert m.meta["training"]["validation"]["action_loss"] >= 0
    log = [json.loads(x) for x in (tmp_path / "ck" / "train.jsonl").read_text().splitlines()]
    assert {r["desc"] for r in log} == {"dense (always-write)", "gate (closed loop)"}


def test_aura_train_reports_the_base_action_error_and_warns_when_the_correction_is_worse(tmp_path, capsys):
    # Targets are the base action plus noise that no feature predicts: the base is the best held-out answer,
    # and a correction fitted hard to the training noise is worse (the LIBERO panel's failure, in small).
    rng = np.random.default_rng(1)
    f = rng.standard_normal((40, 16, 6)).astype(np.float32)
    base = rng.standard_normal((40, 16, 2)).astype(np.float32)
    tgt = base + rng.standard_normal((40, 16, 2)).astype(np.float32)
    data = tmp_path / "d.safetensors"
    save_sequences(data, f, base, tgt)
    args = _args(
        data=data,
        out=tmp_path / "ck",
        d_key=8,
        d_val=8,
        dense_steps=150,
        gate_steps=0,
        batch=8,
        lr=3e-2,
        val_frac=0.25,
        quiet=True,
    )
    assert train_cli.run(args) == 0
    v = AuraMem.load(tmp_path / "ck").meta["training"]["validation"]
    assert 0.5 < v["base_action_loss"] < 1.5  # the held-out base error is that of unit noise (mse)
    assert v["action_loss"] > v["base_action_loss"]
    assert "warning: held-out action error" in capsys.readouterr().out


def test_bad_training_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_sequences(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_sequences(bad)
    f = np.zeros((2, 5, 3), np.float32)
    save_sequences(bad, f, np.zeros((2, 5, 2), np.float32), np.zeros((2, 4, 2), np.float32))
    with pytest.raises(ValueError, match="shapes disagree"):
        load_sequences(bad)
    save_sequences(bad, f, np.zeros((2, 5, 2), np.float32), np.full((2, 5, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="no supervised"):
        load_sequences(bad)
