"""The actionable feed on the real embedded stores: after real production runs it lists exactly the entities
the lifecycle says became actionable, with their accepting evidence; a later run that is not actionable (a
stricter live config, REJECTs) or a restored graph takes one out with the reason; filters; batched reads."""

from __future__ import annotations

import pytest

from engine.core.configs import set_candidate
from engine.core.params import ParameterConfig
from engine.production.feed import LEFT_BY_RUN, LEFT_BY_STATE, FeedError, FeedFilter, feed_choices, load_feed
from engine.store.graph import GraphStore
from tests.support.actors import person
from tests.support.feed import DAY, T0, RejectEverything, actionable_now, production_runs, promote, seed_feed


@pytest.fixture
def fed(graph, ops):
    """60 entities, 40 of them run live in production at T0: (graph, ops, all ids, the actionable ones)."""
    ids, truth = seed_feed(graph, ops, 60, 40)
    assert 0 < len(truth) < 40, "the world should make some, not all, entities actionable"
    return graph, ops, ids, truth


def test_the_feed_lists_exactly_the_entities_that_became_actionable_with_their_evidence(fed):
    graph, ops, ids, truth = fed
    feed = load_feed(graph, ops)
    assert set(feed.entity_ids()) == truth
    assert feed.live_runs == 40
    hyps = graph.get_hypotheses_many(list(truth))
    for row in feed.rows:
        assert row.became_at == T0 and row.stage_id == "production" and row.system == "new"
        assert row.config_hash == ParameterConfig().hash() and row.config_origin == "the defaults"
        # the accepting evidence: ACCEPTs of that run, with links and excerpts, across >= 2 categories
        assert row.evidence and all(e.decision == "ACCEPT" and e.url.startswith("https://") for e in row.evidence)
        assert all(e.excerpt for e in row.evidence)
        assert len({e.category for e in row.evidence}) >= 2
        assert set(row.categories) == {h.category for h in hyps[row.entity_id] if h.accepts > 0}
        best = max(hyps[row.entity_id], key=lambda h: h.confidence)
        assert row.best_confidence == best.confidence


def test_shadow_runs_and_runs_that_stay_actionable_change_nothing(fed):
    graph, ops, ids, truth = fed
    from engine.discovery import runs  # lazy: only this test shadows

    runs.run_entities(graph, ops, ids[40:], shadow=True, stage_id="rollout-1-pilot", clock=lambda: T0 + 60)
    production_runs(graph, ops, sorted(truth), at=T0 + DAY)  # visited again, still actionable
    feed = load_feed(graph, ops)
    assert set(feed.entity_ids()) == truth | actionable_now(graph, ids)
    assert {r.became_at for r in feed.rows if r.entity_id in truth} == {T0}  # when it BECAME actionable
    assert feed.departures == ()


def test_a_later_run_that_is_not_actionable_takes_the_entity_out_with_the_reason(fed):
    graph, ops, ids, truth = fed
    gone = sorted(truth)[0]
    strict = ParameterConfig(actionable_min_accepts=10)
    promote(ops, strict, run_id=4, at=T0 + DAY)
    production_runs(graph, ops, [gone], at=T0 + 2 * DAY, source=RejectEverything())
    assert gone not in actionable_now(graph, [gone], strict)

    feed = load_feed(graph, ops)
    assert set(feed.entity_ids()) == truth - {gone}
    (left,) = feed.departures
    assert (left.entity_id, left.cause, left.joined_at, left.left_at) == (gone, LEFT_BY_RUN, T0, T0 + 2 * DAY)
    assert f"config {strict.hash()}" in left.reason and "was not actionable" in left.reason
    assert "the gate needs 10 across 2" in left.reason
    assert " REJECTs since it became actionable" in left.reason and " 0 REJECTs" not in left.reason
    # the window: the departure is in the second day, the arrivals in the first
    assert load_feed(graph, ops, FeedFilter(since=T0 + DAY)).departures == feed.departures
    assert load_feed(graph, ops, FeedFilter(until=T0 + DAY)).departures == ()


def test_an_entity_made_actionable_on_a_promoted_config_says_where_that_config_came_from(fed):
    graph, ops, ids, truth = fed
    lenient = ParameterConfig(actionable_min_accepts=1, actionable_min_categories=1)
    promote(ops, lenient, run_id=5, at=T0 + DAY)
    production_runs(graph, ops, ids[40:], at=T0 + 2 * DAY)
    new = load_feed(graph, ops, FeedFilter(since=T0 + DAY)).rows
    assert new and {r.entity_id for r in new} == actionable_now(graph, ids[40:], lenient)
    assert {(r.config_hash, r.config_origin) for r in new} == {
        (lenient.hash(), "the live config, promoted by rollout run 5 on 2026-12-02 10:00 UTC")
    }
    assert {r.became_at for r in new} == {T0 + 2 * DAY}


def test_an_entity_a_rollout_exposed_shows_its_stage_and_the_handed_over_candidate(fed, tmp_path):
    graph, ops, ids, truth = fed
    candidate = ParameterConfig(actionable_min_accepts=1, actionable_min_categories=1, max_iterations=25)
    alice = person(ops, "alice@example.com", "approver")
    set_candidate(ops, candidate.save(tmp_path / "study-3-best.json"), alice, source="tuning study 3")
    production_runs(graph, ops, ids[40:], at=T0 + DAY, params=candidate, stage_id="rollout-7-pilot")
    exposed = load_feed(graph, ops, FeedFilter(since=T0 + DAY)).rows
    assert exposed and {r.entity_id for r in exposed} == actionable_now(graph, ids[40:], candidate)
    (origin,) = {r.config_origin for r in exposed}
    assert origin.startswith("rollout candidate, handed over by alice@example.com on ") and "tuning study 3" in origin
    assert {(r.stage_id, r.config_hash) for r in exposed} == {("rollout-7-pilot", candidate.hash())}


def test_a_restored_graph_takes_the_entity_out_without_a_run(fed):
    graph, ops, ids, truth = fed
    gone = sorted(truth)[-1]
    before = graph.snapshot([gone])
    graph.restore({**before, "entities": {gone: [{**h, "accepts": 0} for h in before["entities"][gone]]}})
    feed = load_feed(graph, ops)
    assert gone not in feed.entity_ids()
    (left,) = feed.departures
    assert (left.entity_id, left.cause, left.left_at) == (gone, LEFT_BY_STATE, None)
    assert "no longer pass the actionable gate: 0 ACCEPTs across 0 categories now" in left.reason
    # a window that ends before a later live run shows the feed as it stood then: the graph now is not asked
    production_runs(graph, ops, [ids[55]], at=T0 + DAY)
    then = load_feed(graph, ops, FeedFilter(until=T0 + 60))
    assert set(then.entity_ids()) == truth and then.departures == ()
    assert [d.entity_id for d in load_feed(graph, ops).departures] == [gone]


def test_filters_by_template_country_and_category(fed):
    graph, ops, ids, truth = fed
    feed = load_feed(graph, ops)
    entities = graph.get_entities(truth)
    some = feed.rows[0]
    by_template = load_feed(graph, ops, FeedFilter(template=some.template))
    assert set(by_template.entity_ids()) == {e for e in truth if entities[e].template_id == some.template}
    by_country = load_feed(graph, ops, FeedFilter(country=some.country.upper()))
    assert set(by_country.entity_ids()) == {e for e in truth if entities[e].country == some.country}
    category = some.categories[0]
    by_category = load_feed(graph, ops, FeedFilter(category=category))
    assert set(by_category.entity_ids()) == {r.entity_id for r in feed.rows if category in r.categories}
    assert load_feed(graph, ops, FeedFilter(since=T0 + 1)).rows == ()
    choices = feed_choices(graph)
    assert some.template in choices.templates and some.country in choices.countries
    with pytest.raises(FeedError, match="^unknown country 'Atlantis': use one of "):
        load_feed(graph, ops, FeedFilter(country="Atlantis"))


def test_the_feed_reads_the_graph_in_a_fixed_number_of_queries_whatever_its_size(fed, monkeypatch):
    graph, ops, ids, truth = fed
    calls: list[str] = []
    real = GraphStore._rows

    def counted(self, cypher, params=None):
        calls.append(cypher)
        return real(self, cypher, params)

    monkeypatch.setattr(GraphStore, "_rows", counted)
    load_feed(graph, ops)
    small = len(calls)
    monkeypatch.undo()
    production_runs(graph, ops, ids[40:], at=T0 + DAY)  # more entities in the feed
    monkeypatch.setattr(GraphStore, "_rows", counted)
    calls.clear()
    feed = load_feed(graph, ops)
    assert len(feed.rows) > len(truth)
    assert len(calls) == small <= 6, calls
