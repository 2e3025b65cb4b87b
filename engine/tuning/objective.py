"""The tuning objective: run the real engine with a config over a set of entities and score it.

``evaluate(params, workload, entity_ids, rewards)`` runs the *new* system in
shadow (nothing is written anywhere) over each entity, with fresh hypotheses
built from its template, against the workload's evidence source, and scores
the runs against ground truth with configurable rewards (``Rewards``)::

    score per entity = ( + true_actionable   x  entities called actionable that truly are
                         - false_actionable  x  entities called actionable that are not
                         - missed_actionable x  truly actionable entities not called
                         - per_usd           x  dollars spent
                         - per_error         x  errored hops ) / entities

Per entity, so a 160-entity training set and a 40-entity hold-out set are on
one scale and their difference (the optimism gap) means something. The
result keeps every component, not only the sum.

Determinism: the result is a pure function of (config, entities, evidence
source, rewards). The simulated world answers each hop as a pure function of
(world seed, entity, hypothesis, hop type, attempt); the clock is virtual and
fixed; each entity runs on its own, with no cluster confirmations carried
from one entity to the next, so an entity's score does not depend on which
other entities are evaluated with it, nor in which order. (A consequence,
stated plainly: on fresh hypotheses the temporal decay and the cluster
dampening parameters have nothing to act on, and the cache parameters live in
the store, so the objective cannot see those; the default tuned subset leaves
them out.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.catalogue.generator import build_hypotheses, generate_catalogue, templates_for
from engine.catalogue.templates import load_templates
from engine.core.errors import ConfigError
from engine.core.model import Entity, RunResult, Template
from engine.core.params import ParameterConfig
from engine.discovery.evidence import EvidenceSource
from engine.discovery.pool import map_in_flight
from engine.discovery.scoring import confusion
from engine.discovery.systems import run_discovery
from engine.discovery.world import SimulatedWorld
from engine.tuning.space import search_space

Truth = Callable[[str], "bool | None"]


@dataclass(frozen=True)
class Rewards:
    """What an outcome is worth, per entity (see the module docstring). All weights are >= 0."""

    true_actionable: float = 10.0
    false_actionable: float = 5.0
    missed_actionable: float = 0.0
    per_usd: float = 1.0
    per_error: float = 0.0

    def __post_init__(self) -> None:
        bad = [
            f"{k} = {v!r}"
            for k, v in asdict(self).items()
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0
        ]
        if bad:
            raise ConfigError(
                f"invalid rewards: {', '.join(bad)}; every weight must be a number >= 0 "
                "(penalties are subtracted, give them as positive numbers)"
            )

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Rewards:
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown reward(s) {', '.join(unknown)}: use {', '.join(cls.__dataclass_fields__)}")
        return cls(**data)

    @classmethod
    def parse(cls, text: str) -> Rewards:
        """From ``"true_actionable=10,false_actionable=5,per_usd=2"`` (missing ones keep defaults)."""
        out: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            try:
                if not sep:
                    raise ValueError
                out[name.strip()] = float(value)
            except ValueError:
                raise ConfigError(f"reward {part!r} is not NAME=NUMBER (e.g. per_usd=2)") from None
        return cls.from_dict(out)


@dataclass(frozen=True)
class ObjectiveResult:
    """One config scored on one set of entities. ``score`` is per entity; counts are totals."""

    score: float
    entities: int
    true_actionable: int
    false_actionable: int
    missed_actionable: int
    true_negative: int
    unscored: int  # entities whose truth is unknown: their calls earn nothing either way
    cost_usd: float
    hops: int
    errors: int
    reward_true: float  # per-entity contributions of each reward term, signed
    penalty_false: float
    penalty_missed: float
    penalty_cost: float
    penalty_errors: float

    @property
    def called_actionable(self) -> int:
        return self.true_actionable + self.false_actionable

    @property
    def precision(self) -> float | None:
        called = self.called_actionable
        return self.true_actionable / called if called else None

    @property
    def recall(self) -> float | None:
        truly = self.true_actionable + self.missed_actionable
        return self.true_actionable / truly if truly else None

    @property
    def cost_per_entity(self) -> float:
        return self.cost_usd / self.entities if self.entities else 0.0

    def components(self) -> dict[str, Any]:
        """Everything that went into the score, JSON-able."""
        d = asdict(self)
        d.update(
            called_actionable=self.called_actionable,
            precision=self.precision,
            recall=self.recall,
            cost_per_entity=self.cost_per_entity,
        )
        return d

    @classmethod
    def from_components(cls, data: Mapping[str, Any]) -> ObjectiveResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def score_results(results: Sequence[RunResult], truth: Truth, rewards: Rewards) -> ObjectiveResult:
    """Score finished runs against ground truth. Pure."""
    cm = confusion(results, truth)
    tp, fp, fn, tn, unscored = (
        cm.true_positives,
        cm.false_positives,
        cm.false_negatives,
        cm.true_negatives,
        cm.unknown,
    )
    cost = sum(r.cost_usd for r in results)
    hops = sum(r.iterations for r in results)
    errors = sum(r.error_count for r in results)
    n = len(results)
    if n == 0:
        raise ConfigError("no entities to score: the entity set is empty")
    terms = dict(
        reward_true=rewards.true_actionable * tp / n,
        penalty_false=-rewards.false_actionable * fp / n,
        penalty_missed=-rewards.missed_actionable * fn / n,
        penalty_cost=-rewards.per_usd * cost / n,
        penalty_errors=-rewards.per_error * errors / n,
    )
    return ObjectiveResult(
        score=sum(terms.values()),
        entities=n,
        true_actionable=tp,
        false_actionable=fp,
        missed_actionable=fn,
        true_negative=tn,
        unscored=unscored,
        cost_usd=round(cost, 6),
        hops=hops,
        errors=errors,
        **terms,
    )


def entity_scores(results: Sequence[RunResult], truth: Truth, rewards: Rewards) -> dict[str, float]:
    """Each entity's own score (the terms of ``score_results`` for that entity alone), keyed by entity id.

    Their mean is ``score_results(...).score``; kept for the hold-out set so the winner's improvement over the
    current config can be bootstrapped entity by entity (engine.tuning.analysis). Pure.
    """
    return {
        r.entity_id: entity_score(r.cost_usd, r.error_count, r.actionable, truth(r.entity_id), rewards) for r in results
    }


def entity_score(cost_usd: float, error_count: int, actionable: bool, actual: bool | None, rewards: Rewards) -> float:
    """One entity's score: dollars and errors cost, a right actionable call earns, a wrong or missed one costs
    (``actual``: whether the entity truly is actionable; None when unknown, then only cost and errors count)."""
    s = -rewards.per_usd * float(cost_usd) - rewards.per_error * int(error_count)
    if actual is not None:
        if actionable:
            s += rewards.true_actionable if actual else -rewards.false_actionable
        elif actual:
            s -= rewards.missed_actionable
    return s


@dataclass(frozen=True)
class Workload:
    """What trials run on: the entities (by id), their templates, an evidence source and the truth.

    ``now`` is the virtual clock every run sees (and stamps fresh hypotheses with).
    """

    entities: Mapping[str, Entity]
    templates: Mapping[str, Template]
    source: EvidenceSource
    truth: Truth
    description: str = ""
    now: float = 1_700_000_000.0
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: entities in flight while a trial runs (engine.discovery.pool); every entity starts from fresh
    #: hypotheses and no cluster confirmations, so the answers never depend on it
    concurrency: int = 1

    @property
    def entity_ids(self) -> list[str]:
        return list(self.entities)

    def entity(self, entity_id: str) -> Entity:
        try:
            return self.entities[entity_id]
        except KeyError:
            raise ConfigError(
                f"entity {entity_id!r} is not in the workload ({self.description or 'no description'}): "
                "a study's entity set must be rebuilt exactly as it was created"
            ) from None


def run_entities(params: ParameterConfig, workload: Workload, entity_ids: Iterable[str]) -> list[RunResult]:
    """The new system, in shadow, over each entity with fresh hypotheses, ``workload.concurrency`` entities in
    flight. Writes nothing. The first error (in the order given) propagates."""
    clock = lambda: workload.now  # noqa: E731  virtual and fixed: runs are reproducible

    def one(entity_id: str) -> RunResult:
        entity = workload.entity(entity_id)
        template = workload.templates[entity.template_id]
        return run_discovery(
            entity,
            template,
            build_hypotheses(entity, template, workload.now),
            workload.source,
            params,
            "new",
            store=None,
            shadow=True,
            clock=clock,
            cluster_confirmations={},
            run_id=f"tuning-{entity_id}",
        )

    results = []
    for done in map_in_flight(one, list(entity_ids), workload.concurrency, stop_on=(Exception,)):
        if done.error is not None:
            raise done.error
        if done.value is not None:
            results.append(done.value)
    return results


def evaluate(
    params: ParameterConfig, workload: Workload, entity_ids: Iterable[str], rewards: Rewards = Rewards()
) -> ObjectiveResult:
    """Run ``params`` over ``entity_ids`` of ``workload`` and score it (see the module docstring)."""
    return score_results(run_entities(params, workload, entity_ids), workload.truth, rewards)


def simulated_workload(
    entities: Sequence[Entity],
    world_seed: int,
    templates: Mapping[str, Template] | None = None,
    description: str = "",
) -> Workload:
    """Entities against the simulated world of ``world_seed`` (truth from the same world)."""
    used = templates_for(entities, templates if templates is not None else load_templates())
    world = SimulatedWorld(world_seed, used, entities)
    return Workload(
        entities={e.id: e for e in entities},
        templates=used,
        source=world,
        truth=world.truth,
        description=description or f"{len(entities)} entities, simulated world seed {world_seed}",
    )


def catalogue_workload(n: int, catalogue_seed: int, world_seed: int, offset: int = 0) -> Workload:
    """Entities ``offset .. offset + n - 1`` of the generated catalogue of ``catalogue_seed`` in the
    simulated world (the catalogue is prefix-stable, so an offset past a study's entities gives fresh ones)."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError(f"entity offset {offset!r} must be a whole number >= 0")
    which = f"entities {offset}..{offset + n - 1}" if offset else f"{n} entities"
    return simulated_workload(
        generate_catalogue(offset + n, catalogue_seed)[offset:],
        world_seed,
        description=f"generated catalogue: {which} (seed {catalogue_seed}), simulated world seed {world_seed}",
    )


@dataclass(frozen=True)
class SensitivityRow:
    """One parameter's one-at-a-time sweep: the score at each tried value, the others at base."""

    name: str
    base_value: float
    values: tuple[float, ...]
    scores: tuple[float | None, ...]  # None: the value makes an invalid config (cross-field rule)
    base_score: float

    @property
    def spread(self) -> float:
        """Best minus worst score over the sweep (how much this parameter alone can move the objective)."""
        got = [s for s in self.scores if s is not None] + [self.base_score]
        return max(got) - min(got)

    @property
    def best(self) -> tuple[float, float]:
        """(value, score) of the best point of the sweep, base included."""
        pairs = [(v, s) for v, s in zip(self.values, self.scores) if s is not None] + [
            (self.base_value, self.base_score)
        ]
        return max(pairs, key=lambda p: p[1])


def sweep_values(name: str, base: ParameterConfig, points: int = 4) -> tuple[float, ...]:
    """``points`` values evenly spread over the parameter's bounds (snapped onto its step), base left out."""
    dim = search_space([name], base).dimensions[0]
    raw = [dim.low + (dim.high - dim.low) * i / (points - 1) for i in range(points)] if points > 1 else [dim.low]
    out = []
    for v in raw:
        s = dim.snap(v)
        if s != getattr(base, name) and s not in out:
            out.append(s)
    return tuple(out)


def sensitivity(
    workload: Workload,
    entity_ids: Sequence[str],
    names: Sequence[str],
    *,
    base: ParameterConfig = ParameterConfig(),
    rewards: Rewards = Rewards(),
    points: int = 4,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[SensitivityRow]:
    """One-at-a-time sweep: each parameter at ``points`` values across its bounds, the others at
    ``base``; rows sorted by spread, largest first. This is how ``engine.tuning.space.DEFAULT_TUNED`` was chosen."""
    ids = list(entity_ids)
    base_score = evaluate(base, workload, ids, rewards).score
    rows = []
    for i, name in enumerate(names):
        values = sweep_values(name, base, points)
        scores: list[float | None] = []
        for v in values:
            try:
                cfg = base.with_changes(**{name: v})
            except ConfigError:
                scores.append(None)
                continue
            scores.append(evaluate(cfg, workload, ids, rewards).score)
        rows.append(SensitivityRow(name, getattr(base, name), values, tuple(scores), base_score))
        if progress is not None:
            progress(i + 1, len(names), name)
    return sorted(rows, key=lambda r: -r.spread)
