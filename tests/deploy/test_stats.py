"""Streaming statistics: the log-binned quantiles stay within the stated relative error of numpy's
percentile, min / max / mean are exact, and the memory is fixed whatever the sample size."""

import math

import numpy as np
import pytest

from deploy.runtime.stats import LogHistogram

QS = (0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0)


def _samples(rng):
    n = 20_000
    return {
        "lognormal": rng.lognormal(3.5, 1.0, n),  # latency-like, heavy right tail
        "bimodal": np.concatenate([rng.normal(40, 2, n), rng.normal(4000, 300, n // 50)]),
        "pareto": 20.0 * (1 + rng.pareto(1.5, n)),
        "constant": np.full(1000, 37.25),
        "tiny": rng.uniform(1.0, 2.0, 3),
        "one": np.array([123.0]),
    }


@pytest.mark.parametrize("rel_err", [0.01, 0.002])
def test_quantiles_within_the_stated_relative_error_of_numpy(rel_err):
    rng = np.random.default_rng(0)
    for name, x in _samples(rng).items():
        h = LogHistogram(rel_err=rel_err)
        for v in x.tolist():
            h.add(v)
        assert h.n == len(x) and h.min == x.min() and h.max == x.max(), name
        assert h.mean == pytest.approx(x.mean(), rel=1e-12), name
        for q in QS:
            want = float(np.percentile(x, 100 * q))
            got = h.quantile(q)
            assert abs(got - want) <= rel_err * want * (1 + 1e-9), (name, q, got, want)


def test_merge_equals_one_histogram_of_both_samples():
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(3, 1, 5000), rng.lognormal(5, 0.5, 3000)
    ha, hb, hall = LogHistogram(), LogHistogram(), LogHistogram()
    for v in a:
        ha.add(v)
        hall.add(v)
    for v in b:
        hb.add(v)
        hall.add(v)
    ha.merge(hb)
    assert list(ha.counts) == list(hall.counts) and ha.n == hall.n
    assert ha.quantile(0.99) == hall.quantile(0.99) and ha.max == hall.max
    c = ha.copy()
    ha.reset()
    assert ha.n == 0 and math.isnan(ha.quantile(0.5)) and c.n == hall.n
    assert ha.summary("x_") == {f"x_{k}": 0.0 for k in ("median", "p99", "min", "max", "mean")}


def test_memory_is_fixed_whatever_the_horizon():
    import tracemalloc

    h = LogHistogram()
    rng = np.random.default_rng(2)
    warm = rng.lognormal(3, 1, 1000).tolist()
    for v in warm:
        h.add(v)
    sample = rng.lognormal(3, 1, 200_000).tolist()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for v in sample:
        h.add(v)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = [s for s in after.compare_to(before, "filename") if s.traceback[0].filename.endswith("stats.py")]
    assert sum(s.size_diff for s in stats) <= 256  # the running n / total objects, not per-sample state
    assert h.nbins == 1267 and len(h.counts) == h.nbins + 2  # 1 % bins over [0.01 us, 1000 s)


def test_values_outside_the_range_are_clamped_to_the_exact_extremes():
    h = LogHistogram(lo=1.0, hi=100.0)
    for v in (0.5, 0.25, 5.0, 500.0, 1000.0):
        h.add(v)
    assert h.quantile(0.0) == 0.25 and h.quantile(1.0) == 1000.0
    assert 0.25 <= h.quantile(0.25) <= 0.5 and 500.0 <= h.quantile(0.75) <= 1000.0
    with pytest.raises(ValueError):
        LogHistogram(rel_err=0.0)
    with pytest.raises(ValueError, match="different bins"):
        h.merge(LogHistogram())
