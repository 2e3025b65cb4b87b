"""The stage verdict: a pure function of the policy and the measurements.

``assess(policy, measurements, final=...) -> Verdict`` in the manner of Argo
Rollouts' analysis: every criterion gets a row with its own phase and reason,
the worst phase wins, and the runner only switches on the phase.

* A rollback trigger is **breached** (FAILED) when its test holds on the
  measurement ("point": the value; "bound": the interval's near side, i.e. we
  are confident it is breached) and at least ``min_sample`` entities are in.
  Below the minimum sample no trigger can fire (PENDING).
* A success criterion **clears** (PASSED) when its test holds ("point": the
  value; "bound": the interval's far side, i.e. we are confident it clears).
  Otherwise it is INCONCLUSIVE: not shown to be good enough.
* While the stage still has entities to run (``final=False``) only triggers
  can end it; otherwise the verdict is RUNNING (or PENDING below min sample).
  At the end: FAILED if a trigger is breached, PASSED if every success
  criterion clears, INCONCLUSIVE otherwise (pause for a person).

``promotion_gate`` adds the time rule: no promotion before the stage's
minimum duration unless an operator forces it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.rollout.stages import Check, Criterion, Metric, StagePolicy
from engine.rollout.stats import Measurement


class Phase(StrEnum):
    PENDING = "pending"  # too few entities for any criterion to count
    RUNNING = "running"  # enough data, no trigger breached, stage still running
    PASSED = "passed"
    INCONCLUSIVE = "inconclusive"
    FAILED = "failed"

    def is_terminal(self) -> bool:
        return self in (Phase.PASSED, Phase.INCONCLUSIVE, Phase.FAILED)

    @property
    def severity(self) -> int:
        """Worst wins: passed < pending < running < inconclusive < failed."""
        return _SEVERITY[self]


_SEVERITY = {Phase.PASSED: 0, Phase.PENDING: 1, Phase.RUNNING: 2, Phase.INCONCLUSIVE: 3, Phase.FAILED: 4}


def worst(phases) -> Phase:
    return max(phases, key=lambda p: p.severity, default=Phase.PASSED)


@dataclass(frozen=True)
class CriterionRow:
    kind: str  # "success" | "rollback"
    metric: str
    op: str
    threshold: float
    test: str
    value: float | None
    low: float | None
    high: float | None
    n: int
    phase: Phase
    reason: str

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["phase"] = str(self.phase)
        for k in ("value", "low", "high"):
            if isinstance(d[k], float) and not math.isfinite(d[k]):
                d[k] = str(d[k])
        return d


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    reason: str
    rows: tuple[CriterionRow, ...]
    n: int  # stage entities measured

    def to_dict(self) -> dict:
        return {"phase": str(self.phase), "reason": self.reason, "n": self.n, "rows": [r.to_dict() for r in self.rows]}


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return f"{v:.4g}"


def _tested_value(c: Criterion, m: Measurement) -> tuple[float | None, str]:
    """The number the criterion's test compares, and what it is called.

    "bound" asks for confidence that ``metric op threshold`` holds, so it uses
    the interval side furthest from holding: the lower bound for > and >=,
    the upper bound for < and <=. That reads "confidently clears" for a
    success criterion and "confidently breached" for a trigger.
    """
    if c.test is not Check.BOUND:
        return m.value, "value"
    return (m.low, "lower bound") if c.op in (">=", ">") else (m.high, "upper bound")


def _row(kind: str, c: Criterion, m: Measurement | None, stage_n: int, min_sample: int) -> CriterionRow:
    value = m.value if m else None
    low, high, n = (m.low, m.high, m.n) if m else (None, None, 0)

    def row(phase: Phase, reason: str) -> CriterionRow:
        return CriterionRow(
            kind=kind,
            metric=str(c.metric),
            op=c.op,
            threshold=c.threshold,
            test=str(c.test),
            value=value,
            low=low,
            high=high,
            n=n,
            phase=phase,
            reason=reason,
        )

    if stage_n < min_sample:
        return row(Phase.PENDING, f"sample {stage_n} < min_sample {min_sample}")
    if m is None or m.value is None:
        return row(Phase.INCONCLUSIVE if kind == "success" else Phase.PASSED, f"no data for {c.metric}")
    tested, what = _tested_value(c, m)
    if tested is None or (isinstance(tested, float) and math.isnan(tested)):
        tested, what = m.value, "value"
    holds = c.holds(tested)
    rel = c.op if holds else {">=": "<", ">": "<=", "<=": ">", "<": ">="}[c.op]
    text = f"{c.metric} {what} {_fmt(tested)} {rel} {c.threshold:g}"
    if kind == "success":
        return row(Phase.PASSED if holds else Phase.INCONCLUSIVE, ("clears: " if holds else "not shown: ") + text)
    return row(Phase.FAILED if holds else Phase.PASSED, ("breached: " if holds else "ok: ") + text)


def assess(policy: StagePolicy, measurements: Mapping[str, Measurement], *, n: int, final: bool) -> Verdict:
    """The verdict for a stage with ``n`` entities measured (see module doc)."""
    rows = tuple(
        [_row("success", c, measurements.get(str(c.metric)), n, policy.min_sample) for c in policy.success]
        + [_row("rollback", c, measurements.get(str(c.metric)), n, policy.min_sample) for c in policy.rollback]
    )
    breached = [r for r in rows if r.kind == "rollback" and r.phase is Phase.FAILED]
    if breached:
        return Verdict(Phase.FAILED, "; ".join(r.reason for r in breached), rows, n)
    if not final:
        if n < policy.min_sample:
            return Verdict(
                Phase.PENDING, f"sample {n} < min_sample {policy.min_sample}: no trigger can fire yet", rows, n
            )
        return Verdict(Phase.RUNNING, f"no rollback trigger breached after {n} entities", rows, n)
    if n < policy.min_sample:
        return Verdict(Phase.INCONCLUSIVE, f"stage ended with sample {n} < min_sample {policy.min_sample}", rows, n)
    success = [r for r in rows if r.kind == "success"]
    phase = worst(r.phase for r in success)
    if phase is Phase.PASSED:
        return Verdict(
            Phase.PASSED, f"every success criterion clears ({len(success)}) and no trigger is breached", rows, n
        )
    missing = [r.reason for r in success if r.phase is not Phase.PASSED]
    return Verdict(Phase.INCONCLUSIVE, "; ".join(missing), rows, n)


@dataclass(frozen=True)
class Gate:
    allowed: bool
    reason: str


def elapsed_days(started_at: float, now: float, time_scale: float) -> float:
    """Stage time in (scaled) days: real seconds × time_scale / 86400."""
    return max(0.0, now - started_at) * time_scale / 86400.0


def promotion_gate(verdict_phase: Phase, days: float, min_days: float, *, force: bool, operator: bool) -> Gate:
    """May the stage be promoted now? Pure; the runner and the CLI both ask it.

    Automatic promotion needs PASSED and the minimum duration. An operator may
    promote a PASSED or INCONCLUSIVE stage (that is what inconclusive asks a
    person for) once the minimum duration is over, or before it with ``force``.
    A FAILED stage is never promoted.
    """
    if verdict_phase is Phase.FAILED:
        return Gate(False, "the stage failed a rollback trigger: it is rolled back, not promoted")
    if not verdict_phase.is_terminal():
        return Gate(False, f"the stage has no final verdict yet ({verdict_phase}); wait for its entities to finish")
    if verdict_phase is Phase.INCONCLUSIVE and not operator:
        return Gate(False, "inconclusive: waiting for a person to promote or roll back")
    if days < min_days:
        if force and operator:
            return Gate(True, f"forced by operator after {days:.2f} of {min_days:g} minimum days")
        return Gate(False, f"{days:.2f} of {min_days:g} minimum days elapsed; promote --force to override")
    return Gate(True, f"{verdict_phase} and {days:.2f} >= {min_days:g} minimum days")


def recompute_from_record(record: Mapping[str, Any]) -> Verdict:
    """Recompute a decision record's verdict from its stored policy and measurements."""
    policy = StagePolicy.from_dict(record["policy"])
    measurements = {k: Measurement.from_dict(v) for k, v in record["measurements"].items()}
    return assess(policy, measurements, n=int(record["n"]), final=bool(record["final"]))


__all__ = [
    "Phase",
    "CriterionRow",
    "Verdict",
    "Gate",
    "assess",
    "promotion_gate",
    "elapsed_days",
    "recompute_from_record",
    "worst",
    "Metric",
]
