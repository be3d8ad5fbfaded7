"""The factored write ``gdn2_write`` against the naive spec, its bit-exact reconstruction, and its export."""

from __future__ import annotations

import pytest
import torch

from aura.memory import gdn2_recurrent, gdn2_write, state_norm_scale

from .conftest import make_inputs, rel_err


def _one_step(gen, B=3, H=2, K=6, V=5, dtype=torch.float64, scale_state=1.0):
    q, k, v, g, b, w, S0 = make_inputs(B, 1, H, K, V, gen=gen, dtype=dtype)
    return (q, k, v, g, b, w), S0 * scale_state


def _rebuilt(k, decay, delta, S):
    return decay[..., :, None] * S + k[..., :, None] * delta[..., None, :]


def test_write_matches_the_spec_for_one_step(gen):
    (q, k, v, g, b, w), S0 = _one_step(gen)
    _, S_ref = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True)
    step = [x[:, 0] for x in (k, v, g, b, w)]
    decay, delta, new = gdn2_write(*step, S0)
    assert decay.shape == (3, 2, 6) and delta.shape == (3, 2, 5) and new.shape == (3, 2, 6, 5)
    assert rel_err(new, S_ref) < 1e-12
    assert torch.equal(decay, step[2].exp())  # alpha = e^g, unchanged without the guard
    kk, vv, gg, bb, ww = step
    u = ww * vv - ((bb * kk).unsqueeze(-1) * (gg.exp().unsqueeze(-1) * S0)).sum(-2)
    assert rel_err(delta, u) < 1e-12


def test_guarded_write_matches_the_guarded_spec(gen):
    (q, k, v, g, b, w), S0 = _one_step(gen, scale_state=4.0)
    step = [x[:, 0] for x in (k, v, g, b, w)]
    norms = torch.sqrt(gdn2_write(*step, S0)[2].square().sum((-2, -1)))
    max_norm = float(norms.median())  # some heads above the threshold, some below
    assert (norms > max_norm).any() and (norms < max_norm).any()
    _, S_ref = gdn2_recurrent(q, k, v, g, b, w, initial_state=S0, output_final_state=True, max_norm=max_norm)
    decay, delta, new = gdn2_write(*step, S0, max_norm=max_norm)
    assert rel_err(new, S_ref) < 1e-12
    got = torch.sqrt(new.square().sum((-2, -1)))
    assert torch.allclose(got[norms > max_norm], torch.tensor(max_norm, dtype=got.dtype), rtol=1e-12)
    c = state_norm_scale(gdn2_write(*step, S0)[2], max_norm)[..., 0]
    assert torch.equal(decay, step[2].exp() * c)  # the guard's factor folded into the record


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("max_norm", [None, 0.5, 1e6])
def test_new_state_is_exactly_decay_times_state_plus_key_delta(gen, dtype, max_norm):
    (_, k, v, g, b, w), S0 = _one_step(gen, B=2, H=3, K=8, V=4, dtype=dtype)
    step = [x[:, 0] for x in (k, v, g, b, w)]
    decay, delta, new = gdn2_write(*step, S0, max_norm=max_norm)
    assert torch.equal(new, _rebuilt(step[0], decay, delta, S0))  # what a journal replay computes


def test_guard_below_threshold_is_bit_identical(gen):
    (_, k, v, g, b, w), S0 = _one_step(gen, dtype=torch.float32)
    step = [x[:, 0] for x in (k, v, g, b, w)]
    plain = gdn2_write(*step, S0)
    guarded = gdn2_write(*step, S0, max_norm=1e6)
    assert all(torch.equal(x, y) for x, y in zip(plain, guarded))


def test_repeated_writes_follow_the_guarded_recurrence(gen):
    q, k, v, g, b, w, S = make_inputs(2, 40, 2, 8, 3, gen=gen)
    _, S_ref = gdn2_recurrent(q, k, v, g, b, w, initial_state=S, output_final_state=True, max_norm=2.0)
    for t in range(40):
        _, _, S = gdn2_write(k[:, t], v[:, t], g[:, t], b[:, t], w[:, t], S, max_norm=2.0)
    assert rel_err(S, S_ref) < 1e-12


def test_write_arguments(gen):
    (_, k, v, g, b, w), S0 = _one_step(gen)
    step = [x[:, 0] for x in (k, v, g, b, w)]
    with pytest.raises(
        ValueError, match=r"gdn2_write: argument 'w' has shape \(3, 2, 4\), expected \(3, 2, 5\)"
    ):
        gdn2_write(*step[:4], step[4][..., :4], S0)
    with pytest.raises(ValueError, match="gdn2_write: argument 'state'"):
        gdn2_write(*step, S0[..., :4])
    with pytest.raises(ValueError, match=r"gdn2_write: argument 'g' .* \(from k\)"):
        gdn2_write(step[0], step[1], step[2][:, :1], *step[3:], S0)
    with pytest.raises(ValueError, match="argument 'max_norm'"):
        gdn2_write(*step, S0, max_norm=-1.0)


def test_write_exports_to_onnx_and_matches_onnxruntime(gen, tmp_path):
    pytest.importorskip("onnxscript", reason="ONNX export needs the deploy extra (onnx, onnxscript)")
    ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (deploy extra)")

    class Write(torch.nn.Module):
        def forward(self, k, v, g, b, w, S):
            return gdn2_write(k, v, g, b, w, S, max_norm=1.5)

    (_, k, v, g, b, w), S0 = _one_step(gen, B=1, H=2, K=6, V=5, dtype=torch.float32, scale_state=2.0)
    args = (*(x[:, 0] for x in (k, v, g, b, w)), S0)
    path = tmp_path / "write.onnx"
    torch.onnx.export(Write().eval(), args, str(path), dynamo=True, opset_version=18)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    got = sess.run(None, dict(zip(names, (x.numpy() for x in args))))
    ref = Write()(*args)
    assert float(torch.sqrt(ref[2].square().sum((-2, -1))).max()) <= 1.5 * (1 + 1e-6)  # the guard acted
    for x, y in zip(got, ref):
        torch.testing.assert_close(torch.from_numpy(x), y, rtol=1e-5, atol=1e-6)
