"""Scripted LIBERO expert: argument checks, benchmark helpers, and one short real episode."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from policies.libero_expert import ScriptedExpert

HAS_LIBERO = all(importlib.util.find_spec(m) is not None for m in ("libero", "robosuite", "mujoco"))


@pytest.mark.parametrize("bad", [-1, 2.0, "3", None, True])
def test_rejects_bad_task_id(bad):
    with pytest.raises(ValueError, match="task_id"):
        ScriptedExpert(bad)


def test_plans_by_id_for_libero_10_and_by_goal_for_other_suites():
    from policies.libero_expert.plans import PLANS, plan_for, plan_pick_place

    movable = {"butter_1", "basket_1", "milk_1", "plate_1", "akita_black_bowl_1"}
    basket = [["in", "butter_1", "basket_1_contain_region"]]
    assert plan_for(5, basket, movable) is PLANS[5]  # libero_10 keeps its plan by id, whatever the goal
    assert plan_for(151, basket, movable) is plan_pick_place  # LIBERO-90's LIVING_ROOM_SCENE2 sibling
    assert plan_for(160, [["on", "milk_1", "plate_1"]], movable) is plan_pick_place
    for goal in (
        [["in", "akita_black_bowl_1", "white_cabinet_1_top_region"]],  # a fixture's region: no plan
        [["turnon", "flat_stove_1"]],
        [["in", "butter_1", "basket_1_contain_region"], ["close", "microwave_1"]],
        [],
    ):
        with pytest.raises(ValueError, match="no plan for the goal"):
            plan_for(151, goal, movable)


def test_act_before_reset_is_a_clear_error():
    with pytest.raises(ValueError, match="reset"):
        ScriptedExpert(0).act(object(), {"robot0_eef_pos": np.zeros(3)})


def test_bench_parse_ids_and_wilson(benchmark_script):
    b = benchmark_script("libero_expert")
    assert b.parse_ids("0-3,7", 10, "tasks") == [0, 1, 2, 3, 7]
    for bad in ("10", "a-b", "", "3-12"):
        with pytest.raises(ValueError, match="--tasks"):
            b.parse_ids(bad, 10, "tasks")
    lo, hi = b.wilson(45, 50)
    assert 0.78 < lo < 0.79 and 0.95 < hi < 0.96  # textbook values for 45/50
    assert b.wilson(0, 0) == (0.0, 1.0)


@pytest.mark.skipif(
    not HAS_LIBERO, reason="needs the LIBERO stack (libero, robosuite, mujoco): the `sim` extra"
)
def test_expert_grasps_and_lifts_the_first_object():
    """Task 0, init state 0: within 110 steps the expert grasps a goal object and lifts it >= 5 cm;
    every action is a finite 7-vector in [-1, 1]; its goal tolerance (what transit-only DART noise gates
    on) is the running move's, 0 while it settles or works the gripper."""
    from policies.libero_expert.scene import Scene
    from sim.libero.expert_env import make_env, reset_to

    env, _, inits = make_env(0)
    try:
        obs = reset_to(env, inits, 0)
        sc = Scene(env)
        goal_objs = [g[1] for g in sc.goal]
        z0 = {n: sc.pos(n)[2] for n in goal_objs}
        expert = ScriptedExpert(0)
        expert.reset(env)
        risen, tols = 0.0, {}
        for _ in range(110):
            a = expert.act(env, obs)
            assert a.shape == (7,) and np.all(np.isfinite(a)) and np.all(np.abs(a) <= 1.0)
            tols.setdefault(expert.stage, set()).add(expert.goal_tolerance)
            obs, _, _, _ = env.step(a)
            risen = max(risen, max(sc.pos(n)[2] - z0[n] for n in goal_objs))
            if risen > 0.05:
                break
        assert risen > 0.05, f"no goal object was lifted (max rise {risen:.3f} m)"
        assert obs["robot0_gripper_qpos"][0] < 0.035  # the fingers are closed on it
        assert tols["settle"] == tols["actuate"] == {0.0}
        assert min(tols["move"]) > 0 and min(tols["move"]) < 0.015 <= max(tols["move"])  # approach, lift
    finally:
        env.close()
