"""Camera-free LIBERO-Long environments for the expert's own rollouts.

LIBERO's run-time set-up (a config written without its ``input()`` prompt, the asset path seeded so it never
tries a hub, the GL backend) is ``sim.libero.install.ensure_libero``, shared with ``sim.libero.env``.
"""

from __future__ import annotations

import os

import numpy as np

from sim.libero.install import ensure_libero

SUITE = "libero_10"
N_TASKS = 10
WAIT_STEPS = 10
MAX_STEPS = 520


def task_info(task_id: int):
    """(task object, bddl path, init states array) of libero_10 task ``task_id``."""
    if not isinstance(task_id, (int, np.integer)) or not 0 <= int(task_id) < N_TASKS:
        raise ValueError(f"task_id must be an int in [0, {N_TASKS}), got {task_id!r}")
    ensure_libero()
    from libero.libero import benchmark, get_libero_path

    suite = benchmark.get_benchmark_dict()[SUITE]()
    task = suite.get_task(int(task_id))
    bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    return task, bddl, suite.get_task_init_states(int(task_id))


def make_env(task_id: int, *, cameras: bool = False, seed: int = 0):
    """LIBERO env for ``task_id``: OffScreenRenderEnv with cameras, else its camera-free base ControlEnv."""
    task, bddl, init_states = task_info(task_id)
    from libero.libero.envs import OffScreenRenderEnv
    from libero.libero.envs.env_wrapper import ControlEnv

    kwargs = dict(bddl_file_name=bddl, camera_heights=128, camera_widths=128)
    if cameras:
        env = OffScreenRenderEnv(**kwargs)
    else:
        # OffScreenRenderEnv forces an offscreen GL context; its base class has the same API
        # and can skip it entirely.
        kwargs.update(has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False)
        env = ControlEnv(**kwargs)
    env.seed(seed)
    return env, task, init_states


def reset_to(env, init_states, index: int, wait: int = WAIT_STEPS):
    """Reset, load init state ``index`` and run the no-op wait; return the obs after the wait."""
    if not 0 <= index < len(init_states):
        raise ValueError(f"init state index must be in [0, {len(init_states)}), got {index}")
    env.reset()
    obs = env.set_init_state(init_states[index])
    noop = np.zeros(7)
    noop[-1] = -1.0
    for _ in range(wait):
        obs, _, _, _ = env.step(noop)
    return obs
