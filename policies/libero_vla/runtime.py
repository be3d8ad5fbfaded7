"""What the torch and the ONNX backbones share, in numpy: the graph's interface, input preparation, the loop.

The network (``policies.libero_vla.model``; the same function exported to ONNX) is

    (image u8 [1,S,S,3], wrist_image u8 [1,S,S,3], state f32 [1,8], tokens i64 [1,L])
        -> features f32 [1, d_model], actions f32 [1, K, d_action]

with the images exactly as LiberoEnv gives them (uint8 HWC, row 0 = top; the graph itself casts,
normalises x/127.5 - 1 and permutes), the 8-d proprio (eef pos, axis-angle, gripper fingers) and the
instruction's :class:`HashTokenizer` ids. :class:`ChunkedBackbone` implements ``policies.backbone``'s contract
on top of any such function: per call it validates and batches the observation (:func:`prepare`), runs the
network when the chunk executor needs a plan (and every step when ``fresh_features``, so z_t is always this
step's), and returns ``(z_t [d_model], a_t [d_action])`` as float32. An observation's optional
``context`` (``policies.backbone``: only where ``spec.d_context > 0``, the torch backbone) is validated here
and handed to the network as a fifth input, ``context [1, d_context]``, in place of the tokens' embedding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from policies.backbone import BackboneError, BackboneSpec
from policies.libero_vla.execution import DEFAULT_EXECUTION, ChunkExecutor, finish
from policies.libero_vla.text import HashTokenizer

INPUTS = ("image", "wrist_image", "state", "tokens")
OUTPUTS = ("features", "actions")
LOGITS = "logits"  # a third output of a bins-head graph ([1, K, d_action, B]: for the export's parity check)
D_STATE = 8


class CheckpointError(BackboneError):
    """A backbone checkpoint or ONNX file is missing, corrupt or does not match its config (a ValueError)."""


@dataclass(frozen=True)
class NetInterface:
    """The graph's static shapes and its tokenizer: in config.json and in the ONNX file's metadata."""

    d_model: int
    chunk: int
    d_action: int = 7
    image_size: int = 128
    tokenizer: HashTokenizer = field(default_factory=HashTokenizer)

    def to_dict(self) -> dict:
        return dict(
            d_model=self.d_model,
            chunk=self.chunk,
            d_action=self.d_action,
            image_size=self.image_size,
            tokenizer=self.tokenizer.to_dict(),
        )

    @classmethod
    def from_dict(cls, data: dict) -> NetInterface:
        return cls(
            int(data["d_model"]),
            int(data["chunk"]),
            int(data["d_action"]),
            int(data["image_size"]),
            HashTokenizer.from_dict(data["tokenizer"]),
        )

    def spec(self) -> BackboneSpec:
        return BackboneSpec(
            d_model=self.d_model,
            d_action=self.d_action,
            chunk=self.chunk,
            cameras=("image", "wrist_image"),
            image_size=self.image_size,
            language=True,
        )


def _image(obs: dict, key: str, size: int) -> np.ndarray:
    if key not in obs:
        raise BackboneError(f"libero_vla: observation has no {key!r} (it needs {INPUTS[:2]}, 'state')")
    x = obs[key]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.shape != (size, size, 3):
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise BackboneError(f"libero_vla: {key} must be uint8 [{size}, {size}, 3] (row 0 = top), got {got}")
    return np.ascontiguousarray(x)[None]


class TokenCache:
    """Instruction -> ids [1, L]; an episode's instruction is tokenised once."""

    def __init__(self, tokenizer: HashTokenizer):
        self.tokenizer, self._cache = tokenizer, {}

    def __call__(self, text: str) -> np.ndarray:
        ids = self._cache.get(text)
        if ids is None:
            if len(self._cache) > 1024:
                self._cache.clear()
            ids = self._cache[text] = self.tokenizer(text)[None]
        return ids


def prepare(obs: dict, image_size: int, tokens: Callable[[str], np.ndarray]) -> dict[str, np.ndarray]:
    """The graph's inputs (batch 1) from a LiberoEnv observation dict; BackboneError names a bad key."""
    if not isinstance(obs, dict):
        raise BackboneError(f"libero_vla: the observation must be a dict, got {type(obs).__name__}")
    state = np.asarray(obs.get("state", ()), dtype=np.float32).reshape(-1)
    if state.shape != (D_STATE,) or not np.isfinite(state).all():
        raise BackboneError(f"libero_vla: state must be {D_STATE} finite floats, got shape {state.shape}")
    language = obs.get("language", "")
    if not isinstance(language, str):
        raise BackboneError(f"libero_vla: language must be a str, got {type(language).__name__}")
    return {
        "image": _image(obs, "image", image_size),
        "wrist_image": _image(obs, "wrist_image", image_size),
        "state": state[None],
        "tokens": tokens(language),
    }


class ChunkedBackbone:
    """The Backbone contract over ``infer(inputs) -> (features [1, d], actions [1, K, A])`` (module doc)."""

    def __init__(
        self,
        interface: NetInterface,
        infer: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]],
        execution: str = DEFAULT_EXECUTION,
        n_action_steps: int | None = None,
        ensemble_decay: float = 0.01,
        binarize_gripper: bool = True,
        fresh_features: bool = True,
    ):
        self.interface, self._infer = interface, infer
        self.spec = interface.spec()
        self.execution = dict(
            execution=execution,
            n_action_steps=n_action_steps,
            ensemble_decay=ensemble_decay,
            binarize_gripper=binarize_gripper,
            fresh_features=fresh_features,
        )  # what a twin of this backbone (same network, own chunk executor) is built with
        try:
            self.executor = ChunkExecutor(interface.chunk, execution, n_action_steps, ensemble_decay)
        except ValueError as err:
            raise BackboneError(f"libero_vla: {err}") from None
        self.binarize_gripper, self.fresh_features = bool(binarize_gripper), bool(fresh_features)
        self._tokens = TokenCache(interface.tokenizer)
        self._features: np.ndarray | None = None
        self.calls = 0  # network runs (open-loop without fresh features runs once per n_action_steps)

    def reset(self) -> None:
        self.executor.reset()
        self._features = None

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One network run on prepared inputs: (features [d_model], chunk [K, d_action]) float32."""
        feats, actions = self._infer(inputs)
        self.calls += 1
        i = self.interface
        feats = np.asarray(feats, dtype=np.float32).reshape(i.d_model)
        return feats, np.asarray(actions, dtype=np.float32).reshape(i.chunk, i.d_action)

    def _context(self, value) -> np.ndarray:
        n = self.spec.d_context
        if n == 0:
            raise BackboneError(
                "libero_vla: observation['context'] given, but this backbone takes none (spec.d_context = 0:"
                " the ONNX graph reads the tokens; condition on a context with the torch backbone)"
            )
        try:
            c = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise BackboneError(
                f"libero_vla: context must be {n} finite floats, got {type(value).__name__}"
            ) from None
        if c.shape != (n,) or not np.isfinite(c).all():
            raise BackboneError(f"libero_vla: context must be {n} finite floats, got shape {c.shape}")
        return c[None]

    def __call__(self, observation: dict) -> tuple[np.ndarray, np.ndarray]:
        plan = self.executor.needs_plan()
        if plan or self.fresh_features or self._features is None:
            inputs = prepare(observation, self.interface.image_size, self._tokens)
            if "context" in observation:
                inputs["context"] = self._context(observation["context"])
            feats, chunk = self.run(inputs)
            self._features = feats
            if plan:
                self.executor.push(chunk)
        action = finish(self.executor.pop(), self.binarize_gripper)
        return self._features.copy(), action
