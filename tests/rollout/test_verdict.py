"""Verdicts on hand-made paired data: one test per rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.rollout.stages import Check, Criterion, Metric, StagePolicy
from engine.rollout.stats import Measurement, PairedOutcome, measure
from engine.rollout.verdict import Phase, assess, elapsed_days, promotion_gate, recompute_from_record, worst


def _policy(test=Check.POINT, min_sample=5):
    return StagePolicy(
        name="pilot",
        entities=10,
        min_duration_days=3,
        batch_size=5,
        min_sample=min_sample,
        shadow_fraction=1.0,
        confidence=0.9,
        bootstrap_resamples=400,
        success=(
            Criterion(Metric.COST_REDUCTION_PCT, ">=", 15, test),
            Criterion(Metric.ACTIONABLE_INCREASE_PCT, ">=", 50, test),
            Criterion(Metric.ERROR_RATE_PCT, "<", 5, test),
        ),
        rollback=(
            Criterion(Metric.COST_INCREASE_PCT, ">", 10),
            Criterion(Metric.ERROR_RATE_PCT, ">", 10),
        ),
    )


def _pairs(n, new_cost, old_cost, new_act_every, old_act_every, errors=0, hops=20):
    return [
        PairedOutcome(
            f"e{i}", new_cost, i % new_act_every == 0, hops, errors, 3.0, False, old_cost, i % old_act_every == 0
        )
        for i in range(n)
    ]


def _measure(pairs):
    return measure(pairs, np.random.default_rng(11), resamples=400)


def test_pass_when_every_success_criterion_clears():
    pairs = _pairs(10, 6.0, 10.0, new_act_every=2, old_act_every=4)  # 40% cheaper, 5 vs 3 actionable
    v = assess(_policy(), _measure(pairs), n=10, final=True)
    assert v.phase is Phase.PASSED, v.reason
    assert all(r.phase is Phase.PASSED for r in v.rows)


def test_fail_when_a_trigger_is_breached():
    pairs = _pairs(10, 12.0, 10.0, 2, 4)  # 20% more expensive
    v = assess(_policy(), _measure(pairs), n=10, final=False)
    assert v.phase is Phase.FAILED
    assert "breached: cost_increase_pct value 20 > 10" in v.reason


def test_fail_on_errors_even_when_cheaper():
    pairs = _pairs(10, 6.0, 10.0, 2, 4, errors=3, hops=20)  # 15% errored hops
    v = assess(_policy(), _measure(pairs), n=10, final=True)
    assert v.phase is Phase.FAILED and "error_rate_pct" in v.reason


def test_inconclusive_when_a_success_criterion_is_not_shown():
    pairs = _pairs(10, 9.5, 10.0, 2, 4)  # only 5% cheaper: no trigger, not good enough
    v = assess(_policy(), _measure(pairs), n=10, final=True)
    assert v.phase is Phase.INCONCLUSIVE
    assert "not shown: cost_reduction_pct value 5 < 15" in v.reason


def test_bound_test_needs_the_whole_interval_to_clear():
    # 45% cheaper in total but from a few entities: the point clears 15%, the lower bound does not
    pairs = [
        PairedOutcome(f"e{i}", c, True, 20, 0, 3.0, False, 10.0, i % 3 == 0)
        for i, c in enumerate([0.0, 0.0, 0.0, 12.0, 12.0, 9.0])
    ]
    m = _measure(pairs)
    assert m["cost_reduction_pct"].value == pytest.approx(45.0)
    assert assess(_policy(Check.POINT), m, n=6, final=True).phase is Phase.PASSED
    v = assess(_policy(Check.BOUND), m, n=6, final=True)
    assert v.phase is Phase.INCONCLUSIVE and "lower bound" in v.reason


def test_no_trigger_fires_below_the_minimum_sample():
    pairs = _pairs(3, 30.0, 10.0, 2, 4)  # terrible, but only 3 entities
    v = assess(_policy(min_sample=5), _measure(pairs), n=3, final=False)
    assert v.phase is Phase.PENDING
    assert all(r.phase is Phase.PENDING for r in v.rows)


def test_running_while_entities_remain_even_if_success_not_yet_shown():
    pairs = _pairs(6, 9.9, 10.0, 2, 4)
    assert assess(_policy(), _measure(pairs), n=6, final=False).phase is Phase.RUNNING


def test_worst_phase_wins():
    assert worst([Phase.PASSED, Phase.INCONCLUSIVE, Phase.RUNNING]) is Phase.INCONCLUSIVE
    assert worst([Phase.PASSED, Phase.FAILED, Phase.INCONCLUSIVE]) is Phase.FAILED
    assert worst([]) is Phase.PASSED
    assert Phase.FAILED.is_terminal() and not Phase.RUNNING.is_terminal()


def test_promotion_waits_for_min_duration_unless_forced_by_an_operator():
    assert not promotion_gate(Phase.PASSED, 1.0, 3, force=False, operator=False).allowed
    assert not promotion_gate(Phase.PASSED, 1.0, 3, force=True, operator=False).allowed
    assert promotion_gate(Phase.PASSED, 1.0, 3, force=True, operator=True).allowed
    assert promotion_gate(Phase.PASSED, 3.0, 3, force=False, operator=False).allowed


def test_inconclusive_needs_a_person_and_failed_never_promotes():
    assert not promotion_gate(Phase.INCONCLUSIVE, 5, 3, force=False, operator=False).allowed
    assert promotion_gate(Phase.INCONCLUSIVE, 5, 3, force=False, operator=True).allowed
    assert not promotion_gate(Phase.FAILED, 5, 3, force=True, operator=True).allowed
    assert not promotion_gate(Phase.RUNNING, 5, 3, force=True, operator=True).allowed


def test_elapsed_days_uses_the_time_scale():
    assert elapsed_days(100.0, 103.0, 86400) == pytest.approx(3.0)
    assert elapsed_days(100.0, 99.0, 86400) == 0.0


def test_verdict_recomputes_from_a_json_record():
    pairs = _pairs(10, 6.0, 10.0, 2, 4)
    m = _measure(pairs)
    v = assess(_policy(), m, n=10, final=True)
    record = json.loads(
        json.dumps(
            {
                "policy": _policy().to_dict(),
                "n": 10,
                "final": True,
                "measurements": {k: x.to_dict() for k, x in m.items()},
            }
        )
    )
    assert recompute_from_record(record) == v


def test_infinite_increase_survives_the_record():
    m = Measurement("actionable_increase_pct", float("inf"), 10.0, float("inf"), 5, "x", 0.9)
    assert Measurement.from_dict(json.loads(json.dumps(m.to_dict()))) == m
