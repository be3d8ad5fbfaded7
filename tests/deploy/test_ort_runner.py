"""ONNX Runtime runner against the torch step: parity, exact commits, fallback, boundary errors."""

import numpy as np
import pytest

from deploy.export.step_graph import parity
from deploy.runtime.errors import InputError, ModelFileError
from deploy.runtime.ort_runner import OrtRunner
from deploy.runtime.state import WriteRecord, apply_write


def test_runner_follows_torch_and_commits_exactly(tiny_onnx, rng):
    import torch

    path, module = tiny_onnx
    runner = OrtRunner(path)
    spec = runner.spec
    s_torch = torch.zeros(spec.state.shape)
    replay = spec.state.zeros()
    writes = 0
    for _ in range(300):
        z = rng.standard_normal(spec.d_model).astype(np.float32)
        a = rng.standard_normal(spec.d_action).astype(np.float32)
        before = runner.state.copy()
        res = runner.step(z, a)
        with torch.no_grad():
            o = module.step(torch.from_numpy(z)[None], torch.from_numpy(a)[None], s_torch)
        assert res.write == bool(o.write[0])
        assert np.abs(res.action - o.action[0].numpy()).max() <= 1e-5
        if res.write:
            rec = WriteRecord(spec.state)
            rec.flat[:] = runner.record.flat
            runner.commit()
            apply_write(replay, rec)
            writes += 1
        else:
            assert runner.state.tobytes() == before.tobytes()  # a non-write leaves the state bit-identical
        s_torch = o.state
        assert np.abs(runner.state - s_torch.numpy()).max() <= 1e-5
        assert runner.state.tobytes() == replay.tobytes()  # what the journal would replay, bit for bit
    assert 30 < writes < 270


def test_parity_report_on_the_tiny_graph(tiny_onnx):
    path, module = tiny_onnx
    rep = parity(module, path, steps=500)
    assert rep["passed"] and rep["write_disagreements"] == 0 and rep["max_abs_err"] <= 1e-5


def test_nonfinite_input_falls_back_to_the_base_action(tiny_onnx, rng):
    path, _ = tiny_onnx
    runner = OrtRunner(path)
    z = rng.standard_normal(runner.spec.d_model).astype(np.float32)
    a = rng.standard_normal(runner.spec.d_action).astype(np.float32)
    runner.step(z, a)
    runner.commit()
    before = runner.state.copy()
    for bad, reason in ((np.nan, "nonfinite_features"), (np.inf, "nonfinite_features")):
        zb = z.copy()
        zb[3] = bad
        res = runner.step(zb, a)
        assert res.fallback == reason and not res.write
        assert np.array_equal(res.action, a)
    ab = a.copy()
    ab[0] = np.nan
    assert runner.step(z, ab).fallback == "nonfinite_base_action"
    assert runner.fallbacks == 3
    assert runner.state.tobytes() == before.tobytes()


def test_suppressed_write_keeps_state_and_uses_the_skip_action(tiny_onnx, rng):
    import torch

    path, module = tiny_onnx
    runner = OrtRunner(path)
    runner.load_state(rng.standard_normal(runner.spec.state.shape).astype(np.float32) * 0.1)
    for _ in range(100):
        z = rng.standard_normal(runner.spec.d_model).astype(np.float32)
        a = np.zeros(runner.spec.d_action, dtype=np.float32)
        before = runner.state.copy()
        if runner.step(z, a).write:
            break
    else:
        pytest.fail("the tiny gate never asked for a write")
    runner.suppress()
    assert runner.state.tobytes() == before.tobytes()
    with torch.no_grad():
        skip = module.skip_action(
            torch.from_numpy(z)[None], torch.from_numpy(a)[None], torch.from_numpy(before)
        )
    assert np.abs(runner.action - skip.numpy()).max() <= 1e-5


def test_wrong_shape_or_dtype_names_the_tensor(tiny_onnx):
    path, _ = tiny_onnx
    runner = OrtRunner(path)
    d, a = runner.spec.d_model, runner.spec.d_action
    with pytest.raises(InputError, match="features: expected dtype float32, got float64"):
        runner.step(np.zeros(d), np.zeros(a, np.float32))
    with pytest.raises(InputError, match=r"base_action: expected shape \(1, 5\)"):
        runner.step(np.zeros(d, np.float32), np.zeros(a + 1, np.float32))
    with pytest.raises(InputError, match="features: expected a numpy.ndarray, got list"):
        runner.step([0.0] * d, np.zeros(a, np.float32))
    with pytest.raises(InputError, match="state: expected shape"):
        runner.load_state(np.zeros((3, 3), np.float32))


def test_bad_model_files_raise_errors_naming_the_file(tiny_onnx, tmp_path):
    path, _ = tiny_onnx
    data = path.read_bytes()
    with pytest.raises(ModelFileError, match="missing.onnx: ONNX model file not found"):
        OrtRunner(tmp_path / "missing.onnx")
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="trunc.onnx: not a loadable ONNX model"):
        OrtRunner(tmp_path / "trunc.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelFileError, match="junk.onnx"):
        OrtRunner(tmp_path / "junk.onnx")
    with pytest.raises(ModelFileError, match="tiny.onnx: model dimensions .* do not match"):
        from deploy.runtime.runner import ModelSpec
        from deploy.runtime.state import StateSpec

        OrtRunner(path, expect=ModelSpec(d_model=7, d_action=5, state=StateSpec(2, 8, 8)))


def test_a_graph_without_the_step_contract_is_rejected(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("action", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["features"], ["action"])], "g", [x], [y])
    p = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), p)
    with pytest.raises(
        ModelFileError, match=r"other.onnx: not an AURA step graph: missing tensors \['base_action'"
    ):
        OrtRunner(p)
