"""Streaming statistics in fixed memory: exact count / min / max / mean and log-binned quantiles.

A robot runs for as long as it runs, so the loop cannot keep one latency per step. :class:`LogHistogram`
keeps ``nbins + 2`` counters, ``nbins = ceil(ln(hi / lo) / ln(gamma))`` (1,267 at the defaults), whatever
the horizon.

Bins (as DDSketch): with relative accuracy ``a`` and ``gamma = (1 + a) / (1 - a)``, bin i >= 1 holds
``[lo * gamma^(i-1), lo * gamma^i)`` and stands for ``rep_i = 2 lo gamma^i / (gamma + 1)``, the point at
relative distance a from both edges, so ``|rep_i - x| <= a x`` for every x in it. Bin 0 holds x < lo, bin
nbins + 1 holds x >= hi; the exact min and max stand for those.

Quantile q follows numpy's default (``np.percentile(x, 100 q)``, method "linear"): with h = q (n - 1),

    Q(q) = x_(floor h) + (h - floor h) (x_(ceil h) - x_(floor h))

for the sorted sample x_(0..n-1). The two order statistics are found by a cumulative count over the
bins and replaced by their bins' representatives, clamped to [min, max]. Each endpoint is then within a
relative a of the true one (clamping only moves it closer, since every x lies in [min, max]), and for
x >= 0 a convex combination of such estimates is within a of the same combination of the truths:

    |Q_est(q) - Q(q)| <= a Q(q)          for samples in [lo, hi) (a = 1 % by default)

``tests/deploy/test_stats.py`` checks it against ``np.percentile`` on heavy-tailed samples.
"""

from __future__ import annotations

import array
import math


class LogHistogram:
    """Fixed-memory histogram of non-negative values (latencies in microseconds by default)."""

    def __init__(self, rel_err: float = 0.01, lo: float = 0.01, hi: float = 1e9):
        if not 0 < rel_err < 1 or not 0 < lo < hi:
            raise ValueError(f"need 0 < rel_err < 1 and 0 < lo < hi, got {rel_err}, {lo}, {hi}")
        self.rel_err, self.lo, self.hi = rel_err, lo, hi
        self.gamma = (1 + rel_err) / (1 - rel_err)
        self._inv_log_gamma = 1.0 / math.log(self.gamma)
        self.nbins = math.ceil(math.log(hi / lo) * self._inv_log_gamma)
        # a machine-int array: the per-step add allocates nothing (list ints > 256 would be objects) and
        # costs less than a numpy scalar update
        self.counts = array.array("q", bytes(8 * (self.nbins + 2)))
        self.reset()

    def reset(self) -> None:
        for i in range(len(self.counts)):
            self.counts[i] = 0
        self.n = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, x: float) -> None:
        self.n += 1
        self.total += x
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x
        if x < self.lo:
            i = 0
        elif x >= self.hi:
            i = self.nbins + 1
        else:
            i = int(math.log(x / self.lo) * self._inv_log_gamma) + 1
            if i > self.nbins:  # rounding at the top edge
                i = self.nbins
        self.counts[i] += 1

    def copy(self) -> LogHistogram:
        new = LogHistogram(self.rel_err, self.lo, self.hi)
        new.merge(self)
        return new

    def merge(self, other: LogHistogram) -> None:
        """Add ``other``'s sample to this one (same bins)."""
        if (other.rel_err, other.lo, other.hi) != (self.rel_err, self.lo, self.hi):
            raise ValueError("histograms with different bins cannot be merged")
        for i, c in enumerate(other.counts):
            self.counts[i] += c
        self.n += other.n
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def _rep(self, i: int) -> float:
        if i == 0:
            return self.min
        if i == self.nbins + 1:
            return self.max
        return min(max(2.0 * self.lo * self.gamma**i / (self.gamma + 1.0), self.min), self.max)

    def _order_stat(self, k: int) -> float:
        """The estimate of x_(k), the k-th smallest (0-based)."""
        if k == 0:
            return self.min
        if k == self.n - 1:
            return self.max
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen > k:
                return self._rep(i)
        return self.max

    def quantile(self, q: float) -> float:
        """numpy's linear quantile of the sample, within ``rel_err`` (module docstring); nan when empty."""
        if self.n == 0:
            return math.nan
        h = q * (self.n - 1)
        k = math.floor(h)
        lo = self._order_stat(k)
        if h == k:
            return lo
        return lo + (h - k) * (self._order_stat(k + 1) - lo)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    def summary(self, prefix: str = "") -> dict:
        """``{prefix}median``, ``p99``, ``min``, ``max``, ``mean`` (0.0 when empty, as the logs had)."""
        if self.n == 0:
            return {f"{prefix}{k}": 0.0 for k in ("median", "p99", "min", "max", "mean")}
        return {
            f"{prefix}median": self.quantile(0.5),
            f"{prefix}p99": self.quantile(0.99),
            f"{prefix}min": self.min,
            f"{prefix}max": self.max,
            f"{prefix}mean": self.mean,
        }
