"""One short plan per libero_10 task, and one by goal for other suites' pick-and-place tasks.

Plans are composed from ``skills`` and ``grasps``.

Object and region names come from the task's parsed BDDL goal (``scene.goal``); only grasp styles and
the order of sub-goals are chosen here. Each plan is a generator of actions (see ``skills``).

libero_10's tasks (ids 0-9) have their plans by id (:data:`PLANS`): some goals that read alike need
different plans (task 5's book "in" the caddy, task 3's bowl "in" a drawer). Tasks of other suites
(``sim.libero.tasks``: LIBERO-90's ids start at 100) get theirs from the goal (:func:`plan_for`): only
goals whose every predicate puts a movable object in a basket or tray or on a plate, i.e. what
:func:`plan_pick_place` does for tasks 0, 1, 4, 6 and 7; anything else is refused by name.
"""

from __future__ import annotations

import numpy as np

from policies.libero_expert import articulated as art
from policies.libero_expert.grasps import grasp_body, grasp_handle, grasp_rim
from policies.libero_expert.skills import Ctx, pick, place

ROBOT_SIDE = np.pi  # world direction from the objects toward the robot base (-x)


def safe_height(ctx: Ctx) -> float:
    return ctx.scene.table_z + 0.25


def grasp_for(name: str):
    """Grasp style by object family."""
    if "bowl" in name:
        # Shallow, flared wall: pinch just under the lip or the inner finger hits the slope.
        return grasp_rim(name, depth=0.012, inset=0.005, prefer=ROBOT_SIDE)
    if "mug" in name:
        return grasp_rim(name, prefer=ROBOT_SIDE)
    if "moka_pot" in name:
        # Vertical bar of the side handle (body-frame +y), fingers across its thin local x.
        return grasp_handle(name, (0.0, 0.074, 0.03), bar_axis_angle_local=0.0)
    return grasp_body(name)


def bottom_offset(ctx: Ctx, name: str) -> float:
    """Height of the body origin above the object's lowest point."""
    lo, _ = ctx.scene.aabb(name)
    return float(ctx.scene.pos(name)[2] - lo[2])


def pick_place_region(ctx: Ctx, name: str, region: str, gap: float = 0.03, xy=None):
    """Pick ``name`` and drop it with its origin over the centre of region site ``region``."""
    sc, safe = ctx.scene, safe_height(ctx)
    ok = yield from pick(ctx, name, grasp_for(name), safe)
    if not ok:
        return False
    centre = sc.site_pos(region) if xy is None else np.asarray(xy, dtype=float)
    half = sc.site_half(region)
    floor = sc.site_pos(region)[2] - half[2]
    target = np.array([centre[0], centre[1], floor + bottom_offset(ctx, name)])
    yield from place(ctx, name, target, safe, release_gap=gap)
    return sc.holds(["in", name, region]) if region in sc.inner.object_sites_dict else True


def pick_place_on(ctx: Ctx, name: str, support: str, gap: float = 0.012):
    """Pick ``name`` and set it down centred on object ``support`` (LIBERO's On: xy within 3 cm)."""
    sc, safe = ctx.scene, safe_height(ctx)
    ok = yield from pick(ctx, name, grasp_for(name), safe)
    if not ok:
        return False
    _, hi = sc.aabb(support)
    p = sc.pos(support)
    target = np.array([p[0], p[1], hi[2] + bottom_offset(ctx, name)])
    yield from place(ctx, name, target, safe, release_gap=gap, xy_tol=0.004)
    return True


def _goal(ctx: Ctx, kind: str) -> list[list[str]]:
    return [g for g in ctx.scene.goal if g[0] == kind]


def plan_pick_place(ctx: Ctx):
    """Tasks 0, 1, 4, 6, 7: every goal is an ``in`` or ``on`` relation of a movable object."""
    sc = ctx.scene
    todo = [g for g in sc.goal if g[0] in ("in", "on")]
    # Nearest object first: clears the way and shortens the first reach.
    todo.sort(key=lambda g: np.linalg.norm(sc.pos(g[1])[:2] - ctx.eef[:2]))
    for kind, obj, target in todo:
        for _ in range(2):
            if sc.holds([kind, obj, target]):
                break
            if target in sc.inner.object_sites_dict:
                yield from pick_place_region(ctx, obj, target)
            else:
                yield from pick_place_on(ctx, obj, target)


def plan_stove(ctx: Ctx):
    """Tasks 2 and 8: turn the stove on (knob first, while the path is clear), moka pot(s) on it."""
    sc = ctx.scene
    (stove,) = [g[1] for g in _goal(ctx, "turnon")]
    yield from art.turn_on_knob(ctx, stove)
    pots = [g for g in _goal(ctx, "on")]
    region = pots[0][2]
    centre = sc.site_pos(region)
    # Two pots share the burner: aim them at either side of its centre along y.
    offsets = [np.zeros(2)] if len(pots) == 1 else [np.array([-0.035, -0.04]), np.array([0.035, 0.04])]
    pots.sort(key=lambda g: sc.pos(g[1])[1])
    for (_, pot, reg), off in zip(pots, offsets):
        for _ in range(2):
            if sc.holds(["on", pot, reg]):
                break
            yield from pick_place_region(ctx, pot, reg, gap=0.015, xy=centre[:2] + off)
    if not sc.holds(["turnon", stove]):
        yield from art.turn_on_knob(ctx, stove)


def plan_drawer(ctx: Ctx):
    """Task 3: bowl into the open bottom drawer, then push the drawer shut."""
    sc = ctx.scene
    (_, bowl, region) = _goal(ctx, "in")[0]
    for _ in range(2):
        if sc.holds(["in", bowl, region]):
            break
        yield from pick_place_region(ctx, bowl, region, gap=0.02)
    yield from art.close_drawer(ctx, region)


def plan_microwave(ctx: Ctx):
    """Task 9: mug into the microwave, then swing the door shut."""
    (_, mug, region) = _goal(ctx, "in")[0]
    (_, door) = _goal(ctx, "close")[0]
    yield from art.mug_into_microwave(ctx, mug, region)
    yield from art.close_door(ctx, door)


def plan_caddy(ctx: Ctx):
    """Task 5: book upright into the back compartment of the caddy."""
    (_, book, region) = _goal(ctx, "in")[0]
    yield from art.book_into_caddy(ctx, book, region)


# The containers and supports plan_pick_place is measured on (docs/libero_expert.md); a region is
# ``<object>_contain_region`` of one of these, an "on" support one of these objects.
CONTAINERS = ("basket", "tray")
SUPPORTS = ("plate",)


def _is_pick_place(goal: list[list[str]], movable) -> bool:
    def target_ok(kind: str, target: str) -> bool:
        if kind == "in":
            owner = next((m for m in movable if target.startswith(m + "_")), None)
            return (
                owner is not None
                and target.endswith("_contain_region")
                and any(c in owner for c in CONTAINERS)
            )
        return target in movable and any(s in target for s in SUPPORTS)

    return bool(goal) and all(
        len(g) == 3 and g[0] in ("in", "on") and g[1] in movable and target_ok(g[0], g[2]) for g in goal
    )


def plan_for(task_id: int, goal: list[list[str]], movable):
    """The plan of ``task_id``: libero_10's by id, any other task's by its goal (module docstring);
    ValueError naming the goal when no plan fits. ``movable``: the scene's movable object names."""
    if task_id in PLANS:
        return PLANS[task_id]
    if _is_pick_place(goal, set(movable)):
        return plan_pick_place
    raise ValueError(
        f"task {task_id}: the scripted expert has no plan for the goal {goal} (other suites' tasks: "
        f"movable objects in a {' / '.join(CONTAINERS)} or on a {' / '.join(SUPPORTS)} only)"
    )


PLANS = {
    0: plan_pick_place,
    1: plan_pick_place,
    2: plan_stove,
    3: plan_drawer,
    4: plan_pick_place,
    5: plan_caddy,
    6: plan_pick_place,
    7: plan_pick_place,
    8: plan_stove,
    9: plan_microwave,
}
