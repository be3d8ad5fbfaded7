"""``aura run --env synthetic[:CONFIG]``: the controlled synthetic benchmark as a robot of the control loop.

The env (``sim.synthetic.SyntheticRecallEnv``) is wrapped in the runtime's ``GymRobot``; its backbone is the
registered ``random_encoder`` with the config's frozen encoder (``backbone_fields``), so neither imports
torch. The summary's ``accuracy`` is the fraction of query steps answered correctly (argmax of the action =
the latest real event's symbol); the base policy alone scores chance (1/8).
"""

from __future__ import annotations

from deploy.runtime.robots import GymRobot
from sim.synthetic.config import get_config
from sim.synthetic.env import SyntheticRecallEnv, backbone_fields


def make_synthetic_robot(config: str = "hard", episode_steps: int | None = None) -> GymRobot:
    """The synthetic env for ``config`` (an episode is at most ``episode_steps`` steps), with its backbone."""
    cfg = get_config(config)
    horizon = min(cfg.horizon, episode_steps) if episode_steps is not None and episode_steps >= 2 else None
    robot = GymRobot(SyntheticRecallEnv(cfg, horizon=horizon))
    robot.backbone = ("random_encoder", backbone_fields(cfg))
    return robot
