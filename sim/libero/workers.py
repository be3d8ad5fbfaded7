"""Executors for the LIBERO harness: local worker processes, or Ray when given an address.

Both run ``runner(payload) -> dict`` for jobs handed out by a scheduler (``next_job()``,
``finished(job, result)``, ``failed(job, error) -> retry?``, ``open()``) and never let one episode take
the run down:

* an exception in the runner is caught in the worker and reported;
* a worker that dies (segfault in MuJoCo/GL, OOM kill, ``os._exit``) or exceeds ``timeout`` is
  detected through its process sentinel, replaced by a fresh process, and the job it held - known
  exactly, since each worker holds one job at a time - is reported as failed.

The scheduler decides whether a failed job is retried. Local workers are ``spawn``-ed processes
(forking a process that already holds a GL context is unsafe) that keep their environments across
jobs, so the scheduler orders jobs to reuse them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any


class MissingPackageError(ImportError, RuntimeError):
    """An optional package a requested mode needs is not installed (a user error, not a failed run)."""


@dataclass
class Job:
    key: tuple
    payload: dict
    attempt: int = 1
    meta: dict = field(default_factory=dict)


class RetryQueue:
    """The queue half of a scheduler: jobs run in order; a failed job goes back to the front until it has
    had ``retries`` extra attempts. Subclasses set ``self.queue`` and ``self.retries`` and add
    ``next_job`` / ``finished`` / ``failed``."""

    queue: list[Job]
    retries: int

    def spent(self, job: Job) -> bool:
        """Whether ``job`` has had its ``retries`` extra attempts (this failure is its last)."""
        return job.attempt > self.retries

    def retry(self, job: Job) -> bool:
        """Requeue ``job`` for its next attempt; False (not requeued) once its attempts are spent."""
        if self.spent(job):
            return False
        job.attempt += 1
        self.queue.insert(0, job)
        return True

    def open(self) -> bool:
        return bool(self.queue)


def _worker_main(conn, runner: Callable[[dict], dict], nice: int) -> None:
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        jid, payload = msg
        try:
            conn.send((jid, True, runner(payload)))
        except Exception as e:  # a failing episode is reported, the worker lives on
            conn.send((jid, False, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"))


class _Worker:
    def __init__(self, ctx, runner, nice: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, runner, nice), daemon=True)
        self.proc.start()
        child.close()
        self.job: Job | None = None
        self.started = 0.0

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def run_local(
    scheduler, runner: Callable[[dict], dict], workers: int, timeout: float | None = None, nice: int = 0
):
    """Run every job the scheduler hands out on ``workers`` local processes."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    ctx = mp.get_context("spawn")
    pool = [_Worker(ctx, runner, nice) for _ in range(workers)]
    jid = 0
    try:
        while True:
            for w in pool:
                if w.job is None and (job := scheduler.next_job()) is not None:
                    jid += 1
                    job.meta["jid"] = jid
                    w.job, w.started = job, time.perf_counter()
                    w.conn.send((jid, job.payload))
            busy = [w for w in pool if w.job is not None]
            if not busy:
                if scheduler.open():
                    raise RuntimeError("scheduler has open jobs but none is ready (dependency cycle?)")
                return
            wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=1.0)
            for i, w in enumerate(pool):
                if w.job is None:
                    continue
                job, error = w.job, None
                if w.conn.poll():
                    try:
                        got, ok, value = w.conn.recv()
                    except (EOFError, OSError):
                        w.proc.join(timeout=5)  # the pipe closes before the process is reaped
                        error = f"worker pid {w.proc.pid} died (exit code {w.proc.exitcode})"
                    else:
                        if got != job.meta["jid"]:
                            error = f"worker pid {w.proc.pid} answered job {got}, expected {job.meta['jid']}"
                        elif ok:
                            w.job = None
                            scheduler.finished(job, value)
                            continue
                        else:
                            w.job = None
                            scheduler.failed(job, value)
                            continue
                elif not w.proc.is_alive():
                    w.proc.join()
                    error = f"worker pid {w.proc.pid} died (exit code {w.proc.exitcode})"
                elif timeout is not None and time.perf_counter() - w.started > timeout:
                    error = f"episode exceeded the {timeout:.0f} s timeout; worker pid {w.proc.pid} killed"
                    w.proc.kill()
                    w.proc.join()
                if error is not None:
                    pool[i] = _Worker(ctx, runner, nice)
                    scheduler.failed(job, error)
    finally:
        for w in pool:
            if w.job is not None:
                w.proc.kill()
            w.stop()


def run_ray(
    scheduler,
    runner: Callable[[dict], dict],
    address: str,
    workers: int | None = None,
    timeout: float | None = None,
):
    """Run the jobs as Ray tasks on the cluster at ``address``: ``HOST:PORT`` of a head started with
    ``ray start --head``, ``ray://HOST:PORT`` (Ray client), ``auto`` (the cluster ``ray start`` last
    started on this machine) or ``local`` (a throw-away cluster of this process).

    A task running longer than ``timeout`` seconds (counted from its submission: at most one task per slot
    is in flight, so that is when it starts) is cancelled with ``ray.cancel(force=True)``, which kills its
    worker process, and goes back to the scheduler as a failure, as ``run_local`` does with its processes.

    The driver's ``AURA_*`` variables (test hooks such as ``AURA_LIBERO_CRASH_ONCE``, kernel and backend
    choices) are handed to the tasks through the job's ``runtime_env``: the workers of a separately
    started head are children of its raylet and would not see this process's environment otherwise.
    """
    try:
        import ray
    except ImportError as e:
        raise MissingPackageError(
            "--ray needs the ray package, which AURA does not install by default: pip install ray[default] "
            "(or the ray extra: pip install -e '.[ray]'; scripts/setup.sh installs it)"
        ) from e
    _check_address(address)
    env = {k: v for k, v in os.environ.items() if k.startswith("AURA_")}
    try:
        ray.init(
            address=address,
            ignore_reinit_error=True,
            log_to_driver=False,
            runtime_env={"env_vars": env} if env else None,
        )
    except ConnectionError as e:
        raise ConnectionError(_connect_error(ray, address, e)) from e
    try:
        _ray_loop(ray, scheduler, runner, workers, timeout)
    finally:
        ray.shutdown()  # disconnects this driver; a cluster given by address keeps running


def _check_address(address: str) -> None:
    """A malformed ``--ray`` is a ValueError, a ``HOST:PORT`` nothing listens on a ConnectionError, at once:
    ``ray.init`` itself retries an unreachable GCS for minutes before it gives up."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"--ray must be HOST:PORT (a Ray head's address, as `ray start --head` prints it), "
            f"ray://HOST:PORT, auto or local; got {address!r}"
        )
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ConnectionError(
            f"--ray {address}: no Ray head answers there ({why}); start one with "
            f"`ray start --head --port {port}` or give the address it printed"
        ) from None


def _connect_error(ray, address: str, err: BaseException) -> str:
    """One line for a failed ``ray.init``; names the token set-up when that is what failed (Ray >= 2.5x
    clusters started by ``ray start`` use token authentication once ~/.ray/auth_token exists, and a driver
    given an explicit address only sends a token with RAY_AUTH_MODE=token)."""
    auth = getattr(ray.exceptions, "AuthenticationError", ())
    cause: BaseException | None = err
    while cause is not None:
        # ray wraps the AuthenticationError's traceback into the text of a RuntimeError
        if (auth and isinstance(cause, auth)) or "AuthenticationError" in str(cause):
            return (
                f"--ray {address}: the Ray cluster refused this driver's authentication token; set "
                "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (or RAY_AUTH_TOKEN) to the cluster's token"
            )
        cause = cause.__cause__ or cause.__context__
    return f"--ray {address}: {err}"


def _ray_loop(ray, scheduler, runner, workers, timeout) -> None:
    slots = workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
    remote = ray.remote(num_cpus=1, max_retries=0)(runner)  # retries are the scheduler's decision
    inflight: dict[Any, tuple[Job, float]] = {}
    while True:
        while len(inflight) < slots and (job := scheduler.next_job()) is not None:
            inflight[remote.remote(job.payload)] = (job, time.perf_counter())
        if not inflight:
            if scheduler.open():
                raise RuntimeError("scheduler has open jobs but none is ready (dependency cycle?)")
            return
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
        for ref in ready:
            job, _ = inflight.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as e:  # RayTaskError, WorkerCrashedError, ...
                scheduler.failed(job, f"{type(e).__name__}: {e}")
            else:
                scheduler.finished(job, result)
        if timeout is not None:
            now = time.perf_counter()
            for ref in [r for r, (_, t0) in inflight.items() if now - t0 > timeout]:
                job, _ = inflight.pop(ref)
                ray.cancel(ref, force=True)  # kills the worker process; the slot is free again
                scheduler.failed(job, f"episode exceeded the {timeout:.0f} s timeout; Ray task cancelled")
