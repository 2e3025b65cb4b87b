"""The GraphStore contract, run against every implementation: a plain GraphStore and a CachedGraph over one.

Each test takes ``store`` (a fresh seeded graph, for tests that write) or
``reader`` (one seeded graph shared by the module, for tests that only read),
both parametrised over the implementations. Through a CachedGraph every value
is read twice (a load, then a hit) and a test that writes reads first, so a
cached value a write should have changed would show. Cache-specific behaviour
(hits, invalidation, races) is tested in tests/test_cached_graph.py; GraphStore
persistence across a server restart in tests/test_graph.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from engine.cache.cached_graph import CachedGraph
from engine.cache.lru import HypothesisCache
from engine.core.model import (
    Channel,
    Decision,
    Depth,
    DomainError,
    Entity,
    HopRecord,
    HopType,
    Hypothesis,
    Pattern,
    Status,
    Template,
    UnknownEntity,
    apply_decision,
)
from engine.core.settings import Settings
from engine.store import falkor
from engine.store.graph import GraphStats, GraphStore, UnknownHypothesis, UnknownTemplate

NOW = 1_700_000_000.0
A, R = Decision.ACCEPT, Decision.REJECT

PATTERNS = (
    Pattern("CRM", "CRM Implementation", 0.4, ("crm", "salesforce")),
    Pattern("Ticketing", "Ticketing", 0.64),
    Pattern("Analytics", "Data Analytics", 0.1 + 0.2),  # reads back exactly, not as 0.3
)
TEMPLATE = Template(
    id="contract", name="Contract", patterns=PATTERNS,
    channels=(Channel(HopType.OFFICIAL_SITE, 1), Channel(HopType.PRESS_RELEASE, 2)), description="for the contract",
)  # fmt: skip
OTHER_TEMPLATE = Template(id="other", name="Other", patterns=PATTERNS[:1], channels=(Channel(HopType.CAREERS_PAGE, 1),))


def club(eid: str, name: str, cluster: str = "de", template_id: str = TEMPLATE.id) -> Entity:
    return Entity(id=eid, name=name, sport="basketball", country="DE", type="club", tier=1, cluster=cluster,
                  template_id=template_id)  # fmt: skip


ENTITIES = (
    club("bbc-dusseldorf", "BBC Düsseldorf"),
    club("dusseldorf-giants", "Düsseldorf Giants"),
    club("koln-99ers", "Köln 99ers", cluster="nrw"),
    club("munich-sky", "Munich Sky", cluster="bavaria", template_id=OTHER_TEMPLATE.id),
    club("empty-club", "Empty Club", cluster="nrw"),  # no hypotheses
)


def hop(h: Hypothesis, iteration: int, decision: Decision = A, excerpt: str = "signs a CRM deal") -> HopRecord:
    return HopRecord(iteration, h.id, h.pattern, h.category, 0.25, HopType.PRESS_RELEASE, Depth.SURFACE, decision,
                     0.06, h.confidence, 0.02, 2.5, "https://example.org/news", excerpt)  # fmt: skip


@dataclass(frozen=True)
class Seeded:
    """What seed_graph wrote: the state every implementation must read back."""

    hypotheses: dict[str, list[Hypothesis]]  # entity id -> its hypotheses ordered by id (as written last)
    worked: Hypothesis  # the hypothesis the seeded run promoted
    run_id: str = "run-1"


def seed_graph(graph) -> Seeded:
    """Templates, entities, hypotheses, and one run with evidence: the contract's fixture data."""
    graph.upsert_templates([TEMPLATE, OTHER_TEMPLATE])
    hyps = {
        e.id: [
            Hypothesis.new(e.id, p, NOW)
            for p in (TEMPLATE if e.template_id == TEMPLATE.id else OTHER_TEMPLATE).patterns
        ]
        for e in ENTITIES if e.id != "empty-club"
    }  # fmt: skip
    graph.upsert_entities(list(ENTITIES), [h for hs in hyps.values() for h in hs])
    first = hyps["bbc-dusseldorf"][0]
    worked = apply_decision(apply_decision(replace(first, confidence=0.69), A, NOW + 1), A, NOW + 2)
    assert worked.status is Status.PROMOTED
    graph.apply_run("bbc-dusseldorf", "run-1", "new", [worked], [hop(first, 1), hop(worked, 2)], at=NOW + 2)
    hyps["bbc-dusseldorf"][0] = worked
    hyps["empty-club"] = []
    return Seeded({eid: sorted(hs, key=lambda h: h.id) for eid, hs in hyps.items()}, worked)


# --------------------------------------------------------------------------- the implementations

IMPLEMENTATIONS: dict[str, Callable[[GraphStore], object]] = {
    "GraphStore": lambda graph: graph,
    "CachedGraph": lambda graph: CachedGraph(graph, HypothesisCache(max_bytes=50_000_000, ttl_s=3600)),
}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def implementation(request) -> Callable[[GraphStore], object]:
    """Wraps a GraphStore as the implementation under test."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture(scope="module")
def seeded_graph(tmp_path_factory):
    """One seeded GraphStore for the module's read-only tests (its own embedded server)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("contract") / "data", falkordb_url=None,
                        graph_name="discovery_contract").ensure_dirs()  # fmt: skip
    try:
        graph = GraphStore.open(settings)
    except BaseException:
        falkor.stop_embedded_server(settings)
        raise
    try:
        yield graph, seed_graph(graph)
    finally:
        try:
            graph.close()
        finally:
            falkor.stop_embedded_server(settings)


@pytest.fixture
def reader(seeded_graph, implementation):
    """The implementation over the module's seeded graph (a fresh cache per test): read only."""
    graph, _ = seeded_graph
    return implementation(graph)


@pytest.fixture
def seeded(seeded_graph) -> Seeded:
    return seeded_graph[1]


@pytest.fixture
def store(graph, implementation):
    """(the implementation over a fresh seeded graph, what seed_graph wrote to it)."""
    wrapped = implementation(graph)
    return wrapped, seed_graph(graph)


def twice(read: Callable[[], object]) -> object:
    """The value of ``read()``, asserted equal on a second read (through a cache: a hit)."""
    first = read()
    assert read() == first
    return first


# --------------------------------------------------------------------------- reads


def test_entities_read_back_as_written_and_unknown_ids_are_absent_or_raise(reader):
    for e in ENTITIES:
        assert twice(lambda e=e: reader.get_entity(e.id)) == e
    ids = [e.id for e in ENTITIES]
    got = twice(lambda: reader.get_entities(list(reversed(ids)) + ["ghost"]))
    assert list(got) == list(reversed(ids)) and list(got.values()) == list(reversed(ENTITIES))
    with pytest.raises(UnknownEntity, match="ghost"):
        reader.get_entity("ghost")
    assert reader.count_entities() == len(ENTITIES)
    assert reader.list_entity_ids() == sorted(ids)
    assert reader.list_entities() == sorted(ENTITIES, key=lambda e: e.id)
    assert reader.list_entities(offset=1, limit=2) == sorted(ENTITIES, key=lambda e: e.id)[1:3]


def test_templates_read_back_as_written_and_an_unknown_one_raises(reader):
    assert twice(lambda: reader.get_template(TEMPLATE.id)) == TEMPLATE
    assert reader.list_templates() == [TEMPLATE, OTHER_TEMPLATE]
    with pytest.raises(UnknownTemplate, match="nope"):
        reader.get_template("nope")


def test_hypotheses_read_back_exactly_ordered_by_id(reader, seeded):
    for eid, hyps in seeded.hypotheses.items():
        assert twice(lambda eid=eid: reader.get_hypotheses(eid)) == hyps
        for h in hyps:
            assert twice(lambda h=h: reader.get_hypothesis(h.id)) == h
    analytics = next(h for h in seeded.hypotheses["koln-99ers"] if h.pattern == "Analytics")
    assert reader.get_hypothesis(analytics.id).prior == 0.30000000000000004


def test_hypotheses_of_many_entities_keep_the_request_order_and_map_unknown_ids_to_empty(reader, seeded):
    ids = ["munich-sky", "ghost", "bbc-dusseldorf", "empty-club"]
    got = twice(lambda: reader.get_hypotheses_many(ids))
    assert list(got) == ids
    assert got == {eid: seeded.hypotheses.get(eid, []) for eid in ids}


def test_unknown_entity_and_hypothesis_ids_raise(reader):
    with pytest.raises(UnknownEntity, match="ghost"):
        reader.get_hypotheses("ghost")
    with pytest.raises(UnknownEntity):  # asked twice: "unknown" is never remembered as "none"
        reader.get_hypotheses("ghost")
    assert reader.get_hypotheses("empty-club") == []
    with pytest.raises(UnknownHypothesis, match="ghost::crm"):
        reader.get_hypothesis("ghost::crm")


def test_evidence_trail_is_newest_first_with_every_field(reader, seeded):
    trail = twice(lambda: reader.get_evidence("bbc-dusseldorf"))
    assert [(ev["iteration"], ev["run_id"], ev["system"], ev["rolled_back"]) for ev in trail] == [
        (2, "run-1", "new", False), (1, "run-1", "new", False)
    ]  # fmt: skip
    newest = trail[0]
    assert newest["id"] == "run-1:new:bbc-dusseldorf:2" and newest["hypothesis_id"] == seeded.worked.id
    assert (newest["hop_type"], newest["depth"], newest["decision"]) == ("press_release", 1, "ACCEPT")
    assert (newest["at"], newest["confidence_after"], newest["error"]) == (NOW + 2, seeded.worked.confidence, None)
    assert reader.get_evidence("bbc-dusseldorf", limit=1) == trail[:1]
    assert reader.get_evidence("koln-99ers") == [] and reader.get_evidence("ghost") == []


def test_stats_and_cluster_confirmations_count_the_whole_graph(reader, seeded):
    n_hyps = sum(len(hs) for hs in seeded.hypotheses.values())
    assert twice(reader.stats) == GraphStats(
        entities=len(ENTITIES),
        hypotheses=n_hyps,
        by_status={"ACTIVE": n_hyps - 1, "PROMOTED": 1},
        by_template={TEMPLATE.id: 4, OTHER_TEMPLATE.id: 1},
        by_cluster={"de": 2, "nrw": 2, "bavaria": 1},
        by_category={"CRM Implementation": 4, "Data Analytics": 3, "Ticketing": 3},
    )
    assert reader.cluster_confirmations("de") == {"CRM": 1}
    assert reader.cluster_confirmations("nrw") == {} and reader.cluster_confirmations("ghost") == {}


def test_search_finds_names_by_substring_and_accented_names_without_the_accent(reader):
    assert [e.id for e in reader.search_entities("bbc dusseldorf")] == ["bbc-dusseldorf"]
    assert [e.id for e in reader.search_entities("DÜSSELDORF")] == ["dusseldorf-giants", "bbc-dusseldorf"]
    # prefix matches rank before inner matches; an exact id first of all
    assert [e.id for e in reader.search_entities("dusseldorf")] == ["dusseldorf-giants", "bbc-dusseldorf"]
    assert [e.id for e in reader.search_entities("koln-99ers")] == ["koln-99ers"]
    assert reader.search_entities("zz-nothing") == []
    assert len(reader.search_entities("e", limit=2)) == 2


def test_snapshot_holds_the_full_hypothesis_state_and_refuses_unknown_entities(reader, seeded):
    snap = twice(lambda: reader.snapshot(["koln-99ers", "bbc-dusseldorf", "empty-club"]))
    assert (snap["format"], snap["version"]) == ("discovery-ops/graph-snapshot", 1)
    assert list(snap["entities"]) == ["koln-99ers", "bbc-dusseldorf", "empty-club"]
    assert snap["entities"]["empty-club"] == []
    (worked,) = [p for p in snap["entities"]["bbc-dusseldorf"] if p["id"] == seeded.worked.id]
    assert (worked["status"], worked["accepts"], worked["recent"]) == ("PROMOTED", 2, ["ACCEPT", "ACCEPT"])
    with pytest.raises(UnknownEntity, match="ghost"):
        reader.snapshot(["koln-99ers", "ghost"])


# --------------------------------------------------------------------------- writes


def test_saved_hypotheses_read_back_exactly_and_an_unknown_one_writes_nothing(store):
    s, seeded = store
    before = s.get_hypotheses("koln-99ers")  # cached now, where there is a cache
    changed = [replace(apply_decision(before[0], R, NOW + 5), last_delta=1e-17, killed_reason="zurückgezogen ✓"),
               replace(before[1], confidence=1 / 3, status=Status.KILLED)]  # fmt: skip
    s.save_hypotheses(changed)
    after = s.get_hypotheses("koln-99ers")
    assert after == sorted(changed + before[2:], key=lambda h: h.id)
    assert s.get_hypothesis(changed[1].id).confidence == 1 / 3
    ghost = Hypothesis.new("koln-99ers", Pattern("Ghost", "General", 0.2), NOW)
    with pytest.raises(UnknownHypothesis, match="ghost"):
        s.save_hypotheses([apply_decision(after[0], A, NOW + 6), ghost])
    with pytest.raises(DomainError, match="more than once"):
        s.save_hypotheses([after[0], after[0]])
    assert s.get_hypotheses("koln-99ers") == after
    s.save_hypotheses([])  # nothing to do


def test_apply_run_saves_hypotheses_and_evidence_together(store):
    s, seeded = store
    before = s.get_hypotheses("koln-99ers")
    worked = [apply_decision(before[0], A, NOW + 10), apply_decision(before[2], R, NOW + 10)]
    records = [hop(before[0], 1), hop(before[2], 2, R, excerpt="no news")]
    s.apply_run("koln-99ers", "run-k", "old", worked, records, at=NOW + 10)
    assert s.get_hypotheses("koln-99ers") == [worked[0], before[1], worked[1]]
    assert [(ev["iteration"], ev["decision"], ev["excerpt"]) for ev in s.get_evidence("koln-99ers")] == [
        (2, "REJECT", "no news"), (1, "ACCEPT", "signs a CRM deal")
    ]  # fmt: skip
    s.apply_run("koln-99ers", "run-k", "old", worked, records, at=NOW + 11)  # the same run again: no new evidence
    assert len(s.get_evidence("koln-99ers")) == 2
    s.add_evidence("koln-99ers", "run-k2", "old", [hop(before[1], 1)], at=NOW + 12)
    assert s.get_evidence("koln-99ers")[0]["id"] == "run-k2:old:koln-99ers:1"
    assert s.get_hypotheses("koln-99ers") == [worked[0], before[1], worked[1]]


def test_apply_run_is_all_or_nothing(store):
    s, seeded = store
    mine = s.get_hypotheses("koln-99ers")
    theirs = s.get_hypotheses("munich-sky")
    trail = s.get_evidence("koln-99ers")
    with pytest.raises(DomainError, match="belongs to"):  # a hypothesis of another entity
        s.apply_run("koln-99ers", "run-x", "new", [apply_decision(mine[0], A, NOW + 1), theirs[0]], [])
    with pytest.raises(DomainError):  # evidence of another entity's hypothesis
        s.apply_run("koln-99ers", "run-x", "new", [apply_decision(mine[0], A, NOW + 1)], [hop(theirs[0], 1)])
    with pytest.raises(UnknownEntity, match="ghost"):
        s.apply_run("ghost", "run-x", "new", [], [hop(mine[0], 1)])
    with pytest.raises(DomainError, match="NUL"):
        s.apply_run(
            "koln-99ers", "run-x", "new", [apply_decision(mine[0], A, NOW + 1)], [hop(mine[0], 1, excerpt="a\x00b")]
        )
    assert s.get_hypotheses("koln-99ers") == mine and s.get_hypotheses("munich-sky") == theirs
    assert s.get_evidence("koln-99ers") == trail


def test_restore_puts_back_exactly_the_snapshot_and_keeps_the_evidence(store):
    s, seeded = store
    snap = s.snapshot(["bbc-dusseldorf", "koln-99ers"])
    hyps = s.get_hypotheses("bbc-dusseldorf")
    s.apply_run(
        "bbc-dusseldorf", "run-2", "new", [apply_decision(hyps[1], A, NOW + 20)], [hop(hyps[1], 1)], at=NOW + 20
    )
    extra = Hypothesis.new("bbc-dusseldorf", Pattern("Extra", "General", 0.2), NOW + 20)
    s.upsert_entities([], [extra])
    assert len(s.get_hypotheses("bbc-dusseldorf")) == len(hyps) + 1
    other = s.get_hypotheses("munich-sky")
    s.restore(snap)
    assert s.get_hypotheses("bbc-dusseldorf") == hyps  # the extra hypothesis is gone, the run undone
    assert s.get_hypotheses("koln-99ers") == seeded.hypotheses["koln-99ers"]
    assert s.get_hypotheses("munich-sky") == other
    assert len(s.get_evidence("bbc-dusseldorf")) == 3  # the trail is not the snapshot's business
    with pytest.raises(DomainError, match="not a graph snapshot"):
        s.restore({"format": "something else", "version": 1, "entities": {}})
    with pytest.raises(UnknownEntity, match="ghost"):
        s.restore({**snap, "entities": {**snap["entities"], "ghost": []}})
    assert s.get_hypotheses("bbc-dusseldorf") == hyps


def test_upserts_move_edges_keep_hypothesis_state_and_update_templates(store):
    s, seeded = store
    assert s.get_entity("koln-99ers").cluster == "nrw"
    worked = s.get_hypothesis(seeded.worked.id)
    moved = replace(s.get_entity("bbc-dusseldorf"), name="BBC Düsseldorf e.V.", cluster="nrw",
                    template_id=OTHER_TEMPLATE.id)  # fmt: skip
    again = Hypothesis.new("bbc-dusseldorf", PATTERNS[0], NOW + 30)  # same id as the worked one
    assert s.upsert_entities([moved], [again]) == 1
    assert s.get_entity("bbc-dusseldorf") == moved
    assert s.get_hypothesis(worked.id) == worked  # an existing hypothesis keeps its state
    stats = s.stats()
    assert stats.by_cluster == {"nrw": 3, "de": 1, "bavaria": 1}
    assert stats.by_template == {OTHER_TEMPLATE.id: 2, TEMPLATE.id: 3}
    assert s.cluster_confirmations("nrw") == {"CRM": 1} and s.cluster_confirmations("de") == {}
    assert s.get_template(TEMPLATE.id) == TEMPLATE
    renamed = replace(TEMPLATE, name="Renamed", patterns=PATTERNS[:2])
    assert s.upsert_templates(iter([renamed])) == 1
    assert s.get_template(TEMPLATE.id) == renamed


def test_mark_evidence_rolled_back_flags_the_run_once(store):
    s, seeded = store
    assert all(not ev["rolled_back"] for ev in s.get_evidence("bbc-dusseldorf"))
    assert s.mark_evidence_rolled_back(["bbc-dusseldorf", "koln-99ers"], "run-1") == 2
    assert [ev["rolled_back"] for ev in s.get_evidence("bbc-dusseldorf")] == [True, True]
    assert s.mark_evidence_rolled_back(["bbc-dusseldorf"], "run-1") == 0
    assert s.mark_evidence_rolled_back([], "run-1") == 0


def test_values_are_parameters_not_cypher(graph, implementation):
    """Names full of Cypher and quotes are stored verbatim and break nothing."""
    s = implementation(graph)
    t = Template(id="tpl", name="T'}) DETACH DELETE n //", patterns=(Pattern("CRM \"x\"", "CRM Implementation", 0.4),),
                 channels=(Channel(HopType.OFFICIAL_SITE, 1),))  # fmt: skip
    s.upsert_templates([t])
    nasty = "Bobby' }) MATCH (n) DETACH DELETE n //"
    e = Entity(id="bobby-tables", name=nasty, sport="foot\\ball", country="GB", type="club", tier=1,
               cluster="gb-`football`", template_id="tpl")  # fmt: skip
    other = Entity(
        id="other", name="Other", sport="x", country="GB", type="club", tier=1, cluster="gb", template_id="tpl"
    )
    s.upsert_entities([e, other], [Hypothesis.new(x.id, t.patterns[0], 1.0) for x in (e, other)])
    assert s.get_entity("bobby-tables") == e
    assert s.get_template("tpl") == t
    assert s.count_entities() == 2
    assert [x.id for x in s.search_entities("' })")] == ["bobby-tables"]
    assert s.stats().by_cluster == {"gb-`football`": 1, "gb": 1}
    (h,) = s.get_hypotheses("bobby-tables")
    said = replace(h, status=Status.KILLED, killed_reason="x'}) MATCH (n) DETACH DELETE n //")
    s.save_hypotheses([said])
    assert s.get_hypotheses("bobby-tables") == [said]


def test_unknown_ids_and_unstorable_values_write_nothing(graph, implementation):
    s = implementation(graph)
    t = Template(
        id="tpl",
        name="T",
        patterns=(Pattern("CRM", "CRM Implementation", 0.4),),
        channels=(Channel(HopType.OFFICIAL_SITE, 1),),
    )
    s.upsert_templates([t])
    good = Entity(id="good", name="Good", sport="x", country="GB", type="club", tier=1, cluster="gb", template_id="tpl")
    lost = Entity(
        id="lost", name="Lost", sport="x", country="GB", type="club", tier=1, cluster="gb", template_id="nope"
    )
    with pytest.raises(DomainError, match="unknown template id 'nope'"):
        s.upsert_entities([good, lost])
    with pytest.raises(DomainError, match="NUL"):
        s.upsert_entities([Entity(id="nul", name="a\x00b", sport="x", country="GB", type="club", tier=1,
                                  cluster="gb", template_id="tpl")])  # fmt: skip
    assert s.count_entities() == 0
    with pytest.raises(UnknownEntity):
        s.get_hypotheses("good")
    s.upsert_entities([good], [Hypothesis.new("good", t.patterns[0], 1.0)])
    stray = Hypothesis.new("ghost", t.patterns[0], 1.0)
    with pytest.raises(UnknownEntity, match="ghost"):
        s.upsert_entities([], [stray])
    with pytest.raises(DomainError):
        s.apply_run("good", "r", "new", [stray], [])
    assert s.stats().hypotheses == 1
