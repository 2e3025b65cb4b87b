"""What a rollout will cost before it starts: entities x recent cost per entity of each system.

Against a source that costs money (an HTTP evaluator), an operator is shown the
estimate of every stage the run will go through and asked to confirm when it
is above the budget they set (``--budget-usd``; the console's "Confirm above").
The figures are recorded data, not guesses:

* **entities per stage**: exposure is cumulative (engine.rollout.runner): a
  stage adds ``target - exposed so far`` entities, capped by the run's entity
  limit and by the graph's size; ``all`` is every entity left.
* **cost per entity** of each system: the mean ``cost_usd`` of its most recent
  metric events (``RECENT_EVENTS``), the candidate's own config first when it
  has run before. A system with no recorded run is estimated at its config's
  per-entity cost cap (``cost_cap_usd``, which the engine never exceeds): an
  upper bound, and said so.
* a stage costs ``entities x (new + shadow_fraction x old)``: the old system
  runs in shadow on the stage's shadow fraction.

The simulated world and a replay file cost nothing real; the estimate is still
shown (it is what the same run would cost against the evaluator the world
models), and no confirmation is asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.core.errors import ConfigError
from engine.core.params import ParameterConfig
from engine.discovery.limits import MAX_BUDGET_USD
from engine.discovery.runs import EvidenceSpec
from engine.monitoring.events import TABLE
from engine.rollout.stages import StagePolicy

#: how many of a system's latest metric events its cost per entity is the mean of
RECENT_EVENTS = 500
#: sources whose hops cost real money
PAID_SOURCES = ("http",)


class CostNotConfirmed(ConfigError):
    """The estimated cost of a run on a paid source is above the operator's budget and was not confirmed."""


@dataclass(frozen=True)
class CostPerEntity:
    """One system's cost per entity and where it comes from."""

    usd: float
    runs: int  # metric events it is the mean of; 0: the per-entity cap (no run recorded)
    basis: str


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    entities: int
    shadow_fraction: float
    usd: float


@dataclass(frozen=True)
class CostEstimate:
    evidence: str  # EvidenceSpec.describe()
    paid: bool
    new: CostPerEntity
    old: CostPerEntity
    per_stage: tuple[StageEstimate, ...]

    @property
    def total_usd(self) -> float:
        return sum(s.usd for s in self.per_stage)

    @property
    def entities(self) -> int:
        return sum(s.entities for s in self.per_stage)

    def needs_confirmation(self, budget_usd: float | None) -> bool:
        """True when the source costs money and the estimate is above ``budget_usd`` (None: no budget set)."""
        return self.paid and budget_usd is not None and self.total_usd > budget_usd

    def describe(self) -> str:
        stages = ", ".join(f"{s.stage} {s.entities:,} entities ${s.usd:,.2f}" for s in self.per_stage)
        return (
            f"estimated cost ${self.total_usd:,.2f} on {self.evidence} ({stages}); per entity: new "
            f"${self.new.usd:.4f} ({self.new.basis}), old ${self.old.usd:.4f} ({self.old.basis})"
        )

    def to_dict(self) -> dict:
        return {
            "evidence": self.evidence,
            "paid": self.paid,
            "total_usd": round(self.total_usd, 6),
            "entities": self.entities,
            "new_per_entity": {"usd": self.new.usd, "runs": self.new.runs, "basis": self.new.basis},
            "old_per_entity": {"usd": self.old.usd, "runs": self.old.runs, "basis": self.old.basis},
            "stages": [
                {"stage": s.stage, "entities": s.entities, "shadow_fraction": s.shadow_fraction, "usd": s.usd}
                for s in self.per_stage
            ],
        }


def check_budget(value: object) -> float | None:
    """A budget in USD: None (no confirmation asked), or a finite number in [0, MAX_BUDGET_USD]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ConfigError(f"--budget-usd must be a finite number of USD, got {value!r}")
    if not 0 <= float(value) <= MAX_BUDGET_USD:
        raise ConfigError(f"--budget-usd must be between 0 and {MAX_BUDGET_USD:,.0f} USD, got {value!r}")
    return float(value)


def recent_cost_per_entity(ops, system: str, config: ParameterConfig) -> CostPerEntity:
    """Mean cost of ``system``'s latest runs (its ``config`` first), else the config's per-entity cap."""
    with ops.connect() as db:
        for where, args, basis in (
            ("system = ? AND config_hash = ?", [system, config.hash()], "its config's"),
            ("system = ?", [system], f"the {system} system's"),
        ):
            row = db.conn.execute(
                f"SELECT AVG(cost_usd), COUNT(*) FROM (SELECT cost_usd FROM {TABLE} WHERE {where} "
                "ORDER BY at DESC LIMIT ?)",
                [*args, RECENT_EVENTS],
            ).fetchone()
            if row and row[1]:
                return CostPerEntity(float(row[0]), int(row[1]), f"mean of {basis} last {int(row[1]):,} runs")
    return CostPerEntity(config.cost_cap_usd, 0, "no run recorded: the per-entity cost cap")


def stage_sizes(
    policies: list[StagePolicy], population: int, entity_limit: int | None, exposed: int = 0
) -> list[tuple[StagePolicy, int]]:
    """Entities each stage adds (cumulative exposure, capped by the limit and the population)."""
    cap = population if entity_limit is None else min(entity_limit, population)
    out = []
    for p in policies:
        target = cap if p.entities is None else min(p.entities, cap)
        n = max(0, target - exposed)
        out.append((p, n))
        exposed += n
    return out


def estimate_run_cost(
    ops,
    *,
    stages: list[StagePolicy],
    population: int,
    entity_limit: int | None,
    candidate: ParameterConfig,
    baseline: ParameterConfig,
    evidence: EvidenceSpec,
    exposed: int = 0,
) -> CostEstimate:
    """The estimate of a run over ``stages`` (pure over the recorded metric events)."""
    new = recent_cost_per_entity(ops, "new", candidate)
    old = recent_cost_per_entity(ops, "old", baseline)
    rows = tuple(
        StageEstimate(p.name, n, p.shadow_fraction, round(n * (new.usd + p.shadow_fraction * old.usd), 6))
        for p, n in stage_sizes(stages, population, entity_limit, exposed)
    )
    return CostEstimate(evidence.describe(), evidence.kind in PAID_SOURCES, new, old, rows)
