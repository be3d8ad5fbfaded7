"""The GPU-machine half of the libero_10 bundle, run by scripts/libero_gpu.sh: `stage` checks and keeps
what this call carried (parts, wheels, GL debs) in a persistent --prefix; `setup` unpacks, verifies every
file against the manifest, links the assets and writes LIBERO's config.

Exit 0: done; 3: something is still missing (named, send it in the next call); 2: something is corrupt or
failed (one line naming it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sim.libero.bundle import INDEX
from sim.libero.bundle_setup import setup, stage


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("step", choices=("stage", "setup"), help="stage what arrived, or unpack and configure")
    p.add_argument("--prefix", type=Path, required=True, help="persistent folder for parts and the tree")
    p.add_argument("--index", type=Path, help="the carried index.json (stage; default: the staged copy)")
    p.add_argument("--wheel-dir", type=Path, help="folder of the carried wheels (stage)")
    p.add_argument("--gl-dir", type=Path, help="folder of the carried GL debs (stage; left out: no debs)")


def run(a: argparse.Namespace) -> int:
    if a.step == "setup":
        setup(a.prefix)
        return 0
    index = a.index if a.index and a.index.is_file() else a.prefix / INDEX
    if not index.is_file():
        raise ValueError(
            f"--index: no bundle index: neither {a.index} nor {a.prefix / INDEX} exists; carry it"
        )
    missing = stage(index, a.prefix, a.wheel_dir, a.gl_dir)
    if missing:
        print(f"[bundle] still missing: {'; '.join(missing)}")
        return 3
    return 0
