"""kill -9 of a running control loop (a subprocess: the noise robot, the tiny step graph, the journal with
fsync per record) at random points; every recovery must be bit-exact to the last acknowledged write.

The child reports on a pipe, for every journal append: the state the record is about to make ("in
flight") and, once ``append`` returned (fdatasync done), the same seq as acknowledged; and at start the
state it recovered. The parent kills it a random moment after a random number of acknowledgements (so
inside startup / recovery, a step, an append, an fsync, a snapshot or a summary), recovers the journal
itself and compares the state's sha256 with what the child reported for that seq. The recovered seq
must be the last acknowledged one or the one in flight, never less.
"""

import hashlib
import os
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deploy.runtime.journal import recover
from deploy.runtime.ort_runner import OrtRunner

ROOT = Path(__file__).resolve().parents[2]
MSG = struct.Struct("<BQ8s")  # kind (0 recovered, 1 in flight, 2 acknowledged), seq, sha256[:8] of the state
CHILD = r"""
import hashlib, os, struct, sys
from deploy.runtime.budget import FlashConfig
from deploy.runtime.loop import ControlLoop
from deploy.runtime.ort_runner import OrtRunner
from deploy.runtime.robots import NoiseRobot
from policies.noise import NoiseBackbone

model, journal = sys.argv[1], sys.argv[2]
fd, every, seed = map(int, sys.argv[3:6])
runner = OrtRunner(model)
d, a = runner.spec.d_model, runner.spec.d_action
loop = ControlLoop(runner, NoiseRobot(d, a, episode_steps=10**12, seed=seed), NoiseBackbone(d, a),
                   max_steps=10**12, flash=FlashConfig(), control_hz=20.0, budget=False, journal_dir=journal,
                   fsync="record", snapshot_every=every)
j = loop.journal
digest = lambda: hashlib.sha256(runner.state.tobytes()).digest()[:8]
os.write(fd, struct.pack("<BQ8s", 0, j.seq, digest()))
append = j.append
def acknowledged_append(t, record):  # the loop commits before it journals: runner.state is the new state
    os.write(fd, struct.pack("<BQ8s", 1, j.seq + 1, digest()))
    seq = append(t, record)
    os.write(fd, struct.pack("<BQ8s", 2, seq, digest()))
    return seq
j.append = acknowledged_append
loop.episode(0, seed=seed, resume=True)
"""


def _kill_points(model: Path, tmp_path: Path, points: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    journal = tmp_path / "journal"
    spec = OrtRunner(model).spec.state
    known: dict[int, bytes] = {0: hashlib.sha256(spec.zeros().tobytes()).digest()[:8]}  # seq -> state digest
    committed = 0
    stats = {"points": 0, "in_flight_recovered": 0, "killed_before_start": 0, "acked": 0}
    for point in range(points):
        r_fd, w_fd = os.pipe()
        err = open(tmp_path / "child.err", "w")
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(model), str(journal), str(w_fd), str(int(rng.integers(3, 40))),
             str(point)],
            cwd=ROOT,
            pass_fds=(w_fd,),
            stderr=err,
        )  # fmt: skip
        os.close(w_fd)
        # acknowledgements to wait for; every 10th point is killed in start-up (imports, recovery, the
        # new generation's files), a random moment after the spawn
        target = 0 if point % 10 == 3 else int(rng.integers(1, 30))
        buf, acks = b"", 0
        deadline = time.monotonic() + (float(rng.uniform(0.05, 1.2)) if target == 0 else 60.0)
        while acks < target or target == 0:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r_fd], [], [], left)[0]:
                break
            chunk = os.read(r_fd, 1 << 16)
            if not chunk:
                break
            buf += chunk
            acks = sum(buf[i] == 2 for i in range(0, len(buf) - len(buf) % MSG.size, MSG.size))
        time.sleep(float(rng.uniform(0.0, 0.004)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        err.close()
        while chunk := os.read(r_fd, 1 << 16):
            buf += chunk
        os.close(r_fd)
        assert proc.returncode == -signal.SIGKILL, (tmp_path / "child.err").read_text()
        msgs = [MSG.unpack_from(buf, i) for i in range(0, len(buf) - len(buf) % MSG.size, MSG.size)]
        in_flight = None
        for kind, seq, digest in msgs:
            if kind == 0:  # the child recovered exactly what the previous life committed
                assert seq == committed and digest == known[seq], (point, seq, committed)
                known = {s: d for s, d in known.items() if s <= seq}
                committed = seq
            elif kind == 1:
                in_flight = (seq, digest)
            else:
                assert in_flight is not None and in_flight[0] == seq == committed + 1
                known[seq], committed, in_flight = digest, seq, None
                stats["acked"] += 1
        if not msgs:
            stats["killed_before_start"] += 1
        rec = recover(journal, spec)
        got = hashlib.sha256(rec.state.tobytes()).digest()[:8]
        if in_flight is not None and rec.seq == in_flight[0]:  # the write in flight reached the file
            assert got == in_flight[1], point
            known[rec.seq] = got
            stats["in_flight_recovered"] += 1
        else:
            assert rec.seq == committed, (point, rec.seq, committed, rec.notes)  # never an acknowledged loss
            assert got == known[rec.seq], point
        committed = rec.seq
        stats["points"] += 1
    stats["final_seq"] = committed
    return stats


def test_kill_9_of_a_running_loop_recovers_the_last_acknowledged_write(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    stats = _kill_points(path, tmp_path, points=10, seed=7)
    assert stats["points"] == 10 and stats["final_seq"] > 20, stats


@pytest.mark.slow
def test_kill_9_at_100_points_of_a_running_loop(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    stats = _kill_points(path, tmp_path, points=100, seed=2024)
    print("kill -9 of the control loop:", stats)
    assert stats["points"] == 100 and stats["final_seq"] > 500, stats
