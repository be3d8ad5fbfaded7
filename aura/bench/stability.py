"""The long-run stability benchmark behind ``aura bench stability``: max ||S||_F of the GDN-2 state over
long runs, random and adversarial.

Every case runs ``runs`` independent d x d memories (one head) for ``steps`` steps, all cases batched
into one state tensor and advanced in place by the core of ``gdn2_step`` (``update_``), with the gates of a
block of steps computed at once. The running max of each run's Frobenius norm (taken in float64) is kept
on every step; a run "overflows" when its state holds inf/NaN (checked once per block). float32 and
float64 run one after the other. The analysis the numbers are checked against is in ``aura.memory.guard``;
docs/memory.md has the results. The command line is ``cli/bench_stability.py``.
"""

from __future__ import annotations

import json
import math
import time

import torch
import torch.nn.functional as F

from aura.memory.guard import CYCLE_RATE, SUP_TRANSITION_NORM, state_norm_scale
from aura.memory.naive import update_

# name -> one-line description (the generators are in _block)
CASES = {
    "random": "unit k, b, w ~ U(0,1), g ~ -U(0, 0.1), v ~ N(0, I)",
    "random_nodecay": "as random, g = 0",
    "b=w=1_nodecay": "random unit k, b = w = 1, g = 0 (DeltaNet, beta = 1)",
    "repeated_key": "one fixed k per run, b = w = 1, g = 0",
    "colinear_keys": "k = l2n(k0 + 0.01 n_t), b = w = 1, g = 0",
    "colinear_keys_random_b": "k = l2n(k0 + 0.01 n_t), b, w ~ U(0,1), g = 0",
    "adversarial_cycle": "2-cycle with eigenvalue 5/4 (aura.memory.guard), w = 1, g = 0",
    "adversarial_cycle_guarded": "the same with the norm guard max_norm",
}


def _block(case, t0, n, runs, d, dtype, gen, k0):
    """Inputs for steps t0..t0+n-1 of one case: (k, v, g, b, w), each [n, runs, 1, d]."""
    shape = (n, runs, 1, d)

    def rand(lo=0.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(shape, dtype=dtype, generator=gen)

    v = torch.randn(shape, dtype=dtype, generator=gen)
    zero, one = torch.zeros(shape, dtype=dtype), torch.ones(shape, dtype=dtype)
    if case.startswith("random"):
        k = F.normalize(torch.randn(shape, dtype=dtype, generator=gen), dim=-1)
        g = -rand(0.0, 0.1) if case == "random" else zero
        return k, v, g, rand(), rand()
    if case == "b=w=1_nodecay":
        return F.normalize(torch.randn(shape, dtype=dtype, generator=gen), dim=-1), v, zero, one, one
    if case == "repeated_key":
        return k0.expand(shape), v, zero, one, one
    if case.startswith("colinear_keys"):
        k = F.normalize(k0 + 0.01 * torch.randn(shape, dtype=dtype, generator=gen), dim=-1)
        if case == "colinear_keys":
            return k, v, zero, one, one
        return k, v, zero, rand(), rand()
    # adversarial 2-cycle in the first two key dims: k_1 = (c, s), b_1 = e_1; k_2 = (s, c), b_2 = e_2
    c, s = math.sqrt(1 / 6), math.sqrt(5 / 6)
    odd = ((torch.arange(t0, t0 + n) % 2) == 1)[:, None, None]
    k = torch.zeros(shape, dtype=dtype)
    b = torch.zeros(shape, dtype=dtype)
    k[..., 0] = torch.where(odd, s, c)
    k[..., 1] = torch.where(odd, c, s)
    b[..., 0] = (~odd).to(dtype)
    b[..., 1] = odd.to(dtype)
    return k, v, zero, b, one


def run_stability(
    steps,
    runs,
    d=32,
    dtype=torch.float32,
    max_norm=1e3,
    block=1000,
    seed=0,
    progress=True,
    report=None,
    device="cpu",
):
    """Advance every case ``steps`` steps; returns ({case: stats}, seconds).

    ``report(stats, steps_done)``, if given, is called about every 100 blocks with the stats so far.
    Inputs are drawn on the CPU (same numbers on every device) and moved to ``device`` block by block.
    """
    names = list(CASES)
    gen = torch.Generator().manual_seed(seed)
    k0 = {name: F.normalize(torch.randn(1, runs, 1, d, dtype=dtype, generator=gen), dim=-1) for name in names}
    R = runs * len(names)
    S = torch.zeros(R, d, d, dtype=dtype, device=device)  # one head per run: [B*H, K, V]
    i = names.index("adversarial_cycle_guarded")
    guarded = slice(i * runs, (i + 1) * runs)
    running_max = torch.zeros(
        R, dtype=torch.float64
    )  # norms in float64: a float32 state's norm cannot overflow
    first_nonfinite = torch.full((R,), -1, dtype=torch.long)
    checkpoints, next_cp = {}, 1
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=steps, desc=f"stability {str(dtype).replace('torch.', '')}", unit="step", unit_scale=True
        )
    t_start = time.perf_counter()
    t = 0
    with torch.no_grad():
        while t < steps:
            n = min(block, steps - t)
            parts = [_block(name, t, n, runs, d, dtype, gen, k0[name]) for name in names]
            k, v, g, b, w = (torch.cat([p[j] for p in parts], dim=1).to(device) for j in range(5))
            # The gates of gdn2_step, computed for the whole block at once (same elementwise arithmetic).
            decay = g.exp().view(n, R, d, 1)
            bk, wv, kc = (b * k).view(n, R, 1, d), (w * v).view(n, R, 1, d), k.reshape(n, R, d, 1)
            block_max = torch.zeros(R, dtype=torch.float64, device=device)
            for j in range(n):
                S.mul_(decay[j])
                update_(S, bk[j], wv[j], kc[j])
                Sg = S[guarded]  # a view: the guard rescales those runs in place
                Sg.mul_(state_norm_scale(Sg, max_norm))
                norm = torch.linalg.vector_norm(S, dim=(-2, -1), dtype=torch.float64)
                torch.fmax(block_max, norm, out=block_max)
                if t + j + 1 == next_cp:
                    checkpoints[next_cp] = norm.tolist()
                    next_cp *= 10
            state_bad = ~torch.isfinite(S).view(R, -1).all(-1) & (first_nonfinite < 0)
            first_nonfinite[state_bad] = t + n  # resolution: one block
            torch.fmax(running_max, block_max, out=running_max)
            t += n
            if bar is not None:
                bar.update(n)
            if report is not None and (t // block) % 100 == 0 and t < steps:
                report(_summarise(names, runs, max_norm, S, running_max, first_nonfinite, checkpoints), t)
    if bar is not None:
        bar.close()
    return _summarise(
        names, runs, max_norm, S, running_max, first_nonfinite, checkpoints
    ), time.perf_counter() - t_start


def _finite(x: float) -> float | None:
    """JSON has no inf/NaN: an overflowed quantity is null (``runs_overflowed`` says so)."""
    return x if math.isfinite(x) else None


def _summarise(names, runs, max_norm, S, running_max, first_nonfinite, checkpoints):
    final = torch.linalg.vector_norm(S, dim=(-2, -1), dtype=torch.float64).view(-1)
    out = {}
    for c, name in enumerate(names):
        sl = slice(c * runs, (c + 1) * runs)
        nonfinite = first_nonfinite[sl]
        overflowed = nonfinite >= 0
        out[name] = {
            "description": CASES[name] + (f" (max_norm={max_norm:g})" if name.endswith("guarded") else ""),
            "max_norm_F": _finite(float(running_max[sl].max())) if not overflowed.any() else None,
            "median_final_norm_F": _finite(float(final[sl].median())),
            "runs_overflowed": int(overflowed.sum()),
            "first_overflow_step_le": int(nonfinite[overflowed].min()) if overflowed.any() else None,
            "norm_at_step": {
                str(s_): _finite(float(torch.tensor(vals[sl]).max())) for s_, vals in checkpoints.items()
            },
        }
    return out


def bench_stability(
    steps: int,
    runs: int,
    d: int = 32,
    dtypes: tuple[str, ...] = ("float32", "float64"),
    max_norm: float = 1e3,
    block: int = 1000,
    seed: int = 0,
    threads: int = 1,
    device: str = "cpu",
    json_path: str | None = None,
    progress: bool = True,
) -> dict:
    """:func:`run_stability` for each dtype in turn, with a table at the end; returns the result.

    With ``json_path`` the result is written there as it grows (about every 100 blocks and after each
    dtype), so a long run that is stopped leaves its partial results behind.
    """
    torch.set_num_threads(threads)
    result = {
        "steps": steps,
        "runs_per_case": runs,
        "d_key": d,
        "d_val": d,
        "max_norm_guard": max_norm,
        "sup_single_step_transition_norm": SUP_TRANSITION_NORM,
        "adversarial_cycle_rate_per_step": CYCLE_RATE,
        "torch": torch.__version__,
        "device": device,
        "by_dtype": {},
    }
    for name in dtypes:

        def report(cases, done, seconds=None, name=name):
            result["by_dtype"][name] = {"cases": cases, "steps_done": done, "seconds": seconds}
            if json_path:
                with open(json_path, "w") as f:
                    json.dump(result, f, indent=2)

        cases, seconds = run_stability(
            steps, runs, d, getattr(torch, name), max_norm, block, seed, progress, report, device
        )
        report(cases, steps, seconds)
    _print_table(result)
    if json_path:
        print(f"wrote {json_path}")
    return result


def _print_table(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"max ||S||_F over {result['steps']:,} steps, d = {result['d_key']}")
    for col in ("dtype", "case", "max ||S||_F", "median final", "overflowed", "first overflow <= step"):
        table.add_column(col)
    for dt, block in result["by_dtype"].items():
        for name, c in block["cases"].items():
            mx, fin = c["max_norm_F"], c["median_final_norm_F"]
            table.add_row(
                dt,
                name,
                "overflow" if mx is None else f"{mx:.4g}",
                "overflow" if fin is None else f"{fin:.4g}",
                f"{c['runs_overflowed']}/{result['runs_per_case']}",
                "-" if c["first_overflow_step_le"] is None else f"{c['first_overflow_step_le']:,}",
            )
    Console(width=130).print(table)
