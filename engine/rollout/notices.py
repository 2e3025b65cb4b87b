"""What a rollout tells people: the outbox messages of its events, written in the event's transaction.

Each function takes the open transaction (``db``) in which the rollout code
records the event (a start, a stage-end gate, a rollback, a promotion that
makes a config live) and enqueues one message (engine.store.outbox.enqueue)
keyed by the run and the event, so a retried or resumed step adds nothing.
The text says what happened and carries the figures a person acts on: the
criteria with their values and confidence intervals, and who can act with
what command when the rollout waits for a person. The callers have authorized
the actor each message names; these functions only tell.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from engine.core.access import Actor
from engine.store.outbox import criterion_text, enqueue, figure

#: the console page every rollout message links to
PAGE = "rollout"
#: who can act on a stage that waits, and how (said in the message)
WHO_CAN_ACT = (
    "an approver: Promote or Roll back on the Rollout page, or "
    "`python -m engine rollout promote --run {run}` / `python -m engine rollout rollback --run {run} --reason ...`"
)


def _verdict(record: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (record or {}).get("verdict") or {}


def _level(record: Mapping[str, Any] | None) -> Any:
    return ((record or {}).get("thresholds") or {}).get("confidence")


def criteria_facts(record: Mapping[str, Any] | None, kinds: Sequence[str], phases: Sequence[str]) -> dict[str, str]:
    """One fact per criterion row of the record's verdict whose kind and phase match, with its interval."""
    rows = [r for r in _verdict(record).get("rows") or [] if r.get("kind") in kinds and r.get("phase") in phases]
    out: dict[str, str] = {}
    for i, row in enumerate(rows):
        label = "breached trigger" if row.get("kind") == "rollback" else "success criterion"
        out[label if len(rows) == 1 else f"{label} {i + 1}"] = criterion_text(row, _level(record))
    return out


def started(db, run_id: int, *, stages: Sequence[str], actor: Actor, facts: Mapping[str, Any], at: float) -> None:
    """A rollout run was created (control.start_rollout)."""
    enqueue(
        db,
        topic="rollout.started",
        key=f"rollout:{run_id}:started",
        subject=f"Rollout {run_id} started by {actor}: {' -> '.join(stages)}",
        facts={"run": run_id, "stages": " -> ".join(stages), "started by": str(actor), **facts},
        link=PAGE,
        at=at,
    )


def stage_end(db, run: Mapping[str, Any], stage: str, record: Mapping[str, Any], *, passed: bool, at: float) -> None:
    """A stage's final gate said pass (soak, then promote) or inconclusive (a person decides)."""
    run_id = run["id"]
    v = _verdict(record)
    facts: dict[str, Any] = {"run": run_id, "stage": stage, "entities measured": v.get("n"), "verdict": v.get("reason")}
    if passed:
        facts["soak"] = (
            f"{figure(record.get('elapsed_days'))} of {figure(record.get('min_duration_days'))} minimum days elapsed"
        )
        facts.update(criteria_facts(record, ("success",), ("passed",)))
        enqueue(
            db,
            topic="rollout.stage_passed",
            key=f"rollout:{run_id}:{stage}:passed",
            subject=f"Rollout {run_id}: stage {stage} passed and is soaking before promotion",
            facts=facts,
            link=PAGE,
            at=at,
        )
        return
    facts.update(criteria_facts(record, ("success",), ("inconclusive", "pending")))
    facts["who can act"] = WHO_CAN_ACT.format(run=run_id)
    enqueue(
        db,
        topic="rollout.inconclusive",
        key=f"rollout:{run_id}:{stage}:inconclusive",
        subject=f"Rollout {run_id}: stage {stage} is inconclusive and waits for a person to promote or roll back",
        facts=facts,
        link=PAGE,
        at=at,
    )


def failed(db, run: Mapping[str, Any], reason: str, trigger: Mapping[str, Any], *, at: float) -> None:
    """A rollback trigger was breached: the worker rolls the run back (rollback.rollback's claim)."""
    run_id = run["id"]
    stage = trigger.get("stage") or run.get("current_stage") or ""
    facts: dict[str, Any] = {"run": run_id, "stage": stage, "entities measured": _verdict(trigger).get("n")}
    facts.update(criteria_facts(trigger, ("rollback",), ("failed",)))
    facts["reason"] = reason
    facts["what happens"] = "the worker restores every exposed entity from its snapshot; a message follows when done"
    enqueue(
        db,
        topic="rollout.failed",
        key=f"rollout:{run_id}:failed",
        subject=f"Rollout {run_id}: stage {stage} failed a rollback trigger and is rolling back",
        facts=facts,
        link=PAGE,
        at=at,
    )


def rolled_back(
    db, run: Mapping[str, Any], *, actor: Actor, reason: str, restored: int, marked: int, automatic: bool, at: float
) -> None:
    """A rollback finished (rollback._finish)."""
    run_id = run["id"]
    enqueue(
        db,
        topic="rollout.rolled_back",
        key=f"rollout:{run_id}:rolled_back",
        subject=f"Rollout {run_id} rolled back ({'automatically' if automatic else f'by {actor}'})",
        facts={
            "run": run_id,
            "reason": reason,
            "entities restored": restored,
            "evidence marked rolled back": marked,
            "by": str(actor),
            "live config": "unchanged (the baseline keeps running)",
        },
        link=PAGE,
        at=at,
    )


def production_promoted(
    db, run: Mapping[str, Any], stage: str, *, actor: Actor, record: Mapping[str, Any], at: float
) -> None:
    """The last stage was promoted and the candidate config is live (control.promote_stage)."""
    run_id = run["id"]
    candidate = json.loads(run["candidate"]) if isinstance(run.get("candidate"), str) else {}
    facts: dict[str, Any] = {
        "run": run_id,
        "stage": stage,
        "started by": str(run.get("actor") or ""),
        "promoted by": str(actor),
        "four-eyes": record.get("four_eyes_outcome") or "not required",
        "live config hash": run["candidate_hash"],
        "previous config hash": run["baseline_hash"],
        "gate": record.get("gate"),
        "forced": bool(record.get("force")),
    }
    if candidate:
        facts["parameters"] = len(candidate)
    facts.update(criteria_facts(record, ("success",), ("passed", "inconclusive")))
    enqueue(
        db,
        topic="production.promoted",
        key=f"rollout:{run_id}:production_promoted",
        subject=f"Rollout {run_id}: production promoted by {actor}; config {run['candidate_hash'][:12]} is live",
        facts=facts,
        link=PAGE,
        at=at,
    )


def guardrail_reverted(
    db,
    run: Mapping[str, Any],
    *,
    reason: str,
    record: Mapping[str, Any] | None,
    reverted_to: str,
    actor: Actor,
    at: float,
) -> None:
    """The production guardrail put the previous config back after a promotion (engine.rollout.guardrails:
    to be called in the transaction that records the revert). ``record``: the guardrail's verdict record
    (``verdict.rows`` with intervals, ``thresholds.confidence``), ``reverted_to``: the config hash now live."""
    run_id = run["id"]
    facts: dict[str, Any] = {"run": run_id, "reverted by": str(actor), "reason": reason}
    facts.update(criteria_facts(record, ("rollback",), ("failed",)))
    facts["live config now"] = reverted_to
    facts["withdrawn config"] = run.get("candidate_hash", "")
    enqueue(
        db,
        topic="production.guardrail_reverted",
        key=f"rollout:{run_id}:guardrail_reverted",
        subject=f"Rollout {run_id}: the production guardrail reverted to config {reverted_to[:12]}: {reason}",
        facts=facts,
        link=PAGE,
        at=at,
    )
