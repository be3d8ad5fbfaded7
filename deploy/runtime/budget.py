"""Flash-wear budget: page accounting, lifetime projection and a token-bucket write controller.

Flash wears by page programs, not by write events. Appending a 536 B record and syncing it programs the
whole page it lands in (again, if the page was already partly programmed), so the cost of a write is

    pages_t = ceil(offset_after / P) - floor(offset_synced / P)       (P = page size)
    flash bytes = pages * P * WA                                     (WA = write amplification)

The endurance of the reserved region is E = reserved_bytes * pe_cycles flash bytes. Spread evenly over the
target lifetime L (hours of operation), the allowed rate is E / L flash bytes per hour; the projected
lifetime at a measured rate r is E / r. The controller is a token bucket holding flash bytes: it refills at
E / L per second of operation and holds at most ``burst_seconds`` of refill. A write is committed only if the
bucket holds its expected cost; otherwise the gate is suppressed (logged and counted by the loop). Snapshots
are charged too but never refused, so the bucket may go into debt and suppress the next writes.

Time is control-loop time, ``t / control_hz``: a simulated episode is budgeted as if it ran in real time.

Every file ``aura run`` writes to the flash is metered, not only the journal: the step log, the episode
log and the periodic summaries each have their own :class:`PageMeter` (``BudgetController.add_meter``), and
their pages are charged to the same bucket, so logging competes with memory writes for the same wear
budget. A log written in blocks without fsync is counted as if each block were synced (an upper bound:
the OS may merge blocks in one writeback). File-system metadata (inodes, directory entries) is not counted.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields

HOURS_PER_YEAR = 24 * 365.25


@dataclass
class FlashConfig:
    """The flash region reserved for the state journal and how long it must last."""

    reserved_bytes: int = 1 << 30
    pe_cycles: int = 3000
    page_bytes: int = 4096
    write_amplification: float = 2.0
    lifetime_years: float = 5.0
    hours_per_day: float = 24.0
    burst_seconds: float = 60.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"FlashConfig.{f.name} must be a positive number, got {value!r}")
        if self.write_amplification < 1:
            raise ValueError(f"FlashConfig.write_amplification must be >= 1, got {self.write_amplification}")
        if self.hours_per_day > 24:
            raise ValueError(f"FlashConfig.hours_per_day must be <= 24, got {self.hours_per_day}")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> FlashConfig:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{os.fspath(path)}: cannot read flash config: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{os.fspath(path)}: a flash config is a JSON object of FlashConfig fields")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{os.fspath(path)}: unknown flash config keys {sorted(unknown)}")
        try:
            return cls(**data)
        except ValueError as err:  # a field out of range: say which file it came from
            raise ValueError(f"{os.fspath(path)}: {err}") from err

    @property
    def endurance_bytes(self) -> float:
        """E: flash bytes the region can absorb before wearing out."""
        return float(self.reserved_bytes) * self.pe_cycles

    @property
    def lifetime_hours(self) -> float:
        """Hours of operation in the target lifetime."""
        return self.lifetime_years * 365.25 * self.hours_per_day

    @property
    def allowed_flash_bytes_per_hour(self) -> float:
        return self.endurance_bytes / self.lifetime_hours

    def flash_bytes(self, pages: int) -> float:
        return pages * self.page_bytes * self.write_amplification


class PageMeter:
    """Counts bytes and page programs of an append-only file plus whole-file writes (snapshots)."""

    def __init__(self, page_bytes: int):
        self.page_bytes = page_bytes
        self.offset = self.synced = 0
        self.bytes = self.pages = 0

    def append(self, nbytes: int) -> None:
        self.offset += nbytes
        self.bytes += nbytes

    def sync(self) -> None:
        p = self.page_bytes
        self.pages += -(-self.offset // p) - self.synced // p
        self.synced = self.offset

    def pages_if_synced(self, nbytes: int) -> int:
        """Pages one more append of ``nbytes`` plus a sync would program."""
        p = self.page_bytes
        return -(-(self.offset + nbytes) // p) - self.synced // p

    def write_file(self, nbytes: int) -> None:
        """A new file written whole and synced (snapshot, segment header); appends continue in it."""
        self.bytes += nbytes
        self.pages += -(-nbytes // self.page_bytes)
        self.offset = self.synced = nbytes

    def open_file(self, size: int) -> None:
        """Appends continue an existing file of ``size`` bytes (written earlier, not counted now)."""
        self.offset = self.synced = size


class BudgetController:
    """Token bucket over flash bytes; see the module docstring."""

    def __init__(self, config: FlashConfig, meter: PageMeter, control_hz: float, enabled: bool = True):
        if not control_hz > 0:
            raise ValueError(f"control_hz must be > 0, got {control_hz}")
        self.config, self.meter, self.control_hz, self.enabled = config, meter, control_hz, enabled
        self.meters = {"journal": meter}
        self._config_dict = asdict(config)  # once: asdict per report leaves garbage for the cyclic GC
        self.rate = config.allowed_flash_bytes_per_hour / 3600.0  # flash bytes per second
        self.capacity = self.rate * config.burst_seconds
        self.tokens = self.capacity
        self._last_s = 0.0
        self._charged_pages = 0
        self.suppressed = 0

    def _refill(self, t: int) -> None:
        now = t / self.control_hz
        self.tokens = min(self.capacity, self.tokens + self.rate * max(0.0, now - self._last_s))
        self._last_s = now

    def add_meter(self, name: str, meter: PageMeter) -> None:
        """Charge the pages of another file (a log) to the same bucket and report them under ``name``."""
        if name in self.meters:
            raise ValueError(f"a meter named {name!r} is already charged")
        self.meters[name] = meter
        self._charged_pages += meter.pages  # what it counted before joining is not this bucket's

    @property
    def pages(self) -> int:
        return sum(m.pages for m in self.meters.values())

    @property
    def bytes(self) -> int:
        return sum(m.bytes for m in self.meters.values())

    def settle(self) -> None:
        """Charge every page programmed since the last call (records, syncs, snapshots, logs)."""
        pages = self.pages
        new = pages - self._charged_pages
        self._charged_pages = pages
        self.tokens -= self.config.flash_bytes(new)

    def allow(self, t: int, record_bytes: int, per_record_sync: bool) -> bool:
        """May the write requested at control step ``t`` be committed? Counts a refusal as suppressed."""
        self._refill(t)
        self.settle()
        if not self.enabled:
            return True
        if per_record_sync:
            cost = self.config.flash_bytes(self.meter.pages_if_synced(record_bytes))
        else:  # group commit: pages are shared by the records of a group
            cost = record_bytes * self.config.write_amplification
        if self.tokens >= cost:
            return True
        self.suppressed += 1
        return False

    def report(self, steps: int, writes: int) -> dict:
        """Bytes/pages per hour, projected lifetime and the allowed write rate for ``steps`` of operation."""
        self.settle()
        cfg, nbytes, pages = self.config, self.bytes, self.pages
        hours = steps / self.control_hz / 3600.0
        flash = cfg.flash_bytes(pages)
        per_hour = flash / hours if hours > 0 else 0.0
        per_write = flash / writes if writes else cfg.flash_bytes(1)
        years = cfg.endurance_bytes / per_hour / (365.25 * cfg.hours_per_day) if per_hour > 0 else math.inf
        return {
            "bytes_written": nbytes,
            "pages_written": pages,
            "by_file": {name: {"bytes": m.bytes, "pages": m.pages} for name, m in self.meters.items()},
            "flash_bytes": flash,
            "bytes_per_hour": nbytes / hours if hours > 0 else 0.0,
            "pages_per_hour": pages / hours if hours > 0 else 0.0,
            "flash_bytes_per_hour": per_hour,
            "allowed_flash_bytes_per_hour": cfg.allowed_flash_bytes_per_hour,
            "projected_lifetime_years": years,
            "target_lifetime_years": cfg.lifetime_years,
            "allowed_writes_per_hour": cfg.allowed_flash_bytes_per_hour / per_write,
            "suppressed_writes": self.suppressed,
            "config": dict(self._config_dict),
        }
