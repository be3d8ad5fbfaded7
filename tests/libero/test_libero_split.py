"""Training data never comes from the evaluation set: fresh placements are far from all 50 fixed init states,
placement seeds never repeat across tasks, shards and tries, and `verify_split` refuses files that break
it."""

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")

from sim.libero.demos import SPLIT_MIN_MM, finished_job, job_file, verify_split, write_task_file  # noqa: E402
from sim.libero.recording import placement_seed  # noqa: E402


@pytest.fixture(scope="module")
def env():
    from sim.libero.env import LiberoEnv

    e = LiberoEnv(0, cameras=())
    yield e
    e.close()


def test_fresh_layouts_are_not_fixed_init_states(env):
    for k in range(4):
        env.reset(options={"placement_seed": placement_seed(0, 0, k)})
        assert env.init_state == -1
        _, dist = env.nearest_init_state(env.layout)
        assert 1000 * dist > SPLIT_MIN_MM
    env.reset(options={"init_state": 7})  # the check itself: a fixed state is at distance 0 from itself
    assert env.nearest_init_state(env.layout) == (7, 0.0)


def test_a_sibling_tasks_init_state_is_evaluation_data_too(env):
    """Task 0's scene is the living_room_scene2 group's: a training layout is checked against all their
    fixed init states (350), and sits at distance 0 from a sibling's own init state."""
    from sim.libero.tasks import parse_tasks, scene_tasks, task_spec

    assert scene_tasks(0) == [0, 1, *parse_tasks("living_room_scene2")] and scene_tasks(5) == [5]
    assert env.nearest_scene_init_state(task_spec(151)[2][3]) == (151, 3, 0.0)
    env.reset(options={"init_state": 7})
    assert env.nearest_scene_init_state(env.layout) == (0, 7, 0.0)
    env.reset(options={"placement_seed": placement_seed(0, 0, 0)})
    task, i, d = env.nearest_scene_init_state(env.layout)
    assert 1000 * d > SPLIT_MIN_MM and d <= env.nearest_init_state(env.layout)[1]


def test_placement_seeds_are_distinct():
    seeds = {placement_seed(0, t, k) for t in range(10) for k in range(1000)}
    assert len(seeds) == 10 * 1000


def _demo(rng, **attrs):
    t = 4
    raw = np.concatenate(
        [rng.normal(size=(t, 3)), np.tile([0, 0, 0, 1.0], (t, 1)), rng.normal(size=(t, 9))], 1
    )
    return dict(
        image=np.zeros((t, 8, 8, 3), np.uint8),
        wrist_image=np.zeros((t, 8, 8, 3), np.uint8),
        state=np.zeros((t, 8), np.float32),
        actions=np.zeros((t, 7)),
        rewards=np.zeros(t),
        dones=np.zeros(t, bool),
        states=np.zeros((t, 40)),
        raw=raw,
        layout=np.zeros(40),
        seed=0,
        **attrs,
    )


def test_verify_split_refuses_evaluation_states_and_near_layouts(tmp_path):
    rng = np.random.default_rng(0)
    meta = dict(task_id=0, num_demos=1, complete=1, tries=3)
    good = tmp_path / "good.hdf5"
    write_task_file(good, [_demo(rng, init_state=-1, placement_seed=5, nearest_init_mm=21.0)], meta)
    assert verify_split(good) == {"demos": 1, "min_nearest_mm": 21.0}
    bad = tmp_path / "fixed.hdf5"
    write_task_file(bad, [_demo(rng, init_state=3, nearest_init_mm=0.0)], meta)
    with pytest.raises(ValueError, match="fixed init states"):
        verify_split(bad)
    near = tmp_path / "near.hdf5"
    write_task_file(near, [_demo(rng, init_state=-1, placement_seed=6, nearest_init_mm=0.4)], meta)
    with pytest.raises(ValueError, match="0.40 mm from a fixed init state"):
        verify_split(near)


def test_a_finished_job_is_counted_not_rerecorded(tmp_path):
    rng = np.random.default_rng(0)
    path = job_file(tmp_path, 2, 1)
    assert (
        path.name == "task2_b001_demo.hdf5"
        and job_file(tmp_path, 2, 1, kept=0).name == "task2_b001_empty.json"
    )
    assert finished_job(tmp_path, 2, 1) is None
    write_task_file(
        path,
        [_demo(rng, init_state=-1, placement_seed=1, nearest_init_mm=9.0)],
        dict(task_id=2, batch=1, complete=1, tries=2),
    )
    done = finished_job(tmp_path, 2, 1)
    assert done["demos"] == 1 and done["tries"] == 2 and done["resumed"] and done["task"] == 2
    job_file(tmp_path, 3, 0, kept=0).write_text('{"task": 3, "batch": 0, "demos": 0, "tries": 8}')
    assert finished_job(tmp_path, 3, 0)["tries"] == 8


def test_the_scheduler_gives_more_batches_to_the_task_that_fails_more(tmp_path):
    from sim.libero.recording import _DemoScheduler

    s = _DemoScheduler({0: 7, 1: 7}, max_batches={0: 20, 1: 20}, base=dict(tries=4, out=str(tmp_path)))
    jobs = [s.next_job() for _ in range(4)]  # 2 per task: 2 x 4 tries x the 0.9 prior covers 7 each
    assert sorted(j.key[0] for j in jobs) == [0, 0, 1, 1] and s.next_job() is None
    for j in jobs:  # task 0 succeeds every time, task 1 once in four
        s.finished(j, dict(task=j.key[0], batch=j.key[1], demos=4 if j.key[0] == 0 else 1, tries=4))
    more = []
    while (j := s.next_job()) is not None:
        more.append(j)
        s.finished(j, dict(task=1, batch=j.key[1], demos=1, tries=4))
    assert {j.key[0] for j in more} == {1} and s.kept == {0: 8, 1: 7} and not s.open()


def test_per_task_targets_weight_the_demos(tmp_path):
    """--task-demos: each task is recorded to its own target, and its try budget scales with it."""
    import argparse

    from cli.common import per_task_counts
    from cli.sim_demos import run
    from sim.libero.recording import _DemoScheduler

    targets = per_task_counts([0, 1, 2], 3, ["1-2=9", "2=5"], "--task-demos", "0-2")
    assert targets == {0: 3, 1: 9, 2: 5}
    s = _DemoScheduler(targets, max_batches={0: 1, 1: 9, 2: 9}, base=dict(tries=3, out=str(tmp_path)))
    kept = dict.fromkeys(targets, 0)
    while (j := s.next_job()) is not None:  # the expert always succeeds
        kept[j.key[0]] += 3
        s.finished(j, dict(task=j.key[0], batch=j.key[1], demos=3, tries=3))
    assert kept == {0: 3, 1: 9, 2: 6} and not s.open()
    for bad, word in (("1=0", "N >= 1"), ("7=4", "not in --tasks"), ("1", "TASKS=N")):
        args = argparse.Namespace(
            tasks="0-2",
            per_task=3,
            task_demos=[bad],
            placements="fresh",
            start=0,
            workers=1,
            image_size=128,
            tries_per_job=3,
            max_tries=None,
            out=str(tmp_path / "d"),
        )
        with pytest.raises(ValueError, match=word):
            run(args)
