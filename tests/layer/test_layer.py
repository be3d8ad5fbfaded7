"""AuraMem: zero-initialised correction, skipped writes, factored write record, step == sequence, budget."""

import copy

import pytest
import torch

from aura.layer import RULES, AuraMem, AuraMemConfig


def _model(rule="gdn2", d_model=24, heads=1, seed=0, gate_bias=None, dtype=torch.float32):
    torch.manual_seed(seed)
    m = AuraMem(AuraMemConfig(d_model=d_model, d_key=8, d_val=6, d_action=5, heads=heads, rule=rule))
    with torch.no_grad():
        m.head.weight.normal_()  # a trained-looking correction head, so reads reach the action
        if gate_bias is not None:
            m.gate.mlp[2].bias.fill_(gate_bias)
    return m.to(dtype).eval()


def _inputs(b=3, t=40, d_model=24, d_action=5, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, d_model, generator=g, dtype=dtype), torch.randn(
        b, t, d_action, generator=g, dtype=dtype
    )


@pytest.mark.parametrize("rule", RULES)
def test_fresh_wrapper_returns_base_action_exactly(rule):
    torch.manual_seed(0)
    m = AuraMem(d_model=24, d_action=5, rule=rule).eval()
    z, a = _inputs(d_model=24)
    assert m.forward(z, a).write.any(), "the fresh gate starts open, so the memory is being written"
    assert torch.equal(m.forward(z, a).action, a)
    state = torch.randn(3, *m.config.state_shape)
    assert torch.equal(m.step(z[:, 0], a[:, 0], state).action, a[:, 0])


def test_state_bytes_and_shape():
    m = AuraMem(d_model=16)
    assert m.config.state_bytes == 4224
    s = m.init_state(1)
    assert s.shape == (1, 1, 33, 32) and s.dtype == torch.float32
    assert s.numel() * s.element_size() == 4224
    assert AuraMemConfig(d_model=4, heads=2).state_bytes == 2 * 4224


@pytest.mark.parametrize("rule", RULES)
def test_no_write_leaves_state_bit_identical(rule):
    m = _model(rule, gate_bias=-30.0)  # gate closed everywhere
    z, a = _inputs()
    state = torch.randn(3, *m.config.state_shape)
    out = m.step(z[:, 0], a[:, 0], state)
    assert not out.write.any()
    assert torch.equal(out.state, state)
    seq = m.forward(z, a, state)
    assert not seq.write.any() and torch.equal(seq.state, state)
    # the same holds in training mode, where the state is mixed with the straight-through mask
    seq = m.train().forward(z, a, state)
    assert not seq.write.any() and torch.equal(seq.state, state)


def test_forced_schedule_skips_exactly_on_false_steps():
    m = _model()
    z, a = _inputs()
    sched = torch.rand(3, 40, generator=torch.Generator().manual_seed(2)) < 0.3
    state = m.init_state(3)
    for t in range(40):
        out, _ = m._core(m.project(z[:, t]), m.gate.z_features(z[:, t]), a[:, t], state, sched[:, t])
        skipped = ~sched[:, t]
        assert torch.equal(out.state[skipped], state[skipped])
        assert torch.equal(out.write, sched[:, t])
        state = out.state


@pytest.mark.parametrize("rule", RULES)
def test_factored_write_record_replays_the_state_exactly(rule):
    m = _model(rule, gate_bias=30.0)  # every step writes
    z, a = _inputs()
    state = torch.randn(3, *m.config.state_shape)
    kd = m.config.d_key
    for t in range(10):
        out = m.step(z[:, t], a[:, t], state)
        assert out.write.all()
        s_new = out.decay[..., :, None] * state[:, :, :kd] + out.key[..., :, None] * out.delta[..., None, :]
        assert torch.equal(out.state[:, :, :kd], s_new)
        assert torch.equal(out.state[:, :, kd], out.aux)
        state = out.state


def test_norm_guard_bounds_the_state_and_keeps_the_record_exact():
    m = _model("gdn2", heads=2, gate_bias=30.0)  # every step writes
    m.config.max_state_norm = 5.0
    z, a = _inputs(t=60)
    state = 20 * torch.randn(3, *m.config.state_shape)  # starts far above the bound
    kd = m.config.d_key
    for t in range(60):
        out = m.step(z[:, t], a[:, t], state)
        s_new = out.decay[..., :, None] * state[:, :, :kd] + out.key[..., :, None] * out.delta[..., None, :]
        assert torch.equal(out.state[:, :, :kd], s_new)  # the guard is folded into the replayable record
        assert torch.linalg.vector_norm(out.state[:, :, :kd], dim=(-2, -1)).max() <= 5.0 * (1 + 1e-5)
        state = out.state


def test_norm_guard_is_bit_identical_below_its_bound():
    guarded, free = _model("gdn2", gate_bias=30.0), _model("gdn2", gate_bias=30.0)
    free.config.max_state_norm = None
    z, a = _inputs()
    s1 = s2 = guarded.init_state(3)
    for t in range(40):
        o1, o2 = guarded.step(z[:, t], a[:, t], s1), free.step(z[:, t], a[:, t], s2)
        assert torch.equal(o1.state, o2.state) and torch.equal(o1.action, o2.action)
        s1, s2 = o1.state, o2.state


@pytest.mark.parametrize("rule,heads", [("gdn2", 1), ("gdn2", 2), ("kda", 1), ("gdn", 2), ("deltanet", 1)])
def test_step_api_equals_sequence_api(rule, heads):
    m = _model(rule, heads=heads, gate_bias=0.0)  # gate near 0.5: both decisions occur
    z, a = _inputs()
    state0 = torch.randn(3, *m.config.state_shape) * 0.1
    seq = m.forward(z, a, state0)
    assert seq.write.any() and (~seq.write).any()
    state = state0
    for t in range(z.shape[1]):
        out = m.step(z[:, t], a[:, t], state)
        # bit for bit: the sequence API runs the very same per-step ops
        assert torch.equal(out.write, seq.write[:, t])
        assert torch.equal(out.action, seq.action[:, t])
        assert torch.equal(out.gate_prob, seq.gate_prob[:, t])
        state = out.state
    assert torch.equal(state, seq.state)


def test_float32_matches_float64_reference():
    m32 = _model(gate_bias=30.0)
    m64 = _model(gate_bias=30.0, dtype=torch.float64)
    z, a = _inputs(t=64)
    o32 = m32.forward(z, a)
    o64 = m64.forward(z.double(), a.double())
    rel = (o32.action.double() - o64.action).norm() / o64.action.norm()
    assert rel < 1e-5, rel


def test_hard_write_budget_is_respected():
    m = _model(gate_bias=0.0)
    z, a = _inputs(t=60)
    free = m.forward(z, a)
    assert (free.write.sum(1) > 4).all()
    capped = m.forward(z, a, max_writes=4)
    assert (capped.write.sum(1) == 4).all()
    # up to the budget the decisions are the same as without it
    for row in range(3):
        first = torch.nonzero(free.write[row])[:4, 0]
        assert torch.equal(torch.nonzero(capped.write[row])[:, 0], first)


def test_straight_through_gradient_reaches_the_gate():
    m = _model(gate_bias=0.0).train()
    z, a = _inputs(t=20)
    out = m.forward(z, a)
    out.action.pow(2).mean().backward()
    g = m.gate.mlp[2].weight.grad
    assert g is not None and g.abs().sum() > 0


def test_gumbel_estimator_is_seeded_and_only_in_training():
    m = _model(gate_bias=0.0)
    m.config.estimator = "gumbel"
    z, a = _inputs(t=30)
    m.train()
    w1 = m.forward(z, a, generator=torch.Generator().manual_seed(5)).write
    w2 = m.forward(z, a, generator=torch.Generator().manual_seed(5)).write
    w3 = m.forward(z, a, generator=torch.Generator().manual_seed(6)).write
    assert torch.equal(w1, w2) and not torch.equal(w1, w3)
    m.eval()
    assert torch.equal(m.forward(z, a).write, m.forward(z, a).write)


def test_train_margin_draws_each_steps_threshold_only_in_training():
    """tau + U(-m, m) while training: p_t = 0.55 writes on some steps, 0.75 on all, 0.25 on none (m = 0.2);
    at inference exactly p_t > tau."""
    m = _model()
    m.config.train_margin = 0.2
    z, a = _inputs(b=4, t=60)

    def writes(p, train, seed=5):
        with torch.no_grad():
            m.gate.mlp[2].weight.zero_()
            m.gate.mlp[2].bias.fill_(torch.logit(torch.tensor(p)).item())
        m.train(train)
        return m.forward(z, a, generator=torch.Generator().manual_seed(seed)).write

    mixed = writes(0.55, True).float().mean().item()
    assert 0.4 < mixed < 0.85  # P(U(0.3, 0.7) < 0.55) = 0.625
    assert torch.equal(writes(0.55, True), writes(0.55, True))  # seeded by the generator
    assert not torch.equal(writes(0.55, True), writes(0.55, True, seed=6))
    assert writes(0.75, True).all() and not writes(0.25, True).any()
    assert writes(0.55, False).all() and not writes(0.45, False).any()


def test_train_margin_is_recorded_only_when_set():
    assert "train_margin" not in AuraMemConfig(d_model=8).to_dict()
    d = AuraMemConfig(d_model=8, train_margin=0.2).to_dict()
    assert d["train_margin"] == 0.2 and AuraMemConfig.from_dict(d).train_margin == 0.2


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(d_model=8, train_margin=0.5),
        dict(d_model=8, train_margin=-0.1),
        dict(d_model=8, threshold=0.8, train_margin=0.25),
        dict(d_model=0),
        dict(d_model=8, rule="lstm"),
        dict(d_model=8, threshold=1.0),
        dict(d_model=8, estimator="x"),
        dict(d_model=8, max_state_norm=0.0),
        dict(d_model=8, max_state_norm=float("inf")),
    ],
)
def test_bad_config_is_a_clear_error(kwargs):
    with pytest.raises(ValueError, match="AuraMemConfig"):
        AuraMemConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown field"):
        AuraMemConfig.from_dict({"d_model": 8, "d_modle": 9})


def test_step_exports_to_onnx_and_matches_onnxruntime(tmp_path):
    pytest.importorskip("onnxscript", reason="ONNX export needs the deploy extra (onnx, onnxscript)")
    ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (deploy extra)")
    m = _model(d_model=24, gate_bias=0.0)

    class Step(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, z, a, s):
            return tuple(self.inner.step(z, a, s))

    z, a = _inputs(b=1, t=1)
    s = torch.randn(1, *m.config.state_shape) * 0.1
    path = tmp_path / "step.onnx"
    torch.onnx.export(Step(m).eval(), (z[:, 0], a[:, 0], s), str(path), dynamo=True, opset_version=18)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    got = sess.run(None, dict(zip(names, (z[:, 0].numpy(), a[:, 0].numpy(), s.numpy()))))
    ref = m.step(z[:, 0], a[:, 0], s)
    assert got[2].dtype == bool and got[2] == ref.write.numpy()
    for x, y in zip(got, ref):
        torch.testing.assert_close(torch.from_numpy(x).to(y.dtype), y.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule,heads", [("gdn2", 1), ("kda", 2), ("deltanet", 1)])
def test_always_write_memory_matches_the_gdn2_spec(rule, heads):
    """With every step written, the layer's memory is GDN-2 (aura.memory's naive spec) on its projections."""
    from aura.memory import gdn2_recurrent, gdn2_step

    m = _model(rule, heads=heads, gate_bias=30.0)
    z, a = _inputs(t=50)
    s0 = torch.randn(3, *m.config.state_shape) * 0.1
    kd = m.config.d_key
    seq = m.forward(z, a, s0, schedule=torch.ones(3, 50, dtype=torch.bool))
    m64 = copy.deepcopy(m).double()
    p = m64.project(z.double())
    s0_64 = s0[:, :, :kd].double()
    o, s_ref = gdn2_recurrent(*p, scale=m.scale, initial_state=s0_64, output_final_state=True)
    torch.testing.assert_close(seq.state[:, :, :kd].double(), s_ref, rtol=1e-5, atol=1e-5)
    correction = m64.correction(o.reshape(3 * 50, *o.shape[2:])).reshape(3, 50, -1)
    torch.testing.assert_close((seq.action - a).double(), correction, rtol=1e-4, atol=1e-5)
    # and one step of the layer is one gdn2_step
    with torch.no_grad():
        out = m.step(z[:, 0], a[:, 0], s0)
        o1, s1 = gdn2_step(*m.project(z[:, 0]), s0[:, :, :kd].clone(), scale=m.scale)
    assert out.write.all()
    torch.testing.assert_close(out.state[:, :, :kd], s1, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.action - a[:, 0], m.correction(o1), rtol=1e-5, atol=1e-6)
