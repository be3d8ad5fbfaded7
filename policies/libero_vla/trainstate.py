"""What ``--resume`` needs, in safetensors + JSON (no pickle): float32 weights, EMA weights, AdamW moments.

    OUT/train_state.safetensors   net/<name>, ema/<name> (float32 state dicts), opt/<i>/{exp_avg, exp_avg_sq,
                                  step} (AdamW's per-parameter state, i = index in the optimizer's order)
    OUT/train_state.json          step, total_steps, model config, data recipe digest, timings, log summary

The sampler needs no saved state: batch indices and shifts come from a generator seeded with
(seed, step at which this command started), so a resumed run draws fresh, reproducible batches.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from policies.libero_vla.checkpoint import write_json
from policies.libero_vla.runtime import CheckpointError

STATE, STATE_JSON = "train_state.safetensors", "train_state.json"


def save_train_state(out, net, ema, opt, info: dict) -> None:
    from safetensors.torch import save_file

    out = Path(out)
    tensors = {f"net/{k}": v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
    tensors.update({f"ema/{k}": v.detach().float().cpu().contiguous() for k, v in ema.state_dict().items()})
    for i, st in opt.state_dict()["state"].items():
        for key, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(float(value))
            tensors[f"opt/{i}/{key}"] = t.detach().float().cpu().contiguous().reshape(t.shape)
    path = out / STATE
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    write_json(out / STATE_JSON, info)


def read_train_info(out) -> dict | None:
    """train_state.json of ``out``, or None when there is nothing to resume."""
    path = Path(out) / STATE_JSON
    if not path.is_file() or not (Path(out) / STATE).is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable ({err}); delete it to start over") from None


def load_train_state(out, net, ema, opt) -> None:
    """Restore weights, EMA and optimizer state in place; CheckpointError names the file on a mismatch."""
    from safetensors import safe_open

    path = Path(out) / STATE
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            got = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except Exception as err:
        raise CheckpointError(
            f"{path}: unreadable ({type(err).__name__}: {err}); delete it to start over"
        ) from None
    for prefix, module in (("net/", net), ("ema/", ema)):
        sd = {k[len(prefix) :]: v for k, v in got.items() if k.startswith(prefix)}
        want = module.state_dict()
        if set(sd) != set(want) or any(sd[k].shape != want[k].shape for k in want):
            raise CheckpointError(
                f"{path}: {prefix[:-1]} tensors do not match this model (other architecture?)"
            )
        module.load_state_dict(sd)
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for k, v in got.items():
        if k.startswith("opt/"):
            _, i, key = k.split("/")
            state.setdefault(int(i), {})[key] = v
    n = sum(len(g["params"]) for g in sd["param_groups"])
    if state and set(state) != set(range(n)):
        raise CheckpointError(f"{path}: optimizer state covers {len(state)} of {n} parameters")
    sd["state"] = state
    opt.load_state_dict(sd)  # moves the moments to the parameters' device and dtype, not their layout
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for key, t in st.items():
                if torch.is_tensor(t) and t.shape == p.shape:
                    # Fused/foreach AdamW walk the moments and the parameter as flat memory: give the moments
                    # the parameter's strides (channels-last conv kernels on CUDA).
                    st[key] = torch.empty_like(p, dtype=t.dtype).copy_(t)
