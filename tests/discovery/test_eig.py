"""EIG: the issue's four numbers, every component, and the selection ranking."""

from __future__ import annotations

import math

import pytest

from engine.core.model import Hypothesis, Pattern, Status
from engine.core.params import ParameterConfig
from engine.discovery.eig import (
    SECONDS_PER_DAY,
    counted_confirmations,
    expected_information_gain,
    novelty,
    rank_hypotheses,
    recency,
    score_hypothesis,
)

P = ParameterConfig()
NOW = 1_700_000_000.0


def hyp(pattern="p", category="C-Suite Hiring", confidence=0.5, **kw) -> Hypothesis:
    h = Hypothesis.new("acme-fc", Pattern(pattern, category, confidence), NOW)
    from dataclasses import replace

    return replace(h, **kw)


# ---------------------------------------------------------------- the numbers


def test_csuite_at_half_confidence_is_0_750():
    b = score_hypothesis(hyp(category="C-Suite Hiring", confidence=0.5), P, now=NOW)
    assert round(b.eig, 3) == 0.750


def test_crm_implementation_at_0_42_is_0_696():
    b = score_hypothesis(hyp(category="CRM Implementation", confidence=0.42), P, now=NOW)
    assert round(b.eig, 3) == 0.696


def test_digital_transformation_at_0_85_is_0_195():
    b = score_hypothesis(hyp(category="Digital Transformation", confidence=0.85), P, now=NOW)
    assert round(b.eig, 3) == 0.195


def test_csuite_with_one_cluster_confirmation_decay_one_is_0_375():
    h = hyp(pattern="Chief Digital Officer hire", category="C-Suite Hiring", confidence=0.5)
    b = score_hypothesis(h, P, now=NOW, confirmations={"Chief Digital Officer hire": 1}, cluster_size=20)
    assert P.novelty_decay == 1.0
    assert round(b.eig, 3) == 0.375


# ---------------------------------------------------------------- components


def test_novelty_formula():
    assert novelty(0, 1.0) == 1.0
    assert novelty(3, 1.0) == 0.25
    assert novelty(3, 0.0) == 1.0


def test_recency_decays_with_days_since_last_update():
    assert recency(0.0, 0.5) == 1.0
    assert recency(2.0, 0.5) == pytest.approx(math.exp(-1.0))
    assert recency(-3.0, 0.5) == 1.0  # clock skew never boosts


def test_age_is_measured_from_updated_at():
    h = hyp(category="General", confidence=0.0, updated_at=NOW - 10 * SECONDS_PER_DAY)
    b = score_hypothesis(h, ParameterConfig(temporal_decay=0.1), now=NOW)
    assert b.age_days == pytest.approx(10.0)
    assert b.eig == pytest.approx(math.exp(-1.0))


def test_expected_information_gain_is_the_product():
    assert expected_information_gain(0.2, 1.5, 0.5, 1.0, 0.0) == pytest.approx(0.8 * 1.5 * 0.5)


def test_small_clusters_are_not_dampened():
    assert counted_confirmations(4, 2, ParameterConfig(cluster_min_size=3)) == 0
    assert counted_confirmations(4, 3, ParameterConfig(cluster_min_size=3)) == 4
    assert counted_confirmations(4, None, ParameterConfig(cluster_min_size=3)) == 4


def test_confirmations_below_the_threshold_count_as_none():
    assert counted_confirmations(2, 50, ParameterConfig(cluster_min_confirmations=3)) == 0
    assert counted_confirmations(3, 50, ParameterConfig(cluster_min_confirmations=3)) == 3


def test_unknown_category_uses_the_other_value():
    b = score_hypothesis(hyp(category="Sponsorship", confidence=0.0), P, now=NOW)
    assert b.value == 0.9


# ---------------------------------------------------------------- selection score


def test_exploration_bonus_shrinks_with_tries():
    p = ParameterConfig(exploration_bonus=0.3)
    fresh = score_hypothesis(hyp(), p, now=NOW, tries_in_run=0)
    tried = score_hypothesis(hyp(), p, now=NOW, tries_in_run=3)
    assert fresh.exploration == pytest.approx(0.3)
    assert tried.exploration == pytest.approx(0.15)
    assert fresh.eig == tried.eig


def test_exploitation_bonus_only_for_an_unpromoted_lead():
    p = ParameterConfig(exploitation_bonus=0.2)
    assert score_hypothesis(hyp(accepts=0), p, now=NOW).exploitation == 0.0
    assert score_hypothesis(hyp(accepts=1), p, now=NOW).exploitation == 0.2
    assert score_hypothesis(hyp(accepts=3, status=Status.PROMOTED), p, now=NOW).exploitation == 0.0


def test_rank_is_by_score_and_deterministic_on_ties():
    hs = [
        hyp(pattern="b", category="General", confidence=0.5),
        hyp(pattern="a", category="General", confidence=0.5),
        hyp(pattern="c", category="C-Suite Hiring", confidence=0.5),
        hyp(pattern="d", category="C-Suite Hiring", confidence=0.5, status=Status.DEGRADED),
    ]
    ranked = rank_hypotheses(hs, P, now=NOW, selectable_only=True)
    assert [b.pattern for b in ranked] == ["c", "a", "b"]
    assert len(rank_hypotheses(hs, P, now=NOW)) == 4
