"""The production plan as a pure function on plain data: who is due, in which order, why; admission by the
day's budget; the refresh policy's bounds; the batch's hop-by-hop budget check."""

from __future__ import annotations

import math

import pytest

from engine.core.errors import ConfigError
from engine.core.model import Decision, Depth, EvidenceResult, HopType
from engine.production.budget import BatchBudget, BudgetedSource, BudgetExhausted, check_budget, day_of, next_day_start
from engine.production.policy import (
    Candidate,
    Group,
    RefreshPolicy,
    admit,
    eig_per_usd,
    expected_cost,
    next_due_at,
    plan,
    round_robin_plan,
)

DAY = 86400.0
NOW = 1_800_000_000.0
POLICY = RefreshPolicy(min_age_s=DAY, max_age_s=7 * DAY)


def c(eid, eig, cost, age_days=None):
    return Candidate(eid, eig, cost, None if age_days is None else NOW - age_days * DAY, pattern="CRM")


def test_new_first_then_overdue_then_due_each_by_eig_per_dollar():
    cands = [
        c("due-cheap", 0.5, 0.10, age_days=2),  # 5.0 per $
        c("due-dear", 0.9, 0.45, age_days=3),  # 2.0 per $
        c("overdue", 0.1, 0.40, age_days=8),  # 0.25 per $
        c("new-low", 0.2, 0.40),  # 0.5 per $
        c("new-high", 0.8, 0.40),  # 2.0 per $
        c("fresh", 1.0, 0.01, age_days=0.5),  # visited half a day ago: not due
    ]
    got = plan(cands, POLICY, NOW)
    assert [d.entity_id for d in got] == ["new-high", "new-low", "overdue", "due-cheap", "due-dear"]
    assert [d.rank for d in got] == [1, 2, 3, 4, 5]
    assert [d.group for d in got] == [Group.NEW, Group.NEW, Group.OVERDUE, Group.DUE, Group.DUE]
    assert got[0].new and not got[0].overdue and got[2].overdue
    assert got[3].eig_per_usd == pytest.approx(5.0)
    assert got[3].age_s == pytest.approx(2 * DAY)
    assert "new: never visited" in got[0].reason and "2.00 per $" in got[0].reason
    assert got[2].reason.startswith("overdue: last visit 8.0 days ago")
    assert got[3].reason.startswith("due: last visit 2.0 days ago") and "(CRM)" in got[3].reason
    assert plan(cands, POLICY, NOW, limit=2) == got[:2]


def test_ties_break_by_id_and_nothing_active_comes_last_in_its_group():
    cands = [c("b", 0.5, 0.1), c("a", 0.5, 0.1), c("z-none", 0.0, 0.0), c("m", 0.2, 0.1)]
    assert [d.entity_id for d in plan(cands, POLICY, NOW)] == ["a", "b", "m", "z-none"]
    assert eig_per_usd(0.0, 0.0) == 0.0


def test_round_robin_takes_the_same_due_set_least_recently_visited_first():
    cands = [c("x", 0.9, 0.1, age_days=2), c("y", 0.1, 0.4, age_days=5), c("n2", 0.1, 0.4), c("n1", 0.9, 0.1)]
    rr = round_robin_plan(cands, POLICY, NOW)
    assert [d.entity_id for d in rr] == ["n1", "n2", "y", "x"]
    assert {d.entity_id for d in rr} == {d.entity_id for d in plan(cands, POLICY, NOW)}


def test_next_due_is_the_earliest_last_visit_plus_the_minimum_age():
    cands = [c("a", 0.5, 0.1, age_days=0.25), c("b", 0.5, 0.1, age_days=0.5), c("n", 0.5, 0.1)]
    assert next_due_at(cands, POLICY) == pytest.approx(NOW - 0.5 * DAY + DAY)
    assert next_due_at([c("n", 0.5, 0.1)], POLICY) is None


def test_expected_cost_is_the_mean_of_the_latest_visits_else_the_fallback():
    assert expected_cost([0.3, 0.1], 0.475) == (pytest.approx(0.2), "mean of its last 2 visits")
    assert expected_cost([0.3, 0.1, 0.2, 0.2, 0.2, 9.0], 0.475)[0] == pytest.approx(0.2)
    assert expected_cost([], 0.475) == (0.475, "no visit yet: the typical visit")


def test_admit_takes_entities_while_their_caps_fit_in_what_is_left():
    due = plan([c(f"e{i}", 0.5, 0.1) for i in range(10)], POLICY, NOW)
    caps = [0.475] * 10
    assert admit(due, caps, 1.0, 50) == 2  # 0.95 fits, 1.425 does not
    assert admit(due, caps, 0.95, 50) == 2  # to the cent
    assert admit(due, caps, 0.47, 50) == 0
    assert admit(due, caps, 100.0, 3) == 3  # the batch size
    assert admit(due, caps, 100.0, 50) == 10


@pytest.mark.parametrize(
    ("lo", "hi"), [(-1, 10), (10, 5), (math.nan, 10), (0, math.inf), (0, 0), (0, 400 * DAY), (True, 10)]
)
def test_refresh_policy_refuses_what_is_not_a_pair_of_ages(lo, hi):
    with pytest.raises(ConfigError):
        RefreshPolicy(lo, hi)


@pytest.mark.parametrize("bad", [0, -5, math.nan, math.inf, 1e300, "10", True])
def test_budget_must_be_finite_positive_and_bounded(bad):
    with pytest.raises(ConfigError):
        check_budget(bad)


def test_days_are_utc():
    assert day_of(1_800_000_000.0) == "2027-01-15"
    assert next_day_start(1_800_000_000.0) == pytest.approx(1_800_000_000.0 - 1_800_000_000.0 % DAY + DAY)


class _Source:
    """Quotes $0.05 a hop, charges ``cost`` (more than its quote when told to break it)."""

    def __init__(self, cost=0.04):
        self.cost = cost
        self.calls = 0

    def max_cost(self, hop_type, depth):
        return 0.05

    def evaluate(self, entity, hypothesis, hop_type, depth, attempt):
        self.calls += 1
        return EvidenceResult(Decision.NO_PROGRESS, self.cost, 0.1)

    truth = "passed through"


def test_budgeted_source_buys_a_hop_only_while_its_quote_fits():
    inner = _Source()
    src = BudgetedSource(inner, BatchBudget(0.12))
    ent = type("E", (), {"id": "e1"})()
    for _ in range(2):
        src.evaluate(ent, None, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)
    assert src.budget.charged == pytest.approx(0.08)
    with pytest.raises(BudgetExhausted):  # 0.08 + a 0.05 quote > 0.12: not bought
        src.evaluate(ent, None, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)
    assert inner.calls == 2 and src.budget.refused == 1
    assert src.truth == "passed through" and src.max_cost(HopType.OFFICIAL_SITE, Depth.SURFACE) == 0.05
