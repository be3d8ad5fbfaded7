"""Comparison arms for the synthetic benchmark. Each maps (z [B, T, d_model], base [B, T, A]) to an
``ArmOutput``; the AuraMem arms (learned gate, always-write, fixed schedules) live in ``aura.baselines.arms``.

| arm | module | state |
|---|---|---|
| dense GRU | ``gru.GRUArm`` | hidden * 4 B, written every step |
| KV-cache attention | ``kv.KVAttentionArm`` | (d_key + d_val) * 4 B per step: grows |
| three-gate persistent stream | ``stream.ThreeGateStream`` | d_state * 4 B, write / read / forget gates |
| Skip-RNN gate on the GDN-2 memory | ``arms.SkipRNNArm`` | AuraMem state + one accumulator |
"""

from aura.baselines.common import ArmOutput

__all__ = ["ArmOutput"]
