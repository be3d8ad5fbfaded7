"""The binned action head of the LIBERO pixel backbone (policies/libero_vla/bins.py, action_head="bins"):
bins fitted from data, decode, training + resume + --init, checkpoints, the torch and ONNX backbones, export
parity, a bimodal target, old configs as "l1" and the size limits of the default bins model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from policies.backbone import check_backbone, check_outputs
from policies.factory import make_backbone

ROOT = Path(__file__).resolve().parents[2]
ONNX_CONFIG = "policies.libero_vla.onnx_backbone:LiberoVLAOnnxConfig"
B = 16


def _actions(n: int = 4000, seed: int = 0) -> np.ndarray:
    """[n, 7]: 5 continuous dims, a rotation saturating at +-1 20 % of the time, a two-valued gripper."""
    rng = np.random.default_rng(seed)
    rot = rng.normal(0, 0.01, n)
    sat = rng.uniform(size=n)
    rot[sat < 0.1], rot[sat > 0.9] = -1.0, 1.0
    return np.concatenate(
        [rng.uniform(-1, 1, (n, 5)), rot[:, None], rng.choice([-1.0, 1.0], (n, 1))], axis=1
    ).astype(np.float32)


@pytest.fixture(scope="module")
def bins_net(tiny_vla_fields):
    """An untrained tiny bins network, bins fitted on ``_actions``, weights perturbed off their ~0 init."""
    import torch

    from policies.libero_vla.bins import fit_bins
    from policies.libero_vla.model import LiberoVLANet, ModelConfig

    torch.manual_seed(0)
    net = LiberoVLANet(ModelConfig.from_dict({**tiny_vla_fields, "action_head": "bins", "action_bins": B}))
    net.set_bins(*fit_bins(_actions(), B))
    g = torch.Generator().manual_seed(1)
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval()


@pytest.fixture(scope="module")
def bins_ckpt(bins_net, tmp_path_factory):
    from policies.libero_vla.checkpoint import save_checkpoint

    return save_checkpoint(bins_net, tmp_path_factory.mktemp("bins_ckpt"))


@pytest.fixture(scope="module")
def bins_onnx(bins_ckpt, tmp_path_factory):
    """(exported .onnx path, the torch net loaded from the checkpoint)."""
    from deploy.export.backbone_graph import export_graph
    from policies.libero_vla.checkpoint import load_checkpoint

    net, _ = load_checkpoint(bins_ckpt)
    return export_graph(net, tmp_path_factory.mktemp("bins_onnx") / "bins.onnx"), net


# --- the bins -----------------------------------------------------------------------------------------


def test_bins_are_quantile_edges_with_atoms_of_their_own():
    import torch

    from policies.libero_vla.bins import PAD_EDGE, bin_index, decode, fit_bins

    a = _actions()
    bins = fit_bins(a, B)
    assert bins.edges.shape == (7, B - 1) and bins.values.shape == bins.valid.shape == (7, B)
    # a continuous dimension: the quantile edges themselves, every bin used, ~n / B targets each
    want = np.quantile(a[:, 0], np.arange(1, B) / B).astype(np.float32)
    assert np.array_equal(bins.edges[0], want) and bins.counts()[0] == B
    idx = np.searchsorted(bins.edges[0], a[:, 0], side="right")
    assert np.bincount(idx, minlength=B).min() >= 0.9 * len(a) / B
    assert np.allclose(bins.values[0], [a[idx == b, 0].mean() for b in range(B)])
    # the gripper: two values, two bins, decoded exactly to -1 and +1; the other edges are padding
    assert bins.counts()[6] == 2 and sorted(bins.values[6][bins.valid[6] > 0]) == [-1.0, 1.0]
    assert (bins.edges[6] == PAD_EDGE).sum() >= B - 1 - 5  # -1, -1+ulp, (one between), +1, +1+ulp
    # the saturating rotation: +-1 are bins of their own, the rest of the bins resolve the small values
    rot = bins.values[5][bins.valid[5] > 0]
    assert -1.0 in rot and 1.0 in rot and np.abs(rot[np.abs(rot) < 1]).max() < 0.05
    # the torch bin index is the same searchsorted, on every dimension
    t = torch.from_numpy(a)
    got = bin_index(t, torch.from_numpy(bins.edges)).numpy()
    assert all(
        np.array_equal(got[:, d], np.searchsorted(bins.edges[d], a[:, d], side="right")) for d in range(7)
    )
    assert (bins.valid[np.arange(7), got] > 0).all()  # every training target lands in a valid bin
    # decode: a one-hot logit gives that bin's value; an invalid bin is never decoded, however large its logit
    values, valid = torch.from_numpy(bins.values), torch.from_numpy(bins.valid)
    for d in range(7):
        for b in range(B):
            logits = torch.zeros(1, 7, B)
            logits[0, d, b] = 5.0
            out = decode(logits, values, valid)[0, d].item()
            if bins.valid[d, b]:
                assert out == bins.values[d, b]
            else:  # all valid logits tie at 0: the first valid bin
                assert out == bins.values[d][bins.valid[d] > 0][0]
    with pytest.raises(ValueError):
        fit_bins(np.full((3, 7), np.nan, np.float32), B)


def test_bins_commit_to_a_mode_where_regression_averages():
    """Input 0: the target is +1 in half the samples and -1 in the other half (the expert's yaw near its
    decision boundary); input 1: a unimodal target 0.3. Heads as the network's (last layer ~0 at init), one
    parameter row per input: L2 answers the mean 0 on input 0, L1 stays between the modes (every value in
    [-1, 1] is a minimum; from ~0 it has no gradient to leave), the bins head decodes to one of the modes;
    all three fit input 1."""
    import torch

    from policies.libero_vla.bins import bins_loss, decode, fit_bins

    torch.manual_seed(0)
    x = torch.tensor([[1.0, 0.0]] * 64 + [[0.0, 1.0]] * 64)
    y = torch.cat([torch.tensor([1.0, -1.0]).repeat(32), 0.3 + 0.01 * torch.randn(64)])[
        :, None, None
    ]  # [N,K,D]
    mask = torch.ones(128, 1)
    edges, values, valid = (torch.from_numpy(v) for v in fit_bins(y[:, 0].numpy(), B))
    heads = {name: torch.nn.Linear(2, n, bias=False) for name, n in (("l1", 1), ("l2", 1), ("bins", B))}
    for h in heads.values():
        torch.nn.init.normal_(h.weight, std=1e-3)
    opt = torch.optim.Adam([p for h in heads.values() for p in h.parameters()], lr=0.05)
    for _ in range(300):
        loss = (heads["l1"](x)[:, None] - y).abs().mean() + (heads["l2"](x)[:, None] - y).square().mean()
        loss = loss + bins_loss(heads["bins"](x).view(128, 1, 1, B), y, mask, edges, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
    two = x[[0, 64]]
    with torch.no_grad():
        a_l1, a_l2 = heads["l1"](two)[:, 0], heads["l2"](two)[:, 0]
        a_bins = decode(heads["bins"](two).view(2, 1, B), values, valid)[:, 0]
    assert abs(a_l2[0]) < 0.05 and abs(a_l1[0]) < 0.2, (a_l1, a_l2)  # regression: between the modes, stalled
    assert abs(a_bins[0]) == 1.0, a_bins  # bins: a mode, exactly
    assert all(abs(a[1] - 0.3) < 0.05 for a in (a_l1, a_l2, a_bins)), (a_l1, a_l2, a_bins)


# --- training, checkpoints ------------------------------------------------------------------------------


def test_training_bins_reduces_the_loss_resumes_and_init_keeps_the_head(
    train_tiny, tiny_vla_fields, tmp_path
):
    import torch

    from policies.libero_vla.bins import fit_bins
    from policies.libero_vla.checkpoint import load_checkpoint
    from policies.libero_vla.data import load_demos

    model = {**tiny_vla_fields, "action_head": "bins", "action_bins": B}
    out = tmp_path / "run"
    s = train_tiny(out, steps=100, lr=1e-2, model=model)
    log = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    first, last = np.mean([r["loss"] for r in log[:3]]), np.mean([r["loss"] for r in log[-3:]])
    assert s["step"] == 100 and last < 0.85 * first, (first, last)  # CE from ~ln(bins)
    recipe = json.loads((out / "config.json").read_text())["training"]["recipe"]
    assert recipe["action_head"] == "bins" and recipe["action_bins"] == B and recipe["bins_per_dim"][6] == 2
    net, cfg = load_checkpoint(out)
    assert cfg["model"]["action_head"] == "bins" and net.config.action_bins == B
    demos = load_demos(_demos_dir(out), progress=False, threads=1)
    want = fit_bins(demos.action[demos.labelled], B)
    assert np.array_equal(net.bin_edges.numpy(), want.edges) and np.array_equal(
        net.bin_values.numpy(), want.values
    )
    s2 = train_tiny(out, steps=110, lr=1e-2, resume=True)  # no head option: the run's own
    assert s2["step"] == 110 and [c["started_at_step"] for c in s2["commands"]] == [0, 100]
    with pytest.raises(ValueError, match="--action-head"):
        train_tiny(out, steps=115, resume=True, model={"action_head": "l1"})
    # --init keeps the checkpoint's head and bins; a different head or bin count is refused by name
    tuned = tmp_path / "tuned"
    s3 = train_tiny(tuned, init=str(out), model={"action_head": "bins"}, steps=3)
    after, _ = load_checkpoint(tuned)
    assert s3["step"] == 3 and after.config.action_head == "bins"
    assert torch.equal(after.bin_values, net.bin_values) and torch.equal(after.bin_edges, net.bin_edges)
    with pytest.raises(ValueError, match="--action-head"):
        train_tiny(tmp_path / "bad", init=str(out), model={"action_head": "l1"}, steps=1)
    with pytest.raises(ValueError, match="--action-bins"):
        train_tiny(tmp_path / "bad", init=str(out), model={"action_bins": 8}, steps=1)


def _demos_dir(out) -> str:
    return json.loads((Path(out) / "config.json").read_text())["training"]["config"]["demos"]


def test_bins_checkpoint_round_trip_and_torch_backbone_contract(bins_net, bins_ckpt, make_observation):
    import torch

    from policies.libero_vla.checkpoint import load_checkpoint
    from policies.libero_vla.model import example_inputs
    from policies.libero_vla.runtime import prepare

    net, cfg = load_checkpoint(bins_ckpt)
    assert cfg["model"]["action_head"] == "bins" and net.config == bins_net.config
    for name in ("bin_edges", "bin_values", "bin_valid"):
        assert torch.equal(getattr(net, name), getattr(bins_net, name)), name  # float32 buffers, exact
    x = example_inputs(net.config, 2)
    with torch.no_grad():
        z, a, logits = net(*x, return_logits=True)
        z0, a0 = bins_net(*x)
    assert logits.shape == (2, 4, 7, B) and torch.allclose(z, z0, atol=1e-2)
    assert all(np.isin(a[:, :, d].numpy(), net.bin_values[d].numpy()).all() for d in range(7))
    b = make_backbone("libero_vla", {"checkpoint": str(bins_ckpt), "device": "cpu"})
    check_backbone(b)
    for t in range(4):
        z, act = b(make_observation(seed=t))
        check_outputs(b.spec, z, act)
        assert np.abs(act).max() <= 1.0 and act[6] in (-1.0, 1.0)
    _, chunk = b.run(prepare(make_observation(seed=9), 32, b._tokens))
    valid = net.bin_values.numpy()[net.bin_valid.numpy() > 0]
    assert chunk.shape == (4, 7) and np.isin(chunk, valid).all()  # every action is a bin's value


def test_old_configs_load_as_l1(tiny_ckpt, tmp_path):
    import shutil

    from policies.libero_vla.checkpoint import load_checkpoint
    from policies.libero_vla.model import example_inputs

    d = tmp_path / "old"
    shutil.copytree(tiny_ckpt, d)
    cfg = json.loads((d / "config.json").read_text())
    for key in ("action_head", "action_bins"):
        cfg["model"].pop(key)  # a config.json written before the bins head existed
    (d / "config.json").write_text(json.dumps(cfg))
    net, _ = load_checkpoint(d)
    assert net.config.action_head == "l1"
    assert not any(k.startswith("bin_") for k in net.state_dict())
    assert net.head[-1].out_features == net.config.chunk * 7
    with pytest.raises(ValueError, match="l1"):
        net(*example_inputs(net.config), return_logits=True)


def test_default_bins_model_fits_the_limits(tmp_path):
    from policies.libero_vla.checkpoint import read_config, save_checkpoint
    from policies.libero_vla.model import LiberoVLANet, ModelConfig, count_parameters

    net = LiberoVLANet(ModelConfig(action_head="bins"))
    assert net.head[-1].weight.shape == (8 * 7 * 64, 512)
    assert count_parameters(net) < 20_000_000
    save_checkpoint(net, tmp_path / "ckpt")
    cfg = read_config(tmp_path / "ckpt")
    assert cfg["weights"]["params"] == count_parameters(net) and cfg["weights"]["bytes"] < 20_000_000


# --- ONNX ---------------------------------------------------------------------------------------------


def test_bins_onnx_export_parity_checks_features_and_logits(bins_onnx):
    import copy

    import onnx
    import torch

    from deploy.export.backbone_graph import parity, random_frames

    path, net = bins_onnx
    model = onnx.load(str(path))
    assert [o.name for o in model.graph.output] == ["features", "actions", "logits"]
    assert any(o.domain in ("", "ai.onnx") and o.version == 18 for o in model.opset_import)
    dims = [d.dim_value for d in model.graph.output[2].type.tensor_type.shape.dim]
    assert dims == [1, 4, 7, B]  # static
    frames = random_frames(net.config.interface(), 20, seed=2)
    r = parity(net, path, frames)
    assert r["passed"] and r["checked"] == ["features", "logits"] and r["max_abs_err"] <= 1e-4, r
    assert r["actions_differ"] == 0 and r["frames_with_differing_actions"] == 0, r  # no near-ties here
    # the check can fail: a torch net whose logits moved by 1e-3 (features unchanged) does not pass
    moved = copy.deepcopy(net)
    with torch.no_grad():
        moved.head[-1].bias += 1e-3
    bad = parity(moved, path, frames[:3], n_ref=1)
    assert not bad["passed"] and bad["max_abs_err_by_output"]["logits"] > 1e-4
    assert bad["max_abs_err_by_output"]["features"] <= 1e-4


def test_bins_onnx_backbone_matches_the_torch_backbone_without_torch(
    bins_ckpt, bins_onnx, make_observation, assert_onnx_backbone_is_torch_free, torch_and_onnx_backbones
):
    path, _ = bins_onnx
    tb, ob = torch_and_onnx_backbones(bins_ckpt, path)
    for t in range(5):
        obs = make_observation(seed=t, language="an instruction it never saw" if t == 3 else "put it")
        (z1, a1), (z2, a2) = tb(obs), ob(obs)
        assert np.abs(z1 - z2).max() <= 1e-4 and np.array_equal(a1, a2)
    assert_onnx_backbone_is_torch_free(path, 32, 16)


def test_cli_trains_bins_and_refuses_a_head_mismatch(tiny_demos, tmp_path, capsys):
    from cli import main

    out = tmp_path / "ckpt"
    model = [x for k, v in (("widths", "[8,8,8,8]"), ("groups", "4"), ("d_spatial", "8"), ("d_camera", "16"),
                            ("d_text", "16"), ("d_hidden", "32"), ("d_model", "16"), ("buckets", "64"))
             for x in ("--model-arg", f"{k}={v}")]  # fmt: skip
    base = ["train", "backbone", "--demos", str(tiny_demos), "--steps", "3", "--batch", "4",
            "--device", "cpu", "--no-progress", "--threads", "1"]  # fmt: skip
    assert (
        main(
            [*base, "--out", str(out), "--chunk", "4", *model, "--action-head", "bins", "--action-bins", "8"]
        )
        == 0
    )
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["action_head"] == "bins" and cfg["model"]["action_bins"] == 8
    assert (
        cfg["training"]["config"]["model"]["action_head"] == "bins"
        and cfg["training"]["recipe"]["action_head"] == "bins"
    )
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "ft"), "--init", str(out), "--action-head", "l1"]) == 2
    assert "--action-head" in capsys.readouterr().err
