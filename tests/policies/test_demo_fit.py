"""benchmarks/demo_fit.py: the batched chunk L1 equals a frame-by-frame loop over the raw demo files."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")


def _naive(net, demo_dir):
    """Per frame t of every demo: |A_t[k] - a_{t+k}| / sigma_a for k < K with t + k < T, averaged."""
    k_max, tok = net.config.chunk, net.config.tokenizer()
    sd = net.action_scale.numpy()
    errs, per_k = [], [[] for _ in range(k_max)]
    for path in sorted(Path(demo_dir).glob("*.hdf5")):
        with h5py.File(path) as f:
            tokens = torch.from_numpy(tok(f["data"].attrs["language"])[None])
            for name in f["data"]:
                g = f["data"][name]
                acts, obs = g["actions"][:], g["obs"]
                for t in range(len(acts)):
                    with torch.no_grad():
                        _, pred = net(
                            torch.from_numpy(obs["agentview_rgb"][t : t + 1]),
                            torch.from_numpy(obs["eye_in_hand_rgb"][t : t + 1]),
                            torch.from_numpy(obs["state"][t : t + 1]),
                            tokens,
                        )
                    for k in range(min(k_max, len(acts) - t)):
                        e = np.abs(pred[0, k].numpy() - acts[t + k]) / sd
                        errs.append(e)
                        per_k[k].append(e.mean())
    return float(np.mean(errs)), [float(np.mean(v)) for v in per_k], np.mean(errs, 0)


def test_batched_fit_matches_the_frame_loop(tiny_ckpt, tiny_demos, benchmark_script):
    from policies.libero_vla.checkpoint import load_checkpoint
    from policies.libero_vla.data import load_demos

    mod = benchmark_script("demo_fit")
    net, _ = load_checkpoint(tiny_ckpt)
    got = mod.demo_fit(net, load_demos(tiny_demos, progress=False), batch=7)  # batches cross demos
    loss, per_k, per_dim = _naive(net, tiny_demos)
    assert got["frames"] == 56 and got["demos"] == 5
    np.testing.assert_allclose(got["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(got["per_offset"], per_k, rtol=1e-5)
    np.testing.assert_allclose(list(got["per_dim"].values()), per_dim, rtol=1e-5)


def test_command_writes_the_table_and_names_a_bad_option(
    tiny_ckpt, tiny_demos, tmp_path, capsys, benchmark_script
):
    mod = benchmark_script("demo_fit")
    out = tmp_path / "fit.json"
    assert mod.main(["--checkpoint", str(tiny_ckpt), "--demos", f"a={tiny_demos}", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["sets"]) == {"a"} and doc["sets"]["a"]["loss"] > 0
    assert "| a | 5 / 56 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        mod.main(["--demos", str(tiny_demos)])
    assert "NAME=DIR" in capsys.readouterr().err
