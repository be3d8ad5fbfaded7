"""The closed-loop controller of ``aura run``: the fixed-memory runtime with write and flash logs.

Each control step t:

    observation = robot.observe();  z_t, a_t^base = backbone(observation)
    step the graph (ORT / TensorRT runner) -> a_t, write_t requested, p_t
    if write_t: the flash budget decides; committed -> exact numpy write + journal record,
                refused -> gate suppressed (logged), the state stays and a_t = action_skip
    robot.act(a_t)

``latency_us`` is the runtime's share of the step (graph + commit decision + state update); the journal's
append and fsync are timed separately (``journal_us``) because they depend on the storage, not the model,
as are the robot (``sim_us``: observe + act, i.e. simulator and cameras, or a real robot's driver) and the
backbone (``backbone_us``), so an episode summary splits the whole control step into those four parts.
Both go to fixed-size log-binned histograms (:mod:`deploy.runtime.stats`: median / p99 within 1 % of
numpy's percentile, exact min / max / mean), so memory stays flat however long the robot runs: every
buffer (runner, journal record, histograms) is preallocated and nothing is appended per step.

Logs: the step log (any ``write(str)`` object; every ``step_log_every``-th step), one summary per episode
(returned by :meth:`ControlLoop.episode`) and, every ``summary_every`` steps, the run totals handed to
``on_summary`` (``aura run`` writes them to OUT/summary.json). :func:`stop_on_signals` turns SIGINT /
SIGTERM into a stop at the next step boundary: the step in flight completes (its write journaled), the
episode returns its partial summary with ``"stopped"``, and the caller closes the journal.

This module never imports torch (tests/test_architecture.py; tests/deploy/test_loop.py runs ``aura run``
and checks ``sys.modules``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from deploy.runtime.budget import BudgetController, FlashConfig, PageMeter
from deploy.runtime.digest import verify_graph
from deploy.runtime.journal import StateJournal, record_bytes
from deploy.runtime.outputs import rss_bytes
from deploy.runtime.stats import LogHistogram

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def make_runner(model: str | os.PathLike, backend: str = "auto", threads: int = 1):
    """The runner for ``backend``: "ort", "trt", or "auto" = TensorRT when ``tensorrt`` imports, else ORT.

    With TensorRT and an ONNX model, the ONNX digest is verified and the engine built once next to it
    (``model.engine`` + ``model.engine.sha256``, rebuilt when the ONNX digest changes): engines are
    specific to the device and TensorRT version. The runner's identity is then the ONNX graph's digest,
    so ORT and TensorRT runs of one graph share a journal.
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
        from deploy.runtime.digest import read_sidecar
        from deploy.runtime.errors import ModelFileError
        from deploy.runtime.trt_runner import TrtRunner, build_engine

        if is_engine:
            return TrtRunner(model)
        if not model.is_file():
            raise ModelFileError(model, "ONNX model file not found")
        source = verify_graph(model, model.read_bytes())
        engine = model.with_suffix(".engine")
        built = read_sidecar(engine) if engine.exists() else None
        if built is None or built[1] != source.sha256:
            print(f"building TensorRT engine {engine} from {model} ...", flush=True)
            build_engine(model, engine)
        runner = TrtRunner(engine)
        runner.model_info = {**runner.model_info, "onnx": os.fspath(model), "onnx_sha256": source.sha256}
        runner.digest = source
        return runner
    raise ValueError(f"--backend: unknown backend {backend!r} (choose 'auto', 'ort' or 'trt')")


class ControlLoop:
    """Runs episodes; owns the budget, the optional journal and the statistics. See the module docstring."""

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
        step_log_every: int = 1,
        meters: dict[str, PageMeter] | None = None,
        summary_every: int = 0,
        on_summary=None,
        keep_write_steps: bool = False,
    ):
        self.runner, self.robot, self.backbone = runner, robot, backbone
        self.max_steps = max_steps
        st = runner.spec.state
        self.meter = PageMeter(flash.page_bytes)
        self.budget = BudgetController(flash, self.meter, control_hz, enabled=budget)
        for name, meter in (meters or {}).items():
            self.budget.add_meter(name, meter)
        self.record_size = record_bytes(st)
        self.fsync = fsync
        self.journal = None
        if journal_dir is not None:
            self.journal = StateJournal.open(
                journal_dir,
                st,
                fsync=fsync,
                snapshot_every=snapshot_every,
                meter=self.meter,
                model=runner.model_id,
            )
            runner.load_state(self.journal.recovery.state)
        self.step_log = step_log
        self.step_log_every = step_log_every
        self.summary_every, self.on_summary = summary_every, on_summary
        self.keep_write_steps = keep_write_steps  # the summary lists them (for videos; bounded episodes)
        self.latency, self.journal_us = LogHistogram(), LogHistogram()  # the current episode's
        self.sim_us, self.backbone_us = LogHistogram(), LogHistogram()  # robot.observe + act, backbone
        self.run_latency, self.run_journal_us = LogHistogram(), LogHistogram()  # finished episodes'
        self.total_steps = self.total_writes = self.total_requested = 0
        self.total_suppressed = self.total_fallbacks = self.episodes_done = 0
        self.stop_signal: int | None = None
        self._ep: dict | None = None  # the counters of the episode in progress

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop at the next step boundary (safe to call from a signal handler)."""
        self.stop_signal = signum

    def _log(self, episode: int, t: int, write: bool, p: float, lat_us: float, extra: str) -> None:
        gp = "null" if p != p else f"{p:.6f}"
        self.step_log.write(
            f'{{"episode": {episode}, "t": {t}, "write": {int(write)}, "gate_prob": {gp},'
            f'"latency_us": {lat_us:.1f}{extra}}}\n'
        )

    def recovery_line(self) -> str | None:
        """What opening the journal found, always (None only without a journal)."""
        if self.journal is None:
            return None
        return self.journal.recovery.report()

    def _persist(self, t: int) -> None:
        """Journal the write just committed (or, without a journal, count what it would cost)."""
        if self.journal is not None:
            j0 = time.perf_counter_ns()
            self.journal.append(t, self.runner.record)
            self.journal.maybe_snapshot(self.runner.state, t)
            self.journal_us.add((time.perf_counter_ns() - j0) / 1000.0)
        else:
            self.meter.append(self.record_size)
            if self.fsync == "record":
                self.meter.sync()

    def episode(self, index: int, seed: int | None = None, resume: bool = False) -> dict:
        """Run one episode (at most ``max_steps`` steps) and return its summary.

        A new episode starts from an empty memory (snapshotted to the journal) unless ``resume``: then it
        continues from the current (e.g. recovered) state. A stop request ends it early; its summary then
        says ``"stopped": "SIGTERM"`` (or the signal's name).
        """
        runner, robot, budget = self.runner, self.robot, self.budget
        st = runner.spec.state
        bytes0, pages0 = budget.bytes, budget.pages  # the episode's own snapshot counts too
        if not resume:
            runner.load_state(st.zeros())
            if self.journal is not None:
                self.journal.snapshot(runner.state, self.total_steps)
        robot.reset(seed)
        self.backbone.reset()
        for h in (self.latency, self.journal_us, self.sim_us, self.backbone_us):
            h.reset()
        ep = self._ep = {"writes": 0, "requested": 0, "suppressed": 0, "fallbacks": 0, "t": 0}
        write_steps: list[int] = []
        clock = time.perf_counter_ns
        t = 0
        while t < self.max_steps and self.stop_signal is None:
            s0 = clock()
            observation = robot.observe()
            s1 = clock()
            features, base = self.backbone(observation)
            self.backbone_us.add((clock() - s1) / 1000.0)
            # -- the runtime's share of the step: graph, budget decision, exact commit --------------
            t0 = clock()
            res = runner.step(features, base)  # InputError (wrong shape/dtype) ends the run cleanly
            commit = suppress = False
            if res.write:
                commit = budget.allow(self.total_steps, self.record_size, self.fsync == "record")
                suppress = not commit
                if commit:
                    runner.commit()
                else:
                    runner.suppress()
            lat = (clock() - t0) / 1000.0
            # -- bookkeeping, outside the timed region --------------------------------------------
            self.latency.add(lat)
            if res.write:
                ep["requested"] += 1
            if commit:
                ep["writes"] += 1
                self._persist(self.total_steps)
                if self.keep_write_steps:
                    write_steps.append(t)
            extra = ""
            if suppress:
                ep["suppressed"] += 1
                extra = ', "suppressed": "flash_budget"'
            if res.fallback is not None:
                ep["fallbacks"] += 1
                extra = f', "fallback": "{res.fallback}"'
            if self.step_log is not None and self.total_steps % self.step_log_every == 0:
                self._log(index, t, commit, res.gate_prob, lat, extra)
            t += 1
            ep["t"] = t
            self.total_steps += 1
            if self.summary_every and self.total_steps % self.summary_every == 0:
                self.flush_summary("running")
            a0 = clock()
            done = robot.act(res.action)
            self.sim_us.add((clock() - a0 + s1 - s0) / 1000.0)
            if done:
                break
        if self.journal is not None:
            self.journal.sync()
        elif self.fsync != "record":
            self.meter.sync()
        self._flush_step_log()  # so the episode's bytes and pages include its log
        self.total_writes += ep["writes"]
        self.total_requested += ep["requested"]
        self.total_suppressed += ep["suppressed"]
        self.total_fallbacks += ep["fallbacks"]
        self.episodes_done += 1
        self._ep = None
        summary = self._episode_summary(index, ep, budget.bytes - bytes0, budget.pages - pages0)
        if self.keep_write_steps:
            summary["write_steps"] = write_steps
        self.run_latency.merge(self.latency)
        self.run_journal_us.merge(self.journal_us)
        return summary

    def _episode_summary(self, index: int, ep: dict, nbytes: int, pages: int) -> dict:
        st = self.runner.spec.state
        t, writes = ep["t"], ep["writes"]
        flash = self.budget.report(self.total_steps, self.total_writes)
        task = self.robot.stats() if hasattr(self.robot, "stats") else {}
        out = {
            "episode": index,
            "steps": t,
            "writes": writes,
            "write_rate": writes / t if t else 0.0,
            "writes_requested": ep["requested"],
            "writes_suppressed": ep["suppressed"],
            "fallbacks": ep["fallbacks"],
            "bytes_written": nbytes,
            "pages_written": pages,
            "record_bytes": self.record_size,
            "state_bytes": st.state_bytes,
            "dense_rewrite_bytes": writes * st.state_bytes,
            "kv_equivalent_bytes": t * st.kv_bytes_per_step,
            **self.latency.summary("latency_us_"),
            "journal_us_median": self.journal_us.quantile(0.5) if self.journal_us.n else 0.0,
            "journal_us_p99": self.journal_us.quantile(0.99) if self.journal_us.n else 0.0,
            # the rest of the step: the robot (observe + act: simulator / camera / driver) and the backbone
            "sim_us_median": self.sim_us.quantile(0.5) if self.sim_us.n else 0.0,
            "backbone_us_median": self.backbone_us.quantile(0.5) if self.backbone_us.n else 0.0,
            "backbone_us_p99": self.backbone_us.quantile(0.99) if self.backbone_us.n else 0.0,
            "flash": {k: v for k, v in flash.items() if k != "config"},
            **task,
        }
        if self.stop_signal is not None:
            out["stopped"] = signal.Signals(self.stop_signal).name
        return out

    def summary(self, status: str) -> dict:
        """Run totals so far, including the episode in progress (what ``on_summary`` receives)."""
        lat, jus = self.run_latency.copy(), self.run_journal_us.copy()
        ep = self._ep or {"writes": 0, "requested": 0, "suppressed": 0, "fallbacks": 0, "t": 0}
        if self._ep is not None:  # the current episode's histograms are not merged yet
            lat.merge(self.latency)
            jus.merge(self.journal_us)
        writes = self.total_writes + ep["writes"]
        flash = self.budget.report(self.total_steps, writes)
        out = {
            "status": status,
            "steps": self.total_steps,
            "episodes_done": self.episodes_done,
            "writes": writes,
            "writes_requested": self.total_requested + ep["requested"],
            "writes_suppressed": self.total_suppressed + ep["suppressed"],
            "fallbacks": self.total_fallbacks + ep["fallbacks"],
            **lat.summary("latency_us_"),
            **jus.summary("journal_us_"),
            "latency_rel_err": lat.rel_err,
            "flash": {k: v for k, v in flash.items() if k != "config"},
            "rss_bytes": rss_bytes(),
            "wall_time": time.time(),
        }
        if self.journal is not None:
            out["journal"] = {"seq": self.journal.seq, "generation": self.journal.generation}
        return out

    def _flush_step_log(self) -> None:
        flush = getattr(self.step_log, "flush", None)
        if flush is not None:
            flush()

    def flush_summary(self, status: str) -> None:
        """Hand the run totals to ``on_summary``; the step log is flushed first, so they include it."""
        self._flush_step_log()
        if self.on_summary is not None:
            self.on_summary(self.summary(status))

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


@contextlib.contextmanager
def stop_on_signals(loop: ControlLoop, signals=(signal.SIGINT, signal.SIGTERM)):
    """While active, SIGINT / SIGTERM ask ``loop`` to stop at the next step boundary.

    A second signal of the same kind gets its previous handler (a second Ctrl-C interrupts at once).
    Outside the main thread (where handlers cannot be set) this does nothing.
    """
    previous = {}

    def handler(signum, frame):
        loop.request_stop(signum)
        signal.signal(signum, previous[signum])

    try:
        for s in signals:
            previous[s] = signal.signal(s, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield loop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
