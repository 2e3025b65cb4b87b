"""Expected information gain (EIG): how much a hop on a hypothesis is worth. Pure.

    EIG = (1 - confidence) x novelty x category value x exp(-lambda * age_days)

* uncertainty ``1 - confidence``: a hypothesis we are already sure of teaches little;
* novelty ``1 / (1 + decay * n)``: n = entities of the same cluster that already
  confirmed (PROMOTED) this pattern; a pattern the cluster has confirmed again and
  again is less news (cluster dampening). n counts only in clusters of at least
  ``cluster_min_size`` entities and only once it reaches ``cluster_min_confirmations``;
* category value: ParameterConfig's value of the pattern's group (model.CATEGORY_GROUP);
* recency ``exp(-lambda * age_days)``: age = days since the hypothesis last moved
  (``updated_at``, its creation for a new one); a lead nothing has touched for
  months is colder than a fresh one.

Choosing what to probe next adds two bonuses to EIG (the *selection score*):
exploration ``bonus / sqrt(1 + tries in this run)`` favours hypotheses not yet
probed, exploitation ``bonus`` favours an unpromoted hypothesis that already has
an ACCEPT (a live lead worth confirming).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.core.model import Hypothesis, Status
from engine.core.params import ParameterConfig

SECONDS_PER_DAY = 86400.0


def novelty(confirmations: int, decay: float) -> float:
    """1 / (1 + decay * n)."""
    return 1.0 / (1.0 + decay * max(0, confirmations))


def recency(age_days: float, temporal_decay: float) -> float:
    """exp(-lambda * age_days); age below zero (clock skew) counts as zero."""
    return math.exp(-temporal_decay * max(0.0, age_days))


def expected_information_gain(
    confidence: float,
    category_value: float,
    novelty_factor: float = 1.0,
    age_days: float = 0.0,
    temporal_decay: float = 0.0,
) -> float:
    return (1.0 - confidence) * novelty_factor * category_value * recency(age_days, temporal_decay)


def counted_confirmations(confirmations: int, cluster_size: int | None, params: ParameterConfig) -> int:
    """Cluster dampening rules: which confirmations count towards novelty.

    ``cluster_size=None`` means unknown and is treated as large enough.
    """
    if cluster_size is not None and cluster_size < params.cluster_min_size:
        return 0
    if confirmations < params.cluster_min_confirmations:
        return 0
    return confirmations


@dataclass(frozen=True)
class EIGBreakdown:
    """EIG of one hypothesis with every component, and the selection score built on it."""

    hypothesis_id: str
    pattern: str
    category: str
    status: Status
    confidence: float
    uncertainty: float
    confirmations: int  # counted after the dampening rules
    novelty: float
    value: float
    age_days: float
    recency: float
    eig: float
    exploration: float
    exploitation: float

    @property
    def score(self) -> float:
        return self.eig + self.exploration + self.exploitation


def score_hypothesis(
    h: Hypothesis,
    params: ParameterConfig,
    *,
    now: float,
    confirmations: Mapping[str, int] | None = None,
    cluster_size: int | None = None,
    tries_in_run: int = 0,
) -> EIGBreakdown:
    n = counted_confirmations(int((confirmations or {}).get(h.pattern, 0)), cluster_size, params)
    nov = novelty(n, params.novelty_decay)
    value = params.category_value(h.category)
    age_days = max(0.0, (now - (h.updated_at or h.created_at)) / SECONDS_PER_DAY)
    rec = recency(age_days, params.temporal_decay)
    uncertainty = 1.0 - h.confidence
    eig = uncertainty * nov * value * rec
    explore = params.exploration_bonus / math.sqrt(1.0 + tries_in_run)
    exploit = params.exploitation_bonus if (h.accepts > 0 and h.status is not Status.PROMOTED) else 0.0
    return EIGBreakdown(
        hypothesis_id=h.id,
        pattern=h.pattern,
        category=h.category,
        status=h.status,
        confidence=h.confidence,
        uncertainty=uncertainty,
        confirmations=n,
        novelty=nov,
        value=value,
        age_days=age_days,
        recency=rec,
        eig=eig,
        exploration=explore,
        exploitation=exploit,
    )


def rank_hypotheses(
    hyps: Iterable[Hypothesis],
    params: ParameterConfig,
    *,
    now: float,
    confirmations: Mapping[str, int] | None = None,
    cluster_size: int | None = None,
    tries: Mapping[str, int] | None = None,
    selectable_only: bool = False,
) -> list[EIGBreakdown]:
    """Hypotheses best first by selection score (ties: higher EIG, then id, so ranking is deterministic)."""
    tries = tries or {}
    scored = [
        score_hypothesis(
            h,
            params,
            now=now,
            confirmations=confirmations,
            cluster_size=cluster_size,
            tries_in_run=tries.get(h.id, 0),
        )
        for h in hyps
        if not selectable_only or h.status.is_selectable()
    ]
    scored.sort(key=lambda b: (-b.score, -b.eig, b.hypothesis_id))
    return scored


def best_hypothesis(
    hyps: Iterable[Hypothesis],
    params: ParameterConfig,
    *,
    now: float,
    confirmations: Mapping[str, int] | None = None,
    cluster_size: int | None = None,
    tries: Mapping[str, int] | None = None,
) -> tuple[Hypothesis, float] | None:
    """The first of :func:`rank_hypotheses` and its EIG, without building every breakdown.

    Same numbers (the same expressions in the same order) and the same tie-breaks; the
    discovery loop calls this once per hop, so it is the engine's hot path. None for no hypotheses.
    """
    confirmations = confirmations or {}
    tries = tries or {}
    decay, lam = params.novelty_decay, params.temporal_decay
    explore_w, exploit_w = params.exploration_bonus, params.exploitation_bonus
    values: dict[str, float] = {}
    best: tuple[float, float, str] | None = None
    best_h: Hypothesis | None = None
    best_eig = 0.0
    for h in hyps:
        n = counted_confirmations(int(confirmations.get(h.pattern, 0)), cluster_size, params)
        nov = novelty(n, decay)
        value = values.get(h.category)
        if value is None:
            value = values[h.category] = params.category_value(h.category)
        age_days = max(0.0, (now - (h.updated_at or h.created_at)) / SECONDS_PER_DAY)
        rec = recency(age_days, lam)
        eig = (1.0 - h.confidence) * nov * value * rec
        explore = explore_w / math.sqrt(1.0 + tries.get(h.id, 0))
        exploit = exploit_w if (h.accepts > 0 and h.status is not Status.PROMOTED) else 0.0
        key = (-(eig + explore + exploit), -eig, h.id)
        if best is None or key < best:
            best, best_h, best_eig = key, h, eig
    return None if best_h is None else (best_h, best_eig)
