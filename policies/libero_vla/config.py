"""The registered ``libero_vla`` backbone's config (torch is imported only by ``build()``)."""

from __future__ import annotations

from dataclasses import dataclass

from policies.backbone import BackboneError
from policies.libero_vla.execution import DEFAULT_EXECUTION, EXECUTIONS

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class LiberoVLAConfig:
    """``make_backbone("libero_vla", {"checkpoint": "runs/vla"})``: the frozen torch backbone.

    ``execution``: "open_loop" (OpenVLA-OFT: plan, then execute ``n_action_steps`` <= K actions, default K;
    the default: 58.3 % vs 49.8 % on 468 paired libero_10 episodes, docs/libero_vla.md) or "ensemble" (ACT
    temporal ensembling, plan every step); ``ensemble_decay`` is ACT's m;
    ``binarize_gripper`` snaps the gripper to +-1; ``fresh_features`` runs the network every step even when
    open-loop, so z_t is always this step's (False: once per plan, z_t held between plans). ``threads`` > 0
    sets torch's intra-op threads (process-wide; one per worker when many env workers share a CPU).
    """

    checkpoint: str = ""
    device: str = "auto"
    execution: str = DEFAULT_EXECUTION
    n_action_steps: int | None = None
    ensemble_decay: float = 0.01
    binarize_gripper: bool = True
    fresh_features: bool = True
    threads: int = 0

    def execution_options(self) -> dict:
        return dict(
            execution=self.execution,
            n_action_steps=self.n_action_steps,
            ensemble_decay=self.ensemble_decay,
            binarize_gripper=self.binarize_gripper,
            fresh_features=self.fresh_features,
        )

    def build(self):
        if not self.checkpoint:
            raise BackboneError("libero_vla: set checkpoint= to a directory written by `aura train backbone`")
        if self.device not in DEVICES:
            raise BackboneError(f"libero_vla: device must be one of {DEVICES}, got {self.device!r}")
        if self.execution not in EXECUTIONS:
            raise BackboneError(f"libero_vla: execution must be one of {EXECUTIONS}, got {self.execution!r}")
        from policies.libero_vla.backbone import TorchBackbone

        return TorchBackbone.from_checkpoint(
            self.checkpoint, self.device, self.threads, **self.execution_options()
        )
