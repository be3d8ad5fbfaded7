"""State journal: exact replay, torn tails dropped, corruption refused, kill -9 at random points, errors."""

import os
import signal
import struct
import time

import numpy as np
import pytest

from deploy.runtime.errors import JournalCorruptError, JournalError
from deploy.runtime.journal import StateJournal, record_bytes, recover
from deploy.runtime.state import StateSpec, WriteRecord, apply_write

SPEC = StateSpec(heads=1, d_key=32, d_val=32)


def make_record(seq: int, spec: StateSpec = SPEC) -> WriteRecord:
    """The deterministic write number ``seq``, so a test can rebuild the reference state itself."""
    rng = np.random.default_rng(seq)
    rec = WriteRecord(spec)
    h, k, v = spec.heads, spec.d_key, spec.d_val
    rec.fill(
        rng.uniform(0.9, 1.0, (h, k)).astype(np.float32),
        rng.standard_normal((h, k)).astype(np.float32) / np.float32(6.0),
        rng.standard_normal((h, v)).astype(np.float32),
        rng.standard_normal((h, v)).astype(np.float32),
    )
    return rec


class Reference:
    """States after 0, 1, 2, ... records, built with the runtime's own write."""

    def __init__(self, spec=SPEC):
        self.states = [spec.zeros()]

    def __getitem__(self, seq: int) -> np.ndarray:
        while len(self.states) <= seq:
            prev = self.states[-1]
            self.states.append(apply_write(prev, make_record(len(self.states)), out=prev.copy()))
        return self.states[seq]


def write_records(journal, state, first, last):
    for seq in range(first, last + 1):
        rec = make_record(seq)
        assert journal.append(t=10 * seq, record=rec) == seq
        apply_write(state, rec)
        journal.maybe_snapshot(state, t=10 * seq)


def test_record_is_at_most_640_bytes_and_replay_is_bit_exact(tmp_path):
    assert record_bytes(SPEC) <= 640 < SPEC.state_bytes
    ref = Reference()
    j = StateJournal.open(tmp_path, SPEC, snapshot_every=7)
    state = j.recovery.state
    write_records(j, state, 1, 30)
    j.close()
    r = recover(tmp_path, SPEC)
    assert r.seq == 30 and r.t == 300 and r.dropped_bytes == 0
    assert r.state.tobytes() == ref[30].tobytes() == state.tobytes()


@pytest.mark.parametrize("policy", ["group", "none"])
def test_other_fsync_policies_recover_the_same_state(tmp_path, policy):
    j = StateJournal.open(tmp_path, SPEC, fsync=policy, group_records=4)
    write_records(j, j.recovery.state, 1, 10)
    j.close()
    assert recover(tmp_path, SPEC).state.tobytes() == Reference()[10].tobytes()


def test_torn_tails_are_dropped_and_reported_never_applied(tmp_path):
    ref = Reference()
    j = StateJournal.open(tmp_path, SPEC, snapshot_every=1000)
    write_records(j, j.recovery.state, 1, 12)
    j.close()
    seg = sorted(tmp_path.glob("segment-*.log"))[-1]
    data = seg.read_bytes()
    size = record_bytes(SPEC)
    head = len(data) - 12 * size
    rng = np.random.default_rng(0)
    for cut in rng.integers(head, len(data), 20):
        seg.write_bytes(data[:cut])
        r = recover(tmp_path, SPEC)
        assert r.seq == (cut - head) // size
        assert r.state.tobytes() == ref[r.seq].tobytes()
        assert r.dropped_bytes == (cut - head) % size
        assert (r.dropped_bytes > 0) == any("torn tail" in n for n in r.notes), r.notes
    # space the file system allocated but never wrote (zeros from a record boundary on) is a torn tail too
    seg.write_bytes(data[: head + 5 * size] + bytes(2 * size + 7))
    r = recover(tmp_path, SPEC)
    assert r.seq == 5 and r.dropped_bytes == 2 * size + 7


def test_a_crc_failure_with_data_after_it_is_refused_naming_the_segment_and_offset(tmp_path):
    """The defect of issue 15: a flipped byte in record 50 of 142 was reported as a "torn tail" and every
    record after it silently dropped. Now any damaged complete record is a refusal that changes nothing."""
    j = StateJournal.open(tmp_path, SPEC, snapshot_every=1000)
    write_records(j, j.recovery.state, 1, 142)
    j.close()
    seg = sorted(tmp_path.glob("segment-*.log"))[-1]
    data = seg.read_bytes()
    size = record_bytes(SPEC)
    head = len(data) - 142 * size
    rng = np.random.default_rng(0)
    for pos in [head + 49 * size + 100, head, len(data) - 1, *rng.integers(head, len(data), 20)]:
        bad = bytearray(data)
        bad[pos] ^= 0x40
        seg.write_bytes(bytes(bad))
        rec = (pos - head) // size
        with pytest.raises(JournalCorruptError) as err:
            recover(tmp_path, SPEC)
        assert err.value.offset == head + rec * size and err.value.path == str(seg)
        assert f"record seq {rec + 1}" in str(err.value) and "not a torn tail" in str(err.value)
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        with pytest.raises(JournalCorruptError):  # what `aura run --resume` does: refused, nothing touched
            StateJournal.open(tmp_path, SPEC)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # a damaged segment header (the first record's predecessor) is refused too, not a silent reset
    bad = bytearray(data)
    bad[10] ^= 1
    seg.write_bytes(bytes(bad))
    with pytest.raises(JournalCorruptError, match=r"segment-0+\.log: corrupt at byte 0: segment header"):
        recover(tmp_path, SPEC)


def test_a_journal_of_another_model_is_refused(tmp_path):
    a, b = "a" * 64, "b" * 64
    j = StateJournal.open(tmp_path, SPEC, model=a)
    write_records(j, j.recovery.state, 1, 3)
    j.close()
    with pytest.raises(
        JournalError, match=r"written by model sha256 aaaaaaaaaaaaaaaa\.\.\., not by this model"
    ):
        StateJournal.open(tmp_path, SPEC, model=b)
    j = StateJournal.open(tmp_path, SPEC, model=a)
    assert j.recovery.seq == 3 and j.recovery.model == bytes.fromhex(a)
    j.close()
    assert recover(tmp_path, SPEC).seq == 3  # without a model to check against, any journal recovers


def test_no_file_is_ever_overwritten(tmp_path):
    """Every open and snapshot starts a new generation: a name is never reused, even after a torn tail at
    the very first record (which used to recreate segment-<seq>.log over the damaged one)."""
    j = StateJournal.open(tmp_path, SPEC, snapshot_every=4)
    write_records(j, j.recovery.state, 1, 1)
    j.close()
    seg = sorted(tmp_path.glob("segment-*.log"))[-1]
    seg.write_bytes(seg.read_bytes()[:-10])  # record 1 torn
    torn = seg.read_bytes()
    j = StateJournal.open(tmp_path, SPEC, snapshot_every=4)
    assert j.recovery.seq == 0 and j.recovery.dropped_bytes == record_bytes(SPEC) - 10
    assert seg.read_bytes() == torn and j.generation == 1
    write_records(j, j.recovery.state, 1, 3)
    j.close()
    assert recover(tmp_path, SPEC).state.tobytes() == Reference()[3].tobytes()


def test_recovery_report_always_says_what_happened(tmp_path):
    j = StateJournal.open(tmp_path, SPEC)
    assert j.recovery.new and "new" in j.recovery.report()
    j.close()
    j = StateJournal.open(tmp_path, SPEC)  # reopened with no records: still reported
    assert "recovered seq 0" in j.recovery.report() and "0 records; 0 B dropped" in j.recovery.report()
    write_records(j, j.recovery.state, 1, 2)
    j.close()
    seg = sorted(tmp_path.glob("segment-*.log"))[-1]
    seg.write_bytes(seg.read_bytes()[:-1])
    line = StateJournal.open(tmp_path, SPEC).recovery.report()
    assert "+ 1 records" in line and f"{record_bytes(SPEC) - 1} B dropped: torn tail" in line, line


def test_reopen_after_a_torn_tail_continues_exactly(tmp_path):
    j = StateJournal.open(tmp_path, SPEC)
    write_records(j, j.recovery.state, 1, 5)
    j.close()
    seg = sorted(tmp_path.glob("segment-*.log"))[-1]
    seg.write_bytes(seg.read_bytes()[:-100])  # record 5 torn
    j = StateJournal.open(tmp_path, SPEC)
    assert j.recovery.seq == 4
    write_records(j, j.recovery.state, 5, 9)
    j.close()
    assert recover(tmp_path, SPEC).state.tobytes() == Reference()[9].tobytes()


def test_corrupt_newest_snapshot_falls_back_to_the_previous_one(tmp_path):
    j = StateJournal.open(tmp_path, SPEC, snapshot_every=4)
    write_records(j, j.recovery.state, 1, 10)
    j.close()
    newest = sorted(tmp_path.glob("snapshot-*.bin"))[-1]
    data = bytearray(newest.read_bytes())
    data[100] ^= 1
    newest.write_bytes(bytes(data))
    r = recover(tmp_path, SPEC)
    assert r.seq == 10 and r.snapshot != newest and any("CRC" in n for n in r.notes)
    assert r.state.tobytes() == Reference()[10].tobytes()
    # reopening moves the corrupt snapshot out of the rotation and carries on from the recovered state
    j = StateJournal.open(tmp_path, SPEC, snapshot_every=4)
    assert newest.with_name(newest.name + ".corrupt").exists() and not newest.exists()
    write_records(j, j.recovery.state, 11, 14)
    j.close()
    assert recover(tmp_path, SPEC).state.tobytes() == Reference()[14].tobytes()


def test_bad_journal_files_raise_errors_naming_the_file(tmp_path):
    with pytest.raises(JournalError, match="not a state journal"):
        recover(tmp_path, SPEC)
    j = StateJournal.open(tmp_path, SPEC)
    j.close()
    with pytest.raises(JournalError, match=r"snapshot-0+\.bin: journal is for a state of heads=1, d_key=32"):
        recover(tmp_path, StateSpec(1, 16, 32))
    snap = next(tmp_path.glob("snapshot-*.bin"))
    snap.write_bytes(b"garbage")
    with pytest.raises(JournalError, match=r"snapshot-0+\.bin.*corrupt|bad magic"):
        recover(tmp_path, SPEC)


def _writer(directory, fd_out, snapshot_every):
    """Child process: recover, then append forever, reporting each committed seq on the pipe."""
    j = StateJournal.open(directory, SPEC, snapshot_every=snapshot_every)
    state = j.recovery.state
    seq = j.recovery.seq
    while True:
        seq += 1
        rec = make_record(seq)
        j.append(t=10 * seq, record=rec)
        apply_write(state, rec)
        j.maybe_snapshot(state, t=10 * seq)
        os.write(fd_out, struct.pack("<Q", seq))


def test_kill_9_at_random_points_recovers_the_last_committed_state(tmp_path):
    ref = Reference()
    rng = np.random.default_rng(1234)
    committed = 0
    for _ in range(50):
        r_fd, w_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.close(r_fd)
                _writer(tmp_path, w_fd, snapshot_every=int(rng.integers(3, 40)))
            finally:
                os._exit(0)
        os.close(w_fd)
        # Let the writer commit a random number of records (0..24), then kill it a random instant later:
        # inside open/recovery, an append, an fsync or a snapshot.
        target = committed + int(rng.integers(0, 25))
        reported = b""
        while len(reported) < 8 or struct.unpack_from("<Q", reported, len(reported) // 8 * 8 - 8)[0] < target:
            if target == committed or not (chunk := os.read(r_fd, 1 << 16)):
                break
            reported += chunk
        time.sleep(float(rng.uniform(0.0, 0.003)))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        while chunk := os.read(r_fd, 1 << 16):
            reported += chunk
        os.close(r_fd)
        if len(reported) >= 8:
            committed = struct.unpack_from("<Q", reported, len(reported) // 8 * 8 - 8)[0]
        r = recover(tmp_path, SPEC)
        # The record in flight when the kill landed may or may not have reached the file.
        assert r.seq in (committed, committed + 1), (r.seq, committed, r.notes)
        assert r.state.tobytes() == ref[r.seq].tobytes()
        committed = r.seq
    assert committed > 300  # the writers really wrote
