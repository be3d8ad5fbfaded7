"""Behaviour cloning of the LIBERO pixel policy on scripted-expert demos (``aura train backbone``).

Objective: for a frame t of a demo, the L1 loss of the normalised action chunk over the steps still inside
the episode (OpenVLA-OFT's L1 head, ACT's padding mask),

    L = sum_{k<K, t+k<T} |Â_t[k] - (a_t+k - mu_a) / sigma_a|_1 / (7 |{k < K: t+k < T}|).

With the binned head (model ``action_head="bins"``, ``bins.py``) the same masks weight a cross-entropy
instead: each target a_t+k,d's quantile bin against the head's logits [K, 7, B]; the bins are fitted once on
the training targets, like the normalisation statistics.

Data (``batches.py``): every frame of every demo and the chunk targets live on the device; a step gathers a
random batch with a random shift augmentation (DrQ) in one indexing kernel, so no data-loader process exists.
Proprio noise: N(0, ``proprio_noise``) on the normalised proprio features.

Optimisation: AdamW (decoupled weight decay on matrices and conv kernels only), linear warm-up, cosine decay
to 0.01 lr, grad-norm clip 1, an EMA of the weights (decay min(ema, (1+s)/(10+s))) which is what is saved and
deployed; bf16 autocast + channels-last on CUDA.

Fine-tuning (``init``): the network starts from a checkpoint's weights and keeps its normalisation
statistics and bins (the weights were fitted under them) and its action head (an ``action_head`` /
``action_bins`` override that differs is an error naming the option), e.g. a DAgger round on
``aura sim rollouts --images`` episodes, whose unlabelled frames (NaN actions) are masked out of every
chunk target.

Time: ``time_limit`` (seconds from the start of the command, loading included) stops cleanly with a saved
checkpoint before it; ``fit_to_time`` re-sizes the cosine horizon once, after ~60 measured steps, so that the
schedule ends at the limit (longer or shorter than ``steps``, which is then only the first guess).
Checkpoints (EMA weights, ``checkpoint.py``) and the resume state (``trainstate.py``) are written every
``save_every`` s, so a killed command loses at most that; ``resume`` continues the step count, schedule and
EMA. ``train.jsonl`` logs every ``log_every`` steps.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from policies.libero_vla.batches import DeviceData, fit_stats
from policies.libero_vla.bins import bins_loss
from policies.libero_vla.checkpoint import save_checkpoint
from policies.libero_vla.data import load_demos
from policies.libero_vla.model import LiberoVLANet, ModelConfig, count_parameters
from policies.libero_vla.trainstate import load_train_state, read_train_info, save_train_state

DEFAULT_STEPS = 8000
# The time limit keeps 2 saves + 3 steps + SAFETY_S in reserve (the guesses until a save and steps are timed).
SAVE_GUESS_S, STEP_GUESS_S, SAFETY_S = 3.0, 1.0, 5.0


@dataclass
class TrainConfig:
    """One ``aura train backbone`` run (module docstring); ``model`` overrides ModelConfig fields."""

    demos: str | list[str]  # one directory or file, or several (demos and DAgger rollouts together)
    out: str
    steps: int | None = None  # None: DEFAULT_STEPS, or the resumed run's total
    batch: int = 512
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup: int = 300
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    time_limit: float | None = None
    fit_to_time: bool = False
    ema: float = 0.999
    shift: int = 8
    proprio_noise: float = 0.1
    blank_instruction: float = 0.0  # P(a sample's instruction is "") - a policy that acts without one
    max_demos_per_task: int | None = None
    threads: int | None = None
    log_every: int = 50
    save_every: float = 120.0
    channels_last: bool = True
    compile: bool = False
    progress: bool = True
    model: dict = field(default_factory=dict)
    init: str | None = None  # checkpoint directory to fine-tune from (its architecture and statistics)
    command: str = ""


HEAD_OPTIONS = {"action_head": "--action-head", "action_bins": "--action-bins"}


def _check_head(model: dict, fields: dict, where: str) -> dict:
    """``model`` without the head options, which must agree with ``fields`` (the checkpoint's or the
    resumed run's model config; an older one has no ``action_head``: "l1"); a mismatch names the option."""
    model = dict(model)
    defaults = ModelConfig.__dataclass_fields__
    have = {k: fields.get(k, defaults[k].default) for k in HEAD_OPTIONS}
    for key, option in HEAD_OPTIONS.items():
        if key in model:
            want = model.pop(key)
            if key == "action_bins" and have["action_head"] != "bins":
                continue  # no bins to disagree with
            if want != have[key]:
                raise ValueError(
                    f"{option} {want}: {where} has {key} {have[key]!r}; drop {option} or match it"
                )
    return model


def _initial(cfg: TrainConfig) -> LiberoVLANet | None:
    """The network ``cfg.init`` names (float32), or None; CheckpointError names a bad file."""
    if cfg.init is None:
        return None
    from policies.libero_vla.checkpoint import load_checkpoint

    net = load_checkpoint(cfg.init)[0]
    if _check_head(cfg.model, net.config.to_dict(), f"the --init checkpoint {cfg.init}"):
        raise ValueError(f"--init {cfg.init}: the architecture is the checkpoint's; drop --model-arg/--chunk")
    return net


def _weights_sha(directory: str) -> str | None:
    from policies.libero_vla.checkpoint import read_config

    return read_config(directory).get("weights", {}).get("sha256")


def lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    warm = min(cfg.warmup, max(total // 10, 1))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    p = min((step - warm) / max(total - warm, 1), 1.0)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p)))


def _param_groups(net: LiberoVLANet, wd: float) -> list[dict]:
    decay = [p for n, p in net.named_parameters() if p.ndim >= 2 and not n.startswith(("embed", "cam_id"))]
    ids = {id(p) for p in decay}
    return [
        dict(params=decay, weight_decay=wd),
        dict(params=[p for p in net.parameters() if id(p) not in ids], weight_decay=0.0),
    ]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def _log(out: Path, record: dict) -> None:
    with open(out / "train.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def train(cfg: TrainConfig, t_start: float | None = None) -> dict:
    """Run (or resume) training; returns the summary written into config.json (module docstring)."""
    t_start = time.monotonic() if t_start is None else t_start
    for name, low in (("steps", 1), ("batch", 1), ("log_every", 1)):
        if getattr(cfg, name) is not None and getattr(cfg, name) < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(cfg, name)}")
    if cfg.lr <= 0 or cfg.shift < 0 or not 0 <= cfg.ema < 1:
        raise ValueError("need --lr > 0, --shift >= 0 and 0 <= ema < 1")
    if not 0 <= cfg.blank_instruction <= 1:
        raise ValueError(f"--blank-instruction must be in [0, 1], got {cfg.blank_instruction}")
    device = _device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    info = read_train_info(out) if cfg.resume else None
    if info:  # before the (long) load
        _check_head(cfg.model, info["model"], f"the run to resume in {out}")
    if cfg.resume and info is None:
        print(f"[train] --resume: nothing to resume in {out}, starting from step 0", flush=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)

    start = _initial(cfg) if not info else None  # checked before the (long) load
    demos = load_demos(cfg.demos, cfg.max_demos_per_task, cfg.threads, progress=cfg.progress)
    load_s = time.monotonic() - t_start
    if info:
        model_fields = dict(info["model"])
    elif start is not None:
        model_fields = start.config.to_dict()
    else:
        model_fields = {**cfg.model, "image_size": demos.recipe["image_size"]}
    mcfg = ModelConfig.from_dict(model_fields)
    if mcfg.image_size != demos.recipe["image_size"]:
        raise ValueError(
            f"{cfg.demos}: demos are {demos.recipe['image_size']} px, the model {mcfg.image_size} px"
        )
    recipe_init = dict(init=cfg.init, init_sha256=_weights_sha(cfg.init)) if cfg.init else {}
    if start is not None:
        net = start.train()  # weights and normalisation statistics as fitted before
    else:
        net = LiberoVLANet(mcfg)
        fit_stats(net, demos)  # a resumed run gets its own statistics back with its state below
    data = DeviceData(demos, mcfg.chunk, mcfg.tokenizer(), device)
    head = dict(action_head=mcfg.action_head)
    if mcfg.action_head == "bins":
        head.update(action_bins=mcfg.action_bins, bins_per_dim=[int(v) for v in net.bin_valid.sum(1)])
    recipe = {**demos.recipe, **recipe_init, **head}
    del demos  # the host copy of the video (tens of GB on the GPU machine)
    net = net.to(device)
    if cfg.channels_last and device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.AdamW(
        _param_groups(net, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999), fused=device.type == "cuda"
    )
    step, total = 0, cfg.steps or DEFAULT_STEPS
    if info:
        load_train_state(out, net, ema, opt)
        step, total = int(info["step"]), cfg.steps or int(info["total_steps"])
    fwd = torch.compile(net.encode) if cfg.compile else net.encode
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step)
    params, ema_params = list(net.parameters()), list(ema.parameters())
    mu_a, sd_a = net.action_mean, net.action_scale

    n_params = count_parameters(net)
    print(
        f"[train] {recipe['frames']} frames / {recipe['demos']} demos / {recipe['tasks']} tasks loaded in "
        f"{load_s:.1f} s ({data.upload_s:.1f} s to {device}); {n_params / 1e6:.2f} M params; "
        f"step {step} of {total}",
        flush=True,
    )
    summary = dict(info.get("summary", {})) if info else {}
    summary.update(params=n_params, load_s=load_s, device=str(device), torch=torch.__version__)
    summary.setdefault("commands", []).append(dict(command=cfg.command, started_at_step=step))
    summary.pop("samples_per_s", None)  # a resumed run's own speed replaces the previous command's
    if device.type == "cuda":
        summary["gpu"] = torch.cuda.get_device_name(device)
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        # A captured log (no TTY) gets a line per update: update it rarely there.
        every = 5.0 if sys.stderr.isatty() else 30.0
        bar = tqdm(total=total, initial=step, desc="train backbone", unit="step", mininterval=every)
    save_s, last_save = SAVE_GUESS_S, time.monotonic()
    t_run, step0, t_calib, calib_step = time.monotonic(), step, None, None
    step_s, stopped, losses, fitted, paused = None, "steps", [], False, 0.0

    def save(final: bool) -> None:
        nonlocal save_s, last_save, paused
        t0 = time.monotonic()
        summary.update(
            step=step,
            total_steps=total,
            samples_seen=step * cfg.batch,
            epochs=step * cfg.batch / max(data.n, 1),
            wall_s=time.monotonic() - t_start,
            stopped=stopped,
            final_loss=float(np.mean(losses[-5:])) if losses else None,
            step_s=step_s,
        )
        if step_s:
            summary["samples_per_s"] = cfg.batch / step_s
        training = dict(
            command=cfg.command, seed=cfg.seed, config=asdict(cfg), recipe=recipe, summary=summary
        )
        save_checkpoint(ema, out, training)
        save_train_state(
            out,
            net,
            ema,
            opt,
            dict(
                step=step,
                total_steps=total,
                model=mcfg.to_dict(),
                recipe_frames=recipe["frames"],
                summary=summary,
            ),
        )
        save_s, last_save = max(time.monotonic() - t0, 1.0), time.monotonic()
        paused += last_save - t0  # not training time: kept out of the step timing
        if final:
            print(f"[train] saved {out} at step {step}/{total} ({stopped}); {save_s:.1f} s", flush=True)

    net.train()
    while step < total:
        elapsed = time.monotonic() - t_start
        if (
            cfg.time_limit is not None
            and elapsed + 2 * save_s + 3 * (step_s or STEP_GUESS_S) + SAFETY_S > cfg.time_limit
        ):
            stopped = "time_limit"
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg, total)
        img, wrist, state, tokens, target, valid = data.batch(
            cfg.batch, cfg.shift, gen, cfg.blank_instruction
        )
        with amp:
            _, pred = fwd(img, wrist, state, tokens, cfg.proprio_noise)
        if mcfg.action_head == "bins":
            loss = bins_loss(pred, target, valid, net.bin_edges, net.bin_valid)
        else:
            err = (pred.float() - (target - mu_a) / sd_a).abs() * valid[..., None]
            loss = err.sum() / (valid.sum() * pred.shape[-1]).clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - min(cfg.ema, (1 + step) / (10 + step)))
        step += 1
        if bar is not None:
            bar.update()
        if step - step0 == 10:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t_calib, calib_step = time.monotonic() - paused, step
        if step % cfg.log_every == 0 or step == total:
            loss_v = float(loss.detach())  # syncs
            losses.append(loss_v)
            if t_calib is not None and step > calib_step:
                step_s = (time.monotonic() - paused - t_calib) / (step - calib_step)
            if cfg.fit_to_time and cfg.time_limit and step_s and step - step0 >= 60 and not fitted:
                save(final=False)  # a first checkpoint, and the measured cost of the periodic ones
                room = cfg.time_limit - (time.monotonic() - t_start) - 2 * save_s - 3 * step_s - SAFETY_S
                room -= save_s * room / max(cfg.save_every, 1.0)  # the periodic saves still to come
                fit, fitted = step + max(int(0.98 * room / step_s), 0), True
                summary.setdefault("fitted", []).append(
                    dict(at_step=step, from_total=total, to_total=max(fit, step + 1), step_s=step_s)
                )
                if fit != total:
                    total = max(fit, step + 1)
                    print(
                        f"[train] --fit-to-time: the schedule is now {total} steps "
                        f"({step_s * 1e3:.1f} ms/step)",
                        flush=True,
                    )
                    if bar is not None:
                        bar.total = total
            rec = dict(
                step=step,
                loss=loss_v,
                lr=opt.param_groups[0]["lr"],
                grad_norm=float(grad_norm.detach()),
                elapsed_s=time.monotonic() - t_start,
                epoch=step * cfg.batch / data.n,
            )
            if step_s:
                rec["samples_per_s"] = cfg.batch / step_s
            _log(out, rec)
            if bar is not None:
                bar.set_postfix(loss=f"{loss_v:.4f}", refresh=False)
        if time.monotonic() - last_save > cfg.save_every and step < total:
            save(final=False)
    if bar is not None:
        bar.close()
    summary["train_s"] = time.monotonic() - t_run
    save(final=True)
    return summary
