"""Pack what the LIBERO tasks need into checksummed parts for the GPU machine, and plan the device calls.

    aura sim bundle --wheels --gl          # build .libero_bundle/, fetch cp312 wheels to .whl, debs to .gl
    aura sim bundle --no-build             # only print the plan (after the repo changed size, say)
    aura sim bundle --no-build --wheels --python-version 3.11 --wheel-dir /tmp/whl311   # a local test

The file set is what the --tasks envs open and reference (default libero_10; probed in subprocesses,
~2-3 min on 2 cores; the living_room_scene2 group needs exactly libero_10's files: same manifest)
plus every non-asset file of robosuite, libero and bddl (sim/libero/bundle.py). Output: parts of at
most --part-mb MiB, index.json (sha256 of each part, wheel and deb) and manifest.tsv (sha256, size,
path of every file). The plan packs the parts, the wheel folder and the deb folder into as few device
calls as fit under 64 MiB beside the repo; on the machine scripts/libero_gpu.sh stages, checks and
sets them up (docs/libero_gpu.md).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import subprocess
import time
from pathlib import Path

from sim.libero import bundle
from sim.libero.tasks import TASKS_HELP, parse_tasks

REPO = Path(__file__).resolve().parents[1]


def _tasks(text: str) -> list[int]:
    return sorted(set(parse_tasks(text, "--tasks")))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=REPO / ".libero_bundle", help="a git-ignored folder of the repo"
    )
    parser.add_argument("--tasks", default="0-9", help=f"tasks whose files are probed: {TASKS_HELP}")
    parser.add_argument(
        "--part-mb",
        type=float,
        default=None,
        help="largest part in MiB (default: balanced over the fewest calls)",
    )
    parser.add_argument(
        "--level", type=int, default=19, help="zstd level 1-22; 0: plain tar (PNGs barely compress)"
    )
    parser.add_argument("--steps", type=int, default=3, help="steps per task env while probing")
    parser.add_argument("--probe-workers", type=int, default=2, help="probe subprocesses (~2.5 GB each)")
    parser.add_argument("--no-build", action="store_true", help="keep the existing parts (fetch, plan only)")
    parser.add_argument("--wheels", action="store_true", help="download the wheels the GPU image lacks")
    parser.add_argument("--wheel-dir", type=Path, default=REPO / ".whl", help="where --wheels puts them")
    parser.add_argument("--python-version", default="3.12", help="CPython of the machine (--wheels, plan)")
    parser.add_argument("--gl", action="store_true", help="apt-get download the GL loader debs")
    parser.add_argument("--gl-dir", type=Path, default=REPO / ".gl", help="where --gl puts them")


def _ignored(path: Path) -> bool:
    r = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO, capture_output=True)
    return r.returncode == 0


def _rel(path: Path) -> str | None:
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return None


def print_plan(index: dict, out: Path, wheel_dir: Path, gl_dir: Path, py: str) -> None:
    repo = bundle.repo_bytes(REPO)
    idx_rel = f"{_rel(out)}/{bundle.INDEX}"
    idx_size = (out / bundle.INDEX).stat().st_size
    items = [(f"{_rel(out)}/{p['name']}", p["size"]) for p in index["parts"]]
    notes = []
    for what, folder, listed in (
        ("wheels", wheel_dir, index.get("wheels", {}).get(bundle.tag(py), [])),
        ("debs", gl_dir, index.get("debs", [])),
    ):
        rel = _rel(folder)
        if not listed:
            flag = "--gl" if what == "debs" else f"--wheels --python-version {py}"
            notes.append(f"no {what} recorded for {bundle.tag(py)}: run with --no-build {flag}")
        elif rel is None:
            notes.append(f"{folder} is outside the repo: it cannot be carried")
        else:
            size = bundle.folder_bytes(folder)
            extra = size - sum(e["size"] for e in listed)
            if extra > 0:
                notes.append(f"{rel} also holds {extra / bundle.MIB:.1f} MiB not in the index: travels too")
            items.append((rel, size))
    calls = bundle.plan_calls(items, repo + idx_size)
    print(f"\nplan: repo tree {repo / bundle.MIB:.1f} MiB travels with every call; limit 64 MiB per call")
    print(f"{'call':>4}  {'MiB':>5}  carry")
    for i, c in enumerate(calls, 1):
        print(f"{i:>4}  {c['total'] / bundle.MIB:5.1f}  {', '.join([idx_rel, *sorted(c['carry'])])}")
    print("\ndevice run commands (back to back, same machine: /tmp/aura-libero lasts while it stays warm):")
    for i, c in enumerate(calls, 1):
        carry = [idx_rel, *sorted(c["carry"])]
        cmd = "bash scripts/libero_gpu.sh --partial-ok"
        if i == len(calls):
            cmd = "bash scripts/libero_gpu.sh && . /tmp/aura-libero/env.sh && aura eval libero ..."
        print(f"  {i}. command: {cmd}\n     carry: {carry}")
    for n in notes:
        print(f"note: {n}")


def run(args: argparse.Namespace) -> int:
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    if _rel(out) is not None:
        out.mkdir(parents=True, exist_ok=True)  # git matches a folder pattern only to a folder
    if _rel(out) is None or not _ignored(out):
        raise ValueError(f"--out {args.out}: must be a git-ignored folder inside {REPO} (carry sends it)")
    index_path = out / bundle.INDEX
    limits = [("--part-mb", args.part_mb, 1, 63), ("--level", args.level, 0, 22)]
    limits += [("--steps", args.steps, 1, 1000), ("--probe-workers", args.probe_workers, 1, 10)]
    for name, value, lo, hi in limits:
        if value is not None and not lo <= value <= hi:
            raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    tasks = _tasks(args.tasks)
    if args.no_build and not index_path.is_file() and not (args.wheels or args.gl):
        raise ValueError(f"--no-build: {index_path} does not exist; build the bundle first")
    if args.wheels:  # first, so that the parts can be sized around them
        bundle.fetch_wheels(index_path, args.wheel_dir, args.python_version)
    if args.gl:
        bundle.fetch_debs(index_path, args.gl_dir)
    if not args.no_build:
        from sim.libero.install import libero_dir

        t0 = time.perf_counter()
        site = libero_dir().parents[1]
        probed = bundle.probe(tasks, args.steps, args.probe_workers)
        rels = bundle.collect(probed, site)
        pd = md.packages_distributions()
        ours = {n.lower() for n in (*bundle.DISTS, *bundle.WHEELS)}
        tops = (k for k, v in probed["modules"].items() if Path(v).resolve().is_relative_to(site.resolve()))
        other = sorted({d for t in tops for d in pd.get(t, []) if d.lower().replace("_", "-") not in ours})
        print(f"[bundle] the envs also import (the GPU image must have them): {', '.join(other)}")
        n = bundle.check_assets(site, rels)
        print(f"[bundle] {len(rels)} files ({n} asset files match sim/libero/assets.sha256), "
              f"probe {time.perf_counter() - t0:.0f} s")  # fmt: skip
        extra = sum(bundle.folder_bytes(d) for d in (args.wheel_dir, args.gl_dir) if _rel(d) is not None)
        fixed = bundle.repo_bytes(REPO) + (16 << 10)  # the repo tree and the index travel with every call
        bundle.build(out, site, rels, args.part_mb, args.level, extra=extra, fixed=fixed)
    index = bundle.read_index(index_path)
    if not index["parts"]:
        raise ValueError(f"{index_path} lists no parts yet: run without --no-build")
    for p in index["parts"]:
        if not (out / p["name"]).is_file() or (out / p["name"]).stat().st_size != p["size"]:
            raise ValueError(f"{out / p['name']}: missing or truncated; rebuild the bundle")
    print_plan(index, out, args.wheel_dir, args.gl_dir, args.python_version)
    return 0
