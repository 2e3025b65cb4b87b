"""Running discovery for entities of the graph: the ONE place that does it.

Used by the CLI (`discover`, `compare`), the console entity view, rollout
stages and monitoring. Everything else (run_discovery, the sources) is a
library; this module wires them to the stores.

Contract (keep stable; other areas build on it)::

    EvidenceSpec(kind="world"|"http"|"replay", world_seed=1, url=None, replay_path=None,
                 timeout_s=30.0, sleep=False, time_scale=1.0, profile_path=None, strict=False,
                 hop_cost_ceiling_usd=5.0)
    make_source(spec_or_settings=None, *, templates=None, entities=()) -> EvidenceSource
        Settings or None -> the simulated world of DEFAULT_WORLD_SEED (the default source).
        Bad spec (unknown kind, http without url, missing replay file, bad profile)
        -> one-line ConfigError.
    truth_of(source) -> Callable[[str], bool | None] | None
        the world's ground truth (scoring only); None for sources that do not know it.

    run_entities(graph, ops, entity_ids, *, system="new", params=None, source=None,
                 shadow=False, run_id=None, stage_id=None, clock=time.time, log=None,
                 truth=None, on_result=None, rng=None, events_out=None, concurrency=1,
                 batch_size=CONFIRMATION_BATCH, errors=None, tick=None) -> list[RunResult]

What ``run_entities`` does (the batch runner), in the order given (duplicates once):

1. loads everything first, in a few batched reads: entities (an unknown id ->
   ``UnknownEntity`` naming it, one line, before anything runs or is written;
   with ``errors`` given, unknown ids are recorded there and skipped), their
   templates and hypotheses, cluster sizes and the cluster confirmations
   (PROMOTED patterns per cluster, engine.store.graph.cluster_confirmations);
2. then, batch by batch (``batch_size`` entities), runs the new or the old
   system (engine.discovery.systems.run_discovery) on every entity of the batch
   with at most ``concurrency`` entities in flight (engine.discovery.pool: one
   entity's hops in order, many entities at once) against ``source`` (default:
   the simulated world, seed DEFAULT_WORLD_SEED, with the graph's templates)
   with ``params`` (default ParameterConfig());
3. live (``shadow=False``): writes the batch's hypothesis states and evidence
   trails in ONE write (``graph.apply_runs``: all or nothing, one write-sequence
   bump, so a console cache stays exact; evidence ids keyed by ``run_id``);
   shadow: writes nothing to the graph;
4. records one MetricEvent per run of the batch (engine.monitoring.events;
   with truth when the source knows it, ``run_id``, ``stage_id``, system,
   config hash, entity name) right after the batch's write, so every run
   written to the graph has its metric event.

**Same answers at any concurrency.** What a run sees of the others' results
is fixed by the batches, not by timing: every entity of a batch sees the
cluster confirmations as they stood when its batch began (the graph's, plus
the promotions of this call's earlier batches, counted in the order given).
So concurrency 1 and 64 give the same per-entity results and metric events
(on any source whose answers do not depend on call order: the simulated
world, a replay file). ``rng`` (the old system's pattern shuffle) is shared
across entities: pass it only at concurrency 1.

**Faults.** A fault of the machinery (``MACHINERY_FAULTS``: the store, the
evaluator unreachable, a lost lease) stops the run: nothing more starts, runs
in flight finish, the entities of the batch before the failing one (in the
order given) are written and recorded, and the fault propagates. Any other
DiscoveryError of one entity propagates the same way, unless ``errors`` (a
dict) is given: then it is recorded there (entity id -> error), that entity
has no result, and the others go on (a rollout books it as a crash of that
system on that entity).

``events_out``: a list that receives the metric events instead of their being
written; a rollout worker stores them with its checkpoint, in one transaction
fenced by its lease (engine.rollout.runner), so events and checkpoints match
one to one even when a worker is declared dead mid-batch.

``on_result(result)`` is called for each entity after its batch was written
and recorded (progress); if it raises, the run stops there (what was written
is recorded) and the exception propagates. ``tick(finished)`` is called at
least once a second while a batch runs (a job's heartbeat). ``clock`` stamps
hypothesis updates, EIG recency and metric events; pass a fixed clock for
virtual, reproducible time.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from engine.catalogue.templates import load_templates
from engine.core.errors import ConfigError, DiscoveryError, LeaseLost, StoreUnavailable
from engine.core.model import Entity, Hypothesis, RunResult, Status, Template, UnknownEntity
from engine.core.params import DEFAULT_PARAMS, ParameterConfig
from engine.core.settings import Settings
from engine.discovery.eig import EIGBreakdown, rank_hypotheses
from engine.discovery.evidence import (
    DEFAULT_HOP_COST_CEILING_USD,
    DEFAULT_HOP_QUOTE_USD,
    EvidenceSource,
    EvidenceUnavailable,
    HTTPEvidenceSource,
    ReplaySource,
    finite_number,
)
from engine.discovery.pool import Done, check_concurrency, in_flight_for, map_in_flight
from engine.discovery.systems import CONFIRMATION_BATCH, SYSTEMS, run_discovery
from engine.discovery.world import SimulatedWorld, WorldProfile
from engine.jobs.executor import InProcessExecutor
from engine.monitoring.events import MetricEvent, events_of_runs, record_events
from engine.monitoring.jsonlog import JsonlLog
from engine.store.graph import RunWrite

DEFAULT_WORLD_SEED = 1
SOURCE_KINDS = ("world", "http", "replay")
METRICS_LOG_NAME = "metrics.jsonl"
#: faults of the machinery (the store, the evaluator, a lost lease): never an outcome of one entity's run;
#: they stop a batch (what came before them in the order given is kept) and propagate
MACHINERY_FAULTS: tuple[type[DiscoveryError], ...] = (StoreUnavailable, EvidenceUnavailable, LeaseLost)

Truth = Callable[[str], "bool | None"]


# --------------------------------------------------------------------------- evidence sources


@dataclass(frozen=True)
class EvidenceSpec:
    """Which evidence source to build. ``kind``: world (default), http or replay."""

    kind: str = "world"
    world_seed: int = DEFAULT_WORLD_SEED
    url: str | None = None
    replay_path: Path | str | None = None
    timeout_s: float = 30.0
    sleep: bool = False  # world: sleep each hop's latency for real (scaled by time_scale)
    time_scale: float = 1.0
    profile_path: Path | str | None = None  # world profile (default data/world_profile.json)
    strict: bool = False  # replay: a hop never recorded raises instead of counting a replay_miss
    #: http and replay: a hop said to cost more (or NaN, inf, < 0) is a bad_response booked at the quote
    #: (http) or a bad line of the replay file (replay)
    hop_cost_ceiling_usd: float = DEFAULT_HOP_COST_CEILING_USD

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ConfigError(f"unknown evidence source {self.kind!r}: use one of {', '.join(SOURCE_KINDS)}")
        if self.kind == "http" and not self.url:
            raise ConfigError("the http evidence source needs a URL: pass --evaluator-url http://host:port/path")
        if self.kind == "replay" and not self.replay_path:
            raise ConfigError("the replay evidence source needs a file: pass --replay FILE.jsonl")
        if not finite_number(self.timeout_s) or not self.timeout_s > 0:
            raise ConfigError(f"evaluator timeout must be a finite number of seconds > 0, got {self.timeout_s!r}")
        ceiling = self.hop_cost_ceiling_usd
        if not finite_number(ceiling) or not ceiling >= DEFAULT_HOP_QUOTE_USD:
            raise ConfigError(
                f"per-hop cost ceiling must be a finite number of USD >= the default hop quote "
                f"{DEFAULT_HOP_QUOTE_USD} (e.g. 5.00), got {ceiling!r}"
            )
        if isinstance(self.world_seed, bool) or not isinstance(self.world_seed, int):
            raise ConfigError(f"world seed must be a whole number, got {self.world_seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """What a rollout run stores of its source (JSON-safe); ``from_dict`` rebuilds the same spec."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("replay_path", "profile_path"):
            out[k] = None if out[k] is None else str(out[k])
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "evidence spec") -> EvidenceSpec:
        """The spec ``to_dict`` wrote; an unknown key or a bad value is a one-line ConfigError naming ``source``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected an object with a 'kind', got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def describe(self) -> str:
        if self.kind == "world":
            return f"simulated world (seed {self.world_seed}{', real sleeps' if self.sleep else ', virtual time'})"
        if self.kind == "http":
            return f"HTTP evaluator {self.url}"
        return f"replay of {self.replay_path}"


def make_source(
    spec_or_settings: EvidenceSpec | Settings | None = None,
    *,
    templates: Mapping[str, Template] | None = None,
    entities: Iterable[Entity] = (),
) -> EvidenceSource:
    """Build the evidence source a spec describes (Settings/None: the default simulated world).

    ``templates`` are what the world judges patterns by (default: the shipped
    templates); ``entities`` are registered with the world so its truth knows them.
    """
    spec = spec_or_settings if isinstance(spec_or_settings, EvidenceSpec) else EvidenceSpec()
    if spec.kind == "http":
        return HTTPEvidenceSource(
            spec.url or "", timeout_s=spec.timeout_s, hop_cost_ceiling_usd=spec.hop_cost_ceiling_usd
        )
    if spec.kind == "replay":
        if not spec.replay_path:  # EvidenceSpec refuses this already; the check narrows the Optional
            raise ConfigError("the replay evidence source needs a file: pass --replay FILE.jsonl")
        return ReplaySource.load(spec.replay_path, strict=spec.strict, hop_cost_ceiling_usd=spec.hop_cost_ceiling_usd)

    if templates is None:
        templates = load_templates()
    profile = WorldProfile.load(spec.profile_path) if spec.profile_path else None
    return SimulatedWorld(spec.world_seed, templates, entities, profile, sleep=spec.sleep, time_scale=spec.time_scale)


def truth_of(source: EvidenceSource) -> Truth | None:
    """Ground truth of 'actionable' when the source knows it (the simulated world), else None."""
    truth = getattr(source, "truth", None)
    return truth if callable(truth) else None


# --------------------------------------------------------------------------- loading


@dataclass
class EntityContext:
    """Everything a run of one entity needs, read from the graph."""

    entity: Entity
    template: Template
    hypotheses: list[Hypothesis]
    confirmations: dict[str, int]
    cluster_size: int | None

    def ranked(self, params: ParameterConfig = DEFAULT_PARAMS, *, now: float | None = None) -> list[EIGBreakdown]:
        """Hypotheses by the new system's selection score (all statuses; only ACTIVE are chosen)."""
        return rank_hypotheses(
            self.hypotheses,
            params,
            now=time.time() if now is None else now,
            confirmations=self.confirmations,
            cluster_size=self.cluster_size,
        )


def _dedupe(entity_ids: Iterable[str]) -> list[str]:
    if isinstance(entity_ids, str):
        raise DiscoveryError("entity ids must be a list of ids, not one string")
    return list(dict.fromkeys(str(e) for e in entity_ids))


def cluster_sizes(graph: Any, clusters: Iterable[str]) -> dict[str, int]:
    """Entities per cluster for the clusters asked (missing -> 0)."""
    wanted = list(dict.fromkeys(clusters))
    if not wanted:
        return {}
    rows = graph._rows(
        "UNWIND $ids AS cid MATCH (:Cluster {id: cid})<-[:IN_CLUSTER]-(e:Entity) RETURN cid, count(e)",
        {"ids": wanted},
    )
    found = {c: int(n) for c, n in rows}
    return {c: found.get(c, 0) for c in wanted}


def load_contexts(
    graph: Any, entity_ids: Iterable[str], *, skip_unknown: dict[str, DiscoveryError] | None = None
) -> list[EntityContext]:
    """Contexts of the entities in the order given, in a few batched reads; UnknownEntity (first unknown id)
    before anything else, or (``skip_unknown``, a dict) each unknown id recorded there and left out."""
    ids = _dedupe(entity_ids)
    entities = graph.get_entities(ids)
    missing = [eid for eid in ids if eid not in entities]
    if missing and skip_unknown is not None:
        for eid in missing:
            skip_unknown[eid] = UnknownEntity(eid)
        ids = [eid for eid in ids if eid in entities]
        missing = []
    if missing:
        err = UnknownEntity(missing[0])
        if len(missing) > 1:
            err.args = (f"{err.args[0]} (and {len(missing) - 1} more unknown id(s))",)
        raise err
    templates: dict[str, Template] = {}
    for e in entities.values():
        if e.template_id not in templates:
            templates[e.template_id] = graph.get_template(e.template_id)
    hyps = graph.get_hypotheses_many(ids)
    clusters = list(dict.fromkeys(entities[eid].cluster for eid in ids))
    sizes = cluster_sizes(graph, clusters)
    confirmations = {c: dict(graph.cluster_confirmations(c)) for c in clusters}
    return [
        EntityContext(
            entity=entities[eid],
            template=templates[entities[eid].template_id],
            hypotheses=hyps.get(eid, []),
            confirmations=confirmations[entities[eid].cluster],
            cluster_size=sizes.get(entities[eid].cluster) or None,
        )
        for eid in ids
    ]


def load_context(graph: Any, entity_id: str) -> EntityContext:
    """One entity's context (for the console entity view); UnknownEntity if no such id."""
    return load_contexts(graph, [entity_id])[0]


def new_run_id(system: str, shadow: bool, clock: Callable[[], float] = time.time) -> str:
    """A fresh run id such as ``new-live-20261130-1322-3fa2b1``."""
    now = clock()
    stamp = time.strftime("%Y%m%d-%H%M", time.gmtime(now))
    digest = hashlib.blake2b(f"{system}|{shadow}|{now!r}|{time.perf_counter_ns()}".encode(), digest_size=3)
    return f"{system}-{'shadow' if shadow else 'live'}-{stamp}-{digest.hexdigest()}"


# --------------------------------------------------------------------------- running


class _Collect:
    """The store ``run_discovery`` writes a live run to: keeps it for the batch's one write."""

    def __init__(self) -> None:
        self.write: RunWrite | None = None

    def apply_run(self, entity_id, run_id, system, hyps, records, *, at=None) -> None:  # noqa: ANN001
        self.write = RunWrite(entity_id, run_id, system, tuple(hyps), tuple(records))


def run_entities(
    graph: Any,
    ops: Any,
    entity_ids: Iterable[str],
    *,
    system: str = "new",
    params: ParameterConfig | None = None,
    source: EvidenceSource | None = None,
    shadow: bool = False,
    run_id: str | None = None,
    stage_id: str | None = None,
    clock: Callable[[], float] = time.time,
    log: JsonlLog | None = None,
    truth: Truth | None = None,
    on_result: Callable[[RunResult], None] | None = None,
    rng: random.Random | None = None,
    events_out: list[MetricEvent] | None = None,
    concurrency: int = 1,
    batch_size: int = CONFIRMATION_BATCH,
    errors: dict[str, DiscoveryError] | None = None,
    tick: Callable[[int], None] | None = None,
    contexts: Sequence[EntityContext] | None = None,
    executor: Any = None,
    evidence: EvidenceSpec | None = None,
) -> list[RunResult]:
    """Run ``system`` over the entities; see the module docstring for the contract. ``contexts``: the
    entities' contexts already loaded (``load_contexts``; ``entity_ids`` is then ignored), so two systems
    run on one batch read it once. ``executor`` (engine.jobs.executor; default in this process): where the
    entity runs happen; a Dask one needs the source as ``evidence`` (a spec each worker builds it from)."""
    if system not in SYSTEMS:
        raise DiscoveryError(f"unknown system {system!r}: use one of {', '.join(SYSTEMS)}")
    remote = executor is not None and not isinstance(executor, InProcessExecutor)
    if remote:
        if source is not None and evidence is None:
            raise ConfigError(
                "entity runs on a Dask cluster need the evidence source as a spec (evidence=EvidenceSpec(...)): "
                "a source object cannot travel to another process"
            )
        if rng is not None:
            raise ConfigError("a shared rng (the old system's shuffle) cannot be used with a Dask executor")
    check_concurrency(concurrency)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DiscoveryError(f"batch size must be a whole number >= 1, got {batch_size!r}")
    params = params or DEFAULT_PARAMS
    contexts = list(contexts) if contexts is not None else load_contexts(graph, entity_ids, skip_unknown=errors)
    templates_used = {c.template.id: c.template for c in contexts}
    if source is None:
        entities = [c.entity for c in contexts]
        source = make_source(evidence or EvidenceSpec(), templates=templates_used, entities=entities)
    elif hasattr(source, "register"):
        source.register(c.entity for c in contexts)
    if truth is None:
        truth = truth_of(source)
    concurrency = in_flight_for(source, concurrency)
    if log is None:
        log = JsonlLog.for_settings(graph.settings, METRICS_LOG_NAME)
    run_id = run_id or new_run_id(system, shadow, clock)
    names = {c.entity.id: c.entity.name for c in contexts}
    # confirmations each cluster has seen so far in this call (graph state + earlier batches' promotions)
    seen: dict[str, Counter[str]] = {}
    results: list[RunResult] = []
    finished = 0

    def one(item: tuple[EntityContext, dict[str, int]]) -> tuple[RunResult, RunWrite | None]:
        ctx, confirmed = item
        sink = None if shadow else _Collect()
        result = run_discovery(
            ctx.entity,
            ctx.template,
            ctx.hypotheses,
            source,
            params,
            system,
            store=cast(Any, sink),  # run_discovery only calls apply_run on it
            shadow=shadow,
            clock=clock,
            cluster_confirmations=confirmed,
            cluster_size=ctx.cluster_size,
            run_id=run_id,
            rng=rng,
        )
        return result, sink.write if sink is not None else None

    def progress(n: int) -> None:
        if tick is not None:
            tick(finished + n)

    for start in range(0, len(contexts), batch_size):
        batch = contexts[start : start + batch_size]
        # every entity of the batch sees the confirmations as they stood when the batch began
        frozen: dict[str, dict[str, int]] = {}
        for ctx in batch:
            cluster = ctx.entity.cluster
            if cluster not in frozen:
                frozen[cluster] = dict(seen.setdefault(cluster, Counter(ctx.confirmations)))
        items = [(ctx, frozen[ctx.entity.cluster]) for ctx in batch]
        if remote:
            unit = (evidence or EvidenceSpec(), templates_used, params, system, shadow, clock, run_id)
            done = _map_on(executor, unit, items, tick=progress)
        else:
            done = map_in_flight(
                one, items, concurrency, stop_on=MACHINERY_FAULTS if errors is not None else (Exception,), tick=progress
            )
        kept: list[tuple[EntityContext, RunResult, RunWrite | None]] = []
        failure: BaseException | None = None
        for ctx, d in zip(batch, done):
            if d.ok and d.value is not None:
                kept.append((ctx, *d.value))
                continue
            if not d.started:
                break
            if errors is not None and isinstance(d.error, DiscoveryError) and not isinstance(d.error, MACHINERY_FAULTS):
                errors[ctx.entity.id] = d.error
                continue
            failure = d.error
            break  # keep what came before it in the order given; nothing after it counts
        writes = [w for _, _, w in kept if w is not None and w.records]
        if writes:
            _write_batch(graph, writes, errors)
        kept = [k for k in kept if errors is None or k[0].entity.id not in errors]
        batch_results = [r for _, r, _ in kept]
        # every run written to the graph has its metric event: both land before anything else can fail
        events = events_of_runs(batch_results, run_id=run_id, stage_id=stage_id, truth=truth, at=clock(), names=names)
        if events_out is not None:
            events_out.extend(events)
        elif events:
            record_events(ops, events, log=log)
        for ctx, r, _ in kept:
            before = {h.id for h in ctx.hypotheses if h.status is Status.PROMOTED}
            seen[ctx.entity.cluster].update(
                o.pattern for o in r.outcomes if o.status is Status.PROMOTED and o.id not in before
            )
        results.extend(batch_results)
        finished += len(batch)
        if on_result is not None:
            for r in batch_results:
                on_result(r)
        if failure is not None:
            raise failure
    return results


#: units per executor slot a batch is cut into (a few per worker, so one slow chunk does not idle the others)
UNITS_PER_SLOT = 3
#: evidence sources built in this process for remote units, by spec and templates (a Dask worker keeps a few)
_SOURCES: dict[str, EvidenceSource] = {}
_SOURCES_KEPT = 4


def _map_on(executor: Any, unit: tuple, items: list, *, tick: Callable[[int], None]) -> list[Done]:
    """The batch's entity runs on ``executor``, cut into chunks; one Done per item, in the order given."""
    per = max(1, -(-len(items) // max(1, executor.slots * UNITS_PER_SLOT)))
    chunks = [items[i : i + per] for i in range(0, len(items), per)]
    out: list[Done | None] = [None] * len(items)
    finished = [0]
    for d in executor.run(entity_runs, [(*unit, chunk) for chunk in chunks], tick=lambda: tick(finished[0])):
        if d.error is not None:
            raise d.error
        for j, (value, error) in enumerate(d.value):
            out[d.index * per + j] = Done(value=value) if error is None else Done(error=error)
        finished[0] += len(d.value)
    return [d if d is not None else Done(started=False) for d in out]


def entity_runs(
    evidence: EvidenceSpec,
    templates: Mapping[str, Template],
    params: ParameterConfig,
    system: str,
    shadow: bool,
    clock: Callable[[], float],
    run_id: str,
    items: Sequence[tuple[EntityContext, dict[str, int]]],
) -> list[tuple[tuple[RunResult, RunWrite | None] | None, BaseException | None]]:
    """A unit of entity runs, pure: each entity's stored state (its context and the cluster confirmations it
    sees) in, its RunResult (and, live, the write the coordinator makes) out, or the error it raised. Runs
    where the executor puts it: the source is built here from ``evidence`` (the world from its seed, a replay
    file from its shared path, an HTTP evaluator from its URL)."""
    key = json.dumps([evidence.to_dict(), sorted(templates)], sort_keys=True)
    source = _SOURCES.get(key)
    if source is None:
        source = make_source(evidence, templates=templates)
        if len(_SOURCES) >= _SOURCES_KEPT:
            _SOURCES.pop(next(iter(_SOURCES)))
        _SOURCES[key] = source
    if hasattr(source, "register"):
        source.register(ctx.entity for ctx, _ in items)
    out: list[tuple[tuple[RunResult, RunWrite | None] | None, BaseException | None]] = []
    for ctx, confirmed in items:
        sink = None if shadow else _Collect()
        try:
            result = run_discovery(
                ctx.entity,
                ctx.template,
                ctx.hypotheses,
                source,
                params,
                system,
                store=cast(Any, sink),
                shadow=shadow,
                clock=clock,
                cluster_confirmations=confirmed,
                cluster_size=ctx.cluster_size,
                run_id=run_id,
            )
        except Exception as exc:  # noqa: BLE001 - kept with its entity; the coordinator decides (as map_in_flight)
            out.append((None, exc))
            continue
        out.append(((result, sink.write if sink is not None else None), None))
    return out


def _write_batch(graph: Any, writes: list[RunWrite], errors: dict[str, DiscoveryError] | None) -> None:
    """The batch's live runs in one write; when ``errors`` collects per-entity failures and the batch write
    is refused for one entity's data, each entity is written alone so only that one fails."""
    try:
        graph.apply_runs(writes)
        return
    except MACHINERY_FAULTS:
        raise
    except DiscoveryError:
        if errors is None:
            raise
    for w in writes:
        try:
            graph.apply_run(w.entity_id, w.run_id, w.system, w.hyps, w.records)
        except MACHINERY_FAULTS:
            raise
        except DiscoveryError as exc:
            errors[w.entity_id] = exc


@dataclass
class CompareResult:
    """Both systems, shadow, on the same entities (paired)."""

    entity_ids: list[str]
    new: list[RunResult] = field(default_factory=list)
    old: list[RunResult] = field(default_factory=list)
    run_id: str = ""


def compare_entities(
    graph: Any,
    ops: Any,
    entity_ids: Sequence[str],
    *,
    params_new: ParameterConfig | None = None,
    params_old: ParameterConfig | None = None,
    source: EvidenceSource | None = None,
    run_id: str | None = None,
    stage_id: str | None = None,
    clock: Callable[[], float] = time.time,
    log: JsonlLog | None = None,
    on_result: Callable[[RunResult], None] | None = None,
    concurrency: int = 1,
    executor: Any = None,
    evidence: EvidenceSpec | None = None,
) -> CompareResult:
    """Shadow-run the new and the old system on the same entities (``concurrency`` of them in flight);
    nothing is written to the graph. ``executor``/``evidence``: as ``run_entities`` (the same results)."""
    run_id = run_id or new_run_id("compare", True, clock)
    new, old = (
        run_entities(
            graph,
            ops,
            entity_ids,
            system=system,
            params=params,
            run_id=f"{run_id}-{system}",
            source=source,
            shadow=True,
            stage_id=stage_id,
            clock=clock,
            log=log,
            on_result=on_result,
            concurrency=concurrency,
            executor=executor,
            evidence=evidence,
        )
        for system, params in (("new", params_new), ("old", params_old))
    )
    return CompareResult(entity_ids=_dedupe(entity_ids), new=new, old=old, run_id=run_id)
