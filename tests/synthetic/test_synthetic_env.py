"""Synthetic benchmark: frozen encoder (numpy == torch), generator statistics, env == generator streams."""

import numpy as np
import pytest

from policies.random_encoder import RandomEncoder, RandomEncoderBackbone, TorchRandomEncoder
from sim.synthetic import CONFIGS, SyntheticRecallEnv, generate, get_config, make_backbone
from sim.synthetic.generator import DISTRACTOR, EVENT, QUERY


def test_encoder_is_deterministic_and_numpy_equals_torch():
    torch = pytest.importorskip("torch")
    a, b, c = RandomEncoder(20, 64, seed=3), RandomEncoder(20, 64, seed=3), RandomEncoder(20, 64, seed=4)
    x = np.random.default_rng(0).standard_normal((5, 7, 20)).astype(np.float32)
    assert np.array_equal(a(x), b(x)) and not np.allclose(a(x), c(x))
    z_t = TorchRandomEncoder(a)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(z_t, a(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="expected 20"):
        a(np.zeros((3, 21), np.float32))
    feats, base = RandomEncoderBackbone(a, 8)(x[0, 0])
    assert (
        feats.shape == (64,) and feats.dtype == np.float32 and np.array_equal(base, np.zeros(8, np.float32))
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_generator_rates_and_answers(name):
    cfg = CONFIGS[name]
    ep = generate(cfg, 400, seed=0)
    kind = ep.kind[:, 1:]  # step 0 is always an event
    assert abs((kind == EVENT).mean() - cfg.event_rate) < 0.01
    assert abs((kind == DISTRACTOR).mean() - cfg.distractor_rate) < 0.01
    assert abs((kind == QUERY).mean() - cfg.query_rate) < 0.01
    assert (ep.kind[:, 0] == EVENT).all()
    # the answer changes exactly on real events, and always to a new symbol
    changed = ep.answer[:, 1:] != ep.answer[:, :-1]
    assert np.array_equal(changed, ep.kind[:, 1:] == EVENT)
    assert np.array_equal(ep.shown[ep.kind == EVENT], ep.answer[ep.kind == EVENT])
    assert np.array_equal(ep.target >= 0, ep.kind == QUERY)
    tgt = ep.target_actions()
    q = ep.kind == QUERY
    assert np.isnan(tgt[~q]).all() and np.array_equal(tgt[q].argmax(-1), ep.target[q])
    assert ep.features.shape == (400, cfg.horizon, cfg.d_model) and ep.features.dtype == np.float32


def test_same_seed_same_stream():
    cfg = get_config("hard", horizon=40)
    a, b = generate(cfg, 3, seed=5), generate(cfg, 3, seed=5)
    assert np.array_equal(a.obs, b.obs) and np.array_equal(a.kind, b.kind)
    assert not np.array_equal(a.obs, generate(cfg, 3, seed=6).obs)


def test_env_plays_the_generator_stream_and_scores_queries():
    env = SyntheticRecallEnv("hard", horizon=60)
    ref = generate(env.cfg, 1, seed=11)
    obs, info = env.reset(seed=11)
    backbone = make_backbone(env.cfg)
    total, n_query = 0.0, 0
    assert info["t"] == 0 and info["answer"] == ref.answer[0, 0]
    for t in range(60):
        assert np.array_equal(obs, ref.obs[0, t])
        np.testing.assert_allclose(backbone(obs)[0], ref.features[0, t], rtol=1e-5, atol=1e-6)
        action = np.eye(8, dtype=np.float32)[ref.answer[0, t]]  # a perfect-memory agent
        obs, reward, terminated, truncated, info = env.step(action)
        assert info["t"] == t and info["answer"] == ref.answer[0, t]  # info describes the step just taken
        total += reward
        n_query += info["query"]
        assert not terminated and truncated == (t == 59)
    assert n_query == (ref.kind == QUERY).sum() and total == n_query
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(8, np.float32))


def test_env_bad_action_is_a_clear_error_and_nan_is_never_correct():
    env = SyntheticRecallEnv("easy", horizon=30)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.float32))
    for _ in range(30):
        _, reward, _, _, info = env.step(np.full(8, np.nan, np.float32))
        assert reward == 0.0 and info["invalid_action"]


def test_env_passes_gymnasium_checker():
    from gymnasium.utils.env_checker import check_env

    check_env(SyntheticRecallEnv("easy", horizon=20), skip_render_check=True)


def test_bad_config_name_is_a_clear_error():
    with pytest.raises(ValueError, match="--config"):
        get_config("medium")
