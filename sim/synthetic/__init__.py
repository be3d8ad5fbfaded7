"""The controlled synthetic benchmark: rare real events set one of 8 symbols, distractors look like
events but must not change the answer, and at query steps the action must be the latest event's symbol.

- ``config``: ``SyntheticConfig`` and the ``easy`` / ``hard`` configs (rates documented there).
- ``generator``: the vectorised episode generator (numpy; the single source of every stream).
- ``env``: ``SyntheticRecallEnv`` (gymnasium) and ``make_backbone`` (the frozen random encoder).
- ``arms`` / ``bench``: the memory arms and ``aura bench synthetic`` (these import torch).
"""

from sim.synthetic.config import CONFIGS, SyntheticConfig, get_config
from sim.synthetic.env import SyntheticRecallEnv, make_backbone
from sim.synthetic.generator import Episodes, generate

__all__ = [
    "CONFIGS",
    "Episodes",
    "SyntheticConfig",
    "SyntheticRecallEnv",
    "generate",
    "get_config",
    "make_backbone",
]
