"""Domain model: entities, templates, hypotheses and the hypothesis lifecycle.

Everything here is plain data plus pure functions. Stores and evidence
sources live elsewhere and speak in these types.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from typing import Any

from engine.core.errors import DiscoveryError


class DomainError(DiscoveryError, ValueError):
    """Bad domain input (unknown id, invalid template, ...). Message is one line."""


class UnknownEntity(DomainError):
    def __init__(self, entity_id: str):
        super().__init__(
            f"unknown entity id {entity_id!r}: check `python -m engine stats` or search the Hypotheses page"
        )
        self.entity_id = entity_id


# --------------------------------------------------------------------------- enums


class Decision(StrEnum):
    ACCEPT = "ACCEPT"
    WEAK_ACCEPT = "WEAK_ACCEPT"
    REJECT = "REJECT"
    NO_PROGRESS = "NO_PROGRESS"

    def is_progress(self) -> bool:
        return self is not Decision.NO_PROGRESS


class Status(StrEnum):
    ACTIVE = "ACTIVE"
    PROMOTED = "PROMOTED"
    DEGRADED = "DEGRADED"
    SATURATED = "SATURATED"
    KILLED = "KILLED"

    def is_selectable(self) -> bool:
        return self is Status.ACTIVE


class Depth(IntEnum):
    SURFACE = 1
    OPERATIONAL = 2
    AUTHORITY = 3


class HopType(StrEnum):
    OFFICIAL_SITE = "official_site"
    CAREERS_PAGE = "careers_page"
    PRESS_RELEASE = "press_release"
    LINKEDIN_JOB = "linkedin_job"
    ANNUAL_REPORT = "annual_report"
    RFP_PORTAL = "rfp_portal"
    DOCUMENT = "document"

    @property
    def min_depth(self) -> Depth:
        return HOP_MIN_DEPTH[self]


#: The shallowest depth at which a hop type may be used. A depth allows every
#: hop type whose minimum depth is at or above it (SURFACE < OPERATIONAL < AUTHORITY).
HOP_MIN_DEPTH: dict[HopType, Depth] = {
    HopType.OFFICIAL_SITE: Depth.SURFACE,
    HopType.CAREERS_PAGE: Depth.SURFACE,
    HopType.PRESS_RELEASE: Depth.SURFACE,
    HopType.LINKEDIN_JOB: Depth.OPERATIONAL,
    HopType.ANNUAL_REPORT: Depth.OPERATIONAL,
    HopType.RFP_PORTAL: Depth.AUTHORITY,
    HopType.DOCUMENT: Depth.AUTHORITY,
}


def hops_allowed(depth: Depth) -> tuple[HopType, ...]:
    """Hop types usable at ``depth`` (cumulative: deeper allows shallower too)."""
    return tuple(h for h in HopType if HOP_MIN_DEPTH[h] <= depth)


# --------------------------------------------------------------------------- categories

#: Pattern categories of DESIGN.md and the tunable value group each belongs to.
#: Explicit table, never substring matching. Unknown categories fall in "other".
CATEGORY_GROUP: dict[str, str] = {
    "C-Suite Hiring": "csuite",
    "Executive Change": "csuite",
    "Strategic Hire": "strategic",
    "Digital Transformation": "digital",
    "AI Platform": "digital",
    "Data Analytics": "data",
    "CRM Implementation": "data",
    "Fan Engagement": "commercial",
    "Ticketing": "commercial",
    "E-commerce": "commercial",
    "Operations": "default",
    "Infrastructure": "default",
    "IT Modernization": "default",
    "General": "default",
}

#: Default value per group (DESIGN.md); ParameterConfig makes them tunable.
GROUP_VALUE_DEFAULTS: dict[str, float] = {
    "csuite": 1.5,
    "strategic": 1.4,
    "digital": 1.3,
    "data": 1.2,
    "commercial": 1.1,
    "default": 1.0,
    "other": 0.9,
}

KNOWN_CATEGORIES: frozenset[str] = frozenset(CATEGORY_GROUP)


def category_group(category: str) -> str:
    return CATEGORY_GROUP.get(category, "other")


# --------------------------------------------------------------------------- ids

_SLUG_STRIP = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """Normalised id: ASCII-folded, lower case, runs of anything else become one '-'.

    >>> slugify("  Borussia Mönchengladbach  ")
    'borussia-monchengladbach'
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _SLUG_STRIP.sub("-", folded.lower()).strip("-")


def hypothesis_id(entity_id: str, pattern_name: str) -> str:
    return f"{entity_id}::{slugify(pattern_name)}"


# --------------------------------------------------------------------------- entities & templates

ENTITY_TYPES = ("club", "federation", "league", "agency")


@dataclass(frozen=True)
class Entity:
    id: str
    name: str
    sport: str
    country: str
    type: str
    tier: int
    cluster: str
    template_id: str

    def __post_init__(self) -> None:
        if not self.id or slugify(self.id) != self.id:
            raise DomainError(f"entity id {self.id!r} is not a normalised slug (try {slugify(self.id)!r})")
        if not self.name.strip():
            raise DomainError(f"entity {self.id!r} has an empty name")


@dataclass(frozen=True)
class Pattern:
    name: str
    category: str
    weight: float  # prior confidence of a new hypothesis
    keywords: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        return slugify(self.name)


@dataclass(frozen=True)
class Channel:
    hop_type: HopType
    priority: int  # 1 = tried first by the old system's fixed order


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    patterns: tuple[Pattern, ...]
    channels: tuple[Channel, ...]
    description: str = ""

    def pattern(self, name: str) -> Pattern:
        for p in self.patterns:
            if p.name == name:
                return p
        raise DomainError(f"template {self.id!r} has no pattern {name!r}")

    def channel_order(self) -> tuple[HopType, ...]:
        return tuple(c.hop_type for c in sorted(self.channels, key=lambda c: (c.priority, c.hop_type)))


# --------------------------------------------------------------------------- hypotheses


@dataclass(frozen=True)
class Hypothesis:
    id: str
    entity_id: str
    pattern: str
    category: str
    prior: float
    confidence: float
    status: Status = Status.ACTIVE
    accepts: int = 0
    weak_accepts: int = 0
    rejects: int = 0
    no_progress: int = 0
    last_delta: float = 0.0
    #: the most recent decisions, oldest first, bounded by the saturation window
    recent: tuple[Decision, ...] = ()
    created_at: float = 0.0  # unix seconds
    updated_at: float = 0.0
    killed_reason: str = ""

    @property
    def attempts(self) -> int:
        return self.accepts + self.weak_accepts + self.rejects + self.no_progress

    @classmethod
    def new(cls, entity_id: str, pattern: Pattern, now: float) -> Hypothesis:
        return cls(
            id=hypothesis_id(entity_id, pattern.name),
            entity_id=entity_id,
            pattern=pattern.name,
            category=pattern.category,
            prior=pattern.weight,
            confidence=pattern.weight,
            created_at=now,
            updated_at=now,
        )


@dataclass(frozen=True)
class LifecycleRules:
    promote_confidence: float = 0.70
    promote_accepts: int = 2
    degrade_confidence: float = 0.30
    degrade_rejects: int = 2
    saturation_window: int = 5
    saturation_count: int = 3


@dataclass(frozen=True)
class DecisionDeltas:
    accept: float = 0.06
    weak_accept: float = 0.02
    reject: float = -0.02
    no_progress: float = 0.0

    def delta(self, decision: Decision) -> float:
        return {
            Decision.ACCEPT: self.accept,
            Decision.WEAK_ACCEPT: self.weak_accept,
            Decision.REJECT: self.reject,
            Decision.NO_PROGRESS: self.no_progress,
        }[decision]


def clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def lifecycle_status(h: Hypothesis, rules: LifecycleRules = LifecycleRules()) -> tuple[Status, str]:
    """The status a hypothesis should have given its counters, and why.

    KILLED is sticky. Otherwise the first rule that holds wins:
    PROMOTED, DEGRADED, SATURATED; else ACTIVE (which is how a degraded or
    saturated hypothesis comes back when new evidence moves it).
    """
    if h.status is Status.KILLED:
        return Status.KILLED, f"killed: {h.killed_reason or 'by operator'}"
    if h.confidence >= rules.promote_confidence and h.accepts >= rules.promote_accepts:
        return Status.PROMOTED, (
            f"confidence {h.confidence:.2f} >= {rules.promote_confidence:.2f} and "
            f"accepts {h.accepts} >= {rules.promote_accepts}"
        )
    if h.confidence < rules.degrade_confidence and h.rejects >= rules.degrade_rejects:
        return Status.DEGRADED, (
            f"confidence {h.confidence:.2f} < {rules.degrade_confidence:.2f} and "
            f"rejects {h.rejects} >= {rules.degrade_rejects}"
        )
    window = h.recent[-rules.saturation_window :]
    stalled = sum(1 for d in window if d is Decision.NO_PROGRESS)
    if stalled >= rules.saturation_count:
        return Status.SATURATED, (
            f"{stalled} of the last {len(window)} attempts made no progress (>= {rules.saturation_count})"
        )
    return Status.ACTIVE, "no lifecycle rule holds"


def apply_decision(
    h: Hypothesis,
    decision: Decision,
    now: float,
    deltas: DecisionDeltas = DecisionDeltas(),
    rules: LifecycleRules = LifecycleRules(),
) -> Hypothesis:
    """Pure update: counters, clamped confidence, recent window, then lifecycle."""
    delta_wanted = deltas.delta(decision)
    confidence = clamp01(h.confidence + delta_wanted)
    # one counter field and its new value, spread into replace() below
    counts: dict[str, Any] = {
        Decision.ACCEPT: dict(accepts=h.accepts + 1),
        Decision.WEAK_ACCEPT: dict(weak_accepts=h.weak_accepts + 1),
        Decision.REJECT: dict(rejects=h.rejects + 1),
        Decision.NO_PROGRESS: dict(no_progress=h.no_progress + 1),
    }[decision]
    keep = max(rules.saturation_window, 1)
    updated = replace(
        h,
        confidence=confidence,
        last_delta=confidence - h.confidence,
        recent=(h.recent + (decision,))[-keep:],
        updated_at=now,
        **counts,
    )
    status, _ = lifecycle_status(updated, rules)
    return replace(updated, status=status)


def kill(h: Hypothesis, reason: str, now: float) -> Hypothesis:
    return replace(h, status=Status.KILLED, killed_reason=reason, updated_at=now)


def is_actionable(hyps: Iterable[Hypothesis], min_accepts: int = 2, min_categories: int = 2) -> bool:
    """>= min_accepts ACCEPTs in total, spread across >= min_categories distinct categories."""
    accepts = 0
    categories: set[str] = set()
    for h in hyps:
        if h.accepts > 0:
            accepts += h.accepts
            categories.add(h.category)
    return accepts >= min_accepts and len(categories) >= min_categories


# --------------------------------------------------------------------------- evidence & runs


@dataclass(frozen=True)
class EvidenceResult:
    """What an evidence source returns for one hop."""

    decision: Decision
    cost_usd: float
    latency_s: float
    url: str = ""
    excerpt: str = ""
    #: None when the hop worked; else an error type ("timeout", "http_503", ...).
    #: An errored hop is recorded with decision NO_PROGRESS and is never hidden.
    error: str | None = None


@dataclass(frozen=True)
class HopRecord:
    iteration: int
    hypothesis_id: str
    pattern: str
    category: str
    eig: float
    hop_type: HopType
    depth: Depth
    decision: Decision
    delta: float
    confidence_after: float
    cost_usd: float
    latency_s: float
    url: str = ""
    excerpt: str = ""
    error: str | None = None


@dataclass(frozen=True)
class HypothesisOutcome:
    id: str
    pattern: str
    category: str
    confidence: float
    status: Status
    accepts: int


@dataclass(frozen=True)
class RunResult:
    """One discovery run over one entity by one system."""

    entity_id: str
    system: str  # "new" | "old"
    config_hash: str
    iterations: int
    cost_usd: float
    hops: tuple[HopRecord, ...]
    outcomes: tuple[HypothesisOutcome, ...]
    actionable: bool
    stop_reason: str
    engine_time_s: float  # our own compute time, evidence latency excluded
    evidence_latency_s: float  # sum of per-hop latency (virtual unless sleeping for real)
    shadow: bool = False
    errors: tuple[str, ...] = field(default=())  # error type per errored hop

    @property
    def error_count(self) -> int:
        return len(self.errors)
