"""Which episode runs next in ``aura eval libero``: the queue over (task, init state, arm), and --shard.

``EvalScheduler`` hands the workers (``sim.libero.workers``, local or Ray) one episode at a time, in the
order of the (task, init state) pairs it is given (``run_evaluation``: init-state-major). The random and
periodic arms wait for the AURA arm of their pair: their write budget is that episode's write count over its
steps (without an AURA arm, ``budget_rate`` x max_steps). Every result or failure is appended to the
episodes JSONL at once (flushed, fsync'd); a failed episode is retried up to ``retries`` times, and a budget
arm whose AURA episode failed for good is recorded as failed (no budget) instead of run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from aura.schedules import periodic_schedule, random_schedule
from sim.libero.arms import BUDGET_ARMS
from sim.libero.workers import RetryQueue


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return i, n


class EvalScheduler(RetryQueue):
    """Jobs in (init state, task, arm) order; random/periodic wait for the AURA arm of their pair."""

    def __init__(self, pairs, arms, base: dict, done: dict, retries: int, out, budget_rate: float, log=print):
        from sim.libero.workers import Job

        self.base, self.done, self.retries, self.out, self.log = base, done, retries, out, log
        self.budget_rate = budget_rate
        self.queue = [
            Job((t, i, a), {}) for t, i in pairs for a in arms if (t, i, a, base["seed"]) not in done
        ]
        self.need_aura = "aura" in arms
        self.dead: set[tuple] = set()
        self.new: list[dict] = []
        self.total = len(self.queue)

    def _budget(self, t: int, i: int):
        """Write schedule of the budget arms from the AURA arm's episode, or None if not yet known."""
        if self.need_aura:
            rec = self.done.get((t, i, "aura", self.base["seed"]))
            if rec is None:
                return None
            n, horizon = rec["writes"], rec["steps"]
        else:
            horizon = self.base["max_steps"]
            n = round(self.budget_rate * horizon)
        return n, horizon

    def next_job(self):
        for k, job in enumerate(self.queue):
            t, i, arm = job.key
            payload = dict(self.base, task=t, init_state=i, arm=arm)
            if arm in BUDGET_ARMS:
                if (t, i) in self.dead:
                    self.queue.pop(k)
                    why = "the AURA arm failed: no write budget"
                    self._record(job, dict(status="error", error=why, success=False, final=True), final=True)
                    return self.next_job()
                budget = self._budget(t, i)
                if budget is None:
                    continue
                n, horizon = budget
                if arm == "random":
                    rng = np.random.default_rng([self.base["seed"], t, i])
                    payload["schedule"] = random_schedule(n, horizon, rng).tolist()
                else:
                    payload["schedule"] = periodic_schedule(n, horizon).tolist()
            if arm == "oracle":  # the steps that carry the goal in the transient-instruction variant
                payload["schedule"] = list(range(self.base["instruction_steps"]))
            if self.base.get("video_states", 0) > i and self.base.get("video_dir"):
                payload["video"] = str(Path(self.base["video_dir"]) / f"task{t}_init{i}_{arm}.mp4")
            job.payload = payload
            return self.queue.pop(k)
        return None

    def _record(self, job, result: dict, final: bool) -> None:
        t, i, arm = job.key
        rec = dict(task=t, init_state=i, arm=arm, seed=self.base["seed"], backbone=self.base["backbone"])
        rec.update(attempt=job.attempt, **result)
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.new.append(rec)
        if rec["status"] == "ok":
            self.done[(t, i, arm, self.base["seed"])] = rec
        n_done = sum(1 for r in self.new if r["status"] == "ok") + len(
            [r for r in self.new if r["status"] != "ok" and r.get("final")]
        )
        what = "success" if rec.get("success") else "fail"
        if rec["status"] != "ok":
            what = f"{rec['status']} (attempt {job.attempt}): {rec.get('error', '').splitlines()[0][:120]}"
        self.log(
            f"[eval] {n_done}/{self.total} task {t} init {i} {arm:<8} {what}"
            + (
                f" steps {rec['steps']} writes {rec['writes']} {rec['wall_s']:.1f} s"
                if rec["status"] == "ok"
                else ""
            )
        )

    def finished(self, job, result: dict) -> None:
        self._record(job, result, final=True)

    def failed(self, job, error: str) -> bool:
        final = self.spent(job)
        self._record(job, dict(status="error", error=error, success=False, final=final), final=final)
        if self.retry(job):
            return True
        if job.key[2] == "aura":
            self.dead.add(job.key[:2])
        return False
