"""Per-call latency of the LIBERO pixel backbone (torch and ONNX Runtime), and its training cost per sample.

    python benchmarks/backbone_latency.py                       # untrained default architecture
    python benchmarks/backbone_latency.py --checkpoint runs/vla --calls 300 --json runs/latency.json

Latency: one ``backbone(observation)`` call in ensemble mode (the network runs every call: the worst case;
open-loop without fresh features runs it once per n_action_steps calls), 128-px frames, median and p99 over
``--calls`` after ``--warmup`` calls, for each thread count in ``--threads``. Weights do not change the cost,
so without ``--checkpoint`` an untrained checkpoint of the default architecture is written to a temp dir.

Training (``--train``, default on): FLOPs per sample of forward + backward (``torch.utils.flop_counter``) and
measured samples/s of fwd + bwd + AdamW at batch ``--batch`` on this CPU (float32), and what that predicts
for a GPU at an assumed sustained rate (``--gpu-tflops``: bf16 throughput this narrow CNN may reach; an
estimate to check against the real run's train.jsonl, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, when run as a script


def _obs(size: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return dict(
        image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        wrist_image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        state=rng.normal(0, 0.3, 8).astype(np.float32),
        language="put the bowl on the plate",
    )


def _time(backbone, calls: int, warmup: int) -> dict:
    size = backbone.spec.image_size
    frames = [_obs(size, i) for i in range(16)]
    backbone.reset()
    for i in range(warmup):
        backbone(frames[i % 16])
    ms = []
    for i in range(calls):
        t0 = time.perf_counter()
        backbone(frames[i % 16])
        ms.append(1e3 * (time.perf_counter() - t0))
    ms.sort()
    return dict(
        median_ms=statistics.median(ms),
        p99_ms=ms[min(int(0.99 * len(ms)), len(ms) - 1)],
        min_ms=ms[0],
        calls=calls,
    )


def train_cost(batch: int, reps: int, gpu_tflops: float) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from policies.libero_vla.model import LiberoVLANet, ModelConfig, count_parameters, example_inputs

    cfg = ModelConfig()
    net = LiberoVLANet(cfg).train()
    x = example_inputs(cfg, batch)
    with FlopCounterMode(display=False) as fc:
        _, a = net.encode(*x)
        a.abs().mean().backward()
    flops = fc.get_total_flops() / batch
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net.eval()(*example_inputs(cfg, 1))
    fwd = fc.get_total_flops()
    net.train()
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    for i in range(reps + 3):
        if i == 3:
            t0 = time.perf_counter()
        _, a = net.encode(*x, proprio_noise=0.1)
        loss = a.abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    sps = batch * reps / (time.perf_counter() - t0)
    gpu_sps = gpu_tflops * 1e12 / flops
    gflop = flops / 1e9
    return dict(
        params=count_parameters(net),
        fwd_gflop_per_call=fwd / 1e9,
        train_gflop_per_sample=gflop,
        cpu_batch=batch,
        cpu_samples_per_s=sps,
        cpu_threads=torch.get_num_threads(),
        assumed_gpu_tflops=gpu_tflops,
        predicted_gpu_samples_per_s=gpu_sps,
        predicted_epochs_in_6_min_of_200k_frames=gpu_sps * 360 / 200_000,
    )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="backbone checkpoint dir (default: untrained default)")
    p.add_argument(
        "--onnx", default=None, help="exported .onnx (default: export the checkpoint to a temp dir)"
    )
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    p.add_argument("--no-train", action="store_true", help="skip the training-cost measurement")
    p.add_argument("--batch", type=int, default=8, help="training batch for the CPU fwd+bwd measurement")
    p.add_argument("--reps", type=int, default=10, help="training steps timed")
    p.add_argument("--gpu-tflops", type=float, default=60.0, help="assumed sustained bf16 TFLOP/s on the GPU")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import torch

    from policies.libero_vla.backbone import TorchBackbone
    from policies.libero_vla.onnx_backbone import OnnxBackbone

    tmp = Path(tempfile.mkdtemp(prefix="vla_latency_"))
    ckpt = args.checkpoint
    if ckpt is None:
        from policies.libero_vla.checkpoint import save_checkpoint
        from policies.libero_vla.model import LiberoVLANet, ModelConfig

        ckpt = save_checkpoint(LiberoVLANet(ModelConfig()), tmp / "ckpt")
    onnx_path = args.onnx
    if onnx_path is None:
        from deploy.export.backbone_graph import export_graph
        from policies.libero_vla.checkpoint import load_checkpoint

        onnx_path = export_graph(load_checkpoint(ckpt)[0], tmp / "backbone.onnx")
    rows = []
    for n in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(n)
        tb = TorchBackbone.from_checkpoint(ckpt, device="cpu")
        rows.append(dict(runtime="torch", threads=n, **_time(tb, args.calls, args.warmup)))
        ob = OnnxBackbone(onnx_path, threads=n)
        rows.append(dict(runtime="onnxruntime", threads=n, **_time(ob, args.calls, args.warmup)))
    out = dict(latency=rows, cpu=os.cpu_count(), torch=torch.__version__, checkpoint=str(ckpt))
    print("| runtime | threads | median ms | p99 ms | min ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        ms = f"{r['median_ms']:.2f} | {r['p99_ms']:.2f} | {r['min_ms']:.2f}"
        print(f"| {r['runtime']} | {r['threads']} | {ms} |")
    if not args.no_train:
        torch.set_num_threads(max(int(t) for t in args.threads.split(",")))
        c = out["train"] = train_cost(args.batch, args.reps, args.gpu_tflops)
        print(
            f"\nparams {c['params'] / 1e6:.2f} M; forward {c['fwd_gflop_per_call']:.3f} GFLOP/call; "
            f"fwd+bwd {c['train_gflop_per_sample']:.3f} GFLOP/sample"
        )
        print(
            f"CPU fwd+bwd+AdamW at batch {c['cpu_batch']} ({c['cpu_threads']} threads): "
            f"{c['cpu_samples_per_s']:.1f} samples/s"
        )
        print(
            f"at an assumed {c['assumed_gpu_tflops']:.0f} TFLOP/s: {c['predicted_gpu_samples_per_s']:.0f} "
            f"samples/s, {c['predicted_epochs_in_6_min_of_200k_frames']:.0f} epochs of 200k frames in 6 min"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
