"""The domain model: one test per lifecycle rule, counters, clamping, actionability, ids."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.core.model import (
    CATEGORY_GROUP,
    Channel,
    Decision,
    DecisionDeltas,
    DomainError,
    Entity,
    HopType,
    Hypothesis,
    LifecycleRules,
    Pattern,
    Status,
    Template,
    apply_decision,
    category_group,
    clamp01,
    hypothesis_id,
    is_actionable,
    kill,
    lifecycle_status,
    slugify,
)

NOW = 1_700_000_000.0

A, W, R, N = Decision.ACCEPT, Decision.WEAK_ACCEPT, Decision.REJECT, Decision.NO_PROGRESS


def hyp(confidence: float = 0.5, category: str = "CRM Implementation", **kw) -> Hypothesis:
    pattern = Pattern(name=kw.pop("pattern", "CRM procurement"), category=category, weight=confidence)
    return replace(Hypothesis.new("acme-fc", pattern, NOW), **kw)


def run(h: Hypothesis, *decisions: Decision) -> Hypothesis:
    for i, d in enumerate(decisions):
        h = apply_decision(h, d, NOW + i + 1)
    return h


# --------------------------------------------------------------------------- lifecycle rules


def test_promoted_when_confidence_reaches_threshold_with_two_accepts():
    h = run(hyp(0.60), A, A)  # 0.60 -> 0.66 -> 0.72
    assert h.confidence == pytest.approx(0.72)
    assert h.status is Status.PROMOTED
    status, reason = lifecycle_status(h)
    assert status is Status.PROMOTED and "accepts 2 >= 2" in reason


def test_not_promoted_with_high_confidence_but_a_single_accept():
    h = run(hyp(0.68), A)  # 0.74 but only one accept
    assert h.confidence >= 0.70
    assert h.status is Status.ACTIVE


def test_not_promoted_with_two_accepts_below_threshold():
    h = run(hyp(0.40), A, A)  # 0.52
    assert h.accepts == 2
    assert h.status is Status.ACTIVE


def test_degraded_when_confidence_low_with_two_rejects():
    h = run(hyp(0.32), R, R)  # 0.30 -> 0.28
    assert h.confidence == pytest.approx(0.28)
    assert h.status is Status.DEGRADED
    assert "rejects 2 >= 2" in lifecycle_status(h)[1]


def test_not_degraded_at_exactly_the_threshold():
    h = run(hyp(0.34), R, R)  # 0.30 is not < 0.30
    assert h.confidence == pytest.approx(0.30)
    assert h.status is Status.ACTIVE


def test_not_degraded_with_low_confidence_but_one_reject():
    h = run(hyp(0.25), R)
    assert h.status is Status.ACTIVE


def test_saturated_when_three_of_last_five_made_no_progress():
    h = run(hyp(0.5), W, N, W, N, N)
    assert h.status is Status.SATURATED
    assert "3 of the last 5" in lifecycle_status(h)[1]


def test_saturated_needs_three_no_progress_not_two():
    h = run(hyp(0.5), W, N, W, W, N)
    assert h.status is Status.ACTIVE


def test_saturated_counts_only_the_last_five_attempts():
    # three old no-progress attempts slide out of the window of five
    h = run(hyp(0.5), N, N, N)
    assert h.status is Status.SATURATED
    h = run(h, W, W, W)  # window now N, N, W, W, W: two stalled
    assert h.no_progress == 3  # the counter still remembers them
    assert h.recent == (N, N, W, W, W)
    assert h.status is Status.ACTIVE


def test_saturation_window_is_bounded_by_the_rules():
    h = run(hyp(0.5), *([W] * 12))
    assert len(h.recent) == LifecycleRules().saturation_window
    rules = LifecycleRules(saturation_window=3, saturation_count=2)
    h2 = hyp(0.5)
    for d in (N, W, W, N):
        h2 = apply_decision(h2, d, NOW, rules=rules)
    assert h2.recent == (W, W, N)
    assert h2.status is Status.ACTIVE  # the first N left the window of three


def test_killed_is_sticky():
    h = kill(hyp(0.5), "club dissolved", NOW)
    assert h.status is Status.KILLED and h.killed_reason == "club dissolved"
    h = run(h, A, A, A, A, A, A, A)  # enough to promote any live hypothesis
    assert h.confidence > 0.70 and h.accepts == 7
    assert h.status is Status.KILLED
    assert lifecycle_status(h) == (Status.KILLED, "killed: club dissolved")


def test_killed_without_reason_says_operator():
    h = replace(hyp(), status=Status.KILLED)
    assert lifecycle_status(h)[1] == "killed: by operator"


def test_back_to_active_from_degraded():
    h = run(hyp(0.32), R, R)
    assert h.status is Status.DEGRADED
    h = run(h, A)  # 0.28 -> 0.34
    assert h.status is Status.ACTIVE


def test_back_to_active_from_saturated():
    h = run(hyp(0.5), N, N, N)
    assert h.status is Status.SATURATED
    h = run(h, W)  # window N, N, N, W still has 3 stalled
    assert h.status is Status.SATURATED
    h = run(h, W, W)  # N, N, W, W, W -> 2 stalled
    assert h.status is Status.ACTIVE


def test_promoted_wins_over_saturated():
    h = run(hyp(0.60), A, N, A, N, N)
    assert h.status is Status.PROMOTED


def test_only_active_is_selectable():
    assert [s for s in Status if s.is_selectable()] == [Status.ACTIVE]


def test_custom_rules_are_respected():
    rules = LifecycleRules(promote_confidence=0.55, promote_accepts=1)
    h = apply_decision(hyp(0.50), A, NOW, rules=rules)
    assert h.status is Status.PROMOTED
    assert apply_decision(hyp(0.50), A, NOW).status is Status.ACTIVE


# --------------------------------------------------------------------------- updates


def test_confidence_clamped_at_one():
    h = run(hyp(0.97), A)
    assert h.confidence == 1.0
    assert h.last_delta == pytest.approx(0.03)  # the delta actually applied


def test_confidence_clamped_at_zero():
    h = run(hyp(0.01), R)
    assert h.confidence == 0.0
    assert h.last_delta == pytest.approx(-0.01)


def test_clamp01():
    assert clamp01(-0.5) == 0.0
    assert clamp01(1.5) == 1.0
    assert clamp01(0.25) == 0.25


def test_apply_decision_counts_each_decision_and_sets_last_delta():
    h = hyp(0.5)
    h = apply_decision(h, A, NOW + 1)
    assert (h.accepts, h.last_delta) == (1, pytest.approx(0.06))
    h = apply_decision(h, W, NOW + 2)
    assert (h.weak_accepts, h.last_delta) == (1, pytest.approx(0.02))
    h = apply_decision(h, R, NOW + 3)
    assert (h.rejects, h.last_delta) == (1, pytest.approx(-0.02))
    h = apply_decision(h, N, NOW + 4)
    assert (h.no_progress, h.last_delta) == (1, 0.0)
    assert h.attempts == 4
    assert h.confidence == pytest.approx(0.56)
    assert h.recent == (A, W, R, N)
    assert h.updated_at == NOW + 4 and h.created_at == NOW


def test_apply_decision_is_pure():
    h = hyp(0.5)
    h2 = apply_decision(h, A, NOW + 1)
    assert h.accepts == 0 and h.confidence == 0.5 and h.recent == ()
    assert h2 is not h


def test_custom_deltas():
    deltas = DecisionDeltas(accept=0.1, reject=-0.05)
    assert apply_decision(hyp(0.5), A, NOW, deltas=deltas).confidence == pytest.approx(0.6)
    assert apply_decision(hyp(0.5), R, NOW, deltas=deltas).confidence == pytest.approx(0.45)


def test_no_progress_is_the_only_non_progress_decision():
    assert [d for d in Decision if not d.is_progress()] == [N]


def test_new_hypothesis_starts_at_its_prior():
    p = Pattern(name="CRM Procurement!", category="CRM Implementation", weight=0.35)
    h = Hypothesis.new("acme-fc", p, NOW)
    assert h.id == "acme-fc::crm-procurement" == hypothesis_id("acme-fc", p.name)
    assert h.prior == h.confidence == 0.35
    assert h.status is Status.ACTIVE and h.attempts == 0
    assert h.category == "CRM Implementation"


# --------------------------------------------------------------------------- actionable


def test_actionable_needs_two_accepts_in_two_categories():
    crm = run(hyp(0.4, "CRM Implementation", pattern="crm"), A)
    hire = run(hyp(0.4, "C-Suite Hiring", pattern="cdo"), A)
    assert is_actionable([crm, hire])


def test_not_actionable_with_accepts_in_one_category():
    crm = run(hyp(0.4, "CRM Implementation", pattern="crm"), A, A, A)
    assert not is_actionable([crm])
    crm2 = run(hyp(0.4, "CRM Implementation", pattern="crm2"), A)
    assert not is_actionable([crm, crm2])


def test_not_actionable_with_one_accept():
    crm = run(hyp(0.4, "CRM Implementation", pattern="crm"), A)
    other = run(hyp(0.4, "Ticketing", pattern="tix"), W, W)  # weak accepts do not count
    assert not is_actionable([crm, other])


def test_actionable_thresholds_are_tunable():
    crm = run(hyp(0.4, "CRM Implementation", pattern="crm"), A, A, A)
    assert is_actionable([crm], min_accepts=3, min_categories=1)
    assert not is_actionable([crm], min_accepts=4, min_categories=1)


# --------------------------------------------------------------------------- categories


def test_category_groups_are_an_explicit_table():
    assert category_group("CRM Implementation") == "data"
    assert category_group("C-Suite Hiring") == "csuite"
    # no substring matching: a look-alike is "other"
    assert category_group("CRM Implementation Phase 2") == "other"
    assert category_group("crm implementation") == "other"
    assert set(CATEGORY_GROUP.values()) <= {"csuite", "strategic", "digital", "data", "commercial", "default"}


# --------------------------------------------------------------------------- ids


def test_slugify_folds_accents():
    assert slugify("Borussia Mönchengladbach") == "borussia-monchengladbach"
    assert slugify("Atlético Paranaense") == "atletico-paranaense"
    assert slugify("São Paulo FC") == "sao-paulo-fc"


def test_slugify_drops_punctuation():
    assert slugify("Brighton & Hove Albion F.C.") == "brighton-hove-albion-f-c"
    assert slugify("St. Pauli (1910)!") == "st-pauli-1910"


def test_slugify_collapses_whitespace():
    assert slugify("  Real \t Madrid\n CF  ") == "real-madrid-cf"


def test_slugify_is_idempotent():
    for text in ("Borussia Mönchengladbach", "Brighton & Hove Albion F.C.", "  x  y ", "already-a-slug"):
        assert slugify(slugify(text)) == slugify(text)


def test_slugify_of_nothing_useful_is_empty():
    assert slugify("!!! ") == ""


def entity(**kw) -> Entity:
    fields = dict(
        id="acme-fc",
        name="Acme FC",
        sport="football",
        country="England",
        type="club",
        tier=1,
        cluster="england-football",
        template_id="tier1_club",
    )
    fields.update(kw)
    return Entity(**fields)


def test_entity_accepts_a_slug_id():
    assert entity().id == "acme-fc"


@pytest.mark.parametrize("bad", ["Acme FC", "acme_fc", "-acme", "acme-", "", "açme"])
def test_entity_rejects_an_id_that_is_not_a_slug(bad):
    with pytest.raises(DomainError) as info:
        entity(id=bad)
    assert "not a normalised slug" in str(info.value)
    assert "\n" not in str(info.value)


def test_entity_rejection_suggests_the_slug():
    with pytest.raises(DomainError, match="try 'acme-fc'"):
        entity(id="Acme FC")


def test_entity_rejects_a_blank_name():
    with pytest.raises(DomainError, match="empty name"):
        entity(name="   ")


# --------------------------------------------------------------------------- templates


def test_template_channel_order_by_priority_then_hop_type():
    t = Template(
        id="t",
        name="T",
        patterns=(Pattern("CRM", "CRM Implementation", 0.3),),
        channels=(
            Channel(HopType.RFP_PORTAL, 2),
            Channel(HopType.PRESS_RELEASE, 1),
            Channel(HopType.CAREERS_PAGE, 1),
        ),
    )
    assert t.channel_order() == (HopType.CAREERS_PAGE, HopType.PRESS_RELEASE, HopType.RFP_PORTAL)
    assert t.pattern("CRM").weight == 0.3
    with pytest.raises(DomainError, match="no pattern 'Ticketing'"):
        t.pattern("Ticketing")
