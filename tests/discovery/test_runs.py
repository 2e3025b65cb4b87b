"""engine.discovery.runs against the real stores: live writes, shadow writes nothing, metrics, unknown ids."""

from __future__ import annotations

import pytest

from engine.core.errors import ConfigError
from engine.core.model import Decision, EvidenceResult, RunResult, UnknownEntity
from engine.core.params import ParameterConfig
from engine.discovery.evidence import HTTPEvidenceSource, ReplaySource
from engine.discovery.runs import (
    EvidenceSpec,
    compare_entities,
    load_context,
    make_source,
    run_entities,
    truth_of,
)
from engine.discovery.world import SimulatedWorld
from engine.monitoring.events import query_events
from engine.monitoring.jsonlog import JsonlLog

NOW = 1_700_000_000.0
clock = lambda: NOW  # noqa: E731


@pytest.fixture
def seeded(seed_graph):
    return seed_graph(150, 7, clock=clock)


def _snapshot(graph, ids):
    return {eid: graph.get_hypotheses(eid) for eid in ids}, {eid: graph.get_evidence(eid) for eid in ids}


def test_live_run_writes_hypotheses_evidence_and_metrics(seeded, ops, settings):
    ids = seeded.list_entity_ids()[:5]
    results = run_entities(seeded, ops, ids, system="new", run_id="r1", stage_id="pilot", clock=clock)
    assert [r.entity_id for r in results] == ids
    assert all(isinstance(r, RunResult) and not r.shadow for r in results)
    for r in results:
        evidence = seeded.get_evidence(r.entity_id)
        assert len(evidence) == r.iterations > 0
        assert {e["run_id"] for e in evidence} == {"r1"}
        stored = {h.id: h for h in seeded.get_hypotheses(r.entity_id)}
        for o in r.outcomes:
            assert stored[o.id].confidence == pytest.approx(o.confidence)
            assert stored[o.id].status == o.status
    events = query_events(ops, run_id="r1")
    assert sorted(e.entity_id for e in events) == sorted(ids)
    assert {e.stage_id for e in events} == {"pilot"}
    assert {e.config_hash for e in events} == {ParameterConfig().hash()}
    # the default source is the simulated world: truth is known, so 'correct' is filled in
    assert all(e.correct is not None for e in events)
    assert all(e.entity_name for e in events)
    log = JsonlLog.for_settings(settings, "metrics.jsonl")
    assert len(log.path.read_text().splitlines()) == len(ids)


def test_shadow_run_writes_nothing_to_the_graph_but_records_metrics(seeded, ops):
    ids = seeded.list_entity_ids()[:4]
    before = _snapshot(seeded, ids)
    results = run_entities(seeded, ops, ids, system="old", shadow=True, run_id="s1", clock=clock)
    assert all(r.shadow for r in results)
    assert sum(r.iterations for r in results) > 0
    assert _snapshot(seeded, ids) == before
    events = query_events(ops, run_id="s1")
    assert len(events) == 4 and all(e.shadow and e.system == "old" for e in events)


def test_unknown_entity_is_one_line_error_and_nothing_is_written(seeded, ops):
    ids = seeded.list_entity_ids()[:3]
    before = _snapshot(seeded, ids)
    with pytest.raises(UnknownEntity) as exc:
        run_entities(seeded, ops, [ids[0], "no-such-club", ids[1]], run_id="bad", clock=clock)
    assert "no-such-club" in str(exc.value) and "\n" not in str(exc.value)
    assert _snapshot(seeded, ids) == before
    assert query_events(ops, run_id="bad") == []


def test_same_world_seed_same_results_and_the_seed_matters(seeded, ops):
    ids = seeded.list_entity_ids()[:10]
    templates = {t.id: t for t in seeded.list_templates()}
    a = run_entities(
        seeded, ops, ids, shadow=True, clock=clock, source=make_source(EvidenceSpec(world_seed=5), templates=templates)
    )
    b = run_entities(
        seeded, ops, ids, shadow=True, clock=clock, source=make_source(EvidenceSpec(world_seed=5), templates=templates)
    )
    c = run_entities(
        seeded, ops, ids, shadow=True, clock=clock, source=make_source(EvidenceSpec(world_seed=6), templates=templates)
    )
    trail = lambda rs: [(h.hypothesis_id, h.hop_type, h.decision) for r in rs for h in r.hops]  # noqa: E731
    assert trail(a) == trail(b)
    assert trail(a) != trail(c)


def test_second_live_run_starts_from_the_stored_state(seeded, ops):
    eid = seeded.list_entity_ids()[0]
    first = run_entities(seeded, ops, [eid], run_id="a", clock=clock)[0]
    ctx = load_context(seeded, eid)
    assert sum(h.attempts for h in ctx.hypotheses) == first.iterations
    run_entities(seeded, ops, [eid], run_id="b", clock=clock)
    assert sum(h.attempts for h in load_context(seeded, eid).hypotheses) >= first.iterations
    assert {e["run_id"] for e in seeded.get_evidence(eid)} <= {"a", "b"}


def _biggest_cluster(graph):
    """Ids of the largest group of entities sharing a cluster and a template."""
    groups = {}
    for e in graph.list_entities():
        groups.setdefault((e.cluster, e.template_id), []).append(e.id)
    ids = max(groups.values(), key=len)
    assert len(ids) >= 3
    return ids


class AlwaysAccept:
    """A source whose every hop is an ACCEPT costing one cent."""

    def max_cost(self, hop_type, depth):
        return 0.01

    def evaluate(self, entity, hypothesis, hop_type, depth, attempt):
        return EvidenceResult(decision=Decision.ACCEPT, cost_usd=0.01, latency_s=1.0)


def test_cluster_confirmations_of_earlier_entities_dampen_later_ones(seeded, ops):
    # every hop accepts and one accept promotes, so the first entity confirms patterns; a huge
    # novelty decay then lowers the EIG of those patterns for the next entities of the cluster
    ids = _biggest_cluster(seeded)
    easy = dict(promote_confidence=0.40, promote_accepts=1, delta_accept=0.20, cluster_min_size=1)
    strong = ParameterConfig(novelty_decay=5.0, **easy)
    none = ParameterConfig(novelty_decay=0.0, **easy)
    # batches of one entity: each later entity sees what the earlier ones confirmed
    a = run_entities(seeded, ops, ids, params=strong, shadow=True, clock=clock, source=AlwaysAccept(), batch_size=1)
    b = run_entities(seeded, ops, ids, params=none, shadow=True, clock=clock, source=AlwaysAccept(), batch_size=1)
    assert any(o.status.value == "PROMOTED" for o in a[0].outcomes)
    assert a[0].hops == b[0].hops  # the first entity sees no confirmation either way
    assert [h.eig for h in a[1].hops] != [h.eig for h in b[1].hops]
    assert min(h.eig for h in a[1].hops) < min(h.eig for h in b[1].hops)
    # one batch: every entity sees the confirmations as they stood when the batch began (none here)
    c = run_entities(seeded, ops, ids, params=strong, shadow=True, clock=clock, source=AlwaysAccept(), batch_size=50)
    d = run_entities(seeded, ops, ids, params=none, shadow=True, clock=clock, source=AlwaysAccept(), batch_size=50)
    assert [r.hops for r in c] == [r.hops for r in d]


def test_promotions_stored_in_the_graph_dampen_novelty(seeded, ops):
    from dataclasses import replace

    from engine.core.model import Status

    ids = _biggest_cluster(seeded)
    first, other = ids[0], ids[1]
    h = seeded.get_hypotheses(first)[0]
    seeded.save_hypotheses([replace(h, status=Status.PROMOTED, confidence=0.9, accepts=3)])
    ctx = load_context(seeded, other)
    assert ctx.confirmations.get(h.pattern) == 1
    p = ParameterConfig(novelty_decay=1.0, cluster_min_size=1)
    ranked = {r.pattern: r for r in ctx.ranked(p, now=NOW)}
    assert ranked[h.pattern].novelty == pytest.approx(0.5)
    assert load_context(seeded, other).ranked(ParameterConfig(novelty_decay=0.0), now=NOW)[0].novelty == 1.0


def test_compare_is_paired_and_shadow(seeded, ops):
    ids = seeded.list_entity_ids()[:6]
    before = _snapshot(seeded, ids)
    cmp = compare_entities(seeded, ops, ids, clock=clock, run_id="cmp")
    assert [r.entity_id for r in cmp.new] == [r.entity_id for r in cmp.old] == ids
    assert {r.system for r in cmp.new} == {"new"} and {r.system for r in cmp.old} == {"old"}
    assert _snapshot(seeded, ids) == before
    assert len(query_events(ops, run_id="cmp-new")) == 6 and len(query_events(ops, run_id="cmp-old")) == 6


def test_on_result_failure_keeps_and_records_what_was_done(seeded, ops):
    ids = seeded.list_entity_ids()[:4]
    seen = []

    def stop_after_two(result):
        seen.append(result.entity_id)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_entities(seeded, ops, ids, run_id="cut", clock=clock, on_result=stop_after_two, batch_size=2)
    # on_result runs after its batch was written and recorded: the first batch is kept whole, nothing after it
    events = query_events(ops, run_id="cut")
    assert [e.entity_id for e in events] == ids[:2]
    assert seeded.get_evidence(ids[2]) == []
    assert len(seeded.get_evidence(ids[0])) > 0


def test_make_source_kinds_and_bad_specs(tmp_path):
    assert isinstance(make_source(None), SimulatedWorld)
    assert isinstance(make_source(EvidenceSpec(kind="http", url="http://127.0.0.1:9/x")), HTTPEvidenceSource)
    path = tmp_path / "r.jsonl"
    path.write_text("")
    assert isinstance(make_source(EvidenceSpec(kind="replay", replay_path=path)), ReplaySource)
    with pytest.raises(ConfigError, match="unknown evidence source"):
        EvidenceSpec(kind="oracle")
    with pytest.raises(ConfigError, match="needs a URL"):
        EvidenceSpec(kind="http")
    with pytest.raises(ConfigError, match="does not exist"):
        make_source(EvidenceSpec(kind="replay", replay_path=tmp_path / "missing.jsonl"))
    assert truth_of(make_source(None)) is not None
    assert truth_of(make_source(EvidenceSpec(kind="replay", replay_path=path))) is None


def test_context_ranks_hypotheses_by_eig(seeded):
    eid = seeded.list_entity_ids()[0]
    ctx = load_context(seeded, eid)
    ranked = ctx.ranked(now=NOW)
    assert len(ranked) == len(ctx.hypotheses) > 0
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)
    assert ctx.cluster_size and ctx.cluster_size >= 1


def test_evaluator_lost_mid_batch_keeps_earlier_entities_and_their_metrics(seeded, ops):
    from engine.discovery.evidence import EvidenceUnavailable

    ids = seeded.list_entity_ids()[:3]

    class DiesOnThird(AlwaysAccept):
        def evaluate(self, entity, hypothesis, hop_type, depth, attempt):
            if entity.id == ids[2]:
                raise EvidenceUnavailable("evidence evaluator at http://x is unreachable: start it")
            return super().evaluate(entity, hypothesis, hop_type, depth, attempt)

    before = _snapshot(seeded, [ids[2]])
    with pytest.raises(EvidenceUnavailable):
        run_entities(seeded, ops, ids, run_id="lost", clock=clock, source=DiesOnThird())
    assert [e.entity_id for e in query_events(ops, run_id="lost")] == ids[:2]
    assert all(seeded.get_evidence(eid) for eid in ids[:2])
    assert _snapshot(seeded, [ids[2]]) == before
