"""State journal: exact replay, torn/corrupt tails dropped, kill -9 at random points, clear file errors."""

import os
import signal
import struct
import time

import numpy as np
import pytest

from deploy.runtime.errors import JournalError
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


def test_torn_and_corrupt_tails_are_dropped_never_applied(tmp_path):
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
    for pos in rng.integers(head, len(data), 20):
        bad = bytearray(data)
        bad[pos] ^= 0x40
        seg.write_bytes(bytes(bad))
        r = recover(tmp_path, SPEC)
        assert r.seq == (pos - head) // size and r.dropped_bytes > 0
        assert r.state.tobytes() == ref[r.seq].tobytes()


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
