"""A small literal catalogue for store and cache tests: one template whose priors reach every
lifecycle state and both clamps, and ``seed(graph, n)`` to load n entities of it."""

from __future__ import annotations

from engine.core.model import Channel, Decision, Entity, HopType, Hypothesis, Pattern, Template

NOW = 1_700_000_000.0


A, W, R, N = Decision.ACCEPT, Decision.WEAK_ACCEPT, Decision.REJECT, Decision.NO_PROGRESS


# priors chosen to reach every lifecycle state and both clamps
PATTERNS = (
    Pattern("Near certain", "CRM Implementation", 0.98),
    Pattern("Promising", "Ticketing", 0.64),
    Pattern("Middling", "Data Analytics", 0.5),
    Pattern("Weak", "General", 0.31),
    Pattern("Almost none", "C-Suite Hiring", 0.01),
)


TEMPLATE = Template(
    id="batch-test",
    name="Batch test",
    patterns=PATTERNS,
    channels=(Channel(HopType.OFFICIAL_SITE, 1), Channel(HopType.PRESS_RELEASE, 2)),
)


def entity(i: int, cluster: str = "north") -> Entity:
    return Entity(
        id=f"club-{i:03d}", name=f"Club {i}", sport="football", country="GB", type="club", tier=1,
        cluster=cluster, template_id=TEMPLATE.id,
    )  # fmt: skip


def seed(graph, n: int, *, clusters=("north", "south")) -> list[Entity]:
    graph.upsert_templates([TEMPLATE])
    ents = [entity(i, clusters[i % len(clusters)]) for i in range(n)]
    hyps = [Hypothesis.new(e.id, p, NOW) for e in ents for p in PATTERNS]
    graph.upsert_entities(ents, hyps)
    return ents
