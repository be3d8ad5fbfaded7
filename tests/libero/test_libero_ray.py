"""`aura eval libero --ray HOST:PORT` against a real Ray head started with `ray start --head` on loopback:
every episode runs as a Ray task in the head's workers, a worker that exits hard and an episode that raises
are retried through Ray and recorded, a rerun resumes, and a bad or unreachable address is one line.

The head uses Ray's token authentication (its default once ~/.ray/auth_token exists) with a token of its
own in a temp dir, so neither ~/.ray nor any other Ray cluster on the machine is touched; teardown stops
only the processes of the head's session (``ray stop`` would stop every Ray on the machine).
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="needs the ray package (the ray extra; scripts/setup.sh installs it)")
pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")
pytest.importorskip("aura.layer", reason="needs aura.layer.AuraMem")

ARGS = ["eval", "libero", "--tasks", "0", "--init-states", "0-1", "--arms", "base,aura,random,periodic"]
ARGS += ["--backbone", "libero_noop", "--max-steps", "4", "--workers", "2", "--retries", "1"]
KEYS = {(i, a) for i in (0, 1) for a in ("base", "aura", "random", "periodic")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """Processes of the session ``sid`` (the head's ``ray start`` leads it: raylet, GCS, workers, agents)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[3]) == sid:  # field 6, after "pid (comm) state ppid pgrp"
            pids.append(int(d.name))
    return pids


def _aura(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """The ``aura`` command in a fresh process: each run is a Ray driver of its own, as a user's is."""
    code = "import sys, cli; sys.exit(cli.main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def head():
    """A Ray head on 127.0.0.1 (2 CPUs, no dashboard, free ports); yields (address, driver env)."""
    tmp = Path(tempfile.mkdtemp(prefix="aura-ray-", dir="/tmp"))  # short: Ray's unix sockets live under it
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURA_", "RAY_"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    port = _free_port()
    ports = {
        "--port": port,
        "--ray-client-server-port": _free_port(),
        "--dashboard-port": _free_port(),
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--runtime-env-agent-port": _free_port(),
        "--metrics-export-port": _free_port(),
    }
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block"]
    cmd += ["--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--include-dashboard", "false"]
    cmd += ["--disable-usage-stats", "--temp-dir", str(tmp), "--object-store-memory", str(100 * 2**20)]
    cmd += [str(x) for kv in ports.items() for x in kv]
    log = tmp / "head.log"
    with open(log, "w") as f:  # its own session: teardown finds every process it started by session id
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text()[-3000:]
                pytest.fail(f"ray start --head did not come up (rc {proc.poll()}):\n{tail}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", env
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        for pid in _session_pids(proc.pid):  # whatever is left of this head (idle workers, agents)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def first_run(head, tmp_path_factory):
    address, env = head
    out = tmp_path_factory.mktemp("ray_eval")
    crash, fail = out / "crashed.marker", out / "raised.marker"
    hooks = f"0:1:aura:exit:{crash};0:0:random:raise:{fail}"  # reaches the head's workers via runtime_env
    run = _aura([*ARGS, "--ray", address, "--out", str(out)], dict(env, AURA_LIBERO_CRASH_ONCE=hooks))
    return run, out, (crash, fail)


@pytest.mark.slow
def test_episodes_run_on_the_head_and_failures_are_retried_through_ray(first_run):
    run, out, markers = first_run
    assert run.returncode == 0, run.stderr[-3000:]
    assert all(m.exists() for m in markers)  # the hooks fired in the head's workers
    recs = _lines(out / "episodes.jsonl")
    errors = {(r["init_state"], r["arm"]): r for r in recs if r["status"] != "ok"}
    assert set(errors) == {(1, "aura"), (0, "random")}
    assert errors[(1, "aura")]["error"].startswith("WorkerCrashedError")  # the worker process died
    assert errors[(0, "random")]["error"].startswith("RayTaskError(RuntimeError)")  # the episode raised
    assert "injected failure" in errors[(0, "random")]["error"]
    assert all(r["attempt"] == 1 for r in errors.values())
    ok = {(r["init_state"], r["arm"]): r for r in recs if r["status"] == "ok"}
    assert set(ok) == KEYS and len(recs) == 10  # every episode finished ok, once
    assert ok[(1, "aura")]["attempt"] == 2 and ok[(0, "random")]["attempt"] == 2
    assert all(r["attempt"] == 1 for k, r in ok.items() if k not in errors)
    for i in (0, 1):
        for arm in ("random", "periodic"):  # budget-matched to the AURA arm of the same episode
            assert ok[(i, arm)]["writes"] == ok[(i, "aura")]["writes"]
    assert "ray 127.0.0.1:" in run.stdout and "8 episodes to run" in run.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_attempts"] == 2


@pytest.mark.slow
def test_rerun_through_ray_resumes_and_runs_only_missing_episodes(first_run, head):
    _, out, _ = first_run
    address, env = head
    path = out / "episodes.jsonl"
    before = path.read_text()
    again = _aura([*ARGS, "--ray", address, "--out", str(out)], env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert path.read_text() == before and "0 episodes to run" in again.stdout
    # A run stopped part-way (its last two episodes never written): only those run, through Ray.
    lost = {(0, "base"), (1, "aura")}
    kept = [x for x in before.splitlines() if (json.loads(x)["init_state"], json.loads(x)["arm"]) not in lost]
    path.write_text("\n".join(kept) + "\n")
    rerun = _aura([*ARGS, "--ray", address, "--out", str(out)], env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "2 episodes to run (6 already done" in rerun.stdout
    new = _lines(path)[len(kept) :]
    assert {(r["init_state"], r["arm"]) for r in new} == lost
    assert all(r["status"] == "ok" and r["attempt"] == 1 for r in new)
    assert all(r["pid"] != os.getpid() for r in new)


@pytest.mark.slow
def test_a_driver_without_the_clusters_token_is_one_line(head, tmp_path):
    address, env = head
    env = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")} | {"RAY_AUTH_MODE": "disabled"}
    run = _aura([*ARGS, "--ray", address, "--out", str(tmp_path)], env, timeout=120)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]  # above it: Ray's own retry warnings
    assert "refused this driver's authentication token" in last and "RAY_AUTH_MODE=token" in last, last
    assert not (tmp_path / "episodes.jsonl").exists()


@pytest.mark.parametrize(
    "address, says",
    [("127.0.0.1:notaport", "--ray must be HOST:PORT"), (None, "no Ray head answers there")],
)
def test_bad_or_unreachable_address_fails_fast_in_one_line(tmp_path, address, says):
    address = address or f"127.0.0.1:{_free_port()}"  # nothing listens: ray.init would retry for minutes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURA_", "RAY_"))}
    t0 = time.monotonic()
    run = _aura([*ARGS, "--ray", address, "--out", str(tmp_path)], env, timeout=90)
    assert run.returncode == 2, run.stderr[-3000:]
    lines = [x for x in run.stderr.strip().splitlines() if ": warning: " not in x]  # (untrained-gate note)
    assert len(lines) == 1 and says in lines[0] and address in lines[0], run.stderr
    assert time.monotonic() - t0 < 60
