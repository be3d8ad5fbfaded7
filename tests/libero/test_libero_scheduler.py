"""The harness's scheduler alone (no simulator): job order, budget matching, retries, dead AURA arms."""

import json

from sim.libero.scheduler import EvalScheduler

BASE = dict(
    backbone="libero_noop",
    backbone_args={},
    seed=0,
    image_size=32,
    cameras=[],
    max_steps=10,
    checkpoint=None,
    d_model=8,
)


def _ok(writes=0, steps=10):
    return dict(status="ok", success=True, steps=steps, writes=writes, bytes=writes * 4224, wall_s=0.1)


def _sched(tmp_path, arms, retries=1, done=None):
    logs = []
    s = EvalScheduler(
        [(0, 0)], arms, dict(BASE), done or {}, retries, tmp_path / "e.jsonl", 0.1, log=logs.append
    )
    return s, logs


def test_budget_arms_wait_for_the_aura_arm_and_spend_its_writes(tmp_path):
    s, _ = _sched(tmp_path, ["base", "aura", "random", "periodic"])
    base, aura = s.next_job(), s.next_job()
    assert [base.key[2], aura.key[2]] == ["base", "aura"]
    assert s.next_job() is None and s.open()  # random/periodic are blocked on the AURA arm
    s.finished(aura, _ok(writes=3, steps=8))
    rnd, per = s.next_job(), s.next_job()
    assert len(rnd.payload["schedule"]) == 3 and all(0 <= x < 8 for x in rnd.payload["schedule"])
    assert per.payload["schedule"] == [1, 4, 6]  # floor((i + 1/2) * 8 / 3)
    again, _ = _sched(tmp_path, ["aura", "random"], done={(0, 0, "aura", 0): _ok(writes=3, steps=8)})
    assert again.next_job().payload["schedule"] == rnd.payload["schedule"]  # seeded: same on resume


def test_failed_aura_arm_is_retried_then_its_budget_arms_are_recorded_as_errors(tmp_path):
    s, logs = _sched(tmp_path, ["aura", "random"], retries=1)
    job = s.next_job()
    assert s.failed(job, "boom") is True  # attempt 1 -> retried
    job = s.next_job()
    assert job.key[2] == "aura" and job.attempt == 2
    assert s.failed(job, "boom again") is False  # retries spent
    assert s.next_job() is None and not s.open()
    recs = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [(r["arm"], r["status"], r.get("final")) for r in recs] == [
        ("aura", "error", False),
        ("aura", "error", True),
        ("random", "error", True),
    ]
    assert "no write budget" in recs[-1]["error"] and len(logs) == 3


def test_without_aura_arm_the_budget_rate_sets_the_write_count(tmp_path):
    s, _ = _sched(tmp_path, ["periodic"])
    assert len(s.next_job().payload["schedule"]) == 1  # round(0.1 * 10)
