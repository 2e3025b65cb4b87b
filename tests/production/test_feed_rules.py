"""The actionable feed's decisions over plain rows: stays (join, leave, rejoin), the gate, the evidence that
made an entity actionable, the reasons it leaves, the filters and the times operators type."""

from __future__ import annotations

import pytest

from engine.core.model import Hypothesis, Pattern
from engine.production.feed import (
    LEFT_BY_RUN,
    LEFT_BY_STATE,
    FeedChoices,
    FeedError,
    FeedFilter,
    LiveRun,
    accepting_evidence,
    best_hypothesis,
    build_feed,
    check_filter,
    departure_reason,
    gate_counts,
    parse_time,
    stays,
)
from tests.support.graphs import entity

T = 1_764_583_200.0  # 2025-12-01 10:00 UTC


def run(i: int, eid: str, actionable: bool, *, at: float | None = None, run_id: str | None = None) -> LiveRun:
    return LiveRun(
        id=i, at=T + i * 60 if at is None else at, entity_id=eid, run_id=run_id or f"r{i}", system="new",
        config_hash="cfg", stage_id="production", actionable=actionable,
    )  # fmt: skip


def hyp(eid: str, name: str, category: str, *, accepts: int, confidence: float = 0.5, rejects: int = 0) -> Hypothesis:
    h = Hypothesis.new(eid, Pattern(name, category, 0.3), T)
    return Hypothesis(**{**h.__dict__, "accepts": accepts, "confidence": confidence, "rejects": rejects})


def ev(eid: str, run_id: str, decision: str, category: str = "Ticketing", *, rolled_back=False, i=1) -> dict:
    return {
        "entity_id": eid, "run_id": run_id, "decision": decision, "at": T + i, "iteration": i, "pattern": "p",
        "category": category, "hop_type": "press_release", "url": f"https://x.example/{i}", "excerpt": f"found {i}",
        "confidence_after": 0.5, "rolled_back": rolled_back,
    }  # fmt: skip


def test_an_entity_joins_at_its_first_actionable_run_and_leaves_at_the_next_one_that_is_not():
    found = stays([run(3, "a", True), run(1, "a", False), run(2, "a", True), run(4, "a", False), run(5, "a", False)])
    (s,) = found["a"]
    assert s.joined.id == 2 and s.last.id == 3 and s.left is not None and s.left.id == 4
    assert s.run_ids == ("r1", "r2") and s.later_run_ids == ("r3", "r4")


def test_a_rejoin_is_a_second_stay_and_never_actionable_is_no_stay():
    found = stays([run(1, "a", True), run(2, "a", False), run(3, "a", True), run(4, "b", False)])
    assert "b" not in found
    first, second = found["a"]
    assert (first.joined.id, first.left and first.left.id) == (1, 2)
    assert second.joined.id == 3 and second.left is None
    assert second.run_ids == ("r1", "r2", "r3")  # every run up to the rejoin may hold its accepting evidence


def test_the_gate_counts_accepts_across_distinct_categories_and_the_best_hypothesis_is_the_most_confident():
    hs = [
        hyp("a", "One", "Ticketing", accepts=2, confidence=0.6),
        hyp("a", "Two", "Ticketing", accepts=1, confidence=0.9),
        hyp("a", "Three", "CRM Implementation", accepts=0, confidence=0.95),
    ]
    assert gate_counts(hs) == (3, 1)
    best = best_hypothesis(hs)
    assert best is not None and best.pattern == "Three"
    assert best_hypothesis([]) is None


def test_accepting_evidence_is_the_accepts_of_the_runs_that_made_it_actionable_not_rolled_back():
    rows = [
        ev("a", "r1", "ACCEPT", i=2),
        ev("a", "r1", "REJECT", i=3),
        ev("a", "r2", "ACCEPT", i=1),
        ev("a", "r9", "ACCEPT", i=4),  # a later run: not what made it actionable
        ev("a", "r1", "ACCEPT", rolled_back=True, i=5),
    ]
    items = accepting_evidence(rows, ["r1", "r2"])
    assert [(e.run_id, e.excerpt) for e in items] == [("r2", "found 1"), ("r1", "found 2")]


def test_departure_reasons_name_the_run_the_counts_the_gate_and_the_rejects():
    hs = [hyp("a", "One", "Ticketing", accepts=2), hyp("a", "Two", "General", accepts=1)]
    text = departure_reason(cause=LEFT_BY_RUN, run=run(7, "a", False), hyps=hs, gate=(5, 2), rejects_since=3)
    assert text.startswith("live run r7 (new system, config cfg) on 2025-12-01 10:07 UTC was not actionable: ")
    assert "3 ACCEPTs across 2 categories now; the gate needs 5 across 2; 3 REJECTs since it became actionable" in text
    state = departure_reason(cause=LEFT_BY_STATE, run=None, hyps=hs[:1], gate=(2, 2), rejects_since=1, rolled_back=True)
    assert state == (
        "its accepting evidence was rolled back and its hypotheses no longer pass the actionable gate: "
        "2 ACCEPTs across 1 category now; the gate needs 2 across 2; 1 REJECT since it became actionable"
    )


def feed_of(runs, hyps, evidence, f: FeedFilter | None = None, gate=(2, 2)):
    ents = {e.id: e for e in (entity(1), entity(2, "south"), entity(3))}
    return build_feed(
        stays(runs),
        ents,
        hyps,
        {eid: [e for e in rows if e["decision"] == "ACCEPT"] for eid, rows in evidence.items()},
        {eid: {"r3": sum(1 for e in rows if e["decision"] == "REJECT")} for eid, rows in evidence.items()},
        gates={},
        default_gate=gate,
        origins={"cfg": "the defaults"},
        f=f or FeedFilter(),
    )


def test_build_feed_lists_entities_in_the_window_and_their_departures():
    a, b, c = "club-001", "club-002", "club-003"
    ok = [hyp(a, "One", "Ticketing", accepts=1), hyp(a, "Two", "General", accepts=1)]
    hyps = {a: ok, b: [hyp(b, "One", "Ticketing", accepts=1), hyp(b, "Two", "General", accepts=1)], c: ok[:1]}
    evidence = {a: [ev(a, "r1", "ACCEPT")], b: [ev(b, "r3", "REJECT")], c: [ev(c, "r5", "ACCEPT", rolled_back=True)]}
    runs = [run(1, a, True), run(2, b, True), run(3, b, False), run(5, c, True)]
    feed = feed_of(runs, hyps, evidence)
    assert [r.entity_id for r in feed.rows] == [a]
    row = feed.rows[0]
    assert (row.config_origin, row.categories, row.accepts, row.excerpt) == (
        "the defaults", ("General", "Ticketing"), 2, "found 1",
    )  # fmt: skip
    by = {d.entity_id: d for d in feed.departures}
    assert by[b].cause == LEFT_BY_RUN and by[b].left_at == T + 180 and "1 REJECT since" in by[b].reason
    assert by[c].cause == LEFT_BY_STATE and by[c].left_at is None and "rolled back" in by[c].reason
    # the window: a joined before it, so only departures in it (and state departures, whose time is unknown)
    later = feed_of(runs, hyps, evidence, FeedFilter(since=T + 150))
    assert later.rows == () and {d.entity_id for d in later.departures} == {b, c}
    # filters by template (all the same here), country and accepted category
    assert feed_of(runs, hyps, evidence, FeedFilter(category="CRM Implementation")).rows == ()
    assert feed_of(runs, hyps, evidence, FeedFilter(country="GB", category="General")).entity_ids() == [a]


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2025-12-01", False, T - 10 * 3600),
        ("2025-12-01", True, T + 14 * 3600),
        ("2025-12-01T10:00", False, T),
        ("2025-12-01 10:00:30Z", False, T + 30),
        ("2025-12-01T11:00:00+01:00", False, T),
        ("2025-12-01T09:00-0100", False, T),
    ],
)
def test_times_are_dates_or_iso_times_in_utc_unless_they_carry_an_offset(text, end, expected):
    assert parse_time(text, "--since", end=end) == expected


@pytest.mark.parametrize("text", ["yesterday", "2025-13-01", "2025-12-01T25:00", "12/01/2025", ""])
def test_a_bad_time_is_one_line_saying_what_is_valid(text):
    with pytest.raises(FeedError) as err:
        parse_time(text, "--since")
    msg = str(err.value)
    assert msg.startswith("--since: ") and "YYYY-MM-DD" in msg and "\n" not in msg


def test_filters_are_matched_case_insensitively_and_an_unknown_one_lists_the_valid_values():
    choices = FeedChoices(templates=("tier1_club", "league"), categories=("Ticketing",), countries=("England",))
    f = check_filter(FeedFilter(template="LEAGUE", category="ticketing", country=" england "), choices)
    assert (f.template, f.category, f.country) == ("league", "Ticketing", "England")
    with pytest.raises(FeedError, match=r"^unknown country 'Mars': use one of England$"):
        check_filter(FeedFilter(country="Mars"), choices)
    with pytest.raises(FeedError, match=r"^unknown template 'x': use one of tier1_club, league$"):
        check_filter(FeedFilter(template="x"), choices)
    many = FeedChoices((), (), tuple(f"c{i:02d}" for i in range(28)))
    with pytest.raises(FeedError, match=r"c19 and 8 more$"):
        check_filter(FeedFilter(country="zz"), many)
    with pytest.raises(FeedError, match="before it begins"):
        check_filter(FeedFilter(since=T, until=T), choices)


def test_rejects_since_count_only_the_runs_after_it_became_actionable():
    from engine.production.feed import rejects_in

    assert rejects_in({"r1": 2, "r3": 1, "r4": 5}, ["r3", "r4", "r9"]) == 6
    assert rejects_in({}, ["r3"]) == 0
