"""LIBERO's task table without torch, task names across suites, and groups of tasks that share a scene.

Task ids. Records, file names (``task{id}_...``) and seeds (placements, write schedules) need one int per
task, so a task of suite ``S`` with LIBERO's index ``i`` in that suite has the id ``SUITES[S] + i``:
libero_10 keeps 0-9 (every existing result, test and command means these), LIBERO-90 is 100-189. People
name tasks the way LIBERO does, suite-qualified:
``libero_90:LIVING_ROOM_SCENE2_pick_up_the_butter_and_put_it_in_the_basket`` (the BDDL file's stem) or
``libero_90:51`` (the index in the suite); a bare ``N`` or ``N-M`` is an id, and a group name
(:data:`GROUPS`) stands for its tasks. :func:`resolve_task` / :func:`parse_tasks` are the one
parser every command uses (``--tasks``, ``--env libero:TASK``, ``LiberoEnv(task)``).

Groups. The transient-instruction variant (issue 13) needs tasks whose scene does not reveal the goal:
:class:`TaskGroup` lists tasks of one scene whose BDDL files differ only in the goal and the instruction
(same objects, fixtures and placement regions, so the same assets and the same layout distribution).

Table. LIBERO's own ``benchmark`` module imports torch and keeps the init states as torch pickles, so a
process that reads them that way is not torch-free. ``aura sim install`` (:func:`write_table`, once, with
torch) copies every task of :data:`SUITES` into the LIBERO config folder:

* ``libero_tasks.json``: per task its id, suite, index, name, language instruction, problem folder, BDDL
  file name, and the sha256 of LIBERO's init-state file it was copied from;
* ``libero_init_states.npz``: ``task{id}`` -> float64 ``[50, S]`` flattened MuJoCo states (no pickle).

:func:`task_spec` reads them with numpy and json only, so ``LiberoEnv`` (and ``aura run --env libero:...``)
runs in a process that never imports torch. A missing table, or one of an older format, is written on first
use (that one call imports torch); a table whose source files changed since is rewritten by
``aura sim install``. Writing is safe from many processes at once (a pool of env workers on a fresh
machine all reach the first use together): an exclusive ``flock`` on ``libero_tasks.json.lock`` lets one
write, each file goes in whole (temp file, fsync, rename), and a process that waited for the lock reads the
table the first one wrote instead of writing it again. The 50 fixed init states of every task are its
evaluation set, never training data.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.libero.install import config_dir, ensure_libero

SUITE = "libero_10"  # the default suite: a bare task id N < N_TASKS is libero_10's task N
N_TASKS = 10
SUITES = {"libero_10": 0, "libero_90": 100}  # suite -> id of its task 0 (ids are first + LIBERO's index)
FORMAT = 2  # 1: libero_10 only, tasks listed by position (libero_10_tasks.json)
TABLE = "libero_tasks.json"
STATES = "libero_init_states.npz"


@dataclass(frozen=True)
class TaskGroup:
    """Tasks of one scene that differ only in their goal (and instruction): with the instruction hidden, a
    policy cannot tell them apart from the scene. ``chance`` is the within-group share a goal-blind policy
    gets by committing to one task's goal, 1 / len(tasks); one that fills the basket with several objects
    can do better (docs/libero.md), since LIBERO's goal does not forbid extra objects."""

    name: str
    suite: str
    scene: str
    tasks: tuple[str, ...]  # task names (BDDL stems) within ``suite``
    why: str
    # other tasks (ids) whose BDDL scene is identical too (same objects, fixtures, regions; a test checks
    # it) but whose goals overlap the group's: not in the group, but their init states are evaluation
    # layouts of the same scene (``scene_tasks``)
    same_scene: tuple[int, ...] = ()

    @property
    def chance(self) -> float:
        return 1.0 / len(self.tasks)

    def names(self) -> list[str]:
        return [f"{self.suite}:{t}" for t in self.tasks]


_SCENE2 = "LIVING_ROOM_SCENE2_pick_up_the_{}_and_put_it_in_the_basket"
GROUPS = {
    "living_room_scene2": TaskGroup(
        name="living_room_scene2",
        suite="libero_90",
        scene="LIVING_ROOM_SCENE2",
        tasks=tuple(
            _SCENE2.format(o) for o in ("alphabet_soup", "butter", "milk", "orange_juice", "tomato_sauce")
        ),
        why="libero_10 tasks 0 and 1's scene (basket, alphabet soup, cream cheese, tomato sauce, ketchup, "
        "orange juice, milk, butter); each task puts one object in the basket. Tasks 0 and 1 are left out: "
        "their two-object goals overlap these (task 0's success is also the soup's and the sauce's).",
        same_scene=(0, 1),
    ),
}


def scene_tasks(task) -> list[int]:
    """Ids of every task whose BDDL scene is identical to ``task``'s, itself included (a group's tasks and
    its ``same_scene``; else just ``task``). Their fixed init states are all evaluation layouts of one
    scene, so a training layout of any of them is checked against all of them
    (``LiberoEnv.nearest_scene_init_state``)."""
    t = resolve_task(task)
    for g in GROUPS.values():
        ids = {resolve_task(n) for n in g.names()} | set(g.same_scene)
        if t in ids:
            return sorted(ids)
    return [t]


TASKS_HELP = (
    f"libero_10 ids (0,2,5-9), SUITE:NAME or SUITE:INDEX (libero_90:...), or a group: {', '.join(GROUPS)}"
)


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@contextmanager
def _locked(path: Path):
    """Hold an exclusive ``flock`` on ``path`` (created if missing) while the block runs."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a")
    except OSError as err:
        raise ValueError(
            f"{path}: cannot write LIBERO's task table here ({err.strerror}); set LIBERO_CONFIG_PATH to a "
            "writable folder and run `aura sim install`"
        ) from None
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


def _usable_doc(cfg: Path) -> dict | None:
    """The copied table if it has this format and these suites and an init-state file lies next to it (no
    hashing); None otherwise."""
    try:
        doc = json.loads((cfg / TABLE).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(doc, dict) and doc.get("format") == FORMAT and doc.get("suites") == SUITES
    return doc if ok and (cfg / STATES).is_file() else None


def write_table(cfg: Path | None = None, log=print, force: bool = True) -> Path:
    """Copy the task table and init states of every suite in :data:`SUITES` out of LIBERO's benchmark
    (imports torch); returns the JSON path. Under the table's lock (module docstring); ``force=False``
    leaves a usable table that another process wrote while this one waited."""
    from deploy.runtime.journal import replace_file

    cfg = cfg or config_dir()
    with _locked(cfg / (TABLE + ".lock")):
        if not force and _usable_doc(cfg) is not None:
            _CACHE.clear()
            return cfg / TABLE
        tasks, states = _collect()
        buf = io.BytesIO()
        np.savez(buf, **states)
        payload = buf.getvalue()
        replace_file(cfg / STATES, payload)  # fsynced: these bytes are the file's
        sha = hashlib.sha256(payload).hexdigest()
        doc = dict(format=FORMAT, suites=SUITES, tasks=tasks, states_sha256=sha)
        replace_file(cfg / TABLE, json.dumps(doc, indent=1).encode())
    _CACHE.clear()
    log(f"[sim install] task table: {cfg / TABLE} (+ {STATES}, {len(tasks)} tasks of {', '.join(SUITES)})")
    return cfg / TABLE


def _collect() -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every task of :data:`SUITES` from LIBERO's benchmark: the table's entries and ``task{id}`` -> init
    states."""
    ensure_libero()
    from libero.libero import benchmark, get_libero_path

    tasks, states = [], {}
    for suite_name, first in SUITES.items():
        suite = benchmark.get_benchmark_dict()[suite_name]()
        for i in range(suite.n_tasks):
            task, tid = suite.get_task(i), first + i
            init_path = os.path.join(
                get_libero_path("init_states"), task.problem_folder, task.init_states_file
            )
            states[f"task{tid}"] = np.asarray(suite.get_task_init_states(i), dtype=np.float64)
            tasks.append(
                dict(
                    task=tid,
                    suite=suite_name,
                    index=i,
                    name=task.name,
                    language=task.language,
                    problem_folder=task.problem_folder,
                    bddl_file=task.bddl_file,
                    init_states_file=task.init_states_file,
                    init_states_sha256=_sha256(init_path),
                    init_states=len(states[f"task{tid}"]),
                )
            )
    return tasks, states


def table_current(cfg: Path | None = None) -> bool:
    """Whether the copied table has this format and suites and matches LIBERO's init-state files (hashing
    them; no torch)."""
    cfg = cfg or config_dir()
    doc = _usable_doc(cfg)
    if doc is None:
        return False
    try:
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


_CACHE: dict = {}


def _table() -> dict[int, dict]:
    """id -> task entry of the copied table (written first if missing or of an older format)."""
    ensure_libero()
    cfg = config_dir()
    if "tasks" in _CACHE and _CACHE.get("cfg") == cfg:
        return _CACHE["tasks"]
    doc = _usable_doc(cfg)
    if doc is None:
        write_table(cfg, force=False)  # many workers may get here at once: one writes, the rest read it
        doc = _usable_doc(cfg) or {}  # {}: the KeyError below names the table
    try:
        tasks = {int(t["task"]): t for t in doc["tasks"]}
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{cfg / TABLE}: unreadable task table ({err}); run `aura sim install --force`"
        ) from None
    _CACHE.update(cfg=cfg, tasks=tasks)
    return tasks


def _usage(option: str, problem: str, groups: bool = False) -> str:
    ranges = ", ".join(f"{s} from {f}" for s, f in SUITES.items())
    return (
        f"{option}: {problem}; name a task as N (libero_10's task, 0-{N_TASKS - 1}; other suites' ids "
        f"are first + index, {ranges}), SUITE:NAME or SUITE:INDEX"
        + (f", or a group ({', '.join(GROUPS)})" if groups else "")
    )


def resolve_task(task, option: str = "task_id", groups: bool = False) -> int:
    """The id of ``task``: an id (int or digits), ``SUITE:NAME`` or ``SUITE:INDEX``; ValueError naming
    ``option`` otherwise (``groups``: the message also offers group names, as ``--tasks`` takes them).
    libero_10 ids need no table (and so no LIBERO); the rest are looked up in it."""
    if isinstance(task, bool) or not isinstance(task, (int, np.integer, str)):
        raise ValueError(_usage(option, f"got {task!r}", groups))
    text = str(task).strip()
    if text.isdigit():
        tid = int(text)
        if 0 <= tid < N_TASKS:
            return tid
        if any(first <= tid < first + 100 for first in SUITES.values() if first) and tid in _table():
            return tid
        raise ValueError(_usage(option, f"there is no task {tid}", groups))
    suite, sep, rest = text.partition(":")
    if not sep or suite not in SUITES or not rest:
        raise ValueError(_usage(option, f"got {task!r}", groups))
    matches = [
        tid
        for tid, t in _table().items()
        if t["suite"] == suite and (t["name"] == rest or (rest.isdigit() and t["index"] == int(rest)))
    ]
    if not matches:
        raise ValueError(_usage(option, f"{suite} has no task {rest!r}", groups))
    return matches[0]


def parse_tasks(text: str, option: str = "--tasks") -> list[int]:
    """``"0-9,libero_90:NAME,living_room_scene2"`` -> sorted distinct task ids (ranges ``N-M`` are of ids,
    every one of them a task); ValueError naming ``option``."""
    out: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            raise ValueError(_usage(option, f"an empty item in {text!r}", True))
        if part in GROUPS:
            out.extend(resolve_task(n, option, True) for n in GROUPS[part].names())
            continue
        a, dash, b = part.partition("-")
        if dash and a.strip().isdigit() and b.strip().isdigit():
            lo, hi = int(a), int(b)
            if lo > hi:
                raise ValueError(_usage(option, f"empty range {part!r}", True))
            out.extend(resolve_task(t, option, True) for t in range(lo, hi + 1))
        else:
            out.append(resolve_task(part, option, True))
    return sorted(set(out))


def task_name(task) -> str:
    """``SUITE:NAME`` of a task (id or name), e.g. ``libero_10:LIVING_ROOM_SCENE2_put_both_...``."""
    t = _table()[resolve_task(task)]
    return f"{t['suite']}:{t['name']}"


def group_of(task) -> TaskGroup | None:
    """The group a task belongs to, if any."""
    name = task_name(task)
    return next((g for g in GROUPS.values() if name in g.names()), None)


def task_spec(task) -> tuple[str, str, np.ndarray]:
    """``(language instruction, bddl path, init states [50, D])`` of a task (id or name; no torch)."""
    tid = resolve_task(task)
    cfg = config_dir()
    try:
        entry = _table()[tid]
        with np.load(cfg / STATES, allow_pickle=False) as z:
            states = z[f"task{tid}"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(
            f"{cfg / TABLE}: unreadable task table ({err}); run `aura sim install --force`"
        ) from None
    from libero.libero import get_libero_path

    bddl = os.path.join(get_libero_path("bddl_files"), entry["problem_folder"], entry["bddl_file"])
    return entry["language"], bddl, states
