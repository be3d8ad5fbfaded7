"""Bad input through every subcommand: exit code 2 and one line on stderr naming the option or file, no
traceback (the error boundary in cli/__init__.py). AURA_DEBUG=1 re-raises instead."""

import json

import numpy as np
import pytest

import cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad files of every kind, and a small valid AuraMem checkpoint (d_model 8)."""
    from aura.layer import AuraMem, AuraMemConfig
    from aura.training.data import save_sequences

    d = tmp_path_factory.mktemp("bad")
    f = np.zeros((2, 5, 3), np.float32)
    f[0, 1, 0] = np.nan
    save_sequences(d / "nan.safetensors", f, np.zeros((2, 5, 2), np.float32), np.zeros((2, 5, 2), np.float32))
    (d / "corrupt.onnx").write_bytes(b"not an onnx model")
    (d / "ckpt_corrupt").mkdir()
    (d / "ckpt_corrupt" / "config.json").write_text("{not json")
    (d / "outdir").mkdir()
    (d / "afile").write_text("x")
    (d / "flash.json").write_text(json.dumps({"page_bytes": 4096, "nonsense": 1}))
    AuraMem(AuraMemConfig(d_model=8, d_action=7)).save(d / "ckpt8")
    AuraMem(AuraMemConfig(d_model=8, d_action=8)).save(d / "ckpt_act8")
    AuraMem(AuraMemConfig(d_model=8, d_action=16, output="context")).save(d / "ckpt_ctx16")
    AuraMem(AuraMemConfig(d_model=8, d_action=7)).save(d / "ckpt_noweights")
    (d / "ckpt_noweights" / "model.safetensors").unlink()
    AuraMem(AuraMemConfig(d_model=8, d_action=7)).save(d / "ckpt_flipped")
    w = d / "ckpt_flipped" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-2] ^= 0x01  # one mantissa bit of the last weight: still a finite float, still parses
    w.write_bytes(bytes(data))
    return d


# (argv with {d} for the files' directory, text the single error line must contain)
CASES = [
    ("bench memory --reps 0", "--reps"),
    ("bench stability --steps 0", "--steps"),
    ("bench synthetic --seeds 0 --json {d}/b.json", "--seeds"),
    ("bench synthetic --json {d}/outdir", "outdir"),
    ("bench runtime --steps 0", "--steps"),
    ("bench runtime --model {d}/missing.onnx --skip-cuda --steps 5", "missing.onnx"),
    ("bench libero --workers 0", "--workers"),
    ("bench libero --tasks 12", "--tasks"),
    ("train --data {d}/nan.safetensors --out {d}/t1", "nan.safetensors"),
    ("train --data {d}/missing.safetensors --out {d}/t2", "missing.safetensors"),
    ("train --synthetic easy --batch 0 --out {d}/t3", "--batch"),
    ("train --synthetic easy --out {d}/afile", "afile"),
    ("train --synthetic easy --readout-hidden 0 --out {d}/t4", "--readout-hidden"),
    ("train --synthetic easy --arm kv --readout mlp --out {d}/t5", "--readout"),
    ("train --synthetic easy --gate-margin 1.5 --out {d}/t6", "--gate-margin"),
    ("train --synthetic easy --gate-margin 0.5 --out {d}/t7", "train_margin"),
    ("train --synthetic easy --arm kv --gate-margin 0.1 --out {d}/t8", "--gate-margin"),
    ("export {d}/missing_ckpt --out {d}/m.onnx", "missing_ckpt"),
    ("export {d}/ckpt_corrupt --out {d}/m.onnx", "config.json"),
    ("export {d}/ckpt8 --out {d}/outdir", "outdir"),
    ("export {d}/ckpt8 --out {d}/m.onnx --parity-steps -1", "--parity-steps"),
    ("run --model {d}/m.onnx --episodes 0", "--episodes"),
    ("run --model {d}/missing.onnx --env noise", "missing.onnx"),
    ("run --model {d}/corrupt.onnx --env noise", "corrupt.onnx"),
    ("run --model {d}/corrupt.onnx --env noise --flash-config {d}/flash.json", "flash.json"),
    ("run --model {d}/corrupt.onnx --env noise --max-steps -3", "--max-steps"),
    ("run --model {d}/corrupt.onnx --env noise --out {d}/afile", "afile"),
    ("sim demos --per-task 0", "--per-task"),
    ("sim demos --tasks 11", "--tasks"),
    ("sim demos --out {d}/afile", "afile"),
    ("sim features --demos {d}/missing_demos --out {d}/f.safetensors", "missing_demos"),
    ("sim features --demos {d} --out {d}/f.safetensors", "task*_demo.hdf5"),
    ("sim features --demos {d} --out {d}/f.safetensors --instruction-steps 0", "--instruction-steps"),
    ("sim render-check --steps 0", "--steps"),
    ("sim render-check --tasks 99", "--tasks"),
    ("sim bundle --part-mb 70", "--part-mb"),
    ("sim bundle --tasks 12", "--tasks"),
    ("sim bundle-setup stage --prefix {d}/pfx --index {d}/no_index.json", "--index"),
    ("eval libero --episodes 0", "--episodes"),
    ("eval libero --tasks 10", "--tasks"),
    ("eval libero --arms base,bogus", "--arms"),
    ("eval libero --checkpoint {d}/missing_ckpt", "missing_ckpt"),
    ("eval libero --checkpoint {d}/ckpt_noweights --out {d}/e2", "model.safetensors: missing"),
    ("eval libero --checkpoint {d}/ckpt_flipped --out {d}/e3", "model.safetensors: sha256"),
    ("eval libero --checkpoint {d}/ckpt_act8 --out {d}/e4", "d_action=8"),
    ("export {d}/ckpt_flipped --out {d}/m2.onnx", "model.safetensors: sha256"),
    ("run --model {d}/m.onnx --env noise --step-log sometimes", "--step-log"),
    ("run --model {d}/m.onnx --env noise --summary-every -1", "--summary-every"),
    ("eval libero --backbone nope", "nope"),
    (
        "eval libero --backbone libero_noop --backbone-arg d_model=16 --checkpoint {d}/ckpt8 --out {d}/e1",
        "d_model",
    ),
    (  # a context memory needs a backbone that takes a context (spec.d_context), libero_noop takes none
        "eval libero --backbone libero_noop --backbone-arg d_model=8 --checkpoint {d}/ckpt_ctx16"
        " --out {d}/e5",
        "takes 0",
    ),
    ("eval libero --workers 0", "--workers"),
    ("eval libero --out {d}/afile", "afile"),
]


@pytest.mark.parametrize(
    "argv,culprit", CASES, ids=[c[0].split(" -")[0] + f"-{i}" for i, c in enumerate(CASES)]
)
def test_bad_input_is_one_line_and_exit_2(files, argv, culprit, capsys, monkeypatch):
    monkeypatch.delenv("AURA_DEBUG", raising=False)
    rc = cli.main(argv.format(d=files).split())
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert culprit in lines[0], lines[0]


def test_a_wrong_backbone_d_model_for_aura_run_is_named(files, tmp_path, capsys):
    """The exported model wants d_model 8; a random_encoder backbone of d_model 99 is refused by name."""
    assert (
        cli.main(["export", str(files / "ckpt8"), "--out", str(tmp_path / "m.onnx"), "--parity-steps", "0"])
        == 0
    )
    capsys.readouterr()
    argv = [
        "run",
        "--model",
        str(tmp_path / "m.onnx"),
        "--env",
        "noise",
        "--backbone",
        "random_encoder",
        "--backbone-arg",
        "d_obs=3",
        "--backbone-arg",
        "d_model=99",
        "--out",
        str(tmp_path / "r"),
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "d_model=99" in err and "m.onnx" in err, err


def test_aura_debug_shows_the_traceback(files, monkeypatch):
    monkeypatch.setenv("AURA_DEBUG", "1")
    with pytest.raises(ValueError, match="--episodes"):
        cli.main(["eval", "libero", "--episodes", "0"])


def test_an_internal_error_is_one_line_and_exit_1(monkeypatch, capsys):
    monkeypatch.delenv("AURA_DEBUG", raising=False)
    import cli.sim_render_check as cmd

    def boom(*a, **k):
        raise KeyError("a bug")

    monkeypatch.setattr(cmd, "check_task", boom)
    assert cli.main(["sim", "render-check", "--tasks", "0", "--steps", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("aura sim render-check: internal error: KeyError") and len(err.splitlines()) == 1


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "(default: 500)" in capsys.readouterr().out
