"""Reusable skills for the scripted LIBERO expert, written as generators of 7-d actions.

Control law (OSC_POSE with delta inputs, world-aligned base in every libero_10 scene):

    a_pos = clip(k_p (p* - p), -1, 1),   a_rot = clip(k_r rotvec(R* R^T), -1, 1),   a_grip = +-1

with p the grip site, R the hand orientation, and R* = R_tilt Rz(psi) R_down, where R_down points the
fingers at the table (quaternion xyzw [1, 0, 0, 0]) and psi is the yaw of the finger axis measured
from world +y (psi = 0: fingers close along y). OSC applies rotation deltas in the world frame
(goal = exp(delta) R), so the world-frame rotation error is the right command. One unit of position
action moves the hand about 1.3 cm per 20 Hz step once up to speed.

A skill is a generator that reads ``ctx.obs`` (refreshed by the expert after each env step) and
yields actions; plans chain skills with ``yield from``. A skill that cannot meet its goal within
its step budget returns instead of blocking, so an episode always ends within the step limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from policies.libero_expert.scene import Scene

R_DOWN = Rotation.from_quat([1.0, 0.0, 0.0, 0.0])
HAND_REACH = 0.104  # half-length of the hand's collision box along the finger axis (m)
OPEN, CLOSE = -1.0, 1.0


@dataclass
class Ctx:
    """What a skill sees: the raw env, its scene reader, the latest observation, the step count.

    ``tol``: the position tolerance (m) of the goal the action just emitted servos to - set by ``move``,
    0 for every other step (holding, actuating the gripper, pushing); the expert resets it each step.
    """

    raw: object
    scene: Scene
    obs: dict
    step: int = 0
    grip: float = OPEN
    tol: float = 0.0

    @property
    def eef(self) -> np.ndarray:
        return np.asarray(self.obs["robot0_eef_pos"], dtype=float)

    @property
    def hand(self) -> Rotation:
        return Rotation.from_quat(np.asarray(self.obs["robot0_eef_quat"], dtype=float))

    @property
    def finger_gap(self) -> float:
        """Opening of one finger (0.039 open, ~0.002 closed on nothing)."""
        return float(np.asarray(self.obs["robot0_gripper_qpos"])[0])

    def yaw_now(self) -> float:
        m = (self.hand * R_DOWN.inv()).as_matrix()
        return float(np.arctan2(m[1, 0], m[0, 0]))


def target_rotation(yaw: float, tilt: np.ndarray | None = None) -> Rotation:
    r = Rotation.from_euler("z", yaw) * R_DOWN
    if tilt is not None:
        r = Rotation.from_rotvec(tilt) * r
    return r


Q7_LIMIT = 2.6  # Panda's last joint stops at +-2.897 rad; keep a margin for tracking error


def wrist_after(ctx: Ctx, yaw: float) -> float:
    """Predicted last-joint angle at hand yaw ``yaw``: with the fingers down, q7 = q7_now - dyaw."""
    return float(ctx.obs["robot0_joint_pos"][6]) - (yaw - ctx.yaw_now())


def nearest_yaw(ctx: Ctx, yaw: float, symmetric: bool = True) -> float:
    """Closest equivalent of ``yaw`` (mod pi for the symmetric gripper, else mod 2 pi) that keeps
    the wrist joint inside its range; an unreachable yaw stalls the arm against the joint stop."""
    now = ctx.yaw_now()
    period = np.pi if symmetric else 2 * np.pi
    base = yaw + period * np.round((now - yaw) / period)
    cands = sorted((base + k * period for k in (-2, -1, 0, 1, 2)), key=lambda y: abs(y - now))
    for y in cands:
        if abs(wrist_after(ctx, y)) < Q7_LIMIT:
            return float(y)
    return float(min(cands, key=lambda y: abs(wrist_after(ctx, y))))


def servo(ctx: Ctx, pos, yaw: float, grip: float, kp: float = 15.0, kr: float = 2.0, tilt=None):
    """One proportional action toward pose (pos, yaw[, tilt]); returns (action, pos err, rot err)."""
    err = np.asarray(pos, dtype=float) - ctx.eef
    rot_err = (target_rotation(yaw, tilt) * ctx.hand.inv()).as_rotvec()
    a = np.zeros(7)
    a[:3] = np.clip(kp * err, -1.0, 1.0)
    a[3:6] = np.clip(kr * rot_err, -1.0, 1.0)
    a[6] = grip
    return a, float(np.linalg.norm(err)), float(np.linalg.norm(rot_err))


def move(
    ctx: Ctx,
    pos,
    yaw: float,
    grip: float | None = None,
    tol: float = 0.01,
    rtol: float = 0.08,
    max_steps: int = 80,
    kp: float = 15.0,
    tilt=None,
    stall: int = 5,
    stall_err: float = 0.03,
):
    """Servo to ``pos`` (array or callable(ctx) -> array) until within ``tol`` m and ``rtol`` rad.

    Gives up early when the hand has moved < 2 mm in ``stall`` steps while within ``stall_err`` m.
    """
    grip = ctx.grip if grip is None else grip
    ctx.grip = grip
    trail: list[np.ndarray] = []
    for _ in range(max_steps):
        p = pos(ctx) if callable(pos) else pos
        a, e, r = servo(ctx, p, yaw, grip, kp=kp, tilt=tilt)
        if e < tol and r < rtol:
            return True
        # Blocked by contact (fingers on the table, object against a wall): stop waiting.
        trail.append(ctx.eef.copy())
        if len(trail) > stall and e < stall_err and np.linalg.norm(trail[-1] - trail[-1 - stall]) < 0.002:
            return False
        ctx.tol = tol
        yield a
    return False


def actuate(ctx: Ctx, grip: float, steps: int, yaw: float, tilt=None):
    """Hold the current pose while opening or closing the gripper."""
    hold = ctx.eef.copy()
    ctx.grip = grip
    for _ in range(steps):
        yield servo(ctx, hold, yaw, grip, tilt=tilt)[0]


def settle(ctx: Ctx, max_steps: int = 20, speed: float = 5e-4):
    """Hold still until no movable object moves more than ``speed`` m per step.

    Some libero_10 init states drop objects from ~0.5 m above the table; they are still falling
    after LIBERO's 10 no-op steps, and planning on mid-air poses sends the hand into them.
    """
    sc = ctx.scene
    names = list(sc.inner.objects_dict)
    hold, yaw = ctx.eef.copy(), ctx.yaw_now()
    prev = np.array([sc.pos(n) for n in names])
    calm = 0
    for _ in range(max_steps):
        yield servo(ctx, hold, yaw, OPEN)[0]
        cur = np.array([sc.pos(n) for n in names])
        # Three calm steps in a row: a thrown object is also slow at the top of its arc.
        calm = calm + 1 if np.max(np.linalg.norm(cur - prev, axis=1)) < speed else 0
        if calm >= 3:
            break
        prev = cur
    sc.table_z = sc._table_height()


def lift(ctx: Ctx, z: float, yaw: float, tol: float = 0.025, max_steps: int = 60):
    """Straight up (or down) to height ``z`` over the current xy."""
    xy = ctx.eef[:2].copy()
    return (yield from move(ctx, np.array([xy[0], xy[1], z]), yaw, tol=tol, max_steps=max_steps))


def clearance(scene: Scene, point: np.ndarray, yaw: float, exclude: tuple[str, ...], z_min: float) -> float:
    """Smallest xy distance from the hand's finger-axis segment at ``point`` to other objects' boxes.

    Only objects whose top reaches above ``z_min`` can touch the hand.
    """
    axis = np.array([-np.sin(yaw), np.cos(yaw)])
    ts = np.linspace(-HAND_REACH, HAND_REACH, 9)
    pts = point[:2] + ts[:, None] * axis
    best = np.inf
    for _, lo, hi in scene.obstacles(exclude):
        if hi[2] < z_min:
            continue
        d = np.maximum(np.maximum(lo[:2] - pts, pts - hi[:2]), 0.0)
        best = min(best, float(np.min(np.linalg.norm(d, axis=1))))
    return best


def best_yaw(scene: Scene, point: np.ndarray, yaws, exclude: tuple[str, ...], z_min: float) -> float:
    """Candidate yaw with the most clearance (ties go to the first candidate)."""
    scores = [clearance(scene, point, y, exclude, z_min) for y in yaws]
    return float(list(yaws)[int(np.argmax(np.round(scores, 3)))])


@dataclass
class Grasp:
    """Where to put the grip site relative to an object, and how."""

    point: np.ndarray  # world grip-site target
    yaw: float
    approach: float = 0.10  # pre-grasp height above ``point``


def pick(ctx: Ctx, name: str, grasp_fn, safe_z: float, tries: int = 2, close_steps: int = 12):
    """Approach from above, descend, close, lift to ``safe_z``; retry on an empty grasp.

    ``grasp_fn(ctx) -> Grasp`` is re-evaluated on each try so a knocked object is re-targeted.
    Returns True when the fingers hold something after the lift.
    """
    for _ in range(tries):
        g = grasp_fn(ctx)
        yaw = nearest_yaw(ctx, g.yaw)
        above = g.point + np.array([0.0, 0.0, g.approach])
        # Travel at the safe height, then drop vertically: diagonal moves sweep the fingers
        # through rims and neighbouring objects.
        if np.linalg.norm(ctx.eef[:2] - above[:2]) > 0.03:
            cruise = max(safe_z, above[2])
            if ctx.eef[2] < cruise - 0.03:
                yield from lift(ctx, cruise, ctx.yaw_now())
            yield from move(ctx, np.array([above[0], above[1], cruise]), yaw, OPEN, tol=0.03, max_steps=90)
        yield from move(ctx, above, yaw, OPEN, tol=0.012, max_steps=60)
        yield from move(ctx, g.point, yaw, OPEN, tol=0.006, max_steps=50, kp=12.0)
        z_before = ctx.scene.pos(name)[2]
        yield from actuate(ctx, CLOSE, close_steps, yaw)
        yield from lift(ctx, safe_z, yaw)
        # Did the object come up with the hand? (The finger gap cannot tell: a thin mug or bowl
        # wall leaves the fingers as nearly shut as an empty grasp.)
        if ctx.scene.pos(name)[2] > z_before + 0.5 * (ctx.eef[2] - g.point[2]):
            return True
        yield from actuate(ctx, OPEN, 6, yaw)
    return False


def place(
    ctx: Ctx,
    name: str,
    target: np.ndarray,
    safe_z: float,
    yaw: float | None = None,
    release_gap: float = 0.01,
    open_steps: int = 8,
    xy_tol: float = 0.006,
):
    """Carry held object ``name`` so its body origin lands on ``target`` (xy) and release.

    The grip-to-object offset is measured after the grasp, so the object (not the hand) is aimed;
    ``target[2]`` is the height of the object's origin at release and ``release_gap`` is added.
    """
    sc = ctx.scene
    yaw = nearest_yaw(ctx, ctx.yaw_now() if yaw is None else yaw)
    if ctx.eef[2] < safe_z - 0.02:
        yield from lift(ctx, safe_z, yaw)

    def hand_for(z):
        def f(c):
            off = sc.pos(name) - c.eef
            return np.array([target[0] - off[0], target[1] - off[1], z])

        return f

    yield from move(ctx, hand_for(safe_z), yaw, CLOSE, tol=0.02, max_steps=120)
    off_z = float(sc.pos(name)[2] - ctx.eef[2])
    z_rel = target[2] + release_gap - off_z
    yield from move(ctx, hand_for(z_rel), yaw, CLOSE, tol=xy_tol, max_steps=70, kp=12.0)
    yield from actuate(ctx, OPEN, open_steps, yaw)
    yield from lift(ctx, min(safe_z, ctx.eef[2] + 0.12), yaw)
