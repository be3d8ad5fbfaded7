"""Train the LIBERO pixel backbone by behaviour cloning on the HDF5 demos of `aura sim demos`.

Writes OUT/config.json + OUT/model.safetensors (the EMA weights, float16: the checkpoint that
`--backbone libero_vla --backbone-arg checkpoint=OUT` and `aura export backbone OUT` read), OUT/train.jsonl
(one line per --log-every steps) and OUT/train_state.* (what --resume continues from). config.json records
the exact command, seed, data recipe (files, demos and frames per task) and the log summary.

--init CKPT fine-tunes an existing checkpoint instead of starting from scratch (a DAgger round:
`--demos DEMOS ROLLOUTS/episodes --init checkpoints/libero-vla`).

--action-head bins (--action-bins N, default 64) trains the binned action head: cross-entropy over
per-dimension quantile bins of the demos' actions, decoded at the most probable bin, so a bimodal expert
(+1 in some demos, -1 in others) gives one of its modes instead of their mean. Default: l1.

--time-limit SECONDS counts from the start of the command (loading included) and stops cleanly with a saved
checkpoint before it; --fit-to-time also re-sizes the cosine schedule to end at that limit. A command killed
anyway loses at most --save-every seconds: rerun it with --resume. See docs/libero_vla.md for the GPU recipe.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

_T0 = time.monotonic()  # before torch is imported: --time-limit covers the whole command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--demos",
        required=True,
        nargs="+",
        help="directories of task*_demo.hdf5 files (or files); several are trained on together, e.g. "
        "demos and `aura sim rollouts --images` episodes (DAgger)",
    )
    parser.add_argument("--out", required=True, help="checkpoint directory to write (and --resume from)")
    parser.add_argument(
        "--steps", type=int, default=None, help="optimizer steps (default 8000, or the resumed total)"
    )
    parser.add_argument("--batch", type=int, default=512, help="batch size (frames)")
    parser.add_argument("--lr", type=float, default=6e-4, help="peak learning rate (AdamW, cosine)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the init, the sampler and augmentation")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to train")
    parser.add_argument("--resume", action="store_true", help="continue from OUT's last saved state")
    parser.add_argument("--time-limit", type=float, default=None, help="stop and save before this many s")
    parser.add_argument("--fit-to-time", action="store_true", help="shorten the schedule to fit --time-limit")
    parser.add_argument("--chunk", type=int, default=None, help="action chunk length K (default 8)")
    parser.add_argument(
        "--action-head",
        default=None,
        choices=("l1", "bins"),
        help="l1: regress the chunk (default); bins: cross-entropy over per-dimension quantile bins, decoded "
        "at the most probable bin (docs/libero_vla.md); --init / --resume: must match the checkpoint's",
    )
    parser.add_argument(
        "--action-bins", type=int, default=None, help="bins per action dimension of --action-head bins (64)"
    )
    parser.add_argument(
        "--max-demos-per-task", type=int, default=None, help="use only the first N demos per file"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="demo decoding threads (default: all cores)"
    )
    parser.add_argument("--warmup", type=int, default=300, help="linear warm-up steps")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decoupled weight decay")
    parser.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights")
    parser.add_argument("--shift", type=int, default=8, help="random-shift augmentation, pixels")
    parser.add_argument("--proprio-noise", type=float, default=0.1, help="noise std on normalised proprio")
    parser.add_argument(
        "--blank-instruction",
        type=float,
        default=0.0,
        metavar="P",
        help="train a fraction P of the samples with the empty instruction (a policy that acts without one)",
    )
    parser.add_argument("--save-every", type=float, default=120.0, help="seconds between saved checkpoints")
    parser.add_argument("--log-every", type=int, default=50, help="steps between train.jsonl lines")
    parser.add_argument("--no-channels-last", action="store_true", help="keep NCHW on CUDA")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the forward (pays only on long runs)"
    )
    parser.add_argument(
        "--init",
        default=None,
        help="fine-tune from this checkpoint directory (its architecture and normalisation statistics)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    parser.add_argument(
        "--model-arg",
        action="append",
        metavar="KEY=VALUE",
        help="override a ModelConfig field (JSON value), e.g. d_model=512",
    )


def _command() -> str:
    argv = list(sys.argv)
    for i in range(len(argv) - 1):
        if argv[i : i + 2] == ["train", "backbone"]:
            return shlex.join(["aura", *argv[i:]])
    return shlex.join(argv)


def run(args: argparse.Namespace) -> int:
    from policies.factory import parse_fields
    from policies.libero_vla.train import TrainConfig, train

    model = parse_fields(args.model_arg, "--model-arg")
    if args.chunk is not None:
        model["chunk"] = args.chunk
    for key in ("action_head", "action_bins"):
        if getattr(args, key) is not None:
            model[key] = getattr(args, key)
    cfg = TrainConfig(
        demos=args.demos[0] if len(args.demos) == 1 else args.demos,
        out=args.out,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        resume=args.resume,
        time_limit=args.time_limit,
        fit_to_time=args.fit_to_time,
        max_demos_per_task=args.max_demos_per_task,
        threads=args.threads,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        ema=args.ema,
        shift=args.shift,
        proprio_noise=args.proprio_noise,
        blank_instruction=args.blank_instruction,
        save_every=args.save_every,
        log_every=args.log_every,
        channels_last=not args.no_channels_last,
        compile=args.compile,
        progress=not args.no_progress,
        model=model,
        init=args.init,
        command=_command(),
    )
    s = train(cfg, t_start=_T0)
    print("| step | of | epochs | final loss | samples/s | load s | wall s | stopped |")
    print("|---|---|---|---|---|---|---|---|")
    nan = float("nan")
    print(
        f"| {s['step']} | {s['total_steps']} | {s['epochs']:.1f} | {s['final_loss'] or nan:.4f} | "
        f"{s.get('samples_per_s', nan):.0f} | {s['load_s']:.1f} | {s['wall_s']:.1f} | {s['stopped']} |"
    )
    print(f"[train] checkpoint: {args.out} (config.json, model.safetensors); log: {args.out}/train.jsonl")
    return 0
