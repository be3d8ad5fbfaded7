"""Closed-loop control on the fixed-memory, torch-free runtime: robot -> backbone -> memory step graph.

Each step the backbone turns the robot's observation into (z_t, a_t^base), the exported step graph (ONNX
Runtime, or TensorRT on a Jetson) gives the action and the write request, the flash budget decides, and a
committed write goes to the crash-safe journal. Outputs in OUT: steps.jsonl (--step-log), episodes.jsonl,
summary.json (every --summary-every steps and at the end), run.json (options, flash config, model digest,
versions, how the run ended), journal/. Every byte of them is charged to the flash budget.

--resume continues from OUT/journal (refused if it is corrupt or another model's; say so and start empty if
there is none); without it, an earlier run's files in OUT move to OUT/prev/ first. SIGINT / SIGTERM stop at
the next step: the episode's partial summary, summary.json and run.json are written, the journal closed,
and the exit code is 128 + the signal number.

--env: 'noise', 'synthetic[:CONFIG]' or a robot of your own as module:Class (fields via --env-arg).
--backbone: a registered name or module:Class (fields via --backbone-arg); default: what the robot names.
"""

from __future__ import annotations

import argparse
import gc
import platform
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from cli.common import add_backbone_arguments, add_fields_argument
from deploy.runtime import journal as journal_files
from deploy.runtime.budget import FlashConfig
from deploy.runtime.errors import InputError
from deploy.runtime.journal import FSYNC_POLICIES
from deploy.runtime.loop import ControlLoop, make_runner, stop_on_signals
from deploy.runtime.outputs import STEP_LOG_HELP, RunOutputs, move_previous, parse_step_log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="ONNX per-step graph (aura export) or TensorRT engine")
    parser.add_argument(
        "--backend",
        choices=("auto", "ort", "trt"),
        default="auto",
        help="auto: TensorRT where it imports (engine built next to the ONNX file), else ORT",
    )
    parser.add_argument(
        "--env", default="synthetic", help="robot: 'noise', 'synthetic[:CONFIG]' or module:Class"
    )
    add_fields_argument(parser, "--env-arg", "a field for a module:Class robot")
    add_backbone_arguments(parser, None, "registered name or module:Class (default: the robot's)")
    parser.add_argument("--episodes", type=int, default=3, help="episodes to run")
    parser.add_argument("--max-steps", type=int, default=500, help="steps per episode at most")
    parser.add_argument("--seed", type=int, default=0, help="seed of episode 0 (episode i uses seed + i)")
    parser.add_argument(
        "--out", default="runs/run", help="directory for steps.jsonl, episodes.jsonl, journal/"
    )
    parser.add_argument(
        "--no-journal", action="store_true", help="do not persist the state (bytes still counted)"
    )
    parser.add_argument("--fsync", choices=FSYNC_POLICIES, default="record", help="journal fsync policy")
    parser.add_argument("--snapshot-every", type=int, default=4096, help="journal records between snapshots")
    parser.add_argument(
        "--flash-config", default=None, help="JSON file with FlashConfig fields (docs/deploy.md)"
    )
    parser.add_argument("--control-hz", type=float, default=20.0, help="control rate the budget assumes")
    parser.add_argument("--no-budget", action="store_true", help="never suppress writes (still accounted)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument(
        "--resume", action="store_true", help="first episode continues from the journal's state"
    )
    parser.add_argument("--step-log", default="full", help=f"steps.jsonl: {STEP_LOG_HELP}")
    parser.add_argument(
        "--summary-every", type=int, default=1200, help="steps between summary.json rewrites (0: at the end)"
    )
    parser.add_argument(
        "--media",
        action="store_true",
        help="write OUT/timeline.png (needs --step-log full) and, for robots that keep camera frames "
        "(libero), OUT/videos/episode<i>.mp4 with the writes marked",
    )


def _check_args(args: argparse.Namespace) -> None:
    for name in ("episodes", "max_steps", "snapshot_every", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.summary_every < 0:
        raise ValueError(f"--summary-every must be >= 0, got {args.summary_every}")
    parse_step_log(args.step_log)
    if not args.control_hz > 0:
        raise ValueError(f"--control-hz must be > 0, got {args.control_hz}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")


def build_backbone(args: argparse.Namespace, robot, d_model: int, d_action: int):
    """The backbone for ``--backbone`` (or the robot's own), checked against the model's sizes."""
    from policies.factory import make_backbone, parse_fields

    fields = parse_fields(args.backbone_arg)
    name = args.backbone
    if name is None:
        own = getattr(robot, "backbone", None)
        if own is None:
            raise ValueError(f"--env {args.env}: the robot names no backbone; pass --backbone")
        name, preset = own
        fields = {**preset, **fields}
    backbone = make_backbone(name, fields, defaults={"d_model": d_model, "d_action": d_action})
    spec = backbone.spec
    if (spec.d_model, spec.d_action) != (d_model, d_action):
        raise ValueError(
            f"--backbone {name} gives d_model={spec.d_model}, d_action={spec.d_action} but --model "
            f"{args.model} expects d_model={d_model}, d_action={d_action}"
        )
    return backbone


def _versions() -> dict:
    import numpy
    import onnxruntime

    from aura import __version__

    return {
        "aura": __version__,
        "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": sys.version.split()[0],
        # os.uname() only: platform.platform() runs `uname -p` in a subprocess
        "platform": f"{platform.system()}-{platform.release()}-{platform.machine()}",
    }


def _prepare_out(args: argparse.Namespace, out: Path) -> str | None:
    """Without --resume, move an earlier run's files to OUT/prev; returns a line saying what happened."""
    journal_dir = out / "journal"
    if args.resume:
        if args.no_journal:
            raise ValueError("--resume needs the journal: drop --no-journal")
        if not journal_files.exists(journal_dir):
            return f"--resume: no journal in {journal_dir}; starting from an empty memory (new journal)"
        return None
    prev = move_previous(out, RunOutputs.FILES + ("journal",))
    if prev is not None:
        return f"--out {out}: an earlier run's files (not resumed: no --resume) moved to {prev}"
    return None


def _previous_run(out: Path) -> dict | None:
    """What the run.json of the run being resumed said about how it ended (None if unreadable)."""
    import json

    try:
        old = json.loads((out / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return {k: old.get(k) for k in ("started", "ended", "status", "steps", "writes")}


def run(args: argparse.Namespace) -> int:
    from policies.factory import parse_fields
    from sim.robots import make_robot

    _check_args(args)
    out = Path(args.out)
    flash = FlashConfig.from_json(args.flash_config) if args.flash_config else FlashConfig()
    runner = make_runner(args.model, args.backend, args.threads)
    spec = runner.spec
    robot = make_robot(
        args.env,
        parse_fields(args.env_arg, "--env-arg"),
        d_model=spec.d_model,
        d_action=spec.d_action,
        episode_steps=args.max_steps,
        seed=args.seed,
    )
    backbone = build_backbone(args, robot, spec.d_model, spec.d_action)
    if args.media and hasattr(robot, "keep_frames"):
        robot.keep_frames = True
    out.mkdir(parents=True, exist_ok=True)
    previous = _previous_run(out) if args.resume else None
    note = _prepare_out(args, out)
    if note:
        print(note)
    outputs = RunOutputs(out, flash.page_bytes, parse_step_log(args.step_log))
    summaries = EpisodeTally()
    record = {
        "command": "aura run",
        "argv": sys.argv[1:],
        "options": vars(args),
        "flash_config": asdict(flash),
        "model": runner.model_info,
        "model_digest_verified": runner.digest is not None and runner.digest.verified,
        "versions": _versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "running",
    }
    if previous:
        record["previous_run"] = previous
    loop = None
    try:
        loop = ControlLoop(
            runner,
            robot,
            backbone,
            max_steps=args.max_steps,
            flash=flash,
            control_hz=args.control_hz,
            budget=not args.no_budget,
            journal_dir=None if args.no_journal else out / "journal",
            fsync=args.fsync,
            snapshot_every=args.snapshot_every,
            step_log=outputs.steps,
            step_log_every=max(outputs.step_every, 1),
            meters=outputs.meters,
            summary_every=args.summary_every,
            on_summary=outputs.write_summary,
            keep_write_steps=args.media,
        )
        print(loop.recovery_line() or "journal: off (--no-journal); writes are counted, not persisted")
        if not loop.runner.digest or not loop.runner.digest.verified:
            how = loop.runner.digest.how if loop.runner.digest else "no digest"
            print(f"warning: --model {args.model}: integrity not verified ({how}); re-export to seal it")
        if loop.journal is not None:
            record["journal"] = loop.journal.recovery.as_dict()
        outputs.write_run(record)
        # Start-up objects (modules, the ORT session, buffers) leave the collector's view, so its full
        # collections, which reclaim cyclic garbage, stay frequent and cheap however long the run lasts.
        gc.freeze()
        with stop_on_signals(loop):
            for ep in range(args.episodes):
                if loop.stop_signal is not None:
                    break
                try:
                    s = loop.episode(ep, seed=args.seed + ep, resume=args.resume and ep == 0)
                except InputError as err:
                    raise ValueError(f"bad input from the backbone: {err}") from err
                summaries.add(s)
                outputs.write_episode(s)
                if args.media:
                    _episode_video(robot, out, ep, s)
                print(
                    f"episode {ep}: {s['steps']} steps, {s['writes']} writes ({s['write_rate']:.1%}), "
                    f"{s['bytes_written']} B written, median {s['latency_us_median']:.1f} us"
                    + (f" (stopped by {s['stopped']})" if "stopped" in s else "")
                )
        stopped = loop.stop_signal
        record["status"] = "completed" if stopped is None else f"stopped by {signal.Signals(stopped).name}"
    except BaseException as err:
        record["status"] = f"failed: {type(err).__name__}: {err}"
        raise
    finally:
        gc.unfreeze()  # a caller in the same process (tests) gets its collector back as it was
        if loop is not None:
            loop.close()
            outputs.close()
            loop.flush_summary(record["status"])
            record.update(
                ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                steps=loop.total_steps,
                writes=loop.total_writes,
                bytes_written_before_this_file=loop.budget.bytes,
            )
            outputs.write_run(record)
        else:
            outputs.close()
    if getattr(robot, "close", None) is not None:
        robot.close()
    if summaries.count:
        print_table(summaries)
    if args.media:
        _timeline(args, out)
    print(f"outputs: {out} (steps.jsonl, episodes.jsonl, summary.json, run.json, journal/)")
    if stopped is not None:
        print(f"stopped by signal {stopped} after {loop.total_steps} steps; summary and journal closed")
        return 128 + stopped
    return 0


def _episode_video(robot, out: Path, ep: int, summary: dict) -> None:
    """OUT/videos/episode<i>.mp4 for robots that keep their camera frames (a robot may write none)."""
    if getattr(robot, "write_video", None) is None:
        return
    path = robot.write_video(out / "videos" / f"episode{ep}.mp4", summary.get("write_steps", []))
    if path is not None:
        print(f"video: {path}")


def _timeline(args: argparse.Namespace, out: Path) -> None:
    from sim.run_report import timeline_png

    if args.step_log != "full":
        print(f"timeline: skipped (needs --step-log full, not {args.step_log})")
        return
    title = f"aura run --env {args.env}: gate probability, writes and suppressed writes per episode"
    print(f"timeline: {timeline_png(out / 'steps.jsonl', out / 'timeline.png', title)}")


# The final table's numeric columns, in order; "accuracy" and "success" are NaN for robots without them.
TABLE_FIELDS = (
    "episode",
    "steps",
    "writes",
    "write_rate",
    "writes_suppressed",
    "fallbacks",
    "bytes_written",
    "pages_written",
    "kv_equivalent_bytes",
    "latency_us_median",
    "latency_us_p99",
    "accuracy",
    "success",
)


class EpisodeTally:
    """The episodes the final table shows, in fixed memory: the table's columns of the last ``rows`` episodes
    in a ring preallocated at start-up (all summaries are in episodes.jsonl), the last summary and streaming
    counts. Nothing grows per episode: keeping the summary dicts themselves (~3 KB of malloc'd dict tables
    each) grew the heap of a long ``aura run`` by that much per episode until the ring was full."""

    def __init__(self, rows: int = 50):
        import numpy as np

        self.table = np.full((rows, len(TABLE_FIELDS)), np.nan)
        self.count = 0
        self.wins = 0
        self.last: dict | None = None
        self.has_accuracy = self.has_success = False

    def add(self, summary: dict) -> None:
        row = self.table[self.count % len(self.table)]
        for i, key in enumerate(TABLE_FIELDS):
            value = summary.get(key)
            row[i] = float("nan") if value is None else float(value)
        if self.count == 0:
            self.has_accuracy, self.has_success = "accuracy" in summary, "success" in summary
        self.count += 1
        self.wins += bool(summary.get("success"))
        self.last = summary

    def rows(self) -> list[dict]:
        """The kept rows, oldest first, as {field: value} (counts as ints)."""
        n = min(self.count, len(self.table))
        first = self.count - n
        out = []
        for k in range(first, self.count):
            row = dict(zip(TABLE_FIELDS, self.table[k % len(self.table)].tolist()))
            for key in TABLE_FIELDS:
                if key not in ("write_rate", "latency_us_median", "latency_us_p99", "accuracy", "success"):
                    row[key] = int(row[key])
            out.append(row)
        return out


def print_table(tally: EpisodeTally) -> None:
    summaries = tally.rows()
    from rich.console import Console
    from rich.table import Table

    shown = "" if tally.count == len(summaries) else f" (the last {len(summaries)} of {tally.count})"
    table = Table(title=f"aura run: episodes{shown}")
    cols = [
        "ep",
        "steps",
        "writes",
        "rate",
        "suppr.",
        "fallb.",
        "bytes",
        "pages",
        "KV-eq. B",
        "med us",
        "p99 us",
    ]
    acc, success = tally.has_accuracy, tally.has_success
    for c in cols + (["acc."] if acc else []) + (["success"] if success else []):
        table.add_column(c, justify="right")
    for s in summaries:
        row = [
            s["episode"],
            s["steps"],
            s["writes"],
            f"{s['write_rate']:.3f}",
            s["writes_suppressed"],
            s["fallbacks"],
            s["bytes_written"],
            s["pages_written"],
            s["kv_equivalent_bytes"],
            f"{s['latency_us_median']:.1f}",
            f"{s['latency_us_p99']:.1f}",
        ]
        if acc:
            row.append(f"{s['accuracy']:.3f}")
        if success:
            row.append("yes" if s["success"] == 1.0 else "no")
        table.add_row(*map(str, row))
    Console(width=150).print(table)
    if success:
        print(f"success: {tally.wins}/{tally.count} episodes")
    last = tally.last
    ms = {k: last.get(f"{k}_us_median", 0.0) / 1000 for k in ("sim", "backbone", "latency", "journal")}
    print(
        f"step time, median (last episode): robot (observe + act) {ms['sim']:.2f} ms, backbone "
        f"{ms['backbone']:.2f} ms, memory step {ms['latency']:.3f} ms, journal {ms['journal']:.3f} ms"
    )
    f = last["flash"]
    print(
        f"state {last['state_bytes']} B, record {last['record_bytes']} B/write; flash: "
        f"{f['bytes_per_hour'] / 1e6:.3f} MB/h, {f['pages_per_hour']:.0f} pages/h, "
        f"{f['flash_bytes_per_hour'] / 1e6:.3f} MB/h incl. WA "
        f"(allowed {f['allowed_flash_bytes_per_hour'] / 1e6:.1f}); "
        f"projected lifetime {f['projected_lifetime_years']:.1f} y (target {f['target_lifetime_years']}); "
        f"allowed write rate {f['allowed_writes_per_hour']:.0f} writes/h"
    )
