"""Grasp choices from an object's own collision geometry (body-frame boxes of its geoms).

Three grasp families cover libero_10:
- ``grasp_body``: fingers across the short horizontal side of the body (cans, boxes);
- ``grasp_rim``: pinch the wall of an open vessel (mugs, bowls) at its rim, away from the handle;
- ``grasp_handle``: the vertical bar of a side handle (moka pots), fingers across the bar.
Every choice that has freedom (which side, which yaw) takes the one with the most clearance from
the other objects (``skills.clearance``).
"""

from __future__ import annotations

import numpy as np

from policies.libero_expert.skills import Ctx, Grasp, clearance


def _finger_yaw(direction_angle: float) -> float:
    """Yaw that lays the finger axis along the world direction at ``direction_angle``."""
    return direction_angle - np.pi / 2


def grasp_body(name: str, z_frac: float = 0.5, z_max_above: float = 0.05):
    def fn(ctx: Ctx) -> Grasp:
        sc = ctx.scene
        loc = sc.geom_boxes(name, frame="body")
        lo, hi = loc[:, 0].min(0), loc[:, 1].max(0)
        ext = hi - lo
        center_local = (lo + hi) / 2
        r = sc.rot(name)
        center = sc.pos(name) + r @ center_local
        wlo, whi = sc.aabb(name)
        z = max(wlo[2] + min(z_frac * (whi[2] - wlo[2]), z_max_above), sc.table_z + 0.012)
        point = np.array([center[0], center[1], z])
        # The body's horizontal local axes: x and y when it stands (local z up), the other two when it
        # has toppled (e.g. a carton thrown by LIBERO's init state and landed on its side).
        up = int(np.argmax(np.abs(r[2, :])))
        a, b = [i for i in range(3) if i != up]
        ax_a = np.arctan2(r[1, a], r[0, a])  # world angle of local axis a
        short = ax_a if ext[a] <= ext[b] else ax_a + np.pi / 2
        yaws = [_finger_yaw(short)]
        if max(ext[a], ext[b]) < 1.3 * min(ext[a], ext[b]):
            yaws.append(_finger_yaw(short + np.pi / 2))
        scores = [clearance(sc, point, y, (name,), z - 0.03) for y in yaws]
        return Grasp(point, yaws[int(np.argmax(np.round(scores, 3)))])

    return fn


def rim_geometry(ctx: Ctx, name: str):
    """(rim centre local xy, rim radius, local top z, handle direction angle local or None)."""
    loc = ctx.scene.geom_boxes(name, frame="body")
    top = loc[:, 1, 2].max()
    rim = loc[loc[:, 1, 2] > top - 0.006]
    rlo, rhi = rim[:, 0, :2].min(0), rim[:, 1, :2].max(0)
    c = (rlo + rhi) / 2
    radius = float(np.min(rhi - rlo) / 2)
    alo, ahi = loc[:, 0, :2].min(0), loc[:, 1, :2].max(0)
    # A handle shows as the whole-object box reaching beyond the rim box on one side.
    beyond = np.array([ahi[0] - rhi[0], rlo[0] - alo[0], ahi[1] - rhi[1], rlo[1] - alo[1]])
    handle = None
    if beyond.max() > 0.01:
        handle = [0.0, np.pi, np.pi / 2, -np.pi / 2][int(np.argmax(beyond))]
    return c, radius, float(top), handle


def grasp_rim(name: str, depth: float = 0.035, inset: float = 0.008, prefer=None):
    """Pinch the vessel wall: grip point on the rim circle, finger axis radial."""

    def fn(ctx: Ctx) -> Grasp:
        sc = ctx.scene
        c, radius, top, handle = rim_geometry(ctx, name)
        r, p = sc.rot(name), sc.pos(name)
        yaw_obj = np.arctan2(r[1, 0], r[0, 0])
        best = None
        for k in range(12):
            ang = k * np.pi / 6  # local angle of the radial direction
            if handle is not None and abs(np.angle(np.exp(1j * (ang - handle)))) < np.pi / 3:
                continue
            local = np.array(
                [c[0] + (radius - inset) * np.cos(ang), c[1] + (radius - inset) * np.sin(ang), top - depth]
            )
            point = p + r @ local
            yaw = _finger_yaw(yaw_obj + ang)
            score = clearance(sc, point, yaw, (name,), point[2] - 0.03)
            world_ang = yaw_obj + ang
            if prefer is not None:
                # Small bonus for sides facing the preferred world direction (e.g. the robot).
                score += 0.01 * np.cos(world_ang - prefer)
            if best is None or score > best[0] + 1e-9:
                best = (score, point, yaw)
        return Grasp(best[1], best[2], approach=0.08)

    return fn


def grasp_handle(name: str, local_point, bar_axis_angle_local: float = 0.0):
    """Grip a handle bar at body-frame ``local_point``; fingers along the bar's thin local axis."""

    def fn(ctx: Ctx) -> Grasp:
        sc = ctx.scene
        r, p = sc.rot(name), sc.pos(name)
        yaw_obj = np.arctan2(r[1, 0], r[0, 0])
        point = p + r @ np.asarray(local_point, dtype=float)
        return Grasp(point, _finger_yaw(yaw_obj + bar_axis_angle_local), approach=0.08)

    return fn


def handle_frame(ctx: Ctx, name: str):
    """(grip point world, handle direction world angle, rim centre world) of a mug's side handle."""
    sc = ctx.scene
    c, radius, _, h = rim_geometry(ctx, name)
    if h is None:
        raise ValueError(f"{name} has no side handle")
    loc = sc.geom_boxes(name, frame="body")
    d = np.array([np.cos(h), np.sin(h)])
    far = np.max(loc[:, :, :2] @ d, axis=1) - c @ d  # outermost reach of each geom along d
    bar = loc[far > radius + 0.005]
    reach = float(np.max(far))
    zmid = float((bar[:, 0, 2].min() + bar[:, 1, 2].max()) / 2)
    local = np.array([c[0] + (reach - 0.007) * d[0], c[1] + (reach - 0.007) * d[1], zmid])
    r, p = sc.rot(name), sc.pos(name)
    yaw_obj = float(np.arctan2(r[1, 0], r[0, 0]))
    centre = p + r @ np.array([c[0], c[1], 0.0])
    return p + r @ local, yaw_obj + h, centre


def grasp_mug_handle(name: str):
    """Fingers across the handle's outer vertical bar (finger axis perpendicular to the handle)."""

    def fn(ctx: Ctx) -> Grasp:
        point, ang, _ = handle_frame(ctx, name)
        return Grasp(point, _finger_yaw(ang + np.pi / 2), approach=0.08)

    return fn
