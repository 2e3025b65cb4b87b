"""The cross-process change feed: the console's cache never serves what another writer changed.

Another process is simulated by a second GraphStore (its own client) on the same embedded
FalkorDB, and once by a real subprocess; every write path that changes hypotheses (apply_run,
save_hypotheses, restore, upsert of entities/hypotheses/templates, engine/store/batch.py's batch
update and create) must be seen by ``CachedGraph.sync()``. Each test first shows that without
the sync the cache WOULD serve the stale value, so the test can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from engine.bench.cache_sync import bench_sync
from engine.cache.cached_graph import CachedGraph, entity_key, hyp_key, hyps_key, template_key
from engine.cache.lru import HypothesisCache
from engine.cache.service import CacheService
from engine.core.model import Decision, Depth, HopRecord, HopType, apply_decision
from engine.store.batch import run_batch
from engine.store.graph import GraphStore, UnknownHypothesis, WritePosition
from tests.support.graphs import NOW, TEMPLATE, seed

A, R = Decision.ACCEPT, Decision.REJECT
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def other(settings, graph):
    """A second GraphStore on the same store: writes the console's cache does not see."""
    store = GraphStore.open(settings)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def cached(graph):
    return CachedGraph(graph, HypothesisCache(max_bytes=50_000_000, ttl_s=3600))


def count_queries(store: GraphStore) -> list[str]:
    """Record every query text ``store`` sends from now on (reads and writes)."""
    sent: list[str] = []
    real_query, real_ro = store.graph.query, store.graph.ro_query

    def query(q, *a, **kw):
        sent.append(q)
        return real_query(q, *a, **kw)

    def ro_query(q, *a, **kw):
        sent.append(q)
        return real_ro(q, *a, **kw)

    store.graph.query, store.graph.ro_query = query, ro_query
    return sent


def hop(h, i=1):
    return HopRecord(iteration=i, hypothesis_id=h.id, pattern=h.pattern, category=h.category, eig=0.5,
                     hop_type=HopType.OFFICIAL_SITE, depth=Depth.SURFACE, decision=A, delta=0.06,
                     confidence_after=h.confidence + 0.06, cost_usd=0.01, latency_s=1.0)  # fmt: skip


def test_apply_run_by_another_store_is_not_served_after_sync(graph, other, cached):
    seed(graph, 3)
    cached.sync()  # the console's cache starts on a seeded graph
    before = cached.get_hypotheses("club-001")
    untouched = cached.get_hypotheses("club-002")
    single = cached.get_hypothesis(before[2].id)
    changed = apply_decision(before[2], A, NOW + 5)
    other.apply_run("club-001", "run-x", "new", [changed], [hop(before[2])])
    assert cached.get_hypotheses("club-001") == before != graph.get_hypotheses("club-001")  # stale without sync
    assert cached.sync() >= 2
    assert cached.get_hypotheses("club-001") == graph.get_hypotheses("club-001")
    assert cached.get_hypothesis(single.id) == changed
    assert hyps_key("club-002") in cached.cache and cached.get_hypotheses("club-002") == untouched  # only what changed
    s = cached.sync_stats
    assert (s.moved, s.entities_invalidated, s.full_clears) == (2, 3 + 1, 0)  # the seed's 3, then club-001


def test_save_hypotheses_and_restore_by_another_store(graph, other, cached):
    seed(graph, 2)
    cached.sync()  # the console's cache starts on a seeded graph
    snap = graph.snapshot(["club-000"])
    hyps = graph.get_hypotheses("club-000")
    other.save_hypotheses([apply_decision(h, R, NOW + 1) for h in hyps])
    cached.get_hypotheses("club-000")
    cached.sync()
    assert cached.get_hypotheses("club-000") == graph.get_hypotheses("club-000")
    assert all(h.rejects == 1 for h in cached.get_hypotheses("club-000"))
    # restore by the other store (what a rollout rollback does in the worker), removing one hypothesis
    gone = hyps[-1].id
    cached.get_hypothesis(gone)  # a hypothesis the restore deletes, cached on its own
    cut = dict(snap, entities={"club-000": snap["entities"]["club-000"][:-1]})
    other.restore(cut)
    assert all(h.rejects == 1 for h in cached.get_hypotheses("club-000"))  # stale without sync
    cached.sync()
    assert cached.get_hypotheses("club-000") == graph.get_hypotheses("club-000") == [h for h in hyps if h.id != gone]
    assert hyp_key(gone) not in cached.cache


def test_batch_update_and_create_are_seen(graph, settings, cached):
    seed(graph, 4)
    cached.sync()  # the console's cache starts on a seeded graph
    hyps = cached.get_hypotheses_many(["club-000", "club-003"])
    ups = [(h.id, A) for h in hyps["club-003"]]
    res = run_batch(settings, lambda b: b.apply_decisions(ups, now=NOW + 60))
    assert res.ok
    assert cached.get_hypotheses("club-003") == hyps["club-003"]  # stale without sync
    cached.sync()
    assert cached.get_hypotheses("club-003") == graph.get_hypotheses("club-003")
    assert all(h.accepts == 1 for h in cached.get_hypotheses("club-003"))
    assert hyps_key("club-000") in cached.cache  # not touched by the batch
    # batch create of a new hypothesis pattern under club-000
    new = replace(hyps["club-000"][0], id="club-000-extra", pattern="Extra")
    assert run_batch(settings, lambda b: b.create_hypotheses([new])).ok
    assert len(cached.get_hypotheses("club-000")) == len(hyps["club-000"])
    cached.sync()
    assert len(cached.get_hypotheses("club-000")) == len(hyps["club-000"]) + 1


def test_entity_and_template_upserts_by_another_store(graph, other, cached):
    seed(graph, 2)
    cached.sync()  # the console's cache starts on a seeded graph
    ent = cached.get_entity("club-000")
    cached.get_template(TEMPLATE.id)
    other.upsert_entities([replace(ent, name="Renamed FC")])
    other.upsert_templates([replace(TEMPLATE, name="Renamed template")])
    assert cached.get_entity("club-000").name == ent.name  # stale without sync
    cached.sync()
    assert cached.get_entity("club-000").name == "Renamed FC"
    assert cached.get_template(TEMPLATE.id).name == "Renamed template"
    assert entity_key("club-001") not in cached.cache or cached.get_entity("club-001") == graph.get_entity("club-001")
    assert cached.sync_stats.templates_invalidated == 1 + 1  # the seed's, then the rename


def test_nothing_changed_costs_one_point_read(graph, cached):
    seed(graph, 3)
    cached.sync()  # the console's cache starts on a seeded graph
    cached.sync()
    cached.get_hypotheses("club-000")
    sent = count_queries(graph)
    for _ in range(5):
        assert cached.sync() == 0
    assert len(sent) == 5 and all("Meta" in q and "Entity" not in q for q in sent)
    assert hyps_key("club-000") in cached.cache
    # a write moves it: the point read, then one read of the changed ids
    graph.save_hypotheses([apply_decision(graph.get_hypotheses("club-002")[0], A, NOW)])
    sent.clear()
    cached.sync()
    assert len(sent) == 2 and "changed_seq" in sent[1]
    assert hyps_key("club-000") in cached.cache


def test_every_write_bumps_the_sequence_once_and_a_failed_write_not_at_all(graph):
    seed(graph, 2)
    start = graph.write_position()
    assert start.epoch and start.seq >= 3  # templates, entities, hypotheses
    h = graph.get_hypotheses("club-000")[0]
    graph.save_hypotheses([apply_decision(h, A, NOW)])
    assert graph.write_position() == WritePosition(start.epoch, start.seq + 1)
    assert graph.changed_since(start.seq) == (["club-000"], [])
    with pytest.raises(UnknownHypothesis):
        graph.save_hypotheses([replace(h, id="no-such-hypothesis")])  # guard fails: whole query undone
    assert graph.write_position().seq == start.seq + 1


def test_rebuilt_graph_clears_the_cache(graph, cached):
    seed(graph, 2)
    cached.sync()  # the console's cache starts on a seeded graph
    cached.get_hypotheses("club-000")
    graph.graph.query("MATCH (m:Meta {id: 'writes'}) DELETE m")  # as if the graph were rebuilt ...
    graph.save_hypotheses([apply_decision(graph.get_hypotheses("club-001")[0], A, NOW)])  # ... new epoch, seq 1
    cached.sync()
    assert hyps_key("club-000") not in cached.cache and cached.sync_stats.full_clears == 1


def test_a_load_racing_another_writer_is_not_kept(graph, other, cached):
    """A load that read the old value before another process's write, and finishes after the sync
    that saw the write, must not be cached (the sync's invalidation marks the load as stale)."""
    seed(graph, 1)
    cached.sync()  # the console's cache starts on a seeded graph
    h = graph.get_hypotheses("club-000")[0]
    read_done, go_on = threading.Event(), threading.Event()
    real = graph.get_hypotheses

    def slow(entity_id):
        value = real(entity_id)
        read_done.set()
        go_on.wait(10)
        return value

    graph.get_hypotheses = slow
    t = threading.Thread(target=cached.get_hypotheses, args=("club-000",))
    t.start()
    assert read_done.wait(10)
    other.save_hypotheses([apply_decision(h, A, NOW)])
    cached.sync()
    go_on.set()
    t.join(10)
    graph.get_hypotheses = real
    assert hyps_key("club-000") not in cached.cache
    assert cached.get_hypotheses("club-000") == graph.get_hypotheses("club-000")


@pytest.mark.slow  # starts or kills real processes
def test_a_write_from_another_process_and_the_service(graph, ops, settings):
    """A real second process writes (apply_run); the console service's reader() syncs before reads."""
    seed(graph, 2)
    svc = CacheService(graph, ops)
    before = svc.reader().get_hypotheses("club-001")
    code = (
        "import sys, json\n"
        "from engine.core.settings import Settings\n"
        "from engine.store.graph import GraphStore\n"
        "from engine.core.model import Decision, apply_decision\n"
        "s = Settings(data_dir=__import__('pathlib').Path(sys.argv[1]), falkordb_url=None, graph_name=sys.argv[2])\n"
        "g = GraphStore.open(s)\n"
        "h = g.get_hypotheses('club-001')[1]\n"
        "g.apply_run('club-001', 'proc-run', 'old', [apply_decision(h, Decision.ACCEPT, 1.7e9)], [])\n"
        "print(json.dumps(h.id)); g.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(settings.data_dir), settings.graph_name], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    hid = json.loads(out.stdout)
    assert svc.cached.get_hypotheses("club-001") == before  # stale without sync
    after = svc.reader().get_hypotheses("club-001")
    assert after == graph.get_hypotheses("club-001") != before
    assert next(h for h in after if h.id == hid).accepts == 1
    svc.tick()  # the service loop syncs too, and publishes what it did
    from engine.cache.service import published_stats

    sync = published_stats(ops)["sync"]
    assert sync["moved"] == 1 and sync["seq"] == graph.write_position().seq


def test_template_key_dropped_by_sync_only_when_changed(graph, other, cached):
    seed(graph, 1)
    cached.sync()  # the console's cache starts on a seeded graph
    cached.get_template(TEMPLATE.id)
    other.save_hypotheses([apply_decision(graph.get_hypotheses("club-000")[0], A, NOW)])
    cached.sync()
    assert template_key(TEMPLATE.id) in cached.cache


def test_bench_sync_measures_every_figure():
    lines: list[str] = []
    figures = bench_sync(entities=30, rounds=40, print_fn=lines.append)
    assert figures["entities"] == 30 and len(lines) == 5
    assert all(figures[k] > 0 for k in ("idle_us_p50", "moved_us_p50", "bump_us_p50", "hit_us_p50"))
    assert figures["idle_us_p50"] <= figures["idle_us_p99"]
