"""``aura run --env synthetic[:CONFIG]``: the controlled synthetic benchmark driven through the protocol.

The env (``sim.synthetic.SyntheticRecallEnv``) and its frozen numpy encoder (``make_backbone``) are both
torch-free. The summary's ``accuracy`` is the fraction of query steps answered correctly (argmax of the
action = the latest real event's symbol); the base policy alone scores chance (1/8).
"""

from __future__ import annotations

from deploy.envs import GymRobot


def make_synthetic(d_model: int, d_action: int, episode_steps: int, seed: int = 0, config: str = "hard"):
    from sim.synthetic import SyntheticRecallEnv, get_config, make_backbone

    cfg = get_config(config)
    if cfg.d_model != d_model:
        raise ValueError(
            f"--env synthetic:{config}: its encoder gives d_model={cfg.d_model} features but the model "
            f"expects {d_model}; export a checkpoint trained on this config"
        )
    backbone = make_backbone(cfg)
    if backbone.base_action.shape != (d_action,):
        raise ValueError(
            f"--env synthetic:{config}: base action has {backbone.base_action.shape[0]} dims, "
            f"the model {d_action}"
        )
    env = SyntheticRecallEnv(cfg, horizon=min(cfg.horizon, episode_steps) if episode_steps >= 2 else None)
    return GymRobot(env), backbone
