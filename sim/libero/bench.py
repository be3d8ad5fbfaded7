"""Steady-state LIBERO env throughput with N parallel workers, and where a step's time goes.

    aura bench libero --workers 2 --steps 60 --image-size 128 [--render fast] [--lp-threads N]

Each worker builds a ``LiberoEnv`` (task ``tasks[i % len(tasks)]``), resets, waits at a barrier so
all workers step at the same time, then runs ``--steps`` steps camera-free and ``--steps`` steps
with the cameras on (same env, ``set_cameras``), driven by the scripted expert (or no-ops). Printed:
aggregate env-steps/s of each phase (steps of all workers / wall time of the slowest), per-step ms,
and the render share. ``--render`` picks the render quality (``faithful``: LIBERO's pixels;
``fast``: decimated render meshes, see ``sim.libero.render``); ``--lp-threads`` sets llvmpipe's
``LP_NUM_THREADS`` in the workers (default: ``ensure_libero``'s 0); ``--no-cull`` measures
robosuite's own renderer (the baseline before culling). Results also go to ``--json``.
Env creation and resets are excluded here; the ``aura eval libero`` summary reports end-to-end
throughput including them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np


def _worker(i, args, barrier, queue):
    if args.lp_threads is not None:  # before Mesa starts in this process
        os.environ["LP_NUM_THREADS"] = str(args.lp_threads)
    from policies.factory import make_backbone
    from sim.libero.env import LiberoEnv

    task = args.tasks[i % len(args.tasks)]
    cams = tuple(c for c in args.cameras.split(",") if c)
    env = LiberoEnv(task, image_size=args.image_size, cameras=cams, render_quality=args.render)
    backbone = make_backbone(args.backbone, {"d_model": 8} if args.backbone.startswith("libero_") else {})
    if args.no_cull and env.renderer is not None:
        env.renderer.uninstall()  # robosuite's own renderer: the pre-culling baseline
    out = {"worker": i, "task": task, "render_info": env.render_info}
    for phase, on in (("camera_free", False), ("cameras", True)):
        env.set_cameras(on)
        obs, _ = env.reset(options={"init_state": i})
        backbone.reset()
        barrier.wait()
        t0, c0, n, t_env = time.perf_counter(), time.process_time(), 0, 0.0
        while n < args.steps:
            _, a = backbone(env.observation(obs, privileged=backbone.spec.privileged))
            ts = time.perf_counter()
            obs, _, term, trunc, _ = env.step(a)
            t_env += time.perf_counter() - ts
            n += 1
            if term or trunc:
                obs, _ = env.reset(options={"init_state": i})
                backbone.reset()
        cpu_ms = 1000 * (time.process_time() - c0) / n  # all threads of this worker (llvmpipe's too)
        out[phase] = dict(
            steps=n, wall_s=time.perf_counter() - t0, env_step_ms=1000 * t_env / n, cpu_ms=cpu_ms
        )
        barrier.wait()
    env.close()
    queue.put(out)


def run_throughput(args) -> dict:
    """Start ``args.workers`` spawned workers (each: one env, ``args.steps`` steps per phase), print the
    per-phase throughput and the render share, return the summary (``args``: see ``aura bench libero``)."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(args.workers), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(i, args, barrier, queue)) for i in range(args.workers)]
    for pr in procs:
        pr.start()
    results = [queue.get() for _ in procs]
    for pr in procs:
        pr.join()
    summary = dict(workers=args.workers, image_size=args.image_size, cameras=args.cameras, render=args.render)
    summary["culling"] = not args.no_cull
    summary["lp_num_threads"] = results[0]["render_info"]["lp_num_threads"]
    summary.update(cpus=os.cpu_count(), load_avg_1m=os.getloadavg()[0], per_worker=results)
    for phase in ("camera_free", "cameras"):
        steps = sum(r[phase]["steps"] for r in results)
        wall = max(r[phase]["wall_s"] for r in results)
        ms = float(np.mean([r[phase]["env_step_ms"] for r in results]))
        cpu = float(np.mean([r[phase]["cpu_ms"] for r in results]))
        # What the same workers would do with a core each and nothing else running: a contention-free
        # estimate from CPU time per step (loop included), since the wall clock counts other users.
        est = min(args.workers, os.cpu_count() or 1) * 1000 / cpu
        summary[phase] = dict(
            env_steps_per_s=steps / wall, env_step_ms=ms, cpu_ms_per_step=cpu, uncontended_est=est
        )
        print(
            f"{phase:>12}: {steps / wall:6.1f} env-steps/s, {args.workers} workers ({ms:.0f} ms/env.step; "
            f"{cpu:.0f} ms CPU/loop step -> ~{est:.0f} env-steps/s on {args.workers} idle cores)"
        )
    cf, cam = summary["camera_free"]["env_step_ms"], summary["cameras"]["env_step_ms"]
    print(
        f"render share of a step with cameras [{args.cameras}] at {args.image_size} px, "
        f"render {args.render}{' (no culling)' if args.no_cull else ''}, "
        f"LP_NUM_THREADS={summary['lp_num_threads']}: {1 - cf / cam:.0%}"
    )
    print(f"(load average during the run: {summary['load_avg_1m']:.1f} on {os.cpu_count()} CPUs)")
    return summary
