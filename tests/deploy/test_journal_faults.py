"""The journal fault sweep: every byte class flipped and truncation at record boundaries (and one byte
either side) over a journal of 1,150 records, each outcome compared with the documented one.

Journal: generation 0 = snapshot (seq 0) + segment 0 (records 1..600); generation 1 = snapshot (seq 600) +
segment 1 (records 601..1150, the live one). Documented outcomes (deploy/runtime/recovery.py):

* exact: the state after the last complete record in the files, bit for bit, with the torn bytes
  reported; a corrupt newest snapshot is replayed around from the previous one; files of a superseded
  generation are not read;
* refusal: JournalCorruptError naming the damaged file and the byte offset of the damaged record or
  header (0), and StateJournal.open (what ``aura run --resume`` does) changes nothing.

A *silent loss* is an exact outcome with fewer records than the files hold intact; an *overwritten* file is
a pre-existing name whose bytes an open changed. Both must be 0. The default run samples each class; the
slow run (``pytest -m slow``) does every byte of the headers and snapshots, of 20 records per segment,
and every boundary of both segments.
"""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import numpy as np
import pytest

from deploy.runtime.errors import JournalCorruptError, JournalError
from deploy.runtime.journal import StateJournal, record_bytes, recover
from deploy.runtime.recovery import REC_HEAD, SEG_HEAD
from deploy.runtime.state import StateSpec, WriteRecord, apply_write

SPEC = StateSpec(heads=1, d_key=4, d_val=4)
SIZE = record_bytes(SPEC)
N, EVERY = 1150, 600
HEAD = SEG_HEAD.size


def _record(seq: int) -> WriteRecord:
    rng = np.random.default_rng(seq)
    rec = WriteRecord(SPEC)
    rec.fill(
        rng.uniform(0.9, 1.0, (1, 4)).astype(np.float32),
        (rng.standard_normal((1, 4)) / 3).astype(np.float32),
        rng.standard_normal((1, 4)).astype(np.float32),
        rng.standard_normal((1, 4)).astype(np.float32),
    )
    return rec


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """(files: name -> bytes, reference states by seq)."""
    d = tmp_path_factory.mktemp("journal")
    j = StateJournal.open(d, SPEC, snapshot_every=EVERY, model="c" * 64)
    state = j.recovery.state
    refs = [state.copy()]
    for seq in range(1, N + 1):
        rec = _record(seq)
        j.append(seq * 3, rec)
        apply_write(state, rec)
        refs.append(state.copy())
        j.maybe_snapshot(state, seq * 3)
    j.close()
    files = {p.name: p.read_bytes() for p in d.iterdir()}
    assert sorted(files) == [
        "segment-0000000000000000.log",
        "segment-0000000000000001.log",
        "snapshot-0000000000000000.bin",
        "snapshot-0000000000000001.bin",
    ]
    return files, refs


SEG0, SEG1 = "segment-0000000000000000.log", "segment-0000000000000001.log"
SNAP0, SNAP1 = "snapshot-0000000000000000.bin", "snapshot-0000000000000001.bin"
LABEL = {SEG0: "segment-0", SEG1: "segment-1", SNAP0: "snapshot-0", SNAP1: "snapshot-1"}


def _flip(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0xFF  # a byte burst: CRC-32 detects every burst up to 32 bits
    return bytes(b)


def _faults(files, full: bool, rng):
    """(class, {file: bytes}, expected): expected = ("exact", seq, dropped) or ("refuse", file, offset)."""
    pick = (
        (lambda xs, n: list(xs))
        if full
        else (lambda xs, n: sorted(rng.choice(list(xs), min(n, len(xs)), replace=False).tolist()))
    )
    snap1_bad = {SNAP1: _flip(files[SNAP1], 40)}
    for name, count in ((SEG1, N - EVERY), (SEG0, EVERY)):
        live = name == SEG1
        for pos in pick(range(HEAD), 12):
            bad = {name: _flip(files[name], pos)}
            yield f"{LABEL[name]} header", bad, ("refuse", name, 0) if live else ("exact", N, 0)
            if not live:
                yield f"{LABEL[name]} header + snapshot-1", {**bad, **snap1_bad}, ("refuse", name, 0)
        recs = [0, count - 1] + (
            list(rng.choice(count, 18, replace=False)) if full else [int(rng.integers(count))]
        )
        for i in recs:
            base = HEAD + int(i) * SIZE
            spans = (
                ("record header", range(REC_HEAD.size)),
                ("payload", range(REC_HEAD.size, SIZE - 4)),
                ("CRC", range(SIZE - 4, SIZE)),
            )
            for cls, span in spans:
                for pos in pick(span, 3):
                    bad = {name: _flip(files[name], base + pos)}
                    want = ("refuse", name, base) if live else ("exact", N, 0)
                    yield f"{LABEL[name]} {cls}", bad, want
                    if not live:  # the same damage where it is read: the newest snapshot is corrupt too
                        yield (
                            f"{LABEL[name]} {cls} + snapshot-1",
                            {**bad, **snap1_bad},
                            ("refuse", name, base),
                        )
    for name in (SNAP1, SNAP0):
        for pos in pick(range(len(files[name])), 15):
            yield f"{LABEL[name]}", {name: _flip(files[name], pos)}, ("exact", N, 0)
    for name, first, count in ((SEG1, EVERY, N - EVERY), (SEG0, 0, EVERY)):
        live = name == SEG1
        for b in sorted({0, count, *pick(range(count + 1), 25)}):
            cut = HEAD + b * SIZE
            for delta in (-1, 0, 1):
                if cut + delta > len(files[name]):
                    continue
                bad = {name: files[name][: cut + delta]}
                if not live and b == 0 and delta == -1:  # segment 0's header cut: read only after snapshot-1
                    yield "segment-0 truncated", bad, ("exact", N, 0)
                    yield "segment-0 truncated + snapshot-1", {**bad, **snap1_bad}, ("refuse", SEG0, 0)
                    continue
                if not live:
                    yield "segment-0 truncated", bad, ("exact", N, 0)
                    if b < count:  # read after a corrupt snapshot-1: segment 1 no longer follows on
                        yield "segment-0 truncated + snapshot-1", {**bad, **snap1_bad}, ("refuse", SEG1, 0)
                    continue
                if b == 0 and delta == -1:
                    yield "segment-1 truncated", bad, ("refuse", SEG1, 0)
                else:
                    done = b - (delta == -1)
                    yield (
                        "segment-1 truncated",
                        bad,
                        ("exact", first + done, (cut + delta) - (HEAD + done * SIZE)),
                    )


def _sweep(tmp_path: Path, pristine, full: bool, open_every: int) -> dict:
    files, refs = pristine
    rng = np.random.default_rng(15)
    d = tmp_path / "j"
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for n, (cls, damage, want) in enumerate(_faults(files, full, rng)):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        for name, data in {**files, **damage}.items():
            (d / name).write_bytes(data)
        try:
            r = recover(d, SPEC)
            got = ("exact", r.seq, r.dropped_bytes)
            if got[:2] == ("exact", want[1]) and r.state.tobytes() != refs[r.seq].tobytes():
                got = ("wrong state", r.seq, 0)
            if r.dropped_bytes and not any("torn tail" in x for x in r.notes):
                got = ("unreported drop", r.seq, r.dropped_bytes)
        except JournalCorruptError as err:
            got = ("refuse", Path(err.path).name, err.offset)
        except JournalError as err:
            got = ("refuse", Path(err.path).name, None)
        if got == want:
            table[cls][want[0]] += 1
        elif (
            got[0] == "exact" and want[0] in ("exact", "refuse") and (want[0] == "refuse" or got[1] < want[1])
        ):
            table[cls]["SILENT LOSS"] += 1
        else:
            table[cls][f"other {got} != {want}"] += 1
        if n % open_every == 0:  # what `aura run --resume` does next: nothing may be overwritten
            before = {p.name: p.read_bytes() for p in d.iterdir()}
            try:
                StateJournal.open(d, SPEC).close()
                opened = True
            except JournalError:
                opened = False
            after = {p.name: p.read_bytes() for p in d.iterdir()}
            for name, data in before.items():
                if name in after:
                    changed = after[name] != data
                else:
                    quarantined = after.get(name + ".corrupt") == data
                    rotated = opened and name[-20:-4] < max(k[-20:-4] for k in after if k.startswith("snap"))
                    changed = not (quarantined or rotated)
                table[cls]["OVERWRITTEN"] += int(changed)
            if not opened:
                table[cls]["OVERWRITTEN"] += int(after != before)
    return {cls: dict(c) for cls, c in table.items()}


def _check(table: dict) -> None:
    bad = {
        cls: {k: v for k, v in c.items() if k not in ("exact", "refuse") and v} for cls, c in table.items()
    }
    assert not any(bad.values()), bad
    totals = collections.Counter()
    for c in table.values():
        totals.update(c)
    assert totals["exact"] > 0 and totals["refuse"] > 0


def test_fault_sweep_sampled(tmp_path, pristine):
    table = _sweep(tmp_path, pristine, full=False, open_every=5)
    _check(table)
    assert sum(sum(c.values()) for c in table.values()) > 300


@pytest.mark.slow
def test_fault_sweep_every_byte_class_and_boundary(tmp_path, pristine):
    table = _sweep(tmp_path, pristine, full=True, open_every=1)
    width = max(map(len, table))
    print(f"\n{'class':<{width}}  outcomes (journal of {N} records)")
    for cls, c in table.items():
        print(f"{cls:<{width}}  {c}")
    _check(table)
