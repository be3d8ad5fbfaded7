"""`aura eval libero` end to end on tiny episodes: a worker crash is retried and recorded, budget arms
match the AURA arm's writes, every record counts its bytes / pages / sub-task boundaries, the summary has
the byte columns, ratios and the write-position plot, and a rerun resumes (skips finished episodes, redoes
missing ones)."""

import json

import pytest

pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")
pytest.importorskip("aura.layer", reason="needs aura.layer.AuraMem")

import cli  # noqa: E402

ARGS = [
    "eval",
    "libero",
    "--tasks",
    "0",
    "--init-states",
    "0-1",
    "--arms",
    "base,always,aura,random,periodic,kv",
]
ARGS += ["--backbone", "libero_noop", "--max-steps", "4", "--workers", "1", "--retries", "1"]


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    crash, fail = out / "crashed.marker", out / "raised.marker"
    mp = pytest.MonkeyPatch()
    mp.setenv("AURA_LIBERO_CRASH_ONCE", f"0:1:aura:exit:{crash};0:0:random:raise:{fail}")
    try:
        rc = cli.main([*ARGS, "--out", str(out)])
    finally:
        mp.undo()
    return rc, out, (crash, fail)


def test_worker_crash_and_episode_error_are_retried_and_recorded(first_run):
    rc, out, markers = first_run
    assert rc == 0 and all(m.exists() for m in markers)
    recs = _lines(out / "episodes.jsonl")
    errors = {(r["init_state"], r["arm"]): r for r in recs if r["status"] != "ok"}
    assert set(errors) == {(1, "aura"), (0, "random")}
    assert "exit code 17" in errors[(1, "aura")]["error"]  # the worker process died
    assert "injected failure" in errors[(0, "random")]["error"]  # the episode raised
    ok = {(r["init_state"], r["arm"]): r for r in recs if r["status"] == "ok"}
    assert len(ok) == 12 and ok[(1, "aura")]["attempt"] == 2 and ok[(0, "random")]["attempt"] == 2
    for i in (0, 1):
        assert ok[(i, "base")]["writes"] == 0 and ok[(i, "base")]["bytes"] == 0
        assert ok[(i, "base")]["journal_bytes"] is None and ok[(i, "base")]["lifetime_years"] is None
        for arm in ("random", "periodic"):  # budget-matched to the AURA arm of the same episode
            assert ok[(i, arm)]["writes"] == ok[(i, "aura")]["writes"]
        a, kv = ok[(i, "aura")], ok[(i, "kv")]
        assert (
            a["bytes"] == a["dense_bytes"] == a["writes"] * 4224 and a["journal_bytes"] == a["writes"] * 536
        )
        assert (
            a["kv_equiv_bytes"] == 4 * 256 and a["journal_pages"] == 3 + a["writes"]
        )  # snapshot+header+1/rec
        assert kv["writes"] == kv["steps"] == 4 and kv["kv_bytes"] == 4 * 256 and kv["kv_pages"] == 4
        assert kv["journal_bytes"] is None and kv["write_steps"] == [0, 1, 2, 3]
        for r in (a, kv, ok[(i, "base")]):  # task 0: alphabet soup and tomato sauce in the basket
            assert len(r["subgoals"]) == 2 and r["subgoal_steps"] == [None, None]
        # the gated arm keeps p_t per step and tau; its writes are exactly the steps with p_t > tau
        assert len(a["gate_probs"]) == a["steps"] == 4 and a["gate_threshold"] == 0.5
        assert a["write_steps"] == [t for t, p in enumerate(a["gate_probs"]) if p > a["gate_threshold"]]
        assert a["gate_prob_mean"] == pytest.approx(sum(a["gate_probs"]) / 4, abs=1e-4)
        assert all("gate_probs" not in ok[(i, arm)] for arm in ("base", "always", "random", "periodic", "kv"))
        assert all(r["instruction_steps"] is None for r in ok.values())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_attempts"] == 2
    assert {r["arm"] for r in summary["rows"]} == {"base", "always", "aura", "random", "periodic", "kv"}
    q = summary["ratios"]
    assert q["always_over_aura_writes"] == pytest.approx(8 / sum(ok[(i, "aura")]["writes"] for i in (0, 1)))
    assert q["kv_over_aura_journal_bytes"] == pytest.approx(
        8 * 256 / (536 * (ok[(0, "aura")]["writes"] + ok[(1, "aura")]["writes"]))
    )
    assert q["kv_over_aura_journal_bytes_pairs"] == 2
    md = (out / "summary.md").read_text()
    assert "journal B" in md and "KV bytes / AURA journal bytes" in md
    assert (out / "write_positions.png").stat().st_size > 1000
    assert (out / "gate_prob.png").stat().st_size > 1000


def test_results_without_the_gate_fields_resume_and_summarise(first_run, tmp_path, capsys):
    """A results directory from before gate_probs / gate_threshold / instruction_steps: nothing is rerun, the
    summary is rebuilt, and there is no gate_prob.png."""
    _, out, _ = first_run
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text((out / "config.json").read_text())
    new = ("gate_probs", "gate_threshold", "instruction_steps")
    recs = [{k: v for k, v in r.items() if k not in new} for r in _lines(out / "episodes.jsonl")]
    (old / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    capsys.readouterr()
    assert cli.main([*ARGS, "--out", str(old)]) == 0
    assert "0 episodes to run" in capsys.readouterr().out
    assert len(_lines(old / "episodes.jsonl")) == len(recs)
    summary = json.loads((old / "summary.json").read_text())
    assert {r["arm"] for r in summary["rows"]} == {"base", "always", "aura", "random", "periodic", "kv"}
    assert (old / "write_positions.png").exists() and not (old / "gate_prob.png").exists()


def test_rerun_resumes_and_skips_finished_episodes(first_run, capsys):
    _, out, _ = first_run
    path = out / "episodes.jsonl"
    before = path.read_text()
    assert cli.main([*ARGS, "--out", str(out)]) == 0
    assert path.read_text() == before
    assert "0 episodes to run" in capsys.readouterr().out
    # Lose one finished episode (as if the run had been killed before writing it): only it is redone.
    kept = [x for x in before.splitlines() if not ('"init_state": 0, "arm": "base"' in x and '"ok"' in x)]
    path.write_text("\n".join(kept) + "\n")
    assert cli.main([*ARGS, "--out", str(out)]) == 0
    new = _lines(path)[len(kept) :]
    assert [(r["init_state"], r["arm"], r["status"]) for r in new] == [(0, "base", "ok")]


def test_resume_under_another_configuration_is_refused(first_run, capsys):
    _, out, _ = first_run
    before = (out / "episodes.jsonl").read_text()
    assert cli.main([*ARGS[:-6], "--max-steps", "9", "--out", str(out)]) == 2
    assert "another configuration" in capsys.readouterr().err
    assert (out / "episodes.jsonl").read_text() == before


def test_resume_with_another_render_quality_is_refused(first_run, capsys):
    """Images from decimated render meshes are not LIBERO's: such episodes never mix with faithful ones."""
    _, out, _ = first_run
    assert cli.main([*ARGS, "--render", "fast", "--out", str(out)]) == 2
    assert "'render': (None, 'fast')" in capsys.readouterr().err


def test_bad_arguments_are_usage_errors(capsys, tmp_path):
    assert cli.main(["eval", "libero", "--tasks", "12", "--out", str(tmp_path)]) == 2
    assert "--tasks" in capsys.readouterr().err
    assert cli.main(["eval", "libero", "--shard", "3/2", "--out", str(tmp_path)]) == 2
    assert cli.main(["eval", "libero", "--arms", "base,magic", "--out", str(tmp_path)]) == 2


def test_ray_without_ray_installed_is_a_clear_error():
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed; this checks the message shown without it")
    from sim.libero.workers import run_ray

    with pytest.raises(RuntimeError, match="pip install ray"):
        run_ray(None, None, "auto")


@pytest.mark.slow
def test_ray_executor_retries_crashed_and_failing_tasks(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="needs the ray package (pip install ray), not part of AURA's install")
    hooks = f"0:1:aura:exit:{tmp_path / 'c'};0:0:aura:raise:{tmp_path / 'r'}"
    monkeypatch.setenv("AURA_LIBERO_CRASH_ONCE", hooks)
    assert cli.main([*ARGS, "--workers", "2", "--ray", "local", "--out", str(tmp_path)]) == 0
    recs = _lines(tmp_path / "episodes.jsonl")
    errs = sorted(r["error"].split(":")[0] for r in recs if r["status"] != "ok")
    assert errs == ["RayTaskError(RuntimeError)", "WorkerCrashedError"]
    assert sum(r["status"] == "ok" for r in recs) == 12  # 2 pairs x the 6 default arms


def test_transient_instruction_variant_and_its_oracle_arm(tmp_path, capsys):
    """--instruction-steps k: the oracle arm writes at t < k only, the setting is pinned with the results,
    and the oracle without k is a usage error naming the option."""
    out = tmp_path / "transient"
    args = ["eval", "libero", "--tasks", "0", "--init-states", "0", "--backbone", "libero_noop"]
    args += ["--max-steps", "5", "--workers", "1", "--instruction-steps", "2", "--out", str(out)]
    assert cli.main([*args, "--arms", "base,oracle"]) == 0
    recs = {r["arm"]: r for r in _lines(out / "episodes.jsonl")}
    assert recs["oracle"]["write_steps"] == [0, 1] and recs["base"]["writes"] == 0
    assert recs["oracle"]["instruction_steps"] == recs["base"]["instruction_steps"] == 2
    assert json.loads((out / "config.json").read_text())["instruction_steps"] == 2
    capsys.readouterr()
    assert cli.main([*args[:-4], "--out", str(out)]) == 2  # the same results dir without the variant
    assert "instruction_steps" in capsys.readouterr().err
    assert cli.main(["eval", "libero", "--arms", "base,oracle", "--out", str(tmp_path / "x")]) == 2
    assert "--instruction-steps" in capsys.readouterr().err


def test_video_comes_with_a_contact_sheet(tmp_path):
    """--video N: an MP4 per episode and beside it the PNG contact sheet its record names."""
    pytest.importorskip("imageio_ffmpeg", reason="needs imageio-ffmpeg (sim extra) for MP4")
    import imageio.v3 as iio

    out = tmp_path / "v"
    args = ["eval", "libero", "--tasks", "5", "--init-states", "0", "--arms", "base", "--backbone"]
    args += ["libero_noop", "--max-steps", "6", "--workers", "1", "--render", "fast", "--video", "1"]
    assert cli.main([*args, "--out", str(out)]) == 0
    (rec,) = _lines(out / "episodes.jsonl")
    video, sheet = iio.imread(rec["video"]), iio.imread(rec["contact_sheet"])
    assert rec["contact_sheet"] == str(out / "videos" / "task5_init0_base.png")
    assert len(video) == 7  # 6 steps and the final frame: 7 tiles, two rows of 6
    assert sheet.shape[:2] == (2 * video.shape[1], 6 * video.shape[2])


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_hung_episode_is_killed_at_the_timeout_and_retried(tmp_path, monkeypatch, executor):
    """--episode-timeout applies to both executors: the hung worker is killed (Ray: the task cancelled),
    the episode is recorded as failed with the reason and its retry succeeds."""
    extra = ["--workers", "2"]
    if executor == "ray":
        pytest.importorskip("ray", reason="needs the ray package (the ray extra; scripts/setup.sh has it)")
        extra += ["--ray", "local"]
    monkeypatch.setenv("AURA_LIBERO_CRASH_ONCE", f"0:0:aura:hang:{tmp_path / 'h'}")
    # 30 s, well above a normal episode here: at 15 s, a second test run on the same 2 cores pushed normal
    # episodes past it (3 timeouts instead of 1). The hang lasts 120 s, so the timeout is what ends it.
    args = [*ARGS, *extra, "--episode-timeout", "30", "--out", str(tmp_path / "out")]
    assert cli.main(args) == 0
    recs = _lines(tmp_path / "out" / "episodes.jsonl")
    failed = [r for r in recs if r["status"] != "ok"]
    assert len(failed) == 1 and "exceeded the 30 s timeout" in failed[0]["error"]
    assert (failed[0]["task"], failed[0]["init_state"], failed[0]["arm"]) == (0, 0, "aura")
    assert sum(r["status"] == "ok" for r in recs) == 12  # the retry included


def test_flash_config_sets_the_pages_and_lifetimes_and_is_pinned(tmp_path, capsys):
    """--flash-config / --control-hz: the episodes' pages and lifetimes and the summary's follow the part
    given; a results dir made under one part is not resumed under another; a bad file is named."""
    args = ["eval", "libero", "--tasks", "0", "--init-states", "0", "--backbone", "libero_noop"]
    args += ["--arms", "aura", "--max-steps", "6", "--workers", "1", "--budget-rate", "1"]
    small = tmp_path / "small.json"  # 512-byte pages, 10 P/E cycles of a 1 MiB region
    small.write_text(json.dumps({"page_bytes": 512, "pe_cycles": 10, "reserved_bytes": 1 << 20}))
    assert cli.main([*args, "--out", str(tmp_path / "d")]) == 0
    assert (
        cli.main([*args, "--flash-config", str(small), "--control-hz", "50", "--out", str(tmp_path / "s")])
        == 0
    )
    (default,), (custom,) = (
        _lines(tmp_path / "d" / "episodes.jsonl"),
        _lines(tmp_path / "s" / "episodes.jsonl"),
    )
    assert default["writes"] == custom["writes"] > 0 and default["journal_bytes"] == custom["journal_bytes"]
    assert custom["journal_pages"] > default["journal_pages"]  # smaller pages: more of them
    assert custom["lifetime_years"] < default["lifetime_years"] / 1000
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["flash"]["page_bytes"] == 512 and summary["flash"]["control_hz"] == 50
    row = next(r for r in summary["rows"] if r["task"] == "all")
    assert row["lifetime_years"] == pytest.approx(custom["lifetime_years"], rel=1e-6)
    capsys.readouterr()
    assert cli.main([*args, "--out", str(tmp_path / "s")]) == 2  # the default part: another configuration
    assert "flash" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"pe_cycles": -3}))
    assert cli.main([*args, "--flash-config", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert str(bad) in capsys.readouterr().err
