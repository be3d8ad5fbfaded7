"""Crash-safe state journal: periodic snapshots plus append-only, CRC-checked write records.

A journal directory holds generations g = 0, 1, 2, ... (format and recovery: :mod:`deploy.runtime.recovery`):

* ``snapshot-<g>.bin``: the full state after record ``seq`` (header with the state shape and the model's
  sha256, state, CRC-32), written to a temporary file, fsynced and renamed into place, so a snapshot is
  either complete or absent;
* ``segment-<g>.log``: a header (shape, model, the seq it continues from, CRC) and the write records that
  follow snapshot g. One record is ``'AW', kind, flags, seq u64, t u64, decay[H,K], key[H,K], delta[H,V],
  aux[H,V] (float32), CRC-32``: 536 B at H=1, K=V=32 (a dense state rewrite would be 4,224 B).

A new generation starts at :meth:`StateJournal.open` (after recovering), every ``snapshot_every`` records
and at every :meth:`StateJournal.snapshot`; generation numbers only grow, so no file is ever rewritten or
overwritten (a name that exists is an error). The two newest snapshots are kept with every segment from
the older one on, so a corrupt newest snapshot can be replayed around; older files are deleted.

Recovery is exact or refuses: a torn tail (an incomplete last record) is dropped and reported; any other
damage (a CRC failure with data after it, a damaged header, a missing segment) raises
:class:`~deploy.runtime.errors.JournalCorruptError` naming the file and offset, and changes nothing. A
journal records the model that wrote it and is refused by another.

fsync policy (``fsync=``):

* ``"record"`` (default): every record is ``fdatasync``-ed before :meth:`StateJournal.append` returns.
  A power loss loses at most the write in flight, which was never acknowledged.
* ``"group"``: ``fdatasync`` every ``group_records`` records and at :meth:`StateJournal.sync` /
  :meth:`StateJournal.close` (the loop syncs at each episode end). A power loss can lose up to
  ``group_records - 1`` acknowledged writes; the recovered state is still exactly the state after the last
  record that reached the disk. Fewer page programs, so less flash wear.
* ``"none"``: leave it to the OS. Survives a killed process (the page cache outlives it), not a power loss.

Every byte written is reported to ``meter`` (:class:`deploy.runtime.budget.PageMeter`): records as
appends, syncs as syncs, snapshots and segment headers as whole files.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from deploy.runtime.errors import JournalError
from deploy.runtime.recovery import (
    ANY_GEN_RE,
    CRC,
    REC_HEAD,
    REC_KIND_WRITE,
    REC_MAGIC,
    SEG_HEAD,
    SEG_MAGIC,
    SEG_RE,
    SNAP_HEAD,
    SNAP_MAGIC,
    SNAP_RE,
    VERSION,
    Recovery,
    list_files,
    model_bytes,
    record_bytes,
    recover,
    snapshot_bytes,
)
from deploy.runtime.state import F32, StateSpec, WriteRecord

FSYNC_POLICIES = ("record", "group", "none")
__all__ = ["FSYNC_POLICIES", "Recovery", "StateJournal", "record_bytes", "recover", "snapshot_bytes"]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync(fd: int) -> None:
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def write_all(fd: int, data) -> None:
    """``os.write`` until every byte of ``data`` is written (a write may take fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def replace_file(path: Path, payload: bytes) -> None:
    """Put ``payload`` at ``path`` whole or not at all: temp file, fsync, rename, directory fsync."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _create_atomic(path: Path, payload: bytes) -> None:
    """Write a new file whole (:func:`replace_file`); never replaces one."""
    if path.exists():
        raise JournalError(path, "already exists: the journal never overwrites a file (concurrent writer?)")
    replace_file(path, payload)


def exists(directory: str | os.PathLike) -> bool:
    """Does ``directory`` hold a journal (any snapshot or segment)?"""
    directory = Path(directory)
    return directory.is_dir() and any(ANY_GEN_RE.fullmatch(p.name) for p in directory.iterdir())


class StateJournal:
    """Append-only journal of committed writes. Use :meth:`open`; see the module docstring for the policy.

    ``meter`` (a :class:`deploy.runtime.budget.PageMeter`) is told every byte appended and every sync, so the
    flash budget counts bytes and pages, not write events. ``model`` (sha256 hex of the step graph) is
    written into every file and checked on recovery.
    """

    def __init__(
        self,
        directory: Path,
        spec: StateSpec,
        fsync: str,
        group_records: int,
        snapshot_every: int,
        meter=None,
        model: str | None = None,
    ):
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, got {fsync!r}")
        if group_records < 1 or snapshot_every < 1:
            raise ValueError("group_records and snapshot_every must be >= 1")
        self.directory, self.spec, self.fsync = directory, spec, fsync
        self.group_records, self.snapshot_every, self.meter = group_records, snapshot_every, meter
        self.model = model_bytes(model)
        self.record_size = record_bytes(spec)
        self._buf = bytearray(self.record_size)
        self._payload = np.frombuffer(self._buf, dtype=F32, count=spec.record_floats, offset=REC_HEAD.size)
        self._fd = -1
        self.generation = -1
        self.seq = self.snapshot_seq = 0
        self.unsynced = 0
        self.bytes_written = 0
        self.recovery: Recovery | None = None

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike,
        spec: StateSpec,
        *,
        fsync: str = "record",
        group_records: int = 16,
        snapshot_every: int = 4096,
        initial_state: np.ndarray | None = None,
        meter=None,
        model: str | None = None,
    ) -> StateJournal:
        """Open (recovering) or create the journal in ``directory``; state: ``journal.recovery.state``.

        Recovery errors (corruption, another model or shape) propagate before anything is written.
        """
        directory = Path(directory)
        self = cls(directory, spec, fsync, group_records, snapshot_every, meter, model)
        directory.mkdir(parents=True, exist_ok=True)
        for tmp in directory.glob("*.tmp"):  # an atomic write that never got renamed: never part of it
            tmp.unlink()
        if not list_files(directory, SNAP_RE):
            if list_files(directory, SEG_RE):
                raise JournalError(directory, "segments without any snapshot: refusing to start over them")
            state = spec.zeros() if initial_state is None else np.array(initial_state, dtype=F32)
            if state.shape != spec.shape:
                raise ValueError(f"initial_state has shape {state.shape}, expected {spec.shape}")
            self.recovery = Recovery(state, 0, 0, None, 0, 0, 0, [], [], model=self.model, new=True)
            self._start_generation(state, 0, 0)
            return self
        self.recovery = recover(directory, spec, model)
        if self.model == bytes(32):  # resume under the identity the journal recorded
            self.model = self.recovery.model
        for bad in self.recovery.corrupt_snapshots:  # kept for inspection, out of the rotation
            bad.rename(bad.with_name(bad.name + ".corrupt"))
            self.recovery.notes.append(f"{bad.name} quarantined as {bad.name}.corrupt")
        self._start_generation(self.recovery.state, self.recovery.seq, self.recovery.t)
        return self

    def _next_generation(self) -> int:
        gens = [int(m.group(1)) for p in self.directory.iterdir() if (m := ANY_GEN_RE.fullmatch(p.name))]
        return max(gens, default=-1) + 1

    def _write_file(self, path: Path, payload: bytes) -> None:
        _create_atomic(path, payload)
        if self.meter is not None:
            self.meter.write_file(len(payload))
        self.bytes_written += len(payload)

    def _start_generation(self, state: np.ndarray, seq: int, t: int) -> None:
        """Snapshot ``state`` (the state after record ``seq``) and open the segment that follows it."""
        gen = self._next_generation()
        spec = self.spec
        head = SNAP_HEAD.pack(
            SNAP_MAGIC, VERSION, spec.heads, spec.d_key, spec.d_val, gen, seq, t, self.model
        )
        body = head + np.ascontiguousarray(state, dtype=F32).tobytes()
        self._write_file(self.directory / f"snapshot-{gen:016d}.bin", body + CRC.pack(zlib.crc32(body)))
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        head = SEG_HEAD.pack(SEG_MAGIC, VERSION, spec.heads, spec.d_key, spec.d_val, gen, seq, self.model, 0)
        head = head[:-4] + CRC.pack(zlib.crc32(head[:-4]))
        seg = self.directory / f"segment-{gen:016d}.log"
        self._write_file(seg, head)
        self._fd = os.open(seg, os.O_WRONLY | os.O_APPEND)
        self.generation, self.seq, self.snapshot_seq = gen, seq, seq
        self._rotate()

    def _rotate(self) -> None:
        # Keep the two newest snapshots and every segment from the older one on, so a corrupt newest
        # snapshot can still be replayed around. Snapshots go first: a leftover older segment is ignored.
        snaps = list_files(self.directory, SNAP_RE)
        keep_from = snaps[-2][0] if len(snaps) >= 2 else snaps[-1][0]
        for g, p in snaps + list_files(self.directory, SEG_RE):
            if g < keep_from:
                p.unlink()

    def snapshot(self, state: np.ndarray, t: int) -> None:
        """Snapshot ``state`` (the state after the last appended record) and start a new segment."""
        if self._fd < 0:
            raise JournalError(self.directory, "journal is closed")
        self.sync()
        self._start_generation(state, self.seq, t)

    def append(self, t: int, record: WriteRecord) -> int:
        """Append one committed write (taken at control step ``t``); returns its sequence number."""
        if self._fd < 0:
            raise JournalError(self.directory, "journal is closed")
        seq = self.seq + 1
        REC_HEAD.pack_into(self._buf, 0, REC_MAGIC, REC_KIND_WRITE, 0, seq, t)
        self._payload[:] = record.flat
        CRC.pack_into(self._buf, self.record_size - 4, zlib.crc32(memoryview(self._buf)[:-4]))
        write_all(self._fd, self._buf)
        if self.meter is not None:
            self.meter.append(self.record_size)
        self.bytes_written += self.record_size
        self.unsynced += 1
        if self.fsync == "record" or (self.fsync == "group" and self.unsynced >= self.group_records):
            self.sync()
        self.seq = seq
        return seq

    def maybe_snapshot(self, state: np.ndarray, t: int) -> bool:
        """Snapshot if ``snapshot_every`` records have been appended since the last one."""
        if self.seq - self.snapshot_seq >= self.snapshot_every:
            self.snapshot(state, t)
            return True
        return False

    def sync(self) -> None:
        if self._fd >= 0 and self.unsynced:
            if self.fsync != "none":
                _sync(self._fd)
            if self.meter is not None:
                self.meter.sync()
            self.unsynced = 0

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> StateJournal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
