"""The KV-cache arm: full-sequence forward and incremental step against a naive twin, its checkpoint,
the zero head, and `aura train --arm kv`."""

import json

import numpy as np
import pytest
import torch

from aura.baselines.kv import KVAttentionArm
from aura.checkpoint import CheckpointError
from aura.training.data import save_sequences
from cli import train as train_cli

from .conftest import train_args as _args


def _naive(arm: KVAttentionArm, z: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """o_t = sum_{i<=t} softmax_i(s q_t.k_i - lambda (t - i)) v_i; a_t = base_t + W_o o_t + b_o (loops)."""
    W, b = arm.qkv.weight, arm.qkv.bias
    K, V = arm.d_key, arm.d_val
    lam = float(torch.nn.functional.softplus(arm.slope_raw.detach()))
    out = torch.empty_like(base)
    for bi in range(z.shape[0]):
        keys, vals = [], []
        for t in range(z.shape[1]):
            p = W @ z[bi, t] + b
            q, k, v = p[:K], p[K : 2 * K], p[2 * K : 2 * K + V]
            keys.append(k)
            vals.append(v)
            s = torch.stack([q.dot(ki) / K**0.5 - lam * (t - i) for i, ki in enumerate(keys)])
            w = torch.exp(s - s.max())
            w = w / w.sum()
            o = sum(wi * vi for wi, vi in zip(w, vals, strict=True))
            out[bi, t] = base[bi, t] + arm.head.weight @ o
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_and_step_equal_the_naive_twin(seed):
    torch.manual_seed(seed)
    arm = KVAttentionArm(5, 3, d_key=4, d_val=6).double()
    with torch.no_grad():
        arm.slope_raw.fill_(float(torch.randn(())))  # a non-trivial recency slope
    z, base = torch.randn(2, 70, 5, dtype=torch.float64), torch.randn(2, 70, 3, dtype=torch.float64)
    ref = _naive(arm, z, base)
    with torch.no_grad():
        full = arm(z, base)
        cache = arm.init_cache(2, dtype=torch.float64)
        steps = [arm.step(z[:, t], base[:, t], cache)[0] for t in range(70)]  # 70 > 64: the buffers grow
    torch.testing.assert_close(full.action, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.stack(steps, 1), ref, rtol=1e-10, atol=1e-10)
    assert cache.length == 70 and cache.keys.shape == (2, 70, 4) and full.write.all()


def test_bytes_zero_head_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    arm = KVAttentionArm(8, 7)
    assert arm.config.bytes_per_step == 256 and arm.bytes_at(520) == 520 * 256
    z, base = torch.randn(1, 9, 8), torch.randn(1, 9, 7)
    with torch.no_grad():
        assert torch.equal(arm(z, base).action, base)  # a fresh arm is the base policy
        torch.nn.init.normal_(arm.head.weight)
        assert not torch.equal(arm(z, base).action, base)  # a trained head moves the action
        arm.save(tmp_path / "kv", meta={"training": {"steps": 1}})
        back = KVAttentionArm.load(tmp_path / "kv")
        torch.testing.assert_close(back(z, base).action, arm(z, base).action, rtol=0, atol=0)
        assert back.meta["training"]["steps"] == 1 and len(back.weights_sha256) == 64
        assert torch.equal(KVAttentionArm(8, 7)(z, base).action, base)
    raw = (tmp_path / "kv" / "model.safetensors").read_bytes()
    (tmp_path / "kv" / "model.safetensors").write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="sha256"):
        KVAttentionArm.load(tmp_path / "kv")


def test_aura_train_arm_kv_learns_and_writes_a_loadable_checkpoint(tmp_path, capsys):
    # target = base + the first step's features (marked by feature 5): only a memory can predict it
    rng = np.random.default_rng(0)
    f = rng.standard_normal((24, 12, 6)).astype(np.float32)
    f[:, :, 5] = 0.0
    f[:, 0, 5] = 3.0
    base = rng.standard_normal((24, 12, 2)).astype(np.float32)
    tgt = np.full((24, 12, 2), np.nan, np.float32)
    tgt[:, 1:] = base[:, 1:] + f[:, :1, :2]
    data = tmp_path / "d.safetensors"
    save_sequences(data, f, base, tgt)
    common = dict(data=data, arm="kv", d_key=8, d_val=8, batch=8, val_frac=0.25, lr=0.01, quiet=True)
    assert train_cli.run(_args(out=tmp_path / "k0", kv_steps=0, **common)) == 0
    assert train_cli.run(_args(out=tmp_path / "k1", kv_steps=150, **common)) == 0
    untrained = KVAttentionArm.load(tmp_path / "k0").meta["training"]["validation"]["action_loss"]
    m = KVAttentionArm.load(tmp_path / "k1")
    rec = m.meta["training"]
    assert m.config.d_model == 6 and m.config.d_action == 2 and rec["arm"] == "kv" and rec["kv_steps"] == 150
    assert rec["validation"]["write_rate"] == 1.0 and rec["validation"]["action_loss"] < 0.2 * untrained
    log = [json.loads(x) for x in (tmp_path / "k1" / "train.jsonl").read_text().splitlines()]
    assert {r["desc"] for r in log} == {"kv (always-write)"}
    with pytest.raises(ValueError, match="--gate-steps"):
        train_cli.run(_args(out=tmp_path / "k2", gate_steps=3, **common))
    with pytest.raises(ValueError, match="--kv-steps applies only"):
        train_cli.run(_args(data=data, out=tmp_path / "k3", kv_steps=3))
