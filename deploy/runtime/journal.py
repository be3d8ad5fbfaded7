"""Crash-safe state journal: periodic snapshots plus append-only, CRC-checked write records.

A journal directory holds

* ``snapshot-<seq>.bin``: the full state after record ``seq`` (header, state, CRC-32), written to a
  temporary file, fsynced and renamed into place, so a snapshot is either complete or absent;
* ``segment-<seq>.log``: a header and the write records that follow snapshot ``seq``. One record is
  ``magic 'AW', kind, flags, seq u64, t u64, decay[H,K], key[H,K], delta[H,V], aux[H,V] (float32), CRC-32``:
  536 B at H=1, K=V=32 (a dense state rewrite would be 4,224 B).

Recovery = newest valid snapshot + every valid record after it, in sequence order, applied with
:func:`deploy.runtime.state.apply_write` (the runtime's own write, so the result is bit-exact). A record that
is short (torn by a crash mid-write), fails its CRC, or breaks the sequence ends the replay: it and everything
after it is dropped, never applied, and counted in ``Recovery.dropped_bytes``. A corrupt newest snapshot
falls back to the previous one (two are kept, with their segments).

fsync policy (``fsync=``):

* ``"record"`` (default): every record is ``fdatasync``-ed before :meth:`StateJournal.append` returns.
  A power loss loses at most the write in flight, which was never acknowledged.
* ``"group"``: ``fdatasync`` every ``group_records`` records and at :meth:`StateJournal.sync` /
  :meth:`StateJournal.close` (the loop syncs at each episode end). A power loss can lose up to
  ``group_records - 1`` acknowledged writes; the recovered state is still exactly the state after the last
  record that reached the disk. Fewer page programs, so less flash wear.
* ``"none"``: leave it to the OS. Survives a killed process (the page cache outlives it), not a power loss.

Opening a journal recovers it, then writes a fresh snapshot of the recovered state and starts a new segment,
so a torn tail is never appended to.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.runtime.errors import JournalError
from deploy.runtime.state import F32, StateSpec, WriteRecord, apply_write

VERSION = 1
SNAP_MAGIC = b"AURASNP1"
SEG_MAGIC = b"AURAJNL1"
REC_MAGIC = b"AW"
REC_KIND_WRITE = 1
_SNAP_HEAD = struct.Struct("<8sIIIIQQ")  # magic, version, H, K, V, seq, t
_SEG_HEAD = struct.Struct("<8sIIIIQI")  # magic, version, H, K, V, base seq, crc
_REC_HEAD = struct.Struct("<2sBBQQ")  # magic, kind, flags, seq, t
_CRC = struct.Struct("<I")
_SNAP_RE = re.compile(r"snapshot-(\d{16})\.bin")
_SEG_RE = re.compile(r"segment-(\d{16})\.log")
FSYNC_POLICIES = ("record", "group", "none")


def record_bytes(spec: StateSpec) -> int:
    """On-disk size of one write record (536 B at H=1, K=V=32)."""
    return _REC_HEAD.size + spec.record_floats * 4 + _CRC.size


def snapshot_bytes(spec: StateSpec) -> int:
    return _SNAP_HEAD.size + spec.state_bytes + _CRC.size


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync(fd: int) -> None:
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _atomic_write(path: Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _check_shape(path: Path, spec: StateSpec, heads: int, d_key: int, d_val: int) -> None:
    if (heads, d_key, d_val) != (spec.heads, spec.d_key, spec.d_val):
        raise JournalError(
            path,
            f"journal is for a state of heads={heads}, d_key={d_key}, d_val={d_val} but the model has "
            f"heads={spec.heads}, d_key={spec.d_key}, d_val={spec.d_val}",
        )


def _read_snapshot(path: Path, spec: StateSpec) -> tuple[int, int, np.ndarray]:
    """(seq, t, state) or JournalError; a shape mismatch is reported as such, not as corruption."""
    data = path.read_bytes()
    if len(data) < _SNAP_HEAD.size or data[:8] != SNAP_MAGIC:
        raise JournalError(path, "not an AURA snapshot (bad magic or truncated header)")
    magic, version, h, k, v, seq, t = _SNAP_HEAD.unpack_from(data)
    if version != VERSION:
        raise JournalError(path, f"snapshot format version {version}, this runtime reads {VERSION}")
    _check_shape(path, spec, h, k, v)
    if len(data) != snapshot_bytes(spec):
        raise JournalError(path, f"snapshot is {len(data)} B, expected {snapshot_bytes(spec)} (truncated)")
    (crc,) = _CRC.unpack_from(data, len(data) - 4)
    if zlib.crc32(memoryview(data)[:-4]) != crc:
        raise JournalError(path, "snapshot CRC mismatch (corrupt)")
    state = np.frombuffer(data, dtype=F32, count=spec.state_bytes // 4, offset=_SNAP_HEAD.size)
    return seq, t, state.reshape(spec.shape).copy()


@dataclass
class Recovery:
    """What :func:`recover` found: the state after record ``seq`` (taken at control step ``t``)."""

    state: np.ndarray
    seq: int
    t: int
    snapshot: Path
    snapshot_seq: int
    records_replayed: int
    dropped_bytes: int
    notes: list[str]
    corrupt_snapshots: list[Path]


def _list(directory: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    found = []
    for p in directory.iterdir():
        m = pattern.fullmatch(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def recover(directory: str | os.PathLike, spec: StateSpec) -> Recovery:
    """Rebuild the state from a journal directory without modifying it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise JournalError(directory, "journal directory does not exist")
    snaps = _list(directory, _SNAP_RE)
    if not snaps:
        raise JournalError(directory, "no snapshot-*.bin in this directory: not a state journal")
    notes: list[str] = []
    corrupt: list[Path] = []
    for _, path in reversed(snaps):
        try:
            seq, t, state = _read_snapshot(path, spec)
            break
        except JournalError as err:
            if "journal is for a state" in err.problem or "format version" in err.problem:
                raise
            notes.append(f"skipped {err}")
            corrupt.append(path)
    else:
        raise JournalError(snaps[-1][1], "every snapshot is corrupt: " + "; ".join(notes))
    snap_path, snap_seq = path, seq
    rec = WriteRecord(spec)
    scratch = np.empty((spec.heads, spec.d_key, spec.d_val), dtype=F32)
    size = record_bytes(spec)
    replayed = dropped = 0
    for _, seg in _list(directory, _SEG_RE):
        data = seg.read_bytes()
        if len(data) < _SEG_HEAD.size or data[:8] != SEG_MAGIC:
            notes.append(f"{seg}: segment header torn or missing ({len(data)} B dropped)")
            dropped += len(data)
            continue
        magic, version, h, k, v, base, crc = _SEG_HEAD.unpack_from(data)
        if zlib.crc32(memoryview(data)[: _SEG_HEAD.size - 4]) != crc:
            notes.append(f"{seg}: segment header CRC mismatch ({len(data)} B dropped)")
            dropped += len(data)
            continue
        if version != VERSION:
            raise JournalError(seg, f"segment format version {version}, this runtime reads {VERSION}")
        _check_shape(seg, spec, h, k, v)
        off = _SEG_HEAD.size
        while off < len(data):
            ok = len(data) - off >= size and data[off : off + 2] == REC_MAGIC
            if ok:
                (crc,) = _CRC.unpack_from(data, off + size - 4)
                ok = zlib.crc32(memoryview(data)[off : off + size - 4]) == crc
            if ok:
                _, kind, _, rseq, rt = _REC_HEAD.unpack_from(data, off)
                ok = kind == REC_KIND_WRITE and rseq <= seq + 1
            if not ok:
                notes.append(f"{seg}: invalid or torn record at byte {off}; {len(data) - off} B dropped")
                dropped += len(data) - off
                break
            if rseq == seq + 1:
                rec.flat[:] = np.frombuffer(data, dtype=F32, count=rec.flat.size, offset=off + _REC_HEAD.size)
                apply_write(state, rec, scratch=scratch)
                seq, t = rseq, rt
                replayed += 1
            off += size
    return Recovery(state, seq, t, snap_path, snap_seq, replayed, dropped, notes, corrupt)


class StateJournal:
    """Append-only journal of committed writes. Use :meth:`open`; see the module docstring for the policy.

    ``meter`` (a :class:`deploy.runtime.budget.PageMeter`) is told every byte appended and every sync, so the
    flash budget counts bytes and pages, not write events.
    """

    def __init__(
        self,
        directory: Path,
        spec: StateSpec,
        fsync: str,
        group_records: int,
        snapshot_every: int,
        meter=None,
    ):
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, got {fsync!r}")
        if group_records < 1 or snapshot_every < 1:
            raise ValueError("group_records and snapshot_every must be >= 1")
        self.directory, self.spec, self.fsync = directory, spec, fsync
        self.group_records, self.snapshot_every, self.meter = group_records, snapshot_every, meter
        self.record_size = record_bytes(spec)
        self._buf = bytearray(self.record_size)
        self._payload = np.frombuffer(self._buf, dtype=F32, count=spec.record_floats, offset=_REC_HEAD.size)
        self._fd = -1
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
    ) -> StateJournal:
        """Open (recovering) or create the journal in ``directory``; state: ``journal.recovery.state``."""
        directory = Path(directory)
        self = cls(directory, spec, fsync, group_records, snapshot_every, meter)
        directory.mkdir(parents=True, exist_ok=True)
        for tmp in directory.glob("*.tmp"):
            tmp.unlink()
        if not _list(directory, _SNAP_RE):
            state = spec.zeros() if initial_state is None else np.array(initial_state, dtype=F32)
            if state.shape != spec.shape:
                raise ValueError(f"initial_state has shape {state.shape}, expected {spec.shape}")
            self._write_snapshot(state, 0, 0)
        self.recovery = recover(directory, spec)
        for bad in self.recovery.corrupt_snapshots:  # keep for inspection, out of the rotation
            bad.rename(bad.with_name(bad.name + ".corrupt"))
        self.snapshot(self.recovery.state, self.recovery.t, seq=self.recovery.seq)
        return self

    def _write_snapshot(self, state: np.ndarray, seq: int, t: int) -> None:
        head = _SNAP_HEAD.pack(SNAP_MAGIC, VERSION, self.spec.heads, self.spec.d_key, self.spec.d_val, seq, t)
        body = head + np.ascontiguousarray(state, dtype=F32).tobytes()
        payload = body + _CRC.pack(zlib.crc32(body))
        _atomic_write(self.directory / f"snapshot-{seq:016d}.bin", payload)
        if self.meter is not None:
            self.meter.write_file(len(payload))
        self.bytes_written += len(payload)

    def snapshot(self, state: np.ndarray, t: int, seq: int | None = None) -> None:
        """Snapshot ``state`` (the state after record ``seq``), start a new segment, drop old files."""
        seq = self.seq if seq is None else seq
        self.sync()
        self._write_snapshot(state, seq, t)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        seg = self.directory / f"segment-{seq:016d}.log"
        head = _SEG_HEAD.pack(SEG_MAGIC, VERSION, self.spec.heads, self.spec.d_key, self.spec.d_val, seq, 0)
        head = head[:-4] + _CRC.pack(zlib.crc32(head[:-4]))
        _atomic_write(seg, head)
        if self.meter is not None:
            self.meter.write_file(len(head))
        self.bytes_written += len(head)
        self._fd = os.open(seg, os.O_WRONLY | os.O_APPEND)
        self.seq = self.snapshot_seq = seq
        # Keep the two newest snapshots and every segment from the older one on, so a corrupt newest
        # snapshot can still be recovered from its predecessor.
        snaps = _list(self.directory, _SNAP_RE)
        keep_from = snaps[-2][0] if len(snaps) >= 2 else snaps[-1][0]
        for s, p in snaps:
            if s < keep_from:
                p.unlink()
        for s, p in _list(self.directory, _SEG_RE):
            if s < keep_from:
                p.unlink()

    def append(self, t: int, record: WriteRecord) -> int:
        """Append one committed write (taken at control step ``t``); returns its sequence number."""
        if self._fd < 0:
            raise JournalError(self.directory, "journal is closed")
        seq = self.seq + 1
        _REC_HEAD.pack_into(self._buf, 0, REC_MAGIC, REC_KIND_WRITE, 0, seq, t)
        self._payload[:] = record.flat
        _CRC.pack_into(self._buf, self.record_size - 4, zlib.crc32(memoryview(self._buf)[:-4]))
        _write_all(self._fd, self._buf)
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

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> StateJournal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
