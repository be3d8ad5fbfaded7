"""What ``aura run`` writes to OUT besides the journal, every byte metered for the flash budget.

=====================  ===============================================================================
``steps.jsonl``        per-step log, ``--step-log off | sample:N | full`` (every N-th step; ~100 B a line)
``episodes.jsonl``     one line per episode, also for an episode a signal stopped (``"stopped"``)
``summary.json``       run totals, rewritten atomically every ``--summary-every`` steps and at the end
``run.json``           the run record: command, options, flash config, model digests, versions, recovery
                       and, at the end, how the run ended; written atomically at the start and the end
=====================  ===============================================================================

Logs are appended through an unbuffered descriptor in blocks of ``flush_bytes`` (64 KiB); each block is
metered as an append and a sync (:class:`deploy.runtime.budget.PageMeter`), the pages it programs once
the OS writes it back. JSON records are written whole (temporary file, fsync, rename, directory fsync) and
metered as whole files. So the budget meter's byte count is every byte this module and the journal hand
to ``write(2)``; the soak benchmark checks that against the kernel's count (``/proc/<pid>/io``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from deploy.runtime.budget import PageMeter
from deploy.runtime.journal import replace_file, write_all

STEP_LOG_HELP = "off | sample:N (every N-th step) | full"


def parse_step_log(mode: str) -> int:
    """Steps between two logged steps: 0 = off, 1 = full, N = sample:N; ValueError naming the option."""
    if mode == "off":
        return 0
    if mode == "full":
        return 1
    kind, _, n = mode.partition(":")
    if kind == "sample" and n.isdigit() and int(n) >= 1:
        return int(n)
    raise ValueError(f"--step-log must be {STEP_LOG_HELP}, got {mode!r}")


class AppendLog:
    """An append-only text file written in blocks, its bytes and pages counted by ``meter``.

    The block buffer is allocated once (``flush_bytes``), so logging allocates nothing that outlives a step.
    """

    def __init__(self, path: str | os.PathLike, meter: PageMeter, flush_bytes: int = 1 << 16):
        self.path, self.meter, self.flush_bytes = Path(path), meter, max(int(flush_bytes), 1)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        meter.open_file(os.fstat(self._fd).st_size)
        self._buf = bytearray(self.flush_bytes)
        self._view = memoryview(self._buf)
        self._n = 0

    def write(self, text: str) -> None:
        data = text.encode()
        if self._n + len(data) > self.flush_bytes:
            self.flush()
        if len(data) >= self.flush_bytes:  # a line longer than the block goes out on its own
            self._emit(data)
            return
        self._view[self._n : self._n + len(data)] = data
        self._n += len(data)
        if self._n >= self.flush_bytes:
            self.flush()

    def _emit(self, data) -> None:
        write_all(self._fd, data)
        self.meter.append(len(data))
        self.meter.sync()

    def flush(self) -> None:
        if self._n and self._fd >= 0:
            self._emit(self._view[: self._n])
            self._n = 0

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1


def write_json_atomic(path: str | os.PathLike, obj, meter: PageMeter | None = None, indent=None) -> int:
    """Replace ``path`` with ``obj`` as JSON, whole or not at all; returns the bytes written.

    ``indent=None`` uses json's C encoder; an indent selects the pure-Python one, whose closures form
    reference cycles per call: garbage that, written every minute, the cyclic GC may keep for hours.
    """
    data = (json.dumps(obj, indent=indent, default=str) + "\n").encode()
    replace_file(Path(path), data)
    if meter is not None:
        meter.write_file(len(data))
    return len(data)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc/self/statm``; 0 elsewhere)."""
    try:  # raw os calls: a text-mode open() per call leaves objects behind in the periodic path
        fd = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return 0
    try:
        return int(os.read(fd, 256).split()[1]) * _PAGE
    finally:
        os.close(fd)


class RunOutputs:
    """The files of one ``aura run`` in ``out`` and their meters (``meters``: name -> PageMeter)."""

    FILES = ("steps.jsonl", "episodes.jsonl", "summary.json", "run.json")

    def __init__(self, out: str | os.PathLike, page_bytes: int, step_every: int):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.meters = {name: PageMeter(page_bytes) for name in ("step_log", "episode_log", "records")}
        self.step_every = step_every
        self.steps = AppendLog(self.out / "steps.jsonl", self.meters["step_log"]) if step_every else None
        self.episodes = AppendLog(
            self.out / "episodes.jsonl", self.meters["episode_log"], flush_bytes=1
        )  # per line

    def write_episode(self, summary: dict) -> None:
        self.episodes.write(json.dumps(summary) + "\n")

    def write_summary(self, summary: dict) -> None:
        write_json_atomic(self.out / "summary.json", summary, self.meters["records"])

    def write_run(self, record: dict) -> None:
        write_json_atomic(self.out / "run.json", record, self.meters["records"], indent=1)

    def close(self) -> None:
        if self.steps is not None:
            self.steps.close()
        self.episodes.close()


def move_previous(out: str | os.PathLike, names: tuple[str, ...]) -> Path | None:
    """Move an earlier run's files in ``out`` to ``out/prev/`` (replacing an older ``prev``); None if none."""
    out = Path(out)
    found = [n for n in names if (out / n).exists()]
    if not found:
        return None
    prev = out / "prev"
    if prev.exists():
        shutil.rmtree(prev)
    prev.mkdir()
    for n in found:
        (out / n).rename(prev / n)
    return prev
