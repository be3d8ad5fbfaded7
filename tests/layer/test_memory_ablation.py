"""benchmarks/memory_ablation.py: an AuraMem checkpoint's held-out action error under four write schedules."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aura.layer import AuraMem, AuraMemConfig
from aura.training.data import save_sequences

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "memory_ablation.py"


def _data(rng, n=3, t=12, d=16, a=4):
    z = rng.normal(size=(n, t, d)).astype(np.float32)
    base = rng.normal(size=(n, t, a)).astype(np.float32)
    target = rng.normal(size=(n, t, a)).astype(np.float32)
    target[:, -2:] = np.nan  # unsupervised tail
    return z, base, target


def _model(readout: str, seed: int) -> AuraMem:
    torch.manual_seed(seed)
    m = AuraMem(AuraMemConfig(d_model=16, d_key=8, d_val=8, d_action=4, heads=2, readout=readout))
    with (
        torch.no_grad()
    ):  # a trained-looking read-out: the fresh one is zero, which would hide every schedule
        for p in m.parameters():
            if p.dim() >= 2 and not p.abs().sum():
                p.normal_(0, 0.3)
    return m


@pytest.mark.parametrize("readout", ["linear", "mlp"])
def test_schedules_match_the_model_on_fresh_inputs(readout, benchmark_script):
    mod = benchmark_script("memory_ablation")
    rng = np.random.default_rng(7)
    z, base, target = (torch.from_numpy(x) for x in _data(rng))
    m = _model(readout, 3)
    rec = mod.ablate(m, z, base, target, k=2)

    def mse(action):
        ok = torch.isfinite(target).all(-1)
        return float(((action[ok] - target[ok]) ** 2).mean())

    with torch.no_grad():
        out = m(z, base)
        never = torch.zeros(z.shape[:2], dtype=torch.bool)
        first2 = torch.zeros(z.shape[:2], dtype=torch.bool)
        first2[:, :2] = True
        assert rec["gate"] == pytest.approx(mse(out.action), rel=1e-5)
        assert rec["gate_writes_per_sequence"] == pytest.approx(float(out.write.sum(1).float().mean()))
        assert rec["none"] == pytest.approx(mse(m(z, base, schedule=never).action), rel=1e-4)
        assert rec["instr"] == pytest.approx(mse(m(z, base, schedule=first2).action), rel=1e-4)
        assert rec["gate_p_instr_min"] == pytest.approx(float(out.gate_prob[:, :2].min()))
        assert rec["gate_p_after_max"] == pytest.approx(float(out.gate_prob[:, 2:].max()))
    assert rec["base"] == pytest.approx(mse(base), rel=1e-6)
    # the per-dimension errors average to the overall ones; the gripper shares are of the supervised steps
    assert np.mean(rec["base_per_dim"]) == pytest.approx(rec["base"], rel=1e-5)
    assert np.mean(rec["gate_per_dim"]) == pytest.approx(rec["gate"], rel=1e-5)
    ok = torch.isfinite(target).all(-1)
    assert rec["gripper_closed"]["target"] == pytest.approx(float((target[ok][:, -1] > 0).float().mean()))
    # the paper's linear read-out adds W_c r_t: with no write r_t = 0, so "none" is the base action exactly
    if readout == "linear":
        assert rec["none"] == pytest.approx(rec["base"], rel=1e-6)
    else:  # the mlp read-out also sees z_t: it moves the action without memory
        assert abs(rec["none"] - rec["base"]) > 1e-4
    assert len({rec["none"], rec["instr"], rec["always"]}) == 3


def test_script_table_json_and_errors(tmp_path):
    rng = np.random.default_rng(11)
    save_sequences(tmp_path / "a.safetensors", *_data(rng, t=12))
    save_sequences(tmp_path / "b.safetensors", *_data(rng, t=9))
    _model("linear", 5).save(tmp_path / "ck")
    run = [sys.executable, str(SCRIPT), "--data", str(tmp_path / "a.safetensors"), "--data"]
    out = subprocess.run(
        [
            *run,
            str(tmp_path / "b.safetensors"),
            "--checkpoint",
            str(tmp_path / "ck"),
            "--instruction-steps",
            "1",
            "--json",
            str(tmp_path / "t.json"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "6 sequences x 12 steps from 2 file(s)" in out and "| base | gate | none | instr | always |" in out
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert set(rows[str(tmp_path / "ck")]) == {
        "base",
        "gate",
        "none",
        "instr",
        "always",
        "gate_writes_per_sequence",
        "base_per_dim",
        "gate_per_dim",
        "gripper_closed",
        "gate_p_instr_min",
        "gate_p_after_max",
    }
    bad = subprocess.run(
        [*run, str(tmp_path / "b.safetensors"), "--checkpoint", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--checkpoint" in bad.stderr and "nope" in bad.stderr


def test_windows_measure_the_gates_correction_on_fresh_inputs(benchmark_script):
    mod = benchmark_script("memory_ablation")
    rng = np.random.default_rng(13)
    z, base, target = (torch.from_numpy(x) for x in _data(rng, n=4, t=12))
    m = _model("mlp", 4)
    with torch.no_grad():
        action = m.eval()(z, base).action
    rows = mod.windows_table(action, base, target, [(0, 5), (5, 12)])
    assert mod.ablate(m, z, base, target, k=None, windows=[(0, 5), (5, 12)])["windows"] == rows
    for row, (lo, hi) in zip(rows, [(0, 5), (5, 12)], strict=True):
        ok = torch.isfinite(target[:, lo:hi]).all(-1)
        b, a, y = (x[:, lo:hi][ok][:, :3] for x in (base, action, target))
        assert row["steps"] == int(ok.sum()) == len(y)  # the NaN tail (steps 10-11) is left out
        assert row["base_xyz"] == pytest.approx(float(((b - y) ** 2).mean()), rel=1e-6)
        assert row["gate_xyz"] == pytest.approx(float(((a - y) ** 2).mean()), rel=1e-6)
        b_all, a_all, y_all = (x[:, lo:hi][ok] for x in (base, action, target))
        assert row["base_mse"] == pytest.approx(float(((b_all - y_all) ** 2).mean()), rel=1e-6)
        assert row["gate_mse"] == pytest.approx(float(((a_all - y_all) ** 2).mean()), rel=1e-6)
        assert row["correction_norm"] == pytest.approx(float((a - b).norm(dim=-1).mean()), rel=1e-6)
        assert row["needed_norm"] == pytest.approx(float((y - b).norm(dim=-1).mean()), rel=1e-6)
    assert mod.windows_table(action, base, target, [(10, 12)]) == [dict(window=[10, 12], steps=0)]


def test_task_filter_and_bad_windows_are_clear(tmp_path):
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(17)
    save_sequences(tmp_path / "r.safetensors", *_data(rng, n=4, t=10))
    arrays = load_file(str(tmp_path / "r.safetensors"))
    arrays["episode_task"] = np.array([0, 1, 0, 1], dtype=np.int64)  # as `aura sim rollouts` stores it
    save_file(arrays, str(tmp_path / "tasks.safetensors"))
    _model("linear", 6).save(tmp_path / "ck")
    run = [sys.executable, str(SCRIPT), "--checkpoint", str(tmp_path / "ck"), "--data"]
    data = str(tmp_path / "tasks.safetensors")
    argv = [*run, data, "--task", "1", "--windows", "0-4,4-8", "--json", str(tmp_path / "w.json")]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert "2 sequences of task 1 x 10 steps" in out and "steps 0-4: translation mse base" in out
    doc = json.loads((tmp_path / "w.json").read_text())
    assert doc["task"] == 1 and [w["window"] for w in doc["rows"][str(tmp_path / "ck")]["windows"]] == [
        [0, 4],
        [4, 8],
    ]
    for argv, message in (
        ([str(tmp_path / "r.safetensors"), "--task", "0"], "has no episode_task"),
        ([str(tmp_path / "tasks.safetensors"), "--task", "5"], "no sequence of that task"),
        ([str(tmp_path / "tasks.safetensors"), "--windows", "8-4"], "expected lo-hi"),
    ):
        bad = subprocess.run([*run, *argv], capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
