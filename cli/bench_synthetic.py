"""Every memory arm on the controlled synthetic benchmark: trains and evaluates them per (config, seed).

Prints, per config, accuracy on query steps (mean and 95 % CI over seeds), writes per episode, the writes
ratio vs always-write, state bytes (and the KV cache at N and at 100,000 steps), and the gate's write
probability on real events vs distractors; writes the JSON and a PNG of accuracy vs writes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sim.synthetic.bench import plot, print_tables, run_benchmark


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="hard", help="'easy', 'hard' or 'all' (both)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..n-1 (default 3)")
    parser.add_argument("--horizon", type=int, default=None, help="episode length N (default: the config's)")
    parser.add_argument("--quick", action="store_true", help="CI-sized training budget (< 2 minutes)")
    parser.add_argument("--workers", type=int, default=2, help="processes, one (config, seed) each")
    parser.add_argument("--json", default="runs/synthetic/bench.json", help="results JSON path")
    parser.add_argument("--png", default=None, help="accuracy-vs-writes plot (default: next to --json)")
    parser.add_argument(
        "--save-checkpoint",
        default=None,
        help="save each config's seed-0 AURA model to DIR/synthetic-<config>",
    )
    parser.add_argument("--progress", action="store_true", help="per-arm training bars (noisy with workers)")


def run(args: argparse.Namespace) -> int:
    if args.horizon is not None and args.horizon < 2:
        raise ValueError(f"--horizon must be >= 2, got {args.horizon}")
    json_path = Path(args.json)
    if json_path.is_dir():
        raise ValueError(f"--json {json_path}: is a directory (give a file path)")
    png_path = Path(args.png) if args.png else json_path.with_suffix(".png")
    results = run_benchmark(
        args.config, args.seeds, args.horizon, args.quick, args.workers, args.save_checkpoint, args.progress
    )
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, png_path)
    print_tables(results)
    print(f"wrote {json_path} and {png_path}")
    return 0
