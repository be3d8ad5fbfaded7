"""Training data never comes from the evaluation set: fresh placements are far from all 50 fixed init states,
placement seeds never repeat across tasks, shards and tries, and `verify_split` refuses files that break
it."""

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")

from sim.libero.demos import SPLIT_MIN_MM, _finished, job_file, placement_seed, verify_split, write_task_file  # noqa: E402


@pytest.fixture(scope="module")
def env():
    from sim.libero.env import LiberoEnv

    e = LiberoEnv(0, cameras=())
    yield e
    e.close()


def test_fresh_layouts_are_not_fixed_init_states(env):
    for k in range(4):
        env.reset(options={"placement_seed": placement_seed(0, 0, 0, k, 3)})
        assert env.init_state == -1
        _, dist = env.nearest_init_state(env.layout)
        assert 1000 * dist > SPLIT_MIN_MM
    env.reset(options={"init_state": 7})  # the check itself: a fixed state is at distance 0 from itself
    assert env.nearest_init_state(env.layout) == (7, 0.0)


def test_placement_seeds_are_distinct():
    seeds = {placement_seed(0, t, k, i, 4) for t in range(10) for k in range(4) for i in range(300)}
    assert len(seeds) == 10 * 4 * 300


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


def test_a_complete_job_file_is_resumed_not_rerecorded(tmp_path):
    rng = np.random.default_rng(0)
    path = job_file(tmp_path, 2, 1, 3)
    assert path.name == "task2_s1_demo.hdf5" and job_file(tmp_path, 2, 0, 1).name == "task2_demo.hdf5"
    assert _finished(path) is None
    write_task_file(
        path,
        [_demo(rng, init_state=-1, placement_seed=1, nearest_init_mm=9.0)],
        dict(task_id=2, shard=1, complete=1, tries=2),
    )
    done = _finished(path)
    assert done["demos"] == 1 and done["resumed"] and done["task"] == 2 and done["shard"] == 1
