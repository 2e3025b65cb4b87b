"""Same answers at any concurrency (issue 13, point 2), and the batch runner's one write per batch.

A run at concurrency 1 and at 64 gives the same per-entity results, the same graph state and the same
metric events, on the simulated world and on a replay file; live, in shadow and in memory.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from engine.catalogue.generator import generate_catalogue, seed_catalogue, templates_for
from engine.catalogue.templates import load_templates
from engine.core.errors import ConfigError, LeaseLost
from engine.core.model import Decision, EvidenceResult, UnknownEntity
from engine.core.params import ParameterConfig
from engine.discovery.evidence import RecordingSource, ReplaySource
from engine.discovery.pool import map_in_flight
from engine.discovery.runs import EvidenceSpec, load_contexts, make_source, run_entities
from engine.discovery.systems import run_batch
from engine.monitoring.events import query_events
from engine.store.graph import Fence, GraphStore, RunWrite

NOW = 1_700_000_000.0
clock = lambda: NOW  # noqa: E731
#: low promotion bars so that promotions (and so cluster confirmations) happen within a run
EAGER = ParameterConfig(promote_confidence=0.5, promote_accepts=1, cluster_min_size=1, novelty_decay=2.0)


def _event_key(e):
    """Everything of a metric event but the wall-clock engine time and the row id."""
    return (
        e.entity_id, e.system, e.shadow, e.config_hash, e.cost_usd, e.iterations, e.hops, e.hypotheses_tested,
        e.promotions, e.actionable, e.correct, e.evidence_latency_s, e.error_count, e.error_types, e.confidences,
        e.stop_reason,
    )  # fmt: skip


def _state(graph, ids):
    """Hypotheses and evidence of the entities (evidence without its run id and the time it was written)."""
    evidence = {
        eid: sorted(
            ({k: v for k, v in ev.items() if k not in ("id", "run_id", "at")} for ev in graph.get_evidence(eid)),
            key=lambda ev: ev["iteration"],
        )
        for eid in ids
    }
    return {eid: graph.get_hypotheses(eid) for eid in ids}, evidence


def test_live_runs_at_concurrency_1_and_64_leave_the_same_graph_results_and_events(graph, settings, ops):
    runs = {}
    for concurrency in (1, 64):
        # one graph per run, seeded alike, on the test's embedded server
        store = GraphStore.open(replace(settings, graph_name=f"{settings.graph_name}-c{concurrency}"))
        try:
            seed_catalogue(store, 120, 11, load_templates(), clock=clock)
            ids = store.list_entity_ids()
            # a world that "sleeps" (0 s): it counts as waiting, so the entities really run in threads
            world = make_source(
                EvidenceSpec(sleep=True, time_scale=0.0), templates={t.id: t for t in store.list_templates()}
            )
            assert world.waits
            results = run_entities(
                store,
                ops,
                ids,
                params=EAGER,
                clock=clock,
                run_id=f"c{concurrency}",
                concurrency=concurrency,
                source=world,
            )
            events = query_events(ops, run_id=f"c{concurrency}", limit=10_000)
            runs[concurrency] = (results, sorted(map(_event_key, events)), _state(store, ids))
        finally:
            store.close()
    (r1, e1, s1), (r64, e64, s64) = runs[1], runs[64]
    assert [r.entity_id for r in r1] == [r.entity_id for r in r64]
    assert [(r.hops, r.outcomes, r.cost_usd, r.stop_reason) for r in r1] == [
        (r.hops, r.outcomes, r.cost_usd, r.stop_reason) for r in r64
    ]
    assert any(o.status.value == "PROMOTED" for r in r1 for o in r.outcomes)  # confirmations were at stake
    assert e1 == e64 and len(e1) == len(r1)
    assert s1 == s64


def test_shadow_runs_on_a_replay_file_are_the_same_at_any_concurrency(seed_graph, ops, tmp_path):
    graph = seed_graph(80, 7, clock=clock)
    ids = graph.list_entity_ids()[:60]
    templates = {t.id: t for t in graph.list_templates()}
    recorder = RecordingSource(make_source(EvidenceSpec(world_seed=5), templates=templates))
    reference = run_entities(graph, ops, ids, params=EAGER, shadow=True, clock=clock, source=recorder)
    path = tmp_path / "replay.jsonl"
    recorder.save(path)
    answers = []
    for concurrency in (1, 8, 64):
        replay = ReplaySource.load(path, strict=True)
        answers.append(
            run_entities(
                graph, ops, ids, params=EAGER, shadow=True, clock=clock, source=replay, concurrency=concurrency
            )
        )
    for got in answers:
        assert [(r.entity_id, r.hops, r.outcomes) for r in got] == [
            (r.entity_id, r.hops, r.outcomes) for r in reference
        ]


def test_in_memory_batches_are_the_same_at_any_concurrency():
    entities = generate_catalogue(150, 4)
    templates = templates_for(entities, load_templates())
    world = make_source(EvidenceSpec(world_seed=2, sleep=True, time_scale=0.0), templates=templates, entities=entities)
    one = run_batch(entities, templates, world, EAGER, concurrency=1)
    many = run_batch(entities, templates, world, EAGER, concurrency=32)
    assert [(r.entity_id, r.hops, r.outcomes) for r in one] == [(r.entity_id, r.hops, r.outcomes) for r in many]


class SlowAccept:
    """Every hop accepts after ``delay_s``; counts how many hops are in flight at once."""

    def __init__(self, delay_s: float = 0.01):
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0

    def max_cost(self, hop_type, depth):
        return 0.01

    def evaluate(self, entity, hypothesis, hop_type, depth, attempt):
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        time.sleep(self.delay_s)
        with self.lock:
            self.in_flight -= 1
        return EvidenceResult(decision=Decision.ACCEPT, cost_usd=0.01, latency_s=self.delay_s)


def test_many_entities_are_in_flight_at_once_and_one_entitys_hops_stay_in_order(seed_graph, ops):
    graph = seed_graph(80, 7, clock=clock)
    ids = graph.list_entity_ids()[:40]
    source = SlowAccept()
    results = run_entities(graph, ops, ids, shadow=True, clock=clock, source=source, concurrency=16)
    assert 8 <= source.peak <= 16
    for r in results:
        assert [h.iteration for h in r.hops] == list(range(1, len(r.hops) + 1))


def test_a_batch_is_one_write_and_a_lost_fence_refuses_it_whole(seed_graph, ops):
    graph = seed_graph(80, 7, clock=clock)
    ids = graph.list_entity_ids()[:6]
    before = graph.write_position().seq
    run_entities(graph, ops, ids, clock=clock, run_id="one-write", batch_size=50)
    assert graph.write_position().seq == before + 1  # six entities, one write-sequence bump
    assert all(graph.get_evidence(eid) for eid in ids)

    others = graph.list_entity_ids()[6:12]
    graph.take_fence("rollout:test", "mine")
    fenced = graph.fenced(Fence("rollout:test", "mine"))
    graph.take_fence("rollout:test", "theirs")  # a rollback took the scope over
    untouched = _state(graph, others)
    with pytest.raises(LeaseLost):
        run_entities(fenced, ops, others, clock=clock, run_id="fenced")
    assert _state(graph, others) == untouched
    assert query_events(ops, run_id="fenced") == []


def test_apply_runs_refuses_a_hypothesis_of_another_entity_and_writes_nothing(seed_graph):
    graph = seed_graph(80, 7, clock=clock)
    a, b = graph.list_entity_ids()[:2]
    ha, hb = graph.get_hypotheses(a), graph.get_hypotheses(b)
    with pytest.raises(Exception, match="belongs to"):
        graph.apply_runs([RunWrite(a, "r", "new", [hb[0]], ()), RunWrite(b, "r", "new", [hb[0]], ())])
    assert graph.get_hypotheses(a) == ha
    with pytest.raises(UnknownEntity):
        graph.apply_runs([RunWrite("no-such-entity", "r", "new", (), ())])


def test_errors_collects_one_entitys_failure_and_the_others_go_on(seed_graph, ops):
    graph = seed_graph(80, 7, clock=clock)
    ids = graph.list_entity_ids()[:5]
    errors: dict = {}
    results = run_entities(graph, ops, [*ids[:2], "ghost", *ids[2:]], shadow=True, clock=clock, errors=errors)
    assert [r.entity_id for r in results] == ids
    assert list(errors) == ["ghost"] and isinstance(errors["ghost"], UnknownEntity)
    with pytest.raises(UnknownEntity):
        load_contexts(graph, ["ghost"])


def test_concurrency_out_of_range_is_one_line(seed_graph, ops):
    graph = seed_graph(80, 7, clock=clock)
    for bad in (0, 257, 2.5, True):
        with pytest.raises(ConfigError, match="--concurrency must be a whole number from 1 to 256"):
            run_entities(graph, ops, graph.list_entity_ids()[:1], concurrency=bad)


def test_map_in_flight_stops_on_a_fault_keeps_order_and_finishes_what_is_in_flight():
    started = []

    def work(i):
        started.append(i)
        time.sleep(0.02)
        if i == 3:
            raise ConfigError("machinery")
        return i * 10

    done = map_in_flight(work, list(range(40)), 4, stop_on=(ConfigError,))
    assert [d.value for d in done[:3]] == [0, 10, 20]
    assert isinstance(done[3].error, ConfigError)
    assert any(not d.started for d in done)  # nothing more started after the fault
    assert all(d.started == (i in started) for i, d in enumerate(done))
    ticks = []
    map_in_flight(lambda i: time.sleep(0.05), list(range(8)), 2, tick=ticks.append, tick_s=0.01)
    assert ticks and ticks == sorted(ticks)
