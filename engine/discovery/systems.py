"""The two discovery systems: one entity in, one RunResult out.

``run_discovery`` runs either system over one entity's hypotheses against an
evidence source. Both systems share the update rule (model.apply_decision with
the config's deltas and lifecycle rules), the evidence source, the actionable
gate and the cost cap, which is checked *before* a hop is bought: a hop is
bought only if spend + its quote stays within ``params.cost_cap_usd``
(max cost less the safety margin), so a run never exceeds ``max_cost_usd`` as
long as the source keeps its quotes.

New system, each iteration:
  1. stop rules, in this order: actionable and best confidence > stop_confidence;
     no ACTIVE hypothesis; confidence flat (total |change| over the last
     ``flat_window`` hops <= ``flat_epsilon``); depth exhausted (``depth_patience`` hops in a row
     without an ACCEPT or WEAK_ACCEPT at ``max_depth``); ``max_iterations``;
  2. rank ACTIVE hypotheses by EIG + exploration/exploitation bonuses (engine.discovery.eig)
     and take the top one;
  3. choose a hop type among the template's channels allowed at the current depth
     (model.hops_allowed) and affordable, by channel score (see ``channel_scores``);
     none affordable stops the run (cost cap);
  4. buy the hop, update, and go one depth deeper (SURFACE -> OPERATIONAL ->
     AUTHORITY) after ``depth_patience`` hops in a row without an (weak) accept.

Old system (the baseline of DESIGN.md): hypotheses round-robin in template order
(or shuffled by a passed-in ``rng``), each hypothesis walking the template's
channels in fixed priority order at each channel's own depth; no EIG, no early
stop: only max iterations, the cost cap and (necessarily) nothing ACTIVE left.

A live run (``store`` given, ``shadow=False``) writes once, at the end, through
``store.apply_run`` (hypothesis state and evidence trail in one atomic call), so
a run that fails half-way writes nothing. A shadow run computes the same and
writes nothing.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.catalogue.generator import build_hypotheses
from engine.core.errors import DiscoveryError
from engine.core.model import (
    Channel,
    Decision,
    Depth,
    DomainError,
    Entity,
    EvidenceResult,
    HopRecord,
    HopType,
    Hypothesis,
    HypothesisOutcome,
    RunResult,
    Status,
    Template,
    apply_decision,
    is_actionable,
)
from engine.core.params import DEFAULT_PARAMS, ParameterConfig
from engine.discovery.eig import best_hypothesis, score_hypothesis
from engine.discovery.evidence import EvidenceSource
from engine.discovery.pool import in_flight_for, map_in_flight

SYSTEMS = ("new", "old")
#: entities per batch of a many-entity run: every entity of a batch sees the cluster confirmations as they
#: stood when its batch began, so how many run at once never changes an answer (engine.discovery.runs)
#: (big enough that a batch is many times the entities in flight: a batch waits for its slowest entity)
CONFIRMATION_BATCH = 400

#: Stop reason codes; RunResult.stop_reason is "<code>: <why, with the numbers>".
STOP_CODES = (
    "actionable",
    "nothing_active",
    "flat",
    "depth_exhausted",
    "max_iterations",
    "cost_cap",
    "no_channel",
)


def stop_code(stop_reason: str) -> str:
    return stop_reason.split(":", 1)[0]


class DiscoveryStore(Protocol):
    """What the engine needs from a graph repository (GraphStore and its cached wrapper fit)."""

    def get_entity(self, entity_id: str) -> Entity: ...
    def get_template(self, template_id: str) -> Template: ...
    def get_hypotheses(self, entity_id: str) -> list[Hypothesis]: ...
    def cluster_confirmations(self, cluster: str) -> dict[str, int]: ...
    def apply_run(
        self, entity_id: str, run_id: str, system: str, hyps: Sequence[Hypothesis], records: Sequence[HopRecord]
    ) -> None: ...


# --------------------------------------------------------------------------- channel choice


@dataclass(frozen=True)
class ChannelScore:
    hop_type: HopType
    score: float
    native: float
    yield_estimate: float
    cost_relative: float
    repeats: int
    priority: float


def channel_scores(
    channels: Sequence[Channel],
    depth: Depth,
    quotes: Mapping[HopType, float],
    repeats: Mapping[HopType, int],
    observed: Mapping[HopType, tuple[int, int]],
    params: ParameterConfig,
) -> list[ChannelScore]:
    """Score each channel for the chosen hypothesis, best first. Pure.

    score = w_depth x native + w_yield x yield - w_cost x cost - w_repeat x repeats + w_priority x priority
      native   min depth of the hop type / current depth (1 for a channel the current depth just opened)
      yield    (informative answers + 1) / (uses + 2) of that hop type so far in this run (Laplace)
      cost     quote / dearest quote among the candidates
      repeats  earlier uses of that hop type on this hypothesis in this run
      priority 1 / the template's priority (1 = the template's first channel)
    """
    if not channels:
        return []
    dearest = max(quotes[c.hop_type] for c in channels) or 1.0
    out = []
    for c in channels:
        n, informative = observed.get(c.hop_type, (0, 0))
        native = int(c.hop_type.min_depth) / int(depth)
        yield_est = (informative + 1) / (n + 2)
        cost_rel = quotes[c.hop_type] / dearest
        rep = repeats.get(c.hop_type, 0)
        prio = 1.0 / max(1, c.priority)
        score = (
            params.channel_w_depth * native
            + params.channel_w_yield * yield_est
            - params.channel_w_cost * cost_rel
            - params.channel_w_repeat * rep
            + params.channel_w_priority * prio
        )
        out.append(ChannelScore(c.hop_type, score, native, yield_est, cost_rel, rep, prio))
    order = {c.hop_type: i for i, c in enumerate(sorted(channels, key=lambda c: (c.priority, c.hop_type)))}
    out.sort(key=lambda s: (-s.score, order[s.hop_type]))
    return out


# --------------------------------------------------------------------------- the run


class _Run:
    """Mutable state of one run; both systems drive it."""

    def __init__(self, entity, template, hypotheses, source, params, system, clock, timer, confirmations, cluster_size):
        self.entity = entity
        self.template = template
        self.source = source
        self.params = params
        self.system = system
        self.clock = clock
        self.timer = timer
        self.confirmations = confirmations
        self.cluster_size = cluster_size
        self.rules = params.to_lifecycle_rules()
        self.deltas = params.to_deltas()
        self.hyps: dict[str, Hypothesis] = {h.id: h for h in hypotheses}
        self.touched: set[str] = set()
        self.tries: Counter[str] = Counter()
        self.uses: Counter[tuple[str, HopType]] = Counter()
        self.observed: dict[HopType, tuple[int, int]] = {}
        self.spent = 0.0
        self.records: list[HopRecord] = []
        self.evidence_time = 0.0
        self.errors: list[str] = []
        self._quotes: dict[tuple[HopType, Depth], float] = {}

    def quote(self, hop: HopType, depth: Depth) -> float:
        key = (hop, depth)
        if key not in self._quotes:
            self._quotes[key] = float(self.source.max_cost(hop, depth))
        return self._quotes[key]

    def affordable(self, hop: HopType, depth: Depth) -> bool:
        return self.spent + self.quote(hop, depth) <= self.params.cost_cap_usd + 1e-12

    def active(self) -> list[Hypothesis]:
        return [h for h in self.hyps.values() if h.status.is_selectable()]

    def actionable(self) -> bool:
        return is_actionable(
            self.hyps.values(), self.params.actionable_min_accepts, self.params.actionable_min_categories
        )

    def best_confidence(self) -> float:
        return max((h.confidence for h in self.hyps.values()), default=0.0)

    def hop(self, h: Hypothesis, hop: HopType, depth: Depth, eig: float) -> HopRecord:
        attempt = self.uses[(h.id, hop)]
        t0 = self.timer()
        result: EvidenceResult = self.source.evaluate(self.entity, h, hop, depth, attempt)
        self.evidence_time += self.timer() - t0
        decision = Decision.NO_PROGRESS if result.error else result.decision
        updated = apply_decision(h, decision, self.clock(), self.deltas, self.rules)
        self.hyps[h.id] = updated
        self.touched.add(h.id)
        self.tries[h.id] += 1
        self.uses[(h.id, hop)] += 1
        n, informative = self.observed.get(hop, (0, 0))
        self.observed[hop] = (n + 1, informative + (1 if decision.is_progress() else 0))
        self.spent += result.cost_usd
        if result.error:
            self.errors.append(result.error)
        record = HopRecord(
            iteration=len(self.records) + 1,
            hypothesis_id=h.id,
            pattern=h.pattern,
            category=h.category,
            eig=round(eig, 6),
            hop_type=hop,
            depth=depth,
            decision=decision,
            delta=updated.confidence - h.confidence,
            confidence_after=updated.confidence,
            cost_usd=result.cost_usd,
            latency_s=result.latency_s,
            url=result.url,
            excerpt=result.excerpt,
            error=result.error,
        )
        self.records.append(record)
        return record


def _run_new(run: _Run) -> str:
    p = run.params
    depth = Depth.SURFACE
    streak = 0  # hops in a row at this depth without an ACCEPT / WEAK_ACCEPT
    channels = run.template.channels
    while True:
        if run.actionable() and run.best_confidence() > p.stop_confidence:
            return f"actionable: actionable and best confidence {run.best_confidence():.2f} > {p.stop_confidence:.2f}"
        active = run.active()
        if not active:
            return "nothing_active: no ACTIVE hypothesis left"
        if len(run.records) >= p.flat_window:
            moved = sum(abs(r.delta) for r in run.records[-p.flat_window :])
            if moved <= p.flat_epsilon + 1e-9:
                return (
                    f"flat: confidence moved {moved:.2f} in total over the last {p.flat_window} hops "
                    f"(<= {p.flat_epsilon:.2f})"
                )
        if streak >= p.depth_patience and depth >= p.max_depth:
            return (
                f"depth_exhausted: {streak} hops without an accept at {Depth(depth).name} "
                f"(max depth {Depth(p.max_depth).name})"
            )
        if len(run.records) >= p.max_iterations:
            return f"max_iterations: {p.max_iterations} hops done"
        if streak >= p.depth_patience:
            depth, streak = Depth(depth + 1), 0
        allowed = [c for c in channels if c.hop_type.min_depth <= depth]
        while not allowed and depth < p.max_depth:
            depth = Depth(depth + 1)
            allowed = [c for c in channels if c.hop_type.min_depth <= depth]
        if not allowed:
            return f"no_channel: template {run.template.id} has no channel usable at {Depth(depth).name}"
        affordable = [c for c in allowed if run.affordable(c.hop_type, depth)]
        if not affordable:
            cheapest = min(run.quote(c.hop_type, depth) for c in allowed)
            return (
                f"cost_cap: spent ${run.spent:.3f}; the cheapest allowed hop (quote ${cheapest:.3f}) would "
                f"cross the ${p.cost_cap_usd:.3f} cap (max ${p.max_cost_usd:.2f} less "
                f"{p.cost_safety_margin:.0%} margin)"
            )
        best = best_hypothesis(  # == rank_hypotheses(...)[0], without building every breakdown
            active,
            p,
            now=run.clock(),
            confirmations=run.confirmations,
            cluster_size=run.cluster_size,
            tries=run.tries,
        )
        if best is None:  # cannot happen: `active` is not empty here
            raise DiscoveryError(
                f"entity {run.entity.id!r}: best_hypothesis ranked none of {len(active)} active hypotheses"
            )
        h, eig = best
        scores = channel_scores(
            affordable,
            depth,
            {c.hop_type: run.quote(c.hop_type, depth) for c in affordable},
            {c.hop_type: run.uses[(h.id, c.hop_type)] for c in affordable},
            run.observed,
            p,
        )
        record = run.hop(h, scores[0].hop_type, depth, eig)
        if record.decision in (Decision.ACCEPT, Decision.WEAK_ACCEPT):
            streak = 0
        else:
            streak += 1


def _run_old(run: _Run, rng: random.Random | None) -> str:
    p = run.params
    index = {pat.name: i for i, pat in enumerate(run.template.patterns)}
    order = sorted(run.hyps, key=lambda hid: (index.get(run.hyps[hid].pattern, len(index)), hid))
    if rng is not None:
        rng.shuffle(order)
    channels = [hop for hop in run.template.channel_order() if hop.min_depth <= p.max_depth]
    if not channels:
        return f"no_channel: template {run.template.id} has no channel within max depth {Depth(p.max_depth).name}"
    cursor = 0
    walked: Counter[str] = Counter()  # hops made on each hypothesis: its position in the channel order
    while True:
        if not run.active():
            return "nothing_active: no ACTIVE hypothesis left"
        if len(run.records) >= p.max_iterations:
            return f"max_iterations: {p.max_iterations} hops done"
        while not run.hyps[order[cursor % len(order)]].status.is_selectable():
            cursor += 1
        h = run.hyps[order[cursor % len(order)]]
        cursor += 1
        hop = channels[walked[h.id] % len(channels)]
        depth = hop.min_depth
        if not run.affordable(hop, depth):
            return (
                f"cost_cap: spent ${run.spent:.3f}; the next hop ({hop.value}, quote ${run.quote(hop, depth):.3f}) "
                f"would cross the ${p.cost_cap_usd:.3f} cap"
            )
        eig = score_hypothesis(
            h, p, now=run.clock(), confirmations=run.confirmations, cluster_size=run.cluster_size
        ).eig
        run.hop(h, hop, depth, eig)  # EIG is recorded for the trail only; the old system does not use it
        walked[h.id] += 1


def run_discovery(
    entity: Entity,
    template: Template,
    hypotheses: Sequence[Hypothesis],
    source: EvidenceSource,
    params: ParameterConfig = DEFAULT_PARAMS,
    system: str = "new",
    *,
    store: DiscoveryStore | None = None,
    shadow: bool = False,
    clock: Callable[[], float] = time.time,
    cluster_confirmations: Mapping[str, int] | None = None,
    cluster_size: int | None = None,
    run_id: str | None = None,
    rng: random.Random | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> RunResult:
    """Run one system over one entity and return what happened.

    ``store`` None or ``shadow=True``: nothing is written. Otherwise the final
    hypothesis state and the evidence trail go to ``store.apply_run`` in one call.
    ``cluster_confirmations`` (pattern -> PROMOTED entities in the entity's
    cluster) defaults to ``store.cluster_confirmations(entity.cluster)`` when a
    store is given, else none; ``cluster_size`` None means unknown (dampening
    applies). ``rng`` shuffles the old system's pattern order (template order
    without it). ``engine_time_s`` excludes evidence calls and store I/O.
    """
    if system not in SYSTEMS:
        raise DomainError(f"unknown system {system!r}: use one of {', '.join(SYSTEMS)}")
    if entity.template_id != template.id:
        raise DomainError(f"entity {entity.id!r} uses template {entity.template_id!r}, not {template.id!r}")
    for h in hypotheses:
        if h.entity_id != entity.id:
            raise DomainError(f"hypothesis {h.id!r} belongs to {h.entity_id!r}, not to entity {entity.id!r}")
    started = timer()
    io_time = 0.0
    if cluster_confirmations is None and store is not None:
        t0 = timer()
        cluster_confirmations = store.cluster_confirmations(entity.cluster)
        io_time += timer() - t0
    run = _Run(
        entity,
        template,
        hypotheses,
        source,
        params,
        system,
        clock,
        timer,
        dict(cluster_confirmations or {}),
        cluster_size,
    )
    reason = _run_new(run) if system == "new" else _run_old(run, rng)
    records = tuple(run.records)
    write = store is not None and not shadow
    if run_id is None:
        digest = hashlib.blake2b(f"{entity.id}|{system}|{params.hash()}|{clock()!r}".encode(), digest_size=5)
        run_id = f"{system}-{digest.hexdigest()}"
    result = RunResult(
        entity_id=entity.id,
        system=system,
        config_hash=params.hash(),
        iterations=len(records),
        cost_usd=round(run.spent, 6),
        hops=records,
        outcomes=tuple(
            HypothesisOutcome(h.id, h.pattern, h.category, h.confidence, h.status, h.accepts) for h in run.hyps.values()
        ),
        actionable=run.actionable(),
        stop_reason=reason,
        engine_time_s=max(0.0, timer() - started - run.evidence_time - io_time),
        evidence_latency_s=sum(r.latency_s for r in records),
        shadow=not write,
        errors=tuple(run.errors),
    )
    if write and records and store is not None:  # `write` implies a store; the check narrows the Optional
        store.apply_run(entity.id, run_id, system, [run.hyps[hid] for hid in run.hyps if hid in run.touched], records)
    return result


# --------------------------------------------------------------------------- many entities, in memory


def run_batch(
    entities: Iterable[Entity],
    templates: Mapping[str, Template],
    source: EvidenceSource,
    params: ParameterConfig = DEFAULT_PARAMS,
    system: str = "new",
    *,
    now: float = 0.0,
    cluster_sizes: Mapping[str, int] | None = None,
    timer: Callable[[], float] = time.perf_counter,
    concurrency: int = 1,
    batch_size: int = CONFIRMATION_BATCH,
) -> list[RunResult]:
    """Shadow-run one system over fresh hypotheses of many entities, with no store.

    Hypotheses start from their priors (catalogue.build_hypotheses). Cluster
    dampening sees what live runs in batches would have written: each batch of
    ``batch_size`` entities sees the PROMOTED patterns of the earlier batches'
    entities of its cluster (as engine.discovery.runs.run_entities does), so
    ``concurrency`` (entities in flight, engine.discovery.pool) never changes
    an answer. ``cluster_sizes`` defaults to counting ``entities`` per cluster.
    Time is frozen at ``now`` (virtual). The first error (in the order given)
    stops the run and propagates.
    """

    entities = list(entities)
    sizes = dict(cluster_sizes) if cluster_sizes is not None else dict(Counter(e.cluster for e in entities))
    confirmed: dict[str, Counter[str]] = {}
    results: list[RunResult] = []
    concurrency = in_flight_for(source, concurrency)

    def one(item: tuple[Entity, dict[str, int]]) -> RunResult:
        e, seen = item
        template = templates[e.template_id]
        return run_discovery(
            e,
            template,
            build_hypotheses(e, template, now),
            source,
            params,
            system,
            shadow=True,
            clock=lambda: now,
            cluster_confirmations=seen,
            cluster_size=sizes.get(e.cluster),
            run_id=f"{system}-batch-{e.id}",
            timer=timer,
        )

    for start in range(0, len(entities), batch_size):
        batch = entities[start : start + batch_size]
        frozen = {e.cluster: dict(confirmed.setdefault(e.cluster, Counter())) for e in batch}
        done = map_in_flight(one, [(e, frozen[e.cluster]) for e in batch], concurrency, stop_on=(Exception,))
        for e, d in zip(batch, done):
            if d.error is not None:
                raise d.error
            if d.value is None:  # never started: only after an earlier item's error, raised above
                break
            confirmed[e.cluster].update(o.pattern for o in d.value.outcomes if o.status is Status.PROMOTED)
            results.append(d.value)
    return results
