"""One torch thread for every test: the suite runs many tiny ops, for which a second intra-op thread only
adds spin-waiting on a loaded (CI or shared) 2-core machine (up to 200x slower per op seen here)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def benchmark_script():
    """``load(name)``: ``benchmarks/<name>.py`` as a module (the scripts are standalone, not a package)."""
    root = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", root / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses and pickling look their module up
        spec.loader.exec_module(mod)
        return mod

    return load


@pytest.fixture(scope="session")
def tiny_vla_fields() -> dict:
    """The tiny libero_vla architecture the tests share (fields of ``policies.libero_vla.model.ModelConfig``;
    callers copy it before changing anything)."""
    return dict(
        image_size=32, widths=[8, 8, 8, 8], groups=4, d_spatial=8, d_camera=16, d_cam_id=4, d_text=16,
        d_proprio=8, d_hidden=32, d_model=16, chunk=4, buckets=64, max_tokens=32, dropout=0.0,
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_model_config(tiny_vla_fields):
    from policies.libero_vla.model import ModelConfig

    return ModelConfig.from_dict(dict(tiny_vla_fields))


def _has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.triton_interpreter`` / ``@pytest.mark.cuda_triton``: skip, naming what is missing."""
    needs = {m for item in items for m in ("triton_interpreter", "cuda_triton") if item.get_closest_marker(m)}
    if not needs:
        return
    triton = _has_triton()
    cuda = False
    if "cuda_triton" in needs and triton:
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:
            pass
    skips = {
        "triton_interpreter": None
        if triton
        else pytest.mark.skip(reason="needs the triton package (interpreter mode runs on the CPU)"),
        "cuda_triton": None if cuda else pytest.mark.skip(reason="needs a CUDA GPU and triton"),
    }
    for item in items:
        for name, skip in skips.items():
            if skip is not None and item.get_closest_marker(name):
                item.add_marker(skip)


@pytest.fixture
def triton_interpreter():
    """Run Python source in a fresh process with TRITON_INTERPRET=1 (set before triton loads, which a flag
    set inside this process could not be); returns its stdout lines. Kernels then run on the CPU."""

    def run(code: str, timeout: float = 300) -> list[str]:
        src = "import os\nos.environ['TRITON_INTERPRET'] = '1'\n" + code
        out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout.strip().splitlines()

    return run
