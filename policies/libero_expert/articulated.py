"""Skills for fixtures and awkward placements: stove knob, drawer, microwave door, mug into the
microwave, book into the caddy.

Joint conventions (read from the model, checked against LIBERO's predicates):
- stove knob: hinge about world z, "on" when q >= 0.5 rad (q in [0, 2.1]); a paddle geom along the
  stove's local -x (at q = 0) sticks up 5 cm.
- drawer: slide along world y, closed when q > 0 (open about -0.146); pushing +y closes it.
- microwave door: hinge about world z at the door's left edge, closed when q > -0.005, open about
  -1.58; the free edge sits at angle q from +x, so closing sweeps it toward +x.
"""

from __future__ import annotations

import numpy as np

from policies.libero_expert.skills import CLOSE, OPEN, Ctx, actuate, lift, move, nearest_yaw, servo


def _joint_of(ctx: Ctx, fixture: str, kind: str) -> str:
    m = ctx.scene.model
    names = [m.joint(j).name for j in range(m.njnt)]
    cands = [n for n in names if n.startswith(fixture) and kind in n]
    if not cands:
        raise ValueError(f"no joint containing {kind!r} under fixture {fixture!r}")
    return cands[0]


def _body_frame(ctx: Ctx, body: str):
    m, d = ctx.scene.model, ctx.scene.data
    b = m.body(body).id
    return d.xpos[b].copy(), d.xmat[b].reshape(3, 3).copy()


def turn_on_knob(ctx: Ctx, stove: str, target_q: float = 0.85, lever: float = 0.035, max_steps: int = 90):
    """Grip the knob's paddle at ``lever`` m from the hinge and walk it along its arc to ``target_q``."""
    sc = ctx.scene
    joint = _joint_of(ctx, stove, "button")
    safe = sc.table_z + 0.25
    anchor, _ = _body_frame(ctx, f"{stove}_button")
    q0 = sc.joint(joint)
    # The paddle points along the stove's local -x at q = 0 and turns with q about +z.
    base_ang = sc.yaw(stove) + np.pi + q0
    z = anchor[2] + 0.03

    def at(theta):
        ang = base_ang + (theta - q0)
        return np.array([anchor[0] + lever * np.cos(ang), anchor[1] + lever * np.sin(ang), z])

    # Fingers across the paddle: finger axis perpendicular to the paddle direction.
    yaw0 = nearest_yaw(ctx, base_ang)
    start = at(q0)
    if ctx.eef[2] < safe - 0.05:
        yield from lift(ctx, safe, yaw0)
    yield from move(ctx, start + [0, 0, 0.08], yaw0, OPEN, tol=0.01, max_steps=90)
    yield from move(ctx, start, yaw0, OPEN, tol=0.006, max_steps=40, kp=8.0)
    yield from actuate(ctx, CLOSE, 10, yaw0)
    for _ in range(max_steps):
        q = sc.joint(joint)
        if q >= target_q:
            break
        lead = min(q + 0.25, target_q + 0.1)
        a, _, _ = servo(ctx, at(lead), yaw0 + (lead - q0), CLOSE, kp=10.0, kr=3.0)
        yield a
    yaw_end = yaw0 + (sc.joint(joint) - q0)
    yield from actuate(ctx, OPEN, 6, yaw_end)
    yield from lift(ctx, safe, yaw_end)


def close_drawer(ctx: Ctx, region: str, max_steps: int = 90):
    """Push the drawer holding ``region`` along +y until LIBERO calls it closed."""
    sc = ctx.scene
    fixture = region.rsplit("_", 2)[0] if region.endswith("_region") else region
    level = region[len(fixture) + 1 :].replace("_region", "")
    joint = _joint_of(ctx, fixture, f"{level}_level")
    m = sc.model
    body = m.body(m.jnt_bodyid[m.joint(joint).id]).name
    # Front panel of the drawer: its lowest-y collision geom box.
    gids = [g for g in range(m.ngeom) if m.body(m.geom_bodyid[g]).name == body and m.geom_contype[g]]
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    boxes = []
    for g in gids:
        w = (signs * m.geom_aabb[g, 3:] + m.geom_aabb[g, :3]) @ sc.data.geom_xmat[g].reshape(3, 3).T
        w = w + sc.data.geom_xpos[g]
        boxes.append((w.min(0), w.max(0)))
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
    x = (lo[0] + hi[0]) / 2
    z = (lo[2] + hi[2]) / 2
    front = lo[1]
    tilt = np.array([np.pi / 4, 0.0, 0.0])  # fingers lean toward +y so the forearm clears the top
    yaw = nearest_yaw(ctx, np.pi / 2)
    safe = max(sc.table_z + 0.25, ctx.eef[2])
    yield from lift(ctx, safe, yaw)
    ctx.grip = CLOSE
    start = np.array([x, front - 0.06, z])
    yield from move(ctx, start + [0, 0, 0.1], yaw, CLOSE, tol=0.015, max_steps=80, tilt=tilt)
    yield from move(ctx, start, yaw, CLOSE, tol=0.01, max_steps=50, tilt=tilt)
    q_open = sc.joint(joint)
    for _ in range(max_steps):
        q = sc.joint(joint)
        if q > 0.002:
            break
        push = np.array([x, front + (q - q_open) + 0.04, z])
        yield servo(ctx, push, yaw, CLOSE, tilt=tilt)[0]
    back = ctx.eef + np.array([0.0, -0.08, 0.05])
    yield from move(ctx, back, yaw, CLOSE, tol=0.02, max_steps=20, tilt=tilt)


def close_door(ctx: Ctx, door_fixture: str, lever: float = 0.2, standoff: float = 0.07, max_steps: int = 120):
    """Sweep the door's outer face toward q = 0, from ``standoff`` m outside it, ``lever`` m out from
    the hinge."""
    sc = ctx.scene
    m = sc.model
    names = [m.joint(j).name for j in range(m.njnt)]
    joint = [n for n in names if n.startswith(door_fixture) and m.jnt_type[m.joint(n).id] == 3][0]
    jid = m.joint(joint).id
    anchor = sc.data.xanchor[jid].copy()
    safe = sc.table_z + 0.3

    def at(theta, d):
        u = np.array([np.cos(theta), np.sin(theta)])
        v = np.array([-np.sin(theta), np.cos(theta)])
        xy = anchor[:2] + lever * u - d * v
        return np.array([xy[0], xy[1], anchor[2]])

    yaw = nearest_yaw(ctx, 0.0)
    q = sc.joint(joint)
    start = at(q, standoff)
    if ctx.eef[2] < safe - 0.05:
        yield from lift(ctx, safe, yaw)
    ctx.grip = CLOSE
    yield from move(ctx, np.array([start[0], start[1], safe]), yaw, CLOSE, tol=0.015, max_steps=90)
    yield from move(ctx, start, yaw, CLOSE, tol=0.01, max_steps=60)
    for _ in range(max_steps):
        q = sc.joint(joint)
        if q > -0.002:
            break
        lead = min(q + 0.3, 0.05)
        yield servo(ctx, at(lead, 0.03), yaw, CLOSE)[0]
    yield from move(ctx, ctx.eef + np.array([-0.08, -0.05, 0.05]), yaw, CLOSE, tol=0.02, max_steps=20)


def mug_into_microwave(ctx: Ctx, mug: str, region: str, depth: float = 0.095):
    """Carry the mug by its handle, handle turned toward the robot, set it down just inside the
    opening, then push it in with forward-tilted closed fingers so the door can shut in front of it.

    The cavity is 14 cm tall and the mug 10 cm: the hand cannot go in above the mug, so it holds the
    handle from outside and the push reaches in with the fingertips only.
    """
    from policies.libero_expert.grasps import grasp_mug_handle, handle_frame
    from policies.libero_expert.skills import pick

    sc = ctx.scene
    half = sc.site_half(region)
    centre = sc.site_pos(region)
    front = centre[1] - half[1]  # the opening's plane (world y)
    floor = centre[2] - half[2] + 0.01
    safe = floor + 0.26
    ok = yield from pick(ctx, mug, grasp_mug_handle(mug), safe)
    if not ok:
        return False
    # Turn the hand so the handle points at -y (toward the robot); the mug turns with it.
    _, ang, _ = handle_frame(ctx, mug)
    turn = float(np.angle(np.exp(1j * (-np.pi / 2 - ang))))
    yaw = nearest_yaw(ctx, ctx.yaw_now() + turn, symmetric=False)

    def hand_for(cy, z):
        def f(c):
            grip, _, mc = handle_frame(c, mug)
            off = grip - mc  # hand relative to the mug's axis
            return np.array([centre[0] + off[0], cy + off[1], z])

        return f

    yield from move(ctx, hand_for(front - 0.12, safe), yaw, CLOSE, tol=0.02, max_steps=110)
    grip, _, mc = handle_frame(ctx, mug)
    # Held by the handle the mug droops on its far side; keep 3 cm over the cavity floor's lip.
    z_set = floor + 0.03 + (grip[2] - sc.aabb(mug)[0][2])
    yield from move(ctx, hand_for(front - 0.12, z_set), yaw, CLOSE, tol=0.012, max_steps=70)
    yield from move(ctx, hand_for(front + 0.035, z_set), yaw, CLOSE, tol=0.008, max_steps=60)
    yield from actuate(ctx, OPEN, 8, yaw)
    # Back off, close the fingers, lean them 25 degrees toward +y, push the handle in.
    back = ctx.eef + np.array([0.0, -0.08, 0.0])
    yield from move(ctx, back, yaw, OPEN, tol=0.015, max_steps=30)
    tilt = np.array([0.45, 0.0, 0.0])
    ctx.grip = CLOSE
    grip, _, mc = handle_frame(ctx, mug)
    push_z = floor + 0.05
    yaw_p = ctx.yaw_now()
    start = np.array([grip[0], grip[1] - 0.04, push_z + 0.02])
    yield from move(ctx, start, yaw_p, CLOSE, tol=0.012, max_steps=50, tilt=tilt)
    target_y = front + depth
    last = []
    for _ in range(80):
        grip, _, mc = handle_frame(ctx, mug)
        last.append(mc[1])
        # Done, or the hand has met the frame and the mug stopped moving.
        if mc[1] >= target_y or (len(last) > 12 and last[-1] - last[-12] < 0.002):
            break
        push = np.array([grip[0], ctx.eef[1] + 0.04, push_z])
        yield servo(ctx, push, yaw_p, CLOSE, tilt=tilt)[0]
    yield from move(
        ctx, ctx.eef + np.array([0.0, -0.1, 0.06]), yaw_p, CLOSE, tol=0.02, max_steps=25, tilt=tilt
    )
    return True


def book_into_caddy(ctx: Ctx, book: str, region: str):
    """Pick the upright book near its top edge (fingers across its thickness), turn it so its
    thickness lies along the compartment's narrow side, lower it in and let go."""
    from policies.libero_expert.grasps import grasp_body
    from policies.libero_expert.skills import pick

    sc = ctx.scene
    safe = sc.table_z + 0.3
    loc = sc.geom_boxes(book, frame="body")
    ext = loc[:, 1].max(0) - loc[:, 0].min(0)
    ok = yield from pick(ctx, book, grasp_body(book, z_frac=0.8, z_max_above=0.2), safe)
    if not ok:
        return False
    half = sc.site_half(region)
    centre = sc.site_pos(region)
    # World angle of the book's thin horizontal axis now, and the compartment's narrow axis.
    r = sc.rot(book)
    thin_local = 0 if ext[0] <= ext[1] else 1
    thin_ang = float(np.arctan2(r[1, thin_local], r[0, thin_local]))
    want = 0.0 if half[0] <= half[1] else np.pi / 2
    turn = float(np.angle(np.exp(2j * (want - thin_ang))) / 2)  # the book is symmetric under pi
    yaw = nearest_yaw(ctx, ctx.yaw_now() + turn, symmetric=False)
    lo, _ = sc.aabb(book)
    bottom_off = float(sc.pos(book)[2] - lo[2])
    floor = centre[2] - half[2]

    def hand_for(z):
        def f(c):
            off = sc.pos(book) - c.eef
            return np.array([centre[0] - off[0], centre[1] - off[1], z])

        return f

    yield from move(ctx, hand_for(safe), yaw, CLOSE, tol=0.015, max_steps=110)
    off_z = float(sc.pos(book)[2] - ctx.eef[2])
    yield from move(ctx, hand_for(floor + bottom_off + 0.02 - off_z), yaw, CLOSE, tol=0.008, max_steps=70)
    yield from actuate(ctx, OPEN, 8, yaw)
    yield from lift(ctx, safe, yaw)
    return True
