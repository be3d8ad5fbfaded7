"""Train AuraMem's memory and write gate from (features, base actions, target actions) sequences.

Two phases share one model: (1) --dense-steps with every step written (chunkwise; trains the memory and the
correction head) [then, with --held-steps N, N steps written at t < --held-k only: a read-out of a state
written at the first steps and held, for goals shown only there]; (2) --gate-steps with the learned
action-surprise gate in the loop (closed-loop action error + --sparsity * mean p + --budget-weight *
relu(write rate - --budget); --gate-only: the gate's parameters alone). Data: --data FILE (safetensors or
HDF5 with features / base_actions / target_actions, e.g. from `aura sim features` or `aura sim rollouts`;
repeatable: the files' sequences are padded to the longest T and pooled, aura.training.data.load_many) or
--synthetic easy|hard (fresh benchmark episodes). Defaults not given come from the synthetic benchmark's
training budget.
Writes OUT/model.safetensors, OUT/config.json (the training record in meta) and OUT/train.jsonl.

--readout mlp (default linear) gives the action a non-linear read-out of the memory read r_t and the current
features z_t (aura.readout): a_t = a_t^base + W_c r_t + W_2 GELU(W_1 [z_t ; r_t] + b_1) + b_2 with
--readout-hidden units, W_c = W_2 = b_2 = 0 at init (so a fresh model returns a_t^base exactly, as with the
paper's linear a_t = a_t^base + W_c r_t). The gate's action-move signals read W_c only. With --init the
checkpoint's read-out is used; a different --readout / --readout-hidden is refused.

--arm kv trains the always-write KV-cache attention baseline (aura.baselines.kv.KVAttentionArm: appends
(k_t, v_t) every step, softmax read with a recency slope) on the same data with the same closed-loop action
loss (aura.training.train.fit / action_loss), for --kv-steps steps at --lr; it has no gate, so the gate
options are refused. Its checkpoint (format aura-kv) loads with KVAttentionArm.load or
`aura eval libero --kv-checkpoint OUT`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from aura.contract import RULES
from aura.readout import READOUTS

ARMS = ("aura", "kv")
# Options that only mean something for AuraMem's memory rule and gate (their defaults when not given).
_AURA_ONLY = dict(
    dense_steps=None, gate_steps=None, gate_lr=None, sparsity=None, budget=None, heads=1, rule="gdn2",
    estimator="st", gate_margin=None, readout=None, readout_hidden=None, held_steps=0, held_k=None,
    gate_only=False, gate_start_logit=None,
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arm", default="aura", choices=ARMS, help="aura: AuraMem + gate; kv: the always-write KV-cache arm"
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--data",
        action="append",
        help="safetensors / HDF5 with features, base_actions, target_actions; repeatable (files of different"
        " T are padded to the longest with NaN targets and pooled)",
    )
    src.add_argument("--synthetic", choices=("easy", "hard"), help="train on the synthetic benchmark")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--init", default=None, help="start from this checkpoint (its config wins)")
    parser.add_argument("--d-key", type=int, default=32, help="key size K per head")
    parser.add_argument("--d-val", type=int, default=32, help="value size V per head")
    parser.add_argument("--heads", type=int, default=1, help="memory heads H")
    parser.add_argument("--rule", default="gdn2", choices=RULES, help="memory rule")
    parser.add_argument(
        "--readout",
        default=None,
        choices=READOUTS,
        help="action read-out: linear a^base + W_c r, or mlp adding W_2 GELU(W_1 [z; r] + b_1) + b_2;"
        " unset: linear, or --init's",
    )
    parser.add_argument(
        "--readout-hidden", type=int, default=None, help="--readout mlp: hidden units; unset: 128"
    )
    parser.add_argument("--estimator", default="st", choices=("st", "gumbel"), help="gate gradient estimator")
    parser.add_argument(
        "--gate-margin",
        type=float,
        default=None,
        help="phase 2 draws each step's threshold from tau + U(-M, M) while training (inference: p_t > tau):"
        " needed writes learn p_t > tau + M, harmful ones p_t < tau - M (docs/layer.md, \"The gate's"
        " margin\"); unset: 0, or --init's",
    )
    parser.add_argument("--loss", default=None, choices=("ce", "mse"), help="default: ce synthetic, mse data")
    parser.add_argument("--dense-steps", type=int, default=None, help="phase 1 steps (default: bench budget)")
    parser.add_argument("--gate-steps", type=int, default=None, help="phase 2 steps (default: bench budget)")
    parser.add_argument(
        "--held-steps",
        type=int,
        default=0,
        help="after phase 1: steps with writes exactly at t < --held-k (a read-out of a held state)",
    )
    parser.add_argument(
        "--held-k",
        type=int,
        default=None,
        help="--held-steps: written steps t < K; unset: the data's instruction_steps (aura sim rollouts /"
        " features --instruction-steps)",
    )
    parser.add_argument(
        "--gate-only",
        action="store_true",
        help="phase 2 trains the gate's parameters only (memory and read-out stay as phase 1 / --held-steps"
        " left them)",
    )
    parser.add_argument(
        "--gate-start-logit",
        type=float,
        default=None,
        help="the gate's output bias before phase 2; unset: 0 (undecided) after --held-steps, else the"
        " gate's own (2, open; --init: the checkpoint's)",
    )
    parser.add_argument("--kv-steps", type=int, default=None, help="--arm kv: steps (default: bench budget)")
    parser.add_argument("--batch", type=int, default=None, help="sequences per step (default: bench budget)")
    parser.add_argument(
        "--lr", type=float, default=None, help="phase 1 learning rate (default: bench budget)"
    )
    parser.add_argument("--gate-lr", type=float, default=None, help="phase 2 learning rate (default: bench)")
    parser.add_argument("--sparsity", type=float, default=None, help="weight of mean write probability")
    parser.add_argument("--budget", type=float, default=None, help="target write rate per step (0..1)")
    parser.add_argument("--budget-weight", type=float, default=1.0, help="weight of the budget overshoot")
    parser.add_argument("--val-frac", type=float, default=0.1, help="--data: held-out fraction")
    parser.add_argument("--seed", type=int, default=0, help="seed of init, batches and gate noise")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _check_args(args: argparse.Namespace) -> None:
    if args.budget is not None and not 0.0 <= args.budget <= 1.0:
        raise ValueError(f"--budget must be a write rate in [0, 1], got {args.budget}")
    if not 0.0 <= args.val_frac < 1.0:
        raise ValueError(f"--val-frac must be in [0, 1), got {args.val_frac}")
    for name in ("d_key", "d_val", "heads", "threads", "batch", "readout_hidden"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.arm == "kv":
        given = [k for k, default in _AURA_ONLY.items() if getattr(args, k) != default]
        if given:
            opts = ", ".join("--" + k.replace("_", "-") for k in given)
            raise ValueError(f"--arm kv writes every step and has no gate: {opts} do(es) not apply")
    elif args.kv_steps is not None:
        raise ValueError("--kv-steps applies only to --arm kv")
    if args.readout_hidden is not None and (args.readout or "linear") == "linear" and not args.init:
        raise ValueError("--readout-hidden applies only to --readout mlp")
    if args.gate_margin is not None and not 0.0 <= args.gate_margin < 1.0:
        # the exact bound, under min(tau, 1 - tau), is AuraMemConfig.train_margin's own check
        raise ValueError(f"--gate-margin must be in [0, 1), got {args.gate_margin}")
    if args.held_k is not None and args.held_k < 1:
        raise ValueError(f"--held-k must be >= 1, got {args.held_k}")
    if args.held_k is not None and not args.held_steps:
        raise ValueError("--held-k applies only with --held-steps N > 0")
    if args.held_steps and args.synthetic:
        raise ValueError("--held-steps needs --data (the written steps come from its instruction_steps)")
    for name in ("dense_steps", "gate_steps", "kv_steps", "held_steps"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    for name in ("lr", "gate_lr"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value}")
    for name in ("sparsity", "budget_weight"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")


def _synthetic_data(name: str, batch: int, seed: int, test_episodes: int):
    from sim.synthetic.arms import to_torch
    from sim.synthetic.config import N_SYMBOLS, get_config
    from sim.synthetic.generator import generate

    cfg = get_config(name)

    def batches(step):  # the same stream as `aura bench synthetic` seed `seed`
        return to_torch(generate(cfg, batch, seed=seed * 1_000_003 + step))

    test = generate(cfg, test_episodes, seed=10**9 + seed)
    return batches, to_torch(test), test, cfg.d_model, N_SYMBOLS, {"synthetic": asdict(cfg)}


def _file_data(paths, batch: int, seed: int, val_frac: float):
    import numpy as np
    import torch

    from aura.training.data import NAMES, SequenceSampler, load_many

    paths = [str(paths)] if isinstance(paths, (str, Path)) else [str(p) for p in paths]
    arrays = load_many(paths)
    n = arrays["features"].shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_frac * n)) if n > 1 else 0
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    batches = SequenceSampler({k: v[tr_idx] for k, v in arrays.items()}, batch, seed=seed)
    val = tuple(torch.from_numpy(arrays[k][val_idx]) for k in NAMES) if n_val else None
    d_model, d_action = arrays["features"].shape[2], arrays["base_actions"].shape[2]
    # one file: its path as before; several: the list, in the order given
    return batches, val, None, d_model, d_action, {"data": paths[0] if len(paths) == 1 else paths}


def _data_instruction_steps(paths) -> int:
    """The instruction_steps K the --data files were recorded with (their safetensors header, as
    ``aura sim rollouts`` / ``aura sim features --instruction-steps K`` write it): one K for all files, or
    an error naming the file that lacks it or disagrees."""
    from sim.libero.features import recorded_settings, sequence_header

    found = {}
    for path in paths:
        k = (recorded_settings(sequence_header(path)) or {}).get("instruction_steps")
        if k is None:
            raise ValueError(f"--held-steps: --data {path} records no instruction_steps; give --held-k K")
        found[str(path)] = int(k)
    if len(set(found.values())) > 1:
        raise ValueError(
            f"--held-steps: the --data files disagree on instruction_steps {found}; give --held-k K"
        )
    return next(iter(found.values()))


def _check_init(path, config, d_model: int, d_action: int) -> None:
    if (config.d_model, config.d_action) != (d_model, d_action):
        raise ValueError(
            f"--init {path}: d_model/d_action {config.d_model}/{config.d_action}"
            f" do not match the data's {d_model}/{d_action}"
        )


def _check_init_readout(args: argparse.Namespace, config) -> None:
    """--init keeps the checkpoint's read-out: a --readout / --readout-hidden that differs is refused."""
    for name in ("readout", "readout_hidden"):
        value = getattr(args, name)
        if value is not None and value != getattr(config, name):
            raise ValueError(
                f"--{name.replace('_', '-')} {value}: the --init {args.init} checkpoint has "
                f"{name} {getattr(config, name)!r} (its config wins)"
            )


def _check_output(path, config, output: str) -> None:
    if config.output != output:
        raise ValueError(f"--init {path}: outputs {config.output!r}, the --data {output!r} targets")


def _kv_model(args: argparse.Namespace, d_model: int, d_action: int, output: str):
    import torch

    from aura.baselines.kv import KVAttentionArm

    if args.init:
        model = KVAttentionArm.load(args.init)  # CheckpointError names the file (and an AuraMem format)
        _check_output(args.init, model.config, output)
        _check_init(args.init, model.config, d_model, d_action)
        return model
    torch.manual_seed(args.seed)
    return KVAttentionArm(d_model, d_action, d_key=args.d_key, d_val=args.d_val, output=output)


def run(args: argparse.Namespace) -> int:
    import torch

    from aura.layer import READOUT_HIDDEN, AuraMem, AuraMemConfig
    from aura.training.train import evaluate, train_kv, train_memory
    from sim.libero.context import data_output
    from sim.synthetic.arms import Budget

    _check_args(args)
    output = "action" if args.synthetic else data_output(args.data)  # sim.libero.context's header
    torch.set_num_threads(args.threads)
    b = Budget()
    batch = args.batch or b.batch
    if args.synthetic:
        batches, val, test, d_model, d_action, extra = _synthetic_data(
            args.synthetic, batch, args.seed, b.test_episodes
        )
        loss = args.loss or "ce"
    else:
        batches, val, test, d_model, d_action, extra = _file_data(args.data, batch, args.seed, args.val_frac)
        loss = args.loss or "mse"
    held_k = args.held_k  # resolved before anything is written to --out
    if args.held_steps and held_k is None:
        held_k = _data_instruction_steps(args.data)
    if args.arm == "kv":
        model = _kv_model(args, d_model, d_action, output)
    elif args.init:
        model = AuraMem.load(args.init)
        _check_output(args.init, model.config, output)
        _check_init(args.init, model.config, d_model, d_action)
        _check_init_readout(args, model.config)
        if args.gate_margin is not None:  # a training choice: given, it replaces the checkpoint's
            model.config = replace(model.config, train_margin=args.gate_margin)  # validated again
    else:
        torch.manual_seed(args.seed)
        model = AuraMem(
            AuraMemConfig(
                d_model=d_model,
                d_key=args.d_key,
                d_val=args.d_val,
                d_action=d_action,
                heads=args.heads,
                rule=args.rule,
                estimator=args.estimator,
                train_margin=args.gate_margin or 0.0,
                readout=args.readout or "linear",
                readout_hidden=args.readout_hidden or READOUT_HIDDEN,
                output=output,
            )
        )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "train.jsonl"
    log_path.write_text("")
    lr = args.lr or b.lr
    t0 = time.perf_counter()
    if args.arm == "kv":
        kv_steps = b.kv_steps if args.kv_steps is None else args.kv_steps
        train_kv(model, batches, steps=kv_steps, lr=lr, loss=loss, seed=args.seed, progress=not args.quiet,
                 log_path=log_path)  # fmt: skip
        steps = {"arm": "kv", "kv_steps": kv_steps, "bytes_per_step": model.config.bytes_per_step}
    else:
        dense_steps = b.dense_steps if args.dense_steps is None else args.dense_steps
        gate_steps = b.gate_steps if args.gate_steps is None else args.gate_steps
        gate_lr = args.gate_lr or b.gate_lr
        sparsity = b.sparsity if args.sparsity is None else args.sparsity
        gate_start = args.gate_start_logit
        if gate_start is None and args.held_steps:
            gate_start = 0.0
        train_memory(
            model,
            batches,
            dense_steps=dense_steps,
            gate_steps=gate_steps,
            lr=lr,
            gate_lr=gate_lr,
            loss=loss,
            sparsity=sparsity,
            budget=args.budget,
            budget_weight=args.budget_weight,
            held_steps=args.held_steps,
            held_k=held_k or 1,
            gate_only=args.gate_only,
            gate_start_logit=gate_start,
            seed=args.seed,
            progress=not args.quiet,
            log_path=log_path,
        )
        steps = {
            "dense_steps": dense_steps,
            **({"held_steps": args.held_steps, "held_k": held_k} if args.held_steps else {}),
            "gate_steps": gate_steps,
            **({"gate_only": True} if args.gate_only else {}),
            **({"gate_start_logit": gate_start} if gate_start is not None else {}),
            "gate_lr": gate_lr,
            "sparsity": sparsity,
            "budget": args.budget,
        }
    seconds = time.perf_counter() - t0
    record = {
        "seconds": seconds,
        **steps,
        "batch": batch,
        "lr": lr,
        "loss": loss,
        "seed": args.seed,
        **extra,
    }
    if val is not None:
        metrics, out = evaluate(model, *val, loss)
        if test is not None:
            from sim.synthetic.generator import DISTRACTOR, EVENT

            w = out.write.numpy()
            metrics["write_frac_event"] = float(w[test.kind == EVENT].mean())
            metrics["write_frac_distractor"] = float(w[test.kind == DISTRACTOR].mean())
        record["validation"] = metrics
    model.save(out_dir, meta={"training": record})
    print(json.dumps(record.get("validation", {}), indent=2))
    v = record.get("validation", {})
    if v.get("action_loss", 0.0) > v.get("base_action_loss", float("inf")):
        print(
            f"warning: held-out action error {v['action_loss']:.4g} is above the base action's "
            f"{v['base_action_loss']:.4g}: this checkpoint's correction makes actions worse than no memory"
        )
    print(f"trained in {seconds:.0f} s; checkpoint: {out_dir}/model.safetensors + config.json")
    return 0
