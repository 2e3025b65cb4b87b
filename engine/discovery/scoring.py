"""Scoring a set of runs: what rollout, monitoring and tuning all measure.

``score_runs(results, truth)`` -> ``Scorecard``. ``truth(entity_id)`` says
whether an entity is truly actionable (True/False) or is unknown (None); it
is the only door to ground truth (``SimulatedWorld.truth`` for the simulated
world). Precision and recall count only entities whose truth is known.

Percentiles are engine.core.percentiles' nearest rank, so they are always
values that were actually measured. Undefined figures (no actionable calls, no truly
actionable entity, no runs) are None, never a made-up 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from engine.core.model import RunResult
from engine.core.percentiles import percentile


@dataclass(frozen=True)
class Scorecard:
    n: int  # runs scored
    cost_total_usd: float
    cost_per_entity_usd: float | None
    actionable: int  # runs that ended actionable
    actionable_rate: float | None
    truth_known: int  # runs whose entity's truth is known
    true_positives: int
    false_positives: int
    false_negatives: int
    precision: float | None  # of actionable calls with known truth, the share truly actionable
    recall: float | None  # of truly actionable entities, the share called actionable
    hops: int
    iterations_mean: float | None
    errors: int  # errored hops
    error_rate: float | None  # errored hops / hops
    hop_latency_p50_s: float | None  # evidence latency per hop
    hop_latency_p95_s: float | None
    hop_latency_p99_s: float | None
    entity_latency_p50_s: float | None  # evidence latency per entity run (sum of its hops)
    entity_latency_p95_s: float | None
    entity_latency_p99_s: float | None
    engine_ms_p50: float | None  # engine's own time per entity run, ms (evidence and store I/O excluded)
    engine_ms_p95: float | None
    engine_ms_p99: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


@dataclass(frozen=True)
class Confusion:
    """Actionable calls against the truth: the one confusion matrix rollout, monitoring and tuning use."""

    true_positives: int = 0  # called actionable, truly actionable
    false_positives: int = 0  # called actionable, not actionable
    false_negatives: int = 0  # not called, truly actionable
    true_negatives: int = 0  # not called, not actionable
    unknown: int = 0  # entities whose truth is unknown: counted nowhere else

    @property
    def known(self) -> int:
        return self.true_positives + self.false_positives + self.false_negatives + self.true_negatives


def confusion(results: Iterable[RunResult], truth: Callable[[str], bool | None]) -> Confusion:
    """Count each run's actionable call against ``truth(entity_id)`` (None = unknown). Pure."""
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "unknown": 0}
    for r in results:
        actual = truth(r.entity_id)
        if actual is None:
            key = "unknown"
        elif r.actionable:
            key = "tp" if actual else "fp"
        else:
            key = "fn" if actual else "tn"
        counts[key] += 1
    return Confusion(counts["tp"], counts["fp"], counts["fn"], counts["tn"], counts["unknown"])


def score_runs(results: Iterable[RunResult], truth: Callable[[str], bool | None] | None = None) -> Scorecard:
    runs = list(results)
    truth = truth or (lambda _id: None)
    cm = confusion(runs, truth)
    tp, fp, fn, known = cm.true_positives, cm.false_positives, cm.false_negatives, cm.known
    hop_lat = [h.latency_s for r in runs for h in r.hops]
    ent_lat = [r.evidence_latency_s for r in runs]
    eng = [r.engine_time_s * 1000.0 for r in runs]
    hops = sum(r.iterations for r in runs)
    errors = sum(r.error_count for r in runs)
    cost = sum(r.cost_usd for r in runs)
    actionable = sum(1 for r in runs if r.actionable)
    return Scorecard(
        n=len(runs),
        cost_total_usd=cost,
        cost_per_entity_usd=_ratio(cost, len(runs)),
        actionable=actionable,
        actionable_rate=_ratio(actionable, len(runs)),
        truth_known=known,
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        hops=hops,
        iterations_mean=_ratio(hops, len(runs)),
        errors=errors,
        error_rate=_ratio(errors, hops),
        hop_latency_p50_s=percentile(hop_lat, 50),
        hop_latency_p95_s=percentile(hop_lat, 95),
        hop_latency_p99_s=percentile(hop_lat, 99),
        entity_latency_p50_s=percentile(ent_lat, 50),
        entity_latency_p95_s=percentile(ent_lat, 95),
        entity_latency_p99_s=percentile(ent_lat, 99),
        engine_ms_p50=percentile(eng, 50),
        engine_ms_p95=percentile(eng, 95),
        engine_ms_p99=percentile(eng, 99),
    )


# --------------------------------------------------------------------------- side by side

#: (label, Scorecard field, format) of the old-vs-new comparison table, in display order
COMPARISON_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("entities", "n", "int"),
    ("cost total (USD)", "cost_total_usd", "usd"),
    ("cost per entity (USD)", "cost_per_entity_usd", "usd4"),
    ("actionable calls", "actionable", "int"),
    ("actionable rate", "actionable_rate", "pct"),
    ("true positives", "true_positives", "int"),
    ("false positives", "false_positives", "int"),
    ("precision", "precision", "pct"),
    ("recall", "recall", "pct"),
    ("hops", "hops", "int"),
    ("iterations per entity", "iterations_mean", "f2"),
    ("errored hops", "errors", "int"),
    ("error rate", "error_rate", "pct"),
    ("hop latency p50 (s)", "hop_latency_p50_s", "f2"),
    ("hop latency p95 (s)", "hop_latency_p95_s", "f2"),
    ("entity latency p50 (s)", "entity_latency_p50_s", "f1"),
    ("entity latency p95 (s)", "entity_latency_p95_s", "f1"),
    ("engine ms p50", "engine_ms_p50", "f2"),
    ("engine ms p95", "engine_ms_p95", "f2"),
)


def format_value(value: float | int | None, kind: str) -> str:
    """A figure as the tables show it; None is 'n/a', never a made-up number."""
    if value is None:
        return "n/a"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "usd":
        return f"${value:,.2f}"
    if kind == "usd4":
        return f"${value:.4f}"
    if kind == "pct":
        return f"{100.0 * value:.1f}%"
    if kind == "f1":
        return f"{value:.1f}"
    return f"{value:.2f}"


def _change(old: float | int | None, new: float | int | None, kind: str) -> str:
    if old is None or new is None:
        return "n/a"
    if kind == "pct":
        return f"{100.0 * (new - old):+.1f} pts"
    if old == 0:
        return "n/a" if new == 0 else "new only"
    return f"{(new - old) / abs(old) * 100.0:+.1f}%"


def comparison_rows(old: Scorecard, new: Scorecard) -> list[dict[str, str]]:
    """One row per COMPARISON_FIELDS entry: metric, old, new, change (new vs old)."""
    rows = []
    for label, name, kind in COMPARISON_FIELDS:
        a, b = getattr(old, name), getattr(new, name)
        rows.append(
            {"metric": label, "old": format_value(a, kind), "new": format_value(b, kind), "change": _change(a, b, kind)}
        )
    return rows
