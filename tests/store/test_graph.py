"""GraphStore against a real embedded FalkorDB in a temp dir: what only a GraphStore does (persistence
across a server restart, the shared fixtures). The contract a CachedGraph honours too is in
tests/test_graph_contract.py."""

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.model import (
    Channel,
    Decision,
    Depth,
    Entity,
    HopRecord,
    HopType,
    Hypothesis,
    Pattern,
    Template,
    apply_decision,
)
from engine.store import falkor
from engine.store.graph import GraphStore


def test_fixture_graph_round_trips_an_entity(graph, ops):
    t = Template(
        id="tpl",
        name="T",
        patterns=(Pattern("CRM", "CRM Implementation", 0.4),),
        channels=(Channel(HopType.OFFICIAL_SITE, 1),),
    )
    graph.upsert_templates([t])
    e = Entity(
        id="club-a", name="Club A", sport="football", country="GB", type="club", tier=1, cluster="gb", template_id="tpl"
    )
    graph.upsert_entities([e], [Hypothesis.new(e.id, t.patterns[0], 1.0)])
    assert graph.get_entity("club-a") == e
    assert ops.schema_versions()["core"] == 2  # v2: the identity columns of the audit log


# --------------------------------------------------------------------------- persistence


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
        assert (ev["run_id"], ev["decision"], ev["excerpt"], ev["rolled_back"]) == (
            "run-1",
            "ACCEPT",
            "signs a CRM deal",
            False,
        )
