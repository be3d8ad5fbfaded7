"""A soak of ``aura run`` itself (``aura bench runtime --run-soak-steps N``): the command run in a subprocess
for N steps on the noise robot with journal and budget, its RSS sampled from /proc, and the bytes the kernel
saw it write compared with the flash meter's count."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _read_proc(pid: int, name: str) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/{name}") as f:
        for line in f:
            key, _, value = line.partition(":")
            parts = value.split()
            if parts and parts[0].isdigit():
                out[key.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def smaps_by_mapping(pid: int) -> dict[str, int]:
    """Resident bytes of ``pid`` per kind of mapping, from ``/proc/<pid>/smaps``.

    Keys: ``[heap]``, ``[stack]`` and other bracketed names as the kernel gives them, the file's base name for
    file-backed mappings, and ``anon <perms>`` for anonymous ones (``anon r-xp`` / ``anon rwxp``: JIT-compiled
    code, e.g. Mesa llvmpipe shaders; ``anon rw-p``: malloc arenas and mmap'd allocations).
    """
    out: dict[str, int] = {}
    key = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 5)
            if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:  # a mapping's header line
                name = head[5].strip() if len(head) > 5 else ""
                key = name if name.startswith("[") else os.path.basename(name) if name else f"anon {head[1]}"
            elif head and head[0] == "Rss:" and key is not None:
                out[key] = out.get(key, 0) + int(head[1]) * 1024
    return out


def _smaps_or_none(pid: int) -> dict[str, int] | None:
    try:
        return smaps_by_mapping(pid)
    except (OSError, ValueError):  # the child exited between samples
        return None


def mapping_growth(before: dict[str, int], after: dict[str, int], top: int = 12) -> list[dict]:
    """The mappings whose resident bytes changed most between two :func:`smaps_by_mapping` snapshots."""
    keys = set(before) | set(after)
    rows = [{"mapping": k, "bytes": after.get(k, 0) - before.get(k, 0)} for k in keys]
    rows = [r for r in rows if r["bytes"]]
    return sorted(rows, key=lambda r: -abs(r["bytes"]))[:top]


def soak_aura_run(
    model,
    steps: int,
    out,
    *,
    step_log: str = "sample:100",
    summary_every: int = 1200,
    warmup_s: float = 30.0,
    warmup_steps: int = 0,
    sample_s: float = 5.0,
    extra_args: tuple[str, ...] = (),
    env: str = "noise",
    episodes: int = 1,
    max_steps: int | None = None,
) -> dict:
    """Run ``aura run --env ENV`` (journal + budget) for about ``steps`` steps in a child process; measure it.

    ``env="noise"`` runs one episode of ``steps`` steps; a robot whose episodes end by themselves (LIBERO)
    runs ``episodes`` episodes of at most ``max_steps`` (``steps`` is then the expected total, for warm-up).

    * RSS: the child's ``VmRSS`` every ``sample_s`` seconds; growth = max over the samples after warm-up
      (>= ``warmup_s`` seconds, >= 5 % of the steps and >= ``warmup_steps``) minus the first of them
      (target <= 64 KiB). A simulator's allocator settles later than the noise robot: LIBERO needs thousands.
      Where it grew: ``/proc/<pid>/smaps`` at the baseline sample and at the peak sample after it, per mapping
      (:func:`smaps_by_mapping`), as ``rss_growth_by_mapping``.
    * Bytes: the kernel's count of bytes the child handed to ``write(2)`` (``wchar`` of ``/proc/<pid>/io``,
      read after it exits and before it is reaped) minus what it wrote to its stdout / stderr pipes
      (counted here) = the bytes it wrote to files, against the flash budget meter's count (run.json's
      ``bytes_written_before_this_file`` plus run.json itself, the last file written). They must be equal:
      every byte on the flash is charged.
    """
    import json
    import subprocess
    import sys
    import threading

    out = Path(out)
    argv = [sys.executable, "-m", "cli", "run", "--model", os.fspath(model), "--env", env]
    argv += ["--episodes", str(episodes), "--max-steps", str(max_steps or steps), "--out", os.fspath(out)]
    argv += ["--step-log", step_log]
    argv += ["--summary-every", str(summary_every), *extra_args]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # no .pyc writes: every write is the run's
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    piped = {"stdout": 0, "stderr": 0}
    tails: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def drain(name, stream):
        for chunk in iter(lambda: stream.read1(1 << 16), b""):
            piped[name] += len(chunk)
            tails[name] = (tails[name] + chunk)[-4000:]

    threads = [threading.Thread(target=drain, args=(n, getattr(proc, n)), daemon=True) for n in piped]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    trace, base = [], None
    smaps_base = smaps_peak = None
    peak_rss = 0
    while True:
        try:
            done = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            done = True
        if done:
            break
        time.sleep(sample_s)
        try:
            rss = _read_proc(proc.pid, "status").get("VmRSS", 0)
            progress = json.loads((out / "summary.json").read_text()).get("steps", 0)
        except (OSError, ValueError):
            continue
        if rss == 0:  # exiting: its memory is gone
            continue
        elapsed = time.perf_counter() - t0
        trace.append({"seconds": round(elapsed, 1), "steps": progress, "rss_bytes": rss})
        if base is None and elapsed >= warmup_s and progress >= max(steps // 20, warmup_steps):
            base = trace[-1]
            smaps_base = smaps_peak = _smaps_or_none(proc.pid)
            peak_rss = rss
        # smaps (a walk of every mapping) only at a new peak after the baseline: the peak, not the last
        # sample, since at exit a process frees most of its memory
        elif base is not None and rss > peak_rss:
            smaps_peak, peak_rss = _smaps_or_none(proc.pid) or smaps_peak, rss
        if base is not None and len(trace) % 12 == 0:
            growth = max(x["rss_bytes"] for x in trace if x["seconds"] >= base["seconds"]) - base["rss_bytes"]
            print(f"  soak {progress}/{steps} steps, {elapsed:.0f} s, RSS growth {growth} B", flush=True)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    io = _read_proc(proc.pid, "io")  # a zombie still has its I/O accounting
    rc = proc.wait()
    for t in threads:
        t.join(timeout=10)
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"aura run exited {rc}: {tails['stderr'].decode(errors='replace')[-2000:]}")
    run = json.loads((out / "run.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    metered = run["bytes_written_before_this_file"] + (out / "run.json").stat().st_size
    file_bytes = io["wchar"] - piped["stdout"] - piped["stderr"]
    after = [x for x in trace if base is not None and x["seconds"] >= base["seconds"]]
    on_disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "command": " ".join(argv[1:]),
        "steps": summary["steps"],
        "robot_hours_at_20hz": summary["steps"] / 20 / 3600,
        "wall_seconds": wall,
        "us_per_step_wall": wall / max(summary["steps"], 1) * 1e6,
        "writes": summary["writes"],
        "writes_requested": summary["writes_requested"],
        "writes_suppressed": summary["writes_suppressed"],
        "latency_us_median": summary["latency_us_median"],
        "latency_us_p99": summary["latency_us_p99"],
        "journal_us_median": summary["journal_us_median"],
        "rss_baseline_bytes": base["rss_bytes"] if base else None,
        "rss_baseline_at": base,
        "warmup_steps": warmup_steps,
        "rss_growth_bytes": (max(x["rss_bytes"] for x in after) - base["rss_bytes"]) if after else None,
        "rss_final_minus_baseline_bytes": (after[-1]["rss_bytes"] - base["rss_bytes"]) if after else None,
        "target_rss_growth_bytes": 65536,
        "rss_trace": trace,
        "rss_growth_by_mapping": (
            mapping_growth(smaps_base, smaps_peak)
            if smaps_base is not None and smaps_peak is not None
            else None
        ),
        "kernel_file_bytes_written": file_bytes,
        "meter_bytes_written": metered,
        "bytes_match": file_bytes == metered,
        "meter_by_file": summary["flash"]["by_file"],
        "kernel_wchar": io["wchar"],
        "kernel_storage_write_bytes": io.get("write_bytes"),
        "pipe_bytes": piped,
        "bytes_on_disk_now": on_disk,
        "flash": {
            k: summary["flash"][k]
            for k in ("pages_written", "flash_bytes_per_hour", "projected_lifetime_years")
        },
    }
