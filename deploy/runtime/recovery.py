"""The state journal's on-disk format and its recovery; the writer is :mod:`deploy.runtime.journal`.

Files (one *generation* g = a snapshot and the segment that follows it; g only grows, so no file name is
ever reused and nothing is ever overwritten):

    snapshot-<g>.bin   'AURASNP1', version, H, K, V, g u64, seq u64, t u64, model sha256 (32 B),
                       state [1, H, K+1, V] f32, CRC-32 of everything before it
    segment-<g>.log    'AURAJNL1', version, H, K, V, g u64, base seq u64, model sha256 (32 B), CRC-32,
                       then records: 'AW', kind, flags, seq u64, t u64, decay [H,K], key [H,K],
                       delta [H,V], aux [H,V] (f32), CRC-32 of the record            (536 B at 1 x 32 x 32)

``seq`` counts committed writes; a snapshot holds the state after record ``seq``, and its segment's
records continue at seq + 1. ``model`` is the sha256 identifying the step graph that wrote the journal
(all zeros: not recorded).

Recovery = newest valid snapshot s, then every segment of generation >= s in order, each record applied
with :func:`deploy.runtime.state.apply_write` (bit-exact). It ends in one of these documented outcomes:

* **exact**: every record present is replayed: the state after the last committed record that reached the
  file. Two kinds of damage are tolerated because neither can hold an acknowledged write, and both are
  reported (``Recovery.dropped_bytes``, ``Recovery.notes``):
  - a *torn tail*: the segment ends inside a record (fewer bytes than one record left), which a crash or
    power loss mid-append produces, or ends in zero bytes from a record boundary on (space a file system
    allocated but never wrote);
  - a *corrupt snapshot*: recovery falls back to the previous one (two are kept, with their segments)
    and replays forward from it, still exactly.
  A torn tail ends the replay only in the last segment; in an earlier one, the next segment must start at
  exactly the sequence number reached (its header says where the writer resumed), else that is a gap.
* **refusal** (:class:`~deploy.runtime.errors.JournalCorruptError`, naming the file and byte offset):
  anything else: a complete record that fails its magic, CRC, kind or sequence; a damaged segment
  header; a segment that does not start where the previous one ended (records missing); a segment of
  another state shape or model. A CRC failure with data after it is corruption, not a torn tail, and
  guessing would silently drop acknowledged writes. Recovery never modifies the directory.

A journal written by another model (different ``model`` digest), of another state shape or format
version is refused with a :class:`~deploy.runtime.errors.JournalError` naming the file. Files of a
generation older than the recovery snapshot are not read (they are superseded).
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploy.runtime.errors import JournalCorruptError, JournalError
from deploy.runtime.state import F32, StateSpec, WriteRecord, apply_write

VERSION = 2  # 2: generations, model identity, corruption refused
SNAP_MAGIC = b"AURASNP1"
SEG_MAGIC = b"AURAJNL1"
REC_MAGIC = b"AW"
REC_KIND_WRITE = 1
NO_MODEL = bytes(32)
SNAP_HEAD = struct.Struct("<8sIIIIQQQ32s")  # magic, version, H, K, V, generation, seq, t, model
SEG_HEAD = struct.Struct("<8sIIIIQQ32sI")  # magic, version, H, K, V, generation, base seq, model, crc
REC_HEAD = struct.Struct("<2sBBQQ")  # magic, kind, flags, seq, t
CRC = struct.Struct("<I")
SNAP_RE = re.compile(r"snapshot-(\d{16})\.bin")
SEG_RE = re.compile(r"segment-(\d{16})\.log")
ANY_GEN_RE = re.compile(r"(?:snapshot|segment)-(\d{16})\..*")


def record_bytes(spec: StateSpec) -> int:
    """On-disk size of one write record (536 B at H=1, K=V=32)."""
    return REC_HEAD.size + spec.record_floats * 4 + CRC.size


def snapshot_bytes(spec: StateSpec) -> int:
    return SNAP_HEAD.size + spec.state_bytes + CRC.size


def model_bytes(model: str | None) -> bytes:
    """The 32-byte model field for a sha256 hex digest (None: not recorded)."""
    if model is None:
        return NO_MODEL
    raw = bytes.fromhex(model)
    if len(raw) != 32:
        raise ValueError(f"model digest must be 64 hex digits (sha256), got {model!r}")
    return raw


def _model_text(raw: bytes) -> str:
    return "an unrecorded model" if raw == NO_MODEL else f"model sha256 {raw.hex()[:16]}..."


def list_files(directory: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    found = []
    for p in directory.iterdir():
        m = pattern.fullmatch(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def _check_version_shape(path: Path, spec: StateSpec, version: int, h: int, k: int, v: int, kind: str):
    if version != VERSION:
        raise JournalError(path, f"{kind} format version {version}, this runtime reads {VERSION}")
    if (h, k, v) != (spec.heads, spec.d_key, spec.d_val):
        raise JournalError(
            path,
            f"journal is for a state of heads={h}, d_key={k}, d_val={v} but the model has "
            f"heads={spec.heads}, d_key={spec.d_key}, d_val={spec.d_val}",
        )


@dataclass
class Snapshot:
    generation: int
    seq: int
    t: int
    model: bytes
    state: np.ndarray


def read_snapshot(path: Path, spec: StateSpec) -> Snapshot:
    """The snapshot in ``path`` or JournalError.

    The CRC is checked first: only a header that checks can be trusted to say that the version or the
    state shape differ (a fatal mismatch); any other failure is corruption (recovery falls back).
    """
    data = path.read_bytes()
    if len(data) < SNAP_HEAD.size + CRC.size or data[:8] != SNAP_MAGIC:
        raise JournalError(path, "not an AURA snapshot (bad magic or truncated header; corrupt)")
    if zlib.crc32(memoryview(data)[:-4]) != CRC.unpack_from(data, len(data) - 4)[0]:
        raise JournalError(path, f"snapshot CRC mismatch (corrupt or truncated; {len(data)} B)")
    _, version, h, k, v, gen, seq, t, model = SNAP_HEAD.unpack_from(data)
    _check_version_shape(path, spec, version, h, k, v, "snapshot")
    if len(data) != snapshot_bytes(spec):
        raise JournalError(path, f"snapshot is {len(data)} B, expected {snapshot_bytes(spec)} (corrupt)")
    state = np.frombuffer(data, dtype=F32, count=spec.state_bytes // 4, offset=SNAP_HEAD.size)
    return Snapshot(gen, seq, t, model, state.reshape(spec.shape).copy())


@dataclass
class Recovery:
    """What :func:`recover` found: the state after record ``seq`` (taken at control step ``t``)."""

    state: np.ndarray
    seq: int
    t: int
    snapshot: Path | None
    snapshot_seq: int
    records_replayed: int
    dropped_bytes: int
    notes: list[str]
    corrupt_snapshots: list[Path]
    model: bytes = NO_MODEL
    generation: int = 0
    new: bool = False
    segments: list[Path] = field(default_factory=list)

    def report(self) -> str:
        """One line: what was recovered, what was dropped and why (printed by ``aura run`` every time)."""
        if self.new:
            return "journal: new (no earlier state; starting from an empty memory)"
        head = (
            f"journal: recovered seq {self.seq} (step {self.t}) = {self.snapshot.name} (seq "
            f"{self.snapshot_seq}) + {self.records_replayed} records; {self.dropped_bytes} B dropped"
        )
        return head + (": " + "; ".join(self.notes) if self.notes else "")

    def as_dict(self) -> dict:
        return {
            "new": self.new,
            "seq": self.seq,
            "t": self.t,
            "snapshot": None if self.snapshot is None else self.snapshot.name,
            "snapshot_seq": self.snapshot_seq,
            "records_replayed": self.records_replayed,
            "dropped_bytes": self.dropped_bytes,
            "notes": list(self.notes),
            "corrupt_snapshots": [p.name for p in self.corrupt_snapshots],
            "model_sha256": None if self.model == NO_MODEL else self.model.hex(),
        }


def _record_ok(data: bytes, off: int, size: int) -> bool:
    if data[off : off + 2] != REC_MAGIC:
        return False
    return zlib.crc32(memoryview(data)[off : off + size - 4]) == CRC.unpack_from(data, off + size - 4)[0]


class _Replay:
    """The running replay: state, position in the sequence, and the model that the snapshot recorded."""

    def __init__(self, spec: StateSpec, snap: Snapshot):
        self.spec, self.state, self.seq, self.t, self.model = spec, snap.state, snap.seq, snap.t, snap.model
        self.replayed = 0
        self.size = record_bytes(spec)
        self.rec = WriteRecord(spec)
        self.scratch = np.empty((spec.heads, spec.d_key, spec.d_val), dtype=F32)

    def corrupt(self, seg: Path, data: bytes, off: int, what: str) -> JournalCorruptError:
        size = self.size
        valid = sum(_record_ok(data, o, size) for o in range(off + size, len(data) - size + 1, size))
        follows = max(len(data) - off - size, 0)
        return JournalCorruptError(
            seg,
            off,
            f"{what}; {follows} B ({valid} valid records) follow it, so this is not a torn tail. Refusing "
            f"to resume; nothing was changed. The state is intact up to seq {self.seq} (step {self.t}); to "
            f"accept losing the rest, move {seg.name} and every later file out of {seg.parent}",
        )

    def segment(self, seg: Path, gen: int) -> tuple[int, int]:
        """Apply the records of ``seg``; returns (torn tail bytes, the tail's offset)."""
        data = seg.read_bytes()
        if len(data) < SEG_HEAD.size or data[:8] != SEG_MAGIC:
            raise JournalCorruptError(seg, 0, f"segment header missing or damaged ({len(data)} B file)")
        _, version, h, k, v, head_gen, base, model, crc = SEG_HEAD.unpack_from(data)
        if zlib.crc32(memoryview(data)[: SEG_HEAD.size - 4]) != crc:
            raise JournalCorruptError(seg, 0, "segment header CRC mismatch")
        _check_version_shape(seg, self.spec, version, h, k, v, "segment")
        if head_gen != gen:
            raise JournalCorruptError(seg, 0, f"header says generation {head_gen}, the file name {gen}")
        if model != self.model and NO_MODEL not in (model, self.model):
            raise JournalError(
                seg, f"written by {_model_text(model)}, its snapshot by {_model_text(self.model)}"
            )
        if base != self.seq:
            raise JournalCorruptError(
                seg,
                0,
                f"segment starts after seq {base} but the replay reached seq {self.seq}: records are missing "
                f"(a segment was truncated or removed). The state is intact up to seq {self.seq}",
            )
        size, off = self.size, SEG_HEAD.size
        while off < len(data):
            if len(data) - off < size or not any(memoryview(data)[off:]):
                return len(data) - off, off  # torn: an incomplete last record, or never-written zeros
            due = self.seq + 1
            if data[off : off + 2] != REC_MAGIC:
                raise self.corrupt(seg, data, off, f"record seq {due}: bad magic")
            if not _record_ok(data, off, size):
                raise self.corrupt(seg, data, off, f"record seq {due}: CRC mismatch")
            _, kind, _, rseq, rt = REC_HEAD.unpack_from(data, off)
            if kind != REC_KIND_WRITE or rseq != due:
                raise self.corrupt(
                    seg, data, off, f"record of kind {kind} and seq {rseq} where seq {due} is due"
                )
            self.rec.flat[:] = np.frombuffer(
                data, dtype=F32, count=self.rec.flat.size, offset=off + REC_HEAD.size
            )
            apply_write(self.state, self.rec, scratch=self.scratch)
            self.seq, self.t = rseq, rt
            self.replayed += 1
            off += size
        return 0, off


def recover(directory: str | os.PathLike, spec: StateSpec, model: str | None = None) -> Recovery:
    """Rebuild the state from a journal directory without modifying it (see the module docstring).

    ``model``: the sha256 hex of the model about to resume; a journal that recorded another is refused.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise JournalError(directory, "journal directory does not exist")
    snaps = list_files(directory, SNAP_RE)
    if not snaps:
        raise JournalError(directory, "no snapshot-*.bin in this directory: not a state journal")
    notes: list[str] = []
    corrupt: list[Path] = []
    for _, path in reversed(snaps):
        try:
            snap = read_snapshot(path, spec)
            break
        except JournalError as err:
            if "journal is for a state" in err.problem or "format version" in err.problem:
                raise
            notes.append(f"skipped {path.name} ({err.problem}), replayed from the one before")
            corrupt.append(path)
    else:
        raise JournalError(snaps[-1][1], "every snapshot is corrupt: " + "; ".join(notes))
    want = model_bytes(model)
    if want != NO_MODEL and snap.model != NO_MODEL and snap.model != want:
        raise JournalError(
            path,
            f"journal was written by {_model_text(snap.model)}, not by this {_model_text(want)}; "
            "resume it with that model, or use another --out",
        )
    segs = [(g, p) for g, p in list_files(directory, SEG_RE) if g >= snap.generation]
    replay = _Replay(spec, snap)
    dropped = 0
    for i, (gen, seg) in enumerate(segs):
        tail, at = replay.segment(seg, gen)
        # A torn tail ends the replay only in the last segment; an earlier one is fine when the next
        # segment starts at exactly this seq, which replay.segment checks for it.
        if tail and i == len(segs) - 1:
            dropped = tail
            notes.append(
                f"torn tail: {tail} B at byte {at} of {seg.name} (incomplete or unwritten last record)"
            )
    return Recovery(
        replay.state,
        replay.seq,
        replay.t,
        path,
        snap.seq,
        replay.replayed,
        dropped,
        notes,
        corrupt,
        model=snap.model,
        generation=snap.generation,
        segments=[p for _, p in segs],
    )
