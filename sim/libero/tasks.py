"""libero_10's task table without torch: instructions, BDDL files and the 50 fixed init states per task.

LIBERO's own ``benchmark`` module imports torch and keeps the init states as torch pickles, so a process that
reads them that way is not torch-free. ``aura sim install`` (:func:`write_table`, once, with torch) copies
them into the LIBERO config folder:

* ``libero_10_tasks.json``: per task its language instruction, problem folder, BDDL file name, and the
  sha256 of LIBERO's init-state file it was copied from;
* ``libero_10_init_states.npz``: ``task{t}`` -> float64 ``[50, S]`` flattened MuJoCo states (no pickle).

:func:`task_spec` reads them with numpy and json only, so ``LiberoEnv`` (and ``aura run --env libero:...``)
runs in a process that never imports torch. A missing table is written on first use (that one call imports
torch); a table whose source files changed since is rewritten by ``aura sim install``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from sim.libero.install import config_dir, ensure_libero

SUITE = "libero_10"
N_TASKS = 10
TABLE = f"{SUITE}_tasks.json"
STATES = f"{SUITE}_init_states.npz"


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_table(cfg: Path | None = None, log=print) -> Path:
    """Copy the task table and init states out of LIBERO's benchmark (imports torch); returns the JSON
    path."""
    cfg = cfg or config_dir()
    ensure_libero()
    from libero.libero import benchmark, get_libero_path

    suite = benchmark.get_benchmark_dict()[SUITE]()
    tasks, states = [], {}
    for t in range(N_TASKS):
        task = suite.get_task(t)
        init_path = os.path.join(get_libero_path("init_states"), task.problem_folder, task.init_states_file)
        states[f"task{t}"] = np.asarray(suite.get_task_init_states(t), dtype=np.float64)
        tasks.append(
            dict(
                task=t,
                language=task.language,
                problem_folder=task.problem_folder,
                bddl_file=task.bddl_file,
                init_states_file=task.init_states_file,
                init_states_sha256=_sha256(init_path),
                init_states=len(states[f"task{t}"]),
            )
        )
    cfg.mkdir(parents=True, exist_ok=True)
    tmp = cfg / (STATES + ".tmp.npz")
    np.savez(tmp, **states)
    os.replace(tmp, cfg / STATES)
    doc = dict(suite=SUITE, tasks=tasks, states_sha256=_sha256(str(cfg / STATES)))
    (cfg / (TABLE + ".tmp")).write_text(json.dumps(doc, indent=1))
    os.replace(cfg / (TABLE + ".tmp"), cfg / TABLE)
    log(f"[sim install] task table: {cfg / TABLE} (+ {STATES}, {N_TASKS} tasks x 50 init states)")
    return cfg / TABLE


def table_current(cfg: Path | None = None) -> bool:
    """Whether the copied table matches LIBERO's init-state files (hashing them; no torch)."""
    cfg = cfg or config_dir()
    try:
        doc = json.loads((cfg / TABLE).read_text())
        if doc.get("states_sha256") != _sha256(str(cfg / STATES)):
            return False
        ensure_libero()
        from libero.libero import get_libero_path

        root = get_libero_path("init_states")
        return all(
            _sha256(os.path.join(root, t["problem_folder"], t["init_states_file"])) == t["init_states_sha256"]
            for t in doc["tasks"]
        )
    except (OSError, ValueError, KeyError):
        return False


def task_spec(task_id: int) -> tuple[str, str, np.ndarray]:
    """``(language instruction, bddl path, init states [50, D])`` of libero_10 task ``task_id`` (no torch)."""
    if isinstance(task_id, bool) or not isinstance(task_id, (int, np.integer)) or not 0 <= task_id < N_TASKS:
        raise ValueError(f"task_id must be an int in [0, {N_TASKS}), got {task_id!r}")
    ensure_libero()
    cfg = config_dir()
    if not (cfg / TABLE).is_file() or not (cfg / STATES).is_file():
        write_table(cfg)
    try:
        doc = json.loads((cfg / TABLE).read_text())
        task = doc["tasks"][int(task_id)]
        with np.load(cfg / STATES, allow_pickle=False) as z:
            states = z[f"task{int(task_id)}"]
    except (OSError, ValueError, KeyError, IndexError) as err:
        raise ValueError(
            f"{cfg / TABLE}: unreadable task table ({err}); run `aura sim install --force`"
        ) from None
    from libero.libero import get_libero_path

    bddl = os.path.join(get_libero_path("bddl_files"), task["problem_folder"], task["bddl_file"])
    return task["language"], bddl, states
