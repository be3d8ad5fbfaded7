"""Memory arms for the LIBERO harness.

The backbone (``policies.backbone``: any registered one, e.g. the scripted expert with privileged features
``libero_expert``) turns the env's observation into ``(z_t, a_t^base)``. A *memory arm* wraps
``aura.layer.AuraMem`` and decides when to write:

===========  ====================================================================================
``base``     no memory: ``a_t = a_t^base``, no writes
``always``   write every step
``aura``     the AURA gate: write iff ``p_t > tau``
``random``   exactly ``n`` writes at uniformly drawn steps of ``[0, T)``   (budget-matched)
``periodic`` ``n`` writes evenly spaced over ``[0, T)``, centred            (budget-matched)
``kv``       the always-write KV-cache baseline (``aura.baselines.kv``): appends (k_t, v_t) every step,
             softmax read over the cache with a recency slope; ``a_t = a_t^base + W_o o_t``
``oracle``   writes exactly at the instruction steps ``t < k`` of the transient-instruction variant
             (``LiberoEnv(instruction_steps=k)``, ``aura eval libero --instruction-steps k``): the
             writes a perfect gate would make when only those steps carry the goal
===========  ====================================================================================

``n`` and ``T`` are the AURA arm's write count and episode length on the same (task, init state), so
the random and periodic arms spend the same write budget (``aura.schedules``). Every arm but ``base`` applies
``a_t = a_t^base + c_t`` (``c_t = 0`` for a fresh AuraMem, so success then equals ``base``; writes and
bytes are still the gate's real decisions). A fresh ``kv`` arm has W_o = 0 too, so its actions
equal ``base`` too. The cache is bounded by the episode (``max_steps`` = 520 appends, 133 kB).

Bytes per episode (:func:`episode_bytes`), for ``n`` writes in ``T`` steps, one definition each:

* journal: ``n * record_bytes`` (``deploy.runtime.journal``: the 536 B record ``aura run`` appends per
  write at H = 1, K = V = 32: header, alpha_t, k_t, u_t, aux, CRC);
* dense rewrite: ``n * state_bytes`` (``AuraMemConfig.state_bytes``, 4,224 B: the whole state per write);
* KV: ``T * (d_key + d_val) * 4`` for the ``kv`` arm (256 B per step); ``kv_equiv_bytes`` is the same for
  the memory arms' episode length (what a KV cache of their widths would have appended).

Flash pages (``deploy.runtime.budget.PageMeter``) assume each arm's bytes made crash-safe as ``aura run``
does: journal records appended and synced one by one (fsync policy ``record``) after the snapshot and
segment header every episode starts with; a dense rewrite programs the state's pages whole per write; KV
appends are synced per step. Projected lifetime is ``BudgetController.report`` of those pages at
``CONTROL_HZ`` = 20 Hz on the default ``FlashConfig`` (1 GiB region, 3,000 P/E cycles, 4 KiB pages, write
amplification 2): ``E / r``, ``E`` = region bytes x P/E cycles, ``r`` = flash bytes per hour of operation.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_ARMS = ("base", "always", "aura", "random", "periodic", "kv")  # the paper's panel
ARMS = (*DEFAULT_ARMS, "oracle")
BUDGET_ARMS = ("random", "periodic")
SCHEDULE_ARMS = (*BUDGET_ARMS, "oracle")  # arms whose writes are a given schedule
MEMORY_ARMS = ("always", "aura", "random", "periodic", "oracle")  # AuraMem arms (the journal applies)
GATE_ARMS = ("aura",)  # arms whose writes are the gate's own decisions: their records keep p_t per step
GATE_PROB_DECIMALS = 4  # gate_probs are rounded: ~8 B of JSON per step, ~4 KB for a 520-step episode
CONTROL_HZ = 20.0  # LIBERO's control rate: time = steps / 20 Hz for the flash budget


class MemoryArm:
    """One arm's per-episode state. ``step(z, base) -> (action, wrote, gate_prob)``."""

    def __init__(self, arm: str, model=None):
        if arm not in ARMS:
            raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
        if arm != "base" and model is None:
            raise ValueError(f"arm {arm!r} needs a model ({'KVAttentionArm' if arm == 'kv' else 'AuraMem'})")
        self.arm, self.model = arm, model
        self.schedule: set[int] = set()
        self.state = None
        self.t = 0

    def reset(self, schedule=None) -> None:
        if self.arm in SCHEDULE_ARMS:
            if schedule is None:
                what = "the instruction steps" if self.arm == "oracle" else "the AURA arm's budget"
                raise ValueError(f"arm {self.arm!r} needs a write schedule ({what})")
            self.schedule = {int(s) for s in schedule}
        if self.model is None:
            self.state = None
        elif self.arm == "kv":
            self.state = self.model.init_cache(1)
        else:
            self.state = self.model.init_state(1)
        self.t = 0

    def step(self, z: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, bool, float]:
        t, self.t = self.t, self.t + 1
        if self.model is None:
            return base, False, 0.0
        import torch

        zt = torch.as_tensor(z, dtype=torch.float32)[None]
        bt = torch.as_tensor(base, dtype=torch.float32)[None]
        with torch.no_grad():
            if self.arm == "kv":  # appends every step: "wrote", with p = 1 (there is no gate)
                action, self.state = self.model.step(zt, bt, self.state)
                return self._finite(action[0], base), True, 1.0
            if self.arm == "aura":
                out = self.model.step(zt, bt, self.state)
                action, wrote, prob = out.action[0], bool(out.write[0]), float(out.gate_prob[0])
            else:
                force = torch.tensor([[self.arm == "always" or t in self.schedule]])
                out = self.model(zt[:, None], bt[:, None], self.state, schedule=force)
                action, wrote, prob = out.action[0, 0], bool(out.write[0, 0]), float(out.gate_prob[0, 0])
        self.state = out.state
        return self._finite(action, base), wrote, prob

    @staticmethod
    def _finite(action, base: np.ndarray) -> np.ndarray:
        a = action.numpy().astype(np.float64)
        if not np.all(np.isfinite(a)):  # documented fallback: never send a non-finite action
            return base.astype(np.float64)
        return a


class ContextActor:
    """The acting side of an AuraMem with ``output="context"`` (docs/layer.md, ``sim.libero.context``).

    Per step t the observing backbone gives z_t; the memory arm turns (z_t, c_t) into c-hat_t, with c_t =
    ``backbone.context(language_t)`` the context the backbone sees; a twin of the backbone (same frozen
    network, its own chunk executor) acts on the observation with ``context = c-hat_t`` wherever the
    observation's instruction is empty, and on the instruction it sees otherwise::

        z_t, _ = backbone(o_t);  c-hat_t, write_t, p_t = arm.step(z_t, c_t)
        a_t = twin(o_t | c-hat_t)  if language_t == ""  else  twin(o_t)

    What is observed wins over what is remembered: an instruction given now is followed as given (as a
    robot should follow an operator's latest word), and the memory fills in only what the observation
    lacks. It also keeps the read-after-write of the instruction step out of the action: at t < K the read
    already holds the write, and the linear read-out, fitted mostly on the blind steps, is off there
    (mse 0.108 at t = 0 against 0.0016 from step 8 on the CPU check's held-out rollouts; docs/libero.md).
    A non-finite c-hat_t is replaced by c_t (``MemoryArm``'s fallback), so the twin then acts on what it
    sees. A fresh AuraMem (W_c = 0) gives c-hat_t = c_t: the twin's actions are the backbone's own."""

    def __init__(self, backbone, model):
        d_context = int(getattr(backbone.spec, "d_context", 0))
        if d_context != model.config.d_action or not callable(getattr(backbone, "twin", None)):
            raise ValueError(
                f"the {type(model).__name__} outputs a context of {model.config.d_action} dims, the backbone "
                f"takes {d_context} (spec.d_context; a twin-able torch backbone is needed)"
            )
        self.backbone, self.actor = backbone, backbone.twin()

    def reset(self) -> None:
        self.actor.reset()

    def context(self, observation: dict) -> np.ndarray:
        return self.backbone.context(observation.get("language", ""))

    def act(self, observation: dict, context: np.ndarray) -> np.ndarray:
        if observation.get("language", ""):  # observed wins over remembered (class docstring)
            return self.actor(observation)[1]
        return self.actor(dict(observation, context=np.asarray(context, np.float32)))[1]


def context_actor(arm: str, backbone, model) -> ContextActor | None:
    """A :class:`ContextActor` for a memory arm (AuraMem or KV) whose model outputs a context, else None."""
    if (arm in MEMORY_ARMS or arm == "kv") and getattr(model.config, "output", "action") == "context":
        return ContextActor(backbone, model)
    return None


def gate_fields(arm: str, model, probs) -> dict:
    """The per-step gate record of a :data:`GATE_ARMS` episode: ``gate_probs`` (p_t at every step t, rounded
    to :data:`GATE_PROB_DECIMALS`) and ``gate_threshold`` (tau: the arm wrote iff p_t > tau; its writes are
    ``write_steps``, not a re-thresholding of the rounded p_t). ``{}`` for the other arms: the schedule arms'
    p_t is the gate's opinion on a state it did not steer, kv has no gate, base no model."""
    if arm not in GATE_ARMS or model is None:
        return {}
    return dict(
        gate_probs=[round(float(p), GATE_PROB_DECIMALS) for p in probs],
        gate_threshold=float(model.config.threshold),
    )


def build_model(checkpoint: str | None, d_model: int, seed: int):
    """A trained AuraMem from ``checkpoint`` or a fresh one (``c_t = 0``) seeded with ``seed``."""
    import torch

    from aura.layer import AuraMem, AuraMemConfig

    if checkpoint:
        model = AuraMem.load(checkpoint)
    else:
        torch.manual_seed(seed)
        model = AuraMem(AuraMemConfig(d_model=d_model, d_action=7))
    return model.eval()


def build_kv_model(checkpoint: str | None, d_model: int, seed: int):
    """The KV arm of ``checkpoint`` (``aura train --arm kv``), else a fresh one: W_o = 0, a_t = base."""
    import torch

    from aura.baselines.kv import KVAttentionArm

    if checkpoint:
        model = KVAttentionArm.load(checkpoint)
    else:
        torch.manual_seed(seed)
        model = KVAttentionArm(d_model, 7)
    return model.eval()


def _lifetime_years(meter, steps: int, writes: int, flash, control_hz: float) -> float | None:
    """Projected lifetime (``BudgetController.report``) of ``meter``'s pages over ``steps``; None: no wear."""
    from deploy.runtime.budget import BudgetController

    years = BudgetController(flash, meter, control_hz, enabled=False).report(steps, writes)[
        "projected_lifetime_years"
    ]
    return None if math.isinf(years) else float(years)


def lifetime_years(pages: int, steps: int, flash=None, control_hz: float = CONTROL_HZ) -> float | None:
    """Projected lifetime of ``pages`` programmed per ``steps`` of operation (aggregates of episodes)."""
    from deploy.runtime.budget import FlashConfig, PageMeter

    flash = flash or FlashConfig()
    meter = PageMeter(flash.page_bytes)
    meter.pages = int(pages)  # the report only reads the meter's counts: an aggregate is the same formula
    return _lifetime_years(meter, steps, 0, flash, control_hz)


def episode_bytes(
    arm: str, model, steps: int, writes: int, flash=None, control_hz: float = CONTROL_HZ
) -> dict:
    """Bytes, flash pages and projected lifetime of one episode of ``arm`` (module docstring).

    Fields that do not apply to an arm are None (``kv`` has no journal; ``base`` writes nothing). ``pages``
    and ``lifetime_years`` are the arm's own persistence: the journal for memory arms, the appends for ``kv``.
    ``bytes`` is the older single number: dense rewrite for memory arms, KV bytes for ``kv``."""
    from deploy.runtime.budget import FlashConfig, PageMeter
    from deploy.runtime.journal import record_bytes, snapshot_bytes
    from deploy.runtime.recovery import SEG_HEAD
    from deploy.runtime.state import StateSpec

    flash = flash or FlashConfig()
    out = dict.fromkeys(
        ("journal_bytes", "dense_bytes", "kv_bytes", "kv_equiv_bytes", "journal_pages", "dense_pages",
         "kv_pages", "lifetime_years_dense"),
    )  # fmt: skip
    out.update(bytes=0, pages=0, lifetime_years=None)
    if arm == "base":
        return out
    if arm == "kv":
        per_step = model.config.bytes_per_step
        kv = PageMeter(flash.page_bytes)
        for _ in range(steps):
            kv.append(per_step)
            kv.sync()
        out.update(kv_bytes=steps * per_step, kv_pages=kv.pages, bytes=steps * per_step, pages=kv.pages)
        out["lifetime_years"] = _lifetime_years(kv, steps, steps, flash, control_hz)
        return out
    cfg = model.config
    spec = StateSpec(cfg.heads, cfg.d_key, cfg.d_val)
    rec = record_bytes(spec)
    journal = PageMeter(flash.page_bytes)
    journal.write_file(snapshot_bytes(spec))  # every episode starts with a snapshot of the empty state ...
    journal.write_file(SEG_HEAD.size)  # ... and a new segment (StateJournal._start_generation)
    dense = PageMeter(flash.page_bytes)
    for _ in range(writes):
        journal.append(rec)
        journal.sync()
        dense.write_file(cfg.state_bytes)
    out.update(
        journal_bytes=writes * rec,
        dense_bytes=writes * cfg.state_bytes,
        kv_equiv_bytes=steps * cfg.layout.kv_bytes_per_step,
        journal_pages=journal.pages,
        dense_pages=dense.pages,
        bytes=writes * cfg.state_bytes,
        pages=journal.pages,
        lifetime_years=_lifetime_years(journal, steps, writes, flash, control_hz),
        lifetime_years_dense=_lifetime_years(dense, steps, writes, flash, control_hz),
    )
    return out
