"""`aura run` for unbounded runs: no buffer sized by the horizon, step logging off / sampled / full with its
bytes charged to the flash budget, the run record and periodic summaries, a clean stop on SIGINT / SIGTERM,
and what --resume (or its absence) does with an earlier run's journal."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cli
from deploy.runtime.budget import FlashConfig
from deploy.runtime.journal import recover
from deploy.runtime.loop import ControlLoop
from deploy.runtime.ort_runner import OrtRunner
from deploy.runtime.robots import NoiseRobot
from policies.noise import NoiseBackbone

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def other_onnx(tmp_path_factory):
    """A second tiny step graph (other weights, same state shape): another model's digest."""
    from deploy.export.step_graph import export_step

    from .conftest import TINY, make_tiny_step

    path = tmp_path_factory.mktemp("other") / "other.onnx"
    dims = dict(
        d_model=TINY.d_model, d_action=TINY.d_action, heads=TINY.heads, d_key=TINY.d_key, d_val=TINY.d_val
    )
    export_step(make_tiny_step(seed=1), path, **dims)
    return path


def _run(model, out, *extra, episodes=1, steps=300):
    argv = ["run", "--model", str(model), "--env", "noise", "--episodes", str(episodes)]
    return cli.main(argv + ["--max-steps", str(steps), "--out", str(out), *map(str, extra)])


def test_no_buffer_is_sized_by_the_horizon(tiny_onnx, tmp_path):
    import tracemalloc

    path, _ = tiny_onnx
    runner = OrtRunner(path)
    robot = NoiseRobot(runner.spec.d_model, runner.spec.d_action, episode_steps=500, seed=1)
    tracemalloc.start()
    loop = ControlLoop(
        runner,
        robot,
        NoiseBackbone(runner.spec.d_model, runner.spec.d_action),
        max_steps=10**15,  # a robot meant to run forever
        flash=FlashConfig(),
        control_hz=20.0,
        journal_dir=tmp_path / "journal",
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20, peak  # the old loop allocated 2 x 8 B x max_steps here
    s = loop.episode(0, seed=0)
    loop.close()
    assert s["steps"] == 500 and 0 < s["latency_us_min"] <= s["latency_us_median"] <= s["latency_us_max"]


def test_the_episode_table_keeps_no_summary_but_the_last(capsys):
    """aura run's final table lives in a ring allocated at start: a long run of many episodes does not keep
    their summary dicts (each ~3 KB of malloc'd dict tables, which grew a LIBERO soak's heap per episode)."""
    import weakref

    from cli.run import EpisodeTally, print_table

    class Summary(dict):  # a dict that can be weakly referenced
        pass

    tally = EpisodeTally(rows=4)
    ring = tally.table
    refs = []
    for ep in range(10):
        s = Summary(
            episode=ep, steps=100 + ep, writes=ep, write_rate=ep / 100, writes_suppressed=0, fallbacks=0,
            bytes_written=10 * ep, pages_written=ep, kv_equivalent_bytes=1000, latency_us_median=1.5,
            latency_us_p99=2.5, success=ep % 2 == 0, state_bytes=64, record_bytes=32,
            flash={k: 1.0 for k in ("bytes_per_hour", "pages_per_hour", "flash_bytes_per_hour",
                                    "allowed_flash_bytes_per_hour", "projected_lifetime_years",
                                    "target_lifetime_years", "allowed_writes_per_hour")},
        )  # fmt: skip
        refs.append(weakref.ref(s))
        tally.add(s)
        del s
    assert tally.table is ring and ring.shape[0] == 4
    assert [r() is None for r in refs] == [True] * 9 + [False]  # only the last summary is held
    rows = tally.rows()
    assert [r["episode"] for r in rows] == [6, 7, 8, 9] and rows[-1]["steps"] == 109
    assert (tally.count, tally.wins) == (10, 5)
    print_table(tally)
    out = capsys.readouterr().out
    assert "the last 4 of 10" in out and "success: 5/10 episodes" in out


@pytest.mark.parametrize("mode,lines", [("off", 0), ("sample:25", 12), ("full", 300)])
def test_step_log_modes_and_their_bytes_are_charged_to_the_budget(tiny_onnx, tmp_path, mode, lines, capsys):
    path, _ = tiny_onnx
    out = tmp_path / "run"
    assert _run(path, out, "--step-log", mode, "--snapshot-every", 10**6) == 0
    capsys.readouterr()
    log = out / "steps.jsonl"
    assert (len(log.read_text().splitlines()) if log.exists() else 0) == lines
    summary = json.loads((out / "summary.json").read_text())
    by_file = summary["flash"]["by_file"]
    # bytes on disk == the meter's count, file by file (nothing is deleted in one short run)
    assert by_file["step_log"]["bytes"] == (log.stat().st_size if log.exists() else 0)
    assert by_file["episode_log"]["bytes"] == (out / "episodes.jsonl").stat().st_size
    journal = sum(p.stat().st_size for p in (out / "journal").iterdir())
    assert by_file["journal"]["bytes"] == journal
    assert summary["flash"]["bytes_written"] == sum(f["bytes"] for f in by_file.values())
    assert (by_file["step_log"]["pages"] > 0) == (lines > 0)
    ep = json.loads((out / "episodes.jsonl").read_text())
    assert ep["flash"]["by_file"]["step_log"] == by_file["step_log"]  # flushed at the episode's end


def test_run_record_and_periodic_summaries(tiny_onnx, tmp_path, capsys):
    path, _ = tiny_onnx
    out = tmp_path / "run"
    flash = tmp_path / "flash.json"
    flash.write_text(json.dumps({"page_bytes": 16384, "burst_seconds": 30}))
    assert _run(path, out, "--flash-config", flash, "--summary-every", 50, episodes=2, steps=120) == 0
    text = capsys.readouterr().out
    assert "journal: new" in text
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed" and run["steps"] == 240 and run["model_digest_verified"]
    assert run["flash_config"]["page_bytes"] == 16384 and run["flash_config"]["burst_seconds"] == 30
    assert run["model"]["sha256"] == OrtRunner(path).model_id and run["model"]["verified"]
    assert {"aura", "numpy", "onnxruntime", "python"} <= set(run["versions"])
    assert run["options"]["summary_every"] == 50 and run["journal"]["new"]
    assert not list(out.glob("*.tmp"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 240 and summary["episodes_done"] == 2
    assert summary["rss_bytes"] > 0 and summary["latency_us_p99"] >= summary["latency_us_median"] > 0


def _start(model, out, *extra):
    code = "import sys; from cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["run", "--model", str(model), "--env", "noise", "--episodes", "3", "--max-steps", "1000000000"]
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv, "--out", str(out), *map(str, extra)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_cleanly(tiny_onnx, tmp_path, sig):
    path, _ = tiny_onnx
    out = tmp_path / "run"
    proc = _start(path, out, "--summary-every", 200, "--step-log", "sample:10")
    deadline = time.monotonic() + 60
    while not (out / "summary.json").exists():  # running: the first periodic summary is out
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stdout + stderr
    assert "Traceback" not in stderr and f"stopped by signal {int(sig)}" in stdout, stdout + stderr
    eps = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(eps) == 1 and eps[0]["stopped"] == sig.name and eps[0]["steps"] >= 200
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == f"stopped by {sig.name}" and summary["steps"] == eps[0]["steps"]
    assert json.loads((out / "run.json").read_text())["status"] == f"stopped by {sig.name}"
    # the journal was closed: it recovers exactly what the summary says, nothing torn
    spec = OrtRunner(path).spec.state
    r = recover(out / "journal", spec)
    assert r.seq == summary["journal"]["seq"] and r.dropped_bytes == 0


def test_resume_and_rerun_semantics(tiny_onnx, other_onnx, tmp_path, capsys):
    path, _ = tiny_onnx
    out = tmp_path / "run"
    assert _run(path, out, "--resume") == 0  # --resume with no journal: says so, starts empty
    assert "--resume: no journal in" in capsys.readouterr().out
    seq = json.loads((out / "summary.json").read_text())["journal"]["seq"]
    assert _run(path, out, "--resume", episodes=1) == 0  # continues from the recovered state
    text = capsys.readouterr().out
    assert f"journal: recovered seq {seq}" in text, text
    run = json.loads((out / "run.json").read_text())
    assert run["journal"]["seq"] == seq and run["previous_run"]["status"] == "completed"
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 2  # appended, not truncated
    # another model's journal (same state shape) is refused, by name, and left alone
    before = {p.name: p.read_bytes() for p in (out / "journal").iterdir()}
    assert _run(other_onnx, out, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "snapshot-" in err and "written by model sha256" in err, err
    assert {p.name: p.read_bytes() for p in (out / "journal").iterdir()} == before
    # without --resume the earlier run is moved aside, never silently "recovered" and then reset
    assert _run(path, out) == 0
    text = capsys.readouterr().out
    assert "moved to" in text and "journal: new" in text and "recovered" not in text, text
    assert (out / "prev" / "journal").is_dir() and len(
        (out / "prev" / "episodes.jsonl").read_text().splitlines()
    ) == 2


def test_resume_of_a_corrupt_journal_is_refused_naming_segment_and_offset(tiny_onnx, tmp_path, capsys):
    path, _ = tiny_onnx
    out = tmp_path / "run"
    assert _run(path, out, "--snapshot-every", 10**6, steps=400) == 0
    seg = sorted((out / "journal").glob("segment-*.log"))[-1]
    data = bytearray(seg.read_bytes())
    assert len(data) > 2000
    data[len(data) // 2] ^= 0x10
    seg.write_bytes(bytes(data))
    capsys.readouterr()
    assert _run(path, out, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert seg.name in err and "corrupt at byte" in err and "not a torn tail" in err, err
    assert seg.read_bytes() == bytes(data)
