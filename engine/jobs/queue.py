"""Generic long-running jobs: a SQLite job table, a detached worker process, heartbeats and controls.

Any long piece of work (a rollout, a tuning study, a rollback) is a **job**
with a ``kind`` and JSON ``params``. A **handler** registered for the kind
does the work in a worker process::

    def run_my_job(ctx: JobContext) -> dict | None:
        for i, unit in enumerate(units_after(ctx.params, resume_from=...)):
            do(unit)
            ctx.checkpoint(done=i + 1, total=len(units))  # heartbeat; honours pause / cancel
        return {"summary": ...}                          # stored as the job's result

    register_kind("my_kind", "engine.my_module:run_my_job")
    job = JobStore(ops).submit("my_kind", {"x": 1}, actor="cli")
    launch_worker(settings, job.id)                 # `python -m engine worker --job ID`, detached

Lifecycle (``JobState``): QUEUED -> RUNNING <-> PAUSED -> SUCCEEDED | FAILED | CANCELLED.
A worker that stops heartbeating or whose process is gone is found by
``JobStore.reap`` and marked DEAD; ``requeue`` puts a DEAD (or FAILED) job back
to QUEUED and the next worker runs the handler again with ``ctx.attempt`` > 1:
handlers resume from their own checkpoints, so they must be restartable.

Controls (pause / resume / cancel) are a column of the job row that the
worker reads at every ``ctx.checkpoint``, i.e. between units of work: a
pause blocks the worker there (still heartbeating) until resume or cancel;
cancel raises ``JobCancelled`` out of ``checkpoint``.

Every claim gets a fresh **lease token**. Heartbeats and state changes are
fenced by it, so a worker that was declared dead and then wakes up gets
``LeaseLost`` instead of writing over its successor; handlers can fence their
own checkpoint transactions with ``ctx.assert_lease(db)``.

The clock and the sleep function are passed in: tests tick a fake clock.
"""

from __future__ import annotations

import builtins
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import psutil

from engine.core.errors import DiscoveryError, LeaseLost, StoreUnavailable
from engine.core.settings import REPO_ROOT, Settings
from engine.store.opsdb import Migration, is_lock_error, lock_holders
from engine.store.outbox import enqueue

Clock = Callable[[], float]
Sleep = Callable[[float], None]

MIGRATIONS: list[Migration] = [
    Migration(
        component="jobs",
        version=1,
        name="jobs, controls and job events",
        statements=(
            """
            CREATE TABLE IF NOT EXISTS jobs (
                id INTEGER PRIMARY KEY,
                kind TEXT NOT NULL,
                params TEXT NOT NULL DEFAULT '{}',
                state TEXT NOT NULL,
                control TEXT NOT NULL DEFAULT 'run',
                actor TEXT NOT NULL DEFAULT '',
                created_at REAL NOT NULL,
                started_at REAL,
                finished_at REAL,
                heartbeat_at REAL,
                pid INTEGER,
                pid_started REAL,
                host TEXT,
                token TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                progress_done INTEGER NOT NULL DEFAULT 0,
                progress_total INTEGER NOT NULL DEFAULT 0,
                message TEXT NOT NULL DEFAULT '',
                result TEXT,
                error TEXT
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_jobs_kind_state ON jobs (kind, state)",
            """
            CREATE TABLE IF NOT EXISTS job_events (
                id INTEGER PRIMARY KEY,
                job_id INTEGER NOT NULL,
                at REAL NOT NULL,
                event TEXT NOT NULL,
                actor TEXT NOT NULL DEFAULT '',
                detail TEXT NOT NULL DEFAULT ''
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_job_events_job ON job_events (job_id, id)",
        ),
    ),
]

#: a worker heartbeats at every checkpoint; one silent for longer than this is dead
DEFAULT_STALE_AFTER_S = 60.0
#: how often a paused worker looks at its control row again
DEFAULT_POLL_S = 0.5


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"  # its worker stopped heartbeating or is gone; can be requeued

    def is_terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    def has_worker(self) -> bool:
        """A worker process holds the job (and must heartbeat)."""
        return self in (JobState.RUNNING, JobState.PAUSED)

    def is_active(self) -> bool:
        """Queued or held by a worker: the job may still run (it can be cancelled)."""
        return self in (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)

    def can_requeue(self) -> bool:
        return self in (JobState.DEAD, JobState.FAILED)


class Control(StrEnum):
    RUN = "run"
    PAUSE = "pause"
    CANCEL = "cancel"


class JobError(DiscoveryError):
    """A job request that cannot be done as asked."""


class UnknownJob(JobError):
    def __init__(self, job_id: int):
        super().__init__(f"no job with id {job_id}: list jobs with `python -m engine worker --list`")
        self.job_id = job_id


class JobCancelled(DiscoveryError):
    """Raised out of ``JobContext.checkpoint`` when an operator cancelled the job."""


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    params: dict
    state: JobState
    control: Control
    actor: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    pid: int | None
    pid_started: float | None
    host: str | None
    token: str | None
    attempts: int
    progress_done: int
    progress_total: int
    message: str
    result: dict | None
    error: str | None

    @property
    def progress(self) -> float:
        return self.progress_done / self.progress_total if self.progress_total else 0.0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        return cls(
            id=row["id"],
            kind=row["kind"],
            params=json.loads(row["params"] or "{}"),
            state=JobState(row["state"]),
            control=Control(row["control"]),
            actor=row["actor"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            heartbeat_at=row["heartbeat_at"],
            pid=row["pid"],
            pid_started=row["pid_started"],
            host=row["host"],
            token=row["token"],
            attempts=row["attempts"],
            progress_done=row["progress_done"],
            progress_total=row["progress_total"],
            message=row["message"],
            result=json.loads(row["result"]) if row["result"] else None,
            error=row["error"],
        )

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["state"], d["control"] = str(self.state), str(self.control)
        d.pop("token")
        return d


# --------------------------------------------------------------------------- liveness


def _process_started(pid: int) -> float | None:
    """Start time of a live, non-zombie process, or None when there is none."""
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


def worker_liveness(job: Job, now: float, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> tuple[bool, str]:
    """Is the worker holding ``job`` alive? Pure apart from the process table look-up; says why."""
    if not job.state.has_worker():
        return False, f"job is {job.state}: no worker holds it"
    if job.host == socket.gethostname() and job.pid:
        started = _process_started(job.pid)
        if started is None:
            return False, f"worker pid {job.pid} is gone"
        if job.pid_started is not None and abs(started - job.pid_started) > 1.0:
            return False, f"worker pid {job.pid} was reused by another process"
    age = now - (job.heartbeat_at or job.started_at or job.created_at)
    if age > stale_after_s:
        return False, f"last heartbeat {age:.0f}s ago (> {stale_after_s:.0f}s)"
    return True, f"heartbeat {age:.1f}s ago"


# --------------------------------------------------------------------------- the store


class JobStore:
    """All SQL about jobs. Every method is one short transaction on the OpsDB."""

    def __init__(self, ops, clock: Clock = time.time):
        self.ops = ops
        self.clock = clock

    # -- reading
    def get(self, job_id: int) -> Job:
        with self.ops.connect() as db:
            rows = list(db.query("SELECT * FROM jobs WHERE id = ?", [job_id]))
        if not rows:
            raise UnknownJob(job_id)
        return Job.from_row(rows[0])

    # This method shadows the builtin in the class body: signatures below it spell builtins.list.
    def list(self, kind: str | None = None, states: Iterable[JobState] | None = None, limit: int = 50) -> list[Job]:
        where, args = [], []
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if states is not None:
            states = list(states)
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(str(s) for s in states)
        sql = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC LIMIT ?"
        with self.ops.connect() as db:
            return [Job.from_row(r) for r in db.query(sql, [*args, limit])]

    def events(self, job_id: int, limit: int = 200) -> builtins.list[dict[str, Any]]:
        with self.ops.connect() as db:
            return list(db.query("SELECT * FROM job_events WHERE job_id = ? ORDER BY id DESC LIMIT ?", [job_id, limit]))

    # -- writing
    def _event(self, db, job_id: int, event: str, actor: str = "", detail: str = "") -> None:
        db.execute(
            "INSERT INTO job_events (job_id, at, event, actor, detail) VALUES (?, ?, ?, ?, ?)",
            [job_id, self.clock(), event, actor, detail],
        )

    def submit(self, kind: str, params: Mapping[str, Any] | None = None, *, actor: str = "cli") -> Job:
        """Queue a job of ``kind``; a worker picks it up (see launch_worker)."""
        with self.ops.transaction() as db:
            cur = db.execute(
                "INSERT INTO jobs (kind, params, state, control, actor, created_at) VALUES (?, ?, ?, 'run', ?, ?)",
                [kind, json.dumps(dict(params or {}), sort_keys=True), str(JobState.QUEUED), actor, self.clock()],
            )
            job_id = cur.lastrowid
            self._event(db, job_id, "submitted", actor, kind)
        return self.get(job_id)

    def claim(
        self, job_id: int | None = None, *, kinds: Iterable[str] | None = None, pid: int | None = None
    ) -> Job | None:
        """Atomically take a QUEUED job (this one, or the oldest of ``kinds``) for this process.

        Returns None when there is nothing to take (already claimed, not queued).
        """
        pid = os.getpid() if pid is None else pid
        token = uuid.uuid4().hex
        now = self.clock()
        with self.ops.transaction() as db:
            if job_id is None:
                args: list[Any] = [str(JobState.QUEUED)]
                sql = "SELECT id FROM jobs WHERE state = ?"
                if kinds:
                    kinds = list(kinds)
                    sql += f" AND kind IN ({','.join('?' * len(kinds))})"
                    args += kinds
                row = list(db.query(sql + " ORDER BY id LIMIT 1", args))
                if not row:
                    return None
                job_id = row[0]["id"]
            cur = db.execute(
                """UPDATE jobs SET state = ?, token = ?, pid = ?, pid_started = ?, host = ?, started_at = ?,
                   heartbeat_at = ?, attempts = attempts + 1, error = NULL, finished_at = NULL
                   WHERE id = ? AND state = ?""",
                [
                    str(JobState.RUNNING),
                    token,
                    pid,
                    _process_started(pid),
                    socket.gethostname(),
                    now,
                    now,
                    job_id,
                    str(JobState.QUEUED),
                ],
            )
            if cur.rowcount != 1:
                return None
            self._event(db, job_id, "claimed", f"pid {pid}", f"host {socket.gethostname()}")
        return self.get(job_id)

    def _fenced(self, db, job: Job, sql: str, args: builtins.list[Any]) -> None:
        cur = db.execute(sql + " WHERE id = ? AND token = ?", [*args, job.id, job.token])
        if cur.rowcount != 1:
            raise LeaseLost(f"job {job.id}: this worker no longer holds it (declared dead or requeued); stopping")

    def assert_lease(self, db, job: Job) -> None:
        """Inside a caller's transaction: raise LeaseLost unless this worker still holds ``job``."""
        rows = list(db.query("SELECT token, state FROM jobs WHERE id = ?", [job.id]))
        if not rows or rows[0]["token"] != job.token or not JobState(rows[0]["state"]).has_worker():
            raise LeaseLost(f"job {job.id}: this worker no longer holds it; stopping")

    def heartbeat(
        self, job: Job, *, done: int | None = None, total: int | None = None, message: str | None = None
    ) -> Control:
        """Record liveness (and progress); return the control an operator asked for."""
        sets: list[str] = ["heartbeat_at = ?"]
        args: list[float | int | str] = [self.clock()]
        for col, val in (("progress_done", done), ("progress_total", total), ("message", message)):
            if val is not None:
                sets.append(f"{col} = ?")
                args.append(val)
        with self.ops.transaction() as db:
            self._fenced(db, job, f"UPDATE jobs SET {', '.join(sets)}", args)
            return Control(next(iter(db.query("SELECT control FROM jobs WHERE id = ?", [job.id])))["control"])

    def set_state(self, job: Job, state: JobState, detail: str = "") -> None:
        with self.ops.transaction() as db:
            self._fenced(db, job, "UPDATE jobs SET state = ?, heartbeat_at = ?", [str(state), self.clock()])
            self._event(db, job.id, str(state), "worker", detail)

    def pause_for_fault(self, job: Job, reason: str) -> Control:
        """The worker pauses itself because the machinery failed: state PAUSED with ``reason`` as the message;
        control becomes PAUSE only if it was RUN (an operator's pending cancel or pause is kept). Returns the
        control now in force."""
        now = self.clock()
        with self.ops.transaction() as db:
            self._fenced(
                db,
                job,
                "UPDATE jobs SET state = ?, heartbeat_at = ?, message = ?, "
                "control = CASE WHEN control = 'run' THEN 'pause' ELSE control END",
                [str(JobState.PAUSED), now, reason],
            )
            self._event(db, job.id, str(JobState.PAUSED), "worker", reason)
            return Control(next(iter(db.query("SELECT control FROM jobs WHERE id = ?", [job.id])))["control"])

    def resume_after_fault(self, job: Job) -> None:
        """The fault is gone: RUNNING again; control back to RUN unless an operator asked to cancel meanwhile."""
        with self.ops.transaction() as db:
            self._fenced(
                db,
                job,
                "UPDATE jobs SET state = ?, heartbeat_at = ?, "
                "control = CASE WHEN control = 'cancel' THEN control ELSE 'run' END",
                [str(JobState.RUNNING), self.clock()],
            )
            self._event(db, job.id, str(JobState.RUNNING), "worker", "resumed after a fault")

    def finish(self, job: Job, state: JobState, *, result: Mapping | None = None, error: str | None = None) -> None:
        assert state.is_terminal()
        now = self.clock()
        with self.ops.transaction() as db:
            self._fenced(
                db,
                job,
                "UPDATE jobs SET state = ?, finished_at = ?, heartbeat_at = ?, result = ?, error = ?",
                [str(state), now, now, json.dumps(result, default=str) if result is not None else None, error],
            )
            self._event(db, job.id, str(state), "worker", error or "")
            if state is JobState.FAILED and job.kind == "tuning":
                notify_tuning_failed(db, job, error or "", now)

    def request(self, job_id: int, control: Control, *, actor: str) -> Job:
        """Ask a job to pause, resume or cancel; the worker acts at its next checkpoint.

        A queued job is cancelled at once; asking a finished job raises JobError.
        """
        with self.ops.transaction() as db:
            rows = list(db.query("SELECT state FROM jobs WHERE id = ?", [job_id]))
            if not rows:
                raise UnknownJob(job_id)
            state = JobState(rows[0]["state"])
            if state.is_terminal():
                raise JobError(f"job {job_id} is already {state}; nothing to {control}")
            if control is Control.CANCEL and state in (JobState.QUEUED, JobState.DEAD):
                db.execute(
                    "UPDATE jobs SET state = ?, control = ?, finished_at = ? WHERE id = ?",
                    [str(JobState.CANCELLED), str(control), self.clock(), job_id],
                )
            else:
                db.execute("UPDATE jobs SET control = ? WHERE id = ?", [str(control), job_id])
            self._event(db, job_id, f"control:{control}", actor)
        return self.get(job_id)

    def reap(self, *, stale_after_s: float = DEFAULT_STALE_AFTER_S, kind: str | None = None) -> builtins.list[Job]:
        """Mark DEAD every running or paused job whose worker is gone or silent; return them.

        If the database stays locked for the busy timeout, the likeliest holder
        is a worker stopped inside a write transaction (or while it closes):
        ``kill_frozen_workers`` kills it, which releases the lock, and the reap
        is tried once more.
        """
        return freeing_frozen_workers(self.ops.path, lambda: self._reap(stale_after_s, kind))

    def _reap(self, stale_after_s: float, kind: str | None) -> builtins.list[Job]:
        now = self.clock()
        dead = []
        for job in self.list(kind=kind, states=(JobState.RUNNING, JobState.PAUSED), limit=1000):
            alive, why = worker_liveness(job, now, stale_after_s)
            if alive:
                continue
            with self.ops.transaction() as db:
                cur = db.execute(
                    "UPDATE jobs SET state = ?, token = NULL WHERE id = ? AND token IS ?",
                    [str(JobState.DEAD), job.id, job.token],
                )
                if cur.rowcount == 1:
                    self._event(db, job.id, "dead", "reaper", why)
                    notify_dead(db, job, why, now)
                    dead.append(job.id)
        return [self.get(i) for i in dead]

    def requeue(self, job_id: int, *, actor: str) -> Job:
        """Put a DEAD or FAILED job back in the queue (its handler resumes from its checkpoints)."""
        with self.ops.transaction() as db:
            rows = list(db.query("SELECT state FROM jobs WHERE id = ?", [job_id]))
            if not rows:
                raise UnknownJob(job_id)
            state = JobState(rows[0]["state"])
            if not state.can_requeue():
                raise JobError(f"job {job_id} is {state}; only a dead or failed job can be resumed from its checkpoint")
            db.execute(
                "UPDATE jobs SET state = ?, control = 'run', token = NULL WHERE id = ?", [str(JobState.QUEUED), job_id]
            )
            self._event(db, job_id, "requeued", actor, f"was {state}")
        return self.get(job_id)


# --------------------------------------------------------------------------- notifications

#: the console page that shows each job kind (the link of its messages)
JOB_PAGES = {"rollout": "rollout", "rollback": "rollout", "tuning": "tuning", "alerts.evaluate": "alerts"}


def notify_dead(db, job: Job, why: str, now: float) -> None:
    """Tell people a worker died (in the reaper's transaction): what it ran, when it last spoke, how to resume."""
    beat = f"{now - job.heartbeat_at:.0f}s before it was declared dead" if job.heartbeat_at else "never"
    enqueue(
        db,
        topic="worker.dead",
        key=f"job:{job.id}:dead:{job.token or job.attempts}",
        subject=f"Worker of job {job.id} ({job.kind}) is dead: {why}",
        facts={
            "job": job.id,
            "kind": job.kind,
            "pid": str(job.pid),
            "host": job.host,
            "last heartbeat": beat,
            "progress": job.message or "",
            "why": why,
            "what to do": "resume it from its checkpoint on its page (rollout resume, tune resume, restart evaluator)",
        },
        link=JOB_PAGES.get(job.kind, "alerts"),
        at=now,
    )


def notify_tuning_failed(db, job: Job, error: str, now: float) -> None:
    """Tell people a tuning study's job failed (in the transaction that records the failure)."""
    study = job.params.get("study_id")
    enqueue(
        db,
        topic="tuning.failed",
        key=f"job:{job.id}:failed:{job.attempts}",
        subject=f"Tuning study {study} failed: {error.splitlines()[0] if error else 'no error text'}",
        facts={
            "study": study,
            "job": job.id,
            "error": error,
            "progress": job.message or "",
            "what to do": "fix the cause, then resume the study on the Tuning page (trials done are kept)",
        },
        link="tuning",
        at=now,
    )


# --------------------------------------------------------------------------- frozen workers


def is_worker_command(cmdline: Iterable[str]) -> bool:
    """The command line of a worker process (``python -m engine worker ...``, engine.jobs.queue.launch_worker)."""
    args = list(cmdline)
    return any(args[i : i + 3] == ["-m", "engine", "worker"] for i in range(len(args)))


def kill_frozen_workers(db_path: Path | str) -> builtins.list[int]:
    """SIGKILL the stopped worker processes that hold a lock on the operations database; their pids.

    Found through the kernel's lock table (engine.store.opsdb.lock_holders),
    not through the database, which they lock. Only a process that is stopped
    (SIGSTOP, a debugger) and runs ``python -m engine worker`` is killed: it
    cannot make progress, and whatever it was doing is refused by its lease
    and the graph fence once it is declared dead; the kernel releases its
    locks as it dies.
    """
    killed: builtins.list[int] = []
    for pid in sorted(lock_holders(db_path)):
        try:
            proc = psutil.Process(pid)
            if proc.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
                continue
            if not is_worker_command(proc.cmdline()):
                continue
            proc.kill()
            proc.wait(timeout=5)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired, psutil.AccessDenied, ChildProcessError):
            continue
        killed.append(pid)
    return killed


def freeing_frozen_workers[T](db_path: Path | str, attempt: Callable[[], T]) -> T:
    """``attempt()``; when it finds the operations database locked, kill the stopped workers holding the
    lock (``kill_frozen_workers``) and try once more. Any other error, or a lock nobody frozen holds,
    propagates. What reap, rollback and the CLI's open do, so a frozen worker never holds them hostage."""
    try:
        return attempt()
    except StoreUnavailable as exc:
        if not is_lock_error(exc) or not kill_frozen_workers(db_path):
            raise
        return attempt()


# --------------------------------------------------------------------------- reading from a page or a command
# One call each, on the OpsDB, for callers that show jobs and never run them (the console pages).


def get_job(ops, job_id: int) -> Job:
    """The job ``job_id``; UnknownJob if there is none."""
    return JobStore(ops).get(job_id)


def recent_jobs(ops, kind: str | None = None, limit: int = 20) -> list[Job]:
    """The newest ``limit`` jobs (of ``kind`` if given), newest first."""
    return JobStore(ops).list(kind=kind, limit=limit)


def latest_job(ops, kind: str) -> Job | None:
    """The newest job of ``kind``, or None if none was ever submitted."""
    jobs = JobStore(ops).list(kind=kind, limit=1)
    return jobs[0] if jobs else None


def reap_dead_workers(ops, *, kind: str | None = None, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> list[Job]:
    """Mark DEAD every running or paused job (of ``kind`` if given) whose worker is gone or silent,
    so a page polling its state shows it dead rather than running; returns those jobs."""
    return JobStore(ops).reap(stale_after_s=stale_after_s, kind=kind)


# --------------------------------------------------------------------------- handlers


#: kind -> "module:function"; imported lazily so the worker loads only what it runs
JOB_KINDS: dict[str, str] = {
    "rollout": "engine.rollout.runner:run_rollout_job",
    "rollback": "engine.rollout.rollback:run_rollback_job",
    "rollout.guardrail": "engine.rollout.guardrails:run_guardrail_job",
    "tuning": "engine.tuning.runner:run_tuning_job",
    "alerts.evaluate": "engine.monitoring.alert_jobs:run_alert_evaluation_job",
    "bench.store": "engine.bench.store:run_bench_job",
    "notify.send": "engine.notify.sender:run_sender_job",
    "production": "engine.production.scheduler:run_production_job",
}

#: kinds as rows written before the packages existed spell them; a data dir from then still runs
LEGACY_KINDS: dict[str, str] = {
    "engine.bench_store:run_bench_job": "bench.store",
}


def register_kind(kind: str, target: str | Callable) -> None:
    """Make ``kind`` runnable: ``target`` is "module:function" or the function itself."""
    JOB_KINDS[kind] = target  # type: ignore[assignment]


def resolve_handler(kind: str) -> Callable[[JobContext], Mapping | None]:
    """The handler of ``kind``: a registered kind, or a kind spelled "module:function" itself."""
    kind = LEGACY_KINDS.get(kind, kind)
    target = JOB_KINDS.get(kind, kind if ":" in kind else None)
    if target is None:
        raise JobError(f"no handler for job kind {kind!r}; known kinds: {sorted(JOB_KINDS)}")
    if callable(target):
        return target
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


class JobContext:
    """What a handler gets: its params, its settings and the checkpoint/heartbeat calls."""

    def __init__(
        self,
        store: JobStore,
        job: Job,
        settings: Settings | None,
        *,
        sleep: Sleep = time.sleep,
        poll_s: float = DEFAULT_POLL_S,
        ops=None,
    ):
        self.store = store
        self.job = job
        self.settings = settings
        self.ops = ops if ops is not None else store.ops
        self.clock = store.clock
        self.sleep = sleep
        self.poll_s = poll_s

    @property
    def params(self) -> dict:
        return self.job.params

    @property
    def attempt(self) -> int:
        """1 on the first run; more when the job was requeued after a dead worker."""
        return self.job.attempts

    def assert_lease(self, db) -> None:
        self.store.assert_lease(db, self.job)

    def heartbeat(self, *, done: int | None = None, total: int | None = None, message: str | None = None) -> Control:
        return self.store.heartbeat(self.job, done=done, total=total, message=message)

    def checkpoint(self, *, done: int | None = None, total: int | None = None, message: str | None = None) -> None:
        """Call between units of work: heartbeat, then honour pause (block here) and cancel (raise)."""
        control = self.heartbeat(done=done, total=total, message=message)
        if control is Control.PAUSE:
            self.store.set_state(self.job, JobState.PAUSED, message or "")
            while control is Control.PAUSE:
                self.sleep(self.poll_s)
                control = self.heartbeat()
            if control is Control.RUN:
                self.store.set_state(self.job, JobState.RUNNING, "resumed")
        if control is Control.CANCEL:
            raise JobCancelled(f"job {self.job.id} cancelled by an operator")

    def wait(self, seconds: float, *, message: str | None = None) -> None:
        """Sleep ``seconds`` in poll-sized steps, checkpointing (so pause and cancel still work)."""
        end = self.clock() + seconds
        while True:
            self.checkpoint(message=message)
            left = end - self.clock()
            if left <= 0:
                return
            self.sleep(min(self.poll_s, left))


def execute(
    store: JobStore,
    job: Job,
    settings: Settings | None,
    *,
    sleep: Sleep = time.sleep,
    poll_s: float = DEFAULT_POLL_S,
    handler: Callable | None = None,
) -> Job:
    """Run a claimed job's handler to the end and record how it ended. Returns the final row."""
    ctx = JobContext(store, job, settings, sleep=sleep, poll_s=poll_s)
    result: Mapping | None = None
    error: str | None = None
    try:
        fn = handler or resolve_handler(job.kind)
        result = dict(fn(ctx) or {})
        state = JobState.SUCCEEDED
    except JobCancelled as exc:
        state, error = JobState.CANCELLED, str(exc)
    except LeaseLost:
        return store.get(job.id)  # someone else owns it now: write nothing
    except DiscoveryError as exc:
        state, error = JobState.FAILED, str(exc)
    except Exception as exc:  # a bug: keep the traceback in the worker log, one line in the row
        traceback.print_exc()
        state, error = JobState.FAILED, f"{type(exc).__name__}: {exc}"
    try:
        store.finish(job, state, result=result, error=error)
    except LeaseLost:
        pass
    return store.get(job.id)


def run_claimed(store: JobStore, job_id: int, settings: Settings | None, **kw) -> Job:
    """Claim ``job_id`` and execute it in this process (what `worker --job ID` does)."""
    job = store.claim(job_id)
    if job is None:
        current = store.get(job_id)
        raise JobError(f"job {job_id} is {current.state}, not queued; resume it first if it died")
    return execute(store, job, settings, **kw)


def worker_loop(
    store: JobStore,
    settings: Settings | None,
    *,
    kinds: Iterable[str] | None = None,
    idle_exit_s: float | None = None,
    sleep: Sleep = time.sleep,
    poll_s: float = 1.0,
    max_jobs: int | None = None,
) -> int:
    """Claim and run queued jobs one after another; stop after ``idle_exit_s`` without work. Returns jobs run."""
    ran = 0
    idle_since = store.clock()
    while max_jobs is None or ran < max_jobs:
        job = store.claim(kinds=kinds)
        if job is None:
            if idle_exit_s is not None and store.clock() - idle_since >= idle_exit_s:
                break
            sleep(poll_s)
            continue
        execute(store, job, settings, sleep=sleep)
        ran += 1
        idle_since = store.clock()
    return ran


# --------------------------------------------------------------------------- the worker process


def worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["DISCOVERY_DATA_DIR"] = str(settings.data_dir)
    env["DISCOVERY_GRAPH"] = settings.graph_name
    if settings.falkordb_url:
        env["FALKORDB_URL"] = settings.falkordb_url
    else:
        env.pop("FALKORDB_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def worker_log_path(settings: Settings, job_id: int) -> Path:
    return settings.log_dir / f"worker-job-{job_id}.log"


def launch_worker(settings: Settings, job_id: int, *, extra_args: Iterable[str] = ()) -> int:
    """Start ``python -m engine worker --job ID`` detached (own session, output to a log file); return its pid.

    The child is reaped by a daemon thread so a long-lived parent (the console)
    does not collect zombies; it outlives a CLI parent that exits at once.
    """
    settings.ensure_dirs()
    # the child keeps its own copy of the log file descriptor; ours is closed once it is started
    with open(worker_log_path(settings, job_id), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "worker", "--job", str(job_id), *extra_args],
            cwd=str(REPO_ROOT),
            env=worker_env(settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    threading.Thread(target=proc.wait, name=f"reap-worker-{proc.pid}", daemon=True).start()
    return proc.pid


def resume_job(
    store: JobStore,
    settings: Settings,
    job_id: int,
    *,
    actor: str,
    launch: bool = True,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
) -> tuple[Job, str]:
    """Resume a job whatever happened to it: un-pause a live worker, or requeue a dead one and start a worker."""
    store.reap(stale_after_s=stale_after_s)
    job = store.get(job_id)
    if job.state.has_worker():
        store.request(job_id, Control.RUN, actor=actor)
        return store.get(job_id), "resume requested from the live worker"
    if job.state.can_requeue():
        store.requeue(job_id, actor=actor)
    elif job.state is not JobState.QUEUED:
        raise JobError(f"job {job_id} is {job.state}; nothing to resume")
    if launch:
        pid = launch_worker(settings, job_id)
        return store.get(job_id), f"worker started (pid {pid}); it continues from the last checkpoint"
    return store.get(job_id), "queued; start a worker to continue it"


def wait_for(
    store: JobStore,
    job_id: int,
    *,
    until: Callable[[Job], bool],
    timeout_s: float,
    sleep: Sleep = time.sleep,
    poll_s: float = 0.2,
) -> Job:
    """Poll the job row until ``until(job)`` holds; raise JobError after ``timeout_s`` (of store.clock)."""
    end = store.clock() + timeout_s
    while True:
        job = store.get(job_id)
        if until(job):
            return job
        if store.clock() >= end:
            raise JobError(f"job {job_id} still {job.state} after {timeout_s:.0f}s ({job.message or 'no message'})")
        sleep(poll_s)
