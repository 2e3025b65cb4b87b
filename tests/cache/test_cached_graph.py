"""CachedGraph: read-through, write-through; never a stale value after a write through it.
Integration tests on the real embedded FalkorDB."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from engine.cache.cached_graph import CachedGraph, hyp_key, hyps_key
from engine.cache.lru import HypothesisCache
from engine.core.model import Decision, Depth, HopRecord, HopType, Hypothesis, Pattern, UnknownEntity, apply_decision
from tests.support.graphs import NOW, PATTERNS, TEMPLATE, seed

A, R = Decision.ACCEPT, Decision.REJECT


@pytest.fixture
def cached(graph):
    return CachedGraph(graph, HypothesisCache(max_bytes=50_000_000, ttl_s=3600))


def test_three_accepts_in_a_row_with_the_cache_on_all_count(graph, cached):
    """The regression: the original read a cached value, updated it, and never wrote the update into
    the cache, so the next update started from the stale value and earlier ACCEPTs were lost."""
    seed(graph, 1)
    start = next(h for h in cached.get_hypotheses("club-000") if h.pattern == "Middling")  # prior 0.5; now cached
    for i in range(3):
        h = next(x for x in cached.get_hypotheses("club-000") if x.id == start.id)  # read through the cache
        cached.apply_run("club-000", f"run-{i}", "new", [apply_decision(h, A, NOW + i)], [])
    after = next(x for x in cached.get_hypotheses("club-000") if x.id == start.id)
    assert after.accepts == 3 and after.confidence == pytest.approx(0.5 + 3 * 0.06)
    assert after == graph.get_hypothesis(start.id)  # cache and graph agree, exactly
    assert cached.get_hypothesis(start.id) == after
    assert cached.cache.stats().hits >= 3  # the reads were really served by the cache


def test_write_through_updates_cached_entries_without_reloading(graph, cached):
    seed(graph, 2)
    hyps = cached.get_hypotheses("club-001")
    single = cached.get_hypothesis(hyps[0].id)
    loads = cached.cache.stats().loads
    changed = [apply_decision(hyps[0], A, NOW + 1), apply_decision(hyps[3], R, NOW + 1)]
    cached.save_hypotheses(changed)
    assert cached.cache.peek(hyp_key(single.id)) == changed[0]
    assert cached.get_hypotheses("club-001") == graph.get_hypotheses("club-001")
    assert cached.cache.stats().loads == loads  # served from the patched entry, no reload


def test_reads_go_to_the_graph_once_then_hit(graph, cached):
    seed(graph, 3)
    assert cached.get_entity("club-002") == graph.get_entity("club-002")
    assert cached.get_entity("club-002") == graph.get_entity("club-002")
    assert cached.get_template(TEMPLATE.id) == graph.get_template(TEMPLATE.id)
    s = cached.cache.stats()
    assert (s.hits, s.loads) == (1, 2)


def test_unknown_entity_raises_and_is_not_cached(graph, cached):
    seed(graph, 1)
    with pytest.raises(UnknownEntity):
        cached.get_hypotheses("no-such-club")
    assert cached.get_hypotheses_many(["no-such-club", "club-000"]) == graph.get_hypotheses_many(
        ["no-such-club", "club-000"]
    )
    assert hyps_key("no-such-club") not in cached.cache  # [] may mean "no entity": never cached
    with pytest.raises(UnknownEntity):
        cached.get_hypotheses("no-such-club")


def test_get_many_mixes_cached_and_loaded_and_keeps_order(graph, cached):
    ents = seed(graph, 5)
    ids = [e.id for e in ents]
    cached.get_hypotheses(ids[1])
    got = cached.get_hypotheses_many(reversed(ids))
    assert list(got) == list(reversed(ids)) and got == graph.get_hypotheses_many(ids)
    assert all(hyps_key(e) in cached.cache for e in ids)
    assert cached.get_entities(ids + ["ghost"]) == graph.get_entities(ids)


def test_upsert_and_restore_invalidate_what_they_touch(graph, cached):
    ents = seed(graph, 3)
    snap = graph.snapshot(["club-000"])
    h = cached.get_hypotheses("club-000")[0]
    cached.get_entity("club-000")
    cached.get_hypotheses("club-001")
    cached.save_hypotheses([apply_decision(h, A, NOW + 5)])
    cached.restore(snap)
    assert cached.get_hypotheses("club-000")[0] == h  # the snapshot's value, not the cached update
    renamed = replace(ents[0], name="Renamed FC")
    cached.upsert_entities([renamed], [Hypothesis.new("club-000", Pattern("Extra", "General", 0.2), NOW)])
    assert cached.get_entity("club-000").name == "Renamed FC"
    assert len(cached.get_hypotheses("club-000")) == len(PATTERNS) + 1
    assert hyps_key("club-001") in cached.cache  # other entities untouched
    t2 = replace(TEMPLATE, name="Renamed template")
    cached.get_template(TEMPLATE.id)
    cached.upsert_templates(iter([t2]))
    assert cached.get_template(TEMPLATE.id).name == "Renamed template"


def test_a_write_of_a_hypothesis_the_cached_list_does_not_know_drops_the_list(graph, cached):
    seed(graph, 1)
    cached.get_hypotheses("club-000")
    extra = Hypothesis.new("club-000", Pattern("Extra", "General", 0.2), NOW)
    graph.upsert_entities([], [extra])  # behind the cache's back (another process)
    cached.save_hypotheses([apply_decision(extra, A, NOW + 1)])
    assert cached.get_hypotheses("club-000") == graph.get_hypotheses("club-000")


def test_evidence_through_the_wrapper_and_pass_through_reads(graph, cached):
    seed(graph, 1)
    h = cached.get_hypotheses("club-000")[0]
    rec = HopRecord(1, h.id, h.pattern, h.category, 0.1, HopType.OFFICIAL_SITE, Depth.SURFACE, A, 0.06, 0.5, 0.01, 0.1)
    cached.add_evidence("club-000", "run-1", "new", [rec], at=NOW)
    assert len(cached.get_evidence("club-000")) == 1 and cached.stats().entities == 1
    with pytest.raises(AttributeError, match="keeps the cache right"):
        cached.some_future_write  # noqa: B018 — unknown methods are refused, not silently uncached


class SlowStore:
    """A GraphStore whose get_hypotheses blocks until released (to race a write against a load)."""

    def __init__(self, store):
        self._store = store
        self.reading = threading.Event()
        self.release = threading.Event()

    def get_hypotheses(self, entity_id):
        value = self._store.get_hypotheses(entity_id)
        self.reading.set()
        assert self.release.wait(10)
        return value

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_load_that_raced_a_write_is_not_cached(graph):
    seed(graph, 1)
    slow = SlowStore(graph)
    cached = CachedGraph(slow, HypothesisCache(max_bytes=50_000_000, ttl_s=3600))
    old = graph.get_hypotheses("club-000")
    got: list = []
    reader = threading.Thread(target=lambda: got.append(cached.get_hypotheses("club-000")))
    reader.start()
    assert slow.reading.wait(10)  # the reader holds the old state
    cached.save_hypotheses([apply_decision(old[0], A, NOW + 1)])
    slow.release.set()
    reader.join(10)
    assert got == [old]  # the reader gets what it read...
    slow.release.set()
    assert cached.get_hypotheses("club-000")[0].accepts == 1  # ...but the cache never held it


def test_concurrent_readers_and_a_writer_end_consistent(graph, cached):
    seed(graph, 4)
    ids = [f"club-{i:03d}" for i in range(4)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader():
        try:
            while not stop.is_set():
                cached.get_hypotheses_many(ids)
                for e in ids:
                    cached.get_hypotheses(e)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for step in range(10):
        for e in ids:
            h = cached.get_hypotheses(e)[step % len(PATTERNS)]
            cached.save_hypotheses([apply_decision(h, A if step % 3 else R, NOW + step)])
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors
    for e in ids:
        assert cached.get_hypotheses(e) == graph.get_hypotheses(e)
    assert sum(h.accepts + h.rejects for e in ids for h in graph.get_hypotheses(e)) == 40
