"""How well a backbone checkpoint's action chunks fit sets of demos: its training loss, without the noise.

    python benchmarks/demo_fit.py --checkpoint checkpoints/libero-vla \
        --demos clean=/tmp/fit/clean --demos dart=/tmp/fit/dart --json OUT.json

Per demo set, the normalised chunk L1 of ``policies/libero_vla/train.py``,

    L = mean over valid (t, k, d) of |A_t[k, d] - a_{t+k, d}| / sigma_a,d      (k < K, t + k < T)

with the network in eval mode (no dropout, image shift or proprio noise; the training log's L also has
those), overall, per chunk offset k and per action dimension. Before fine-tuning on new demos this says
whether their labels are what the checkpoint already does in the same images: the first DART run's
demos started at 7x the clean fit, and the policy trained on them stalled (docs/libero_vla.md). Growth
with k is the part of the label a frame cannot predict (later noise, later decisions); the offset-0
error is the label of the state the frame shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIMS = ("x", "y", "z", "rx", "ry", "rz", "grip")


def named_dir(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--demos {text!r}: NAME=DIR (a demo directory or file)")
    return name, path


def demo_fit(net, demos, batch: int = 64) -> dict:
    """L of ``net`` on ``demos`` (module docstring): overall, per offset k, per dimension."""
    import torch

    chunk = net.config.chunk
    targets, valid = demos.chunk_targets(chunk)
    tok = net.config.tokenizer()
    tokens = np.stack([tok(t) for t in demos.languages])[demos.frame_task]
    sd = net.action_scale.detach().numpy()
    err_sum, count = np.zeros((chunk, 7)), np.zeros((chunk, 1))
    with torch.no_grad():
        for i in range(0, demos.frames, batch):
            s = slice(i, i + batch)
            _, pred = net(
                torch.from_numpy(demos.image[s]),
                torch.from_numpy(demos.wrist_image[s]),
                torch.from_numpy(demos.state[s]),
                torch.from_numpy(tokens[s]),
            )
            err = np.abs(pred.numpy() - targets[s]) / sd * valid[s][..., None]
            err_sum += err.sum(0)
            count += valid[s].sum(0)[:, None]
    per_k = (err_sum.sum(1) / (7 * count[:, 0])).tolist()
    per_dim = (err_sum.sum(0) / count.sum()).tolist()
    return dict(
        loss=float(err_sum.sum() / (7 * count.sum())),
        per_offset=per_k,
        per_dim=dict(zip(DIMS, per_dim)),
        frames=int(demos.frames),
        demos=len(demos.episode_start),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/libero-vla", help="backbone checkpoint directory")
    ap.add_argument("--demos", type=named_dir, action="append", required=True, help="NAME=DIR (repeat)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", default=None, help="write the table here")
    args = ap.parse_args(argv)
    import torch

    from policies.libero_vla.checkpoint import load_checkpoint
    from policies.libero_vla.data import load_demos

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    net, _ = load_checkpoint(args.checkpoint)
    rows = {}
    for name, path in args.demos:
        rows[name] = demo_fit(net, load_demos(path, progress=False))
        print(f"[fit] {name}: {rows[name]['demos']} demos, {rows[name]['frames']} frames", flush=True)
    k = net.config.chunk
    print(f"| demos | demos / frames | L | L at k = 0 | L at k = {k - 1} | " + " | ".join(DIMS) + " |")
    print("|---" * (5 + len(DIMS)) + "|")
    for name, r in rows.items():
        dims = " | ".join(f"{r['per_dim'][d]:.3f}" for d in DIMS)
        print(
            f"| {name} | {r['demos']} / {r['frames']} | {r['loss']:.3f} | {r['per_offset'][0]:.3f} "
            f"| {r['per_offset'][-1]:.3f} | {dims} |"
        )
    doc = dict(
        command="python benchmarks/demo_fit.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        checkpoint=str(args.checkpoint),
        sets=rows,
        wall_s=time.perf_counter() - t0,
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"[fit] {args.json} ({doc['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
