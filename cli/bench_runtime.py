"""Per-step latency and memory growth of the deploy runtime: ONNX Runtime on the CPU, CUDA-graph runners.

CPU: median / p99 of the full runtime step (graph + exact commit) against its weight-bandwidth floor
(weight bytes / memcpy bandwidth; target median <= 2x the floor), then RSS growth over --soak-steps.
CUDA (when torch sees a GPU): the CUDA-graph runner, fused Triton step and eager twin; host wall time per
step and GPU memory growth over --cuda-soak-steps replays. Without --model an AURA-sized step (--d-model,
32 x 32 state) with random weights is exported first (that needs torch; the measured runtime does not).
Jetson projection (unless --skip-jetson; labelled as such, nothing runs on a Jetson): the weight-bandwidth
floor (weight bytes read per step / peak memory bandwidth) of the memory step and of the backbone graph
(--backbone-model, else --backbone-checkpoint exported to a temp file) on Orin Nano (68 / 102 GB/s Super),
Orin NX (102.4), AGX Orin (204.8) and Thor (273), next to both graphs' measured ONNX Runtime CPU latency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from deploy.export.bench import bench_cpu, bench_cuda, export_random_step

SHIPPED_BACKBONE = Path(__file__).resolve().parents[1] / "checkpoints" / "libero-vla"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="ONNX step graph (default: export an AURA-sized one)")
    parser.add_argument("--checkpoint", default=None, help="AuraMem checkpoint for the CUDA runners")
    parser.add_argument("--d-model", type=int, default=4096, help="AURA-sized step when no model/checkpoint")
    parser.add_argument("--steps", type=int, default=20_000, help="timed steps per runner")
    parser.add_argument("--soak-steps", type=int, default=1_000_000, help="CPU RSS soak (0: skip)")
    parser.add_argument("--cuda-soak-steps", type=int, default=100_000, help="CUDA memory soak (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--skip-cpu", action="store_true", help="skip the CPU (ONNX Runtime) measurement")
    parser.add_argument("--skip-cuda", action="store_true", help="skip the CUDA-graph runners")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--out", default="runs/bench", help="where an exported model is written")
    # Jetson projection (deploy.export.jetson.jetson_projection)
    parser.add_argument("--skip-jetson", action="store_true", help="skip the Jetson projection")
    parser.add_argument("--backbone-model", default=None, help="backbone ONNX graph for the projection")
    parser.add_argument(
        "--backbone-checkpoint", default=str(SHIPPED_BACKBONE), help="exported when no --backbone-model"
    )
    parser.add_argument("--backbone-steps", type=_positive, default=200, help="timed backbone graph calls")
    # soak of `aura run` itself (run_soak below; deploy.export.soak.soak_aura_run)
    parser.add_argument(
        "--run-soak-steps", type=int, default=0, help="soak `aura run --env noise` this long instead (0: off)"
    )
    parser.add_argument(
        "--run-soak-json", default="benchmarks/results/runtime_soak.json", help="where the soak's JSON goes"
    )
    parser.add_argument("--run-soak-step-log", default="sample:100", help="the soaked run's --step-log")
    parser.add_argument("--run-soak-env", default="noise", help="the soaked run's --env (e.g. libero:6)")
    parser.add_argument(
        "--run-soak-episodes", type=int, default=1, help="episodes (for robots whose episodes end themselves)"
    )
    parser.add_argument(
        "--run-soak-max-steps", type=int, default=None, help="steps per episode (default: --run-soak-steps)"
    )
    parser.add_argument(
        "--run-soak-warmup-steps",
        type=int,
        default=0,
        help="steps before the RSS baseline is taken (default 0: 5 %% of the steps and 30 s)",
    )
    parser.add_argument(
        "--run-soak-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra `aura run` argument (repeatable)",
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def jetson_section(args: argparse.Namespace, cpu: dict | None, step_model: Path | None) -> dict:
    """The Jetson projection: measure the backbone graph on this CPU, print and return the table."""
    import tempfile

    from deploy.export.jetson import (
        bench_backbone_cpu,
        export_default_backbone,
        jetson_projection,
        jetson_table,
    )

    if step_model is None:
        step_model = export_random_step(args.checkpoint, args.d_model, args.out)
    with tempfile.TemporaryDirectory() as tmp:
        backbone = args.backbone_model or export_default_backbone(
            args.backbone_checkpoint, Path(tmp) / "bb.onnx"
        )
        print(f"backbone: ONNX Runtime on {backbone}, {args.backbone_steps} timed calls ...", flush=True)
        bb_cpu = bench_backbone_cpu(backbone, args.backbone_steps, args.threads)
        proj = jetson_projection(step_model, backbone, cpu, bb_cpu)
    proj["backbone_cpu"] = bb_cpu
    if not args.backbone_model:
        proj["backbone_model"] = f"{args.backbone_checkpoint} (exported to a temp file)"
    print("\n" + "\n".join(jetson_table(proj)), flush=True)
    return proj


def run_soak(args: argparse.Namespace) -> int:
    """``--run-soak-steps N``: `aura run --env noise` with journal and budget for N steps, in a child process:
    RSS growth after warm-up and the kernel's count of bytes written against the flash meter's."""
    from deploy.export.soak import soak_aura_run

    if args.run_soak_steps < 1000:
        raise ValueError(f"--run-soak-steps must be >= 1000, got {args.run_soak_steps}")
    model = Path(args.model) if args.model else export_random_step(args.checkpoint, args.d_model, args.out)
    out = Path(args.out) / "soak_run"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    print(
        f"soak: aura run --env {args.run_soak_env} --model {model}, ~{args.run_soak_steps} steps ...",
        flush=True,
    )
    res = soak_aura_run(
        model,
        args.run_soak_steps,
        out,
        step_log=args.run_soak_step_log,
        env=args.run_soak_env,
        episodes=args.run_soak_episodes,
        max_steps=args.run_soak_max_steps,
        warmup_steps=args.run_soak_warmup_steps,
        extra_args=tuple(args.run_soak_arg),
    )
    res.update(host=platform.node(), cpu_count=os.cpu_count(), model=str(model))
    Path(args.run_soak_json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.run_soak_json).write_text(json.dumps(res, indent=2))
    growth, target = res["rss_growth_bytes"], res["target_rss_growth_bytes"]
    print(
        f"steps {res['steps']} ({res['robot_hours_at_20hz']:.1f} h at 20 Hz) in {res['wall_seconds']:.0f} s "
        f"({res['us_per_step_wall']:.1f} us/step); writes {res['writes']} of "
        f"{res['writes_requested']} requested\n"
        f"RSS growth after warm-up: {growth} B (target <= {target}); final - baseline "
        f"{res['rss_final_minus_baseline_bytes']} B\n"
        f"bytes written to files (kernel wchar - pipes): {res['kernel_file_bytes_written']}; flash meter: "
        f"{res['meter_bytes_written']} -> {'EQUAL' if res['bytes_match'] else 'DIFFERENT'}\n"
        f"JSON: {args.run_soak_json}"
    )
    return 0 if res["bytes_match"] and growth is not None and growth <= target else 1


def run(args: argparse.Namespace) -> int:
    if args.run_soak_steps:  # a separate benchmark: the soak of `aura run` (run_soak above)
        return run_soak(args)
    for name in ("d_model", "steps", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("soak_steps", "cuda_soak_steps"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    result = {"host": platform.node(), "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    rows = []
    model = Path(args.model) if args.model else None
    if not args.skip_cpu:
        model = (
            Path(args.model) if args.model else export_random_step(args.checkpoint, args.d_model, args.out)
        )
        print(f"CPU: ONNX Runtime on {model}, {args.steps} timed steps ...", flush=True)
        cpu = bench_cpu(model, args.steps, args.soak_steps, args.threads)
        result["cpu"] = cpu
        rows.append(
            (
                f"CPU ORT ({cpu['threads']} thread)",
                cpu["latency_us_median"],
                cpu["latency_us_p99"],
                f"floor {cpu['floor_us']:.1f} us ({cpu['weight_bytes']} B / "
                f"{cpu['memcpy_bytes_per_s'] / 1e9:.1f} GB/s): x{cpu['median_over_floor']:.2f} (<= 2)",
                cpu.get("rss_growth_bytes"),
            )
        )
    cuda = False
    if not args.skip_cuda:
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:
            cuda = False
        if not cuda:
            print("CUDA: no torch CUDA device here; skipping the CUDA-graph runners")
    if cuda:
        print("CUDA: torch CUDA-graph runners ...", flush=True)
        res = bench_cuda(args.d_model, args.steps, args.cuda_soak_steps, args.checkpoint)
        result["cuda"] = res
        for r in res:
            if "error" in r:
                rows.append((r["runner"], float("nan"), float("nan"), r["error"][:60], None))
                continue
            rows.append(
                (
                    f"{r['runner']} {r['device']}",
                    r["latency_us_median"],
                    r["latency_us_p99"],
                    f"GPU {r['gpu_us_per_replay']:.1f} us/replay (target <= 20 us wall)",
                    r.get("memory_allocated_growth_bytes"),
                )
            )
    if not args.skip_jetson:  # the Jetson projection, a separate section (jetson_section above)
        result["jetson_projection"] = jetson_section(args, result.get("cpu"), model)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"\n{'runner':<38} {'median us':>10} {'p99 us':>10}  {'mem growth B':>12}  note")
    for name, med, p99, note, growth in rows:
        print(f"{name:<38} {med:>10.1f} {p99:>10.1f}  {'-' if growth is None else growth:>12}  {note}")
    return 0
