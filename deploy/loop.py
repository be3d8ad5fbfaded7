"""``aura run``: the closed-loop controller on the fixed-memory runtime, with write and flash logs.

Each control step t:

    observation = robot.observe();  z_t, a_t^base = backbone(observation)
    step the graph (ORT / TensorRT runner) -> a_t, write_t requested, p_t
    if write_t: the flash budget decides; committed -> exact numpy write + journal record,
                refused -> gate suppressed (logged), the state stays and a_t = action_skip
    robot.act(a_t)

Logs: ``steps.jsonl`` (one line per step: episode, t, write, gate_prob, latency_us, and ``fallback`` /
``suppressed`` when they happen) and ``episodes.jsonl`` (per-episode summary: steps, writes, write rate,
bytes written, state bytes, KV-equivalent bytes, latency median and p99, flash projection). ``latency_us`` is
the runtime's share of the step (graph + commit decision + state update); the journal's fsync is timed
separately (``journal_us``) because it depends on the storage, not on the model.

Memory stays flat over an episode: every buffer (runner, journal record, latency ring) is preallocated and
nothing is appended per step. This module never imports torch (tests/deploy/test_torch_free.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from deploy.budget import BudgetController, FlashConfig, PageMeter
from deploy.errors import DeployFileError, InputError
from deploy.journal import FSYNC_POLICIES, StateJournal, record_bytes

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def make_runner(model: str | os.PathLike, backend: str = "auto", threads: int = 1):
    """The runner for ``backend``: "ort", "trt", or "auto" = TensorRT when ``tensorrt`` imports, else ORT.

    With TensorRT and an ONNX model, the engine is built once next to it (``model.engine``, rebuilt when the
    ONNX file is newer): engines are specific to the device and TensorRT version.
    """
    from deploy.trt_runner import trt_available

    model = Path(model)
    is_engine = model.suffix in ENGINE_SUFFIXES
    if backend == "auto":
        backend = "trt" if is_engine or trt_available() else "ort"
    if backend == "ort":
        if is_engine:
            raise ValueError(
                f"{model}: a TensorRT engine needs --backend trt (or auto with TensorRT installed)"
            )
        from deploy.ort_runner import OrtRunner

        return OrtRunner(model, threads=threads)
    if backend == "trt":
        if not trt_available():
            raise ValueError("--backend trt needs TensorRT 10.x (python package 'tensorrt', e.g. JetPack 6)")
        from deploy.trt_runner import TrtRunner, build_engine

        if not is_engine:
            engine = model.with_suffix(".engine")
            if not engine.exists() or engine.stat().st_mtime < model.stat().st_mtime:
                print(f"building TensorRT engine {engine} from {model} ...", flush=True)
                build_engine(model, engine)
            model = engine
        return TrtRunner(model)
    raise ValueError(f"--backend: unknown backend {backend!r} (choose 'auto', 'ort' or 'trt')")


class ControlLoop:
    """Runs episodes; owns the budget, the optional journal and the logs. See the module docstring."""

    def __init__(
        self,
        runner,
        robot,
        backbone,
        *,
        max_steps: int,
        flash: FlashConfig,
        control_hz: float,
        budget: bool = True,
        journal_dir=None,
        fsync: str = "record",
        snapshot_every: int = 4096,
        step_log=None,
    ):
        self.runner, self.robot, self.backbone = runner, robot, backbone
        self.max_steps = max_steps
        st = runner.spec.state
        self.meter = PageMeter(flash.page_bytes)
        self.budget = BudgetController(flash, self.meter, control_hz, enabled=budget)
        self.record_size = record_bytes(st)
        self.fsync = fsync
        self.journal = None
        if journal_dir is not None:
            self.journal = StateJournal.open(
                journal_dir, st, fsync=fsync, snapshot_every=snapshot_every, meter=self.meter
            )
            runner.load_state(self.journal.recovery.state)
        self.step_log = step_log
        self.latency = np.zeros(max_steps, dtype=np.float64)
        self.journal_us = np.zeros(max_steps, dtype=np.float64)
        self.total_steps = self.total_writes = 0

    def _log(self, episode: int, t: int, write: bool, p: float, lat_us: float, extra: str) -> None:
        if self.step_log is not None:
            gp = "null" if p != p else f"{p:.6f}"
            self.step_log.write(
                f'{{"episode": {episode}, "t": {t}, "write": {int(write)}, "gate_prob": {gp},'
                f'"latency_us": {lat_us:.1f}{extra}}}\n'
            )

    def episode(self, index: int, seed: int | None = None, resume: bool = False) -> dict:
        """Run one episode (at most ``max_steps`` steps) and return its summary.

        A new episode starts from an empty memory (snapshotted to the journal) unless ``resume``: then it
        continues from the current (e.g. recovered) state.
        """
        runner, robot, budget = self.runner, self.robot, self.budget
        st = runner.spec.state
        bytes0, pages0 = self.meter.bytes, self.meter.pages  # the episode's own snapshot counts too
        if not resume:
            runner.load_state(st.zeros())
            if self.journal is not None:
                self.journal.snapshot(runner.state, self.total_steps)
        robot.reset(seed)
        writes = requested = suppressed = fallbacks = 0
        journal_n = 0
        t = 0
        clock = time.perf_counter_ns
        while t < self.max_steps:
            features, base = self.backbone(robot.observe())
            t0 = clock()
            extra = ""
            res = runner.step(features, base)  # InputError (wrong shape/dtype) ends the run cleanly
            commit = False
            if res.write:
                requested += 1
                if budget.allow(self.total_steps, self.record_size, self.fsync == "record"):
                    runner.commit()
                    commit = True
                else:
                    runner.suppress()
                    suppressed += 1
                    extra = ', "suppressed": "flash_budget"'
            lat = (clock() - t0) / 1000.0
            self.latency[t] = lat
            if commit:
                writes += 1
                if self.journal is not None:
                    j0 = clock()
                    self.journal.append(self.total_steps, runner.record)
                    self.journal.maybe_snapshot(runner.state, self.total_steps)
                    self.journal_us[journal_n] = (clock() - j0) / 1000.0
                    journal_n += 1
                else:
                    self.meter.append(self.record_size)
                    if self.fsync == "record":
                        self.meter.sync()
            action, p = res.action, res.gate_prob
            if res.fallback is not None:
                fallbacks += 1
                extra = f', "fallback": "{res.fallback}"'
            self._log(index, t, commit, p, lat, extra)
            t += 1
            self.total_steps += 1
            if robot.act(action):
                break
        if self.journal is not None:
            self.journal.sync()
        elif self.fsync != "record":
            self.meter.sync()
        self.total_writes += writes
        lat = self.latency[:t]
        flash = budget.report(self.total_steps, self.total_writes)
        st_bytes = st.state_bytes
        task = robot.stats() if hasattr(robot, "stats") else {}
        return {
            "episode": index,
            "steps": t,
            "writes": writes,
            "write_rate": writes / t if t else 0.0,
            "writes_requested": requested,
            "writes_suppressed": suppressed,
            "fallbacks": fallbacks,
            "bytes_written": self.meter.bytes - bytes0,
            "pages_written": self.meter.pages - pages0,
            "record_bytes": self.record_size,
            "state_bytes": st_bytes,
            "dense_rewrite_bytes": writes * st_bytes,
            "kv_equivalent_bytes": t * st.kv_bytes_per_step,
            "latency_us_median": float(np.median(lat)) if t else 0.0,
            "latency_us_p99": float(np.percentile(lat, 99)) if t else 0.0,
            "journal_us_median": float(np.median(self.journal_us[:journal_n])) if journal_n else 0.0,
            "flash": {k: v for k, v in flash.items() if k != "config"},
            **task,
        }

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="ONNX per-step graph (aura export) or TensorRT engine")
    parser.add_argument(
        "--backend",
        choices=("auto", "ort", "trt"),
        default="auto",
        help="auto: TensorRT where it imports (engine built next to the ONNX file), else ORT",
    )
    parser.add_argument("--env", default="synthetic", help="'synthetic[:CONFIG]' (default: hard) or 'noise'")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=500, help="steps per episode at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default="runs/run", help="directory for steps.jsonl, episodes.jsonl, journal/"
    )
    parser.add_argument(
        "--no-journal", action="store_true", help="do not persist the state (bytes still counted)"
    )
    parser.add_argument("--fsync", choices=FSYNC_POLICIES, default="record", help="journal fsync policy")
    parser.add_argument("--snapshot-every", type=int, default=4096, help="journal records between snapshots")
    parser.add_argument("--flash-config", default=None, help="JSON with FlashConfig fields (docs/deploy.md)")
    parser.add_argument("--control-hz", type=float, default=20.0, help="control rate the budget assumes")
    parser.add_argument("--no-budget", action="store_true", help="never suppress writes (still accounted)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument(
        "--resume", action="store_true", help="first episode continues from the journal's state"
    )


def _table(summaries: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="aura run: episodes")
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
    acc = "accuracy" in summaries[0]
    for c in cols + (["acc."] if acc else []):
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
            row.append(f"{s.get('accuracy', float('nan')):.3f}")
        table.add_row(*map(str, row))
    Console(width=150).print(table)
    f = summaries[-1]["flash"]
    print(
        f"state {summaries[-1]['state_bytes']} B, record {summaries[-1]['record_bytes']} B/write; flash: "
        f"{f['bytes_per_hour'] / 1e6:.3f} MB/h, {f['pages_per_hour']:.0f} pages/h, "
        f"{f['flash_bytes_per_hour'] / 1e6:.3f} MB/h incl. WA "
        f"(allowed {f['allowed_flash_bytes_per_hour'] / 1e6:.1f}); "
        f"projected lifetime {f['projected_lifetime_years']:.1f} y (target {f['target_lifetime_years']}); "
        f"allowed write rate {f['allowed_writes_per_hour']:.0f} writes/h"
    )


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        flash = FlashConfig.from_json(args.flash_config) if args.flash_config else FlashConfig()
        runner = make_runner(args.model, args.backend, args.threads)
        spec = runner.spec
        from deploy.envs import make_robot

        robot, backbone = make_robot(args.env, spec.d_model, spec.d_action, args.max_steps, args.seed)
        out.mkdir(parents=True, exist_ok=True)
        step_log = open(out / "steps.jsonl", "w", buffering=1 << 16)
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
            step_log=step_log,
        )
    except (DeployFileError, ValueError, OSError) as err:
        print(f"aura run: {err}", file=sys.stderr)
        return 2
    if loop.journal is not None and loop.journal.recovery.records_replayed:
        r = loop.journal.recovery
        print(
            f"recovered journal state: snapshot {r.snapshot.name} + {r.records_replayed} records "
            f"({r.dropped_bytes} B torn tail dropped)"
        )
    summaries = []
    with open(out / "episodes.jsonl", "w") as ep_log:
        for ep in range(args.episodes):
            try:
                s = loop.episode(ep, seed=args.seed + ep, resume=args.resume and ep == 0)
            except InputError as err:
                loop.close()
                print(f"aura run: bad input from the backbone: {err}", file=sys.stderr)
                return 2
            summaries.append(s)
            ep_log.write(json.dumps(s) + "\n")
            print(
                f"episode {ep}: {s['steps']} steps, {s['writes']} writes ({s['write_rate']:.1%}), "
                f"{s['bytes_written']} B written, median {s['latency_us_median']:.1f} us"
            )
    loop.close()
    step_log.close()
    _table(summaries)
    print(f"logs: {out / 'steps.jsonl'}, {out / 'episodes.jsonl'}")
    return 0
