"""Who is due for a production visit, and in which order. Pure: plain data in, a plan out.

The production scheduler (engine.production.scheduler) keeps running discovery over the catalogue
within a day's budget. Which entities it visits next is decided here, from one ``Candidate`` per
entity (what the scheduler read of it: the EIG of its best ACTIVE hypothesis, the expected cost of
a visit, when production last visited it):

* **Refresh policy** (``RefreshPolicy``): an entity visited less than ``min_age_s`` ago is not due
  (a visit that soon would mostly re-read the same pages); one visited ``max_age_s`` ago or more is
  *overdue*; one production never visited is *new*.
* **Order**: new entities first, then overdue ones, then the rest that are due; within each group
  the entities not yet actionable first (a visit there can still *find* something; an actionable
  one's visit can only confirm it, and the maximum age keeps it fresh), and among those the highest
  *EIG per expected dollar* first (ties: the entity id), so the budget goes where a dollar teaches
  most. An entity with nothing ACTIVE has EIG 0 and comes last in its group.
* ``round_robin_plan`` is the baseline the benchmark compares against: the same due set and groups,
  but within each group the least recently visited first (never visited: by id), i.e. a fixed cycle
  through the catalogue that ignores what a visit is worth.

``Candidate.reason`` (via ``DueEntity.reason``) says in words why an entity is due: the page and the
``production plan`` command show it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from engine.core.errors import ConfigError

#: the longest refresh age one can set (a year): above it a typo is likelier than a plan
MAX_AGE_LIMIT_S = 366 * 86400.0
#: defaults: revisit no sooner than a day, a visit older than a week is overdue
DEFAULT_MIN_AGE_S = 86400.0
DEFAULT_MAX_AGE_S = 7 * 86400.0
#: the smallest expected cost a visit is divided by (USD): a visit that is expected to cost nothing
#: (nothing ACTIVE) is not infinitely attractive, its EIG is 0 anyway
MIN_EXPECTED_COST_USD = 0.001
#: how many of an entity's latest visits its expected cost averages
COST_HISTORY = 5


class Group(IntEnum):
    """Why an entity is due; lower goes first."""

    NEW = 0
    OVERDUE = 1
    DUE = 2


GROUP_WORDS = {Group.NEW: "new", Group.OVERDUE: "overdue", Group.DUE: "due"}


@dataclass(frozen=True)
class RefreshPolicy:
    """Minimum and maximum age between two production visits of one entity (seconds)."""

    min_age_s: float = DEFAULT_MIN_AGE_S
    max_age_s: float = DEFAULT_MAX_AGE_S

    def __post_init__(self) -> None:
        for name in ("min_age_s", "max_age_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"refresh policy {name} must be a finite number of seconds, got {v!r}")
            if not 0 <= v <= MAX_AGE_LIMIT_S:
                raise ConfigError(f"refresh policy {name} must be between 0 and {MAX_AGE_LIMIT_S:.0f} s, got {v!r}")
        if self.max_age_s < self.min_age_s:
            raise ConfigError(
                f"refresh policy: the maximum age ({self.max_age_s:g} s) is below the minimum age "
                f"({self.min_age_s:g} s): raise the maximum or lower the minimum"
            )
        if self.max_age_s <= 0:
            raise ConfigError("refresh policy: the maximum age must be above 0 s (e.g. 7d)")

    def describe(self) -> str:
        return f"revisit after {fmt_age(self.min_age_s)}, overdue after {fmt_age(self.max_age_s)}, new entities first"


@dataclass(frozen=True)
class Candidate:
    """What the scheduler knows of one entity when it plans."""

    entity_id: str
    eig: float  # EIG of the best ACTIVE hypothesis (0: nothing ACTIVE)
    expected_cost_usd: float
    last_visit_at: float | None = None  # the last production visit (None: never)
    pattern: str = ""  # the best ACTIVE hypothesis' pattern (shown with the reason)
    cost_basis: str = ""  # where the expected cost comes from ("its last 3 visits", ...)
    actionable: bool = False  # already actionable: its next visit can confirm, not find


@dataclass(frozen=True)
class DueEntity:
    """One entity of the plan, with why it is due and where it stands."""

    rank: int
    entity_id: str
    group: Group
    eig: float
    expected_cost_usd: float
    eig_per_usd: float
    age_s: float | None
    pattern: str
    cost_basis: str
    actionable: bool = False

    @property
    def new(self) -> bool:
        return self.group is Group.NEW

    @property
    def overdue(self) -> bool:
        return self.group is Group.OVERDUE

    @property
    def reason(self) -> str:
        """One line: why it is due and what a dollar buys there."""
        if self.group is Group.NEW:
            why = "new: never visited"
        elif self.group is Group.OVERDUE:
            why = f"overdue: last visit {fmt_age(self.age_s or 0.0)} ago"
        else:
            why = f"due: last visit {fmt_age(self.age_s or 0.0)} ago"
        best = f" ({self.pattern})" if self.pattern else ""
        settled = "; already actionable: after the others of its group" if self.actionable else ""
        return (
            f"{why}; best EIG {self.eig:.3f}{best} for an expected ${self.expected_cost_usd:.3f}"
            f" = {self.eig_per_usd:.2f} per ${settled}"
        )

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "entity_id": self.entity_id,
            "group": GROUP_WORDS[self.group],
            "eig": self.eig,
            "expected_cost_usd": self.expected_cost_usd,
            "eig_per_usd": self.eig_per_usd,
            "age_s": self.age_s,
            "new": self.new,
            "overdue": self.overdue,
            "pattern": self.pattern,
            "cost_basis": self.cost_basis,
            "actionable": self.actionable,
            "reason": self.reason,
        }


def fmt_age(seconds: float) -> str:
    """A duration in the largest unit that reads well: 45 s, 12 min, 5.5 h, 3.2 days."""
    s = max(0.0, float(seconds))
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def eig_per_usd(eig: float, expected_cost_usd: float) -> float:
    """EIG bought per expected dollar (the cost floored at MIN_EXPECTED_COST_USD)."""
    return max(0.0, eig) / max(MIN_EXPECTED_COST_USD, expected_cost_usd)


def expected_cost(history: Sequence[float], fallback_usd: float) -> tuple[float, str]:
    """The expected cost of a visit and where it comes from: the mean of the entity's latest visits
    (``history``, newest first, at most COST_HISTORY used), else ``fallback_usd``."""
    recent = [float(c) for c in history[:COST_HISTORY] if math.isfinite(float(c)) and c >= 0]
    if recent:
        return sum(recent) / len(recent), f"mean of its last {len(recent)} visit{'s' if len(recent) > 1 else ''}"
    return float(fallback_usd), "no visit yet: the typical visit"


def classify(c: Candidate, policy: RefreshPolicy, now: float) -> tuple[Group | None, float | None]:
    """The entity's group (None: not due yet) and its age since the last visit (None: never visited)."""
    if c.last_visit_at is None:
        return Group.NEW, None
    age = max(0.0, now - c.last_visit_at)
    if age >= policy.max_age_s:
        return Group.OVERDUE, age
    if age >= policy.min_age_s:
        return Group.DUE, age
    return None, age


def _due(
    candidates: Iterable[Candidate], policy: RefreshPolicy, now: float
) -> list[tuple[Candidate, Group, float | None]]:
    out = []
    for c in candidates:
        group, age = classify(c, policy, now)
        if group is not None:
            out.append((c, group, age))
    return out


def _entities(rows: list[tuple[Candidate, Group, float | None]], limit: int | None) -> list[DueEntity]:
    rows = rows if limit is None else rows[:limit]
    return [
        DueEntity(
            rank=i + 1,
            entity_id=c.entity_id,
            group=g,
            eig=c.eig,
            expected_cost_usd=c.expected_cost_usd,
            eig_per_usd=eig_per_usd(c.eig, c.expected_cost_usd),
            age_s=age,
            pattern=c.pattern,
            cost_basis=c.cost_basis,
            actionable=c.actionable,
        )
        for i, (c, g, age) in enumerate(rows)
    ]


def plan(
    candidates: Iterable[Candidate], policy: RefreshPolicy, now: float, limit: int | None = None
) -> list[DueEntity]:
    """The due entities in visiting order: new, overdue, due; in each group the entities not yet actionable
    first, each by EIG per expected dollar, then id."""
    rows = _due(candidates, policy, now)
    rows.sort(key=lambda r: (r[1], r[0].actionable, -eig_per_usd(r[0].eig, r[0].expected_cost_usd), r[0].entity_id))
    return _entities(rows, limit)


def round_robin_plan(
    candidates: Iterable[Candidate],
    policy: RefreshPolicy,
    now: float,
    limit: int | None = None,
    *,
    open_first: bool = False,
) -> list[DueEntity]:
    """The baseline: the same due entities and groups, each group least recently visited first (then id).
    ``open_first``: in each group the entities not yet actionable first (the benchmark's second baseline,
    which shows how much of the gain is the EIG order itself)."""
    rows = _due(candidates, policy, now)
    rows.sort(
        key=lambda r: (
            r[1],
            r[0].actionable if open_first else False,
            r[0].last_visit_at if r[0].last_visit_at is not None else -math.inf,
            r[0].entity_id,
        )
    )
    return _entities(rows, limit)


def _round_robin_open_first(
    candidates: Iterable[Candidate], policy: RefreshPolicy, now: float, limit: int | None = None
) -> list[DueEntity]:
    return round_robin_plan(candidates, policy, now, limit, open_first=True)


ORDERS = {"eig_per_usd": plan, "round_robin": round_robin_plan, "round_robin_open_first": _round_robin_open_first}


def next_due_at(candidates: Iterable[Candidate], policy: RefreshPolicy) -> float | None:
    """When the next entity not due now becomes due (its last visit + min age); None if none will."""
    times = [c.last_visit_at + policy.min_age_s for c in candidates if c.last_visit_at is not None]
    return min(times) if times else None


def admit(plan_: Sequence[DueEntity], caps_usd: Sequence[float], remaining_usd: float, batch_size: int) -> int:
    """How many of the plan's first entities the next batch takes: in order, while the sum of their
    per-entity cost caps (the most each visit can spend, ``caps_usd`` in plan order) stays within the
    day's remaining budget, at most ``batch_size``. Reserving the caps before spending is what keeps the
    day's spend within its budget whatever the batch then really costs (and across a killed worker)."""
    total = 0.0
    n = 0
    for cap in caps_usd[: min(len(plan_), batch_size)]:
        if total + cap > remaining_usd + 1e-9:
            break
        total += cap
        n += 1
    return n
