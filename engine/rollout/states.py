"""The states of a rollout run and of its stages, and the rules the engine, the CLI and the console share.

``RunState`` is what ``rollout_runs.state`` stores, ``StageState`` what
``rollout_stages.state`` stores, and ``EffectiveState`` what
``rollout_status()`` reports: the stored run state, or (while the run is
active) what its job says: queued, paused, dead, failed, stopped. All three are
StrEnums whose values are the stored strings, so a stored string compares
equal to its member. The predicates (``can_pause``, ``can_promote``, ...) are
the one place that says which operator action makes sense in which state; the
engine still checks each request against the stored state when it acts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from engine.jobs.queue import JobState

#: a rollback that started this long ago and never finished may be taken over by a new request
ROLLBACK_STALE_S = 300.0


class RunState(StrEnum):
    """States of a rollout run (``rollout_runs.state``)."""

    RUNNING = "running"
    SOAKING = "soaking"  # stage passed; waiting out its minimum duration
    INCONCLUSIVE = "inconclusive"  # stage ended inconclusive; waiting for an approver
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    def is_active(self) -> bool:
        """The run still has a stage in play (a worker runs, soaks or waits for an operator)."""
        return self in (RunState.RUNNING, RunState.SOAKING, RunState.INCONCLUSIVE)

    def is_terminal(self) -> bool:
        """Nothing will change the run any more except a rollback (of a completed or cancelled run)."""
        return self in (RunState.ROLLED_BACK, RunState.COMPLETED, RunState.CANCELLED)

    def can_rollback(self) -> bool:
        """A rollback request may start from this state (a stale ``rolling_back`` may also be taken over)."""
        return self.is_active() or self in (RunState.COMPLETED, RunState.CANCELLED)

    def blocks_new_rollout(self) -> bool:
        """Only one rollout may be active (or rolling back) at a time."""
        return self.is_active() or self is RunState.ROLLING_BACK


class StageState(StrEnum):
    """States of one stage of a run (``rollout_stages.state``)."""

    PENDING = "pending"  # not reached (no row yet)
    RUNNING = "running"
    SOAKING = "soaking"
    INCONCLUSIVE = "inconclusive"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    SKIPPED = "skipped"  # nothing left to expose
    CANCELLED = "cancelled"

    def is_reached(self) -> bool:
        """The worker has started the stage (it has a row)."""
        return self is not StageState.PENDING

    def is_open(self) -> bool:
        """The stage is still being run or decided (a cancel closes it)."""
        return self in (StageState.RUNNING, StageState.SOAKING, StageState.INCONCLUSIVE)

    def can_promote(self) -> bool:
        """Every entity is in and the verdict is PASSED (soaking) or INCONCLUSIVE: it may be promoted."""
        return self in (StageState.SOAKING, StageState.INCONCLUSIVE)

    def is_done(self) -> bool:
        """The run has moved past the stage (promoted, or skipped with nothing to expose)."""
        return self in (StageState.PROMOTED, StageState.SKIPPED)


class EffectiveState(StrEnum):
    """What ``rollout_status()`` reports: the run's state, or what its job says while the run is active."""

    NONE = "none"  # no rollout has been started
    QUEUED = "queued"  # waiting for a worker
    RUNNING = "running"
    SOAKING = "soaking"
    INCONCLUSIVE = "inconclusive"
    PAUSED = "paused"  # the worker holds its place between batches
    DEAD = "dead"  # the worker stopped heartbeating or is gone
    FAILED = "failed"  # the job raised
    STOPPED = "stopped"  # the job ended but the run is still active
    ROLLING_BACK = "rolling_back"
    ROLLBACK_INTERRUPTED = "rollback_interrupted"  # an outage stopped the rollback: retry it (rollback, resume)
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    def is_active(self) -> bool:
        """A stage is still in play: the run is active and its job may still carry it on (or be resumed)."""
        return self in (
            EffectiveState.RUNNING,
            EffectiveState.SOAKING,
            EffectiveState.INCONCLUSIVE,
            EffectiveState.QUEUED,
            EffectiveState.PAUSED,
            EffectiveState.DEAD,
            EffectiveState.FAILED,
        )

    def is_terminal(self) -> bool:
        """The run is over (completed, rolled back or cancelled)."""
        return self in (EffectiveState.COMPLETED, EffectiveState.ROLLED_BACK, EffectiveState.CANCELLED)

    def awaits_operator(self) -> bool:
        """The run will not move on by itself: a person promotes, resumes or rolls back."""
        return self in (
            EffectiveState.INCONCLUSIVE,
            EffectiveState.PAUSED,
            EffectiveState.DEAD,
            EffectiveState.FAILED,
            EffectiveState.STOPPED,
            EffectiveState.ROLLBACK_INTERRUPTED,
        )

    def can_pause(self) -> bool:
        """A worker is (or is about to be) carrying the run on: it can be asked to pause between batches."""
        return self in (
            EffectiveState.RUNNING,
            EffectiveState.SOAKING,
            EffectiveState.INCONCLUSIVE,
            EffectiveState.QUEUED,
        )

    def can_resume(self) -> bool:
        """The run is paused, or its worker died or failed: resume continues from the last checkpoint
        (an interrupted rollback: resume finishes it)."""
        return self in (
            EffectiveState.PAUSED,
            EffectiveState.DEAD,
            EffectiveState.FAILED,
            EffectiveState.ROLLBACK_INTERRUPTED,
        )

    def can_promote(self, stage: StageState) -> bool:
        """The run is active and its current stage (in ``stage``) may be promoted."""
        return self.is_active() and stage.can_promote()

    def can_rollback(self) -> bool:
        """There is a run and it is not rolled back or being rolled back."""
        return self not in (EffectiveState.NONE, EffectiveState.ROLLED_BACK, EffectiveState.ROLLING_BACK)


def rollback_interrupted(run: Mapping[str, Any], now: float | None = None) -> bool:
    """The run (a ``rollout_runs`` row) is ``rolling_back`` but nobody is doing it: an outage stopped the
    rollback (``rollback_at`` reset to 0), or its requester died ``ROLLBACK_STALE_S`` ago."""
    if run["state"] != RunState.ROLLING_BACK:
        return False
    now = time.time() if now is None else now
    return not run["rollback_at"] or now - run["rollback_at"] > ROLLBACK_STALE_S


def effective_state(
    run_state: RunState, job_state: JobState | None, worker_alive: bool, *, rollback_stalled: bool = False
) -> EffectiveState:
    """The state ``rollout_status()`` reports for a run in ``run_state`` whose job is in ``job_state``
    (``rollback_stalled``: see ``rollback_interrupted``)."""
    if run_state is RunState.ROLLING_BACK and rollback_stalled:
        return EffectiveState.ROLLBACK_INTERRUPTED
    if not run_state.is_active() or job_state is None:
        return EffectiveState(run_state)
    if job_state is JobState.QUEUED:
        return EffectiveState.QUEUED
    if job_state is JobState.PAUSED:
        return EffectiveState.PAUSED if worker_alive else EffectiveState.DEAD
    if job_state is JobState.RUNNING:
        return EffectiveState(run_state) if worker_alive else EffectiveState.DEAD
    if job_state is JobState.DEAD:
        return EffectiveState.DEAD
    if job_state is JobState.FAILED:
        return EffectiveState.FAILED
    if job_state is JobState.CANCELLED:
        return EffectiveState.CANCELLED
    if job_state is JobState.SUCCEEDED:
        return EffectiveState.STOPPED  # the worker ended but the run is still active: resume it
    return EffectiveState(run_state)


#: the stored run states in which a run is active (for SQL ``state IN (...)`` guards)
ACTIVE_RUN_STATES: tuple[RunState, ...] = tuple(s for s in RunState if s.is_active())
#: the stored stage states a cancel closes
OPEN_STAGE_STATES: tuple[StageState, ...] = tuple(s for s in StageState if s.is_open())
