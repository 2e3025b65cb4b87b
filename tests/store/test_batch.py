"""Batched graph queries: chunked reads, UNWIND updates equal to single updates, creates,
streamed assessments, timeouts that cancel cleanly. Integration tests on the real embedded FalkorDB."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from engine.core.model import (
    Decision,
    Depth,
    DomainError,
    HopRecord,
    HopType,
    Hypothesis,
    Pattern,
    Status,
    apply_decision,
    kill,
)
from engine.core.params import ParameterConfig
from engine.store.batch import (
    AsyncBatchGraph,
    BatchFailed,
    BatchFailure,
    BatchResult,
    DecisionUpdate,
    assess_entity,
    run_batch,
)
from tests.support.graphs import NOW, PATTERNS, TEMPLATE, A, N, R, W, entity, seed


def batch_run(settings, work, **kw):
    return run_batch(settings, work, **kw)


class HangingGraph:
    """A real async graph, except that reads carrying a poisoned id never answer (until cancelled)."""

    def __init__(self, graph, poison: str):
        self._graph = graph
        self._poison = poison
        self.name = graph.name
        self.cancelled = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def _build_params_header(self, params):
        return self._graph._build_params_header(params)

    async def execute_command(self, *args):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._poison in args[2]:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    self.cancelled += 1
                    raise
            await asyncio.sleep(0)  # let the other chunks start, so concurrency is observable
            return await self._graph.execute_command(*args)
        finally:
            self.in_flight -= 1

    async def query(self, *args, **kwargs):
        return await self._graph.query(*args, **kwargs)


async def with_graph(settings, fn, **kw):
    async with AsyncBatchGraph.open(settings, **kw) as batch:
        return await fn(batch)


# ------------------------------------------------------------------ results (pure)


def test_batch_result_counts_and_success_rate():
    r = BatchResult("op", 10, {}, (BatchFailure(1, ("a", "b"), "boom"),), chunks=4)
    assert (r.failed, r.succeeded, r.ok) == (2, 8, False)
    assert r.success_rate == pytest.approx(0.8)
    assert r.failed_keys() == ("a", "b")
    with pytest.raises(BatchFailed, match="2 of 10 keys failed.*chunk 1 \\(boom\\)"):
        r.raise_on_failure()
    empty = BatchResult("op", 0, {})
    assert empty.success_rate == 1.0 and empty.raise_on_failure() is empty


def test_assess_entity_summarises_hypotheses():
    hyps = [
        replace(Hypothesis.new("e", PATTERNS[0], NOW), confidence=0.9, accepts=1, status=Status.PROMOTED),
        replace(Hypothesis.new("e", PATTERNS[1], NOW), confidence=0.7, accepts=1),
        replace(Hypothesis.new("e", PATTERNS[2], NOW), confidence=0.2, status=Status.DEGRADED),
    ]
    a = assess_entity("e", hyps)
    assert a.hypotheses == 3 and a.accepts == 2 and a.actionable  # 2 accepts in 2 categories
    assert a.top_pattern == "Near certain" and a.max_confidence == 0.9
    assert a.mean_confidence == pytest.approx(0.6)
    assert a.by_status["PROMOTED"] == 1 and a.by_status["DEGRADED"] == 1 and a.by_status["ACTIVE"] == 1
    assert not assess_entity("e", hyps, min_categories=3).actionable
    none = assess_entity("x", [])
    assert (none.hypotheses, none.max_confidence, none.top_pattern, none.actionable) == (0, 0.0, "", False)


def test_bad_batch_settings_are_domain_errors():
    with pytest.raises(DomainError, match="chunk_size"):
        AsyncBatchGraph(object(), chunk_size=0)
    with pytest.raises(DomainError, match="concurrency"):
        AsyncBatchGraph(object(), concurrency=0)
    with pytest.raises(DomainError, match="timeout"):
        AsyncBatchGraph(object(), timeout_s=0)


# ------------------------------------------------------------------ reads


def test_chunked_read_equals_graphstore_read(graph, settings):
    ents = seed(graph, 23)
    graph.upsert_entities([replace(entity(99), id="club-empty")], [])  # an entity without hypotheses
    ids = [e.id for e in ents] + ["club-empty", "no-such-club"]
    res = batch_run(settings, lambda b: b.read_hypotheses(ids, chunk_size=4, concurrency=3))
    assert res.ok and res.chunks == 7 and res.success_rate == 1.0
    assert res.values == graph.get_hypotheses_many(ids)
    assert res.values["club-empty"] == [] and res.values["no-such-club"] == []
    assert len(res.values["club-000"]) == len(PATTERNS)


def test_read_reflects_every_stored_field(graph, settings):
    seed(graph, 1)
    h = graph.get_hypotheses("club-000")[0]
    changed = replace(
        h, confidence=0.123456789, accepts=3, weak_accepts=2, rejects=1, no_progress=4, last_delta=-0.02,
        recent=(A, N, R), updated_at=NOW + 5.5, status=Status.KILLED, killed_reason='said "stop", then left',
    )  # fmt: skip
    graph.save_hypotheses([changed])
    got = batch_run(settings, lambda b: b.read_hypotheses(["club-000"])).values["club-000"]
    assert got == graph.get_hypotheses("club-000")
    assert got[0] == changed


def test_concurrency_limit_is_respected(graph, settings):
    ids = [e.id for e in seed(graph, 30)]

    async def work(batch):
        batch.graph = spy = HangingGraph(batch.graph, poison="\x00never")
        res = await batch.read_hypotheses(ids, chunk_size=2, concurrency=3)
        return res, spy

    res, spy = batch_run(settings, work)
    assert res.ok and res.chunks == 15
    assert 1 < spy.max_in_flight <= 3


def test_timed_out_chunk_is_cancelled_and_reported_while_others_succeed(graph, settings):
    ids = [e.id for e in seed(graph, 12)]

    async def work(batch):
        batch.graph = spy = HangingGraph(batch.graph, poison="club-005")
        res = await batch.read_hypotheses(ids, chunk_size=4, concurrency=2, timeout_s=0.2)
        after = await batch.read_hypotheses(["club-000"])  # the client still works
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return res, after, spy, leftovers

    res, after, spy, leftovers = batch_run(settings, work)
    assert [f.keys for f in res.failures] == [("club-004", "club-005", "club-006", "club-007")]
    assert res.failures[0].timed_out and "timed out" in res.failures[0].error
    assert res.succeeded == 8 and res.success_rate == pytest.approx(8 / 12)
    assert set(res.values) == set(ids) - {"club-004", "club-005", "club-006", "club-007"}
    assert spy.cancelled == 1 and leftovers == []
    assert after.ok and len(after.values["club-000"]) == len(PATTERNS)


def test_server_errors_become_chunk_failures(settings, graph):
    seed(graph, 2)

    class Broken:
        name = "x"

        def _build_params_header(self, params):
            return ""

        async def execute_command(self, *args):
            raise ConnectionError("socket closed")

    async def work(batch):
        batch.graph = Broken()
        return await batch.read_hypotheses(["club-000", "club-001"], chunk_size=1)

    res = batch_run(settings, work)
    assert res.success_rate == 0.0 and len(res.failures) == 2
    assert res.failures[0].error == "ConnectionError: socket closed"


# ------------------------------------------------------------------ updates: batch == one by one


def decisions_script(hyp_ids: list[str], rng: random.Random, n: int) -> list[tuple[str, Decision]]:
    """Runs of the same decision on the same hypothesis, so states are reached, mixed at random."""
    out: list[tuple[str, Decision]] = []
    while len(out) < n:
        hid = rng.choice(hyp_ids)
        d = rng.choice([A, A, W, R, R, N])
        out.extend([(hid, d)] * rng.randint(1, 4))
    rng.shuffle(out)
    # end with a stall on a few hypotheses, so SATURATED is reached whatever the shuffle did
    tail = [(hid, N) for hid in rng.sample(hyp_ids, 4) for _ in range(5)]
    return out[:n] + tail


def apply_one_by_one(graph, updates, now, deltas, rules):
    for hid, d in updates:
        h = graph.get_hypothesis(hid)
        graph.save_hypotheses([apply_decision(h, d, now, deltas, rules)])


@pytest.mark.parametrize(
    "params",
    [ParameterConfig(), ParameterConfig(promote_confidence=0.6, promote_accepts=3, saturation_window=3,
                                        saturation_count=2, delta_accept=0.11, delta_reject=-0.07)],
    ids=["default-rules", "tuned-rules"],
)  # fmt: skip
def test_batch_update_equals_the_same_updates_one_by_one(graph, settings, params):
    ents = seed(graph, 6)
    ids = [e.id for e in ents]
    first = graph.get_hypotheses("club-000")[0]
    graph.save_hypotheses([kill(first, "operator", NOW)])  # KILLED is sticky on both paths
    before = graph.snapshot(ids)
    hyp_ids = [h.id for e in ids for h in graph.get_hypotheses(e)]
    updates = decisions_script(hyp_ids, random.Random(4), 240)
    deltas, rules = params.to_deltas(), params.to_lifecycle_rules()

    res = batch_run(
        settings,
        lambda b: b.apply_decisions(updates, now=NOW + 60, deltas=deltas, rules=rules, chunk_size=4, concurrency=5),
    )
    assert res.ok and res.requested == len({h for h, _ in updates})
    batched = graph.snapshot(ids)

    graph.restore(before)
    apply_one_by_one(graph, updates, NOW + 60, deltas, rules)
    single = graph.snapshot(ids)

    assert batched == single  # exactly: floats to the last bit
    statuses = {h["status"] for hs in batched["entities"].values() for h in hs}
    assert {"PROMOTED", "DEGRADED", "SATURATED", "KILLED", "ACTIVE"} <= statuses  # every rule was exercised
    confidences = [h["confidence"] for hs in batched["entities"].values() for h in hs]
    assert 1.0 in confidences and 0.0 in confidences  # both clamps were exercised


def test_update_accepts_decision_update_objects_and_reports_unknown_ids(graph, settings):
    seed(graph, 1)
    hid = graph.get_hypotheses("club-000")[0].id
    ups = [DecisionUpdate(hid, A), DecisionUpdate("club-000::nope", A), (hid, W)]
    res = batch_run(settings, lambda b: b.apply_decisions(ups, now=NOW + 1))
    assert res.values == [hid]
    assert [(f.keys, f.error) for f in res.failures] == [(("club-000::nope",), "no such hypothesis")]
    h = graph.get_hypothesis(hid)
    assert (h.accepts, h.weak_accepts, h.recent, h.updated_at) == (1, 1, (A, W), NOW + 1)


# ------------------------------------------------------------------ creates


def test_unwind_create_adds_missing_keeps_existing_and_reports_unknown_entities(graph, settings):
    seed(graph, 2)
    existing = graph.get_hypotheses("club-000")[0]
    graph.save_hypotheses([replace(existing, accepts=5)])
    new_pattern = Pattern("Stadium naming rights", "Fan Engagement", 0.2)
    new = Hypothesis.new("club-001", new_pattern, NOW)
    orphan = Hypothesis.new("ghost-club", new_pattern, NOW)
    res = batch_run(settings, lambda b: b.create_hypotheses([existing, new, orphan], chunk_size=2))
    assert res.values == {existing.id: False, new.id: True}
    assert res.failed_keys() == (orphan.id,) and res.failures[0].error == "entity does not exist"
    assert graph.get_hypothesis(existing.id).accepts == 5  # state kept
    assert new in graph.get_hypotheses("club-001")


def test_create_refuses_duplicate_ids(settings):
    h = Hypothesis.new("club-000", PATTERNS[0], NOW)

    async def work(batch):
        return await batch.create_hypotheses([h, h])

    with pytest.raises(DomainError, match="more than once"):
        asyncio.run(work(AsyncBatchGraph(object())))


# ------------------------------------------------------------------ streaming


def test_stream_yields_one_assessment_per_entity(graph, settings):
    ents = seed(graph, 9)
    ids = [e.id for e in ents]
    hid = graph.get_hypotheses("club-003")[0].id  # "Almost none" (prior 0.01)
    graph.save_hypotheses([replace(graph.get_hypothesis(hid), accepts=2, confidence=0.99)])

    async def work(batch):
        stream = batch.stream_assessments(ids, chunk_size=2, concurrency=2)
        return [a async for a in stream], stream.result

    got, result = batch_run(settings, work)
    assert sorted(a.entity_id for a in got) == ids
    by_id = {a.entity_id: a for a in got}
    for eid in ids:
        assert by_id[eid] == assess_entity(eid, graph.get_hypotheses(eid))
    assert (by_id["club-003"].max_confidence, by_id["club-003"].top_pattern) == (0.99, "Almost none")
    assert result.ok and result.values == 9 and result.chunks == 5


def test_leaving_the_stream_early_cancels_the_rest(graph, settings):
    ids = [e.id for e in seed(graph, 8)]

    async def work(batch):
        batch.graph = spy = HangingGraph(batch.graph, poison="club-007")
        stream = batch.stream_assessments(ids, chunk_size=2, concurrency=4)
        first = None
        async for a in stream:
            first = a
            break
        await stream.__aiter__().aclose()
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return first, stream.result, spy, leftovers

    first, result, spy, leftovers = batch_run(settings, work)
    assert first is not None and leftovers == [] and spy.cancelled == 1
    assert result.values == 1


def test_stream_reports_timed_out_chunks(graph, settings):
    ids = [e.id for e in seed(graph, 6)]

    async def work(batch):
        batch.graph = HangingGraph(batch.graph, poison="club-002")
        stream = batch.stream_assessments(ids, chunk_size=2, timeout_s=0.2)
        return [a.entity_id async for a in stream], stream.result

    got, result = batch_run(settings, work)
    assert sorted(got) == ["club-000", "club-001", "club-004", "club-005"]
    assert [(f.chunk, f.keys, f.timed_out) for f in result.failures] == [(1, ("club-002", "club-003"), True)]


# ------------------------------------------------------------------ activity & index


def test_recent_activity_counts_evidence_since_and_skips_rolled_back(graph, settings):
    seed(graph, 3)
    h0 = graph.get_hypotheses("club-000")[0]
    h1 = graph.get_hypotheses("club-001")[0]

    def rec(h, i):
        return HopRecord(
            i, h.id, h.pattern, h.category, 0.1, HopType.OFFICIAL_SITE, Depth.SURFACE, A, 0.06, 0.5, 0.01, 0.1
        )

    graph.add_evidence("club-000", "old-run", "new", [rec(h0, 1)], at=NOW - 1000)
    graph.add_evidence("club-000", "run-1", "new", [rec(h0, 1), rec(h0, 2)], at=NOW)
    graph.add_evidence("club-001", "run-2", "new", [rec(h1, 1)], at=NOW)
    graph.mark_evidence_rolled_back(["club-001"], "run-2")
    act = batch_run(settings, lambda b: b.recent_activity(NOW - 10))
    assert act == {"club-000": 2}
    index = batch_run(settings, lambda b: b.entity_index())
    assert index["club-001"] == ("south", TEMPLATE.id) and len(index) == 3


def test_run_batch_works_inside_a_running_event_loop(graph, settings):
    seed(graph, 1)

    async def caller():
        return run_batch(settings, lambda b: b.read_hypotheses(["club-000"]))

    assert len(asyncio.run(caller()).values["club-000"]) == len(PATTERNS)


class InterferingGraph:
    """A real async graph; before the first ``times`` writes, another writer changes the hypothesis."""

    def __init__(self, graph, store, hid, times):
        self._graph, self._store, self._hid, self._times = graph, store, hid, times
        self.name = graph.name
        self.writes = 0

    def _build_params_header(self, params):
        return self._graph._build_params_header(params)

    async def execute_command(self, *args):
        if args[0] == "GRAPH.QUERY":  # a write
            self.writes += 1
            if self.writes <= self._times:
                h = self._store.get_hypothesis(self._hid)
                self._store.save_hypotheses([apply_decision(h, R, NOW + self.writes)])  # someone else's REJECT
        return await self._graph.execute_command(*args)


def test_update_that_raced_another_writer_is_reapplied_on_top_of_it(graph, settings):
    seed(graph, 1)
    h0 = graph.get_hypotheses("club-000")[2]  # Middling, 0.5

    async def work(batch):
        batch.graph = spy = InterferingGraph(batch.graph, graph, h0.id, times=1)
        return await batch.apply_decisions([(h0.id, A), (h0.id, A)], now=NOW + 60), spy

    res, spy = batch_run(settings, work)
    assert res.ok and res.values == [h0.id] and spy.writes == 2  # one refused write, one retry
    expected = apply_decision(apply_decision(apply_decision(h0, R, NOW + 1), A, NOW + 60), A, NOW + 60)
    assert graph.get_hypothesis(h0.id) == expected  # the other writer's REJECT is not lost


def test_update_gives_up_on_a_hypothesis_that_keeps_changing(graph, settings):
    seed(graph, 1)
    hyps = graph.get_hypotheses("club-000")

    async def work(batch):
        batch.graph = InterferingGraph(batch.graph, graph, hyps[0].id, times=99)
        return await batch.apply_decisions([(hyps[0].id, A), (hyps[1].id, A)], now=NOW + 60)

    res = batch_run(settings, work)
    assert res.values == [hyps[1].id]
    assert res.failed_keys() == (hyps[0].id,) and "changed by another writer" in res.failures[0].error
    assert graph.get_hypothesis(hyps[0].id).accepts == 0  # only the other writer's REJECTs landed


@pytest.mark.parametrize("value", [
    ["plain", 'q"uote', "back\\slash", "new\nline", "tab\t", "café ☃"], [0.1 + 0.2, 1e-17, -2.5e-05, 3, True],
    [["ACCEPT", "REJECT"], []], ["bell\x07", "cr\r"], [float("inf")] ,
])  # fmt: skip
def test_encoded_parameters_read_back_exactly(graph, settings, value):
    """Our fast JSON header means to the server exactly what the client's own encoder means."""
    from falkordb.helpers import stringify_param_value

    from engine.store.batch import encode_params

    if value == [float("inf")]:
        assert encode_params({"v": value}) == "CYPHER v=[inf] "  # not JSON: the client's own spelling
        return
    header = encode_params({"v": value})[:-1] + " w=" + stringify_param_value(value) + " "
    graph.graph.query("MERGE (:Probe)")  # the graph must exist
    assert graph.graph.query(header + "RETURN $v = $w, size($v)").result_set[0] == [True, len(value)]
    assert graph.graph.query(header + "RETURN $v[0] = $w[0]").result_set[0] == [True]


def test_batch_read_follows_the_graphs_exact_float_rule(graph, settings):
    """Exact sidecar values where the stored double still matches; a value changed by hand wins."""
    seed(graph, 1)
    hs = graph.get_hypotheses("club-000")
    graph.save_hypotheses([replace(hs[0], confidence=0.1 + 0.2), replace(hs[1], confidence=1 / 3, last_delta=1e-17)])
    graph.graph.query("MATCH (h:Hypothesis {id: $id}) SET h.confidence = 0.25", {"id": hs[2].id})  # by hand
    got = batch_run(settings, lambda b: b.read_hypotheses(["club-000"])).values["club-000"]
    assert got == graph.get_hypotheses("club-000")
    assert got[0].confidence == 0.30000000000000004 and got[1].confidence == 1 / 3 and got[1].last_delta == 1e-17
    assert got[2].confidence == 0.25
