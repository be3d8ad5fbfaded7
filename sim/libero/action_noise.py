"""Noise injected into the expert's executed actions while its clean actions are recorded (DART).

Behaviour cloning sees the expert only on the expert's own states; a learned policy drifts off them and has
never seen the way back (covariate shift). DART (Laskey et al., 2017) perturbs the *executed* action of the
supervisor and keeps the supervisor's *clean* action as the label, so the demos cover states around the
expert's path and say how the expert corrects from each. Unlike DAgger the expert stays in control, so its
plan is always in phase with the state and its labels stay consistent (the DAgger rounds of
docs/libero_vla.md failed on labels from a shadow expert out of phase with a policy-driven arm).

The perturbation is temporally correlated (an AR(1) / discretised Ornstein-Uhlenbeck process), since the
OSC controller integrates delta actions and white noise at 20 Hz averages out within a few steps::

    eps_0 = sigma * xi_0,   eps_t = rho * eps_{t-1} + sqrt(1 - rho^2) * sigma * xi_t,   xi_t ~ N(0, I_6)
    rho   = exp(-1 / tau)                            (tau: correlation time in control steps)
    sigma = (pos, pos, pos, rot, rot, rot)           (action units: OSC_POSE's +-1 = 5 cm / 0.5 rad a step)
    a_exec,t = (clip(a_t[:6] + eps_t, -1, 1), a_t[6])   the gripper command is never perturbed

so every eps_t has standard deviation sigma (the process starts stationary) and corr(eps_t, eps_t+k) =
rho^k. ``sim.libero.recording.rollout`` records a_t as the demo's ``actions`` and a_exec,t as
``executed_actions``; replays execute the latter.

**Transit-only noise** (``transit`` = d > 0 m): eps_t is added only on steps whose servo goal has a
position tolerance tol_t >= d (the expert's ``goal_tolerance``: cruise, lift and carry moves, 15-30 mm),
never on precision approaches (4-12 mm), gripper actuation or pushes (tol_t = 0); the process keeps
advancing on the quiet steps. Why: the expert is a P-controller, a_pos = k_p (p* - p) with k_p = 12-15,
so persistent noise sigma holds the hand about sigma / k_p off its goal (0.1 -> 7-8 mm), as wide as the
precision tolerances that gate its next phase - it hovers until the noise lets it in, and the demos fill
with "hold here" labels at the hand-off poses. A policy cloned from them stalls at exactly those poses
(docs/libero_vla.md, "DART demos"). Transit noise still starts every approach off the clean path, and the
clean expert's approach from there is the correction the demos add.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ActionNoise:
    """sigma_pos, sigma_rot (action units, >= 0), tau (control steps, > 0) and transit (m, >= 0; 0: noise on
    every step); all zero sigmas = off."""

    pos: float = 0.0
    rot: float = 0.0
    tau: float = 5.0
    transit: float = 0.0

    def __post_init__(self):
        for name in ("pos", "rot", "tau", "transit"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"--noise-{name}: a finite number, got {v!r}")
        if self.pos < 0 or self.rot < 0:
            raise ValueError(f"--noise-pos / --noise-rot must be >= 0, got {self.pos}, {self.rot}")
        if self.tau <= 0:
            raise ValueError(f"--noise-tau must be > 0 control steps, got {self.tau}")
        if self.transit < 0:
            raise ValueError(f"--noise-transit must be >= 0 m (0: every step), got {self.transit}")

    @property
    def on(self) -> bool:
        return self.pos > 0 or self.rot > 0

    @property
    def rho(self) -> float:
        return math.exp(-1.0 / self.tau)

    def as_dict(self) -> dict:
        return asdict(self)

    def recorded(self) -> dict:
        """What a demo file and its job summary record: the setting, or {} when off (``transit`` only when
        set, so files recorded before it existed still match their setting)."""
        if not self.on:
            return {}
        d = self.as_dict()
        if not d["transit"]:
            del d["transit"]
        return d

    def process(self, rng: np.random.Generator) -> NoiseProcess:
        """A fresh stationary process for one episode, drawing from ``rng``."""
        return NoiseProcess(self, rng)


class NoiseProcess:
    """One episode's eps_t (module docstring); ``perturb(a)`` advances it one step."""

    def __init__(self, noise: ActionNoise, rng: np.random.Generator):
        self.sigma = np.array([noise.pos] * 3 + [noise.rot] * 3)
        self.rho = noise.rho
        self.transit = noise.transit
        self.rng = rng
        self.eps: np.ndarray | None = None

    def perturb(self, action: np.ndarray, goal_tolerance: float | None = None) -> np.ndarray:
        """a_exec,t; with ``transit`` set, ``goal_tolerance`` (tol_t, m) says whether eps_t is added."""
        xi = self.rng.standard_normal(6)
        if self.eps is None:
            self.eps = self.sigma * xi
        else:
            self.eps = self.rho * self.eps + math.sqrt(1.0 - self.rho**2) * self.sigma * xi
        out = np.array(action, dtype=np.float64, copy=True)
        if self.transit:
            if goal_tolerance is None:
                raise ValueError(
                    "--noise-transit: the acting backbone reports no goal_tolerance (the libero_expert "
                    "backbone does); record without it or with that backbone"
                )
            if goal_tolerance < self.transit:
                return out
        out[:6] = np.clip(out[:6] + self.eps, -1.0, 1.0)
        return out


def episode_rng(seed: int, task: int, episode: dict) -> np.random.Generator:
    """The noise stream of one try: fixed by (seed, task, the reset options), so a rerun or a replay of the
    same try draws the same eps_t on any machine."""
    key = [int(seed), int(task), *(int(v) for _, v in sorted(episode.items())), 0xDA27]
    return np.random.default_rng(key)
