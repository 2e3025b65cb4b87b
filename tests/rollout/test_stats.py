"""Paired intervals: exact where it fits, bootstrap with a passed generator."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from engine.rollout.stats import (
    PairedOutcome,
    bootstrap_interval,
    clopper_pearson,
    measure,
    p95,
    quantile,
    relative_change_pct,
)


def _o(i, new_cost, old_cost, new_act=False, old_act=False, hops=10, errors=0, ms=5.0, crashed=False):
    return PairedOutcome(
        f"e{i}", new_cost, new_act, hops, errors, ms, crashed, old_cost, old_act if old_cost is not None else None
    )


def test_clopper_pearson_matches_scipy_exact_interval():
    for k, n in [(0, 20), (3, 20), (20, 20), (7, 150)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
        lo, hi = clopper_pearson(k, n, 0.9)
        assert lo == pytest.approx(ci.low, abs=1e-9) and hi == pytest.approx(ci.high, abs=1e-9)


def test_quantile_is_nearest_rank_and_safe_with_infinity():
    assert quantile(np.array([1.0, 2.0, 3.0, 4.0]), 0.5) == 2.0
    assert quantile(np.array([0.0, 1.0, math.inf]), 0.95) == math.inf
    assert p95(list(range(1, 101))) == 95


def test_relative_change_handles_a_zero_base():
    assert relative_change_pct(10, 5) == -50
    assert relative_change_pct(0, 1) == math.inf
    assert relative_change_pct(0, 0) == 0


def test_bootstrap_same_seed_same_interval_and_it_covers_the_mean():
    data = np.random.default_rng(1).normal(10, 2, 200)
    stat = lambda idx: data[idx].mean(axis=-1)  # noqa: E731
    a = bootstrap_interval(stat, len(data), np.random.default_rng(7), resamples=500, level=0.9)
    b = bootstrap_interval(stat, len(data), np.random.default_rng(7), resamples=500, level=0.9)
    assert a == b
    assert a[0] < data.mean() < a[1]
    assert a[1] - a[0] < 1.0


def test_measure_cost_reduction_is_paired_and_ignores_unshadowed_entities():
    outcomes = [_o(i, new_cost=6.0, old_cost=10.0) for i in range(20)] + [_o(99, new_cost=100.0, old_cost=None)]
    m = measure(outcomes, np.random.default_rng(0), resamples=300)
    red = m["cost_reduction_pct"]
    assert red.value == pytest.approx(40.0) and red.n == 20
    assert red.low == pytest.approx(40.0) and red.high == pytest.approx(40.0)  # every pair is identical
    assert m["cost_increase_pct"].value == pytest.approx(-40.0)


def test_measure_actionable_increase_and_its_interval():
    outcomes = [_o(i, 1, 1, new_act=i < 12, old_act=i < 6) for i in range(30)]
    m = measure(outcomes, np.random.default_rng(0), resamples=500)["actionable_increase_pct"]
    assert m.value == pytest.approx(100.0)
    assert m.low < 100.0 < m.high


def test_measure_error_rate_counts_errored_hops_and_crashed_runs():
    outcomes = [_o(i, 1, 1, hops=10, errors=1 if i < 5 else 0) for i in range(10)] + [
        _o(10, 0, None, hops=0, crashed=True)
    ]
    m = measure(outcomes, np.random.default_rng(0), resamples=200)["error_rate_pct"]
    assert m.n == 101 and m.value == pytest.approx(6 / 101 * 100)
    lo, hi = clopper_pearson(6, 101, 0.9)
    assert (m.low, m.high) == (pytest.approx(lo * 100), pytest.approx(hi * 100))


def test_measure_p95_latency_excludes_crashed_runs():
    outcomes = [_o(i, 1, 1, ms=float(i + 1)) for i in range(100)] + [_o(100, 0, None, ms=9999.0, crashed=True)]
    m = measure(outcomes, np.random.default_rng(0), resamples=200)["p95_latency_ms"]
    assert m.value == 95.0 and m.n == 100
    assert m.low <= 95.0 <= m.high


def test_measure_with_no_pairs_reports_no_data():
    m = measure([_o(0, 1, None)], np.random.default_rng(0), resamples=200)
    assert m["cost_reduction_pct"].value is None and m["cost_reduction_pct"].n == 0
