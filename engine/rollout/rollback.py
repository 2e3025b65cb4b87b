"""Rolling a rollout run back, and the ``rollback`` job handler.

A rollback restores every exposed entity of the run from its stage's snapshot
(GraphStore.restore), keeps the run's evidence trail but marks it rolled back,
assigns the entities back to the old system (``entity_assignments``), writes a
decision record and audits it. A compare-and-set on the run's state makes one
of any number of concurrent requests do it; a request that finds a stale
``rolling_back`` (its requester died) takes it over. A manual rollback first
asks the worker to stop and waits for it, so no live write lands after the
restore; the worker's own automatic rollback (a breached trigger) runs inline.

Before it waits for the worker, the rollback takes the run's graph fence over
(``GraphStore.take_fence`` on ``rollout:<run id>``): from then on no write of
any worker of the run lands, a frozen one that wakes up later included. A
rollback that a store outage interrupts stays ``rolling_back`` with
``rollback_at = 0`` (``rollback_interrupted``) and is finished by the next
rollback request, ``rollout resume``, or the run's next worker.

A rollback needs an approver (``rollout.rollback``) and never a second person:
anyone who may stop harm may do it at once, the person who started the run
included. The worker's automatic rollback acts as ``WORKER``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from engine.core.access import WORKER, Actor
from engine.core.settings import Settings
from engine.jobs.queue import Control, JobError, JobState, JobStore, freeing_frozen_workers
from engine.rollout import notices
from engine.rollout.records import (
    RollbackResult,
    RolloutError,
    discovery_run_id,
    insert_decision,
    read_run,
    read_stages,
)
from engine.rollout.states import RunState, StageState, rollback_interrupted
from engine.store.access import authorize
from engine.store.graph import GraphStore

#: how long a manual rollback waits for the worker to stop at its next checkpoint
ROLLBACK_WAIT_S = 120.0


def _wait_for_worker_to_stop(ops, job_id: int, actor: Actor, wait_s: float, sleep: Callable[[float], None]) -> None:
    """Cancel the run's job and wait until no worker holds it; RolloutError if it does not stop in ``wait_s``."""
    store = JobStore(ops)
    job = store.get(job_id)
    if job.state.is_active():
        try:
            store.request(job_id, Control.CANCEL, actor=str(actor))
        except JobError:
            pass
    end = time.time() + wait_s
    while True:
        store.reap()
        job = store.get(job_id)
        if not job.state.has_worker() and job.state is not JobState.QUEUED:
            return
        if time.time() >= end:
            raise RolloutError(
                f"the worker of job {job_id} did not stop within {wait_s:g}s (pid {job.pid}); "
                "nothing was restored: run the rollback again"
            )
        sleep(0.2)


def rollback(
    settings: Settings,
    ops,
    run_id: int | None,
    actor: Actor,
    reason: str,
    *,
    graph=None,
    from_job: int | None = None,
    trigger: Mapping[str, Any] | None = None,
    wait_s: float = ROLLBACK_WAIT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> RollbackResult:
    """Roll the run back: every exposed entity's hypotheses restored from its stage's snapshot, evidence kept
    but marked rolled back, entities assigned back to the old system, audited.

    Idempotent: a compare-and-set on the run's state lets exactly one of any
    number of concurrent requests do it; the others return ``performed=False``.
    A manual rollback first stops the worker (cancel, read at its next
    checkpoint) so no live write lands after the restore. ``from_job``: the
    worker's own automatic rollback (it is the worker). ``trigger``: the
    decision record inputs that fired it, kept in the rollback record. ``actor``: an approver (or the
    worker); four-eyes never applies to a rollback.
    """
    actor = authorize(ops, actor, "rollout.rollback")
    if not isinstance(reason, str) or not reason.strip():
        raise RolloutError("a rollback needs a reason (e.g. --reason 'cost up 30% in pilot')")
    token = uuid.uuid4().hex

    def claim() -> tuple[dict[str, Any], RunState] | RollbackResult:
        now = time.time()
        with ops.transaction() as db:
            run = read_run(db, run_id)
            state = RunState(run["state"])
            if state is RunState.ROLLED_BACK:
                ops.audit(actor, "rollout.rollback.noop", f"run {run['id']}", {"why": "already rolled back"}, db=db)
                return RollbackResult(run["id"], False, 0, 0, (), f"rollout {run['id']} is already rolled back")
            stale = rollback_interrupted(run, now)
            if state is RunState.ROLLING_BACK and not stale:
                ops.audit(actor, "rollout.rollback.noop", f"run {run['id']}", {"why": "in progress"}, db=db)
                return RollbackResult(
                    run["id"], False, 0, 0, (), f"rollout {run['id']} is being rolled back by another request"
                )
            if not state.can_rollback() and not stale:
                raise RolloutError(f"rollout {run['id']} is {state}: it cannot be rolled back")
            cur = db.execute(
                "UPDATE rollout_runs SET state = ?, rollback_token = ?, rollback_at = ?, updated_at = ?, message = ? "
                "WHERE id = ? AND state = ? AND rollback_token IS ?",
                [
                    RunState.ROLLING_BACK,
                    token,
                    now,
                    now,
                    f"rolling back: {reason}",
                    run["id"],
                    state,
                    run["rollback_token"],
                ],
            )
            if cur.rowcount != 1:  # cannot happen inside BEGIN IMMEDIATE, but never do it twice
                return RollbackResult(run["id"], False, 0, 0, (), f"rollout {run['id']} changed meanwhile")
            ops.audit(actor, "rollout.rollback.start", f"run {run['id']}", {"reason": reason, "was": state}, db=db)
            if trigger:  # a breached rollback trigger: the worker's automatic rollback
                notices.failed(db, run, reason, trigger, at=now)
        return run, state

    claimed = freeing_frozen_workers(ops.path, claim)  # a stopped worker may sit on the write lock
    if isinstance(claimed, RollbackResult):
        return claimed
    run, state = claimed
    own = graph is None
    try:
        try:
            if not run["dry_run"]:
                if own:
                    graph = GraphStore.open(settings)
                # from now on no worker of this run writes the graph, not even a frozen one that wakes up later
                graph.take_fence(fence_scope(run["id"]), f"rollback:{token}")
        except BaseException:
            _interrupted(ops, run["id"], token)
            raise
        return _finish(settings, ops, run, state, token, actor, reason, graph, from_job, trigger, wait_s, sleep)
    finally:
        if own and graph is not None:
            graph.close()


def fence_scope(run_id: int) -> str:
    """The graph fence of a rollout run's live writes (taken by each worker attempt, then by a rollback)."""
    return f"rollout:{run_id}"


def _interrupted(ops, run_id: int, token: str) -> None:
    """The store failed part way: let the next request (or the run's next worker) retry at once."""
    with ops.transaction() as db:
        db.execute(
            "UPDATE rollout_runs SET rollback_at = 0, message = ? WHERE id = ? AND rollback_token = ?",
            [
                "rollback interrupted (store error): it is retried by `rollout rollback`, `rollout resume` "
                "or the run's next worker",
                run_id,
                token,
            ],
        )


def _finish(
    settings: Settings,
    ops,
    run: Mapping[str, Any],
    state: RunState,
    token: str,
    actor: Actor,
    reason: str,
    graph,
    from_job: int | None,
    trigger: Mapping[str, Any] | None,
    wait_s: float,
    sleep: Callable[[float], None],
) -> RollbackResult:
    """The rollback after its compare-and-set and the fence: stop the worker, restore, mark, reassign, record."""
    if from_job is None and run["job_id"] is not None:
        try:
            _wait_for_worker_to_stop(ops, run["job_id"], actor, wait_s, sleep)
        except RolloutError:
            with ops.transaction() as db:  # let the next request take it over at once
                db.execute(
                    "UPDATE rollout_runs SET rollback_at = 0 WHERE id = ? AND rollback_token = ?", [run["id"], token]
                )
            raise
    with ops.connect() as db:
        stage_rows = [r for r in read_stages(db, run["id"]).values() if r["state"] != StageState.SKIPPED]
    restored = marked = 0
    exposed: list[str] = []
    if not run["dry_run"] and stage_rows:
        try:
            for r in stage_rows:
                cohort = json.loads(r["cohort"])
                exposed += cohort
                if r["snapshot"]:
                    graph.restore(json.loads(r["snapshot"]))  # idempotent: a retried rollback restores again
                    restored += len(cohort)
                marked += graph.mark_evidence_rolled_back(cohort, discovery_run_id(run["id"], r["stage"], "new"))
        except BaseException:
            _interrupted(ops, run["id"], token)
            raise
    done_at = time.time()
    with ops.transaction() as db:
        cur = db.execute(
            "UPDATE rollout_runs SET state = ?, finished_at = ?, updated_at = ?, message = ? "
            "WHERE id = ? AND rollback_token = ?",
            [RunState.ROLLED_BACK, done_at, done_at, f"rolled back by {actor}: {reason}", run["id"], token],
        )
        if cur.rowcount != 1:
            return RollbackResult(
                run["id"],
                False,
                restored,
                marked,
                (),
                f"rollout {run['id']}'s rollback was taken over by another request",
            )
        db.execute(
            "UPDATE rollout_stages SET state = ?, rolled_back_at = ? WHERE run_id = ? AND state != ?",
            [StageState.ROLLED_BACK, done_at, run["id"], StageState.SKIPPED],
        )
        if exposed:
            db.execute(
                "UPDATE entity_assignments SET system = 'old', config_hash = ?, updated_at = ? WHERE run_id = ?",
                [run["baseline_hash"], done_at, run["id"]],
            )
        stage = run["current_stage"] or (json.loads(run["stages"]) or [""])[0]
        record = {
            "reason": reason,
            "entities_restored": restored,
            "evidence_marked": marked,
            "stages": [r["stage"] for r in stage_rows],
            "was": state,
            "dry_run": bool(run["dry_run"]),
            "config": {"candidate_hash": run["candidate_hash"], "baseline_hash": run["baseline_hash"]},
            "automatic": from_job is not None,
        }
        if trigger:
            record.update(trigger)
        phase = (trigger or {}).get("verdict", {}).get("phase", "operator")
        insert_decision(
            db,
            run["id"],
            stage,
            at=done_at,
            gate="rollback",
            action="rollback",
            phase=phase,
            actor=actor,
            reason=reason,
            record=record,
        )
        ops.audit(
            actor,
            "rollout.rollback",
            f"run {run['id']}",
            {
                "reason": reason,
                "entities_restored": restored,
                "evidence_marked": marked,
                "automatic": from_job is not None,
            },
            db=db,
        )
        notices.rolled_back(
            db,
            run,
            actor=actor,
            reason=reason,
            restored=restored,
            marked=marked,
            automatic=from_job is not None,
            at=done_at,
        )
    return RollbackResult(
        run["id"],
        True,
        restored,
        marked,
        tuple(r["stage"] for r in stage_rows),
        f"rolled back rollout {run['id']}: {restored} entities restored from their snapshots, "
        f"{marked} evidence records marked rolled back",
    )


def run_rollback_job(ctx) -> dict:
    """Job handler of kind ``rollback``: a rollback run by a worker (params: run_id, actor, reason).

    ``actor``: the requester's identity (``Actor.to_dict()``), re-checked now; without one the worker acts
    as itself, naming whoever submitted the job in the reason."""
    p = ctx.params
    who = Actor.from_dict(p["actor"]) if isinstance(p.get("actor"), dict) else WORKER
    reason = str(p.get("reason", "requested"))
    if who is WORKER and p.get("actor"):
        reason = f"{reason} (requested by {str(p['actor'])[:80]})"
    return rollback(
        ctx.settings,
        ctx.ops,
        int(p["run_id"]),
        who,
        reason,
        from_job=ctx.job.id,
    ).to_dict()
