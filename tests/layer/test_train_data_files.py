"""Several ``aura train --data`` files: aura.training.data.load_many pads them to the longest T and pools."""

import json

import numpy as np
import pytest

import cli
from aura.layer import AuraMem
from aura.training.data import load_many, load_sequences, save_sequences


def _write(path, n, t, d_model=6, d_action=2, seed=0, supervised_every=3):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n, t, d_model)).astype(np.float32)
    base = rng.standard_normal((n, t, d_action)).astype(np.float32)
    tgt = np.full((n, t, d_action), np.nan, np.float32)
    tgt[:, ::supervised_every] = base[:, ::supervised_every] + rng.standard_normal(
        (n, len(range(0, t, supervised_every)), d_action)
    ).astype(np.float32)
    save_sequences(path, f, base, tgt)
    return {"features": f, "base_actions": base, "target_actions": tgt}


def test_two_files_of_different_length_are_padded_and_pooled(tmp_path):
    a = _write(tmp_path / "demos.safetensors", n=3, t=7, seed=1)
    b = _write(tmp_path / "rollouts.safetensors", n=5, t=11, seed=2)
    got = load_many([tmp_path / "demos.safetensors", tmp_path / "rollouts.safetensors"])
    assert got["features"].shape == (8, 11, 6)
    assert got["base_actions"].shape == got["target_actions"].shape == (8, 11, 2)
    assert all(v.dtype == np.float32 for v in got.values())
    for name in a:
        # the unpadded parts are the files' own rows, in the order given
        np.testing.assert_array_equal(got[name][:3, :7], a[name])
        np.testing.assert_array_equal(got[name][3:], b[name])
    # padding of the shorter file: targets NaN (unsupervised), inputs repeat each row's last step
    assert np.isnan(got["target_actions"][:3, 7:]).all()
    for name in ("features", "base_actions"):
        np.testing.assert_array_equal(got[name][:3, 7:], np.repeat(a[name][:, -1:], 4, axis=1))
        assert np.isfinite(got[name]).all()
    # every supervised step of both files survives, and no other
    n_sup = [int(np.isfinite(x["target_actions"]).all(-1).sum()) for x in (got, a, b)]
    assert n_sup[0] == n_sup[1] + n_sup[2]


def test_the_order_of_the_files_is_the_order_of_the_rows(tmp_path):
    a = _write(tmp_path / "a.safetensors", n=2, t=9, seed=3)
    b = _write(tmp_path / "b.safetensors", n=4, t=5, seed=4)
    got = load_many([tmp_path / "b.safetensors", tmp_path / "a.safetensors"])
    assert got["features"].shape == (6, 9, 6)
    np.testing.assert_array_equal(got["features"][:4, :5], b["features"])
    np.testing.assert_array_equal(got["features"][4:], a["features"])
    assert np.isnan(got["target_actions"][:4, 5:]).all()


def test_a_single_file_is_exactly_load_sequences(tmp_path):
    _write(tmp_path / "one.safetensors", n=4, t=6, seed=5)
    ref = load_sequences(tmp_path / "one.safetensors")
    got = load_many([tmp_path / "one.safetensors"])
    assert set(got) == set(ref)
    for name in ref:
        assert got[name].shape == ref[name].shape and got[name].dtype == ref[name].dtype
        np.testing.assert_array_equal(got[name], ref[name])  # NaN == NaN position-wise here


@pytest.mark.parametrize("which,kw", [("features", {"d_model": 5}), ("base_actions", {"d_action": 3})])
def test_a_d_model_or_d_action_mismatch_names_both_files(tmp_path, which, kw):
    _write(tmp_path / "first.safetensors", n=2, t=4, seed=6)
    _write(tmp_path / "second.safetensors", n=2, t=4, seed=7, **kw)
    with pytest.raises(ValueError, match=which) as err:
        load_many([tmp_path / "first.safetensors", tmp_path / "second.safetensors"])
    msg = str(err.value)
    assert "first.safetensors" in msg and "second.safetensors" in msg
    shape = (2, 4, 5) if which == "features" else (2, 4, 3)
    assert str(shape) in msg


def test_per_file_errors_still_name_the_file(tmp_path):
    _write(tmp_path / "good.safetensors", n=2, t=4)
    with pytest.raises(ValueError, match="gone.safetensors: no such file"):
        load_many([tmp_path / "good.safetensors", tmp_path / "gone.safetensors"])
    with pytest.raises(ValueError, match="given more than once"):
        load_many([tmp_path / "good.safetensors", tmp_path / "good.safetensors"])
    with pytest.raises(ValueError, match="no file"):
        load_many([])


def _train(argv, capsys):
    rc = cli.main(argv)
    out = capsys.readouterr()
    return rc, out


def test_aura_train_takes_several_data_files(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AURA_DEBUG", raising=False)
    _write(tmp_path / "demos.safetensors", n=6, t=8, seed=8)
    _write(tmp_path / "rollouts.safetensors", n=6, t=13, seed=9)
    small = ["--d-key", "4", "--d-val", "4", "--dense-steps", "3", "--gate-steps", "2", "--batch", "4"]
    small += ["--threads", "1", "--quiet"]
    files = [str(tmp_path / "demos.safetensors"), str(tmp_path / "rollouts.safetensors")]
    argv = ["train", "--data", files[0], "--data", files[1], "--out", str(tmp_path / "ck"), *small]
    rc, out = _train(argv, capsys)
    assert rc == 0, out.err
    m = AuraMem.load(tmp_path / "ck")
    assert m.config.d_model == 6 and m.config.d_action == 2
    training = m.meta["training"]
    assert training["data"] == files
    assert np.isfinite(training["validation"]["action_loss"])
    log = [json.loads(x) for x in (tmp_path / "ck" / "train.jsonl").read_text().splitlines()]
    assert log and all(np.isfinite(r["action_loss"]) for r in log)

    # one file: recorded as before, a plain string
    rc, out = _train(["train", "--data", files[0], "--out", str(tmp_path / "ck1"), *small], capsys)
    assert rc == 0, out.err
    assert AuraMem.load(tmp_path / "ck1").meta["training"]["data"] == files[0]

    # a missing second file is named on the one error line; --data with --synthetic is refused
    rc, out = _train(["train", "--data", files[0], "--data", str(tmp_path / "nope.safetensors"),
                      "--out", str(tmp_path / "ck2"), *small], capsys)  # fmt: skip
    assert rc == 2 and "nope.safetensors" in out.err and "Traceback" not in out.err
    with pytest.raises(SystemExit):
        cli.main(["train", "--data", files[0], "--synthetic", "easy", "--out", str(tmp_path / "ck3")])
