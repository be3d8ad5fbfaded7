"""``aura train``: train AuraMem's memory and write gate from (features, base actions, target actions).

Two phases share one model: (1) ``--dense-steps`` with every step written (chunkwise, trains the memory
and correction head); (2) ``--gate-steps`` with the learned action-surprise gate in the loop (closed-loop
action error + ``--sparsity`` * mean p + ``--budget-weight`` * relu(write rate - ``--budget``)).
Data: ``--data FILE`` (see ``aura.training.data``) or ``--synthetic easy|hard`` (fresh benchmark episodes).
Writes ``OUT/model.safetensors``, ``OUT/config.json`` (with the training record in ``meta``) and
``OUT/train.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="safetensors / HDF5 with features, base_actions, target_actions")
    src.add_argument("--synthetic", choices=("easy", "hard"), help="train on the synthetic benchmark")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--init", default=None, help="start from this checkpoint (its config wins)")
    parser.add_argument("--d-key", type=int, default=32)
    parser.add_argument("--d-val", type=int, default=32)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--rule", default="gdn2", choices=("gdn2", "kda", "gdn", "deltanet"))
    parser.add_argument("--estimator", default="st", choices=("st", "gumbel"))
    parser.add_argument("--loss", default=None, choices=("ce", "mse"), help="default: ce synthetic, mse data")
    parser.add_argument("--dense-steps", type=int, default=None, help="phase 1 steps (default: bench budget)")
    parser.add_argument("--gate-steps", type=int, default=None, help="phase 2 steps (default: bench budget)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--gate-lr", type=float, default=None)
    parser.add_argument("--sparsity", type=float, default=None, help="weight of mean write probability")
    parser.add_argument("--budget", type=float, default=None, help="target write rate per step (0..1)")
    parser.add_argument("--budget-weight", type=float, default=1.0)
    parser.add_argument("--val-frac", type=float, default=0.1, help="--data: held-out fraction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _evaluate(model, z, base, target, loss: str) -> dict:
    import torch

    from aura.training.train import accuracy, action_loss

    model.eval()
    with torch.no_grad():
        out = model(z, base)
    rec = {
        "action_loss": float(action_loss(out.action, target, loss)),
        "write_rate": float(out.write.float().mean()),
        "writes_per_sequence": float(out.write.sum(1).float().mean()),
    }
    if loss == "ce":
        rec["accuracy"] = accuracy(out.action, target)
    return rec, out


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from aura.baselines.arms import AuraArm
    from aura.layer import AuraMem, AuraMemConfig
    from aura.training.train import TrainConfig, fit
    from sim.synthetic.arms import Budget

    if args.budget is not None and not 0.0 <= args.budget <= 1.0:
        raise ValueError(f"--budget must be a write rate in [0, 1], got {args.budget}")
    torch.set_num_threads(args.threads)
    b = Budget()
    batch = args.batch or b.batch
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "train.jsonl"
    log_path.write_text("")
    extra: dict = {}
    if args.synthetic:
        from sim.synthetic.arms import to_torch
        from sim.synthetic.config import N_SYMBOLS, get_config
        from sim.synthetic.generator import DISTRACTOR, EVENT, generate

        cfg = get_config(args.synthetic)
        d_model, d_action, loss = cfg.d_model, N_SYMBOLS, args.loss or "ce"

        def batches(step):  # the same stream as `aura bench synthetic` seed args.seed
            return to_torch(generate(cfg, batch, seed=args.seed * 1_000_003 + step))

        test = generate(cfg, b.test_episodes, seed=10**9 + args.seed)
        val = to_torch(test)
        extra["synthetic"] = asdict(cfg)
    else:
        from aura.training.data import NAMES, SequenceSampler, load_sequences

        arrays = load_sequences(args.data)
        n = arrays["features"].shape[0]
        rng = np.random.default_rng(args.seed)
        perm = rng.permutation(n)
        n_val = int(round(args.val_frac * n)) if n > 1 else 0
        val_idx, tr_idx = perm[:n_val], perm[n_val:]
        train_arrays = {k: v[tr_idx] for k, v in arrays.items()}
        batches = SequenceSampler(train_arrays, batch, seed=args.seed)
        val = tuple(torch.from_numpy(arrays[k][val_idx]) for k in NAMES) if n_val else None
        d_model, d_action = arrays["features"].shape[2], arrays["base_actions"].shape[2]
        loss = args.loss or "mse"
        extra["data"] = str(args.data)

    if args.init:
        model = AuraMem.load(args.init)
        if (model.config.d_model, model.config.d_action) != (d_model, d_action):
            raise ValueError(
                f"--init {args.init}: d_model/d_action {model.config.d_model}/{model.config.d_action}"
                f" do not match the data's {d_model}/{d_action}"
            )
    else:
        torch.manual_seed(args.seed)
        model = AuraMem(
            AuraMemConfig(d_model=d_model, d_key=args.d_key, d_val=args.d_val, d_action=d_action,
                          heads=args.heads, rule=args.rule, estimator=args.estimator)
        )  # fmt: skip
    dense_steps = b.dense_steps if args.dense_steps is None else args.dense_steps
    gate_steps = b.gate_steps if args.gate_steps is None else args.gate_steps
    lr, gate_lr = args.lr or b.lr, args.gate_lr or b.gate_lr
    sparsity = b.sparsity if args.sparsity is None else args.sparsity
    t0 = time.perf_counter()
    show = not args.quiet
    if dense_steps > 0:
        torch.manual_seed(args.seed)
        tcfg = TrainConfig(steps=dense_steps, lr=lr, loss=loss, seed=args.seed)
        fit(AuraArm(model, mode="dense"), batches, tcfg,
            desc="dense (always-write)", progress=show, log_path=log_path)  # fmt: skip
    if gate_steps > 0:
        torch.manual_seed(args.seed)
        arm = AuraArm(
            model, mode="gate", sparsity=sparsity, budget=args.budget, budget_weight=args.budget_weight
        )
        arm.generator = torch.Generator().manual_seed(args.seed)
        fit(arm, batches, TrainConfig(steps=gate_steps, lr=gate_lr, loss=loss, seed=args.seed),
            desc="gate (closed loop)", progress=show, log_path=log_path)  # fmt: skip
    seconds = time.perf_counter() - t0
    record = {"seconds": seconds, "dense_steps": dense_steps, "gate_steps": gate_steps, "batch": batch,
              "lr": lr, "gate_lr": gate_lr, "sparsity": sparsity, "budget": args.budget, "loss": loss,
              "seed": args.seed, **extra}  # fmt: skip
    if val is not None:
        metrics, out = _evaluate(model, *val, loss)
        if args.synthetic:
            w = out.write.numpy()
            metrics["write_frac_event"] = float(w[test.kind == EVENT].mean())
            metrics["write_frac_distractor"] = float(w[test.kind == DISTRACTOR].mean())
        record["validation"] = metrics
    model.save(out_dir, meta={"training": record})
    print(json.dumps(record.get("validation", {}), indent=2))
    print(f"trained in {seconds:.0f} s; checkpoint: {out_dir}/model.safetensors + config.json")
    return 0
