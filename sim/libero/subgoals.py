"""Sub-task boundaries of a LIBERO episode: the first step at which each goal predicate holds.

A libero_10 goal is a conjunction of BDDL predicates, ``G = g_1 AND ... AND g_m`` (e.g. task 0:
``In(alphabet_soup_1, basket_1_contain_region) AND In(tomato_sauce_1, basket_1_contain_region)``); LIBERO
parses it into ``env.parsed_problem["goal_state"]`` and its success check is ``all(_eval_predicate(g_j))``.
Here each g_j is evaluated on every observation s_t of an episode and the boundary of sub-task j is

    tau_j = min { t : g_j(s_t) }        (None if g_j never holds),

where t counts the actions applied before s_t (s_0 is the observation after reset, s_t the one after the
t-th env step). A write at policy step t reads s_t, so a write at t = tau_j is the first one that sees
sub-task j done. g_j may stop holding later (an object knocked out again); tau_j keeps the first time.
Cost: the same predicate calls LIBERO's own success check makes each step.
"""

from __future__ import annotations


def _problem(raw_env):
    """LIBERO's problem env (``OffScreenRenderEnv.env``) or ``raw_env`` itself if it is one."""
    inner = getattr(raw_env, "env", raw_env)
    if not hasattr(inner, "parsed_problem") or not hasattr(inner, "_eval_predicate"):
        raise ValueError(f"{type(raw_env).__name__} is not a LIBERO env (no parsed BDDL goal)")
    return inner


def goal_predicates(raw_env) -> list[tuple[str, ...]]:
    """The conjuncts g_j of the task's goal, e.g. ``("in", "alphabet_soup_1", "basket_1_contain_region")``."""
    return [tuple(str(x) for x in g) for g in _problem(raw_env).parsed_problem["goal_state"]]


class SubgoalTracker:
    """``observe(t)`` after every observation s_t; ``steps[j]`` is tau_j (module docstring)."""

    def __init__(self, raw_env):
        self._env = _problem(raw_env)
        self.predicates = goal_predicates(raw_env)
        self.names = [" ".join(g) for g in self.predicates]
        self.steps: list[int | None] = [None] * len(self.predicates)

    def holds(self) -> list[bool]:
        """g_j(s) of the current simulator state, for every j."""
        return [bool(self._env._eval_predicate(list(g))) for g in self.predicates]

    def observe(self, t: int) -> None:
        for j, ok in enumerate(self.holds()):
            if ok and self.steps[j] is None:
                self.steps[j] = int(t)
