"""Training loop for every arm: closed-loop action error plus the arm's write cost.

For AuraMem with its learned gate the loss is

    L = E[ l(a_t, a_t*) over supervised steps ] + sparsity * mean_t p_t + budget_w * relu(rate - budget)

where a_t is read from the state the gate's own earlier decisions produced: the straight-through mask
m_t = 1[p_t > tau] + p_t - sg(p_t) mixes S_t = m_t S~_t + (1 - m_t) S_{t-1}, so dL/dm_t =
<dL/dS_t, S~_t - S_{t-1}> is the first-order effect of writing (or not) at t on every later action's error.
l is cross-entropy on logits ("ce", discrete actions, e.g. the synthetic benchmark) or squared error ("mse",
continuous robot actions). Target rows that are NaN are unsupervised.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aura.baselines.arms import AuraArm

LOSSES = ("ce", "mse")


@dataclass
class TrainConfig:
    steps: int = 300
    lr: float = 3e-3
    weight_decay: float = 0.0
    loss: str = "ce"
    grad_clip: float = 1.0
    warmup: int = 20
    seed: int = 0
    log_every: int = 25

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.steps < 1 or self.lr <= 0:
            raise ValueError(f"steps must be >= 1 and lr > 0, got steps={self.steps}, lr={self.lr}")


def action_loss(action: torch.Tensor, target: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Mean loss over supervised steps (target rows without NaN); 0 (with grad) if none are supervised."""
    mask = torch.isfinite(target).all(-1)
    if not mask.any():
        return action.sum() * 0.0
    a, y = action[mask], target[mask]
    if loss == "ce":
        return F.cross_entropy(a, y.argmax(-1))
    return ((a - y) ** 2).mean()


def accuracy(action: torch.Tensor, target: torch.Tensor) -> float:
    mask = torch.isfinite(target).all(-1)
    if not mask.any():
        return float("nan")
    return (action[mask].argmax(-1) == target[mask].argmax(-1)).float().mean().item()


def fit(
    arm: nn.Module,
    batches: Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | Iterator,
    cfg: TrainConfig,
    params=None,
    desc: str = "train",
    progress: bool = True,
    log_path: Path | None = None,
) -> list[dict]:
    """Train ``arm`` (forward(z, base) -> ArmOutput) on ``batches(step) -> (z, base, target)``.

    Adam with linear warm-up and cosine decay; prints a tqdm bar; returns (and appends as JSONL to
    ``log_path``) one record every ``log_every`` steps.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    params = [p for p in (params if params is not None else arm.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    history: list[dict] = []
    arm.train()
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, leave=False, mininterval=2.0)
    t0 = time.perf_counter()
    run = {"loss": 0.0, "acc": 0.0, "writes": 0.0, "n": 0}
    for step in bar:
        z, base, target = batches(step) if callable(batches) else next(batches)
        out = arm(z, base)
        l_act = action_loss(out.action, target, cfg.loss)
        loss = l_act if out.penalty is None else l_act + out.penalty
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: non-finite loss at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        run["loss"] += l_act.item()
        run["acc"] += accuracy(out.action.detach(), target) if cfg.loss == "ce" else 0.0
        run["writes"] += out.write.float().mean().item()
        run["n"] += 1
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            n = run["n"]
            rec = {
                "step": step + 1,
                "action_loss": run["loss"] / n,
                "train_acc": run["acc"] / n if cfg.loss == "ce" else None,
                "write_rate": run["writes"] / n,
                "lr": sched.get_last_lr()[0],
                "seconds": time.perf_counter() - t0,
            }
            history.append(rec)
            bar.set_postfix(loss=f"{rec['action_loss']:.3f}", wr=f"{rec['write_rate']:.3f}")
            if log_path is not None:
                with open(log_path, "a") as f:
                    f.write(json.dumps({"desc": desc, **rec}) + "\n")
            run = {"loss": 0.0, "acc": 0.0, "writes": 0.0, "n": 0}
    arm.eval()
    return history


def train_memory(
    model,
    batches,
    *,
    dense_steps: int,
    gate_steps: int,
    lr: float,
    gate_lr: float,
    loss: str,
    sparsity: float,
    budget: float | None = None,
    budget_weight: float = 1.0,
    held_steps: int = 0,
    held_k: int = 1,
    gate_only: bool = False,
    gate_start_logit: float | None = None,
    seed: int = 0,
    progress: bool = True,
    log_path: Path | None = None,
) -> None:
    """The phases of ``aura train`` on one AuraMem, in place.

    (1) ``dense_steps`` with every step written (chunkwise: trains the memory and the correction head);
    (1b) ``held_steps`` (optional) with writes exactly at t < ``held_k``, at the phase-1 lr: the read-out
    learns to read a state written at the first steps and held for the rest of the sequence. Phase 1 alone
    never shows it one - S_t then mostly holds the last few steps - so when only the first steps carry the
    goal (the transient instruction) a write there barely changes a dense-trained read-out's action, and
    the gate has nothing to learn to keep;
    (2) ``gate_steps`` with the learned gate in the loop: closed-loop action error + ``sparsity`` * mean p
    + ``budget_weight`` * relu(write rate - ``budget``) (``aura.baselines.arms.AuraArm``); with
    ``gate_only`` only the gate's parameters move, so the gate learns where the read-out of phases 1/1b
    needs a write instead of the read-out re-learning to need none. ``gate_start_logit`` sets the gate's
    output bias before phase 2 (p_t = sigmoid(logit)): the default gate starts open (logit 2) to match a
    dense-trained read-out; after a held phase an open gate overwrites the held state at every step, the
    loss jumps, and the gate closes everywhere (on issue 13's CPU rollouts it ended writing nothing, where
    an undecided start, logit 0, learned the one write at t = 0: docs/layer.md).
    """
    if dense_steps > 0:
        torch.manual_seed(seed)
        fit(
            AuraArm(model, mode="dense"),
            batches,
            TrainConfig(steps=dense_steps, lr=lr, loss=loss, seed=seed),
            desc="dense (always-write)",
            progress=progress,
            log_path=log_path,
        )
    if held_steps > 0:
        torch.manual_seed(seed)
        fit(
            AuraArm(model, mode="prefix", prefix=held_k),
            batches,
            TrainConfig(steps=held_steps, lr=lr, loss=loss, seed=seed),
            desc=f"held (writes at t < {held_k})",
            progress=progress,
            log_path=log_path,
        )
    if gate_steps > 0:
        torch.manual_seed(seed)
        if gate_start_logit is not None:
            model.gate.set_start(gate_start_logit)
        arm = AuraArm(model, mode="gate", sparsity=sparsity, budget=budget, budget_weight=budget_weight)
        arm.generator = torch.Generator().manual_seed(seed)
        fit(
            arm,
            batches,
            TrainConfig(steps=gate_steps, lr=gate_lr, loss=loss, seed=seed),
            params=model.gate.parameters() if gate_only else None,
            desc="gate (closed loop)",
            progress=progress,
            log_path=log_path,
        )


def train_kv(
    model,
    batches,
    *,
    steps: int,
    lr: float,
    loss: str,
    seed: int = 0,
    progress: bool = True,
    log_path: Path | None = None,
) -> None:
    """``aura train --arm kv``: the KV-cache arm (``aura.baselines.kv``) on the same objective, in place.

    It appends (k_t, v_t) at every step and has no gate, so the loss is the closed-loop action error alone:
    ``fit`` with the same ``action_loss`` as AuraMem's phases (one definition of the loss)."""
    if steps > 0:
        torch.manual_seed(seed)
        fit(
            model,
            batches,
            TrainConfig(steps=steps, lr=lr, loss=loss, seed=seed),
            desc="kv (always-write)",
            progress=progress,
            log_path=log_path,
        )


def evaluate(model, z: torch.Tensor, base: torch.Tensor, target: torch.Tensor, loss: str):
    """``(metrics, SeqOutput)`` of ``model`` in eval mode: action loss, write rate, writes per sequence, and
    ``base_action_loss``: the same loss of a_t^base alone (no memory), the bar a correction must not cross."""
    model.eval()
    with torch.no_grad():
        out = model(z, base)
    rec = {
        "action_loss": float(action_loss(out.action, target, loss)),
        "base_action_loss": float(action_loss(base, target, loss)),
        "write_rate": float(out.write.float().mean()),
        "writes_per_sequence": float(out.write.sum(1).float().mean()),
    }
    if loss == "ce":
        rec["accuracy"] = accuracy(out.action, target)
    return rec, out
