"""Demonstration files: the robomimic-style HDF5 layout (synthetic episode), and a real expert demo (slow)."""

import json

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from sim.libero.demos import job_file, write_task_file  # noqa: E402


def _episode(t, rng):
    raw = np.concatenate(
        [rng.normal(size=(t, 3)), np.tile([0, 0, 0, 1.0], (t, 1)), rng.normal(size=(t, 9))], 1
    )
    return dict(
        image=rng.integers(0, 255, (t, 16, 16, 3), dtype=np.uint8),
        wrist_image=rng.integers(0, 255, (t, 16, 16, 3), dtype=np.uint8),
        state=rng.normal(size=(t, 8)).astype(np.float32),
        actions=rng.uniform(-1, 1, (t, 7)),
        rewards=np.r_[np.zeros(t - 1), 1.0],
        dones=np.r_[np.zeros(t - 1, bool), True],
        states=rng.normal(size=(t, 40)),
        raw=raw,
        init_state=3,
        seed=0,
    )


def test_layout_matches_libero_robomimic_files(tmp_path):
    rng = np.random.default_rng(0)
    eps = [_episode(5, rng), _episode(7, rng)]
    path = tmp_path / "task0_demo.hdf5"
    write_task_file(path, eps, dict(env_name="X", problem_info={"language_instruction": "do it"}, task_id=0))
    with h5py.File(path) as f:
        data = f["data"]
        assert data.attrs["total"] == 12 and data.attrs["num_demos"] == 2
        assert json.loads(data.attrs["problem_info"])["language_instruction"] == "do it"
        d = data["demo_1"]
        assert d.attrs["num_samples"] == 7 and d.attrs["init_state"] == 3
        np.testing.assert_array_equal(d["actions"][:], eps[1]["actions"])
        np.testing.assert_array_equal(d["obs/agentview_rgb"][:], eps[1]["image"])
        np.testing.assert_array_equal(d["obs/eye_in_hand_rgb"][:], eps[1]["wrist_image"])
        assert list(d["dones"][:]) == [0] * 6 + [1] and d["rewards"][-1] == 1.0
        np.testing.assert_array_equal(d["obs/ee_pos"][:], eps[1]["raw"][:, :3])
        np.testing.assert_array_equal(d["obs/gripper_states"][:], eps[1]["raw"][:, 7:9])
        np.testing.assert_array_equal(d["obs/joint_states"][:], eps[1]["raw"][:, 9:16])
        np.testing.assert_allclose(d["obs/ee_ori"][:], 0.0)  # identity quaternion
        assert d["robot_states"].shape == (7, 9) and d["states"].shape == (7, 40)
    assert not path.with_suffix(".hdf5.tmp").exists()


@pytest.mark.slow
def test_expert_demo_of_task_0_replays_to_success(tmp_path):
    pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")
    import cli

    out = tmp_path / "demos"
    args = ["sim", "demos", "--tasks", "0", "--per-task", "1", "--image-size", "32", "--workers", "1"]
    args += ["--render", "fast"]
    assert cli.main([*args, "--out", str(out)]) == 0
    with h5py.File(job_file(out, 0, 0)) as f:  # one job, batch 0 (files are per job since batching)
        d = f["data/demo_0"]
        t = d.attrs["num_samples"]
        assert 0 < t <= 520 and d["rewards"][-1] == 1.0 and d["dones"][-1] == 1
        assert d["obs/agentview_rgb"].shape == (t, 32, 32, 3) and d["obs/agentview_rgb"][0].std() > 5
        render = json.loads(f["data"].attrs["render"])  # how the images were made travels with them
        assert render["quality"] == "fast" and render["faces"][1] < render["faces"][0]
