"""Sub-task boundaries: tau_j = first step at which goal predicate g_j holds, on a scripted stand-in and on
LIBERO's own parsed goal (task 0: two ``in`` predicates, none holding at reset; the conjunction is LIBERO's
success check)."""

import pytest

from sim.libero.subgoals import SubgoalTracker, goal_predicates


class _Problem:
    """parsed_problem + _eval_predicate whose truth values follow a script per predicate."""

    def __init__(self, script):
        self.parsed_problem = {"goal_state": [["on", "a", "b"], ["open", "drawer"]]}
        self.script, self.t = script, 0

    def _eval_predicate(self, state):
        return self.script[" ".join(state)][self.t]


def test_tracker_keeps_the_first_step_each_predicate_holds():
    prob = _Problem({"on a b": [0, 0, 1, 1, 0, 1], "open drawer": [0, 0, 0, 0, 0, 0]})
    tr = SubgoalTracker(type("Raw", (), {"env": prob})())
    assert tr.names == ["on a b", "open drawer"] and tr.predicates[1] == ("open", "drawer")
    for t in range(6):
        prob.t = t
        tr.observe(t)
    assert tr.steps == [2, None]  # 2, not 5: a predicate that stops and starts holding keeps its first time
    with pytest.raises(ValueError, match="not a LIBERO env"):
        SubgoalTracker(object())


@pytest.fixture(scope="module")
def env():
    pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")
    from sim.libero.env import LiberoEnv

    e = LiberoEnv(0, cameras=(), max_steps=520)
    yield e
    e.close()


def test_task0_goal_is_two_in_predicates_none_holding_at_reset(env):
    env.reset(seed=0, options={"init_state": 0})
    preds = goal_predicates(env.raw_env)
    assert [p[0] for p in preds] == ["in", "in"]
    assert {p[1] for p in preds} == {"alphabet_soup_1", "tomato_sauce_1"}
    tr = SubgoalTracker(env.raw_env)
    assert tr.holds() == [False, False] and all(tr.holds()) == env.raw_env.env._check_success()
    tr.observe(0)
    assert tr.steps == [None, None]


@pytest.mark.slow
def test_expert_episode_reaches_both_subgoals_by_success(env):
    from policies.libero_expert import ScriptedExpert

    obs, _ = env.reset(seed=0, options={"init_state": 0})
    expert, tr = ScriptedExpert(0), SubgoalTracker(env.raw_env)
    expert.reset(env.raw_env)
    tr.observe(0)
    success = False
    while not success and env.steps < 520:
        obs, _, success, _, _ = env.step(expert.act(env.raw_env, env.raw_obs))
        tr.observe(env.steps)
    assert success and None not in tr.steps
    assert 0 < min(tr.steps) < max(tr.steps) <= env.steps  # one object first, then the other
