"""Builders shared by the monitoring tests: run results and metric events from literals, a fake clock."""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.model import Decision, Depth, HopRecord, HopType, HypothesisOutcome, RunResult, Status
from engine.monitoring.events import MetricEvent


@dataclass
class FakeClock:
    """A clock tests tick by hand."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def make_run(
    entity_id: str = "arsenal-fc",
    *,
    system: str = "new",
    cost: float = 0.5,
    hops: int = 4,
    errors: tuple[str, ...] = (),
    actionable: bool = False,
    promoted: int = 0,
    confidences: tuple[float, ...] = (0.5, 0.2),
    engine_time_s: float = 0.002,
    evidence_latency_s: float = 3.0,
    config_hash: str = "cfg-new",
    shadow: bool = False,
    iterations: int | None = None,
) -> RunResult:
    """A RunResult whose figures are exactly the ones given.

    Hops go round-robin over the hypotheses (one per confidence); the first
    ``promoted`` hypotheses end PROMOTED; the first ``len(errors)`` hops errored.
    """
    hyp_ids = [f"{entity_id}::p{i}" for i in range(len(confidences))]
    records = []
    for i in range(hops):
        err = errors[i] if i < len(errors) else None
        records.append(
            HopRecord(
                iteration=i + 1,
                hypothesis_id=hyp_ids[i % len(hyp_ids)],
                pattern=f"p{i % len(hyp_ids)}",
                category="CRM Implementation" if i % 2 else "Ticketing",
                eig=0.1,
                hop_type=HopType.PRESS_RELEASE,
                depth=Depth.SURFACE,
                decision=Decision.NO_PROGRESS if err else Decision.ACCEPT,
                delta=0.0 if err else 0.06,
                confidence_after=0.5,
                cost_usd=cost / hops if hops else 0.0,
                latency_s=evidence_latency_s / hops if hops else 0.0,
                error=err,
            )
        )
    outcomes = tuple(
        HypothesisOutcome(
            id=hid,
            pattern=f"p{i}",
            category="Ticketing",
            confidence=c,
            status=Status.PROMOTED if i < promoted else Status.ACTIVE,
            accepts=2 if i < promoted else 0,
        )
        for i, (hid, c) in enumerate(zip(hyp_ids, confidences))
    )
    return RunResult(
        entity_id=entity_id,
        system=system,
        config_hash=config_hash,
        iterations=hops if iterations is None else iterations,
        cost_usd=cost,
        hops=tuple(records),
        outcomes=outcomes,
        actionable=actionable,
        stop_reason="max iterations",
        engine_time_s=engine_time_s,
        evidence_latency_s=evidence_latency_s,
        shadow=shadow,
        errors=tuple(errors),
    )


def make_event(
    at: float = 1_800_000_000.0, *, run_id: str = "run-1", stage_id: str | None = None, **kwargs
) -> MetricEvent:
    """A MetricEvent built through the real MetricEvent.from_run path."""
    truth = kwargs.pop("truth", None)
    name = kwargs.pop("entity_name", "")
    return MetricEvent.from_run(
        make_run(**kwargs), at=at, run_id=run_id, stage_id=stage_id, truth=truth, entity_name=name
    )
