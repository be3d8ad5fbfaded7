"""DART action noise: the process's statistics, its seeding, and demos that record clean labels while the
env executes the perturbed actions (a fake env here; a real LIBERO recording, resume check included)."""

import json
import math

import numpy as np
import pytest

from sim.libero.action_noise import ActionNoise, episode_rng
from sim.libero.recording import record_demos, rollout


def _eps(noise, n, seed=0, action=None):
    proc = noise.process(np.random.default_rng(seed))
    a = np.zeros(7) if action is None else action
    return np.stack([proc.perturb(a) for _ in range(n)])


def test_stationary_std_and_correlation_match_sigma_and_tau():
    noise = ActionNoise(pos=0.2, rot=0.05, tau=4.0)
    # many short episodes: the process must start stationary, so step 0 already has std sigma
    first = np.stack([_eps(noise, 1, seed=s)[0] for s in range(4000)])
    np.testing.assert_allclose(first[:, :3].std(0), 0.2, rtol=0.08)
    np.testing.assert_allclose(first[:, 3:6].std(0), 0.05, rtol=0.08)
    long = _eps(noise, 60_000, seed=1)
    np.testing.assert_allclose(long[:, :6].std(0), [0.2] * 3 + [0.05] * 3, rtol=0.08)
    lag1 = [np.corrcoef(long[:-1, d], long[1:, d])[0, 1] for d in range(6)]
    np.testing.assert_allclose(lag1, math.exp(-1 / 4.0), atol=0.03)
    assert not np.any(long[:, 6])  # the gripper command is never perturbed


def test_clipped_to_the_action_box_and_gripper_kept():
    a = np.array([0.99, -0.99, 0.0, 0.5, -0.5, 0.0, 1.0])
    out = _eps(ActionNoise(pos=2.0, rot=2.0, tau=1.0), 500, action=a)
    assert out[:, :6].max() <= 1.0 and out[:, :6].min() >= -1.0
    assert (out[:, :6] == 1.0).any() and (out[:, :6] == -1.0).any()
    np.testing.assert_array_equal(out[:, 6], 1.0)


def test_episode_streams_are_fixed_by_seed_task_and_episode():
    noise = ActionNoise(pos=0.1, rot=0.1)

    def draw(seed, task, episode):
        proc = noise.process(episode_rng(seed, task, episode))
        return np.stack([proc.perturb(np.zeros(7)) for _ in range(5)])

    a = draw(0, 3, {"placement_seed": 30_017})
    np.testing.assert_array_equal(a, draw(0, 3, {"placement_seed": 30_017}))
    for other in (
        (1, 3, {"placement_seed": 30_017}),
        (0, 4, {"placement_seed": 30_017}),
        (0, 3, {"placement_seed": 9}),
    ):
        assert not np.allclose(a, draw(*other))


@pytest.mark.parametrize(
    "kw, option",
    [
        (dict(pos=-0.1), "--noise-pos"),
        (dict(rot=-1), "--noise-rot"),
        (dict(tau=0), "--noise-tau"),
        (dict(pos=float("nan")), "--noise-pos"),
        (dict(tau="5"), "--noise-tau"),
        (dict(pos=0.1, transit=-0.01), "--noise-transit"),
    ],
)
def test_bad_settings_name_the_option(kw, option):
    with pytest.raises(ValueError, match=option):
        ActionNoise(**kw)


def test_off_by_default():
    assert not ActionNoise().on and ActionNoise(rot=0.01).on


def test_transit_noise_acts_only_on_loose_goals_and_keeps_the_stream():
    gated, full = ActionNoise(0.2, 0.05, 3.0, transit=0.015), ActionNoise(0.2, 0.05, 3.0)
    pg, pf = gated.process(np.random.default_rng(4)), full.process(np.random.default_rng(4))
    a = np.full(7, 0.1)
    tols = [0.03, 0.006, 0.0, 0.015, 0.012, 0.025] * 5
    for tol in tols:
        out, ref = pg.perturb(a, tol), pf.perturb(a)
        # quiet steps still draw, so a perturbed step gets the same eps_t as without the gate
        np.testing.assert_array_equal(out, ref if tol >= 0.015 else a)
    with pytest.raises(ValueError, match="--noise-transit.*goal_tolerance"):
        pg.perturb(a, None)
    full.process(np.random.default_rng(0)).perturb(a, None)  # no gate: no tolerance needed
    assert gated.recorded()["transit"] == 0.015 and "transit" not in full.recorded()  # old files still match


class _Env:
    """Just what ``rollout`` touches: a point that integrates the executed actions; success at t = 30."""

    cameras_on = False

    def reset(self, seed=None, options=None):
        self.x, self.t = np.zeros(7), 0
        self.executed = []
        self.layout = np.zeros(3)
        return self._obs(), {}

    def _obs(self):
        return {"state": self.x[:8].astype(np.float32)}

    def observation(self, obs, privileged):
        return dict(obs, x=self.x.copy())

    @property
    def raw_obs(self):
        return dict(
            robot0_eef_pos=self.x[:3],
            robot0_eef_quat=np.r_[0, 0, 0, 1.0],
            robot0_gripper_qpos=np.zeros(2),
            robot0_joint_pos=np.zeros(7),
        )

    @property
    def raw_env(self):
        sim = type("S", (), {"get_state": lambda s: type("St", (), {"flatten": lambda _: self.x.copy()})()})()
        return type("R", (), {"env": type("E", (), {"sim": sim})()})()

    def step(self, a):
        self.executed.append(np.array(a))
        self.x = self.x + 0.01 * np.asarray(a)
        self.t += 1
        return self._obs(), float(self.t == 30), self.t == 30, False, {}


class _Servo:
    """A closed-loop 'expert': drives the point back towards 0.3 on every axis (so noise gets corrected);
    its goal tolerance is loose (transit) while the point is far from 0.3 and tight once it is near."""

    spec = type("Spec", (), {"privileged": True, "cameras": ()})()
    goal_tolerance = None

    def reset(self):
        pass

    def __call__(self, obs):
        a = np.clip(5.0 * (0.3 - obs["x"]), -1, 1)
        a[6] = 1.0
        self.goal_tolerance = 0.03 if np.abs(0.3 - obs["x"][:6]).max() > 0.15 else 0.006
        return np.zeros(4), a


def test_rollout_records_clean_labels_and_replays_the_executed_actions():
    env, expert = _Env(), _Servo()
    noise = ActionNoise(pos=0.3, rot=0.3, tau=3.0)
    ep = rollout(
        env, expert, {"placement_seed": 1}, 0, noise=noise.process(episode_rng(0, 0, {"placement_seed": 1}))
    )
    assert ep["success"] and ep["actions"].shape == ep["executed"].shape == (30, 7)
    np.testing.assert_array_equal(ep["executed"], np.stack(env.executed))  # the env ran the perturbed ones
    assert np.abs(ep["executed"][:, :6] - ep["actions"][:, :6]).mean() > 0.05
    np.testing.assert_array_equal(ep["executed"][:, 6], ep["actions"][:, 6])
    # each label is the expert's answer to the state it saw: recompute it from the recorded states
    xs = np.vstack([np.zeros(7), np.cumsum(0.01 * ep["executed"], 0)[:-1]])
    want = np.clip(5.0 * (0.3 - xs), -1, 1)
    want[:, 6] = 1.0
    np.testing.assert_allclose(ep["actions"], want, atol=1e-12)
    replay = rollout(env, expert, {"placement_seed": 1}, 0, actions=ep["executed"])
    np.testing.assert_array_equal(replay["states"], ep["states"])
    assert "executed" not in replay  # a replay perturbs nothing
    clean = rollout(_Env(), expert, {"placement_seed": 1}, 0)
    assert "executed" not in clean


def test_transit_noise_needs_the_expert_backbone(capsys):
    import cli
    from policies.factory import make_backbone

    args = ["sim", "demos", "--tasks", "5", "--noise-pos", "0.1", "--noise-transit", "0.015"]
    assert cli.main([*args, "--backbone", "libero_noop", "--out", "/nonexistent/x"]) == 2
    assert "--noise-transit" in capsys.readouterr().err
    # the check is the attribute the gate reads, so the expert's backbone with its no-op policy is refused too
    noop = ["--backbone", "libero_expert", "--backbone-arg", 'policy="noop"', "--out", "/nonexistent/x"]
    assert cli.main([*args, *noop]) == 2
    assert "--noise-transit" in capsys.readouterr().err
    assert make_backbone("libero_expert").goal_tolerance == 0.0  # before its first step


def test_rollout_with_transit_noise_perturbs_only_the_loose_goal_steps():
    noise = ActionNoise(pos=0.3, rot=0.3, tau=3.0, transit=0.015)
    ep = rollout(_Env(), _Servo(), {"placement_seed": 1}, 0, noise=noise.process(np.random.default_rng(1)))
    x = np.vstack([np.zeros(7), np.cumsum(0.01 * ep["executed"], 0)[:-1]])
    loose = np.abs(0.3 - x[:, :6]).max(1) > 0.15
    moved = np.any(ep["executed"] != ep["actions"], axis=1)
    assert loose.any() and (~loose).any()
    np.testing.assert_array_equal(moved, loose)  # perturbed exactly where the goal was loose


def test_real_demo_keeps_clean_labels_and_refuses_a_mixed_resume(tmp_path):
    pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")
    h5py = pytest.importorskip("h5py")
    import cli

    out = tmp_path / "demos"
    args = ["sim", "demos", "--tasks", "5", "--per-task", "1", "--tries-per-job", "1", "--image-size", "32"]
    args += ["--workers", "1", "--render", "fast", "--out", str(out)]
    assert cli.main([*args, "--noise-pos", "0.1", "--noise-rot", "0.02"]) == 0  # camera-free, then replay
    doc = json.loads((out / "demos.json").read_text())
    assert doc["args"]["action_noise"] == dict(pos=0.1, rot=0.02, tau=5.0, transit=0.0)
    with h5py.File(doc["results"][0]["files"][0]) as f:
        assert json.loads(f["data"].attrs["action_noise"]) == dict(pos=0.1, rot=0.02, tau=5.0)
        d = f["data/demo_0"]
        assert d["rewards"][-1] == 1.0 and d["obs/agentview_rgb"].shape[1:] == (32, 32, 3)
        labels, ran = d["actions"][:], d["executed_actions"][:]
        assert labels.shape == ran.shape and 0.01 < np.abs(labels[:, :6] - ran[:, :6]).mean() < 0.5
        np.testing.assert_array_equal(labels[:, 6], ran[:, 6])
    # the same --out without noise must not count the noisy file as one of its own
    before = (out / "demos.json").read_text()
    with pytest.raises(ValueError, match=r"task5_b000_(empty\.json|demo\.hdf5): recorded with action noise"):
        record_demos([5], out, per_task=2, tries_per_job=1, image_size=32, render="fast", workers=1)
    assert cli.main([*args, "--per-task", "2"]) == 2  # the command: a one-line error, exit 2
    assert (out / "demos.json").read_text() == before  # nothing recorded, nothing rewritten


def test_expert_noise_benchmark_reports_success_and_tube_distance(tmp_path):
    pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "expert_noise.py"
    out = tmp_path / "noise.json"
    args = [
        "--tasks",
        "5",
        "--episodes",
        "1",
        "--noise",
        "0.0,0.0",
        "--noise",
        "0.3,0.1,3",
        "--noise",
        "0.3,0.1,3,0.015",
        "--json",
        str(out),
    ]
    run = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    doc = json.loads(out.read_text())
    zero, strong, transit = doc["summary"][1:4]
    ep = doc["episodes"][0]
    # zero sigma is the clean run, step for step: no distance, no label gap, the same outcome
    assert zero["tube_mean_mm"] == 0.0 and zero["label_gap"] == 0.0 and zero["perturbed"] == 0.0
    assert ep["noisy"][0]["steps"] == ep["clean"]["steps"]
    assert zero["step_ratio"] in (None, 1.0)  # None: the expert failed this placement
    assert strong["tube_mean_mm"] > 1.0 and strong["label_gap"] > 0.05 and strong["perturbed"] == 1.0
    assert 0.0 < transit["perturbed"] < 1.0  # the precision approaches, grasps and releases run clean
    assert "| 0.3, 0.1, 3.0, - |" in run.stdout and "| 0.3, 0.1, 3.0, 0.015 |" in run.stdout
    bad = subprocess.run([sys.executable, str(script), "--noise", "0.1,-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--noise-rot" in bad.stderr
