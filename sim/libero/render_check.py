"""How much each rendering shortcut changes LIBERO's images, measured on the same states.

    aura sim render-check --tasks 0-9 --steps 10 --image-size 128 --json out.json

For each task one env (faithful quality) is reset to init state 0 and driven by seeded random
actions; both cameras are rendered four ways from the same MuJoCo states:

* ``reference`` - robosuite's own renderer (no culling, MuJoCo's display lists): LIBERO's pixels;
* ``culled`` - :class:`sim.libero.render.SceneRenderer` with ``quality="faithful"`` (must be
  bit-identical: ``max_abs`` 0);
* ``fast`` - the same with decimated render meshes;
* ``fastest`` - ``fast`` without multisampling.

Per task and camera it prints the mean absolute difference in 8-bit levels, the largest one and the
PSNR ``10 log10(255^2 / MSE)`` against ``reference`` (inf when identical). Physics is not touched by
any of them: the positions of every step are recorded first, then each mode renders them all.
"""

from __future__ import annotations

import numpy as np

from sim.libero.env import CAMERAS, LiberoEnv


def image_diff(ref: np.ndarray, img: np.ndarray) -> dict[str, float]:
    """``mad`` = mean |ref - img|, ``max_abs``, ``psnr`` = 10 log10(255^2 / mean (ref - img)^2) in dB."""
    d = ref.astype(np.float64) - img.astype(np.float64)
    mse = float(np.mean(d * d))
    psnr = float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))
    return dict(mad=float(np.mean(np.abs(d))), max_abs=float(np.max(np.abs(d))), psnr=psnr)


def check_task(task: int, steps: int, image_size: int, seed: int = 0) -> dict:
    from sim.libero.render import SceneRenderer

    env = LiberoEnv(task, image_size=image_size)
    try:
        env.reset()
        sim, faithful = env.raw_env.env.sim, env.renderer
        rng = np.random.default_rng(seed)
        qpos = []
        for _ in range(steps):
            env.step(rng.uniform(-0.5, 0.5, 7))
            qpos.append(sim.data.qpos.copy())
        faithful.uninstall()
        renderers = {"culled": faithful}
        for q in ("fast", "fastest"):
            renderers[q] = SceneRenderer(faithful.ctx, q)
            renderers[q].uninstall()
        frames: dict[str, dict[str, list]] = {}  # mode -> camera -> frame per state
        for mode in ("reference", *renderers):
            if mode in renderers:
                renderers[mode].install()
            for q in qpos:  # images depend on positions only: set them, recompute poses, render
                sim.data.qpos[:] = q
                sim.forward()
                for cam in (CAMERAS[c] for c in env.cameras):
                    frames.setdefault(mode, {}).setdefault(cam, []).append(
                        sim.render(image_size, image_size, camera_name=cam)
                    )
            if mode in renderers:
                renderers[mode].uninstall()
        faces = list(renderers["fast"].faces())
        faithful.install()
    finally:
        env.close()
    summary = {}
    for mode in renderers:
        for cam, imgs in frames[mode].items():
            diffs = [image_diff(r, i) for r, i in zip(frames["reference"][cam], imgs)]
            summary[f"{cam}/{mode}"] = dict(
                mad=float(np.mean([d["mad"] for d in diffs])),
                max_abs=float(np.max([d["max_abs"] for d in diffs])),
                psnr_min=float(np.min([d["psnr"] for d in diffs])),
                psnr_mean=float(np.mean([d["psnr"] for d in diffs])),
            )
    return dict(task=task, steps=steps, image_size=image_size, faces=faces, diff=summary)
