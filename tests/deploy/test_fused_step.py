"""Fused Triton step vs its naive twin (AuraMem.step), both against float64, on fresh random inputs.

On the CPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, in a subprocess so the flag is set
before triton loads); on a CUDA machine they run natively, and the CUDA-graph runner is checked too.
"""

import json
import os

import pytest

CHECK = r"""
import json, os, sys
import torch
from aura.layer import AuraMem
from deploy.export.fused_step import FusedStep

def check(device, d_model, seeds, max_norm=1.0e4, **options):
    worst = {"fused": 0.0, "naive": 0.0, "flips": 0, "cases": 0}
    for seed in seeds:
        torch.manual_seed(seed)
        layer = AuraMem(d_model=d_model, d_action=7, max_state_norm=max_norm).eval()
        with torch.no_grad():
            layer.head.weight.normal_(0, 0.3)
            layer.gate.mlp[2].bias.normal_(0, 1.0)
        layer = layer.to(device)
        fs = FusedStep(layer, **options)
        z, base = torch.randn(1, d_model, device=device), torch.randn(1, 7, device=device)
        state = torch.randn(1, 1, 33, 32, device=device) * 0.3
        e = lambda *s: torch.empty(*s, device=device)
        w8 = torch.empty(1, dtype=torch.int8, device=device)
        out = dict(out_state=e(33 * 32), action=e(7), skip=e(7), write=w8,
                   prob=e(1), decay=e(32), key=e(32), delta=e(32), aux=e(32))
        fs.token.fill_(1000 + seed)
        fs(z.reshape(-1), base.reshape(-1), state.reshape(-1), **out)
        if device == "cuda":
            torch.cuda.synchronize()  # done is host memory: reading it does not wait for the kernel
        worst["token_echoed"] = worst.get("token_echoed", True) and int(fs.done.item()) == 1000 + seed
        with torch.no_grad():
            n32 = layer.step(z, base, state)
            ref = layer.double().step(z.double(), base.double(), state.double())
            p = layer.double().project(z.double())
            ref_skip = base.double() + layer.correction(layer.read(state.double(), p.q))
            layer.float()
        if (ref.gate_prob - layer.config.threshold).abs().item() < 1e-4:
            continue  # a decision this close to tau may legitimately flip in fp32
        worst["cases"] += 1
        worst["flips"] += int(bool(out["write"].item()) != bool(ref.write.item()))
        pairs = [(out["action"], n32.action, ref.action), (out["skip"], None, ref_skip),
                 (out["out_state"], n32.state, ref.state), (out["prob"], n32.gate_prob, ref.gate_prob),
                 (out["decay"], n32.decay, ref.decay), (out["key"], n32.key, ref.key),
                 (out["delta"], n32.delta, ref.delta), (out["aux"], n32.aux, ref.aux)]
        for f, n, r in pairs:
            r = r.reshape(-1)
            scale = r.abs().max().item() + 1e-6
            worst["fused"] = max(worst["fused"], (f.double().reshape(-1) - r).abs().max().item() / scale)
            if n is not None:
                worst["naive"] = max(worst["naive"], (n.double().reshape(-1) - r).abs().max().item() / scale)
    return worst
"""


def _assert_close(res):
    assert res["cases"] >= 3 and res["flips"] == 0, res
    assert res["token_echoed"], res  # the completion token a spinning host waits for
    # relative to float64: the fused fp32 path is as accurate as the eager fp32 path (same order of rounding)
    assert res["fused"] <= max(4 * res["naive"], 2e-6), res


@pytest.mark.triton_interpreter
def test_fused_step_matches_float64_in_the_triton_interpreter(triton_interpreter):
    code = (
        CHECK
        + "print(json.dumps(check('cpu', 256, range(5))))\n"
        + "print(json.dumps(check('cpu', 256, range(5, 9), single=True, ksplit=4, block_n=32)))\n"
        # a bound below the state's norm (~10): the guard acts on every write
        + "print(json.dumps(check('cpu', 256, range(9, 13), max_norm=2.0)))\n"
    )
    for line in triton_interpreter(code)[-3:]:
        _assert_close(json.loads(line))


def test_fused_step_refuses_an_mlp_readout():
    """The fused tail computes a = a_base + W_c r only: it refuses readout="mlp", naming the option."""
    pytest.importorskip("triton", reason="the fused step needs the triton package")
    from aura.layer import AuraMem, AuraMemConfig
    from deploy.export.fused_step import FusedStep

    layer = AuraMem(AuraMemConfig(d_model=256, d_action=7, readout="mlp")).eval()
    with pytest.raises(
        NotImplementedError, match=r"AuraMemConfig.readout 'linear' only \(got readout 'mlp'\)"
    ):
        FusedStep(layer)


def _runner_layer(seed: int):
    """An AURA-sized layer with a non-trivial action head, for the CUDA-graph runner tests."""
    import torch

    from aura.layer import AuraMem

    torch.manual_seed(seed)
    layer = AuraMem(d_model=4096, d_action=7).eval()
    with torch.no_grad():
        layer.head.weight.normal_(0, 0.05)
    return layer


def _step_inputs(seed: int, steps: int):
    """(features, base action) pairs of fresh N(0, 1) float32 values."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        yield rng.standard_normal(4096).astype(np.float32), rng.standard_normal(7).astype(np.float32)


VARIANTS = [
    {},
    {"single": True, "ksplit": 64, "block_n": 32},
    {"single": True, "tail_warps": 4},
    {"echo": "atomic"},
]
VARIANT_IDS = ["two-kernel", "one-kernel-w1", "one-kernel-w4", "echo-atomic"]
# AURA_GPU_QUICK=1 (scripts/test_gpu.sh's quick set): the two launch shapes only, zero-copy I/O only; each
# other variant is one more pair of Triton compilations
QUICK = os.environ.get("AURA_GPU_QUICK", "") not in ("", "0")
RUN_VARIANTS = (VARIANTS[:2], VARIANT_IDS[:2]) if QUICK else (VARIANTS, VARIANT_IDS)
ZERO_COPY = ([True], ["zero-copy"]) if QUICK else ([True, False], ["zero-copy", "memcpy"])


@pytest.mark.cuda_triton
@pytest.mark.parametrize("options", RUN_VARIANTS[0], ids=RUN_VARIANTS[1])
def test_fused_step_matches_float64_on_cuda(options):
    scope: dict = {}
    exec(CHECK, scope)
    _assert_close(scope["check"]("cuda", 4096, range(10), **options))


@pytest.mark.cuda_triton
@pytest.mark.parametrize("options", RUN_VARIANTS[0], ids=RUN_VARIANTS[1])
@pytest.mark.parametrize("zero_copy", ZERO_COPY[0], ids=ZERO_COPY[1])
def test_cuda_graph_runner_fused_follows_the_eager_graph(options, zero_copy):
    import numpy as np
    import torch

    from deploy.export.cuda_graph import CudaGraphRunner

    layer = _runner_layer(0)
    fused = CudaGraphRunner(layer, fused=True, zero_copy=zero_copy, **options)
    naive = CudaGraphRunner(layer, fused=False)
    flips = 0
    for z, a in _step_inputs(0, 300):
        af, wf, _ = fused.step(z, a)
        af = af.copy()
        an, wn, _ = naive.step(z, a)
        flips += wf != wn
        assert np.abs(af - an).max() <= 1e-4
        naive.load_state(fused.state)  # keep both on one trajectory
    assert flips <= 1
    assert torch.allclose(fused.state, naive.state, atol=1e-5)


@pytest.mark.cuda_triton
def test_cuda_graph_runner_spin_wait_equals_stream_sync():
    """Polling the completion token returns exactly what a stream synchronisation returns."""
    import numpy as np
    import torch

    from deploy.export.cuda_graph import CudaGraphRunner

    layer = _runner_layer(1)
    spin = CudaGraphRunner(layer, launch="driver", wait="spin")
    sync = CudaGraphRunner(layer, launch="torch", wait="sync")
    assert (spin.launch, spin.wait, sync.wait) == ("driver", "spin", "sync")
    for z, a in _step_inputs(1, 2000):
        a1, w1, p1 = spin.step(z, a)
        a1 = a1.copy()
        a2, w2, p2 = sync.step(z, a)
        assert np.array_equal(a1, a2) and w1 == w2 and p1 == p2
    assert torch.equal(spin.state, sync.state)
