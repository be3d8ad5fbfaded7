"""`aura sim rollouts`: the shadow expert's undefined rows, the error boundary, placement seeds disjoint
from the demos, and (slow) real closed-loop rollouts of the shipped backbone through ONNX Runtime: the data
file loads and trains, no episode sits on a fixed init state, a crashed episode is retried and recorded, a
rerun skips finished episodes, and with --beta 1 the episode is the expert's own."""

import json
from pathlib import Path

import numpy as np
import pytest

import cli

ROOT = Path(__file__).resolve().parents[2]


class _FakeExpert:
    """Scripted-expert stand-in: a finite action, then a non-finite one, then raises or finishes."""

    def __init__(self, then: str):
        self.then, self.n, self.finished, self.stage = then, 0, False, "move"

    def reset(self, raw_env):
        self.n, self.finished = 0, False

    def act(self, raw_env, obs):
        self.n += 1
        if self.n == 2:
            return np.full(7, np.nan)
        if self.n >= 3:
            if self.then == "raise":
                raise RuntimeError("plan broke")
            self.finished = True  # as ScriptedExpert on StopIteration: a hold action, flagged finished
        return np.zeros(7)


@pytest.mark.parametrize("then, tail", [("raise", "error"), ("finish", "done")])
def test_shadow_expert_is_undefined_after_nonfinite_raise_or_finish(then, tail):
    from sim.libero.rollouts import ShadowExpert

    shadow = ShadowExpert(0, expert=_FakeExpert(then))
    shadow.reset(None)
    got = [shadow(None, {}) for _ in range(5)]
    assert got[0][0] is not None and np.array_equal(got[0][0], np.zeros(7)) and got[0][1] == "move"
    assert got[1] == (None, "move")  # non-finite: this row only, the plan goes on
    assert all(a is None and s == tail for a, s in got[2:])
    assert (shadow.error is not None) == (then == "raise")
    assert shadow.expert.n == 3  # never stepped again once undefined
    shadow.reset(None)
    assert shadow(None, {})[0] is not None and shadow.error is None


def test_placement_seeds_are_disjoint_from_the_shipped_demos():
    from sim.libero.rollouts import PLACEMENT_BASE, rollout_placement_seed
    from sim.libero.rollouts_io import DEFAULT_DEMOS_RECORD, check_disjoint

    record = ROOT / DEFAULT_DEMOS_RECORD
    assert check_disjoint(record, list(range(10)), 50, PLACEMENT_BASE) > 500
    with pytest.raises(ValueError, match="--placement-base 0"):
        check_disjoint(record, [0], 5, 0)  # the demos' own seeds 0..4 of task 0
    assert rollout_placement_seed(PLACEMENT_BASE, 3, 7) == PLACEMENT_BASE + 3 * 10_007 + 7


@pytest.mark.parametrize(
    "argv, needle",
    [
        ("--tasks 10", "--tasks"),
        ("--tasks x", "--tasks"),
        ("--per-task 0", "--per-task"),
        ("--beta 1.5", "--beta"),
        ("--checkpoint {d}/missing_ckpt", "--checkpoint"),
        ("--backbone libero_vla_onnx --checkpoint {d}/missing.onnx", "--checkpoint"),
        ("--workers 0", "--workers"),
        ("--out {d}/afile", "afile"),
        ("--tasks 0-3 --task-episodes 7=5", "--task-episodes"),
        ("--task-episodes 7=0", "--task-episodes"),
        ("--task-episodes 7", "--task-episodes"),
        ("--backbone libero_expert --images", "--images"),
        ("--tasks libero_90:no_such_task", "--tasks"),
        ("--instruction-steps 0", "--instruction-steps"),
        ("--teacher backbone", "--teacher backbone needs --instruction-steps"),
    ],
)
def test_user_errors_are_one_line_naming_the_option(argv, needle, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    args = ["sim", "rollouts", *argv.format(d=tmp_path).split()]
    if "--out" not in argv:
        args += ["--out", str(tmp_path / "out")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and err.startswith("aura sim rollouts:"), err


def test_task_episodes_weight_the_rollouts_per_task():
    """--task-episodes overrides --per-task for the named tasks (ids, ranges or a task group)."""
    import argparse

    from cli.sim_rollouts import episode_counts
    from sim.libero.tasks import parse_tasks

    args = argparse.Namespace(tasks="0-9", per_task=4, task_episodes=["7-9=30", "0,3=12"])
    counts = episode_counts(args, parse_tasks(args.tasks))
    assert counts == {0: 12, 1: 4, 2: 4, 3: 12, 4: 4, 5: 4, 6: 4, 7: 30, 8: 30, 9: 30}
    group = parse_tasks("living_room_scene2")
    args = argparse.Namespace(tasks="living_room_scene2", per_task=2, task_episodes=["living_room_scene2=5"])
    assert episode_counts(args, group) == dict.fromkeys(group, 5) and len(group) == 5


@pytest.fixture(scope="module")
def onnx_backbone(tmp_path_factory):
    """The shipped checkpoint exported to ONNX (ORT runs it ~30x faster than torch on this CPU)."""
    pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")
    from deploy.export.backbone_graph import export_graph
    from policies.libero_vla.checkpoint import load_checkpoint

    net, _ = load_checkpoint(ROOT / "checkpoints" / "libero-vla")
    return export_graph(net, tmp_path_factory.mktemp("vla") / "backbone.onnx")


def _rollouts(onnx, out, *extra):
    args = ["sim", "rollouts", "--backbone", "libero_vla_onnx", "--checkpoint", str(onnx), "--tasks", "0"]
    return cli.main([*args, "--workers", "1", "--quiet", "--out", str(out), *extra])


@pytest.mark.slow
def test_rollouts_train_split_crash_retry_and_resume(onnx_backbone, tmp_path, monkeypatch, capsys):
    from safetensors import safe_open

    from aura.training.data import load_sequences
    from sim.libero.demos import verify_split
    from sim.libero.rollouts import PLACEMENT_BASE
    from sim.libero.rollouts_io import episode_file

    out = tmp_path / "ro"
    marker = tmp_path / "crashed"
    monkeypatch.setenv("AURA_ROLLOUTS_CRASH_ONCE", f"0:1:exit:{marker}")  # the worker dies on episode k=1
    assert _rollouts(onnx_backbone, out, "--per-task", "2", "--max-steps", "20") == 0
    assert marker.exists()
    doc = json.loads((out / "rollouts.json").read_text())
    errors = doc["this_run"]["errors"]
    assert [(e["task"], e["k"], e["attempt"]) for e in errors] == [(0, 1, 1)] and "died" in errors[0]["error"]
    eps = doc["episodes"]
    assert [e["placement_seed"] for e in eps] == [PLACEMENT_BASE, PLACEMENT_BASE + 1]
    assert all(e["init_state"] == -1 and e["nearest_init_mm"] > 1.0 and e["steps"] == 20 for e in eps)
    for k in (0, 1):
        assert verify_split(episode_file(out, 0, k))["demos"] == 1
    data = out / "rollouts.safetensors"
    arrays = load_sequences(data)
    assert arrays["features"].shape == (2, 20, 256) and arrays["target_actions"].shape == (2, 20, 7)
    labelled = np.isfinite(arrays["target_actions"]).all(-1)
    assert labelled[:, 0].all()  # the expert is defined at the start of every episode (settling)
    with safe_open(str(data), "np") as f:
        executed, by_expert = f.get_tensor("executed_actions"), f.get_tensor("expert_executed")
        stages = json.loads(f.metadata()["aura.rollouts"])["stage_names"]
        assert "settle" in stages and f.get_tensor("expert_stage").min() >= 0
        assert list(f.get_tensor("episode_placement_seed")) == [PLACEMENT_BASE, PLACEMENT_BASE + 1]
    assert not by_expert.any()  # beta 0: the backbone acts, so executed == its base action (clipped)
    np.testing.assert_array_equal(executed, np.clip(arrays["base_actions"], -1, 1))
    train = ["train", "--data", str(data), "--dense-steps", "2", "--gate-steps", "2", "--batch", "2"]
    assert cli.main([*train, "--quiet", "--out", str(tmp_path / "mem")]) == 0
    assert (tmp_path / "mem" / "model.safetensors").is_file()

    # Resume: a rerun skips both finished episodes (files untouched) and rebuilds the same data file.
    mtimes = [episode_file(out, 0, k).stat().st_mtime_ns for k in (0, 1)]
    capsys.readouterr()
    assert _rollouts(onnx_backbone, out, "--per-task", "2", "--max-steps", "20") == 0
    assert "2 episodes (2 already done" in capsys.readouterr().out
    assert [episode_file(out, 0, k).stat().st_mtime_ns for k in (0, 1)] == mtimes
    again = json.loads((out / "rollouts.json").read_text())
    assert again["this_run"]["episodes"] == 0 and len(again["episodes"]) == 2
    np.testing.assert_array_equal(load_sequences(data)["features"], arrays["features"])
    # ... and refuses settings that would change an episode in the same directory.
    assert _rollouts(onnx_backbone, out, "--per-task", "2", "--max-steps", "21") == 2
    assert "another configuration" in capsys.readouterr().err


@pytest.mark.slow
def test_beta_one_is_the_experts_own_episode(onnx_backbone, tmp_path):
    from safetensors import safe_open

    from policies.factory import make_backbone
    from sim.libero.env import LiberoEnv
    from sim.libero.recording import rollout

    out = tmp_path / "ro"
    assert _rollouts(onnx_backbone, out, "--per-task", "1", "--max-steps", "30", "--beta", "1") == 0
    with safe_open(str(out / "rollouts.safetensors"), "np") as f:
        target, executed = f.get_tensor("target_actions")[0], f.get_tensor("executed_actions")[0]
        by_expert = f.get_tensor("expert_executed")[0]
    defined = np.isfinite(target).all(-1)
    assert defined.all() and by_expert.all()  # 30 steps: the expert's plan is still running
    np.testing.assert_array_equal(target[defined], executed[defined])
    seed = json.loads((out / "rollouts.json").read_text())["episodes"][0]["placement_seed"]
    # The expert alone on an env like the workers' (cameras on: robosuite's step observations lag the state
    # by a different sub-step without cameras, which changes the expert's actions, not the physics).
    env = LiberoEnv(0, cameras=("image", "wrist_image"), max_steps=30)
    try:
        ref = rollout(env, make_backbone("libero_expert"), {"placement_seed": seed}, 0)
    finally:
        env.close()
    assert ref["steps"] == 30
    np.testing.assert_array_equal(executed, ref["actions"].astype(np.float32))


def test_instruction_steps_blank_what_the_backbone_sees_not_the_labels(onnx_backbone, tmp_path):
    """--instruction-steps 2: the backbone gets the instruction at steps 0 and 1 only. Open-loop execution
    runs the first chunk (planned with it) in both runs, so the states agree for 4 steps and the features
    differ exactly where the instruction is gone; the expert's labels do not change. The setting is pinned."""
    from safetensors import safe_open

    def rows(out):
        with safe_open(str(out / "rollouts.safetensors"), "np") as f:
            meta = json.loads(f.metadata()["aura.rollouts"])["args"]
            return f.get_tensor("features")[0], f.get_tensor("target_actions")[0], meta

    common = ("--per-task", "1", "--max-steps", "4")
    assert _rollouts(onnx_backbone, tmp_path / "k2", *common, "--instruction-steps", "2") == 0
    assert _rollouts(onnx_backbone, tmp_path / "all", *common) == 0
    (z2, e2, meta), (z, e, meta_all) = rows(tmp_path / "k2"), rows(tmp_path / "all")
    assert meta["instruction_steps"] == 2 and meta_all["instruction_steps"] is None
    np.testing.assert_array_equal(z2[:2], z[:2])
    assert all(np.abs(z2[t] - z[t]).max() > 1e-3 for t in (2, 3))
    np.testing.assert_array_equal(e2, e)
    assert _rollouts(onnx_backbone, tmp_path / "k2", *common, "--instruction-steps", "3") == 2
    assert _rollouts(onnx_backbone, tmp_path / "k2", *common) == 2  # nor without the option
    assert json.loads((tmp_path / "k2" / "config.json").read_text())["instruction_steps"] == 2  # kept


def test_backbone_teacher_labels_with_the_visible_instruction(onnx_backbone, tmp_path):
    """--teacher backbone: the label is the acting backbone's own action with the instruction visible. With
    --beta 1 the teacher drives, so the episode is the visible policy's own (labels = executed = that run's
    base actions); with --beta 0 the label equals the blind base action at t < K only. Ensemble execution
    replans every step, so the instruction shows in every action. The teacher is pinned like K."""
    from safetensors import safe_open

    def rows(out):
        with safe_open(str(out / "rollouts.safetensors"), "np") as f:
            names = ("base_actions", "target_actions", "executed_actions")
            return {n: f.get_tensor(n)[0] for n in names}, json.loads(f.metadata()["aura.rollouts"])["args"]

    common = ("--per-task", "1", "--max-steps", "4", "--backbone-arg", "execution=ensemble")
    k1 = ("--instruction-steps", "1", "--teacher", "backbone")
    assert _rollouts(onnx_backbone, tmp_path / "visible", *common) == 0
    assert _rollouts(onnx_backbone, tmp_path / "drive", *common, *k1, "--beta", "1") == 0
    assert _rollouts(onnx_backbone, tmp_path / "blind", *common, *k1) == 0
    (vis, _), (drive, meta), (blind, _) = (rows(tmp_path / d) for d in ("visible", "drive", "blind"))
    assert meta["teacher"] == "backbone" and meta["instruction_steps"] == 1
    np.testing.assert_array_equal(drive["target_actions"], vis["base_actions"])
    np.testing.assert_array_equal(drive["executed_actions"], vis["base_actions"])
    np.testing.assert_array_equal(blind["target_actions"][0], blind["base_actions"][0])
    assert all(np.abs(blind["target_actions"][t] - blind["base_actions"][t]).max() > 1e-4 for t in (1, 2, 3))
    assert _rollouts(onnx_backbone, tmp_path / "blind", *common, "--instruction-steps", "1") == 2  # pinned


@pytest.mark.slow
def test_images_make_backbone_training_data(onnx_backbone, tmp_path):
    """--images: each episode file is also a demo file of what the backbone saw, labelled by the expert, and
    `aura train backbone --init` fine-tunes the shipped checkpoint on it (DAgger for the pixel policy)."""
    import h5py

    from policies.libero_vla.data import load_demos
    from sim.libero.rollouts_io import episode_file

    out = tmp_path / "ro"
    assert _rollouts(onnx_backbone, out, "--per-task", "1", "--max-steps", "12", "--images") == 0
    path = episode_file(out, 0, 0)
    with h5py.File(path) as f:
        g = f["data/demo_0"]
        np.testing.assert_array_equal(g["actions"][()], g["target_actions"][()])
        assert (
            g["obs/agentview_rgb"].shape == (12, 128, 128, 3) and g["obs/agentview_rgb"].compression == "gzip"
        )
        assert f["data"].attrs["task_id"] == 0 and "basket" in f["data"].attrs["language"]
        assert f["data"].attrs["unlabelled_rows"] == "nan"  # its NaN labels are unsupervised, not corrupt
    demos = load_demos(out / "episodes", progress=False, threads=1)
    assert demos.frames == 12 and demos.recipe["decoder"].startswith("2/2")  # the threaded zlib path
    ckpt = tmp_path / "tuned"
    train = [
        "train",
        "backbone",
        "--demos",
        str(out / "episodes"),
        "--init",
        str(ROOT / "checkpoints" / "libero-vla"),
    ]
    assert (
        cli.main(
            [*train, "--out", str(ckpt), "--steps", "2", "--batch", "4", "--device", "cpu", "--no-progress"]
        )
        == 0
    )
    assert json.loads((ckpt / "config.json").read_text())["training"]["recipe"]["init"].endswith("libero-vla")
    # without --images the episode files carry no frames (the earlier, small format)
    assert _rollouts(onnx_backbone, tmp_path / "plain", "--per-task", "1", "--max-steps", "5") == 0
    with h5py.File(episode_file(tmp_path / "plain", 0, 0)) as f:
        assert "obs" not in f["data/demo_0"] and "actions" not in f["data/demo_0"]
