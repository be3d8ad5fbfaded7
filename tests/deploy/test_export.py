"""aura export on a real AuraMem checkpoint: opset 18, full check, parity; bad checkpoints are named."""

import json

import numpy as np
import onnx

from cli import main


def _gate_writes_about_half(layer) -> None:
    """Set the gate's output bias to the one (of a grid) that writes closest to half of 60 random steps."""
    import torch

    cfg = layer.config
    with torch.no_grad():
        zs = torch.randn(60, 1, cfg.d_model)
        best = None
        for bias in np.linspace(-4.0, 4.0, 17):
            layer.gate.mlp[2].bias.fill_(float(bias))
            s, writes = layer.init_state(1), 0
            for z in zs:
                o = layer.step(z, torch.zeros(1, cfg.d_action), s)
                s, writes = o.state, writes + int(o.write)
            if best is None or abs(writes - 30) < best[0]:
                best = (abs(writes - 30), float(bias))
        layer.gate.mlp[2].bias.fill_(best[1])


def test_aura_export_cli_on_an_auramem_checkpoint(tmp_path, capsys):
    import torch

    from aura.layer import AuraMem

    torch.manual_seed(0)
    layer = AuraMem(d_model=32, d_action=8)
    with torch.no_grad():
        layer.head.weight.normal_(0, 0.2)  # a non-zero correction so actions depend on the memory
    _gate_writes_about_half(layer)
    layer.save(tmp_path / "ckpt")
    out, report = tmp_path / "m.onnx", tmp_path / "export.json"
    rc = main(
        ["export", str(tmp_path / "ckpt"), "--out", str(out), "--parity-steps", "400", "--json", str(report)]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "max abs error" in text and "write-flag disagreements: 0" in text
    rep = json.loads(report.read_text())
    par = rep["parity"]
    assert par["passed"] and par["max_abs_err"] <= 1e-5 and par["write_disagreements"] == 0
    assert 0 < par["writes_torch"] < 400
    model = onnx.load(out)
    assert any(o.domain in ("", "ai.onnx") and o.version == 18 for o in model.opset_import)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["aura.d_model"] == "32" and meta["aura.d_key"] == "32"
    # every graph dimension is static
    for vi in list(model.graph.input) + list(model.graph.output):
        assert all(d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim), vi.name
    from deploy.runtime.ort_runner import OrtRunner

    r = OrtRunner(out)
    assert r.spec.state.state_bytes == 4224
    res = r.step(np.zeros(32, np.float32), np.ones(8, np.float32))
    assert res.fallback is None and res.action.shape == (8,)


def test_aura_export_of_an_mlp_readout_checkpoint_passes_parity(tmp_path, capsys):
    """readout="mlp" (aura.readout): the step graph carries the MLP term in both action and action_skip."""
    import torch

    from aura.layer import AuraMem, AuraMemConfig

    torch.manual_seed(1)
    layer = AuraMem(AuraMemConfig(d_model=32, d_action=8, readout="mlp", readout_hidden=16))
    with torch.no_grad():
        layer.head.weight.normal_(0, 0.2)
        layer.readout.fc2.weight.normal_(0, 0.2)
        layer.readout.fc2.bias.normal_(0, 0.2)
    _gate_writes_about_half(layer)
    layer.save(tmp_path / "ckpt")
    out, report = tmp_path / "m.onnx", tmp_path / "export.json"
    argv = [
        "export",
        str(tmp_path / "ckpt"),
        "--out",
        str(out),
        "--parity-steps",
        "300",
        "--json",
        str(report),
    ]
    rc = main([*argv, "--check-trt"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "TensorRT 10.3 parser check: passed (" in text, text
    par = json.loads(report.read_text())["parity"]
    assert par["passed"] and par["max_abs_err"] <= 1e-5 and par["write_disagreements"] == 0, par
    assert par["max_abs_err_by_output"]["action_skip"] <= 1e-5
    assert par["runtime_max_abs_err_by_output"]["action"] <= 1e-5 and par["runtime_write_disagreements"] == 0
    assert 0 < par["writes_torch"] < 300
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["aura.readout"] == "mlp"
    # action and action_skip are the MLP read-out's (not the linear part's alone), as the layer computes them
    # with and without this step's write
    import onnxruntime as ort

    loaded = AuraMem.load(tmp_path / "ckpt")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(3)
    no = torch.zeros(1, dtype=torch.bool)
    for _ in range(5):
        z = torch.from_numpy(rng.standard_normal((1, 32)).astype(np.float32))
        base = torch.from_numpy(rng.standard_normal((1, 8)).astype(np.float32))
        state = torch.from_numpy(rng.standard_normal((1, 1, 33, 32)).astype(np.float32)) * 0.3
        feed = {"features": z.numpy(), "base_action": base.numpy(), "state": state.numpy()}
        got = dict(zip(names, sess.run(None, feed)))
        with torch.no_grad():
            p, zf = loaded.project(z), loaded.gate.z_features(z)
            wrote = loaded.step(z, base, state)
            skipped, _ = loaded._core(p, zf, base, state, force=no, z=z)
            mlp_term = loaded.readout(z, loaded.read(state, p.q).flatten(1))
        assert np.abs(got["action"] - wrote.action.numpy()).max() <= 1e-5
        assert np.abs(got["action_skip"] - skipped.action.numpy()).max() <= 1e-5
        assert mlp_term.abs().max() > 0.05


def test_aura_export_names_a_bad_checkpoint(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{not json")
    assert main(["export", str(tmp_path / "ckpt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "ckpt" in capsys.readouterr().err
