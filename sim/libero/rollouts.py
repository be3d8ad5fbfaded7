"""Closed-loop training data (``aura sim rollouts``): a frozen backbone drives LIBERO-Long on fresh layouts
while the scripted expert, run as a shadow on the same simulator, labels every visited state.

Episode. ``(task, k)`` with placement seed ``s = (placement_base + task * 10_007 + k) mod 2**32``: the scene
is laid out afresh from the task's BDDL regions (``LiberoEnv.reset(options={"placement_seed": s})``), never
from LIBERO's 50 fixed init states (the evaluation set). The default base 2**31 is disjoint from the seeds
``aura sim demos`` uses (``seed * 1_000_003 + task * 10_007 + k``, k < 10_007, for small ``seed``);
``rollouts_io.check_disjoint`` compares with a demos record. At each step t = 0 .. T-1, with o_t the
observation and x_t the simulator state::

    z_t, b_t = backbone(o_t)                 base action b_t (the backbone is reset at episode start)
    e_t      = expert.act(x_t)  or  undefined (shadow, below)
    d_t      = 1 if mixing chose the expert and e_t is defined, else 0
    a_t      = d_t e_t + (1 - d_t) b_t       executed (clipped to [-1, 1] as the env does)
    row t:   features z_t, base_actions b_t, target_actions e_t (NaN where undefined: unsupervised)

Mixing (DAgger's beta): ``beta_mode="episode"`` draws once per episode, u < beta -> the expert executes
every step it is defined; ``"step"`` draws u_t < beta at every step. u ~ U[0, 1) from
``np.random.default_rng([seed, task, k])``, so an episode is reproducible. beta = 0 (default): the backbone
always acts (pure on-policy data); beta = 1: the expert's own episode, and ``target_actions ==
executed_actions`` wherever defined.

Shadow expert. ``ScriptedExpert`` is a generator of skills (``policies.libero_expert.skills``): each ``act``
stores the new observation and advances the plan by exactly one action, and every action is a servo law
evaluated on *that* observation (``servo``: clip(k (p* - p))), toward waypoints a skill fixed when it
started (grasp point, hold pose, carry offset). Its plan is therefore consistent with any actor as long as
``act`` is called exactly once per env step on the real post-step observation, which is what we do
(re-``reset`` would re-run ``settle``, hold-still actions, and forget finished sub-goals). Under another
actor the label e_t is "the expert's action from this state at its current plan phase": a recovery
action back toward its waypoint (DAgger's expert query), while skills still end on their own checks of the
real state (``pick`` re-tries an empty grasp, ``move`` gives up on a stall or its step budget, plans skip
goals that already hold). Where that is no longer defined the target is NaN: after the plan finished
(``expert.finished``: it would only hold its pose, or its plan gave up), after it raised (the generator is
dead: NaN for the rest of the episode, the error recorded), and on a non-finite action (that row only).
The expert's stage (``ScriptedExpert.stage``, the innermost running skill, read after ``act``) is recorded
per step.

Transient instruction (issue 13): with ``instruction_steps=k`` the env hands the backbone the instruction at
steps t < k only and ``""`` after (``LiberoEnv(instruction_steps=k)``, as ``aura eval libero
--instruction-steps k`` does), while the shadow expert, which reads the simulator state, always knows the
goal. The rows are then what a memory arm meets when deployed: a blind policy's own states, labelled with
the goal-directed action; in demos (``aura sim features``) the arm's motion already reveals the goal after
the first steps, which a read-out on z_t can learn without any memory. ``teacher="backbone"`` labels with
the acting backbone's own action under the visible instruction instead of the expert's (``sim.libero.labels``:
never out of phase with the policy; the expert still steps, for its stage, and the timing counts both).

Outputs: one HDF5 file per finished episode (``rollouts_io``), merged into ``OUT/rollouts.safetensors``
(``aura train --data``) and ``OUT/rollouts.json``. With ``images=True`` each file also holds what the
backbone saw (both cameras, proprio) and ``actions`` = e_t, in the demo files' layout, so
``aura train backbone --demos DEMOS OUT/episodes`` trains the backbone itself on the aggregated data
(DAgger for the pixel policy: labels where the policy goes, not only where the expert went). Jobs run
on ``sim.libero.workers`` (one episode per job, retried on a crash, never fatal); a rerun skips episodes
whose file exists.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from sim.libero.env import MAX_STEPS
from sim.libero.labels import TEACHERS, ShadowExpert, VisibleTeacher  # noqa: F401 (re-exported)
from sim.libero.workers import RetryQueue

PLACEMENT_BASE = 2**31
OPTIONAL_PINS = ("images", "instruction_steps", "teacher")  # settings pinned only when set (_pin)
TASK_STRIDE = 10_007  # as sim.libero.recording.placement_seed: k < 10_007 never collides across tasks
BETA_MODES = ("episode", "step")


def rollout_placement_seed(base: int, task: int, k: int) -> int:
    """Placement seed of rollout ``k`` of ``task`` (module docstring)."""
    return (int(base) + int(task) * TASK_STRIDE + int(k)) % 2**32


_CACHE: dict = {}  # per worker process: one env (1.6-2.7 GB each) and one backbone, reused across jobs


def _crash_hook(p: dict) -> None:
    """Test hook ``AURA_ROLLOUTS_CRASH_ONCE=task:k:MODE:MARKER``: exit hard (``exit``) or raise once."""
    for spec in filter(None, os.environ.get("AURA_ROLLOUTS_CRASH_ONCE", "").split(";")):
        task, k, mode, marker = spec.split(":", 3)
        if (int(task), int(k)) == (p["task"], p["k"]) and not os.path.exists(marker):
            Path(marker).touch()
            if mode == "raise":
                raise RuntimeError(f"injected failure ({spec})")
            os._exit(17)


def _env_and_backbone(p: dict):
    from policies.factory import make_backbone
    from sim.libero.env import LiberoEnv

    bkey = (p["backbone"], json.dumps(p["backbone_args"], sort_keys=True))
    if _CACHE.get("backbone_key") != bkey:
        _CACHE["backbone"] = make_backbone(p["backbone"], p["backbone_args"])
        _CACHE["teacher"] = None
        _CACHE["backbone_key"] = bkey
    if p.get("teacher") == "backbone" and _CACHE["teacher"] is None:
        # a second instance, so its chunk queue / ensemble is its own (sim.libero.labels)
        _CACHE["teacher"] = VisibleTeacher(make_backbone(p["backbone"], p["backbone_args"]))
    backbone = _CACHE["backbone"]
    cams = tuple(backbone.spec.cameras)
    k = p.get("instruction_steps")
    ekey = (p["task"], p["image_size"], cams, p["max_steps"], p["render"], k)
    if _CACHE.get("env_key") != ekey:
        if _CACHE.get("env") is not None:
            _CACHE["env"].close()
        _CACHE["env"] = LiberoEnv(
            p["task"],
            image_size=p["image_size"],
            cameras=cams,
            max_steps=p["max_steps"],
            render_quality=p["render"],
            instruction_steps=k,
        )
        _CACHE["env_key"] = ekey
    return _CACHE["env"], backbone


def rollout_episode(
    env, backbone, shadow: ShadowExpert, p: dict, teacher: VisibleTeacher | None = None
) -> dict:
    """One episode (module docstring): per-step arrays and the episode's record. With ``teacher`` the label
    is the teacher's action (sim.libero.labels)."""
    seed, task, k = p["seed"], p["task"], p["k"]
    rng = np.random.default_rng([seed, task, k])
    whole = rng.random() < p["beta"]  # drawn in both modes, so "step" draws do not depend on the mode
    obs, _ = env.reset(seed=seed, options={"placement_seed": p["placement_seed"]})
    backbone.reset()
    if teacher is not None:
        teacher.reset()
    shadow.reset(env.raw_env)
    rows = {
        n: [] for n in ("features", "base_actions", "target_actions", "executed_actions", "expert_executed")
    }
    seen: dict[str, list] = {"image": [], "wrist_image": [], "state": []} if p.get("images") else {}
    stages: list[str] = []
    timing = dict(backbone_s=0.0, expert_s=0.0, env_s=0.0)
    success = False
    while True:
        t0 = time.perf_counter()
        o = env.observation(obs, backbone.spec.privileged)
        z, base = backbone(o)
        for key, frames in seen.items():
            frames.append(np.asarray(o[key]))
        t1 = time.perf_counter()
        target, stage = shadow(env.raw_env, env.raw_obs)  # stepped whoever labels: its stage is recorded
        if teacher is not None:
            target = teacher(o, env.language)
        t2 = time.perf_counter()
        chose = whole if p["beta_mode"] == "episode" else bool(rng.random() < p["beta"])
        drive = chose and target is not None
        base32 = np.asarray(base, dtype=np.float32)
        target32 = np.full(7, np.nan, np.float32) if target is None else target.astype(np.float32)
        # Executed as stored (float32, like the libero_expert backbone's actions in `aura sim demos`), so
        # executed_actions is exactly what the env got and beta = 1 replays the expert's own episode.
        a = np.clip((target32 if drive else base32).astype(np.float64), -1.0, 1.0)
        rows["features"].append(np.asarray(z, dtype=np.float32))
        rows["base_actions"].append(base32)
        rows["target_actions"].append(target32)
        rows["executed_actions"].append(a.astype(np.float32))
        rows["expert_executed"].append(drive)
        stages.append(stage)
        obs, _, success, truncated, _ = env.step(a)
        t3 = time.perf_counter()
        timing["backbone_s"] += t1 - t0
        timing["expert_s"] += t2 - t1
        timing["env_s"] += t3 - t2
        if success or truncated:
            break
    arrays = {n: np.stack(v) for n, v in rows.items()}
    arrays["expert_executed"] = arrays["expert_executed"].astype(np.uint8)
    names = sorted(set(stages))
    arrays["expert_stage"] = np.array([names.index(s) for s in stages], np.int16)
    observed = {key: np.stack(v) for key, v in seen.items()}
    near_task, nearest, dist = env.nearest_scene_init_state(env.layout)
    labelled = np.isfinite(arrays["target_actions"]).all(-1)
    record = dict(
        task=task,
        language=env.language,
        k=k,
        placement_seed=p["placement_seed"],
        seed=seed,
        init_state=int(env.init_state),
        success=bool(success),
        steps=int(env.steps),
        labelled=int(labelled.sum()),
        labelled_fraction=float(labelled.mean()),
        expert_executed_fraction=float(arrays["expert_executed"].mean()),
        expert_error=shadow.error,
        nearest_init_task=near_task,
        nearest_init_state=nearest,
        nearest_init_mm=1000 * dist,
        stage_names=names,
        **timing,
    )
    return dict(arrays=arrays, observed=observed, layout=env.layout.copy(), record=record)


def run_rollout(p: dict) -> dict:
    """Worker job: roll out episode ``(p['task'], p['k'])`` and write its file (resume: reuse it)."""
    from sim.libero.demos import SPLIT_MIN_MM
    from sim.libero.rollouts_io import episode_file, read_episode_record, write_episode

    t0 = time.perf_counter()
    path = episode_file(p["out"], p["task"], p["k"])
    done = read_episode_record(path)
    if done is not None:
        return dict(done, resumed=True)
    _crash_hook(p)
    env, backbone = _env_and_backbone(p)
    if _CACHE.get("shadow_task") != p["task"]:
        _CACHE["shadow"], _CACHE["shadow_task"] = ShadowExpert(p["task"]), p["task"]
    teacher = _CACHE["teacher"] if p.get("teacher") == "backbone" else None
    ep = rollout_episode(env, backbone, _CACHE["shadow"], p, teacher)
    rec = ep["record"]
    if rec["init_state"] >= 0 or rec["nearest_init_mm"] < SPLIT_MIN_MM:
        raise ValueError(
            f"task {p['task']} placement seed {p['placement_seed']}: layout {rec['nearest_init_mm']:.2f} mm "
            f"from fixed init state {rec['nearest_init_state']} of task {rec['nearest_init_task']} (the "
            "evaluation set); not kept"
        )
    rec.update(wall_s=time.perf_counter() - t0, pid=os.getpid(), file=str(path))
    write_episode(path, ep["arrays"], ep["layout"], rec, env.render_info, ep["observed"])
    return dict(rec, resumed=False)


class RolloutScheduler(RetryQueue):
    """One job per (task, k) episode not finished before; a failure is logged and retried ``retries``
    times, then given up (recorded, never fatal)."""

    def __init__(self, episodes: list[tuple[int, int]], base: dict, retries: int, progress=None, log=print):
        from sim.libero.workers import Job

        self.base, self.retries, self.progress, self.log = base, retries, progress, log
        self.queue = [Job((t, k), {}) for t, k in episodes]
        self.results: list[dict] = []
        self.errors: list[dict] = []
        self.failed_for_good: list[tuple[int, int]] = []

    def next_job(self):
        if not self.queue:
            return None
        job = self.queue.pop(0)
        t, k = job.key
        seed = rollout_placement_seed(self.base["placement_base"], t, k)
        job.payload = dict(self.base, task=t, k=k, placement_seed=seed)
        return job

    def finished(self, job, result: dict) -> None:
        self.results.append(result)
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix_str(
                f"task {result['task']} k {result['k']} {'success' if result['success'] else 'fail'} "
                f"{result['steps']} steps {100 * result['labelled_fraction']:.0f}% labelled"
            )

    def failed(self, job, error: str) -> bool:
        t, k = job.key
        line = error.splitlines()[0] if error else "unknown error"
        self.errors.append(dict(task=t, k=k, attempt=job.attempt, error=error))
        self.log(f"[rollouts] task {t} k {k} attempt {job.attempt} failed: {line}")
        if self.retry(job):
            return True
        self.failed_for_good.append((t, k))
        if self.progress is not None:
            self.progress.update(1)
        return False


def collect_rollouts(
    tasks: list[int],
    out: Path,
    *,
    per_task: int | dict[int, int],
    backbone: str = "libero_vla",
    backbone_args: dict | None = None,
    beta: float = 0.0,
    beta_mode: str = "episode",
    placement_base: int = PLACEMENT_BASE,
    max_steps: int = MAX_STEPS,
    image_size: int = 128,
    render: str = "faithful",
    images: bool = False,
    instruction_steps: int | None = None,
    teacher: str = "expert",
    seed: int = 0,
    workers: int = 1,
    retries: int = 2,
    episode_timeout: float = 3600.0,
    progress: bool = True,
    log=print,
) -> dict:
    """Run (or resume) ``per_task`` rollouts of each task (a dict: per task) on ``workers`` processes,
    then merge every finished episode into ``OUT/rollouts.safetensors`` and ``OUT/rollouts.json``;
    returns the record."""
    from tqdm.auto import tqdm

    from sim.libero.rollouts_io import episode_file, merge, read_episode_record
    from sim.libero.workers import run_local

    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"--beta must be in [0, 1], got {beta}")
    from sim.libero.env import check_instruction_steps

    instruction_steps = check_instruction_steps(instruction_steps, "--instruction-steps")
    check_teacher(teacher, instruction_steps)
    if beta_mode not in BETA_MODES:
        raise ValueError(f"--beta-mode must be one of {BETA_MODES}, got {beta_mode!r}")
    out = Path(out)
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    base = dict(
        backbone=backbone,
        backbone_args=backbone_args or {},
        beta=float(beta),
        beta_mode=beta_mode,
        placement_base=int(placement_base),
        max_steps=int(max_steps),
        image_size=int(image_size),
        render=render,
        images=bool(images),
        instruction_steps=instruction_steps,
        teacher=None if teacher == "expert" else teacher,  # None: left out of the pins (_pin)
        seed=int(seed),
        out=str(out),
    )
    _pin(out, base)
    counts = per_task if isinstance(per_task, dict) else dict.fromkeys(tasks, per_task)
    # k-major order: the long tasks of a weighted run are spread over the run, not left for its end
    wanted = sorted(((t, k) for t in tasks for k in range(counts[t])), key=lambda tk: (tk[1], tk[0]))
    todo = [(t, k) for t, k in wanted if read_episode_record(episode_file(out, t, k)) is None]
    log(
        f"[rollouts] {len(wanted)} episodes ({len(wanted) - len(todo)} already done in {out}); backbone "
        f"{backbone}; beta {beta} per {beta_mode}; {workers} worker(s)"
    )
    bar = tqdm(total=len(todo), desc="rollouts", unit="ep", disable=not progress or not todo)
    sched = RolloutScheduler(todo, base, retries, progress=bar, log=log)
    t0 = time.perf_counter()
    try:
        if todo:
            run_local(sched, run_rollout, workers, timeout=episode_timeout)
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    doc = merge(out, wanted, base)
    new = [r for r in sched.results if not r.get("resumed")]
    steps = sum(r["steps"] for r in new)
    doc["this_run"] = dict(
        episodes=len(new),
        env_steps=steps,
        wall_s=wall,
        s_per_env_step=wall / steps if steps else None,
        episode_s_per_env_step=sum(r["wall_s"] for r in new) / steps if steps else None,
        backbone_s_per_step=sum(r["backbone_s"] for r in new) / steps if steps else None,
        expert_s_per_step=sum(r["expert_s"] for r in new) / steps if steps else None,
        env_s_per_step=sum(r["env_s"] for r in new) / steps if steps else None,
        workers=workers,
        errors=sched.errors,
        failed=[dict(task=t, k=k) for t, k in sched.failed_for_good],
    )
    (out / "rollouts.json").write_text(json.dumps(doc, indent=1))
    return doc


def check_teacher(teacher: str, instruction_steps: int | None) -> None:
    """--teacher: one of TEACHERS; ``backbone`` labels with what the instruction changes, so it needs
    --instruction-steps (without it the label would equal the base action at every step)."""
    if teacher not in TEACHERS:
        raise ValueError(f"--teacher must be one of {TEACHERS}, got {teacher!r}")
    if teacher == "backbone" and instruction_steps is None:
        raise ValueError(
            "--teacher backbone needs --instruction-steps K (otherwise its label is the base action)"
        )


def _pin(out: Path, base: dict) -> None:
    # the settings that change an episode (sim.libero.pins); images=False, instruction_steps=None and the
    # expert teacher are left out, so directories made before those options existed still resume
    from sim.libero.pins import pin

    pinned = {k: v for k, v in base.items() if k != "out" and not (k in OPTIONAL_PINS and not v)}
    pin(out / "config.json", pinned, OPTIONAL_PINS, any((out / "episodes").glob("*.hdf5")), "rollouts")
