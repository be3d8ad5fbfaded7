"""The Backbone contract: what a frozen policy gives the memory, and what it declares it needs.

A backbone maps one observation to the per-step features z_t and its base action a_t^base::

    backbone = make_backbone("random_encoder")          # policies.factory
    backbone.reset()                                     # at the start of every episode
    z_t, a_t = backbone(observation)                     # float32 [d_model], float32 [d_action]

and declares, in ``backbone.spec`` (:class:`BackboneSpec`), its sizes and the inputs it reads, so a harness
renders only the cameras it needs and a runtime can check it against the memory model before the first step.

Observations are dicts for robots (LIBERO, real arms) and whatever the robot emits otherwise (the synthetic
benchmark's raw vector, the noise robot's ``(features, base_action)`` pair). The dict keys follow LeRobot's
LIBERO conventions, renamed to the env's names:

=================  ==========================================================================================
``image``          third-person camera, uint8 ``[S, S, 3]``, row 0 = top of the picture
``wrist_image``    wrist camera, the same layout
``state``          8-d proprio float32: end-effector position (3), axis-angle (3), gripper fingers (2)
``language``       the task instruction, a ``str`` (may be empty)
``sim``, ``raw``,  privileged inputs, only for ``spec.privileged`` backbones: the simulator handle, its raw
``task_id``        observation dict (object poses) and the task index
``context``        optional, only for backbones with ``spec.d_context > 0``: float32 ``[d_context]``, the
                   conditioning vector to act on in place of the one ``language`` encodes to
=================  ==========================================================================================

**Context.** A backbone with ``spec.d_context = d_c > 0`` conditions on a vector c =
``backbone.context(language)`` (float32 ``[d_c]``; the libero_vla network's text embedding l) and accepts
``observation["context"]`` in its place. That is how a memory can hand a frozen backbone what the observation
no longer shows (AuraMem's ``output="context"``, docs/layer.md): the backbone acts on the memory's c-hat_t,
its weights untouched.

The base action is one action per call. ``spec.chunk`` is how many steps ahead the backbone plans (an action
chunk executed open-loop or temporally ensembled inside the backbone); 1 means it re-plans every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

CAMERAS = ("image", "wrist_image")


class BackboneError(ValueError):
    """A backbone is unknown, cannot be built, breaks the contract, or does not fit the memory model."""


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone declares: output sizes and the observation it needs (module docstring)."""

    d_model: int
    d_action: int
    chunk: int = 1
    cameras: tuple[str, ...] = ()
    image_size: int | None = None
    language: bool = False
    privileged: bool = False
    d_context: int = 0  # size of the ``context`` input (module docstring); 0: the backbone takes none

    def __post_init__(self) -> None:
        if (
            isinstance(self.d_context, bool)
            or not isinstance(self.d_context, (int, np.integer))
            or self.d_context < 0
        ):
            raise BackboneError(f"BackboneSpec.d_context must be an int >= 0, got {self.d_context!r}")
        for name in ("d_model", "d_action", "chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise BackboneError(f"BackboneSpec.{name} must be a positive int, got {value!r}")
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown:
            raise BackboneError(f"BackboneSpec.cameras must be among {CAMERAS}, got {unknown}")
        if self.cameras and (not isinstance(self.image_size, int) or self.image_size < 1):
            raise BackboneError(
                f"BackboneSpec: cameras {self.cameras} need an image_size, got {self.image_size!r}"
            )


@runtime_checkable
class Backbone(Protocol):
    spec: BackboneSpec

    def reset(self) -> None: ...

    def __call__(self, observation: Any) -> tuple[np.ndarray, np.ndarray]: ...


def check_backbone(backbone: Any, where: str = "backbone") -> Backbone:
    """``backbone`` if it implements the contract (a ``spec``, ``reset()``, a call), else BackboneError."""
    spec = getattr(backbone, "spec", None)
    if not isinstance(spec, BackboneSpec):
        raise BackboneError(
            f"{where}: {type(backbone).__name__} has no 'spec' BackboneSpec (got {type(spec).__name__})"
        )
    for name in ("reset", "__call__"):
        if not callable(getattr(backbone, name, None)):
            raise BackboneError(f"{where}: {type(backbone).__name__} has no {name}() method")
    return backbone


def check_outputs(spec: BackboneSpec, features: Any, base_action: Any, where: str = "backbone") -> None:
    """Raise BackboneError unless the outputs are float32 arrays of the declared sizes."""
    for name, x, n in (("features", features, spec.d_model), ("base_action", base_action, spec.d_action)):
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.shape != (n,):
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise BackboneError(f"{where}: {name} must be float32 [{n}], got {got}")
