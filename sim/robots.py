"""Robots by name for ``aura run --env``: the shipped ones, and a user's own as ``module:Class``.

=======================  ================================================================================
``noise``                the numpy noise robot (``deploy.runtime.robots.NoiseRobot``) sized to the model
``synthetic[:CONFIG]``   the controlled synthetic benchmark (``sim.synthetic.robot``), ``hard`` by default
``libero:TASK[:INIT]``   a LIBERO task (id or SUITE:NAME) from a fixed init state (default: seed mod 50)
``module:Class``         ``Class(**fields)``, fields from ``--env-arg KEY=VALUE`` (a real robot, say)
=======================  ================================================================================

A robot implements ``deploy.runtime.robots.Robot``; it may name the backbone it is meant for in its
``backbone`` attribute. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

from policies.factory import import_target

NAMES = ("noise", "synthetic[:CONFIG]", "libero:TASK[:INIT]", "module:Class")


def _user_robot(spec: str, fields: dict[str, Any]):
    target = import_target(spec, "--env")
    try:
        robot = target(**fields)
    except TypeError as err:
        raise ValueError(f"--env {spec}: {err}") from err
    for method in ("reset", "observe", "act"):
        if not callable(getattr(robot, method, None)):
            raise ValueError(f"--env {spec}: {type(robot).__name__} has no {method}() (the robot protocol)")
    return robot


def make_robot(
    spec: str,
    fields: dict[str, Any] | None = None,
    *,
    d_model: int,
    d_action: int,
    episode_steps: int,
    seed: int = 0,
):
    """The robot for ``--env spec``; ``d_model``/``d_action`` size the noise robot to the model."""
    fields = dict(fields or {})
    name, _, rest = spec.partition(":")
    if spec == "noise":
        from deploy.runtime.robots import NoiseRobot

        return NoiseRobot(d_model, d_action, episode_steps, seed=seed, **fields)
    if name == "synthetic":
        from sim.synthetic.robot import make_synthetic_robot

        return make_synthetic_robot(rest or "hard", episode_steps, **fields)
    if name == "libero":
        from sim.libero.robot import LiberoRobot, parse_spec

        task, init = parse_spec(rest)
        return LiberoRobot(task, init, max_steps=episode_steps, **fields)
    if rest and name:
        return _user_robot(spec, fields)
    raise ValueError(f"--env: unknown robot {spec!r} (choose from {', '.join(NAMES)})")
