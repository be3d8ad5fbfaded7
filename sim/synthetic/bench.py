"""Every memory arm on the controlled synthetic benchmark (the library of ``aura bench synthetic``).

Prints, per config, accuracy on query steps (mean and 95 % CI over seeds, Student t), writes per episode,
the writes ratio vs always-write, state bytes (and the KV cache at N and at 100,000 steps), and the gate's
write probability on real events vs distractors; writes JSON and a PNG of accuracy vs writes.
"""

from __future__ import annotations

import math
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

ARM_ORDER = (
    "aura",
    "always-write",
    "oracle",
    "random (budget-matched)",
    "periodic (budget-matched)",
    "skip-rnn gate",
    "dense GRU",
    "three-gate stream",
    "KV-cache attention",
)
DENSE_O1 = ("always-write", "dense GRU", "three-gate stream")
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def _ckpt_dir(root, name: str, seed: int):
    return None if root is None or seed != 0 else str(Path(root) / f"synthetic-{name}")


def _job(args):
    import torch

    from sim.synthetic.arms import run_seed

    cfg, seed, budget, save_dir, progress = args
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    out = run_seed(cfg, seed, budget, progress=progress, save_dir=save_dir)
    out["seconds"] = time.perf_counter() - t0
    return out


def summarize(per_seed: list[dict]) -> dict:
    """Aggregate one config's seeds: mean, 95 % CI half-width of accuracy, mean of the rest."""
    arms = per_seed[0]["arms"].keys()
    n = len(per_seed)
    always = sum(r["arms"]["always-write"]["writes_per_episode"] for r in per_seed) / n
    out = {}
    for arm in arms:
        rows = [r["arms"][arm] for r in per_seed]
        acc = [r["accuracy"] for r in rows]
        mean = sum(acc) / n
        sd = math.sqrt(sum((a - mean) ** 2 for a in acc) / (n - 1)) if n > 1 else float("nan")
        half = T975.get(n - 1, 1.96) * sd / math.sqrt(n) if n > 1 else float("nan")
        writes = sum(r["writes_per_episode"] for r in rows) / n

        def avg(key, rows=rows):
            vals = [r[key] for r in rows if r[key] is not None]
            return sum(vals) / len(vals) if vals else None

        out[arm] = {
            "accuracy_mean": mean,
            "accuracy_ci95": half,
            "accuracy_per_seed": acc,
            "writes_per_episode": writes,
            "writes_ratio_vs_always": always / writes if writes > 0 else float("inf"),
            "state_bytes": rows[0]["state_bytes"],
            "kv_bytes_at_N": rows[0]["kv_bytes_at_N"],
            "kv_bytes_at_100k": rows[0]["kv_bytes_at_100k"],
            "p_write_event": avg("p_write_event"),
            "p_write_distractor": avg("p_write_distractor"),
            "write_frac_event": avg("write_frac_event"),
            "write_frac_distractor": avg("write_frac_distractor"),
            "train_seconds": avg("train_seconds"),
        }
    return out


def checks(summary: dict) -> dict:
    """The acceptance quantities of the issue, computed from one config's summary."""
    aura, oracle = summary["aura"], summary["oracle"]
    best_name = max(DENSE_O1, key=lambda a: summary[a]["accuracy_mean"])
    kv = summary["KV-cache attention"]
    return {
        "best_dense_o1_arm": best_name,
        "aura_minus_best_dense_points": 100 * (aura["accuracy_mean"] - summary[best_name]["accuracy_mean"]),
        "aura_writes_ratio_vs_always": aura["writes_ratio_vs_always"],
        "aura_writes_over_oracle": aura["writes_per_episode"] / max(oracle["writes_per_episode"], 1e-9),
        "aura_minus_random_points": 100
        * (aura["accuracy_mean"] - summary["random (budget-matched)"]["accuracy_mean"]),
        "aura_minus_periodic_points": 100
        * (aura["accuracy_mean"] - summary["periodic (budget-matched)"]["accuracy_mean"]),
        "p_write_event": aura["p_write_event"],
        "p_write_distractor": aura["p_write_distractor"],
        "aura_state_bytes": aura["state_bytes"],
        "kv_over_aura_bytes_at_100k": kv["kv_bytes_at_100k"] / aura["state_bytes"],
    }


def _fmt(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def print_tables(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(160, Console().width))
    for name, res in results["configs"].items():
        s = res["summary"]
        n = res["horizon"]
        table = Table(title=f"synthetic '{name}' (N = {n}, {res['n_seeds']} seeds; chance 0.125)")
        for col in (
            "arm",
            "accuracy",
            "± 95% CI",
            "writes/ep",
            "ratio vs always",
            "state B",
            f"KV B @N={n}",
            "KV B @100k",
            "p(w|event)",
            "p(w|distr.)",
        ):
            table.add_column(col, justify="left" if col == "arm" else "right")
        for arm in ARM_ORDER:
            if arm not in s:
                continue
            r = s[arm]
            table.add_row(
                arm,
                _fmt(r["accuracy_mean"]),
                _fmt(r["accuracy_ci95"]),
                _fmt(r["writes_per_episode"], ".1f"),
                _fmt(r["writes_ratio_vs_always"], ".2f") + "x",
                f"{r['state_bytes']:,}",
                _fmt(r["kv_bytes_at_N"], ","),
                _fmt(r["kv_bytes_at_100k"], ","),
                _fmt(r["p_write_event"]),
                _fmt(r["p_write_distractor"]),
            )
        console.print(table)
        c = res["checks"]
        console.print(
            f"  AURA vs best O(1) dense arm ({c['best_dense_o1_arm']}):"
            f" {c['aura_minus_best_dense_points']:+.2f} points;"
            f" writes {c['aura_writes_ratio_vs_always']:.2f}x fewer than always-write,"
            f" {c['aura_writes_over_oracle']:.2f}x the oracle's;"
            f" vs random {c['aura_minus_random_points']:+.1f},"
            f" vs periodic {c['aura_minus_periodic_points']:+.1f} points"
        )
        console.print(
            f"  gate p(write): events {_fmt(c['p_write_event'])},"
            f" distractors {_fmt(c['p_write_distractor'])}; state {c['aura_state_bytes']:,} B;"
            f" KV / AURA bytes at 100,000 steps = {c['kv_over_aura_bytes_at_100k']:,.0f}x"
        )
    console.print(f"wall time {results['wall_seconds']:.0f} s with {results['workers']} worker(s)")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfgs = list(results["configs"])
    fig, axes = plt.subplots(1, len(cfgs), figsize=(6.5 * len(cfgs), 4.5), squeeze=False)
    for ax, name in zip(axes[0], cfgs):
        s = results["configs"][name]["summary"]
        for arm in ARM_ORDER:
            if arm not in s:
                continue
            r = s[arm]
            err = 0 if math.isnan(r["accuracy_ci95"]) else r["accuracy_ci95"]
            ax.errorbar(r["writes_per_episode"], r["accuracy_mean"], yerr=err, fmt="o", capsize=3, label=arm)
        ax.axhline(0.125, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("writes per episode (log)")
        ax.set_ylabel("query accuracy")
        ax.set_title(f"synthetic '{name}' (N = {results['configs'][name]['horizon']})")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center right")  # outside the axes: hides no point
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_benchmark(
    config: str = "hard",
    seeds: int = 3,
    horizon: int | None = None,
    quick: bool = False,
    workers: int = 2,
    save_checkpoint=None,
    progress: bool = False,
) -> dict:
    """Every arm on every (config, seed) in ``workers`` processes; the results document (tables, plot)."""
    from sim.synthetic.arms import Budget
    from sim.synthetic.config import CONFIGS, get_config

    names = sorted(CONFIGS) if config == "all" else [config]
    cfgs = [get_config(n, horizon) for n in names]  # ValueError names the config
    if seeds < 1 or workers < 1:
        raise ValueError("--seeds and --workers must be >= 1")
    budget = Budget.quick() if quick else Budget()
    jobs = [
        (cfg, seed, budget, _ckpt_dir(save_checkpoint, cfg.name, seed), progress)
        for cfg in cfgs
        for seed in range(seeds)
    ]
    from tqdm.auto import tqdm

    # One thread per worker: BLAS pools per process oversubscribe the cores (numpy's OpenBLAS included,
    # which spawned workers read from the environment at import).
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    t0 = time.perf_counter()
    per_seed: list[dict] = []
    if workers == 1:
        for job in tqdm(jobs, desc="bench synthetic (config, seed)"):
            per_seed.append(_job(job))
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            for out in tqdm(pool.map(_job, jobs), total=len(jobs), desc="bench synthetic (config, seed)"):
                per_seed.append(out)
    results = {
        "command": "aura bench synthetic",
        "quick": quick,
        "budget": asdict(budget),
        "workers": workers,
        "wall_seconds": time.perf_counter() - t0,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "configs": {},
    }
    for cfg in cfgs:
        rows = [r for r in per_seed if r["config"] == cfg.name]
        summary = summarize(rows)
        results["configs"][cfg.name] = {
            "config": asdict(cfg),
            "horizon": cfg.horizon,
            "n_seeds": len(rows),
            "summary": summary,
            "checks": checks(summary),
            "per_seed": rows,
        }
    return results
