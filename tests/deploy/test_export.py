"""aura export on a real AuraMem checkpoint: opset 18, full check, parity; bad checkpoints are named."""

import json

import numpy as np
import onnx

from cli import main


def test_aura_export_cli_on_an_auramem_checkpoint(tmp_path, capsys):
    import torch

    from aura.layer import AuraMem

    torch.manual_seed(0)
    layer = AuraMem(d_model=32, d_action=8)
    with torch.no_grad():
        layer.head.weight.normal_(0, 0.2)  # a non-zero correction so actions depend on the memory
        # a gate that writes on about half of the steps: pick the output bias that gets closest
        zs = torch.randn(60, 1, 32)
        best = None
        for bias in np.linspace(-4.0, 4.0, 17):
            layer.gate.mlp[2].bias.fill_(float(bias))
            s, writes = layer.init_state(1), 0
            for z in zs:
                o = layer.step(z, torch.zeros(1, 8), s)
                s, writes = o.state, writes + int(o.write)
            if best is None or abs(writes - 30) < best[0]:
                best = (abs(writes - 30), float(bias))
        layer.gate.mlp[2].bias.fill_(best[1])
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


def test_aura_export_names_a_bad_checkpoint(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{not json")
    assert main(["export", str(tmp_path / "ckpt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "ckpt" in capsys.readouterr().err
