"""Production traffic for the actionable feed's tests: entities run live as the production scheduler runs
them (engine.discovery.runs, stage ``production``, the live config), an evaluator that answers REJECT to
everything, and a stricter config made live the way a rollout promotes one.

``seed_feed(graph, ops, n, ran)`` seeds a catalogue of ``n`` entities, runs the first ``ran`` of them live at
``T0`` and returns (entity ids, the ids the graph says are actionable after that). ``feed_with_departure``
does that on a seeded graph and then takes one actionable entity out (a stricter config made live, a run that
meets only REJECTs), as the page and browser tests need.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.access import Actor, Role
from engine.core.configs import live_config, set_live_config
from engine.core.model import Decision, Depth, Entity, EvidenceResult, HopType, Hypothesis, RunResult, is_actionable
from engine.core.params import ParameterConfig
from engine.discovery import runs
from tests.support.actors import as_role

#: production's stage id (the scheduler's contract)
PRODUCTION = "production"
#: 2026-12-01 10:00 UTC: the first production visit of these tests
T0 = float(calendar.timegm((2026, 12, 1, 10, 0, 0)))
DAY = 86_400.0


def production_runs(
    graph,
    ops,
    entity_ids: Sequence[str],
    *,
    at: float,
    params: ParameterConfig | None = None,
    source=None,
    stage_id: str = PRODUCTION,
) -> list[RunResult]:
    """Run the entities live on the live config (or ``params``) with stage ``production`` (or, as a rollout's
    exposed entities run, the candidate and its stage key), stamped ``at``."""
    return runs.run_entities(
        graph,
        ops,
        list(entity_ids),
        params=params or live_config(ops),
        source=source,
        stage_id=stage_id,
        clock=lambda: at,
    )


class RejectEverything:
    """An evaluator whose every answer is a REJECT, with a link and an excerpt."""

    def evaluate(self, entity: Entity, hypothesis: Hypothesis, hop_type: HopType, depth: Depth, attempt: int):
        return EvidenceResult(
            Decision.REJECT,
            0.01,
            0.1,
            url=f"https://news.example/{entity.id}/{hypothesis.id.split('::')[-1]}",
            excerpt=f"{entity.name} denies any {hypothesis.pattern.lower()}",
        )

    def max_cost(self, hop_type: HopType, depth: Depth) -> float:
        return 0.01


#: who the helper's promotions are recorded as
PROMOTER = as_role(Role.APPROVER, key="test:promoter")


def promote(ops, cfg: ParameterConfig, *, run_id: int, at: float, actor: Actor = PROMOTER) -> None:
    """Make ``cfg`` live as a rollout's promotion does (one transaction, audited)."""
    with ops.transaction() as db:
        set_live_config(ops, db, cfg, run_id=run_id, actor=actor, at=at)


def actionable_now(graph, entity_ids: Sequence[str], params: ParameterConfig | None = None) -> set[str]:
    """The entities whose hypotheses pass the actionable gate now (the lifecycle's truth, read from the graph)."""
    p = params or ParameterConfig()
    hyps = graph.get_hypotheses_many(entity_ids)
    return {
        eid for eid in entity_ids if is_actionable(hyps[eid], p.actionable_min_accepts, p.actionable_min_categories)
    }


def seed_feed(graph, ops, n: int, ran: int, *, seed: int = 7, at: float = T0) -> tuple[list[str], set[str]]:
    """Seed ``n`` entities, run the first ``ran`` live at ``at``; (all ids, ids actionable after the runs)."""
    seed_catalogue(graph, n, seed, load_templates())
    ids = graph.list_entity_ids()
    assert not actionable_now(graph, ids), "a freshly seeded catalogue has no ACCEPT yet"
    production_runs(graph, ops, ids[:ran], at=at)
    return ids, actionable_now(graph, ids)


def feed_with_departure(graph, ops, ran: int) -> tuple[set[str], str]:
    """On a seeded graph: run the first ``ran`` entities live at T0, then make a stricter gate live (DAY later)
    and run one of the actionable ones again at T0 + 2 DAY against REJECTs only. Returns (the entities in the
    feed now, the one that left)."""
    ids = graph.list_entity_ids()
    production_runs(graph, ops, ids[:ran], at=T0)
    truth = actionable_now(graph, ids)
    assert truth, "the world should make some entities actionable"
    gone = sorted(truth)[0]
    promote(ops, ParameterConfig(actionable_min_accepts=10), run_id=2, at=T0 + DAY)
    production_runs(graph, ops, [gone], at=T0 + 2 * DAY, source=RejectEverything())
    return truth - {gone}, gone
