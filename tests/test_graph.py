"""GraphStore against a real embedded FalkorDB in a temp dir."""

from engine.model import Channel, Entity, HopType, Hypothesis, Pattern, Template


def test_fixture_graph_round_trips_an_entity(graph, ops):
    t = Template(id="tpl", name="T", patterns=(Pattern("CRM", "CRM Implementation", 0.4),), channels=(Channel(HopType.OFFICIAL_SITE, 1),))
    graph.upsert_templates([t])
    e = Entity(id="club-a", name="Club A", sport="football", country="GB", type="club", tier=1, cluster="gb", template_id="tpl")
    graph.upsert_entities([e], [Hypothesis.new(e.id, t.patterns[0], 1.0)])
    assert graph.get_entity("club-a") == e
    assert ops.schema_versions()["core"] == 1
