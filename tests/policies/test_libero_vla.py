"""The LIBERO pixel backbone (policies/libero_vla): contract, limits, frozen weights, tokenizer, chunk
execution, checkpoint errors, the fast demo loader, training + resume, ONNX export parity and the torch-free
ONNX twin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from policies.backbone import BackboneError, check_backbone, check_outputs
from policies.factory import make_backbone
from policies.libero_vla.execution import ChunkExecutor, finish
from policies.libero_vla.text import HashTokenizer

ROOT = Path(__file__).resolve().parents[2]
ONNX_CONFIG = "policies.libero_vla.onnx_backbone:LiberoVLAOnnxConfig"


# --- tokenizer and chunk execution (numpy) -------------------------------------------------------------


def test_tokenizer_is_deterministic_across_processes_and_handles_anything():
    tok = HashTokenizer()
    text = "put both the alphabet soup and the tomato sauce in the basket"
    ids = tok(text)
    assert ids.dtype == np.int64 and ids.shape == (tok.max_tokens,)
    assert (ids == tok(text)).all() and (ids[ids > 0] < tok.buckets).all() and (ids > 0).sum() > 20
    code = f"from policies.libero_vla.text import HashTokenizer; print(HashTokenizer()({text!r}).tolist())"
    env = dict(os.environ, PYTHONHASHSEED="12345")  # a salted hash() would change with this
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ids.tolist()
    assert not tok("").any()
    assert tok("Put THE bowl!").tolist() == tok("put the bowl").tolist()
    assert (tok("zorbify the quux onto the flibbertigibbet") > 0).sum() > 0  # unseen words still hash
    with pytest.raises(ValueError):
        tok(3)


def test_ensemble_is_the_act_weighted_mean_of_covering_chunks():
    k, m = 3, 0.5
    ex = ChunkExecutor(k, "ensemble", decay=m)
    chunks = [np.full((k, 7), float(i)) + np.arange(k)[:, None] * 10 for i in range(4)]
    got = []
    for c in chunks:
        assert ex.needs_plan()
        ex.push(c)
        got.append(ex.pop())
    # step 2 is covered by chunks 0 (index 2), 1 (index 1), 2 (index 0); oldest weight exp(0)
    w = np.exp(-m * np.arange(3))
    want = (w * np.array([0 + 20, 1 + 10, 2 + 0])).sum() / w.sum()
    assert np.allclose(got[2], want) and np.allclose(got[0], 0.0)
    ex.reset()
    assert ex.queued() == 0 and ex.t == 0


def test_open_loop_executes_n_action_steps_then_replans():
    ex = ChunkExecutor(4, "open_loop", n_action_steps=3)
    ex.push(np.arange(28, dtype=np.float32).reshape(4, 7))
    assert [ex.pop()[0] for _ in range(3)] == [0, 7, 14] and ex.needs_plan()
    with pytest.raises(ValueError):
        ChunkExecutor(4, "open_loop", n_action_steps=5)
    with pytest.raises(ValueError):
        ChunkExecutor(4, "sometimes")
    a = finish(np.array([2.0, -3, 0.2, 0, 0, 0, 0.05]))
    assert a.max() <= 1 and a.min() >= -1 and a[6] == 1.0 and finish(-a)[6] == -1.0


# --- the network, limits, checkpoints -----------------------------------------------------------------


def test_default_model_fits_the_parameter_and_file_limits(default_ckpt):
    from policies.libero_vla.checkpoint import read_config

    cfg = read_config(default_ckpt)
    size = (Path(default_ckpt) / "model.safetensors").stat().st_size
    assert cfg["weights"]["params"] <= 20_000_000 and size <= 20_000_000
    assert cfg["weights"]["bytes"] == size and cfg["weights"]["dtype"] == "float16"
    assert cfg["interface"]["d_model"] == 256 and cfg["interface"]["chunk"] == 8
    assert cfg["interface"]["image_size"] == 128


def test_rotation_features_are_continuous_where_axis_angle_flips():
    import torch

    from policies.libero_vla.model import rotation_6d

    a = torch.tensor([[np.pi - 1e-3, 0.0, 0.0], [-(np.pi - 1e-3), 0.0, 0.0], [0.0, 0.0, 0.0]])
    r = rotation_6d(a)
    assert torch.allclose(r[0], r[1], atol=1e-2)  # +-pi u: the same rotation
    assert torch.allclose(r[2], torch.tensor([1.0, 0, 0, 0, 1, 0]))
    c0, c1 = r[:, :3], r[:, 3:]
    assert (
        torch.allclose((c0 * c0).sum(-1), torch.ones(3), atol=1e-5) and (c0 * c1).sum(-1).abs().max() < 1e-5
    )


def test_fused_group_norm_matches_its_two_pass_twin():
    """The fused kernel (CUDA path) and the two-pass naive twin (CPU path) are one function: fresh random
    inputs, both memory formats, float64 and float32."""
    import torch
    import torch.nn.functional as F

    from policies.libero_vla.model import group_norm_two_pass

    g = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 2e-5)):
        x = (3 * torch.randn(4, 32, 9, 7, generator=g) + 5).to(dtype)
        w, b = torch.randn(32, generator=g).to(dtype), torch.randn(32, generator=g).to(dtype)
        for xin in (x, x.to(memory_format=torch.channels_last)):
            want = F.group_norm(xin, 8, w, b, 1e-5)
            got = group_norm_two_pass(xin, 8, w, b, 1e-5)
            assert got.dtype == dtype and (got - want).abs().max().item() < tol
    # and the module's dispatch: CPU goes through the twin, bit for bit
    from policies.libero_vla.model import GroupNorm

    m = GroupNorm(8, 32).double()
    torch.nn.init.normal_(m.weight, generator=g)
    x = torch.randn(2, 32, 5, 5, dtype=torch.float64, generator=g)
    assert torch.equal(m(x), group_norm_two_pass(x, 8, m.weight, m.bias, m.eps))


def test_corrupt_or_mismatched_checkpoints_raise_naming_the_file(tiny_ckpt, tmp_path):
    import shutil

    from policies.libero_vla.checkpoint import CheckpointError, load_checkpoint

    def copy(name):
        d = tmp_path / name
        shutil.copytree(tiny_ckpt, d)
        return d

    d = copy("bad_json")
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(d)
    d = copy("truncated")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["weights"].pop("sha256")  # now the safetensors parser itself must catch it
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(d)
    d = copy("mismatch")
    cfg = json.loads((d / "config.json").read_text())
    cfg["model"]["d_hidden"] = 48
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(d)
    with pytest.raises(CheckpointError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere")
    # through the registry: a BackboneError (ValueError) that still names the file
    with pytest.raises(BackboneError, match="model.safetensors") as exc:
        make_backbone("libero_vla", {"checkpoint": str(d), "device": "cpu"})
    assert isinstance(exc.value, ValueError)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(BackboneError, match="bad.onnx"):
        make_backbone(ONNX_CONFIG, {"model": str(bad)})


# --- the torch backbone -------------------------------------------------------------------------------


def test_torch_backbone_implements_the_contract(tiny_ckpt, make_observation):
    b = make_backbone("libero_vla", {"checkpoint": str(tiny_ckpt), "device": "cpu"})
    check_backbone(b)
    s = b.spec
    assert (s.d_model, s.d_action, s.chunk, s.image_size) == (16, 7, 4, 32)
    assert s.cameras == ("image", "wrist_image") and s.language and not s.privileged
    b.reset()
    for t in range(6):
        z, a = b(make_observation(seed=t))
        check_outputs(s, z, a)
        assert np.abs(a).max() <= 1.0 and a[6] in (-1.0, 1.0)
    with pytest.raises(BackboneError, match="image"):
        b({**make_observation(), "image": np.zeros((64, 64, 3), np.uint8)})
    with pytest.raises(BackboneError, match="wrist_image"):
        b({k: v for k, v in make_observation().items() if k != "wrist_image"})
    with pytest.raises(BackboneError, match="state"):
        b({**make_observation(), "state": np.zeros(7, np.float32)})


def test_open_loop_chunks_are_the_default(tiny_ckpt, make_observation):
    b = make_backbone("libero_vla", {"checkpoint": str(tiny_ckpt), "device": "cpu"})
    assert b.executor.mode == "open_loop" and b.executor.n_action_steps == b.spec.chunk
    for t in range(b.spec.chunk + 1):
        b(make_observation(seed=t))
    assert b.calls == b.spec.chunk + 1  # fresh_features: the network runs every step for z_t ...
    assert b.executor.queued() == b.spec.chunk - 1  # ... but plans only once per K steps


def test_reset_clears_the_action_queue(tiny_ckpt, make_observation):
    b = make_backbone("libero_vla", {"checkpoint": str(tiny_ckpt), "device": "cpu", "execution": "open_loop",
                                     "fresh_features": False})  # fmt: skip
    for t in range(3):
        b(make_observation(seed=t))
    assert b.executor.queued() == b.spec.chunk - 3 and b.calls == 1  # one plan for K steps
    b.reset()
    assert b.executor.queued() == 0
    b(make_observation())
    assert b.calls == 2  # the first step after reset plans again
    e = make_backbone("libero_vla", {"checkpoint": str(tiny_ckpt), "device": "cpu", "execution": "ensemble"})
    for t in range(3):
        e(make_observation(seed=t))
    assert e.executor.queued() == 3 and e.calls == 3
    e.reset()
    assert e.executor.queued() == 0


def test_backbone_is_frozen(tiny_ckpt, make_observation):
    import torch

    b = make_backbone("libero_vla", {"checkpoint": str(tiny_ckpt), "device": "cpu"})
    assert not b.net.training and not any(p.requires_grad for p in b.net.parameters())
    before = {k: v.clone() for k, v in b.net.state_dict().items()}
    head = torch.nn.Linear(b.spec.d_model + b.spec.d_action, 1)
    opt = torch.optim.SGD([*head.parameters(), *b.net.parameters()], lr=1.0)  # even if handed to an optimizer
    for t in range(3):
        z, a = b(make_observation(seed=t))
        loss = head(torch.from_numpy(np.concatenate([z, a]))).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in b.net.parameters())
    after = b.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_an_unseen_instruction_runs(tiny_ckpt, make_observation):
    b = make_backbone("libero_vla", {"checkpoint": str(tiny_ckpt), "device": "cpu"})
    z1, _ = b(make_observation(language="stack the purple teapot behind the microwave, gently"))
    z2, _ = b(make_observation(language=""))
    assert np.isfinite(z1).all() and np.isfinite(z2).all() and not np.allclose(z1, z2)


# --- demos and training -------------------------------------------------------------------------------


def test_loader_matches_h5py_on_both_decode_paths(tiny_demos):
    import h5py

    from policies.libero_vla.data import DemoFileError, load_demos

    d = load_demos(tiny_demos, threads=2, progress=False)
    assert d.frames == 14 + 11 + 9 + 12 + 10 and d.recipe["demos"] == 5 and d.recipe["tasks"] == 2
    assert d.recipe["decoder"].startswith(
        "6/10"
    )  # task0's videos by zlib threads, task1's (contiguous) by h5py
    assert [f["demos_used"] for f in d.recipe["files"]] == [3, 2]
    s = 0
    for f in ("task0_demo.hdf5", "task1_demo.hdf5"):
        with h5py.File(tiny_demos / f) as h:
            for name in sorted(h["data"], key=lambda k: int(k.split("_")[1])):
                g = h["data"][name]
                t = g["actions"].shape[0]
                assert (g["obs/agentview_rgb"][()] == d.image[s : s + t]).all()
                assert (g["obs/eye_in_hand_rgb"][()] == d.wrist_image[s : s + t]).all()
                assert np.allclose(g["actions"][()], d.action[s : s + t])
                s += t
    targets, valid = d.chunk_targets(4)
    last = d.episode_start[0] + d.episode_length[0] - 1  # last frame of the first demo
    assert valid[last].tolist() == [True, False, False, False] and (targets[last, 0] == d.action[last]).all()
    assert not targets[last, 1:].any()  # masked targets are 0: a masked error stays finite
    assert (targets[0, 1] == d.action[1]).all()
    assert load_demos(tiny_demos, max_demos_per_task=1, progress=False).recipe["demos"] == 2
    with pytest.raises(DemoFileError, match="nowhere"):
        load_demos(tiny_demos / "nowhere")


def test_training_reduces_the_loss_and_resume_continues(train_tiny, tmp_path):
    from policies.libero_vla.checkpoint import load_checkpoint

    out = tmp_path / "run"
    s = train_tiny(out, steps=100, lr=3e-3)
    log = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert s["step"] == 100 and s["stopped"] == "steps" and [r["step"] for r in log] == list(range(5, 101, 5))
    first, last = np.mean([r["loss"] for r in log[:3]]), np.mean([r["loss"] for r in log[-3:]])
    assert last < 0.7 * first, (first, last)
    cfg = json.loads((out / "config.json").read_text())["training"]
    assert cfg["command"] == "pytest tiny run" and cfg["seed"] == 0
    assert [f["demos_used"] for f in cfg["recipe"]["files"]] == [3, 2] and cfg["recipe"]["frames"] == 56
    assert cfg["summary"]["final_loss"] is not None and cfg["summary"]["samples_seen"] == 100 * 8
    s2 = train_tiny(out, steps=120, lr=3e-3, resume=True)
    log2 = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert s2["step"] == 120 and [r["step"] for r in log2[len(log) :]] == list(range(105, 121, 5))
    assert [c["started_at_step"] for c in s2["commands"]] == [0, 100]
    net, _ = load_checkpoint(out)
    assert net.config.chunk == 4 and not net.training
    s3 = train_tiny(out, resume=True)  # nothing left to do: same step, saved again
    assert s3["step"] == 120


def test_time_limit_stops_cleanly_with_a_checkpoint(train_tiny, tmp_path):
    from policies.libero_vla.checkpoint import load_checkpoint

    s = train_tiny(tmp_path / "run", steps=1000, time_limit=1.0)
    assert s["stopped"] == "time_limit" and s["step"] < 1000
    load_checkpoint(tmp_path / "run")


def test_fit_to_time_resizes_the_schedule_to_the_limit(train_tiny, tmp_path, monkeypatch):
    from policies.libero_vla import train

    for name, value in (("SAFETY_S", 0.5), ("SAVE_GUESS_S", 0.5), ("STEP_GUESS_S", 0.1)):
        monkeypatch.setattr(train, name, value)  # the real margins (GPU-sized) would need a long test
    s = train_tiny(tmp_path / "run", steps=100_000, time_limit=8.0, fit_to_time=True, log_every=10)
    fit = s["fitted"][0]
    assert fit["from_total"] == 100_000 and 60 < fit["to_total"] < 100_000
    assert s["total_steps"] == fit["to_total"] and s["wall_s"] < 8.0 and s["step"] > 60
    # the schedule runs out about when the clock does (on a loaded machine the clock may win: stopped cleanly)
    assert s["stopped"] in ("steps", "time_limit")


def test_cli_trains_and_exports(tiny_demos, tmp_path):
    from cli import main

    out = tmp_path / "ckpt"
    model = [x for k, v in (("widths", "[8,8,8,8]"), ("groups", "4"), ("d_spatial", "8"), ("d_camera", "16"),
                            ("d_text", "16"), ("d_hidden", "32"), ("d_model", "16"), ("buckets", "64"))
             for x in ("--model-arg", f"{k}={v}")]  # fmt: skip
    rc = main(
        [
            "train",
            "backbone",
            "--demos",
            str(tiny_demos),
            "--out",
            str(out),
            "--steps",
            "6",
            "--batch",
            "4",
            "--device",
            "cpu",
            "--chunk",
            "4",
            "--log-every",
            "3",
            "--no-progress",
            "--threads",
            "1",
            *model,
        ]
    )
    assert rc == 0 and (out / "model.safetensors").is_file()
    report = tmp_path / "export.json"
    rc = main(["export", "backbone", str(out), "--out", str(tmp_path / "b.onnx"), "--frames",
               str(tiny_demos / "task0_demo.hdf5"), "--n-frames", "20", "--json", str(report)])  # fmt: skip
    r = json.loads(report.read_text())
    assert rc == 0 and r["passed"] and r["frames"] == 20 and r["max_abs_err"] <= 1e-4
    assert main(["train", "backbone", "--demos", str(tmp_path / "none"), "--out", str(out)]) == 2


# --- ONNX: export parity and the torch-free backbone --------------------------------------------------


def test_onnx_export_matches_torch_on_random_frames(default_onnx):
    import onnx

    from deploy.export.backbone_graph import parity, random_frames

    path, net = default_onnx
    model = onnx.load(str(path))
    assert any(o.domain in ("", "ai.onnx") and o.version == 18 for o in model.opset_import)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert shapes == {"image": [1, 128, 128, 3], "wrist_image": [1, 128, 128, 3], "state": [1, 8],
                      "tokens": [1, 128]}  # fmt: skip
    r = parity(net, path, random_frames(net.config.interface(), 30, seed=1))
    assert r["passed"] and r["max_abs_err"] <= 1e-4, r


def test_onnx_backbone_matches_the_torch_backbone(
    default_ckpt, default_onnx, make_observation, torch_and_onnx_backbones
):
    tb, ob = torch_and_onnx_backbones(default_ckpt, default_onnx[0])
    for b in (tb, ob):
        b.reset()
    for t in range(5):
        obs = make_observation(
            size=128, seed=t, language="an instruction it never saw" if t == 3 else "put it"
        )
        (z1, a1), (z2, a2) = tb(obs), ob(obs)
        check_outputs(ob.spec, z2, a2)
        assert np.abs(z1 - z2).max() <= 1e-4 and np.abs(a1 - a2).max() <= 1e-4


def test_onnx_backbone_imports_no_torch(default_onnx, assert_onnx_backbone_is_torch_free):
    assert_onnx_backbone_is_torch_free(default_onnx[0], 128, 256)


def test_training_refuses_demos_from_the_evaluation_set(tmp_path, tiny_demos):
    """A demo recorded on one of LIBERO's 50 fixed init states (attrs init_state >= 0) is never training
    data."""
    import shutil

    import h5py

    from policies.libero_vla.data import DemoFileError, load_demos

    bad = tmp_path / "bad"
    shutil.copytree(tiny_demos, bad)
    first = sorted(bad.glob("task*_demo.hdf5"))[0]
    with h5py.File(first, "r+") as f:
        f["data/demo_0"].attrs["init_state"] = 7
    with pytest.raises(DemoFileError, match="fixed init state 7"):
        load_demos(bad, progress=False)


def test_unlabelled_frames_are_masked_and_init_fine_tunes(tiny_demos, train_tiny, tmp_path):
    """DAgger episodes (``aura sim rollouts --images``) have NaN actions where the expert is undefined: those
    frames are never a target, never in the statistics, and ``init`` fine-tunes a checkpoint under its own
    statistics instead of refitting them."""
    import h5py
    import torch

    from policies.libero_vla.checkpoint import load_checkpoint
    from policies.libero_vla.data import DemoFileError, load_demos
    from tests.policies.conftest import write_demo_file

    dagger = tmp_path / "dagger"
    dagger.mkdir()
    write_demo_file(dagger / "task0_k0000.hdf5", 0, [10], seed=7)
    with h5py.File(dagger / "task0_k0000.hdf5", "r+") as f:
        f["data/demo_0/actions"][3:6] = np.nan
    with pytest.raises(DemoFileError, match="non-finite"):  # a demo file with NaN actions is corrupt ...
        load_demos(dagger, progress=False, threads=1)
    with h5py.File(dagger / "task0_k0000.hdf5", "r+") as f:
        f["data"].attrs["unlabelled_rows"] = "nan"  # ... a DAgger episode's NaN rows are unsupervised
    demos = load_demos([tiny_demos, dagger], progress=False, threads=1)
    assert demos.frames == 56 + 10 and int(demos.labelled.sum()) == 63
    assert demos.recipe["labelled_frames"] == 63 and len(demos.recipe["source"]) == 2
    targets, valid = demos.chunk_targets(4)
    assert np.isfinite(targets).all()
    src = np.arange(demos.frames)[:, None] + np.arange(4)[None]  # the last episode: frames 56..65
    nan_rows = np.isin(src, [59, 60, 61])
    assert not valid[nan_rows].any() and valid[56:59, 0].all()

    base = tmp_path / "base"
    train_tiny(base, steps=5)
    tuned = tmp_path / "tuned"
    s = train_tiny(tuned, demos=[str(tiny_demos), str(dagger)], init=str(base), model={}, steps=5)
    assert s["step"] == 5 and np.isfinite(s["final_loss"])
    before, _ = load_checkpoint(base)
    after, cfg = load_checkpoint(tuned)
    for name in ("proprio_mean", "proprio_scale", "action_mean", "action_scale"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name  # kept, not refitted
    assert cfg["model"] == json.loads((base / "config.json").read_text())["model"]
    assert cfg["training"]["recipe"]["init"] == str(base)
    s = train_tiny(
        tuned, demos=[str(tiny_demos), str(dagger)], init=str(base), model={}, steps=7, resume=True
    )
    resumed, cfg = load_checkpoint(tuned)
    assert s["step"] == 7 and cfg["training"]["recipe"]["init"] == str(base)
    assert torch.equal(resumed.action_scale, before.action_scale)  # the state's statistics, not refitted
    with pytest.raises(ValueError, match="--init"):
        train_tiny(tmp_path / "bad", init=str(base), steps=1)  # an architecture override with --init
    with h5py.File(dagger / "task0_k0000.hdf5", "r+") as f:
        f["data/demo_0/actions"][:] = np.nan
    with pytest.raises(DemoFileError, match="no frame has a finite action label"):
        load_demos(dagger, progress=False, threads=1)


def test_blank_instruction_trains_some_samples_without_one(tiny_demos, train_tiny, tmp_path):
    """--blank-instruction P: each sample's tokens are the empty instruction's with probability P (all at 1,
    none at 0, and at 0 the random stream is the one from before the option); out of [0, 1] is refused."""
    import torch

    from policies.libero_vla.data import load_demos
    from policies.libero_vla.text import HashTokenizer
    from policies.libero_vla.train import DeviceData

    tok = HashTokenizer()
    data = DeviceData(load_demos(str(tiny_demos), None, 1, progress=False), 4, tok, "cpu")
    blank = torch.from_numpy(tok(""))
    draws = {p: data.batch(64, 2, torch.Generator().manual_seed(3), p)[3] for p in (0.0, 0.5, 1.0)}
    plain = data.batch(64, 2, torch.Generator().manual_seed(3))[3]
    is_blank = {p: (t == blank).all(-1) for p, t in draws.items()}
    assert torch.equal(draws[0.0], plain) and not is_blank[0.0].any() and is_blank[1.0].all()
    assert 10 < int(is_blank[0.5].sum()) < 54
    with pytest.raises(ValueError, match="--blank-instruction"):
        train_tiny(tmp_path / "bad", steps=2, blank_instruction=1.5)
    s = train_tiny(tmp_path / "ok", steps=10, blank_instruction=0.3)
    cfg = json.loads((tmp_path / "ok" / "config.json").read_text())["training"]["config"]
    assert s["step"] == 10 and cfg["blank_instruction"] == 0.3
