"""Cache warmer: pure scoring, rounds against the real embedded FalkorDB, background thread,
warm-run history, and the trace replay that measures its impact."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from engine.cache.cached_graph import CachedGraph, entity_key, hyps_key
from engine.cache.lru import HypothesisCache
from engine.cache.warmer import (
    CacheWarmer,
    WarmerConfig,
    entity_of_key,
    list_warm_runs,
    replay_trace,
    score_entities,
    zipf_trace,
)
from engine.core.errors import ConfigError
from engine.core.model import Decision, Depth, HopRecord, HopType
from tests.support.graphs import NOW, seed


@pytest.fixture
def cached(graph):
    return CachedGraph(graph, HypothesisCache(max_bytes=50_000_000, ttl_s=3600))


INDEX = {
    "a1": ("north", "t-club"), "a2": ("north", "t-club"), "a3": ("north", "t-league"),
    "b1": ("south", "t-club"), "b2": ("south", "t-league"), "c1": ("east", "t-agency"),
}  # fmt: skip


def test_recently_and_often_accessed_entities_rank_first():
    plan = score_entities(Counter({"b1": 5, "c1": 1}), ["c1", "b1"], {}, INDEX, WarmerConfig())
    assert plan.entity_ids[:2] == ("b1", "c1")  # frequency beats a slightly more recent single access
    assert plan.signal_counts["recent"] == 2


def test_cluster_hotspots_pull_in_cluster_mates():
    plan = score_entities(Counter(), [], {"a1": 10}, INDEX, WarmerConfig(weight_template=0))
    assert plan.entity_ids[0] == "a1"  # its own activity on top of the cluster's heat
    assert set(plan.entity_ids) == {"a1", "a2", "a3"}  # the whole north cluster, nothing else
    assert plan.signal_counts["hotspot"] == 3


def test_template_popularity_is_a_weaker_signal():
    plan = score_entities(Counter({"b1": 3}), ["b1"], {}, INDEX, WarmerConfig())
    assert plan.entity_ids[0] == "b1"
    # the other entities of b1's template follow; entities of other templates get nothing
    assert set(plan.entity_ids[1:]) == {"a1", "a2"}


def test_plan_is_cut_at_max_entities_and_ignores_unknown_entities():
    plan = score_entities(Counter({"ghost": 9, "a1": 1}), ["ghost", "a1"], {"ghost": 3}, INDEX,
                          WarmerConfig(max_entities=2))  # fmt: skip
    assert len(plan.entity_ids) == 2 and "ghost" not in plan.entity_ids
    assert plan.candidates > 2


@pytest.mark.parametrize("field,value", [("max_entities", 0), ("interval_s", 0), ("weight_recent", -1),
                                         ("recent_limit", 1.5), ("activity_window_s", float("nan"))])  # fmt: skip
def test_bad_config_is_a_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        WarmerConfig(**{field: value})


def test_entity_of_key():
    assert entity_of_key(hyps_key("x")) == "x" and entity_of_key(entity_key("y")) == "y"
    assert entity_of_key(("template", "t")) is None and entity_of_key("junk") is None


def test_zipf_trace_is_deterministic_and_skewed():
    keys = [f"e{i}" for i in range(200)]
    t1 = zipf_trace(keys, 5000, s=1.1, seed=3)
    assert t1 == zipf_trace(keys, 5000, s=1.1, seed=3) and t1 != zipf_trace(keys, 5000, s=1.1, seed=4)
    top = Counter(t1).most_common(10)
    assert sum(n for _, n in top) > 0.35 * len(t1)  # ten of 200 keys take over a third of the accesses
    with pytest.raises(ConfigError):
        zipf_trace([], 10)


# ------------------------------------------------------------------ against the store


def evidence(graph, entity_id, run_id, at):
    h = graph.get_hypotheses(entity_id)[0]
    rec = HopRecord(1, h.id, h.pattern, h.category, 0.1, HopType.OFFICIAL_SITE, Depth.SURFACE, Decision.ACCEPT,
                    0.06, 0.5, 0.01, 0.1)  # fmt: skip
    graph.add_evidence(entity_id, run_id, "new", [rec], at=at)


def test_a_round_warms_recent_accesses_and_hot_clusters(graph, cached, ops):
    seed(graph, 10)  # clusters alternate north/south
    evidence(graph, "club-003", "run-1", NOW)  # south is hot
    evidence(graph, "club-004", "run-old", NOW - 10_000)  # too old to count
    cached.get_hypotheses("club-004")  # recently accessed (north)
    cached.clear()
    warmer = CacheWarmer(cached, ops=ops, clock=lambda: NOW + 10, config=WarmerConfig(weight_template=0))
    report = warmer.warm_once()
    south = {f"club-{i:03d}" for i in range(1, 10, 2)}
    assert report.error is None and report.planned == len(south) + 1
    for eid in south | {"club-004"}:
        assert hyps_key(eid) in cached.cache and entity_key(eid) in cached.cache
    assert hyps_key("club-002") not in cached.cache  # a cold north entity stays cold
    assert cached.cache.peek(hyps_key("club-003")) == tuple(graph.get_hypotheses("club-003"))
    again = warmer.warm_once()
    assert again.loaded == 0 and again.already_cached == again.planned  # nothing to do twice
    st = warmer.stats()
    assert (st.rounds, st.failed_rounds, st.entries_loaded) == (2, 0, report.loaded)
    runs = list_warm_runs(ops)
    assert [r["trigger"] for r in runs] == ["manual", "manual"] and runs[1]["loaded"] == report.loaded


def test_metric_events_count_as_discovery_activity(graph, cached, ops):
    seed(graph, 4)
    with ops.connect() as db:
        db["metric_events"].insert({
            "at": NOW, "run_id": "r", "system": "new", "shadow": 0, "config_hash": "x", "entity_id": "club-001",
            "cost_usd": 0.1, "iterations": 1, "hops": 1, "hypotheses_tested": 1, "promotions": 0, "actionable": 0,
            "engine_latency_ms": 1.0, "evidence_latency_s": 1.0, "error_count": 0,
        })  # fmt: skip
    warmer = CacheWarmer(cached, ops=ops, clock=lambda: NOW + 1)
    assert warmer.recent_activity(NOW - 5) == {"club-001": 1}
    assert "club-001" in warmer.plan().entity_ids


def test_background_thread_warms_at_its_interval_and_stops(graph, cached):
    seed(graph, 2)
    cached.get_hypotheses("club-001")
    cached.clear()
    rounds = threading.Semaphore(0)
    warmer = CacheWarmer(cached, config=WarmerConfig(interval_s=0.1))
    original = warmer._record
    warmer._record = lambda report: (original(report), rounds.release())
    warmer.start()
    try:
        assert rounds.acquire(timeout=10) and rounds.acquire(timeout=10)  # at least two rounds
        assert warmer.running and hyps_key("club-001") in cached.cache
    finally:
        warmer.stop()
    assert not warmer.running and warmer.stats().rounds >= 2
    with pytest.raises(ConfigError):
        warmer.start(interval_s=0)


def test_a_failing_round_is_counted_and_the_thread_carries_on(graph, cached):
    seed(graph, 1)
    warmer = CacheWarmer(cached, config=WarmerConfig(interval_s=0.1))
    calls = Counter()
    real_plan = warmer.plan

    def flaky_plan():
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("store restarting")
        return real_plan()

    warmer.plan = flaky_plan
    done = threading.Event()
    original = warmer._record
    warmer._record = lambda r: (original(r), done.set() if calls["n"] >= 2 else None)
    warmer.start()
    try:
        assert done.wait(10)
    finally:
        warmer.stop()
    st = warmer.stats()
    assert st.failed_rounds == 1 and st.rounds >= 2


def test_replay_shows_warming_raises_the_hit_rate(graph, cached):
    ids = [e.id for e in seed(graph, 60)]
    accesses = zipf_trace(ids, 720, s=1.1, seed=7)  # one popularity ranking for history and trace
    history, trace = accesses[:600], accesses[600:]
    cold = replay_trace(cached, trace, history=history)
    warmer = CacheWarmer(cached, config=WarmerConfig(max_entities=40))
    warm = replay_trace(cached, trace, history=history, warmer=warmer)
    assert cold.accesses == warm.accesses == 120 and warm.warmed_entities == 40
    # cold: only repeats within the trace hit; warmed: so does every first access to a warmed entity
    assert cold.hits == len(trace) - len(set(trace))
    warmed = set(warm.warmed_ids)
    first_hits = sum(1 for e in set(trace) if e in warmed)
    assert warm.hits == cold.hits + first_hits and warm.hit_rate > cold.hit_rate
