"""Wrong shapes, dtypes or values raise ValueError naming the argument and its shape."""

from __future__ import annotations

import pytest
import torch

from aura.memory import gdn2_recurrent, gdn2_step

from .conftest import make_inputs

NAMES = ["q", "k", "v", "g", "b", "w"]


def _seq(gen):
    return make_inputs(2, 5, 2, 4, 3, gen=gen)


@pytest.mark.parametrize("idx", range(1, 6))
def test_wrong_shape_names_argument(gen, idx):
    args = _seq(gen)
    args[idx] = args[idx][:, :4]
    with pytest.raises(ValueError, match=rf"argument '{NAMES[idx]}' has shape \(2, 4, 2, \d\), expected"):
        gdn2_recurrent(*args[:6], initial_state=args[6])


def test_shapes_are_taken_from_q_and_v(gen):
    args = _seq(gen)
    args[0] = args[0][..., :3]
    with pytest.raises(ValueError, match=r"argument 'k' has shape \(2, 5, 2, 4\), expected \(2, 5, 2, 3\)"):
        gdn2_recurrent(*args[:6])
    args = _seq(gen)
    args[2] = args[2][..., :2]
    with pytest.raises(ValueError, match=r"argument 'w' has shape \(2, 5, 2, 3\), expected \(2, 5, 2, 2\)"):
        gdn2_recurrent(*args[:6])


def test_wrong_ndim_and_type(gen):
    args = _seq(gen)
    with pytest.raises(ValueError, match=r"argument 'k' has shape \(2, 5, 8\) \(3 dims\)"):
        gdn2_recurrent(args[0], args[1].reshape(2, 5, 8), *args[2:6])
    with pytest.raises(ValueError, match="argument 'v' must be a torch.Tensor"):
        gdn2_recurrent(args[0], args[1], args[2].numpy(), *args[3:6])


def test_wrong_dtype(gen):
    args = _seq(gen)
    args[3] = torch.zeros(args[3].shape, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"argument 'g' \(shape \(2, 5, 2, 4\)\) has dtype torch.int64"):
        gdn2_recurrent(*args[:6])
    args = _seq(gen)
    with pytest.raises(ValueError, match=r"argument 'initial_state' \(shape \(2, 2, 4, 3\)\) has dtype"):
        gdn2_recurrent(*args[:6], initial_state=args[6].half())


def test_wrong_state_shape(gen):
    args = _seq(gen)
    with pytest.raises(
        ValueError, match=r"argument 'initial_state' has shape \(1, 2, 4, 3\), expected \(2, 2, 4, 3\)"
    ):
        gdn2_recurrent(*args[:6], initial_state=args[6][:1])


@pytest.mark.parametrize("idx", range(7))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite(gen, idx, bad):
    args = _seq(gen)
    args[idx] = args[idx].clone()
    args[idx].view(-1)[3] = bad
    name = (NAMES + ["initial_state"])[idx]
    with pytest.raises(ValueError, match=rf"argument '{name}' \(shape \([\d, ]+\)\) has 1 non-finite"):
        gdn2_recurrent(*args[:6], initial_state=args[6])


def test_value_ranges(gen):
    args = _seq(gen)
    args[3] = args[3].clone()
    args[3][0, 0, 0, 0] = 0.5
    with pytest.raises(
        ValueError, match=r"argument 'g' \(shape \(2, 5, 2, 4\)\) is a log-decay and must be <= 0"
    ):
        gdn2_recurrent(*args[:6])
    for idx in (4, 5):
        args = _seq(gen)
        args[idx] = args[idx] * 1.5 + 0.01
        with pytest.raises(ValueError, match=rf"argument '{NAMES[idx]}' .* must lie in \[0, 1\]"):
            gdn2_recurrent(*args[:6])
    with pytest.raises(ValueError, match="argument 'scale' must be finite"):
        gdn2_recurrent(*_seq(gen)[:6], scale=float("nan"))


def test_step_validation(gen):
    q, k, v, g, b, w, S0 = make_inputs(2, 1, 2, 4, 3, gen=gen)
    step = [x[:, 0] for x in (q, k, v, g, b, w)]
    gdn2_step(*step, S0)
    with pytest.raises(ValueError, match=r"gdn2_step: argument 'state' has shape \(2, 2, 3, 4\)"):
        gdn2_step(*step, S0.transpose(-1, -2))
    with pytest.raises(ValueError, match=r"gdn2_step: argument 'w' has shape \(2, 2, 4\)"):
        gdn2_step(*step[:5], step[1], S0)
    bad = step[2].clone()
    bad[1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"gdn2_step: argument 'v' \(shape \(2, 2, 3\)\) has 1 non-finite"):
        gdn2_step(*step[:2], bad, *step[3:], S0)
    with pytest.raises(ValueError, match=r"argument 'out' has shape \(2, 2, 4\)"):
        gdn2_step(*step, S0, out=S0[..., 0])
