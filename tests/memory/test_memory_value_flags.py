"""The fused Triton value check vs its naive twin (per-argument torch rules), on fresh random inputs.

On the CPU the kernel runs in Triton's interpreter (a subprocess, so TRITON_INTERPRET is set before triton
loads); on CUDA it runs natively and through ``validate``'s start / finish pair.
"""

import json

import pytest

CHECK = r"""
import json, math, os, sys
import torch
from aura.memory import value_flags as vf

def naive_bad(tensors):
    out = []
    for name, t in tensors.items():
        x = t.double()
        finite = bool(torch.isfinite(x).all())
        if name == "g":
            ok = finite and bool((x <= 0).all())
        elif name in ("b", "w"):
            ok = bool(((x >= 0) & (x <= 1)).all())
        else:
            ok = finite
        if not ok:
            out.append(name)
    return out

def case(gen, device, dtype, T, plant):
    B, H, K, V = 2, 1, 8, 4
    f = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64).to(dtype).to(device)
    u = lambda *s: torch.rand(*s, generator=gen, dtype=torch.float64).to(dtype).to(device)
    t = {"q": f(B, T, H, K), "k": f(B, T, H, K), "v": f(B, T, H, V), "g": -u(B, T, H, K),
         "b": u(B, T, H, K), "w": u(B, T, H, V), "initial_state": f(B, H, K, V).float()}
    if plant:
        name, value = plant
        x = t[name].view(-1)
        x[int(torch.randint(x.numel(), (1,), generator=gen))] = value
    return t

def run(device, seeds):
    plants = [None, ("q", math.nan), ("k", math.inf), ("v", -math.inf), ("g", 0.25), ("g", -math.inf),
              ("g", math.nan), ("b", 1.5), ("b", math.nan), ("w", -0.1), ("initial_state", math.inf)]
    n, mismatches = 0, []
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        for dtype in (torch.float32, torch.bfloat16, torch.float64):
            for T in (1, 37, 1100):  # 1100 * 16 elements spans several 2048-element programs
                for plant in plants:
                    t = case(gen, device, dtype, T, plant)
                    want = naive_bad(t)
                    # CUDA: the direct launch of a compiled variant, and the JIT (the interpreter: JIT only)
                    for fast in (True, False) if device == "cuda" else (True,):
                        got = vf.bad_arguments(t, *vf.launch(t, fast=fast))
                        n += 1
                        if got != want:
                            mismatches.append([str(dtype), T, str(plant), fast, got, want])
    return {"cases": n, "mismatches": mismatches[:5], "variants": len(vf.COMPILED)}
"""


@pytest.mark.triton_interpreter
def test_value_flags_match_the_naive_rules_in_the_triton_interpreter(triton_interpreter):
    lines = triton_interpreter(
        CHECK + "import random\nprint(json.dumps(run('cpu', [random.randrange(1 << 30)])))\n"
    )
    res = json.loads(lines[-1])
    assert res["cases"] == 99 and res["mismatches"] == [], res


@pytest.mark.cuda_triton
def test_value_flags_match_the_naive_rules_on_cuda(monkeypatch):
    import random

    import torch

    from aura.memory import value_flags as vf

    scope: dict = {}
    exec(CHECK, scope)
    res = scope["run"]("cuda", [random.randrange(1 << 30) for _ in range(2)])
    assert res["cases"] == 396 and res["mismatches"] == [], res
    assert res["variants"] >= 3, res  # one compiled variant per dtype mix, reused by the direct launch
    # the direct launch is really taken: with the JIT function gone, a compiled variant still launches
    t = {"g": -torch.rand(3, 5, 1, 8, device="cuda"), "b": torch.rand(3, 5, 1, 8, device="cuda")}
    assert vf.bad_arguments(t, *vf.launch(t)) == []
    monkeypatch.setattr(vf, "check_kernel", None)
    t["b"][0, 1, 0, 2] = -0.5
    assert vf.bad_arguments(t, *vf.launch(t)) == ["b"]


@pytest.mark.cuda_triton
def test_fused_check_raises_the_exact_message_on_cuda():
    """start / finish without stats take the fused path on CUDA and still name the argument and its range."""
    import torch

    from aura.memory.validate import finish_value_check, start_value_check

    t = {"g": -torch.rand(4, 9, 1, 8, device="cuda"), "b": torch.rand(4, 9, 1, 8, device="cuda")}
    started = start_value_check(t)
    assert started[0] == "flags"
    assert finish_value_check("f", t, started) == {}
    t["b"][1, 2, 0, 3] = 1.25
    with pytest.raises(ValueError, match=r"argument 'b' .* must lie in \[0, 1\], range is \[.*, 1.25\]"):
        finish_value_check("f", t, start_value_check(t))
