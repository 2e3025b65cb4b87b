"""Demo monitoring data: a day of real discovery runs, old and new, so the console's charts are not empty.

Nothing here is a made-up number. ``seed_demo_metrics`` takes ~200 entities
spread over the catalogue in the graph, splits them into time slots over the
last 24 hours, and for each slot really runs the new and the old system
(engine.discovery.runs.run_entities, shadow: the graph is not changed) against the
simulated world, with the slot's virtual time as the clock. Every run is
recorded as a metric event through engine.monitoring.events.record_runs (SQLite and the
JSONL log), with the world's truth, exactly as a live shadow comparison would
be; the only thing virtual is *when* (the slot's timestamp).

``python -m engine demo --ensure`` (what ``make run`` calls) runs it when the
store has no metric event yet, so a first start has charts; later starts add
nothing. Run ids start with ``demo-`` so demo events are easy to tell apart.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.catalogue.generator import DEMO_ENTITIES as DEMO_CATALOGUE_ENTITIES
from engine.catalogue.generator import DEMO_SEED, SeedReport, seed_entities
from engine.core.access import Actor
from engine.discovery.runs import METRICS_LOG_NAME, EvidenceSpec, make_source, run_entities
from engine.monitoring.events import TABLE, count_events
from engine.monitoring.jsonlog import JsonlLog
from engine.store.access import authorize
from engine.store.opsdb import open_ops_db

DEMO_ENTITIES = 200
DEMO_SPAN_S = 24 * 3600.0
DEMO_SLOTS = 48  # one every 30 minutes
DEMO_WORLD_SEED = 1
RUN_PREFIX = "demo-"


@dataclass(frozen=True)
class DemoMetricsReport:
    entities: int
    events: int
    slots: int
    span_s: float
    seconds: float
    skipped_because: str = ""

    def summary(self) -> str:
        if self.skipped_because:
            return f"demo metrics: none added ({self.skipped_because})"
        return (
            f"demo metrics: ran the new and the old system (shadow, simulated world) on {self.entities} entities "
            f"at {self.slots} times over the last {self.span_s / 3600:.0f} h: {self.events:,} metric events "
            f"recorded in {self.seconds:.1f} s"
        )


def pick_entities(ids: list[str], n: int) -> list[str]:
    """``n`` ids spread evenly over the sorted catalogue (all of them if there are fewer)."""
    ids = sorted(ids)
    if len(ids) <= n:
        return ids
    step = len(ids) / n
    return [ids[int(i * step)] for i in range(n)]


def _fixed_clock(at: float) -> Callable[[], float]:
    """A clock that always reads ``at``: every event of a demo slot is stamped with the slot's time."""
    return lambda: at


def seed_demo_metrics(
    settings,
    graph,
    *,
    ops=None,
    entities: int = DEMO_ENTITIES,
    span_s: float = DEMO_SPAN_S,
    slots: int = DEMO_SLOTS,
    now: float | None = None,
    only_if_empty: bool = True,
    world_seed: int = DEMO_WORLD_SEED,
    catalogue_only: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DemoMetricsReport:
    """Really run both systems on ``entities`` catalogue entities spread over ``slots`` times in the last ``span_s``.

    With ``only_if_empty`` (the default) nothing runs when any metric event is
    already recorded. With ``catalogue_only`` nothing runs unless the graph was
    filled by the generated catalogue (a ``seed`` in the audit log) and never by
    an import: an operator's own entities never get simulated demo events.
    Returns what was done; the run is audited.
    """
    started = time.perf_counter()
    ops = ops if ops is not None else open_ops_db(settings)
    if only_if_empty and count_events(ops) > 0:
        return DemoMetricsReport(0, 0, 0, span_s, 0.0, f"{count_events(ops):,} metric events already recorded")
    if catalogue_only:
        if ops.list_audit(1, action="import"):
            return DemoMetricsReport(0, 0, 0, span_s, 0.0, "the graph holds imported entities, not only the demo")
        if not ops.list_audit(1, action="seed"):
            return DemoMetricsReport(0, 0, 0, span_s, 0.0, "the graph was not seeded from the demo catalogue")
    ids = pick_entities(graph.list_entity_ids(), entities)
    if not ids:
        return DemoMetricsReport(0, 0, 0, span_s, 0.0, "the graph holds no entities")
    now = time.time() if now is None else now
    slots = max(1, min(slots, len(ids)))
    templates = {t.id: t for t in graph.list_templates()}
    source = make_source(
        EvidenceSpec(world_seed=world_seed), templates=templates, entities=graph.get_entities(ids).values()
    )
    log = JsonlLog.for_settings(settings, METRICS_LOG_NAME)
    events = 0
    for k in range(slots):
        group = ids[k::slots]  # every slot gets entities from all over the catalogue
        at = now - span_s + (k + 0.5) * span_s / slots
        for system in ("new", "old"):
            results = run_entities(
                graph,
                ops,
                group,
                system=system,
                source=source,
                shadow=True,
                run_id=f"{RUN_PREFIX}{system}-{k:02d}",
                clock=_fixed_clock(at),
                log=log,
                rng=random.Random(f"{world_seed}-{k}"),  # the old system's pattern order, reproducible
            )
            events += len(results)
        if progress is not None:
            progress(k + 1, slots)
    seconds = time.perf_counter() - started
    report = DemoMetricsReport(len(ids), events, slots, span_s, seconds)
    ops.audit(
        "demo",
        "metrics.seed_demo",
        TABLE,
        {"entities": len(ids), "events": events, "slots": slots, "span_s": span_s, "world_seed": world_seed},
    )
    return report


@dataclass(frozen=True)
class DemoLoad:
    """What ``load_demo`` did: the catalogue it seeded (None when ``ensure`` found entities) and the metrics."""

    catalogue: SeedReport | None
    metrics: DemoMetricsReport
    present: int


def load_demo(settings, graph, ops, templates, *, actor: Actor, ensure: bool = False) -> DemoLoad:
    """Load the demo catalogue and a day of demo runs (operator; ``python -m engine demo``).

    With ``ensure`` a graph that already holds entities is left as it is (only demo metrics are added,
    and only for a graph that holds the demo catalogue alone).
    """
    who = authorize(ops, actor, "demo.load")
    present = graph.count_entities()
    if ensure and present:
        return DemoLoad(None, seed_demo_metrics(settings, graph, ops=ops, catalogue_only=True), present)
    report = seed_entities(ops, graph, DEMO_CATALOGUE_ENTITIES, DEMO_SEED, templates, actor=who, details={"demo": True})
    return DemoLoad(report, seed_demo_metrics(settings, graph, ops=ops), present)
