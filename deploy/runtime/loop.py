"""The closed-loop controller of ``aura run``: the fixed-memory runtime with write and flash logs.

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
nothing is appended per step. This module never imports torch (tests/test_architecture.py;
tests/deploy/test_loop.py runs ``aura run`` and checks ``sys.modules``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from deploy.runtime.budget import BudgetController, FlashConfig, PageMeter
from deploy.runtime.journal import StateJournal, record_bytes

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def make_runner(model: str | os.PathLike, backend: str = "auto", threads: int = 1):
    """The runner for ``backend``: "ort", "trt", or "auto" = TensorRT when ``tensorrt`` imports, else ORT.

    With TensorRT and an ONNX model, the engine is built once next to it (``model.engine``, rebuilt when the
    ONNX file is newer): engines are specific to the device and TensorRT version.
    """
    from deploy.runtime.trt_runner import trt_available

    model = Path(model)
    is_engine = model.suffix in ENGINE_SUFFIXES
    if backend == "auto":
        backend = "trt" if is_engine or trt_available() else "ort"
    if backend == "ort":
        if is_engine:
            raise ValueError(
                f"{model}: a TensorRT engine needs --backend trt (or auto with TensorRT installed)"
            )
        from deploy.runtime.ort_runner import OrtRunner

        return OrtRunner(model, threads=threads)
    if backend == "trt":
        if not trt_available():
            raise ValueError("--backend trt needs TensorRT 10.x (python package 'tensorrt', e.g. JetPack 6)")
        from deploy.runtime.trt_runner import TrtRunner, build_engine

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

    def recovery_line(self) -> str | None:
        """One line describing what opening the journal recovered (None without a journal or records)."""
        if self.journal is None or not self.journal.recovery.records_replayed:
            return None
        r = self.journal.recovery
        return (
            f"recovered journal state: snapshot {r.snapshot.name} + {r.records_replayed} records "
            f"({r.dropped_bytes} B torn tail dropped)"
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
        self.backbone.reset()
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
            "latency_us_median": float(np.percentile(lat, 50)) if t else 0.0,
            "latency_us_p99": float(np.percentile(lat, 99)) if t else 0.0,
            "journal_us_median": float(np.percentile(self.journal_us[:journal_n], 50)) if journal_n else 0.0,
            "flash": {k: v for k, v in flash.items() if k != "config"},
            **task,
        }

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
