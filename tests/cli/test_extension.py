"""A user's own backbone and robot, defined in a module outside the package and reached as module:Class,
drive `aura run` (torch-free runtime) and a camera-free `aura eval libero` (a few steps)."""

import json
import sys
import textwrap

import pytest

import cli

TOY = textwrap.dedent(
    '''
    """A toy backbone (features from the 8-d proprio) and a toy robot (a point that drifts)."""
    from dataclasses import dataclass

    import numpy as np

    from policies.backbone import BackboneSpec


    class ToyBackbone:
        def __init__(self, d_model=8, gain=1.0):
            self.spec = BackboneSpec(d_model=d_model, d_action=7)
            self.proj = np.random.default_rng(0).standard_normal((d_model, 8)).astype(np.float32) * gain
            self.resets = 0

        def reset(self):
            self.resets += 1

        def __call__(self, obs):
            z = np.tanh(self.proj @ np.asarray(obs["state"], np.float32)).astype(np.float32)
            base = np.zeros(7, np.float32)
            base[6] = -1.0  # gripper open: hold still
            return z, base


    @dataclass
    class ToyConfig:
        d_model: int = 8
        gain: float = 1.0

        def build(self):
            return ToyBackbone(self.d_model, self.gain)


    class ToyRobot:
        backbone = ("toy_ext:ToyConfig", {})

        def __init__(self, steps=12):
            self.steps, self.t, self.state = steps, 0, np.zeros(8, np.float32)

        def reset(self, seed=None):
            self.t, self.state = 0, np.random.default_rng(seed).standard_normal(8).astype(np.float32)

        def observe(self):
            return {"state": self.state, "language": "hold still"}

        def act(self, action):
            self.state = self.state * np.float32(0.9) + np.float32(0.1) * action[0]
            self.t += 1
            return self.t >= self.steps

        def stats(self):
            return {"toy_final_x": float(self.state[0])}
    '''
)


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    (tmp_path / "toy_ext.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("toy_ext", None)


def test_aura_run_with_a_user_robot_and_backbone(toy_module, tmp_path):
    from aura.layer import AuraMem, AuraMemConfig

    AuraMem(AuraMemConfig(d_model=8, d_action=7)).save(tmp_path / "ck")
    model = tmp_path / "m.onnx"
    assert cli.main(["export", str(tmp_path / "ck"), "--out", str(model), "--parity-steps", "0"]) == 0
    out = tmp_path / "run"
    # the robot names its backbone; --env-arg sets a robot field
    rc = cli.main(
        [
            "run",
            "--model",
            str(model),
            "--env",
            "toy_ext:ToyRobot",
            "--env-arg",
            "steps=7",
            "--episodes",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    eps = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    assert [e["steps"] for e in eps] == [7, 7] and all("toy_final_x" in e for e in eps)
    # an explicit --backbone module:Class with a field
    rc = cli.main(
        [
            "run",
            "--model",
            str(model),
            "--env",
            "toy_ext:ToyRobot",
            "--backbone",
            "toy_ext:ToyConfig",
            "--backbone-arg",
            "gain=0.5",
            "--episodes",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0


def test_camera_free_eval_libero_with_a_user_backbone(toy_module, tmp_path):
    pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")
    out = tmp_path / "eval"
    rc = cli.main(
        [
            "eval",
            "libero",
            "--tasks",
            "0",
            "--init-states",
            "0",
            "--arms",
            "base,aura",
            "--backbone",
            "toy_ext:ToyConfig",
            "--backbone-arg",
            "d_model=8",
            "--max-steps",
            "3",
            "--workers",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    recs = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    assert {(r["arm"], r["status"], r["steps"]) for r in recs} == {("base", "ok", 3), ("aura", "ok", 3)}
    assert all(r["backbone"] == "toy_ext:ToyConfig" for r in recs)
    assert json.loads((out / "config.json").read_text())["backbone_args"] == {"d_model": 8}
