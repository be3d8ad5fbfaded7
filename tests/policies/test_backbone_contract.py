"""The Backbone contract and the registry: every shipped backbone conforms, names and module:Class resolve,
fields and defaults are applied as documented, and mistakes are errors that name the option."""

import numpy as np
import pytest

from policies.backbone import BackboneError, BackboneSpec, check_backbone, check_outputs
from policies.factory import backbone_names, make_backbone, parse_fields, register_backbone


def test_spec_validates_its_fields():
    BackboneSpec(d_model=8, d_action=7, chunk=8, cameras=("image",), image_size=128, language=True)
    for bad in (
        dict(d_model=0, d_action=7),
        dict(d_model=8, d_action=7, chunk=0),
        dict(d_model=8, d_action=7, cameras=("depth",), image_size=64),
        dict(d_model=8, d_action=7, cameras=("image",)),
    ):
        with pytest.raises(BackboneError):
            BackboneSpec(**bad)


@pytest.mark.parametrize(
    "name,fields,obs",
    [
        ("noise", {"d_model": 6, "d_action": 3}, (np.ones(6, np.float32), np.zeros(3, np.float32))),
        ("random_encoder", {"d_obs": 5, "d_model": 6}, np.ones(5, np.float32)),
    ],
)
def test_numpy_backbones_conform(name, fields, obs):
    b = make_backbone(name, fields)
    check_backbone(b)
    b.reset()
    z, a = b(obs)
    check_outputs(b.spec, z, a)
    assert b.spec.cameras == () and not b.spec.privileged


def test_registered_names_include_the_shipped_backbones():
    assert {"noise", "random_encoder", "libero_expert", "libero_noop"} <= set(backbone_names())


def test_defaults_fill_only_declared_fields_and_args_win():
    b = make_backbone("random_encoder", {"d_obs": 4, "d_model": 5}, defaults={"d_model": 99, "nonsense": 1})
    assert b.spec.d_model == 5  # the explicit field wins; an undeclared default is not passed
    b = make_backbone("random_encoder", {"d_obs": 4}, defaults={"d_model": 7})
    assert b.spec.d_model == 7


def test_errors_name_the_option():
    with pytest.raises(BackboneError, match="--backbone: unknown backbone 'nope'"):
        make_backbone("nope")
    with pytest.raises(BackboneError, match=r"unknown field\(s\) \['colour'\]"):
        make_backbone("random_encoder", {"d_obs": 4, "d_model": 5, "colour": "red"})
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        make_backbone("no_such_module:Thing")
    with pytest.raises(ValueError, match="has no attribute 'Nope'"):
        make_backbone("policies.noise:Nope")
    with pytest.raises(BackboneError, match="has no 'spec'"):
        make_backbone("builtins:object")
    with pytest.raises(BackboneError, match="expected KEY=VALUE"):
        parse_fields(["d_model"])
    with pytest.raises(BackboneError, match="features must be float32"):
        check_outputs(BackboneSpec(d_model=2, d_action=1), np.zeros(2), np.zeros(1, np.float32))


def test_parse_fields_reads_json_values_else_strings():
    assert parse_fields(["d_model=64", "policy=noop", "gain=0.5", "flag=true"]) == {
        "d_model": 64,
        "policy": "noop",
        "gain": 0.5,
        "flag": True,
    }


def test_register_backbone_makes_a_name(monkeypatch):
    import policies.factory as factory
    from policies.noise import NoiseConfig

    monkeypatch.setattr(factory, "_REGISTERED", {})
    register_backbone("toy_noise", d_model=3, d_action=2)(NoiseConfig)
    assert "toy_noise" in backbone_names()
    b = make_backbone("toy_noise", {"d_model": 5})
    assert (b.spec.d_model, b.spec.d_action) == (5, 2)  # a preset field, overridden by an argument


def test_the_synthetic_robot_names_its_encoder():
    """`aura run --env synthetic` builds the backbone through the registry: the same encoder as the data."""
    from sim.synthetic.env import make_backbone as synthetic_backbone
    from sim.synthetic.robot import make_synthetic_robot

    robot = make_synthetic_robot("hard", 16)
    name, fields = robot.backbone
    via_registry, direct = make_backbone(name, fields), synthetic_backbone("hard")
    x = np.random.default_rng(0).standard_normal(via_registry.encoder.d_obs).astype(np.float32)
    assert np.array_equal(via_registry(x)[0], direct(x)[0])


def test_privileged_features_are_the_documented_projection():
    from policies.libero_expert.backbone import FEATURE_IN, HOLD, PrivilegedBackbone

    b = make_backbone("libero_noop", {"d_model": 16, "seed": 3})
    assert isinstance(b, PrivilegedBackbone) and b.spec.privileged and b.spec.d_action == 7
    raw = {
        "robot0_eef_pos": np.ones(3),
        "cube_pos": np.array([0.1, 0.2, 0.3]),
        "cube_quat": np.array([0, 0, 0, 1.0]),
        "cube_to_robot0_eef_pos": np.zeros(3),
    }
    state = np.arange(8, dtype=np.float32)
    z, a = b({"sim": None, "raw": raw, "task_id": 0, "state": state})
    x = np.zeros(FEATURE_IN)
    x[:8], x[8:11], x[11:15] = state, raw["cube_pos"], raw["cube_quat"]
    p = (np.random.default_rng(3).standard_normal((16, FEATURE_IN)) / np.sqrt(FEATURE_IN)).astype(np.float32)
    assert np.array_equal(z, p @ x.astype(np.float32)) and np.array_equal(a, HOLD)
