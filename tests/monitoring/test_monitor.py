"""Aggregation over windows: percentiles against numpy, histogram edges, rates, old vs new, store windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.core.errors import ConfigError
from engine.monitoring.events import record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.monitoring.windows import (
    NO_STAGE,
    Distribution,
    compare,
    confidence_histogram,
    default_bucket,
    format_window,
    group_stats,
    parse_window,
    percentile,
    series_from_events,
    summarize,
    summarize_events,
    time_series,
)
from tests.support.monitoring_data import FakeClock, make_event, make_run

T0 = 1_800_000_000.0

# --------------------------------------------------------------------------- percentiles


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 101, 997])
def test_percentiles_match_numpy_nearest_rank_reference(n):
    # numpy's inverted_cdf is the nearest-rank definition; every percentile is a measured value
    rng = np.random.default_rng(n)
    values = list(rng.lognormal(mean=1.0, sigma=1.2, size=n))
    for q in (1, 5, 25, 50, 75, 90, 95, 99, 99.9, 100):
        expected = float(np.percentile(values, q, method="inverted_cdf"))
        assert percentile(values, q) == expected, (n, q)
        assert expected in values


def test_percentiles_with_ties_and_unsorted_input_match_numpy():
    values = [5.0, 1.0, 1.0, 3.0, 3.0, 3.0, 9.0, 2.0]
    for q in (10, 50, 95, 99):
        assert percentile(values, q) == float(np.percentile(values, q, method="inverted_cdf"))


def test_percentile_of_nothing_is_none_not_zero():
    assert percentile([], 95) is None
    assert Distribution.of([]) == Distribution(0, None, None, None, None, None)


def test_percentile_rejects_q_outside_0_100():
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_distribution_mean_and_percentiles():
    d = Distribution.of([1.0, 2.0, 3.0, 4.0])
    assert (d.n, d.mean, d.p50, d.max) == (4, 2.5, 2.0, 4.0)  # nearest rank: rank ceil(0.5*4) = 2
    assert d.p95 == 4.0


# --------------------------------------------------------------------------- histogram


def test_confidence_histogram_last_bucket_includes_one():
    hist = confidence_histogram([0.0, 0.05, 0.1, 0.3, 0.7, 0.95, 1.0, 1.0])
    assert hist == (2, 1, 0, 1, 0, 0, 0, 1, 0, 3)


def test_confidence_histogram_matches_numpy_histogram():
    rng = np.random.default_rng(7)
    values = list(rng.uniform(0, 1, 500)) + [0.0, 0.3, 0.7, 0.30000000000000004, 0.29999999999999993, 1.0]
    expected, _ = np.histogram(values, bins=[i / 10 for i in range(11)])
    assert confidence_histogram(values) == tuple(int(x) for x in expected)


def test_confidence_outside_unit_interval_is_an_error():
    with pytest.raises(ValueError):
        confidence_histogram([1.2])


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    "text,seconds", [("15m", 900), ("24h", 86400), ("7d", 604800), ("30s", 30), ("2w", 1209600), (" 1H ", 3600)]
)
def test_window_parser(text, seconds):
    assert parse_window(text) == seconds
    assert parse_window(format_window(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "24", "h", "1y", "-5m", "0m", "fifteen minutes"])
def test_window_parser_rejects_with_a_hint(text):
    with pytest.raises(ConfigError, match="e.g. 15m"):
        parse_window(text)


def test_format_window_picks_largest_exact_unit():
    assert [format_window(s) for s in (86400, 5400, 900, 45)] == ["1d", "90m", "15m", "45s"]


def test_default_bucket_gives_about_thirty_buckets():
    for window in (900, 3600, 86400, 7 * 86400, 90 * 86400):
        assert window / default_bucket(window) <= 30


# --------------------------------------------------------------------------- one group


def test_group_stats_from_literals():
    events = [
        make_event(
            entity_id="a",
            cost=0.40,
            hops=4,
            actionable=True,
            promoted=1,
            errors=("timeout",),
            evidence_latency_s=2.0,
            engine_time_s=0.004,
            truth=lambda _: True,
        ),
        make_event(
            entity_id="b",
            cost=0.20,
            hops=2,
            actionable=False,
            errors=("timeout", "http_503"),
            evidence_latency_s=6.0,
            engine_time_s=0.002,
            truth=lambda _: True,
        ),
        make_event(entity_id="a", cost=0.60, hops=4, actionable=True, confidences=(1.0, 0.0)),
    ]
    g = group_stats(events, system="new")
    assert (g.runs, g.entities, g.hops) == (3, 2, 10)
    assert g.cost_total == pytest.approx(1.2)
    assert g.cost_per_entity == pytest.approx(0.4)
    assert g.hypotheses_tested == 6  # 2 + 2 + 2 distinct hypotheses hit
    assert g.cost_per_hypothesis == pytest.approx(0.2)
    assert (g.actionable, g.actionable_rate) == (2, pytest.approx(2 / 3))
    assert (g.promotions, g.promotion_rate) == (1, pytest.approx(1 / 6))
    assert (g.scored, g.correct, g.accuracy) == (2, 1, 0.5)
    assert g.errors == 3 and g.error_rate == pytest.approx(0.3)
    assert g.errors_by_type == {"http_503": 1, "timeout": 2}
    assert g.error_rate_by_type == {"http_503": pytest.approx(0.1), "timeout": pytest.approx(0.2)}
    assert g.runs_with_errors == 2
    assert g.latency_s.p50 == pytest.approx(sorted([2.004, 6.002, 3.002])[1])
    assert g.engine_latency_ms.mean == pytest.approx((4 + 2 + 2) / 3)
    assert g.iterations_mean == pytest.approx(10 / 3) and g.iterations_max == 4
    assert g.confidence_histogram[9] == 1 and g.confidence_histogram[0] == 1
    assert sum(g.confidence_histogram) == 6


def test_empty_group_has_none_rates_not_zeros():
    g = group_stats([], system="old")
    assert g.runs == 0
    assert g.cost_per_entity is None and g.actionable_rate is None and g.error_rate is None
    assert g.latency_s.p95 is None and g.accuracy is None


# --------------------------------------------------------------------------- old vs new


def _group(system, *, n, cost, actionable):
    return group_stats(
        [make_event(entity_id=f"e{i}", system=system, cost=cost, actionable=i < actionable) for i in range(n)],
        system=system,
    )


def test_comparison_reduction_and_increase_with_sample_sizes():
    c = compare(_group("old", n=10, cost=1.0, actionable=2), _group("new", n=8, cost=0.6, actionable=4))
    assert (c.old_runs, c.new_runs, c.sample) == (10, 8, 8)
    assert c.cost_reduction_pct == pytest.approx(40.0)
    assert c.cost_increase_pct == pytest.approx(-40.0)
    assert c.actionable_increase_pct == pytest.approx((0.5 - 0.2) / 0.2 * 100)
    assert c.actionable_increase_pp == pytest.approx(30.0)
    assert c.reason == ""


def test_comparison_with_an_empty_side_is_none_with_reason():
    c = compare(_group("old", n=0, cost=1.0, actionable=0), _group("new", n=5, cost=0.6, actionable=1))
    assert c.cost_reduction_pct is None and c.actionable_increase_pct is None and c.actionable_increase_pp is None
    assert (c.old_runs, c.new_runs) == (0, 5)
    assert "no old runs" in c.reason


def test_comparison_against_zero_old_rate_is_undefined_not_infinite():
    c = compare(_group("old", n=4, cost=1.0, actionable=0), _group("new", n=4, cost=1.0, actionable=2))
    assert c.actionable_increase_pct is None
    assert c.actionable_increase_pp == pytest.approx(50.0)
    assert c.cost_reduction_pct == pytest.approx(0.0)
    assert "old actionable rate is 0" in c.reason


# --------------------------------------------------------------------------- windows from the store


@pytest.fixture
def log(settings):
    return JsonlLog.for_settings(settings)


def test_summarize_reads_the_store_window_start_inclusive_end_exclusive(ops, log):
    clock = FakeClock(T0)
    record_runs(ops, [make_run("too-old", cost=9.0)], run_id="r0", clock=clock, log=log)  # at T0
    clock.tick(60)
    record_runs(
        ops,
        [make_run("a", cost=0.5), make_run("b", system="old", cost=1.0)],
        run_id="r1",
        stage_id="pilot",
        clock=clock,
        log=log,
    )  # at T0 + 60
    clock.tick(60)
    record_runs(ops, [make_run("c", cost=0.3)], run_id="r2", clock=clock, log=log)  # at T0 + 120 == now

    s = summarize(ops, 120, now=T0 + 120)  # [T0, T0 + 120)
    assert s.overall.runs == 3  # "too-old" at T0 is in, "c" at the end instant is not
    assert (s.by_system["new"].runs, s.by_system["old"].runs) == (2, 1)
    s = summarize(ops, 119, now=T0 + 120)  # [T0 + 1, T0 + 120): only the middle batch
    assert s.overall.runs == 2
    assert s.by_system["new"].cost_total == pytest.approx(0.5)
    assert s.by_system["old"].cost_total == pytest.approx(1.0)
    assert s.comparison.cost_reduction_pct == pytest.approx(50.0)
    assert [st.stage_id for st in s.stages] == ["pilot"]
    assert s.percentile_method.startswith("nearest rank")
    assert s.config_hashes == {"new": ("cfg-new",), "old": ("cfg-new",)}


def test_summarize_groups_per_stage_and_system(ops, log):
    clock = FakeClock(T0)
    record_runs(
        ops,
        [make_run(f"p{i}", actionable=i == 0) for i in range(3)],
        run_id="r",
        stage_id="pilot",
        clock=clock,
        log=log,
    )
    record_runs(
        ops, [make_run(f"o{i}", system="old") for i in range(2)], run_id="r", stage_id="pilot", clock=clock, log=log
    )
    record_runs(ops, [make_run("x")], run_id="adhoc", clock=clock, log=log)
    s = summarize(ops, 3600, now=T0 + 1)
    stages = {st.stage_id: st for st in s.stages}
    assert set(stages) == {"pilot", NO_STAGE}
    assert stages["pilot"].by_system["new"].runs == 3
    assert stages["pilot"].by_system["new"].actionable_rate == pytest.approx(1 / 3)
    assert stages["pilot"].by_system["old"].runs == 2
    assert stages["pilot"].comparison.sample == 2
    assert stages[NO_STAGE].by_system["old"].runs == 0
    assert stages[NO_STAGE].comparison.cost_reduction_pct is None
    only_pilot = summarize(ops, 3600, now=T0 + 1, stage_id="pilot")
    assert only_pilot.overall.runs == 5


def test_summarize_can_leave_shadow_runs_out(ops, log):
    clock = FakeClock(T0)
    record_runs(ops, [make_run("a"), make_run("a", system="old", shadow=True)], run_id="r", clock=clock, log=log)
    assert summarize(ops, 60, now=T0 + 1).overall.runs == 2
    assert summarize(ops, 60, now=T0 + 1, include_shadow=False).overall.runs == 1


def test_time_series_buckets_per_system_with_gaps(ops, log):
    clock = FakeClock(T0 - T0 % 600)  # start on a bucket edge
    start = clock.now
    record_runs(
        ops,
        [make_run("a", cost=0.2, hops=5, errors=("timeout",)), make_run("b", cost=0.4, actionable=True)],
        run_id="r",
        clock=clock,
        log=log,
    )
    clock.tick(1200)  # skip one bucket entirely
    record_runs(ops, [make_run("c", system="old", cost=1.0, evidence_latency_s=40.0)], run_id="r", clock=clock, log=log)
    points = time_series(ops, 3600, now=start + 1800, bucket_s=600)
    assert [(p.bucket_start - start, p.system, p.runs) for p in points] == [(0, "new", 2), (1200, "old", 1)]
    first = points[0]
    assert first.cost_per_entity == pytest.approx(0.3)
    assert first.actionable_rate == pytest.approx(0.5)
    assert first.error_rate == pytest.approx(1 / 9)
    assert points[1].latency_p95_s == pytest.approx(40.002)


def test_series_from_events_is_sorted_and_aligned():
    events = [make_event(at=1000.0 + i * 50, system="new" if i % 2 else "old") for i in range(6)]
    points = series_from_events(events, 100)
    assert [p.bucket_start for p in points] == sorted(p.bucket_start for p in points)
    assert all(p.bucket_start % 100 == 0 for p in points)
    assert sum(p.runs for p in points) == 6


def test_summarize_events_always_has_both_systems():
    s = summarize_events([], start=0, end=60, now=60)
    assert set(s.by_system) == {"new", "old"}
    assert s.overall.runs == 0 and s.stages == ()
    assert math.isclose(s.window_s, 60)
