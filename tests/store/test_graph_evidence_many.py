"""GraphStore's batched column reads for many entities: get_evidence_many (each trail as get_evidence orders
it, filtered by decision), evidence_counts_many (per run id), hypothesis_tallies_many; entity_countries."""

from __future__ import annotations

import pytest

from engine.core.model import Decision, Depth, HopRecord, HopType
from engine.store.graph import EVIDENCE_SUMMARY_FIELDS
from tests.support.graphs import NOW, seed


def record(i: int, hyp, decision: Decision) -> HopRecord:
    return HopRecord(
        i, hyp.id, hyp.pattern, hyp.category, 0.1, HopType.PRESS_RELEASE, Depth.SURFACE, decision, 0.0,
        hyp.confidence + 0.1 + 0.2, 0.01, 0.1, url=f"https://x.example/{i}", excerpt=f"hop {i}",
    )  # fmt: skip


@pytest.fixture
def trails(graph):
    ents = seed(graph, 3)
    decisions = (Decision.ACCEPT, Decision.REJECT, Decision.NO_PROGRESS)
    for n, e in enumerate(ents[:2]):
        hyps = graph.get_hypotheses(e.id)
        records = [record(i + 1, hyps[i % len(hyps)], decisions[(i + n) % 3]) for i in range(4)]
        graph.add_evidence(e.id, f"run-{n}", "new", records, at=NOW + n)
    return graph, [e.id for e in ents] + ["no-such-entity"]


def test_evidence_of_many_entities_matches_each_trail_and_filters_by_decision(trails):
    graph, ids = trails
    every = graph.get_evidence_many(ids)
    assert list(every) == ids and every[ids[2]] == [] and every["no-such-entity"] == []
    for eid in ids[:2]:
        full = graph.get_evidence(eid)
        assert [r["id"] for r in every[eid]] == [r["id"] for r in full]
        for light, whole in zip(every[eid], full):
            assert tuple(light) == EVIDENCE_SUMMARY_FIELDS
            assert {k: v for k, v in light.items() if not isinstance(v, float)} == {
                k: whole[k] for k in EVIDENCE_SUMMARY_FIELDS if not isinstance(whole[k], float)
            }
            assert light["confidence_after"] == pytest.approx(whole["confidence_after"], rel=1e-13)
    some = graph.get_evidence_many(ids, decisions=("ACCEPT", "REJECT"))
    for eid in ids:
        assert [r["id"] for r in some[eid]] == [r["id"] for r in every[eid] if r["decision"] in ("ACCEPT", "REJECT")]
    assert sum(len(v) for v in some.values()) == 6


def test_evidence_counts_per_run_and_hypothesis_tallies(trails):
    graph, ids = trails
    counts = graph.evidence_counts_many(ids, "REJECT")
    assert counts == {ids[0]: {"run-0": 1}, ids[1]: {"run-1": 2}, ids[2]: {}, "no-such-entity": {}}
    tallies = graph.hypothesis_tallies_many(ids)
    for eid in ids[:3]:
        whole = graph.get_hypotheses(eid)
        assert [(t.id, t.pattern, t.category, t.accepts) for t in tallies[eid]] == [
            (h.id, h.pattern, h.category, h.accepts) for h in whole
        ]
        assert [t.confidence for t in tallies[eid]] == pytest.approx([h.confidence for h in whole], rel=1e-13)
    assert tallies["no-such-entity"] == []


def test_entity_countries_are_distinct_and_sorted(graph):
    seed(graph, 2)
    assert graph.entity_countries() == ["GB"]
