"""`aura eval libero` end to end on tiny episodes: a worker crash is retried and recorded, budget arms
match the AURA arm's writes, and a rerun resumes (skips finished episodes, redoes missing ones)."""

import json

import pytest

pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")
pytest.importorskip("aura.layer", reason="needs aura.layer.AuraMem")

import cli  # noqa: E402

ARGS = ["eval", "libero", "--tasks", "0", "--init-states", "0-1", "--arms", "base,aura,random,periodic"]
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
    assert len(ok) == 8 and ok[(1, "aura")]["attempt"] == 2 and ok[(0, "random")]["attempt"] == 2
    for i in (0, 1):
        assert ok[(i, "base")]["writes"] == 0 and ok[(i, "base")]["bytes"] == 0
        for arm in ("random", "periodic"):  # budget-matched to the AURA arm of the same episode
            assert ok[(i, arm)]["writes"] == ok[(i, "aura")]["writes"]
        assert ok[(i, "aura")]["bytes"] == ok[(i, "aura")]["writes"] * 4224
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_attempts"] == 2
    assert {r["arm"] for r in summary["rows"]} == {"base", "aura", "random", "periodic"}


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
    assert sum(r["status"] == "ok" for r in recs) == 8
