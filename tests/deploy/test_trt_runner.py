"""TensorRT runner (Jetson / TensorRT 10.x). Skips, naming TensorRT, where the package is not installed."""

import numpy as np
import pytest

from deploy.runtime.errors import ModelFileError
from deploy.runtime.trt_runner import trt_available

needs_trt = pytest.mark.skipif(
    not trt_available(),
    reason="needs TensorRT 10.x (python package 'tensorrt') and a CUDA GPU, e.g. a Jetson with JetPack 6",
)


@needs_trt
def test_trt_engine_matches_onnx_runtime(tiny_onnx, tmp_path, rng):
    from deploy.runtime.ort_runner import OrtRunner
    from deploy.runtime.trt_runner import TrtRunner, build_engine

    path, _ = tiny_onnx
    engine = build_engine(path, tmp_path / "tiny.engine")
    trt_r, ort_r = TrtRunner(engine), OrtRunner(path)
    assert trt_r.spec == ort_r.spec
    flips = 0
    for _ in range(500):
        z = rng.standard_normal(ort_r.spec.d_model).astype(np.float32)
        a = rng.standard_normal(ort_r.spec.d_action).astype(np.float32)
        rt, ro = trt_r.step(z, a), ort_r.step(z, a)
        flips += rt.write != ro.write
        assert np.abs(rt.action - ro.action).max() <= 1e-4
        if ro.write:  # both follow the CPU's decision so the states stay comparable
            trt_r.commit()
            ort_r.commit()
        # each runner commits its own engine's factored record: equal up to fused-multiply-add rounding
        assert np.abs(trt_r.state - ort_r.state).max() <= 1e-5
    assert flips <= 1
    trt_r.close()


@needs_trt
def test_bad_engine_file_is_named(tmp_path):
    from deploy.runtime.trt_runner import TrtRunner

    bad = tmp_path / "broken.engine"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="broken.engine: not a TensorRT engine"):
        TrtRunner(bad)
