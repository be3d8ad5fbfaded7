"""Flash budget: page accounting, lifetime projection, and the token bucket suppressing writes."""

import json

import pytest

from deploy.runtime.budget import BudgetController, FlashConfig, PageMeter


def test_page_meter_counts_partial_page_reprograms():
    m = PageMeter(page_bytes=4096)
    m.write_file(36)  # segment header: one page
    assert m.pages == 1
    for _ in range(8):  # 8 x 536 B records, each synced: 36 + 8*536 = 4324 B spans 2 pages
        assert m.pages_if_synced(536) in (1, 2)
        m.append(536)
        m.sync()
    # every sync reprograms the partial page it lands in: 7 syncs within page 0, the 8th touches 0 and 1
    assert m.pages == 1 + 7 + 2
    assert m.bytes == 36 + 8 * 536


def test_group_commit_programs_fewer_pages():
    a, b = PageMeter(4096), PageMeter(4096)
    for i in range(64):
        a.append(536)
        a.sync()
        b.append(536)
        if i % 16 == 15:
            b.sync()
    assert b.pages < a.pages / 5


def test_lifetime_projection_and_allowed_rate():
    cfg = FlashConfig(
        reserved_bytes=1 << 20,
        pe_cycles=1000,
        page_bytes=4096,
        write_amplification=2.0,
        lifetime_years=1.0,
        burst_seconds=1.0,
    )
    m = PageMeter(cfg.page_bytes)
    ctl = BudgetController(cfg, m, control_hz=10.0, enabled=False)
    for _ in range(100):
        m.append(536)
        m.sync()
    steps = 36000  # one hour at 10 Hz
    rep = ctl.report(steps=steps, writes=100)
    flash_per_hour = m.pages * 4096 * 2.0
    assert rep["flash_bytes_per_hour"] == pytest.approx(flash_per_hour)
    expected_years = (1 << 20) * 1000 / flash_per_hour / (24 * 365.25)
    assert rep["projected_lifetime_years"] == pytest.approx(expected_years)
    per_write = flash_per_hour / 100
    assert rep["allowed_writes_per_hour"] == pytest.approx(cfg.allowed_flash_bytes_per_hour / per_write)


def test_token_bucket_suppresses_writes_beyond_the_budget():
    # allowed: 10 pages (x WA 1) per hour of loop time -> a burst of 2 pages, then one write per 360 s
    cfg = FlashConfig(
        reserved_bytes=4096 * 10,
        pe_cycles=1,
        page_bytes=4096,
        write_amplification=1.0,
        lifetime_years=1 / (365.25 * 24),
        burst_seconds=720.0,
    )
    m = PageMeter(cfg.page_bytes)
    ctl = BudgetController(cfg, m, control_hz=1.0)
    granted = []
    for t in range(3600):  # one hour at 1 Hz, a write requested every step
        if ctl.allow(t, 536, per_record_sync=True):
            m.append(536)
            m.sync()
            granted.append(t)
    ctl.settle()
    assert ctl.suppressed == 3600 - len(granted)
    # burst of 2, then 10 per hour refill: 11 or 12 writes, never more than the budget + burst
    assert 10 <= len(granted) <= 12, granted
    assert m.pages * 4096 <= cfg.allowed_flash_bytes_per_hour + ctl.capacity + 1e-6


def test_config_validation_and_json(tmp_path):
    with pytest.raises(ValueError, match="pe_cycles"):
        FlashConfig(pe_cycles=0)
    p = tmp_path / "flash.json"
    p.write_text(json.dumps({"page_bytes": 16384, "bogus": 1}))
    with pytest.raises(ValueError, match="flash.json: unknown flash config keys"):
        FlashConfig.from_json(p)
    p.write_text(json.dumps({"page_bytes": 16384}))
    assert FlashConfig.from_json(p).page_bytes == 16384
