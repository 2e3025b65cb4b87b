"""GraphStore against a real embedded FalkorDB in a temp dir."""

from engine.core.model import Channel, Entity, HopType, Hypothesis, Pattern, Template


def test_fixture_graph_round_trips_an_entity(graph, ops):
    t = Template(id="tpl", name="T", patterns=(Pattern("CRM", "CRM Implementation", 0.4),), channels=(Channel(HopType.OFFICIAL_SITE, 1),))
    graph.upsert_templates([t])
    e = Entity(id="club-a", name="Club A", sport="football", country="GB", type="club", tier=1, cluster="gb", template_id="tpl")
    graph.upsert_entities([e], [Hypothesis.new(e.id, t.patterns[0], 1.0)])
    assert graph.get_entity("club-a") == e
    assert ops.schema_versions()["core"] == 1


# --------------------------------------------------------------------------- persistence and parameters

import pytest  # noqa: E402

from engine.store import falkor  # noqa: E402
from engine.catalogue.generator import seed_catalogue  # noqa: E402
from engine.store.graph import GraphStore  # noqa: E402
from engine.core.model import Decision, Depth, DomainError, HopRecord, UnknownEntity, apply_decision  # noqa: E402
from engine.catalogue.templates import load_templates  # noqa: E402


def test_close_and_reopen_keeps_entities_hypotheses_and_evidence(settings):
    store = GraphStore.open(settings)
    try:
        seed_catalogue(store, 120, 9, load_templates(), clock=lambda: 1_700_000_000.0)
        eid = store.list_entity_ids()[0]
        before = store.get_hypotheses(eid)
        worked = [apply_decision(before[0], Decision.ACCEPT, 1_700_000_100.0)]
        record = HopRecord(1, worked[0].id, worked[0].pattern, worked[0].category, 0.25, HopType.PRESS_RELEASE,
                           Depth.SURFACE, Decision.ACCEPT, 0.06, worked[0].confidence, 0.02, 2.5,
                           "https://example.org/news", "signs a CRM deal")  # fmt: skip
        store.apply_run(eid, "run-1", "new", worked, [record], at=1_700_000_100.0)
        stats = store.stats()
        entities = store.list_entities()
        hyps = store.get_hypotheses_many(store.list_entity_ids())
    finally:
        store.close()
    assert falkor.stop_embedded_server(settings) is True  # SHUTDOWN SAVE, as `store stop` and `make run`'s exit do
    with GraphStore.open(settings) as again:
        assert again.stats() == stats
        assert again.list_entities() == entities
        assert again.get_hypotheses_many(again.list_entity_ids()) == hyps
        assert again.get_hypothesis(worked[0].id) == worked[0]
        (ev,) = again.get_evidence(eid)
        assert (ev["run_id"], ev["decision"], ev["excerpt"], ev["rolled_back"]) == ("run-1", "ACCEPT", "signs a CRM deal", False)


def test_values_are_parameters_not_cypher(graph):
    """Names full of Cypher and quotes are stored verbatim and break nothing."""
    t = Template(id="tpl", name="T'}) DETACH DELETE n //", patterns=(Pattern("CRM \"x\"", "CRM Implementation", 0.4),),
                 channels=(Channel(HopType.OFFICIAL_SITE, 1),))  # fmt: skip
    graph.upsert_templates([t])
    nasty = "Bobby' }) MATCH (n) DETACH DELETE n //"
    e = Entity(id="bobby-tables", name=nasty, sport="foot\\ball", country="GB", type="club", tier=1,
               cluster="gb-`football`", template_id="tpl")  # fmt: skip
    other = Entity(id="other", name="Other", sport="x", country="GB", type="club", tier=1, cluster="gb", template_id="tpl")
    graph.upsert_entities([e, other], [Hypothesis.new(x.id, t.patterns[0], 1.0) for x in (e, other)])
    assert graph.get_entity("bobby-tables") == e
    assert graph.get_template("tpl") == t
    assert graph.count_entities() == 2
    assert [x.id for x in graph.search_entities("' })")] == ["bobby-tables"]
    assert graph.stats().by_cluster == {"gb-`football`": 1, "gb": 1}


def test_unknown_ids_and_unstorable_values_write_nothing(graph):
    t = Template(id="tpl", name="T", patterns=(Pattern("CRM", "CRM Implementation", 0.4),), channels=(Channel(HopType.OFFICIAL_SITE, 1),))
    graph.upsert_templates([t])
    good = Entity(id="good", name="Good", sport="x", country="GB", type="club", tier=1, cluster="gb", template_id="tpl")
    lost = Entity(id="lost", name="Lost", sport="x", country="GB", type="club", tier=1, cluster="gb", template_id="nope")
    with pytest.raises(DomainError, match="unknown template id 'nope'"):
        graph.upsert_entities([good, lost])
    with pytest.raises(DomainError, match="NUL"):
        graph.upsert_entities([Entity(id="nul", name="a\x00b", sport="x", country="GB", type="club", tier=1,
                                      cluster="gb", template_id="tpl")])  # fmt: skip
    assert graph.count_entities() == 0
    with pytest.raises(UnknownEntity):
        graph.get_hypotheses("good")
    graph.upsert_entities([good], [Hypothesis.new("good", t.patterns[0], 1.0)])
    stray = Hypothesis.new("ghost", t.patterns[0], 1.0)
    with pytest.raises(UnknownEntity, match="ghost"):
        graph.upsert_entities([], [stray])
    with pytest.raises(DomainError):
        graph.apply_run("good", "r", "new", [stray], [])
    assert graph.stats().hypotheses == 1


def test_search_finds_names_by_substring_and_accented_names_without_the_accent(graph):
    t = Template(id="tpl", name="T", patterns=(Pattern("CRM", "CRM Implementation", 0.4),), channels=(Channel(HopType.OFFICIAL_SITE, 1),))
    graph.upsert_templates([t])

    def ent(eid, name):
        return Entity(id=eid, name=name, sport="basketball", country="DE", type="club", tier=1, cluster="de", template_id="tpl")

    graph.upsert_entities([ent("bbc-dusseldorf", "BBC Düsseldorf"), ent("dusseldorf-giants", "Düsseldorf Giants"),
                           ent("koln-99ers", "Köln 99ers")])  # fmt: skip
    assert [e.id for e in graph.search_entities("bbc dusseldorf")] == ["bbc-dusseldorf"]
    assert [e.id for e in graph.search_entities("DÜSSELDORF")] == ["dusseldorf-giants", "bbc-dusseldorf"]
    # prefix matches rank before inner matches; an exact id first of all
    assert [e.id for e in graph.search_entities("dusseldorf")] == ["dusseldorf-giants", "bbc-dusseldorf"]
    assert [e.id for e in graph.search_entities("koln-99ers")] == ["koln-99ers"]
    assert graph.search_entities("zz-nothing") == []
    assert len(graph.search_entities("e", limit=2)) == 2
