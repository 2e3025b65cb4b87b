"""The guardrail's decision as a pure function of recorded production figures: a breach fires only at the
minimum sample, comparative triggers without the previous config's runs have no data, and the same inputs
give the same verdict and intervals."""

from __future__ import annotations

import pytest

from engine.rollout import guardrails as gr
from engine.rollout.stages import Check, Criterion, Metric, StagePolicy
from engine.rollout.verdict import Phase, recompute_from_record

POLICY = StagePolicy(
    name="production",
    entities=None,
    min_duration_days=30,
    batch_size=50,
    min_sample=10,
    shadow_fraction=1.0,
    confidence=0.9,
    bootstrap_resamples=500,
    success=(Criterion(Metric.COST_REDUCTION_PCT, ">=", 25, Check.BOUND),),
    rollback=(
        Criterion(Metric.COST_INCREASE_PCT, ">", 15),
        Criterion(Metric.ERROR_RATE_PCT, ">", 10),
        Criterion(Metric.P95_LATENCY_MS, ">", 1500),
    ),
    bake_days=7,
)


def visits(n: int, cost: float, *, errors: int = 0, ms: float = 20.0, actionable_every: int = 4) -> list[gr.Visit]:
    return [gr.Visit(cost + (i % 3) * 0.001, i % actionable_every == 0, 10, errors, ms + i % 5) for i in range(n)]


def test_a_cost_increase_beyond_the_trigger_fails_once_the_minimum_sample_is_in():
    previous = visits(50, 0.10)
    verdict, m = gr.judge(POLICY, visits(9, 0.20), previous, seed=1)
    assert verdict.phase is Phase.PENDING  # 9 < min_sample 10: nothing can fire
    verdict, m = gr.judge(POLICY, visits(30, 0.20), previous, seed=1)
    assert verdict.phase is Phase.FAILED
    [breached] = [r for r in verdict.rows if r.phase is Phase.FAILED]
    assert breached.metric == "cost_increase_pct" and breached.value == pytest.approx(100.0, rel=0.02)
    assert breached.low <= breached.value <= breached.high
    assert m["cost_reduction_pct"].value == pytest.approx(-breached.value)
    # success criteria are not the guardrail's business: only triggers have rows
    assert {r.kind for r in verdict.rows} == {"rollback"}


def test_a_config_as_good_as_the_previous_one_runs_on_and_errors_or_latency_breach_on_their_own():
    verdict, _ = gr.judge(POLICY, visits(30, 0.10), visits(50, 0.10), seed=2)
    assert verdict.phase is Phase.RUNNING
    verdict, _ = gr.judge(POLICY, visits(30, 0.10, errors=3), visits(50, 0.10), seed=2)  # 30 % of hops errored
    assert [r.metric for r in verdict.rows if r.phase is Phase.FAILED] == ["error_rate_pct"]
    verdict, _ = gr.judge(POLICY, visits(30, 0.10, ms=4000), [], seed=2)
    assert [r.metric for r in verdict.rows if r.phase is Phase.FAILED] == ["p95_latency_ms"]


def test_without_the_previous_configs_runs_the_comparative_trigger_has_no_data():
    verdict, m = gr.judge(POLICY, visits(30, 0.50), [], seed=3)
    assert m["cost_increase_pct"].value is None and verdict.phase is Phase.RUNNING
    [cost] = [r for r in verdict.rows if r.metric == "cost_increase_pct"]
    assert cost.phase is Phase.PASSED and "no data" in cost.reason
    assert gr.Baseline((), "none").describe().startswith("no recorded run of the previous config")


def test_the_same_figures_give_the_same_verdict_and_the_record_recomputes():
    promoted, previous = visits(40, 0.13), visits(60, 0.10)
    a, ma = gr.judge(POLICY, promoted, previous, seed=7)
    b, mb = gr.judge(POLICY, promoted, previous, seed=7)
    assert a == b and ma == mb
    record = {
        "policy": gr.triggers_only(POLICY).to_dict(),
        "measurements": {k: v.to_dict() for k, v in ma.items()},
        "n": len(promoted),
        "final": False,
    }
    assert recompute_from_record(record) == a
    assert gr.bake_seconds(7, 86400) == pytest.approx(7.0)
    assert gr.evaluation_interval(7, 1.0) == gr.DEFAULT_INTERVAL_S
    assert gr.evaluation_interval(7, 7 * 86400) == pytest.approx(gr.MIN_INTERVAL_S)


def test_words_never_show_internal_names_or_infinities():
    verdict, _ = gr.judge(POLICY, visits(30, 0.20, errors=3), visits(50, 0.10), seed=4)
    text = gr.verdict_words(verdict, POLICY.min_sample)
    assert text.startswith("breached: cost increase") and "error rate" in text
    assert "_" not in text and "inf" not in text and "nan" not in text
    assert gr.criterion_words("p95_latency_ms", ">", 1500) == "p95 engine time > 1500 ms"
