"""The entity view: what the console shows about one entity, as plain data.

Everything the Hypotheses page's entity view draws is computed here, without
Streamlit, so it is tested on its own:

* ``rank_for_view``   the entity's hypotheses in the order the new system would
  pick them next (ACTIVE ones by selection score = EIG + bonuses, engine.discovery.eig),
  then the ones it would not pick (PROMOTED, DEGRADED, SATURATED, KILLED) by
  EIG; each with its factors: uncertainty, novelty (cluster dampening),
  category value and recency;
* ``evidence_rows``   the evidence trail from ``GraphStore.get_evidence``;
* ``run_summary`` / ``hop_rows`` / ``confidence_rows``  what a discovery run
  did: stop reason, iterations, cost, actionable, the hop-by-hop trail and the
  confidence of every hypothesis before and after.

``load_entity_view`` and ``run_entity`` are the two functions that touch the
stores (passed in). Rows are lists of dicts with stable keys (the ``*_COLUMNS``
tuples); the console turns them into frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.core.access import Actor
from engine.core.configs import live_config
from engine.core.model import Depth, Entity, Hypothesis, RunResult, Status
from engine.core.params import ParameterConfig
from engine.discovery import runs
from engine.discovery.eig import EIGBreakdown, rank_hypotheses
from engine.store.access import authorize

# --------------------------------------------------------------------------- EIG ranking

RANKING_COLUMNS = (
    "rank", "pattern", "category", "status", "eig", "score", "confidence", "uncertainty", "novelty",
    "confirmations", "value", "recency", "age_days", "accepts", "weak_accepts", "rejects", "no_progress",
    "last_delta", "id",
)  # fmt: skip


def rank_for_view(
    hyps: Iterable[Hypothesis],
    params: ParameterConfig,
    *,
    now: float,
    confirmations: Mapping[str, int] | None = None,
    cluster_size: int | None = None,
) -> list[EIGBreakdown]:
    """ACTIVE hypotheses in the new system's pick order, then the rest by EIG (ties by id)."""
    scored = rank_hypotheses(hyps, params, now=now, confirmations=confirmations, cluster_size=cluster_size)
    active = [b for b in scored if b.status.is_selectable()]
    rest = sorted((b for b in scored if not b.status.is_selectable()), key=lambda b: (-b.eig, b.hypothesis_id))
    return active + rest


def ranking_rows(ranking: Sequence[EIGBreakdown], hyps: Iterable[Hypothesis]) -> list[dict[str, Any]]:
    """One row per hypothesis in ``ranking`` order; ``rank`` is None for one the system would not pick."""
    by_id = {h.id: h for h in hyps}
    rows = []
    rank = 0
    for b in ranking:
        h = by_id[b.hypothesis_id]
        if b.status.is_selectable():
            rank += 1
        rows.append(
            {
                "rank": rank if b.status.is_selectable() else None,
                "pattern": b.pattern,
                "category": b.category,
                "status": b.status.value,
                "eig": b.eig,
                "score": b.score,
                "confidence": b.confidence,
                "uncertainty": b.uncertainty,
                "novelty": b.novelty,
                "confirmations": b.confirmations,
                "value": b.value,
                "recency": b.recency,
                "age_days": b.age_days,
                "accepts": h.accepts,
                "weak_accepts": h.weak_accepts,
                "rejects": h.rejects,
                "no_progress": h.no_progress,
                "last_delta": h.last_delta,
                "id": h.id,
            }
        )
    return rows


# --------------------------------------------------------------------------- evidence trail

EVIDENCE_COLUMNS = (
    "at", "run_id", "system", "iteration", "pattern", "hop_type", "depth", "decision", "delta",
    "confidence_after", "cost_usd", "latency_s", "url", "excerpt", "error", "rolled_back", "hypothesis_id",
)  # fmt: skip


def depth_name(depth: Any) -> str:
    try:
        return Depth(int(depth)).name
    except (TypeError, ValueError):
        return str(depth)


def evidence_rows(evidence: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """GraphStore.get_evidence rows (newest first) in display form: depth by name, error '' when none."""
    return [
        {
            "at": float(ev["at"]),
            "run_id": ev["run_id"],
            "system": ev["system"],
            "iteration": int(ev["iteration"]),
            "pattern": ev["pattern"],
            "hop_type": ev["hop_type"],
            "depth": depth_name(ev["depth"]),
            "decision": ev["decision"],
            "delta": float(ev["delta"]),
            "confidence_after": float(ev["confidence_after"]),
            "cost_usd": float(ev["cost_usd"]),
            "latency_s": float(ev["latency_s"]),
            "url": ev.get("url") or "",
            "excerpt": ev.get("excerpt") or "",
            "error": ev.get("error") or "",
            "rolled_back": bool(ev.get("rolled_back")),
            "hypothesis_id": ev["hypothesis_id"],
        }
        for ev in evidence
    ]


# --------------------------------------------------------------------------- a run's result

HOP_COLUMNS = (
    "iteration", "pattern", "category", "eig", "hop_type", "depth", "decision", "delta", "confidence_after",
    "cost_usd", "cumulative_cost_usd", "latency_s", "url", "excerpt", "error",
)  # fmt: skip

CONFIDENCE_COLUMNS = (
    "pattern", "category", "before", "after", "change", "status_before", "status_after", "hops", "id",
)  # fmt: skip


def stop_code(stop_reason: str) -> str:
    return stop_reason.split(":", 1)[0]


def run_summary(result: RunResult) -> dict[str, Any]:
    """The headline figures of one run."""
    return {
        "system": result.system,
        "shadow": bool(result.shadow),
        "stop": stop_code(result.stop_reason),
        "stop_reason": result.stop_reason,
        "iterations": result.iterations,
        "cost_usd": float(result.cost_usd),
        "actionable": bool(result.actionable),
        "accepts": sum(1 for r in result.hops if r.decision.value == "ACCEPT"),
        "promoted": sum(1 for o in result.outcomes if o.status is Status.PROMOTED),
        "errors": result.error_count,
        "evidence_latency_s": float(result.evidence_latency_s),
        "engine_time_ms": float(result.engine_time_s) * 1000.0,
        "config_hash": result.config_hash,
    }


def hop_rows(result: RunResult) -> list[dict[str, Any]]:
    """The run's hops in order, with the running cost."""
    spent = 0.0
    rows = []
    for r in result.hops:
        spent += r.cost_usd
        rows.append(
            {
                "iteration": r.iteration,
                "pattern": r.pattern,
                "category": r.category,
                "eig": float(r.eig),
                "hop_type": r.hop_type.value,
                "depth": depth_name(r.depth),
                "decision": r.decision.value,
                "delta": float(r.delta),
                "confidence_after": float(r.confidence_after),
                "cost_usd": float(r.cost_usd),
                "cumulative_cost_usd": spent,
                "latency_s": float(r.latency_s),
                "url": r.url,
                "excerpt": r.excerpt,
                "error": r.error or "",
            }
        )
    return rows


def confidence_rows(before: Iterable[Hypothesis], result: RunResult) -> list[dict[str, Any]]:
    """Every hypothesis's confidence and status before and after the run; most moved first."""
    hops: dict[str, int] = {}
    for r in result.hops:
        hops[r.hypothesis_id] = hops.get(r.hypothesis_id, 0) + 1
    after = {o.id: o for o in result.outcomes}
    rows: list[dict[str, Any]] = []
    for h in before:
        o = after.get(h.id)
        conf_after = o.confidence if o is not None else h.confidence
        rows.append(
            {
                "pattern": h.pattern,
                "category": h.category,
                "before": float(h.confidence),
                "after": float(conf_after),
                "change": float(conf_after - h.confidence),
                "status_before": h.status.value,
                "status_after": (o.status if o is not None else h.status).value,
                "hops": hops.get(h.id, 0),
                "id": h.id,
            }
        )
    rows.sort(key=lambda r: (-abs(r["change"]), -r["hops"], r["pattern"]))
    return rows


def confidence_chart_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """confidence_rows in long form for a grouped bar chart: one row per (pattern, before|after)."""
    return [
        {"pattern": r["pattern"], "when": when, "confidence": r[when]} for r in rows for when in ("before", "after")
    ]


def trajectory_rows(before: Iterable[Hypothesis], result: RunResult) -> list[dict[str, Any]]:
    """Confidence of each hypothesis the run probed, hop by hop: its start at iteration 0, then one
    point per hop on it (iteration, confidence after). Long form, for a line chart."""
    start = {h.id: h.confidence for h in before}
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for r in result.hops:
        if r.hypothesis_id not in seen:
            seen.add(r.hypothesis_id)
            first = start.get(r.hypothesis_id, r.confidence_after - r.delta)
            rows.append({"iteration": 0, "pattern": r.pattern, "confidence": float(first), "decision": "start"})
        rows.append(
            {
                "iteration": r.iteration,
                "pattern": r.pattern,
                "confidence": float(r.confidence_after),
                "decision": r.decision.value,
            }
        )
    return rows


def filter_evidence(
    rows: Iterable[Mapping[str, Any]],
    runs: Sequence[str] = (),
    patterns: Sequence[str] = (),
    *,
    include_rolled_back: bool = True,
) -> list[Mapping[str, Any]]:
    """Evidence rows of the chosen runs and hypotheses (an empty choice keeps all)."""
    wanted_runs, wanted_patterns = set(runs), set(patterns)
    return [
        r
        for r in rows
        if (not wanted_runs or r["run_id"] in wanted_runs)
        and (not wanted_patterns or r["pattern"] in wanted_patterns)
        and (include_rolled_back or not r["rolled_back"])
    ]


# --------------------------------------------------------------------------- store edges


def live_params(ops) -> ParameterConfig:
    """The configuration production runs with (engine.core.configs.live_config)."""
    return live_config(ops)


@dataclass(frozen=True)
class EntityView:
    """Everything the view shows about one entity at one moment."""

    entity: Entity
    hypotheses: tuple[Hypothesis, ...]
    ranking: tuple[EIGBreakdown, ...]
    evidence: tuple[dict[str, Any], ...]  # evidence_rows, newest first
    confirmations: Mapping[str, int] = field(default_factory=dict)
    cluster_size: int | None = None
    now: float = 0.0
    config_hash: str = ""

    def ranking_rows(self) -> list[dict[str, Any]]:
        return ranking_rows(self.ranking, self.hypotheses)


def load_entity_view(
    graph,
    entity_id: str,
    params: ParameterConfig,
    *,
    now: float | None = None,
    evidence_limit: int = 200,
) -> EntityView:
    """Read the entity, its hypotheses, its cluster (size, confirmations) and its evidence trail.

    Reads through engine.discovery.runs.load_context, the same loader a run uses, so the
    ranking shown is the one the next run starts from. Unknown entity ->
    ``UnknownEntity`` (a one-line DiscoveryError).
    """
    ctx = runs.load_context(graph, entity_id)
    when = time.time() if now is None else now
    ranking = tuple(
        rank_for_view(ctx.hypotheses, params, now=when, confirmations=ctx.confirmations, cluster_size=ctx.cluster_size)
    )
    evidence = tuple(evidence_rows(graph.get_evidence(ctx.entity.id, limit=evidence_limit)))
    return EntityView(
        ctx.entity,
        tuple(ctx.hypotheses),
        ranking,
        evidence,
        dict(ctx.confirmations),
        ctx.cluster_size,
        when,
        params.hash(),
    )


@dataclass(frozen=True)
class EntityRun:
    """One run from the entity view: the result and the state it started from."""

    result: RunResult
    run_id: str
    before: tuple[Hypothesis, ...]

    def summary(self) -> dict[str, Any]:
        return {**run_summary(self.result), "run_id": self.run_id}

    def hop_rows(self) -> list[dict[str, Any]]:
        return hop_rows(self.result)

    def confidence_rows(self) -> list[dict[str, Any]]:
        return confidence_rows(self.before, self.result)

    def trajectory_rows(self) -> list[dict[str, Any]]:
        return trajectory_rows(self.before, self.result)


def run_entity(
    graph,
    ops,
    entity_id: str,
    *,
    actor: Actor,
    system: str = "new",
    shadow: bool = False,
    params: ParameterConfig | None = None,
    world_seed: int | None = None,
    clock: Callable[[], float] = time.time,
) -> EntityRun:
    """Run one system on one entity of the graph through engine.discovery.runs and return what it did
    (operator: ``actor`` is authorized for ``discovery.run`` before the entity is read).

    Live (``shadow=False``): the hypotheses' new state and the evidence trail are
    written to the graph in one call; shadow: nothing is written to the graph.
    Either way the run is recorded as a metric event (engine.discovery.runs does both).
    ``world_seed`` None: the default simulated world. Unknown entity -> one-line
    DiscoveryError and nothing written.
    """
    authorize(ops, actor, "discovery.run")
    ctx = runs.load_context(graph, entity_id)  # UnknownEntity before anything is run or written
    source = None
    if world_seed is not None:
        source = runs.make_source(
            runs.EvidenceSpec(world_seed=world_seed), templates={ctx.template.id: ctx.template}, entities=[ctx.entity]
        )
    run_id = runs.new_run_id(system, shadow, clock)
    results = runs.run_entities(
        graph,
        ops,
        [ctx.entity.id],
        system=system,
        params=params,
        source=source,
        shadow=shadow,
        run_id=run_id,
        clock=clock,
    )
    return EntityRun(result=results[0], run_id=run_id, before=tuple(ctx.hypotheses))
