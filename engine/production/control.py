"""Operating the production scheduler: start, pause, resume, stop, and what the status and the plan say.

One call per operator action, each authorized (operator; a daily budget other than the default needs an
approver, as it changes what production spends) and audited with its actor; the CLI (`python -m engine
production`) and the Production page call these and nothing else. The scheduler's own rows are the
worker's. Only one scheduler runs at a time: a start while one is active is refused with one line saying
what to do.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core.access import Actor
from engine.core.settings import Settings, load_settings
from engine.discovery.evidence import EvidenceSource
from engine.discovery.limits import RunLimits, check_whole
from engine.discovery.runs import EvidenceSpec, make_source
from engine.jobs.queue import Control, Job, JobError, JobState, JobStore, launch_worker, resume_job
from engine.production.budget import DEFAULT_DAILY_BUDGET_USD, check_budget, day_of, remaining
from engine.production.policy import ORDERS, Candidate, DueEntity, Group, RefreshPolicy, classify
from engine.production.records import (
    JOB_KIND,
    DaySummary,
    ProductionError,
    day_summary,
    day_timeline,
    dumps,
    last_visits,
    read_run,
)
from engine.production.scheduler import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, read_candidates
from engine.store.access import authorize
from engine.store.graph import GraphStore

#: the plan's length shown by default (the page's table, `production plan`)
DEFAULT_PLAN_SIZE = 20


@dataclass(frozen=True)
class ProductionStatus:
    """Where production stands today: the scheduler's state, the day's spend against its budget, visits,
    how many entities are due, overdue and new, and the day's timeline (spend and visits)."""

    run: dict | None
    job: Job | None
    state: str  # "not started", "running", "paused", "paused by a fault", "stopped", "failed", "dead", "queued"
    message: str
    day: str
    budget_usd: float | None
    summary: DaySummary
    entities: int
    due: int
    overdue: int
    new: int
    timeline: list[dict] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.job is not None and self.job.state.is_active()

    @property
    def remaining_usd(self) -> float | None:
        return None if self.budget_usd is None else remaining(self.budget_usd, self.summary.spent_usd)

    @property
    def fault(self) -> str:
        """The fault reason while the scheduler is paused by a fault ("" otherwise)."""
        return self.message if self.state == "paused by a fault" else ""

    def to_dict(self) -> dict[str, Any]:
        run = dict(self.run) if self.run else None
        return {
            "run": run,
            "job_id": self.job.id if self.job else None,
            "state": self.state,
            "message": self.message,
            "day": self.day,
            "budget_usd": self.budget_usd,
            "spent_usd": round(self.summary.spent_usd, 6),
            "remaining_usd": self.remaining_usd,
            "visits": self.summary.visits,
            "entities_visited": self.summary.entities,
            "became_actionable": self.summary.became_actionable,
            "abandoned_batches": self.summary.abandoned,
            "entities": self.entities,
            "due": self.due,
            "overdue": self.overdue,
            "new": self.new,
        }


def _job(ops, run: dict | None) -> Job | None:
    if not run or run.get("job_id") is None:
        return None
    try:
        return JobStore(ops).get(int(run["job_id"]))
    except JobError:
        return None


def state_of(job: Job | None) -> str:
    """The scheduler's state in words an operator reads."""
    if job is None:
        return "not started"
    if job.state is JobState.PAUSED and job.message.startswith("paused by a fault"):
        return "paused by a fault"
    return {
        JobState.QUEUED: "starting",
        JobState.RUNNING: "running",
        JobState.PAUSED: "paused",
        JobState.SUCCEEDED: "stopped",
        JobState.CANCELLED: "stopped",
        JobState.FAILED: "failed",
        JobState.DEAD: "stopped unexpectedly",
    }[job.state]


def _active_job(ops) -> tuple[dict | None, Job | None]:
    with ops.connect() as db:
        run = read_run(db)
    job = _job(ops, run)
    return run, job


def check_batch_size(value: Any) -> int:
    return check_whole(value, "--batch-size", MAX_BATCH_SIZE)


def start_production(
    settings: Settings,
    ops,
    *,
    budget_usd: float = DEFAULT_DAILY_BUDGET_USD,
    policy: RefreshPolicy | None = None,
    evidence: EvidenceSpec | None = None,
    concurrency: int = 1,
    limits: RunLimits | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    actor: Actor,
    launch: bool = True,
    graph=None,
) -> int:
    """Validate, record a production run, submit its job and (``launch``) start a worker; returns the run id.

    Every bad input is a one-line DiscoveryError and nothing is written. Refused while another scheduler
    is active (running, paused or starting): pause or stop that one first. An operator starts with the
    default daily budget; choosing another needs an approver (``production.budget``)."""
    who = authorize(ops, actor, "production.start")
    budget_usd = check_budget(budget_usd)
    if budget_usd != DEFAULT_DAILY_BUDGET_USD:
        who = authorize(ops, who, "production.budget")
    policy = policy or RefreshPolicy()
    evidence = evidence or EvidenceSpec()
    check_whole(concurrency, "--concurrency", 256)
    batch_size = check_batch_size(batch_size)
    if evidence.kind != "world":
        checked: EvidenceSource = make_source(evidence)  # a bad replay file or URL is refused now
        close = getattr(checked, "close", None)
        if callable(close):
            close()
    own_graph = graph is None
    if own_graph:
        graph = GraphStore.open(settings)
    try:
        if graph.count_entities() == 0:
            raise ProductionError("the graph holds no entities: seed it first (python -m engine seed --entities 3400)")
    finally:
        if own_graph:
            graph.close()
    store = JobStore(ops)
    store.reap(kind=JOB_KIND)
    run, job = _active_job(ops)
    if job is not None and job.state.is_active():
        raise ProductionError(
            f"production scheduler {run['id'] if run else '?'} is already {state_of(job)}: "
            "stop it first (`python -m engine production stop`)"
        )
    now = time.time()
    with ops.transaction() as db:
        cur = db.execute(
            "INSERT INTO production_runs (budget_usd, min_age_s, max_age_s, evidence, concurrency, limits, batch_size, "
            "actor, created_at, updated_at, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                budget_usd,
                policy.min_age_s,
                policy.max_age_s,
                dumps(evidence.to_dict()),
                concurrency,
                dumps(limits.to_dict()) if limits is not None else None,
                batch_size,
                str(who),
                now,
                now,
                "started",
            ],
        )
        run_id = int(cur.lastrowid or 0)
    new_job = store.submit(JOB_KIND, {"run_id": run_id}, actor=str(who))
    with ops.transaction() as db:
        db.execute("UPDATE production_runs SET job_id = ? WHERE id = ?", [new_job.id, run_id])
        ops.audit(
            who,
            "production.start",
            f"production {run_id}",
            {
                "budget_usd": budget_usd,
                "min_age_s": policy.min_age_s,
                "max_age_s": policy.max_age_s,
                "evidence": evidence.to_dict(),
                "concurrency": concurrency,
                "limits": limits.to_dict() if limits is not None else None,
                "batch_size": batch_size,
                "job_id": new_job.id,
            },
            db=db,
        )
    if launch:
        launch_worker(settings, new_job.id)
    return run_id


def _current(ops) -> tuple[dict, Job]:
    run, job = _active_job(ops)
    if run is None or job is None:
        raise ProductionError("production has never been started: start it with `python -m engine production start`")
    return run, job


def pause_production(ops, actor: Actor) -> Job:
    """Ask the scheduler to pause between batches (operator; it keeps heartbeating); audited."""
    who = authorize(ops, actor, "production.pause")
    run, job = _current(ops)
    if not job.state.has_worker():
        raise ProductionError(f"production scheduler {run['id']} is {state_of(job)}: there is nothing to pause")
    job = JobStore(ops).request(job.id, Control.PAUSE, actor=str(who))
    ops.audit(who, "production.pause", f"production {run['id']}", {"job_id": job.id})
    return job


def _env_settings_for(ops) -> Settings | None:
    env = load_settings()
    return env if Path(env.ops_db_path).resolve() == Path(ops.path).resolve() else None


def resume_production(ops, actor: Actor, *, settings: Settings | None = None, launch: bool = True) -> tuple[Job, str]:
    """Un-pause a live scheduler, or (a worker that died) requeue its job and start a worker, which
    abandons the batch it had in flight and goes on from the ledger (operator); audited."""
    who = authorize(ops, actor, "production.resume")
    run, job = _current(ops)
    if job.state.is_terminal():
        raise ProductionError(
            f"production scheduler {run['id']} is {state_of(job)}: "
            "start a new one with `python -m engine production start`"
        )
    settings = settings or _env_settings_for(ops)
    if settings is None and launch:
        raise ProductionError("cannot start a worker for this data dir: set DISCOVERY_DATA_DIR to it")
    job, note = resume_job(JobStore(ops), settings, job.id, actor=str(who), launch=launch)  # type: ignore[arg-type]
    ops.audit(who, "production.resume", f"production {run['id']}", {"job_id": job.id, "note": note})
    return job, note


def stop_production(ops, actor: Actor) -> Job:
    """Stop the scheduler (operator; its batch in flight finishes or is abandoned, nothing half-written); audited."""
    who = authorize(ops, actor, "production.stop")
    run, job = _current(ops)
    if job.state.is_terminal():
        raise ProductionError(f"production scheduler {run['id']} is already {state_of(job)}")
    job = JobStore(ops).request(job.id, Control.CANCEL, actor=str(who))
    ops.audit(who, "production.stop", f"production {run['id']}", {"job_id": job.id})
    return job


def production_status(ops, graph, *, now: float | None = None, policy: RefreshPolicy | None = None) -> ProductionStatus:
    """The day's figures and the scheduler's state. Due, overdue and new count the graph's entities under the
    running scheduler's refresh policy (``policy``, else the defaults when none was ever started)."""
    now = time.time() if now is None else now
    JobStore(ops).reap(kind=JOB_KIND)
    run, job = _active_job(ops)
    if policy is None:
        policy = RefreshPolicy(float(run["min_age_s"]), float(run["max_age_s"])) if run else RefreshPolicy()
    day = day_of(now)
    with ops.connect() as db:
        summary = day_summary(db, day)
        timeline = day_timeline(db, day)
        seen = last_visits(db)
    ids = graph.list_entity_ids()
    counts = {Group.NEW: 0, Group.OVERDUE: 0, Group.DUE: 0}
    for eid in ids:
        group, _ = classify(Candidate(eid, 0.0, 0.0, seen.get(eid)), policy, now)
        if group is not None:
            counts[group] += 1
    message = job.message if job is not None else ""
    return ProductionStatus(
        run=run,
        job=job,
        state=state_of(job),
        message=message,
        day=day,
        budget_usd=float(run["budget_usd"]) if run else None,
        summary=summary,
        entities=len(ids),
        due=sum(counts.values()),
        overdue=counts[Group.OVERDUE],
        new=counts[Group.NEW],
        timeline=timeline,
    )


def production_plan(
    ops, graph, *, limit: int = DEFAULT_PLAN_SIZE, now: float | None = None, policy: RefreshPolicy | None = None
) -> list[DueEntity]:
    """The next ``limit`` entities the scheduler would visit, with why each is due (the latest run's refresh
    policy unless ``policy`` is given; the defaults when none was ever started)."""
    check_whole(limit, "--top", 10_000)
    now = time.time() if now is None else now
    if policy is None:
        with ops.connect() as db:
            run = read_run(db)
        policy = RefreshPolicy(float(run["min_age_s"]), float(run["max_age_s"])) if run else RefreshPolicy()
    candidates, _, _, _ = read_candidates(graph, ops, None, now)
    return ORDERS["eig_per_usd"](candidates.values(), policy, now, limit)


def run_settings(run: dict | None) -> dict[str, Any]:
    """A run's settings as words and numbers (status, page)."""
    if not run:
        return {}
    spec = EvidenceSpec.from_dict(json.loads(run["evidence"]), source="production run evidence")
    limits = RunLimits.from_dict(json.loads(run["limits"])) if run.get("limits") else RunLimits(int(run["concurrency"]))
    limits = RunLimits(int(run["concurrency"]), limits.max_hops_per_s, limits.max_in_flight)
    return {
        "id": int(run["id"]),
        "evidence": spec.describe(),
        "in_flight": limits.describe(),
        "policy": RefreshPolicy(float(run["min_age_s"]), float(run["max_age_s"])).describe(),
        "batch_size": int(run["batch_size"]),
        "started_by": run["actor"],
        "started_at": float(run["created_at"]),
    }
