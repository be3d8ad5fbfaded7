"""How much each rendering shortcut changes LIBERO's images, measured on the same states.

    python -m sim.libero.render_check --tasks 0-9 --steps 10 --image-size 128 --json out.json

For each task one env (faithful quality) is reset to init state 0 and driven by seeded random
actions. At every step both cameras are rendered three ways from the same MuJoCo state:

* ``reference`` - robosuite's own renderer (no culling, MuJoCo's display lists): LIBERO's pixels;
* ``culled`` - :class:`sim.libero.render.SceneRenderer` with ``quality="faithful"`` (must be
  bit-identical: ``max_abs`` 0);
* ``fast`` - the same with decimated render meshes.

Per task and camera it prints the mean absolute difference in 8-bit levels, the largest one and the
PSNR ``10 log10(255^2 / MSE)`` against ``reference`` (inf when identical). Physics is not touched by
any of them (the state is set once per step, then rendered three times).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sim.libero.env import CAMERAS, LiberoEnv


def image_diff(ref: np.ndarray, img: np.ndarray) -> dict[str, float]:
    """``mad`` = mean |ref - img|, ``max_abs``, ``psnr`` = 10 log10(255^2 / mean (ref - img)^2) in dB."""
    d = ref.astype(np.float64) - img.astype(np.float64)
    mse = float(np.mean(d * d))
    psnr = float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))
    return dict(mad=float(np.mean(np.abs(d))), max_abs=float(np.max(np.abs(d))), psnr=psnr)


def _renders(env: LiberoEnv, faithful, fast) -> dict[str, dict[str, np.ndarray]]:
    sim, size, out = env.raw_env.env.sim, env.image_size, {}
    for cam in (CAMERAS[c] for c in env.cameras):
        frames = {}
        for mode, renderer in (("reference", None), ("culled", faithful), ("fast", fast)):
            if renderer is not None:
                renderer.install()
            frames[mode] = sim.render(size, size, camera_name=cam)
            if renderer is not None:
                renderer.uninstall()
        out[cam] = frames
    return out


def check_task(task: int, steps: int, image_size: int, seed: int = 0) -> dict:
    from sim.libero.render import SceneRenderer

    env = LiberoEnv(task, image_size=image_size)
    try:
        env.reset()
        faithful = env.renderer
        faithful.uninstall()
        fast = SceneRenderer(faithful.ctx, "fast")  # builds the decimated meshes once
        fast.uninstall()
        rng = np.random.default_rng(seed)
        rows: dict[str, dict[str, list]] = {}
        for _ in range(steps):
            env.step(rng.uniform(-0.5, 0.5, 7))
            for cam, frames in _renders(env, faithful, fast).items():
                for mode in ("culled", "fast"):
                    rows.setdefault(cam, {}).setdefault(mode, []).append(
                        image_diff(frames["reference"], frames[mode])
                    )
        faces = list(fast.faces())
        faithful.install()
    finally:
        env.close()
    summary = {}
    for cam, modes in rows.items():
        for mode, diffs in modes.items():
            summary[f"{cam}/{mode}"] = dict(
                mad=float(np.mean([d["mad"] for d in diffs])),
                max_abs=float(np.max([d["max_abs"] for d in diffs])),
                psnr_min=float(np.min([d["psnr"] for d in diffs])),
                psnr_mean=float(np.mean([d["psnr"] for d in diffs])),
            )
    return dict(task=task, steps=steps, image_size=image_size, faces=faces, diff=summary)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="0-9", help="e.g. 0-9 or 0,3,8")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if "-" in args.tasks:
        lo, hi = (int(x) for x in args.tasks.split("-"))
        tasks = list(range(lo, hi + 1))
    else:
        tasks = [int(t) for t in args.tasks.split(",")]
    results = []
    for t in tasks:
        r = check_task(t, args.steps, args.image_size)
        results.append(r)
        for key, d in r["diff"].items():
            print(
                f"task {t} {key:>28}: mean |diff| {d['mad']:.2f}, max {d['max_abs']:.0f}, "
                f"PSNR min {d['psnr_min']:.1f} / mean {d['psnr_mean']:.1f} dB; faces {r['faces']}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
