"""TensorRT 10.3 parser check (deploy/export/trt_check.py): both exported graphs pass, planted graphs fail.

The real graphs are exported here through `aura export --check-trt` and `aura export backbone --check-trt`
from a tiny AuraMem and a tiny libero_vla net; each planted graph breaks one parser rule and its message must
name the node and op type.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as oh

from cli import main
from deploy.export.trt_check import cast_uint8_inputs, check_report, check_trt


def test_exported_auramem_step_passes(tmp_path, capsys):
    import torch

    from aura.layer import AuraMem

    torch.manual_seed(0)
    AuraMem(d_model=16, d_action=4, d_key=8, d_val=8, heads=2).save(tmp_path / "ckpt")
    out = tmp_path / "step.onnx"
    argv = ["export", str(tmp_path / "ckpt"), "--out", str(out), "--check-trt", "--parity-steps", "300"]
    rc = main(argv)
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "TensorRT 10.3 parser check: passed (" in text and "ReduceSum" in text, text
    assert "write-flag disagreements: 0" in text
    assert check_trt(out) == []
    assert onnx.load(out).ir_version <= 10


def test_exported_libero_vla_backbone_passes(tmp_path, capsys, tiny_model_config):
    import torch

    from policies.libero_vla.checkpoint import save_checkpoint
    from policies.libero_vla.model import LiberoVLANet

    torch.manual_seed(0)
    ckpt = save_checkpoint(LiberoVLANet(tiny_model_config), tmp_path / "ckpt")
    out = tmp_path / "backbone.onnx"
    rc = main(["export", "backbone", str(ckpt), "--out", str(out), "--n-frames", "3", "--check-trt"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "TensorRT 10.3 parser check: passed (" in text and "Conv" in text, text
    model = onnx.load(out)
    # the uint8 images feed a Cast directly (torch's exporter had them go through Concat and Transpose)
    consumers = [n.op_type for n in model.graph.node if {"image", "wrist_image"} & set(n.input)]
    assert consumers == ["Cast", "Cast"]
    assert check_trt(model) == []


def _model(nodes, inputs, outputs, inits=(), opset=18, ir=10, **kw):
    graph = oh.make_graph(nodes, "planted", inputs, outputs, initializer=list(inits))
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)], **kw)
    model.ir_version = ir
    return model


def _vi(name, dtype, shape):
    return oh.make_tensor_value_info(name, dtype, shape)


def _axes(name, values):
    return onnx.numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _one(problems, *words):
    assert len(problems) == 1, problems
    for w in words:
        assert w in problems[0], problems[0]
    return problems[0]


def test_an_op_tensorrt_lacks_is_named():
    x, y = _vi("x", T.FLOAT, [2, 2]), _vi("y", T.FLOAT, [])
    model = _model([oh.make_node("Det", ["x"], ["y"], name="det_0")], [x], [y])
    _one(check_trt(model), "'det_0'", "(Det)", "not supported")
    made_up = oh.make_node("Frobnicate", ["x"], ["y"], name="frob", domain="com.example")
    model = _model([made_up], [x], [_vi("y", T.FLOAT, [2, 2])])
    model.opset_import.append(oh.make_opsetid("com.example", 1))
    _one(check_trt(model), "'frob'", "(Frobnicate)", "plugin")


def test_reduce_sum_with_runtime_axes_fails():
    node = oh.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum_rt", keepdims=1)
    model = _model([node], [_vi("x", T.FLOAT, [2, 3]), _vi("axes", T.INT64, [1])], [_vi("y", T.FLOAT, None)])
    _one(check_trt(model), "'sum_rt'", "(ReduceSum)", "axes must be an initializer", "runtime graph input")
    # the same axes as an initializer or as a Constant's output pass
    model = _model([node], [_vi("x", T.FLOAT, [2, 3])], [_vi("y", T.FLOAT, [2, 1])], [_axes("axes", [1])])
    assert check_trt(model) == []
    const = oh.make_node("Constant", [], ["axes"], value=_axes("v", [1]))
    model = _model([const, node], [_vi("x", T.FLOAT, [2, 3])], [_vi("y", T.FLOAT, [2, 1])])
    assert check_trt(model) == []


def test_axes_folded_from_constants_are_told_apart():
    ident = oh.make_node("Identity", ["a0"], ["axes"], name="id_axes")
    node = oh.make_node("Unsqueeze", ["x", "axes"], ["y"], name="unsq")
    model = _model([ident, node], [_vi("x", T.FLOAT, [3])], [_vi("y", T.FLOAT, [1, 3])], [_axes("a0", [0])])
    _one(check_trt(model), "'unsq'", "(Unsqueeze)", "Identity 'id_axes'", "from constants only")
    shape = oh.make_node("Shape", ["x"], ["s"], name="shape")
    node = oh.make_node("Squeeze", ["x", "s"], ["y"], name="sq")
    model = _model([shape, node], [_vi("x", T.FLOAT, [1])], [_vi("y", T.FLOAT, None)])
    _one(check_trt(model), "'sq'", "(Squeeze)", "runtime input(s) ['x']")


def test_bool_reduce_max_fails():
    node = oh.make_node("ReduceMax", ["x", "axes"], ["y"], name="any_write", keepdims=0)
    model = _model([node], [_vi("x", T.BOOL, [4])], [_vi("y", T.BOOL, [])], [_axes("axes", [0])], opset=20)
    _one(check_trt(model), "'any_write' (ReduceMax)", "reduction of a BOOL tensor")


def test_opset_21_and_ir_11_and_double_io_fail():
    node = oh.make_node("Add", ["x", "x"], ["y"], name="add")
    f = [_vi("x", T.FLOAT, [2])], [_vi("y", T.FLOAT, [2])]
    _one(check_trt(_model([node], *f, opset=21)), "opset 21", "9-20")
    _one(check_trt(_model([node], *f, ir=11)), "IR version 11", "<= 10")
    assert check_trt(_model([node], *f)) == []
    problems = check_trt(_model([node], [_vi("x", T.DOUBLE, [2])], [_vi("y", T.DOUBLE, [2])]))
    assert any(p.startswith("input 'x': dtype DOUBLE") for p in problems), problems
    assert any("'add' (Add): input 'x' is DOUBLE" in p for p in problems), problems


def test_uint8_only_into_a_cast_and_the_export_fix():
    x = [_vi("a", T.UINT8, [1, 2, 2, 3]), _vi("b", T.UINT8, [1, 2, 2, 3])]
    nodes = [
        oh.make_node("Concat", ["a", "b"], ["ab"], name="cat", axis=0),
        oh.make_node("Transpose", ["ab"], ["t"], name="perm", perm=[0, 3, 1, 2]),
        oh.make_node("Cast", ["t"], ["y"], name="to_float", to=T.FLOAT),
    ]
    model = _model(nodes, x, [_vi("y", T.FLOAT, [2, 3, 2, 2])])
    problems = check_trt(model)
    assert len(problems) == 3 and all("UINT8" in p for p in problems), problems
    assert "'cat' (Concat): input 'a' is UINT8" in problems[0]
    ort = pytest.importorskip("onnxruntime")
    feeds = {
        k: np.random.default_rng(i).integers(0, 256, (1, 2, 2, 3), dtype=np.uint8) for i, k in enumerate("ab")
    }
    before = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    assert cast_uint8_inputs(model) == ["a", "b"]
    onnx.checker.check_model(model, full_check=True)
    assert check_trt(model) == []
    after = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    assert np.array_equal(before, after)
    # arithmetic on uint8 (it wraps) is left alone, and the check names the node
    add = [
        oh.make_node("Add", ["a", "b"], ["s"], name="u8_add"),
        oh.make_node("Cast", ["s"], ["y"], to=T.FLOAT),
    ]
    model = _model(add, x, [_vi("y", T.FLOAT, [1, 2, 2, 3])])
    assert cast_uint8_inputs(model) == []
    assert any("'u8_add' (Add): input 'a' is UINT8" in p for p in check_trt(model))


def test_attribute_forms_and_report_lines():
    x = _vi("x", T.FLOAT, [1, 1, 4, 4])
    pool = oh.make_node("MaxPool", ["x"], ["y", "idx"], name="pool", kernel_shape=[2, 2], dilations=[2, 2])
    model = _model([pool], [x], [_vi("y", T.FLOAT, None), _vi("idx", T.INT64, None)])
    problems = check_trt(model)
    assert any("'pool' (MaxPool): dilations" in p for p in problems), problems
    assert any("'pool' (MaxPool): the Indices output" in p for p in problems), problems
    ok, lines = check_report(model)
    assert not ok and lines[0].startswith("TensorRT 10.3 parser check: FAILED (2 problems")
    relu = oh.make_node("Relu", ["x"], ["y"], name="relu")
    ok, lines = check_report(_model([relu], [x], [_vi("y", T.FLOAT, [1, 1, 4, 4])]))
    assert ok and lines == ["TensorRT 10.3 parser check: passed (1 nodes, ops: Relu)"]


def test_check_trt_cli_prints_one_problem_per_line(tmp_path, capsys):
    from cli.export import check_trt_cli

    nodes = [
        oh.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum_rt"),
        oh.make_node("Det", ["y"], ["z"]),
    ]
    x = [_vi("x", T.FLOAT, [2, 2, 2]), _vi("axes", T.INT64, [1])]
    path = tmp_path / "bad.onnx"
    onnx.save(_model(nodes, x, [_vi("z", T.FLOAT, None)], opset=21), path)
    report = {}
    assert check_trt_cli(path, report) is False
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("TensorRT 10.3 parser check: FAILED (3 problems")
    assert "opset 21" in lines[1] and "'sum_rt' (ReduceSum)" in lines[2] and "'#1' (Det)" in lines[3]
    assert report["trt_check"]["passed"] is False and len(report["trt_check"]["lines"]) == 4
