"""`aura bench runtime`'s Jetson projection on tiny graphs: floors = weight bytes / bandwidth, table, JSON."""

import json

import pytest

from cli import main
from deploy.export.bench import weight_bytes
from deploy.export.jetson import JETSON_BANDWIDTH, fp16_weight_bytes, jetson_projection, jetson_table


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory, tiny_model_config):
    import torch

    from deploy.export.backbone_graph import export_graph
    from policies.libero_vla.model import LiberoVLANet

    torch.manual_seed(0)
    net = LiberoVLANet(tiny_model_config)
    return export_graph(net, tmp_path_factory.mktemp("bb") / "backbone.onnx")


def test_projection_is_weight_bytes_over_bandwidth(tiny_onnx, tiny_backbone):
    step, _ = tiny_onnx
    proj = jetson_projection(step, tiny_backbone)
    assert "PROJECTION" in proj["label"] and "not a measurement" in proj["label"]
    assert [d["device"] for d in proj["devices"]] == [name for name, _ in JETSON_BANDWIDTH]
    assert {bw for _, bw in JETSON_BANDWIDTH} == {68e9, 102e9, 102.4e9, 204.8e9, 273e9}
    sb, bb = weight_bytes(step), weight_bytes(tiny_backbone)
    assert proj["step_weight_bytes"] == sb and proj["backbone_weight_bytes"] == bb
    assert bb / 2 < fp16_weight_bytes(tiny_backbone) == proj["backbone_weight_bytes_fp16"] < bb
    for d in proj["devices"]:
        assert d["step_floor_us"] == pytest.approx(sb / d["bandwidth_bytes_per_s"] * 1e6)
        assert d["backbone_floor_us_fp32"] == pytest.approx(bb / d["bandwidth_bytes_per_s"] * 1e6)
    lines = jetson_table(proj)
    assert len(lines) == 3 + len(JETSON_BANDWIDTH) and all("projected floor" in x for x in lines[3:])


def test_bench_runtime_prints_and_writes_the_projection(tiny_onnx, tiny_backbone, tmp_path, capsys):
    step, _ = tiny_onnx
    out = tmp_path / "bench.json"
    argv = ["bench", "runtime", "--model", str(step), "--backbone-model", str(tiny_backbone)]
    argv += [
        "--steps",
        "200",
        "--soak-steps",
        "0",
        "--skip-cuda",
        "--backbone-steps",
        "5",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "Jetson PROJECTION" in text and "| Thor: projected floor | 273.0 |" in text
    assert "this CPU, ORT 1 thread: MEASURED median" in text
    rep = json.loads(out.read_text())["jetson_projection"]
    assert len(rep["devices"]) == 5 and rep["backbone_cpu"]["steps"] == 5
    host = rep["cpu_measured"]
    assert host["step_median_us"] > 0 and host["backbone_median_us"] > 0 and host["step_over_backbone"] > 0
    with pytest.raises(SystemExit) as exc:  # argparse rejects it before any benchmark runs
        main(["bench", "runtime", "--skip-cpu", "--skip-cuda", "--backbone-steps", "0"])
    assert exc.value.code == 2 and "--backbone-steps: must be >= 1" in capsys.readouterr().err
