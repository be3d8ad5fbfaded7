"""The control loop: logs and summaries, journal consistency, budget suppression, fallbacks, flat memory."""

import contextlib
import json
import subprocess
import sys
import tracemalloc

import numpy as np

from deploy.runtime.budget import FlashConfig, PageMeter
from deploy.runtime.journal import recover
from deploy.runtime.loop import ControlLoop
from deploy.runtime.ort_runner import OrtRunner
from deploy.runtime.outputs import AppendLog
from deploy.runtime.robots import NoiseRobot
from policies.noise import NoiseBackbone


def _loop(path, tmp_path, flash=None, journal=True, backbone=None, steps=200, log=None):
    runner = OrtRunner(path)
    backbone = backbone or NoiseBackbone(runner.spec.d_model, runner.spec.d_action)
    robot = NoiseRobot(runner.spec.d_model, runner.spec.d_action, episode_steps=steps, seed=1)
    return ControlLoop(
        runner,
        robot,
        backbone,
        max_steps=steps,
        flash=flash or FlashConfig(),
        control_hz=20.0,
        journal_dir=tmp_path / "journal" if journal else None,
        snapshot_every=16,
        step_log=log,
    )


def test_episode_summary_logs_and_journal(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    with open(tmp_path / "steps.jsonl", "w") as log:
        loop = _loop(path, tmp_path, log=log)
        s0 = loop.episode(0, seed=0)
        s1 = loop.episode(1, seed=1)
        loop.close()
    lines = [json.loads(x) for x in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert len(lines) == s0["steps"] + s1["steps"] == 400
    assert set(lines[0]) >= {"t", "write", "gate_prob", "latency_us"}
    assert sum(x["write"] for x in lines) == s0["writes"] + s1["writes"] > 0
    for s in (s0, s1):
        assert s["write_rate"] == s["writes"] / s["steps"]
        assert s["kv_equivalent_bytes"] == 200 * 2 * (8 + 8) * 4
        assert s["state_bytes"] == 2 * 9 * 8 * 4
        assert s["bytes_written"] >= s["writes"] * s["record_bytes"] and s["pages_written"] >= 1
        assert 0 < s["latency_us_median"] <= s["latency_us_p99"]
        assert s["flash"]["projected_lifetime_years"] > 0
    # the journal holds exactly the runtime's state
    rec = recover(tmp_path / "journal", loop.runner.spec.state)
    assert rec.state.tobytes() == loop.runner.state.tobytes()


def test_exhausted_budget_suppresses_writes_and_logs_it(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    tight = FlashConfig(reserved_bytes=1 << 20, pe_cycles=1, lifetime_years=1.0, burst_seconds=1.0)
    with open(tmp_path / "steps.jsonl", "w") as log:
        loop = _loop(path, tmp_path, flash=tight, journal=False, log=log)
        s = loop.episode(0, seed=0)
    assert s["writes_suppressed"] > 0 and s["writes"] + s["writes_suppressed"] == s["writes_requested"]
    logged = [json.loads(x) for x in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert sum(x.get("suppressed") == "flash_budget" for x in logged) == s["writes_suppressed"]


def test_nonfinite_features_are_logged_and_counted(tiny_onnx, tmp_path):
    path, _ = tiny_onnx

    class Glitchy(NoiseBackbone):  # every 10th observation arrives with a NaN feature
        calls = 0

        def __call__(self, obs):
            Glitchy.calls += 1
            z, a = obs
            if Glitchy.calls % 10 == 0:
                z = z.copy()
                z[0] = np.nan
            return z, a

    with open(tmp_path / "steps.jsonl", "w") as log:
        spec = OrtRunner(path).spec
        loop = _loop(path, tmp_path, journal=False, backbone=Glitchy(spec.d_model, spec.d_action), log=log)
        s = loop.episode(0, seed=0)
    assert s["fallbacks"] == 20
    logged = [json.loads(x) for x in (tmp_path / "steps.jsonl").read_text().splitlines()]
    bad = [x for x in logged if x.get("fallback")]
    assert len(bad) == 20 and all(x["fallback"] == "nonfinite_features" and x["write"] == 0 for x in bad)


def test_memory_does_not_grow_with_the_episode(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    # aura run's step log: one preallocated block buffer (a text file object keeps up to 8 KiB of pending
    # line objects, which made this bound flaky)
    with contextlib.closing(AppendLog(tmp_path / "steps.jsonl", PageMeter(4096))) as log:
        loop = _loop(path, tmp_path, steps=3000, log=log)
        loop.robot.episode_steps = 10**9
        # Warm-up: ONNX Runtime 1.32's Python binding fills a small bounded cache over its first ~10k
        # runs (16 objects, then flat), which a shorter warm-up would count as growth.
        for ep in range(5):
            loop.episode(ep, seed=ep)
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        loop.episode(5, seed=5, resume=True)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        loop.close()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert growth < 16 * 1024, growth


def test_aura_run_cli_never_imports_torch(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    code = (
        "import sys\n"
        "from cli import main\n"
        f"rc = main(['run', '--model', {str(path)!r}, '--env', 'noise', '--episodes', '2',"
        f" '--max-steps', '50', '--out', {str(tmp_path / 'run')!r}])\n"
        "import deploy.runtime.runner, deploy.runtime.ort_runner, deploy.runtime.journal\n"
        "import deploy.runtime.budget, deploy.runtime.loop, deploy.runtime.robots\n"
        "import deploy.runtime.trt_runner, deploy.runtime.state, deploy.runtime.errors\n"
        "assert rc == 0, rc\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('TORCH-FREE OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "TORCH-FREE OK" in out.stdout and "aura run: episodes" in out.stdout
    assert len((tmp_path / "run" / "episodes.jsonl").read_text().splitlines()) == 2


def test_aura_run_reports_a_bad_model_file_by_name(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not onnx")
    from cli import main

    assert main(["run", "--model", str(bad), "--env", "noise", "--out", str(tmp_path / "r")]) == 2
