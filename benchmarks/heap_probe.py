"""Where a long ``aura run`` grows its native heap: glibc's malloc statistics after every episode.

RSS alone cannot tell a leak from fragmentation. This runs ``aura run`` in-process (the same argv) and,
after each episode, records glibc's ``mallinfo2()`` (all arenas: ``arena`` = bytes obtained with brk / arena
mmaps, ``uordblks`` = bytes in use, ``fordblks`` = free bytes inside the arenas, ``keepcost`` = the
trimmable top chunk, ``hblkhd`` = bytes in mmap'd chunks), the resident ``[heap]`` of /proc/self/smaps and
VmRSS (and its range over the episode, sampled every ``--sample-s``), as one JSON line per episode:

* ``uordblks`` grows with ``arena``: something keeps allocations alive (a leak; heaptrack names it);
* ``fordblks`` grows with ``arena``: free holes the allocator cannot reuse (fragmentation).

    .venv/bin/python benchmarks/heap_probe.py --jsonl runs/heap/probe.jsonl -- \\
        --model runs/demo/step.onnx --env libero:6 --episodes 12 --max-steps 520 --out runs/heap/run \\
        --backbone libero_vla_onnx --backbone-arg model=runs/demo/backbone.onnx --backbone-arg threads=1

``--malloc-info`` also writes glibc's ``malloc_info`` XML (free chunks by size) after every episode.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = _Mallinfo2


def mallinfo2() -> dict[str, int]:
    """glibc's ``mallinfo2()`` as a dict (glibc >= 2.33)."""
    info = _LIBC.mallinfo2()
    return {name: int(getattr(info, name)) for name, _ in _Mallinfo2._fields_}


def heap_rss() -> dict[str, int]:
    """Resident bytes of ``[heap]`` (the main arena's brk) and the process's VmRSS."""
    out = {"heap_rss": 0, "vm_rss": 0}
    key = None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:
                key = head[5] if len(head) > 5 else ""
            elif head and head[0] == "Rss:" and key == "[heap]":
                out["heap_rss"] += int(head[1]) * 1024
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["vm_rss"] = int(line.split()[1]) * 1024
    return out


def malloc_info_xml() -> str:
    """glibc's ``malloc_info(0, f)`` output (free chunks per arena by size class)."""
    libc = _LIBC
    libc.open_memstream.restype = ctypes.c_void_p
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    text = ctypes.string_at(buf, size.value).decode()
    libc.free(buf)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jsonl", required=True, help="one JSON line per episode goes here")
    parser.add_argument("--malloc-info", action="store_true", help="also malloc_info XML per episode")
    parser.add_argument("--sample-s", type=float, default=0.5, help="VmRSS sampling period (seconds)")
    parser.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then aura run's arguments")
    args = parser.parse_args(argv)
    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args

    from cli.run import add_arguments, run
    from deploy.runtime.loop import ControlLoop

    out = Path(args.jsonl)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.open("w")
    episode = ControlLoop.episode
    t0 = time.perf_counter()
    window = {"min": None, "max": None}
    stop = threading.Event()

    def sample() -> None:  # VmRSS range within each episode (a frame's transient memory shows here)
        while not stop.wait(args.sample_s):
            rss = heap_rss()["vm_rss"]
            window["min"] = rss if window["min"] is None else min(window["min"], rss)
            window["max"] = rss if window["max"] is None else max(window["max"], rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    def probed(self, index, *a, **kw):
        summary = episode(self, index, *a, **kw)
        row = {
            "episode": index,
            "steps": self.total_steps,
            "ep_steps": summary["steps"],
            "success": summary.get("success"),
            "seconds": round(time.perf_counter() - t0, 1),
            **heap_rss(),
            "vm_rss_min": window["min"],
            "vm_rss_max": window["max"],
            **mallinfo2(),
        }
        window["min"] = window["max"] = None
        log.write(json.dumps(row) + "\n")
        log.flush()
        if args.malloc_info:
            (out.parent / f"malloc_info_{index:04d}.xml").write_text(malloc_info_xml())
        return summary

    ControlLoop.episode = probed
    parser = argparse.ArgumentParser(prog="aura run")
    add_arguments(parser)
    try:
        return run(parser.parse_args(run_args))
    finally:
        stop.set()
        ControlLoop.episode = episode
        log.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
