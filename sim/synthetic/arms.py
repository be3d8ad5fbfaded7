"""Train and evaluate every memory arm on one (config, seed): the work unit of ``aura bench synthetic``.

Work is shared: the always-write GDN-2 memory is trained once (chunkwise); AURA and the Skip-RNN gate
start from it; the oracle, random and periodic arms replay AURA's trained memory on fixed schedules
(random and periodic get, per test episode, exactly as many writes as AURA made on it; ``aura.schedules``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from aura.baselines.arms import AuraArm, SkipRNNArm
from aura.baselines.gru import GRUArm
from aura.baselines.kv import KVAttentionArm
from aura.baselines.stream import ThreeGateStream
from aura.layer import AuraMem, AuraMemConfig
from aura.schedules import budget_matched
from aura.training.train import TrainConfig, fit
from sim.synthetic.config import N_SYMBOLS, SyntheticConfig
from sim.synthetic.generator import DISTRACTOR, EVENT, Episodes, generate

KV_LONG_STEPS = 100_000


@dataclass
class Budget:
    """Training steps per arm (batch ``batch``); ``quick`` is the CI-sized variant."""

    batch: int = 32
    dense_steps: int = 400
    gate_steps: int = 120
    skip_steps: int = 60
    gru_steps: int = 300
    kv_steps: int = 400
    stream_steps: int = 150
    test_episodes: int = 512
    lr: float = 1e-2
    gate_lr: float = 1e-2
    sparsity: float = 1.0
    skip_cost: float = 1.0
    stream_lr: float = 1e-2

    @classmethod
    def quick(cls) -> Budget:
        return cls(
            batch=16, dense_steps=40, gate_steps=10, skip_steps=5, gru_steps=30, kv_steps=30, stream_steps=10,
            test_episodes=48,
        )  # fmt: skip


def to_torch(ep: Episodes):
    z = torch.from_numpy(ep.features)
    return z, torch.zeros(*z.shape[:2], N_SYMBOLS), torch.from_numpy(ep.target_actions())


def aura_config(cfg: SyntheticConfig) -> AuraMemConfig:
    return AuraMemConfig(d_model=cfg.d_model, d_key=32, d_val=32, d_action=N_SYMBOLS)


def _query_acc(action: torch.Tensor, ep: Episodes) -> float:
    q = ep.target >= 0
    return float((action.argmax(-1).numpy()[q] == ep.target[q]).mean())


def _mean_on(x: np.ndarray | None, mask: np.ndarray) -> float | None:
    return None if x is None or not mask.any() else float(np.nanmean(x[mask]))


def run_seed(cfg: SyntheticConfig, seed: int, budget: Budget, progress: bool = False, save_dir=None) -> dict:
    """All arms on one seed; returns {arm: metrics} plus timings. Fresh training batches per step."""
    torch.set_num_threads(1)
    b = budget

    def batches(step: int):
        return to_torch(generate(cfg, b.batch, seed=seed * 1_000_003 + step))

    test = generate(cfg, b.test_episodes, seed=10**9 + seed)
    zt, bt, _ = to_torch(test)
    kind = test.kind
    n = cfg.horizon
    results: dict[str, dict] = {}
    timings: dict[str, float] = {}

    def record(name, out, state_bytes, train_s, kv=False):
        write = out.write.numpy()
        prob = None if out.gate_prob is None else out.gate_prob.numpy()
        results[name] = {
            "accuracy": _query_acc(out.action, test),
            "writes_per_episode": float(write.sum(1).mean()),
            "state_bytes": state_bytes,
            "kv_bytes_at_N": 256 * n if kv else None,
            "kv_bytes_at_100k": 256 * KV_LONG_STEPS if kv else None,
            "p_write_event": _mean_on(prob, kind == EVENT),
            "p_write_distractor": _mean_on(prob, kind == DISTRACTOR),
            "write_frac_event": _mean_on(write.astype(float), kind == EVENT),
            "write_frac_distractor": _mean_on(write.astype(float), kind == DISTRACTOR),
            "train_seconds": train_s,
        }

    def train(name, arm, steps, lr, **kw):
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        fit(arm, batches, TrainConfig(steps=steps, lr=lr, seed=seed), desc=f"{cfg.name}/{seed}/{name}",
            progress=progress, **kw)  # fmt: skip
        timings[name] = time.perf_counter() - t0
        return timings[name]

    torch.manual_seed(seed)
    mem = AuraMem(aura_config(cfg))
    dense = AuraArm(mem, mode="dense")
    t_dense = train("always-write", dense, b.dense_steps, b.lr)
    with torch.no_grad():
        record("always-write", dense(zt, bt), mem.config.state_bytes, t_dense)

    aura = AuraArm(copy.deepcopy(mem), mode="gate", sparsity=b.sparsity)
    t_gate = train("aura", aura, b.gate_steps, b.gate_lr)
    with torch.no_grad():
        out = aura(zt, bt)
        record("aura", out, mem.config.state_bytes, t_dense + t_gate)
        aura_writes = out.write.sum(1).numpy()
        oracle = torch.from_numpy(kind == EVENT)
        record("oracle", aura(zt, bt, schedule=oracle), mem.config.state_bytes, 0.0)
        rand, per = budget_matched(aura_writes, n, seed)
        record(
            "random (budget-matched)",
            aura(zt, bt, schedule=torch.from_numpy(rand)),
            mem.config.state_bytes,
            0.0,
        )
        record(
            "periodic (budget-matched)",
            aura(zt, bt, schedule=torch.from_numpy(per)),
            mem.config.state_bytes,
            0.0,
        )
    if save_dir is not None:
        aura.model.save(save_dir, meta={"synthetic": asdict(cfg), "seed": seed, "budget": asdict(b),
                                        "test_accuracy": results["aura"]["accuracy"]})  # fmt: skip

    skip = SkipRNNArm(copy.deepcopy(mem), cost=b.skip_cost)
    t_skip = train("skip-rnn", skip, b.skip_steps, b.gate_lr)
    with torch.no_grad():
        record("skip-rnn gate", skip(zt, bt), mem.config.state_bytes + 4, t_dense + t_skip)

    torch.manual_seed(seed)
    gru = GRUArm(cfg.d_model, N_SYMBOLS)
    t = train("gru", gru, b.gru_steps, b.lr)
    with torch.no_grad():
        record("dense GRU", gru(zt, bt), gru.state_bytes, t)

    torch.manual_seed(seed)
    kv = KVAttentionArm(cfg.d_model, N_SYMBOLS)
    t = train("kv", kv, b.kv_steps, b.lr)
    with torch.no_grad():
        record("KV-cache attention", kv(zt, bt), kv.bytes_at(n), t, kv=True)

    torch.manual_seed(seed)
    stream = ThreeGateStream(cfg.d_model, N_SYMBOLS)
    t = train("stream", stream, b.stream_steps, b.stream_lr)
    with torch.no_grad():
        record("three-gate stream", stream(zt, bt), stream.state_bytes, t)
    return {"config": cfg.name, "seed": seed, "horizon": n, "arms": results, "timings": timings}
