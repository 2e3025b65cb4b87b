"""Aggregation of metric events over a time window, per stage and per system.

The store is the source (``summarize`` and ``time_series`` read SQLite through
engine.monitoring.events); the arithmetic is pure functions over ``MetricEvent`` lists,
so it is tested from literals.

Definitions:

- volume: runs in the window (one run covers one entity); ``entities`` counts distinct ids
- cost per entity: total cost / runs; cost per hypothesis: total cost / hypotheses tested
- actionable rate: actionable runs / runs; promotion rate: promotions / hypotheses tested
- error rate: errored hops / hops (an errored hop is one evidence error); by type likewise
- latency: per run, evidence latency + engine time, in seconds
- percentiles: nearest rank (engine.core.percentiles, ``PERCENTILE_METHOD``)
- confidence histogram: 10 equal buckets over [0, 1]; the last is closed, so it includes 1.0
- old vs new: cost reduction % = (old cost/entity - new) / old * 100; actionable
  increase % = (new rate - old) / old * 100, plus the difference in points.
  Each is None, with a reason, when a side has no runs or the old value is 0.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from engine.core.errors import ConfigError
from engine.core.percentiles import PERCENTILE_METHOD, percentile
from engine.monitoring.events import MetricEvent, query_events

HISTOGRAM_BUCKETS = 10
NO_STAGE = "(no stage)"

# --------------------------------------------------------------------------- windows

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_window(text: str | int | float) -> float:
    """Seconds in a duration like ``15m``, ``24h``, ``7d`` (also ``30s``, ``2w``); a number is seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        m = _DURATION.match(str(text))
        if not m:
            raise ConfigError(f"window {text!r} is not a duration: write a number and a unit, e.g. 15m, 24h or 7d")
        seconds = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not seconds > 0 or math.isinf(seconds):
        raise ConfigError(f"window {text!r} must be longer than zero: e.g. 15m, 24h or 7d")
    return seconds


def format_window(seconds: float) -> str:
    """The shortest exact ``<n><unit>`` text for a duration (86400 -> ``1d``, 5400 -> ``90m``)."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def default_bucket(window_s: float, target: int = 30) -> float:
    """A round bucket width giving about ``target`` buckets over the window."""
    for size in (10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if window_s / size <= target:
            return float(size)
    return 86400.0 * math.ceil(window_s / 86400 / target)


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Distribution:
    """Mean and percentiles of a sample; every figure is None when the sample is empty."""

    n: int
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        if not values:
            return cls(0, None, None, None, None, None)
        return cls(
            n=len(values),
            mean=math.fsum(values) / len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            max=max(values),
        )


def confidence_histogram(values: Iterable[float], buckets: int = HISTOGRAM_BUCKETS) -> tuple[int, ...]:
    """Counts in ``buckets`` equal bins over [0, 1]: [0, .1), ..., [.9, 1.0] (last bin closed)."""
    # Compare with the edges i/buckets (0.3 is 3/10 exactly as written) rather than
    # flooring v*buckets, which puts values a rounding error away on the wrong side.
    lower_edges = [i / buckets for i in range(buckets)]
    counts = [0] * buckets
    for v in values:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"confidence {v} is outside [0, 1]")
        counts[bisect_right(lower_edges, v) - 1] += 1
    return tuple(counts)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


# --------------------------------------------------------------------------- one group


@dataclass(frozen=True)
class GroupStats:
    """Aggregates over the runs of one group (a stage and/or a system; None = all)."""

    stage_id: str | None
    system: str | None
    runs: int
    shadow_runs: int
    entities: int
    cost_total: float
    cost_per_entity: float | None
    cost_per_hypothesis: float | None
    hypotheses_tested: int
    hops: int
    actionable: int
    actionable_rate: float | None
    promotions: int
    promotion_rate: float | None
    scored: int  # runs whose truth is known
    correct: int
    accuracy: float | None
    iterations_mean: float | None
    iterations_max: int
    latency_s: Distribution
    engine_latency_ms: Distribution
    errors: int
    error_rate: float | None
    runs_with_errors: int
    errors_by_type: dict[str, int] = field(default_factory=dict)
    error_rate_by_type: dict[str, float] = field(default_factory=dict)
    confidence_histogram: tuple[int, ...] = (0,) * HISTOGRAM_BUCKETS
    config_hashes: tuple[str, ...] = ()


def group_stats(events: Sequence[MetricEvent], *, stage_id: str | None = None, system: str | None = None) -> GroupStats:
    """Aggregate the given events (already filtered to the group)."""
    runs = len(events)
    cost = math.fsum(e.cost_usd for e in events)
    tested = sum(e.hypotheses_tested for e in events)
    hops = sum(e.hops for e in events)
    actionable = sum(1 for e in events if e.actionable)
    promotions = sum(e.promotions for e in events)
    scored = [e for e in events if e.correct is not None]
    correct = sum(1 for e in scored if e.correct)
    by_type = Counter(t for e in events for t in e.error_types)
    errors = sum(e.error_count for e in events)
    return GroupStats(
        stage_id=stage_id,
        system=system,
        runs=runs,
        shadow_runs=sum(1 for e in events if e.shadow),
        entities=len({e.entity_id for e in events}),
        cost_total=cost,
        cost_per_entity=_ratio(cost, runs),
        cost_per_hypothesis=_ratio(cost, tested),
        hypotheses_tested=tested,
        hops=hops,
        actionable=actionable,
        actionable_rate=_ratio(actionable, runs),
        promotions=promotions,
        promotion_rate=_ratio(promotions, tested),
        scored=len(scored),
        correct=correct,
        accuracy=_ratio(correct, len(scored)),
        iterations_mean=_ratio(sum(e.iterations for e in events), runs),
        iterations_max=max((e.iterations for e in events), default=0),
        latency_s=Distribution.of([e.latency_s for e in events]),
        engine_latency_ms=Distribution.of([e.engine_latency_ms for e in events]),
        errors=errors,
        error_rate=_ratio(errors, hops),
        runs_with_errors=sum(1 for e in events if e.error_count),
        errors_by_type=dict(sorted(by_type.items())),
        error_rate_by_type={t: n / hops for t, n in sorted(by_type.items())} if hops else {},
        confidence_histogram=confidence_histogram(c for e in events for c in e.confidences),
        config_hashes=tuple(sorted({e.config_hash for e in events})),
    )


# --------------------------------------------------------------------------- old vs new


@dataclass(frozen=True)
class Comparison:
    """New system against old over the same window; None figures carry their reason."""

    old_runs: int
    new_runs: int
    old_cost_per_entity: float | None
    new_cost_per_entity: float | None
    cost_reduction_pct: float | None
    old_actionable_rate: float | None
    new_actionable_rate: float | None
    actionable_increase_pct: float | None
    actionable_increase_pp: float | None  # percentage points
    reason: str = ""

    @property
    def cost_increase_pct(self) -> float | None:
        return None if self.cost_reduction_pct is None else -self.cost_reduction_pct

    @property
    def sample(self) -> int:
        """The smaller side: what a minimum sample applies to."""
        return min(self.old_runs, self.new_runs)


def _per_run(value: float | None, what: str) -> float:
    """A per-run ratio of a group that has runs; group_stats leaves one None only when there are no runs."""
    if value is None:
        raise ValueError(f"{what} is missing although the group has runs")
    return value


def compare(old: GroupStats, new: GroupStats) -> Comparison:
    reasons = []
    cost_red = act_pct = act_pp = None
    if old.runs == 0 or new.runs == 0:
        empty = " and ".join(s for s, g in (("old", old), ("new", new)) if g.runs == 0)
        reasons.append(f"no {empty} runs in the window")
    else:
        old_cost = _per_run(old.cost_per_entity, "old cost per entity")
        new_cost = _per_run(new.cost_per_entity, "new cost per entity")
        old_rate = _per_run(old.actionable_rate, "old actionable rate")
        new_rate = _per_run(new.actionable_rate, "new actionable rate")
        if old_cost:
            cost_red = (old_cost - new_cost) / old_cost * 100.0
        else:
            reasons.append("old cost per entity is 0, so a % change is undefined")
        act_pp = (new_rate - old_rate) * 100.0
        if old_rate:
            act_pct = (new_rate - old_rate) / old_rate * 100.0
        else:
            reasons.append("old actionable rate is 0, so a % increase is undefined")
    return Comparison(
        old_runs=old.runs,
        new_runs=new.runs,
        old_cost_per_entity=old.cost_per_entity,
        new_cost_per_entity=new.cost_per_entity,
        cost_reduction_pct=cost_red,
        old_actionable_rate=old.actionable_rate,
        new_actionable_rate=new.actionable_rate,
        actionable_increase_pct=act_pct,
        actionable_increase_pp=act_pp,
        reason="; ".join(reasons),
    )


# --------------------------------------------------------------------------- a window


@dataclass(frozen=True)
class StageSummary:
    stage_id: str  # NO_STAGE for runs outside any rollout stage
    by_system: dict[str, GroupStats]
    comparison: Comparison


@dataclass(frozen=True)
class WindowSummary:
    start: float
    end: float
    generated_at: float
    percentile_method: str
    overall: GroupStats
    by_system: dict[str, GroupStats]  # always has "new" and "old" (possibly empty)
    comparison: Comparison
    stages: tuple[StageSummary, ...]

    @property
    def window_s(self) -> float:
        return self.end - self.start

    @property
    def config_hashes(self) -> dict[str, tuple[str, ...]]:
        return {s: g.config_hashes for s, g in self.by_system.items() if g.config_hashes}


def _by_system(events: Sequence[MetricEvent], stage_id: str | None) -> dict[str, GroupStats]:
    split: dict[str, list[MetricEvent]] = {"new": [], "old": []}
    for e in events:
        split.setdefault(e.system, []).append(e)
    return {s: group_stats(evs, stage_id=stage_id, system=s) for s, evs in split.items()}


def summarize_events(events: Sequence[MetricEvent], *, start: float, end: float, now: float) -> WindowSummary:
    """Pure: the summary of ``events`` (assumed to lie in [start, end))."""
    by_system = _by_system(events, None)
    per_stage: dict[str, list[MetricEvent]] = defaultdict(list)
    for e in events:
        per_stage[e.stage_id or NO_STAGE].append(e)
    stages = []
    for sid in sorted(per_stage):
        systems = _by_system(per_stage[sid], sid)
        stages.append(StageSummary(sid, systems, compare(systems["old"], systems["new"])))
    return WindowSummary(
        start=start,
        end=end,
        generated_at=now,
        percentile_method=PERCENTILE_METHOD,
        overall=group_stats(events),
        by_system=by_system,
        comparison=compare(by_system["old"], by_system["new"]),
        stages=tuple(stages),
    )


def summarize(
    ops,
    window_s: float,
    *,
    now: float,
    stage_id: str | None = None,
    include_shadow: bool = True,
) -> WindowSummary:
    """Summary of the events stored with ``now - window_s <= at < now`` (end exclusive)."""
    start = now - window_s
    events = query_events(ops, start, now, stage_id=stage_id, shadow=None if include_shadow else False)
    return summarize_events(events, start=start, end=now, now=now)


# --------------------------------------------------------------------------- time series


@dataclass(frozen=True)
class SeriesPoint:
    """One bucket of one system, for charts. Figures are None where the bucket has no denominator."""

    bucket_start: float
    bucket_s: float
    system: str
    runs: int
    cost_per_entity: float | None
    actionable_rate: float | None
    latency_p95_s: float | None
    error_rate: float | None


def series_from_events(events: Iterable[MetricEvent], bucket_s: float) -> list[SeriesPoint]:
    """Buckets aligned to multiples of ``bucket_s`` since the epoch (stable across refreshes).

    Buckets without runs are absent (a gap, not a zero). Sorted by time, then system.
    """
    if bucket_s <= 0:
        raise ValueError("bucket_s must be > 0")
    groups: dict[tuple[float, str], list[MetricEvent]] = defaultdict(list)
    for e in events:
        groups[(math.floor(e.at / bucket_s) * bucket_s, e.system)].append(e)
    points = []
    for (b, system), evs in sorted(groups.items()):
        hops = sum(e.hops for e in evs)
        points.append(
            SeriesPoint(
                bucket_start=b,
                bucket_s=bucket_s,
                system=system,
                runs=len(evs),
                cost_per_entity=math.fsum(e.cost_usd for e in evs) / len(evs),
                actionable_rate=sum(1 for e in evs if e.actionable) / len(evs),
                latency_p95_s=percentile([e.latency_s for e in evs], 95),
                error_rate=_ratio(sum(e.error_count for e in evs), hops),
            )
        )
    return points


def time_series(
    ops,
    window_s: float,
    *,
    now: float,
    bucket_s: float | None = None,
    stage_id: str | None = None,
) -> list[SeriesPoint]:
    """Per-bucket, per-system series over the window ending at ``now``, read from the store."""
    bucket = bucket_s or default_bucket(window_s)
    events = query_events(ops, now - window_s, now, stage_id=stage_id)
    return series_from_events(events, bucket)
