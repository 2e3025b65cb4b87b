"""GraphStore.get_evidence_many and entity_countries: many entities' evidence in one round trip per chunk,
in get_evidence's order, filtered by decision; the catalogue's countries."""

from __future__ import annotations

from engine.core.model import Decision, Depth, HopRecord, HopType
from tests.support.graphs import NOW, seed


def record(i: int, hyp, decision: Decision) -> HopRecord:
    return HopRecord(
        i, hyp.id, hyp.pattern, hyp.category, 0.1, HopType.PRESS_RELEASE, Depth.SURFACE, decision, 0.0,
        hyp.confidence, 0.01, 0.1, url=f"https://x.example/{i}", excerpt=f"hop {i}",
    )  # fmt: skip


def test_evidence_of_many_entities_matches_each_trail_and_filters_by_decision(graph):
    ents = seed(graph, 3)
    decisions = (Decision.ACCEPT, Decision.REJECT, Decision.NO_PROGRESS)
    for n, e in enumerate(ents[:2]):
        hyps = graph.get_hypotheses(e.id)
        records = [record(i + 1, hyps[i % len(hyps)], decisions[(i + n) % 3]) for i in range(4)]
        graph.add_evidence(e.id, f"run-{n}", "new", records, at=NOW + n)
    ids = [e.id for e in ents] + ["no-such-entity"]
    every = graph.get_evidence_many(ids)
    assert list(every) == ids
    for e in ents:
        assert every[e.id] == graph.get_evidence(e.id)
    assert every[ents[2].id] == [] and every["no-such-entity"] == []
    some = graph.get_evidence_many(ids, decisions=("ACCEPT", "REJECT"))
    for e in ents:
        assert some[e.id] == [r for r in every[e.id] if r["decision"] in ("ACCEPT", "REJECT")]
    assert sum(len(v) for v in some.values()) == 6


def test_entity_countries_are_distinct_and_sorted(graph):
    seed(graph, 2)
    assert graph.entity_countries() == ["GB"]
