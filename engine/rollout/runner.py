"""Staged rollout: the candidate system goes out pilot -> limited -> production, paired against the baseline.

A **rollout run** (one row of ``rollout_runs``) takes a candidate config (the
*new* system with a ParameterConfig: ``--config-file``, or the candidate that
tuning handed over, or the live config) through the stages of the stage table
(``data/stages.json``, engine.rollout.stages), against the *old* system with the live
config (``live_config``), on the SAME entities (paired):

* **Cohorts.** Exposure is cumulative: each stage adds the entities not yet
  exposed in this run (10, then 90 more, then the rest), drawn by a seeded
  sample stratified by tier and template (engine.rollout.cohorts). ``entities=N``
  limits the population to a seeded stratified sample of N entities of the
  graph (stage sizes are capped at N; a stage left with nothing to add is
  skipped).
* **Snapshot.** Before a stage runs anything, the hypothesis state of its
  entities is snapshotted (GraphStore.snapshot) and stored in SQLite with the
  stage row.
* **Pairs.** Each stage entity runs the old system in shadow (no writes; only
  for the stage's ``shadow_fraction``) and then the new system live, both from
  the same graph state, both through engine.discovery.runs.run_entities so each run is a
  metric event (``run_id`` = the discovery run id of the stage, ``stage_id``
  = ``stage_key(run, stage)``).
* **Checkpoints.** After every batch (``batch_size`` of the stage) the
  batch's paired outcomes are written to ``rollout_entities`` (primary key run
  + entity: no entity twice) in one transaction fenced by the worker's lease.
  A resumed run restores the not-yet-checkpointed entities of the stage from
  the snapshot (undoing a half-done batch whose checkpoint never landed) and
  continues with them: every entity exactly once, none skipped.
* **Verdict.** After every batch: engine.rollout.stats.measure over the stage's
  outcomes so far and engine.rollout.verdict.assess; every check writes a decision
  record (policy, measurements, n, final, config hashes, bootstrap seed,
  action, actor) from which ``recompute_decision`` recomputes the verdict (and
  the measurements from the checkpointed outcomes). FAILED -> automatic
  rollback; at the end of the stage PASSED -> state ``soaking`` until the
  minimum duration (scaled by ``time_scale``) has passed, then automatic
  promotion; INCONCLUSIVE -> state ``inconclusive``, waiting for an operator
  to promote or roll back.
* **Rollback** (automatic or manual): a compare-and-set on the run's state
  makes one of any number of concurrent requests do it; the worker is asked to
  stop and waited for; every exposed entity of the run is restored from its
  stage's snapshot, the evidence trail of the run is kept but marked rolled
  back, the entities are assigned back to the old system
  (``entity_assignments``), and it is audited.
* **Promotion** of the last stage of the stage table makes the candidate the
  live config (the old system's config in later rollouts).
* ``dry_run``: both systems in shadow, no snapshot, no graph writes, no
  assignment or live-config change.

The work runs in a worker process (engine.jobs.queue, job kind ``rollout``); every
function here that an operator calls (status, pause, resume, promote,
rollback) works from any process through SQLite.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from engine.rollout.cohorts import CohortMember, derive_seed, next_cohort, shadow_subset, stratified_sample
from engine.core.errors import ConfigError, DiscoveryError
from engine.jobs.queue import Control, Job, JobError, JobState, JobStore, launch_worker, worker_liveness
from engine.store.opsdb import Migration
from engine.core.configs import (
    CANDIDATE_KEY,
    LIVE_CONFIG_KEY,
    candidate_config,
    candidate_info,
    live_config,
    live_config_info,
    rollout_candidate,
    set_candidate,
    set_live_config,
)
from engine.core.params import ParameterConfig
from engine.core.settings import Settings
from engine.rollout.stages import StageConfig, StagePolicy, load_stage_config, parse_stage_config
from engine.rollout.stats import Measurement, PairedOutcome, measure
from engine.rollout.verdict import CriterionRow, Phase, Verdict, assess, elapsed_days, promotion_gate, recompute_from_record

JOB_KIND = "rollout"
ALL = "all"


#: a rollback that started this long ago and never finished may be taken over by a new request
ROLLBACK_STALE_S = 300.0
#: how long a manual rollback waits for the worker to stop at its next checkpoint
ROLLBACK_WAIT_S = 120.0


class RunState:
    """States of a rollout run (``rollout_runs.state``; ``status`` adds queued/paused/dead/failed from the job)."""

    RUNNING = "running"
    SOAKING = "soaking"  # stage passed; waiting out its minimum duration
    INCONCLUSIVE = "inconclusive"  # stage ended inconclusive; waiting for an operator
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    ACTIVE = (RUNNING, SOAKING, INCONCLUSIVE)
    TERMINAL = (ROLLED_BACK, COMPLETED, CANCELLED)
    ROLLBACKABLE = (RUNNING, SOAKING, INCONCLUSIVE, COMPLETED, CANCELLED)


class StageState:
    """States of one stage of a run (``rollout_stages.state``)."""

    PENDING = "pending"  # not reached (no row yet)
    RUNNING = "running"
    SOAKING = "soaking"
    INCONCLUSIVE = "inconclusive"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    SKIPPED = "skipped"  # nothing left to expose
    CANCELLED = "cancelled"


MIGRATIONS: list[Migration] = [
    Migration(
        component="rollout",
        version=1,
        name="rollout runs, stages, checkpoints, decisions, entity assignments",
        statements=(
            """
            CREATE TABLE IF NOT EXISTS rollout_runs (
                id INTEGER PRIMARY KEY,
                job_id INTEGER,
                state TEXT NOT NULL,
                target TEXT NOT NULL,
                stages TEXT NOT NULL,
                current_stage TEXT,
                stage_config TEXT NOT NULL,
                candidate TEXT NOT NULL,
                candidate_hash TEXT NOT NULL,
                candidate_source TEXT NOT NULL DEFAULT '',
                baseline TEXT NOT NULL,
                baseline_hash TEXT NOT NULL,
                dry_run INTEGER NOT NULL DEFAULT 0,
                seed INTEGER NOT NULL,
                world_seed INTEGER NOT NULL,
                time_scale REAL NOT NULL,
                entity_limit INTEGER,
                actor TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                finished_at REAL,
                message TEXT NOT NULL DEFAULT '',
                rollback_token TEXT,
                rollback_at REAL
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS rollout_stages (
                run_id INTEGER NOT NULL,
                stage TEXT NOT NULL,
                idx INTEGER NOT NULL,
                state TEXT NOT NULL,
                cohort TEXT NOT NULL,
                shadow TEXT NOT NULL,
                total INTEGER NOT NULL,
                done INTEGER NOT NULL DEFAULT 0,
                snapshot TEXT,
                started_at REAL NOT NULL,
                completed_at REAL,
                promoted_at REAL,
                rolled_back_at REAL,
                verdict TEXT,
                PRIMARY KEY (run_id, stage)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS rollout_entities (
                run_id INTEGER NOT NULL,
                entity_id TEXT NOT NULL,
                stage TEXT NOT NULL,
                seq INTEGER NOT NULL,
                batch INTEGER NOT NULL,
                at REAL NOT NULL,
                attempt INTEGER NOT NULL,
                outcome TEXT NOT NULL,
                PRIMARY KEY (run_id, entity_id)
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_rollout_entities_stage ON rollout_entities (run_id, stage, seq)",
            """
            CREATE TABLE IF NOT EXISTS rollout_decisions (
                id INTEGER PRIMARY KEY,
                run_id INTEGER NOT NULL,
                stage TEXT NOT NULL,
                at REAL NOT NULL,
                gate TEXT NOT NULL,
                action TEXT NOT NULL,
                phase TEXT NOT NULL,
                actor TEXT NOT NULL,
                forced INTEGER NOT NULL DEFAULT 0,
                reason TEXT NOT NULL DEFAULT '',
                record TEXT NOT NULL
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_rollout_decisions_run ON rollout_decisions (run_id, id)",
            """
            CREATE TABLE IF NOT EXISTS entity_assignments (
                entity_id TEXT PRIMARY KEY,
                system TEXT NOT NULL,
                config_hash TEXT NOT NULL,
                run_id INTEGER NOT NULL,
                stage TEXT NOT NULL,
                updated_at REAL NOT NULL
            )
            """,
        ),
    ),
]


class RolloutError(DiscoveryError):
    """A rollout request that cannot be done as asked (one line, says what to do)."""


class UnknownRollout(RolloutError):
    def __init__(self, run_id: int | None):
        msg = (
            "no rollout has been started yet: start one with `python -m engine rollout --stage pilot`"
            if run_id is None
            else f"no rollout run {run_id}: list runs with `python -m engine rollout status --all`"
        )
        super().__init__(msg)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class RunInfo:
    id: int
    job_id: int | None
    state: str  # stored RunState
    target: str  # the --stage asked for: a stage name or "all"
    stages: tuple[str, ...]  # the stages this run goes through, in order
    current_stage: str | None
    dry_run: bool
    seed: int
    world_seed: int
    time_scale: float
    entity_limit: int | None
    candidate_hash: str
    candidate_source: str
    baseline_hash: str
    actor: str
    created_at: float
    updated_at: float
    finished_at: float | None
    message: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = list(self.stages)
        return d


@dataclass(frozen=True)
class PairedSummary:
    """Totals over a stage's checkpointed entities (the raw figures behind the criteria)."""

    entities: int
    paired: int
    new_cost_usd: float  # over paired entities
    old_cost_usd: float
    new_actionable: int  # over paired entities
    old_actionable: int
    new_hops: int  # over all stage entities
    new_errors: int
    new_crashed: int
    new_engine_ms_p95: float | None
    new_engine_ms_mean: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StageStatus:
    name: str
    index: int
    state: str  # StageState
    stage_id: str  # metric events' stage_id for this stage of this run
    done: int
    total: int
    target: int | None  # cumulative exposure at the end of the stage (None = all)
    min_duration_days: float
    elapsed_days: float  # since the stage started, in scaled days
    started_at: float | None
    completed_at: float | None  # its last entity was checkpointed
    promoted_at: float | None
    rolled_back_at: float | None
    verdict: Verdict | None  # latest check
    paired: PairedSummary | None

    @property
    def progress(self) -> float:
        return self.done / self.total if self.total else (1.0 if self.state in (StageState.PROMOTED, StageState.SKIPPED) else 0.0)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("verdict", "paired")}
        d["progress"] = self.progress
        d["verdict"] = self.verdict.to_dict() if self.verdict else None
        d["paired"] = self.paired.to_dict() if self.paired else None
        return d


@dataclass(frozen=True)
class DecisionRecord:
    id: int
    run_id: int
    stage: str
    at: float
    gate: str  # "check" (after a batch) | "stage_end" | "promote" | "rollback"
    action: str  # "continue" | "soak" | "await_operator" | "rollback" | "promote" | "complete"
    phase: str  # the verdict phase the gate saw
    actor: str
    forced: bool
    reason: str
    record: dict  # inputs: policy, measurements, n, final, config hashes, bootstrap seed, times

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RolloutStatus:
    """Everything the page and `rollout status` show about one run."""

    run: RunInfo | None
    state: str  # effective: run state, or queued / paused / dead / failed from the job
    current_stage: str | None
    stages: tuple[StageStatus, ...]
    verdict: Verdict | None  # the current stage's latest verdict
    criteria: tuple[CriterionRow, ...]  # its rows: measured value, interval, threshold, phase
    paired: PairedSummary | None  # the current stage's totals
    decisions: tuple[DecisionRecord, ...]  # newest first
    job: Job | None
    worker_alive: bool
    worker_note: str
    message: str
    now: float

    @property
    def progress(self) -> tuple[int, int]:
        """(entities done, total) over the run's stages reached so far."""
        return sum(s.done for s in self.stages), sum(s.total for s in self.stages)

    def stage(self, name: str) -> StageStatus | None:
        return next((s for s in self.stages if s.name == name), None)

    def to_dict(self) -> dict:
        return {
            "run": self.run.to_dict() if self.run else None,
            "state": self.state,
            "current_stage": self.current_stage,
            "progress": list(self.progress),
            "stages": [s.to_dict() for s in self.stages],
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "criteria": [r.to_dict() for r in self.criteria],
            "paired": self.paired.to_dict() if self.paired else None,
            "decisions": [d.to_dict() for d in self.decisions],
            "job": self.job.to_dict() if self.job else None,
            "worker_alive": self.worker_alive,
            "worker_note": self.worker_note,
            "message": self.message,
            "now": self.now,
        }


@dataclass(frozen=True)
class RollbackResult:
    run_id: int
    performed: bool  # False: another request did (or is doing) it, or nothing was exposed
    entities_restored: int
    evidence_marked: int
    stages: tuple[str, ...]
    message: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = list(self.stages)
        return d


# --------------------------------------------------------------------------- names and small helpers


def stage_key(run_id: int, stage: str) -> str:
    """The ``stage_id`` of the metric events of one stage of one run (monitoring groups by it)."""
    return f"rollout-{run_id}-{stage}"


def discovery_run_id(run_id: int, stage: str, system: str) -> str:
    """The discovery run id of one system in one stage: evidence is keyed (and rolled back) by it."""
    return f"rollout-{run_id}-{stage}-{system}"


def _loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _stage_config_from_dict(d: Mapping[str, Any]) -> StageConfig:
    return StageConfig(
        stages=tuple(StagePolicy.from_dict(s) for s in d["stages"]),
        seed=int(d["seed"]),
        time_scale=float(d["time_scale"]),
        source="stored with the rollout run",
        raw=dict(d),
    )


def _run_info(row: Mapping[str, Any]) -> RunInfo:
    return RunInfo(
        id=row["id"], job_id=row["job_id"], state=row["state"], target=row["target"],
        stages=tuple(_loads(row["stages"], [])), current_stage=row["current_stage"], dry_run=bool(row["dry_run"]),
        seed=row["seed"], world_seed=row["world_seed"], time_scale=row["time_scale"],
        entity_limit=row["entity_limit"], candidate_hash=row["candidate_hash"],
        candidate_source=row["candidate_source"], baseline_hash=row["baseline_hash"], actor=row["actor"],
        created_at=row["created_at"], updated_at=row["updated_at"], finished_at=row["finished_at"],
        message=row["message"],
    )


def _run_row(db, run_id: int | None) -> dict:
    """The run's row (the latest run when ``run_id`` is None); UnknownRollout if there is none."""
    if run_id is None:
        rows = list(db.query("SELECT * FROM rollout_runs ORDER BY id DESC LIMIT 1"))
    else:
        rows = list(db.query("SELECT * FROM rollout_runs WHERE id = ?", [int(run_id)]))
    if not rows:
        raise UnknownRollout(run_id)
    return rows[0]


def _stage_rows(db, run_id: int) -> dict[str, dict]:
    return {r["stage"]: r for r in db.query("SELECT * FROM rollout_stages WHERE run_id = ? ORDER BY idx", [run_id])}


def _stage_outcomes(db, run_id: int, stage: str, limit: int | None = None) -> list[PairedOutcome]:
    sql = "SELECT outcome FROM rollout_entities WHERE run_id = ? AND stage = ? ORDER BY seq"
    args: list[Any] = [run_id, stage]
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return [PairedOutcome.from_dict(json.loads(r["outcome"])) for r in db.query(sql, args)]


def _insert_decision(db, run_id: int, stage: str, *, at: float, gate: str, action: str, phase: str, actor: str,
                     reason: str, record: Mapping[str, Any], forced: bool = False) -> int:
    cur = db.execute(
        "INSERT INTO rollout_decisions (run_id, stage, at, gate, action, phase, actor, forced, reason, record) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [run_id, stage, at, gate, action, str(phase), actor, int(forced), reason, _dumps(record)],
    )
    return int(cur.lastrowid)


def _decision(row: Mapping[str, Any]) -> DecisionRecord:
    return DecisionRecord(
        id=row["id"], run_id=row["run_id"], stage=row["stage"], at=row["at"], gate=row["gate"], action=row["action"],
        phase=row["phase"], actor=row["actor"], forced=bool(row["forced"]), reason=row["reason"],
        record=json.loads(row["record"]),
    )


def measure_stage(policy: StagePolicy, outcomes: Sequence[PairedOutcome], seed: int) -> dict[str, Measurement]:
    """The stage's measurements with the bootstrap generator seeded by ``seed`` (recorded in the decision)."""
    return measure(outcomes, np.random.default_rng(seed), level=policy.confidence,
                   resamples=policy.bootstrap_resamples)


def measurement_seed(run_seed: int, stage: str, n: int) -> int:
    return derive_seed(run_seed, "measure", stage, n) % (2**63)


def verdict_record(run: Mapping[str, Any], policy: StagePolicy, outcomes: Sequence[PairedOutcome], *,
                   final: bool) -> tuple[Verdict, dict]:
    """Measure and assess a stage's outcomes; return the verdict and the decision record's inputs."""
    n = len(outcomes)
    seed = measurement_seed(run["seed"], policy.name, n)
    m = measure_stage(policy, outcomes, seed)
    verdict = assess(policy, m, n=n, final=final)
    record = {
        "run_id": run["id"],
        "stage": policy.name,
        "policy": policy.to_dict(),
        "measurements": {k: v.to_dict() for k, v in m.items()},
        "n": n,
        "final": final,
        "test": (
            "engine.rollout.verdict.assess over engine.rollout.stats.measure: paired bootstrap over entities for cost and "
            "actionable changes and p95 engine latency, exact Clopper-Pearson for the error rate; "
            "triggers fire only at n >= min_sample"
        ),
        "thresholds": {
            "success": [c.label() + f" ({c.test})" for c in policy.success],
            "rollback": [c.label() + f" ({c.test})" for c in policy.rollback],
            "min_sample": policy.min_sample,
            "confidence": policy.confidence,
        },
        "config": {"candidate_hash": run["candidate_hash"], "baseline_hash": run["baseline_hash"],
                   "candidate_source": run["candidate_source"]},
        "bootstrap_seed": seed,
        "dry_run": bool(run["dry_run"]),
        "verdict": verdict.to_dict(),
    }
    return verdict, record


def _verdict_from_dict(d: Mapping[str, Any] | None) -> Verdict | None:
    if not d:
        return None
    rows = []
    for r in d["rows"]:
        vals = dict(r)
        for k in ("value", "low", "high"):
            if isinstance(vals[k], str):
                vals[k] = float(vals[k])
        vals["phase"] = Phase(vals["phase"])
        rows.append(CriterionRow(**vals))
    return Verdict(Phase(d["phase"]), d["reason"], tuple(rows), int(d["n"]))


def paired_summary(outcomes: Sequence[PairedOutcome]) -> PairedSummary:
    paired = [o for o in outcomes if o.paired]
    lat = [o.new_engine_ms for o in outcomes if not o.new_crashed]
    from engine.rollout.stats import p95

    return PairedSummary(
        entities=len(outcomes),
        paired=len(paired),
        new_cost_usd=round(sum(o.new_cost for o in paired), 6),
        old_cost_usd=round(sum(o.old_cost or 0.0 for o in paired), 6),
        new_actionable=sum(1 for o in paired if o.new_actionable),
        old_actionable=sum(1 for o in paired if o.old_actionable),
        new_hops=sum(o.new_hops for o in outcomes),
        new_errors=sum(o.new_errors for o in outcomes),
        new_crashed=sum(1 for o in outcomes if o.new_crashed),
        new_engine_ms_p95=p95(lat) if lat else None,
        new_engine_ms_mean=float(np.mean(lat)) if lat else None,
    )


# --------------------------------------------------------------------------- configs (tuning -> rollout handoff)


# --------------------------------------------------------------------------- assignments


def assigned_systems(ops, entity_ids: Iterable[str] | None = None) -> dict[str, dict]:
    """entity id -> {system, config_hash, run_id, stage, updated_at} for entities a live rollout touched.

    Entities not listed run the old system with the live config.
    """
    with ops.connect() as db:
        if entity_ids is None:
            rows = db.query("SELECT * FROM entity_assignments")
        else:
            ids = list(dict.fromkeys(entity_ids))
            if not ids:
                return {}
            rows = db.query(f"SELECT * FROM entity_assignments WHERE entity_id IN ({','.join('?' * len(ids))})", ids)
        return {r["entity_id"]: {k: r[k] for k in ("system", "config_hash", "run_id", "stage", "updated_at")}
                for r in rows}


# --------------------------------------------------------------------------- starting


def start_rollout(
    settings: Settings,
    ops,
    *,
    stage: str = ALL,
    entities: int | None = None,
    config_file: str | Path | None = None,
    stages_file: str | Path | None = None,
    dry_run: bool = False,
    time_scale: float | None = None,
    seed: int | None = None,
    world_seed: int | None = None,
    actor: str = "cli",
    launch: bool = True,
    graph=None,
) -> int:
    """Validate, record a new rollout run, submit its ``rollout`` job and (``launch``) start a worker.

    ``stage``: one stage name (run only that stage) or ``"all"`` (every stage
    in order). ``entities``: limit the population to a seeded stratified
    sample of N entities. ``config_file``: the candidate ParameterConfig
    (default: the handed-over candidate, else the live config). ``stages_file``:
    another stage table (default ``data/stages.json``). ``time_scale``: scaled
    seconds per real second for minimum durations (86400: a day per second).
    Returns the run id. Every bad input is a one-line DiscoveryError and
    nothing is written; only one rollout may be active at a time.
    """
    if not isinstance(actor, str) or not actor.strip():
        raise RolloutError("a rollout needs an actor (who starts it, e.g. 'cli' or 'console')")
    cfg = load_stage_config(stages_file)
    if time_scale is not None:
        cfg = cfg.with_time_scale(float(time_scale))
    names = cfg.names()
    if stage == ALL:
        run_stages = names
    elif stage in names:
        run_stages = [stage]
    else:
        raise RolloutError(f"unknown stage {stage!r}: use one of {', '.join([*names, ALL])}")
    if entities is not None and (isinstance(entities, bool) or not isinstance(entities, int) or entities < 1):
        raise RolloutError(f"--entities must be a whole number >= 1, got {entities!r}")
    resolved = rollout_candidate(ops, config_file)
    candidate, candidate_source = resolved.config, resolved.label
    baseline = live_config(ops)
    seed = cfg.seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RolloutError(f"seed must be a whole number >= 0, got {seed!r}")
    if world_seed is None:
        from engine.discovery.runs import DEFAULT_WORLD_SEED

        world_seed = DEFAULT_WORLD_SEED
    if isinstance(world_seed, bool) or not isinstance(world_seed, int):
        raise RolloutError(f"world seed must be a whole number, got {world_seed!r}")
    own_graph = graph is None
    if own_graph:
        from engine.store.graph import GraphStore

        graph = GraphStore.open(settings)
    try:
        if graph.count_entities() == 0:
            raise RolloutError("the graph holds no entities: seed it first (python -m engine seed --entities 3400)")
    finally:
        if own_graph:
            graph.close()
    now = time.time()
    with ops.transaction() as db:
        busy = list(db.query(
            f"SELECT id, state FROM rollout_runs WHERE state IN ({','.join('?' * 4)}) ORDER BY id DESC LIMIT 1",
            [*RunState.ACTIVE, RunState.ROLLING_BACK],
        ))
        if busy:
            raise RolloutError(
                f"rollout {busy[0]['id']} is still {busy[0]['state']}: promote, roll back or cancel it first "
                f"(python -m engine rollout status)"
            )
        cur = db.execute(
            """INSERT INTO rollout_runs (state, target, stages, current_stage, stage_config, candidate,
               candidate_hash, candidate_source, baseline, baseline_hash, dry_run, seed, world_seed, time_scale,
               entity_limit, actor, created_at, updated_at, message)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [RunState.RUNNING, stage, _dumps(run_stages), run_stages[0], _dumps(cfg.to_dict()),
             _dumps(candidate.to_dict()), candidate.hash(), candidate_source, _dumps(baseline.to_dict()),
             baseline.hash(), int(bool(dry_run)), seed, world_seed, cfg.time_scale, entities, actor, now, now,
             "queued for a worker"],
        )
        run_id = int(cur.lastrowid)
        ops.audit(actor, "rollout.start", f"run {run_id}", {
            "stage": stage, "entities": entities, "dry_run": bool(dry_run), "candidate_hash": candidate.hash(),
            "baseline_hash": baseline.hash(), "time_scale": cfg.time_scale, "seed": seed,
            "config_file": str(config_file) if config_file else None,
        }, db=db)
    job = JobStore(ops).submit(JOB_KIND, {"run_id": run_id}, actor=actor)
    with ops.transaction() as db:
        db.execute("UPDATE rollout_runs SET job_id = ? WHERE id = ?", [job.id, run_id])
    if launch:
        launch_worker(settings, job.id)
    return run_id


# --------------------------------------------------------------------------- reading


def list_runs(ops, limit: int = 50) -> list[RunInfo]:
    """Rollout runs, newest first."""
    with ops.connect() as db:
        return [_run_info(r) for r in db.query("SELECT * FROM rollout_runs ORDER BY id DESC LIMIT ?", [int(limit)])]


def decision_records(ops, run_id: int | None = None, *, stage: str | None = None,
                     limit: int | None = None) -> list[DecisionRecord]:
    """The run's decision records, newest first (the latest run when ``run_id`` is None)."""
    with ops.connect() as db:
        run = _run_row(db, run_id)
        sql = "SELECT * FROM rollout_decisions WHERE run_id = ?"
        args: list[Any] = [run["id"]]
        if stage is not None:
            sql += " AND stage = ?"
            args.append(stage)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [_decision(r) for r in db.query(sql, args)]


def paired_outcomes(ops, run_id: int | None = None, stage: str | None = None) -> list[dict]:
    """Checkpointed entities with their paired results, in processing order (for charts and downloads)."""
    with ops.connect() as db:
        run = _run_row(db, run_id)
        sql = "SELECT * FROM rollout_entities WHERE run_id = ?"
        args: list[Any] = [run["id"]]
        if stage is not None:
            sql += " AND stage = ?"
            args.append(stage)
        rows = list(db.query(sql + " ORDER BY stage, seq", args))
    out = []
    for r in rows:
        d = json.loads(r["outcome"])
        d.update({"run_id": r["run_id"], "stage": r["stage"], "seq": r["seq"], "batch": r["batch"], "at": r["at"],
                  "attempt": r["attempt"]})
        out.append(d)
    return out


def recompute_decision(ops, decision_id: int) -> tuple[Verdict | None, bool]:
    """Recompute a decision record's verdict and say whether it equals the recorded one.

    Twice over: from the recorded measurements (engine.rollout.verdict.recompute_from_record),
    and from the checkpointed outcomes (the first ``n`` of the stage, measured
    again with the recorded bootstrap seed). A promotion also re-asks the
    promotion gate with the recorded days and force flag. Records without a
    verdict (a rollback asked by an operator) return (None, True).
    """
    with ops.connect() as db:
        rows = list(db.query("SELECT * FROM rollout_decisions WHERE id = ?", [int(decision_id)]))
        if not rows:
            raise RolloutError(f"no decision record {decision_id}: list them with `python -m engine rollout status`")
        d = _decision(rows[0])
        rec = d.record
        if "policy" not in rec:
            return None, True
        policy = StagePolicy.from_dict(rec["policy"])
        outcomes = _stage_outcomes(db, d.run_id, d.stage, limit=int(rec["n"]))
    from_measurements = recompute_from_record(rec)
    again = assess(policy, measure_stage(policy, outcomes, int(rec["bootstrap_seed"])), n=len(outcomes),
                   final=bool(rec["final"]))
    recorded = rec["verdict"]
    ok = (from_measurements.to_dict() == recorded and again.to_dict() == recorded and len(outcomes) == rec["n"])
    if ok and d.gate == "promote":
        gate = promotion_gate(again.phase, float(rec["elapsed_days"]), float(rec["min_duration_days"]),
                              force=bool(rec.get("force")), operator=bool(rec.get("operator")))
        ok = gate.allowed
    return again, ok


def _effective_state(run: Mapping[str, Any], job: Job | None, alive: bool) -> str:
    state = run["state"]
    if state not in RunState.ACTIVE or job is None:
        return state
    if job.state is JobState.QUEUED:
        return "queued"
    if job.state is JobState.PAUSED:
        return "paused" if alive else "dead"
    if job.state is JobState.RUNNING:
        return state if alive else "dead"
    if job.state is JobState.DEAD:
        return "dead"
    if job.state is JobState.FAILED:
        return "failed"
    if job.state is JobState.CANCELLED:
        return "cancelled"
    if job.state is JobState.SUCCEEDED:
        return "stopped"  # the worker ended but the run is still active: resume it
    return state


def rollout_status(ops, run_id: int | None = None, *, decisions: int = 50, now: float | None = None) -> RolloutStatus:
    """The state of a run (the latest when ``run_id`` is None); a status with ``run=None`` if none exists."""
    now = time.time() if now is None else now
    with ops.connect() as db:
        try:
            run = _run_row(db, run_id)
        except UnknownRollout:
            if run_id is not None:
                raise
            return RolloutStatus(None, "none", None, (), None, (), None, (), None, False, "no rollout yet",
                                 "no rollout has been started", now)
        stage_rows = _stage_rows(db, run["id"])
        cfg = _stage_config_from_dict(json.loads(run["stage_config"]))
        stages = []
        for i, name in enumerate(json.loads(run["stages"])):
            policy = cfg.stage(name)
            row = stage_rows.get(name)
            if row is None:
                stages.append(StageStatus(name, i, StageState.PENDING, stage_key(run["id"], name), 0, 0,
                                          policy.entities, policy.min_duration_days, 0.0, None, None, None, None,
                                          None, None))
                continue
            outcomes = _stage_outcomes(db, run["id"], name)
            last = row["verdict"] and json.loads(row["verdict"])
            end = row["promoted_at"] or row["rolled_back_at"] or now
            stages.append(StageStatus(
                name=name, index=i, state=row["state"], stage_id=stage_key(run["id"], name), done=row["done"],
                total=row["total"], target=policy.entities, min_duration_days=policy.min_duration_days,
                elapsed_days=elapsed_days(row["started_at"], end, run["time_scale"]),
                started_at=row["started_at"], completed_at=row["completed_at"], promoted_at=row["promoted_at"],
                rolled_back_at=row["rolled_back_at"],
                verdict=_verdict_from_dict(last["verdict"]) if last else None,
                paired=paired_summary(outcomes) if outcomes else None,
            ))
        recs = [_decision(r) for r in db.query(
            "SELECT * FROM rollout_decisions WHERE run_id = ? ORDER BY id DESC LIMIT ?", [run["id"], int(decisions)])]
    job = None
    alive, note = False, "no worker"
    if run["job_id"] is not None:
        store = JobStore(ops)
        job = store.get(run["job_id"])
        if job.state.has_worker():
            alive, note = worker_liveness(job, now)
        else:
            note = f"job {job.id} {job.state}" + (f": {job.error}" if job.error else "")
    current = next((s for s in stages if s.name == run["current_stage"]), None)
    return RolloutStatus(
        run=_run_info(run), state=_effective_state(run, job, alive), current_stage=run["current_stage"],
        stages=tuple(stages), verdict=current.verdict if current else None,
        criteria=current.verdict.rows if current and current.verdict else (),
        paired=current.paired if current else None, decisions=tuple(recs), job=job, worker_alive=alive,
        worker_note=note, message=run["message"], now=now,
    )


def stage_report(ops, run_id: int | None, stage: str) -> str:
    """A Markdown report of one stage: cohort, paired figures, criteria with intervals, verdict, decisions."""
    st = rollout_status(ops, run_id, decisions=1000)
    if st.run is None:
        raise UnknownRollout(run_id)
    s = st.stage(stage)
    if s is None:
        raise RolloutError(f"rollout {st.run.id} has no stage {stage!r}: its stages are {', '.join(st.run.stages)}")
    r = st.run
    ts = lambda t: "—" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))  # noqa: E731
    lines = [
        f"# Rollout {r.id} — stage {s.name}",
        "",
        f"- state: **{s.state}** (run {st.state}){' — dry run, nothing live was touched' if r.dry_run else ''}",
        f"- entities: {s.done} of {s.total} processed; cumulative target {'all' if s.target is None else s.target}",
        f"- candidate config `{r.candidate_hash}` ({r.candidate_source}); baseline (old system) `{r.baseline_hash}`",
        f"- started {ts(s.started_at)}; entities done {ts(s.completed_at)}; promoted {ts(s.promoted_at)}; "
        f"rolled back {ts(s.rolled_back_at)}",
        f"- elapsed {s.elapsed_days:.2f} of {s.min_duration_days:g} minimum days (time scale {r.time_scale:g})",
        f"- metric events: stage id `{s.stage_id}`",
        "",
        "## Paired results",
        "",
    ]
    p = s.paired
    if p is None:
        lines.append("No entity processed yet.")
    else:
        lines += [
            "| figure | old (shadow) | new (candidate) |",
            "|---|---|---|",
            f"| cost over {p.paired} paired entities (USD) | {p.old_cost_usd:.4f} | {p.new_cost_usd:.4f} |",
            f"| actionable over paired entities | {p.old_actionable} | {p.new_actionable} |",
            f"| hops / errored hops / crashed runs | | {p.new_hops} / {p.new_errors} / {p.new_crashed} |",
            f"| engine latency p95 / mean (ms) | | "
            f"{'n/a' if p.new_engine_ms_p95 is None else f'{p.new_engine_ms_p95:.2f}'} / "
            f"{'n/a' if p.new_engine_ms_mean is None else f'{p.new_engine_ms_mean:.2f}'} |",
        ]
    lines += ["", "## Criteria", ""]
    v = s.verdict
    if v is None:
        lines.append("No verdict yet.")
    else:
        fmt = lambda x: "n/a" if x is None else (f"{x:.4g}" if math.isfinite(x) else str(x))  # noqa: E731
        lines += [f"Verdict: **{v.phase}** after {v.n} entities — {v.reason}", "",
                  "| kind | metric | test | threshold | value | interval | phase |", "|---|---|---|---|---|---|---|"]
        for row in v.rows:
            lines.append(f"| {row.kind} | {row.metric} | {row.test} | {row.op} {row.threshold:g} | {fmt(row.value)} | "
                         f"[{fmt(row.low)}, {fmt(row.high)}] | {row.phase} |")
    lines += ["", "## Decision records", "", "| id | time | gate | action | phase | actor | forced | reason |",
              "|---|---|---|---|---|---|---|---|"]
    for d in sorted((d for d in st.decisions if d.stage == stage), key=lambda d: d.id):
        reason = d.reason.replace("|", "\\|")
        lines.append(f"| {d.id} | {ts(d.at)} | {d.gate} | {d.action} | {d.phase} | {d.actor} | "
                     f"{'yes' if d.forced else ''} | {reason} |")
    lines += ["", "Latency: the criteria measure the candidate's own engine time per entity (decision time, "
              "evidence latency excluded: it is virtual in the simulated world).", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- operator controls


def _job_of(ops, run: Mapping[str, Any]) -> Job | None:
    return JobStore(ops).get(run["job_id"]) if run["job_id"] is not None else None


def pause(ops, run_id: int | None, actor: str) -> RolloutStatus:
    """Ask the worker to pause between entities (it keeps heartbeating); audited."""
    with ops.connect() as db:
        run = _run_row(db, run_id)
    if run["state"] not in RunState.ACTIVE:
        raise RolloutError(f"rollout {run['id']} is {run['state']}: there is nothing to pause")
    job = _job_of(ops, run)
    if job is None or job.state.is_terminal() or job.state is JobState.DEAD:
        raise RolloutError(f"rollout {run['id']} has no live worker to pause: resume it with `rollout resume`")
    JobStore(ops).request(job.id, Control.PAUSE, actor=actor)
    ops.audit(actor, "rollout.pause", f"run {run['id']}", {"job_id": job.id})
    return rollout_status(ops, run["id"])


def resume(ops, run_id: int | None, actor: str, *, settings: Settings | None = None) -> RolloutStatus:
    """Un-pause a live worker, or requeue a dead or failed run and start a worker; audited.

    A new worker is launched with ``settings``, or with the environment's
    settings when they point at this OpsDB (the console and the CLI); else the
    job is only requeued for a `python -m engine worker` loop.

    The resumed worker continues from the last checkpoint: no entity twice, none skipped.
    """
    from engine.jobs.queue import resume_job

    with ops.connect() as db:
        run = _run_row(db, run_id)
    if run["state"] not in RunState.ACTIVE:
        raise RolloutError(f"rollout {run['id']} is {run['state']}: there is nothing to resume")
    job = _job_of(ops, run)
    if job is None:
        raise RolloutError(f"rollout {run['id']} has no job: start a new rollout")
    if settings is None:  # the console's and the CLI's settings come from the environment: use them if they match
        from engine.core.settings import load_settings

        env = load_settings()
        if Path(env.ops_db_path).resolve() == Path(ops.path).resolve():
            settings = env
    store = JobStore(ops)
    store.reap()
    job = store.get(job.id)
    if job.state.has_worker():
        store.request(job.id, Control.RUN, actor=actor)
        how = "resume requested from the live worker"
    elif job.state.can_requeue() or job.state is JobState.QUEUED:
        if settings is None:
            if job.state.can_requeue():
                store.requeue(job.id, actor=actor)
            how = "queued; start a worker (python -m engine worker) to continue it"
        else:
            _, how = resume_job(store, settings, job.id, actor=actor)
    else:
        raise RolloutError(f"rollout {run['id']}'s job {job.id} is {job.state}; nothing to resume")
    ops.audit(actor, "rollout.resume", f"run {run['id']}", {"job_id": job.id, "how": how})
    return rollout_status(ops, run["id"])


def cancel(ops, run_id: int | None, actor: str) -> RolloutStatus:
    """Stop the rollout where it is (no rollback: exposed entities keep the candidate until rolled back); audited."""
    now = time.time()
    with ops.transaction() as db:
        run = _run_row(db, run_id)
        cur = db.execute(
            f"UPDATE rollout_runs SET state = ?, finished_at = ?, updated_at = ?, message = ? "
            f"WHERE id = ? AND state IN ({','.join('?' * len(RunState.ACTIVE))})",
            [RunState.CANCELLED, now, now, f"cancelled by {actor}", run["id"], *RunState.ACTIVE],
        )
        if cur.rowcount != 1:
            raise RolloutError(f"rollout {run['id']} is {run['state']}: there is nothing to cancel")
        db.execute("UPDATE rollout_stages SET state = ? WHERE run_id = ? AND state IN (?, ?, ?)",
                   [StageState.CANCELLED, run["id"], StageState.RUNNING, StageState.SOAKING, StageState.INCONCLUSIVE])
        ops.audit(actor, "rollout.cancel", f"run {run['id']}", {}, db=db)
    job = _job_of(ops, run)
    if job is not None and not job.state.is_terminal():
        try:
            JobStore(ops).request(job.id, Control.CANCEL, actor=actor)
        except JobError:
            pass
    return rollout_status(ops, run["id"])


def _promote_stage(ops, run: Mapping[str, Any], stage: str, *, actor: str, operator: bool, force: bool,
                   gate_reason: str, days: float, now: float) -> bool:
    """CAS the stage soaking|inconclusive -> promoted and move the run on; one decision record. False if raced."""
    cfg = _stage_config_from_dict(json.loads(run["stage_config"]))
    policy = cfg.stage(stage)
    run_stages = json.loads(run["stages"])
    nxt = run_stages[run_stages.index(stage) + 1] if run_stages.index(stage) + 1 < len(run_stages) else None
    with ops.transaction() as db:
        row = _stage_rows(db, run["id"]).get(stage)
        if row is None:
            return False
        cur = db.execute(
            "UPDATE rollout_stages SET state = ?, promoted_at = ? WHERE run_id = ? AND stage = ? AND state IN (?, ?)",
            [StageState.PROMOTED, now, run["id"], stage, StageState.SOAKING, StageState.INCONCLUSIVE],
        )
        if cur.rowcount != 1:
            return False
        last_stage_of_table = stage == cfg.names()[-1]
        new_state = RunState.RUNNING if nxt else RunState.COMPLETED
        message = (f"{stage} promoted; next: {nxt}" if nxt else
                   f"{stage} promoted; rollout complete" + (" (dry run: live config unchanged)" if run["dry_run"] else ""))
        cur = db.execute(
            f"UPDATE rollout_runs SET state = ?, current_stage = ?, updated_at = ?, message = ?, finished_at = ? "
            f"WHERE id = ? AND state IN ({','.join('?' * len(RunState.ACTIVE))})",
            [new_state, nxt or stage, now, message, None if nxt else now, run["id"], *RunState.ACTIVE],
        )
        if cur.rowcount != 1:
            raise RolloutError(f"rollout {run['id']} is no longer active (rolled back or cancelled): not promoted")
        record = dict(json.loads(row["verdict"]) if row["verdict"] else {})
        record.update({"gate": gate_reason, "elapsed_days": days, "min_duration_days": policy.min_duration_days,
                       "time_scale": run["time_scale"], "force": force, "operator": operator, "next_stage": nxt,
                       "makes_live": bool(not nxt and last_stage_of_table and not run["dry_run"])})
        phase = record.get("verdict", {}).get("phase", "")
        forced = force and days < policy.min_duration_days
        _insert_decision(db, run["id"], stage, at=now, gate="promote", action="promote" if nxt else "complete",
                         phase=phase, actor=actor, reason=gate_reason, record=record, forced=forced)
        if record["makes_live"]:
            set_live_config(ops, db, ParameterConfig.from_dict(json.loads(run["candidate"])), run_id=run["id"],
                             actor=actor, at=now)
        ops.audit(actor, "rollout.promote", f"run {run['id']}",
                  {"stage": stage, "forced": forced, "next": nxt, "reason": gate_reason}, db=db)
    return True


def promote(ops, run_id: int | None, actor: str, force: bool = False, *, now: float | None = None) -> RolloutStatus:
    """Operator promotion of the current stage (PASSED or INCONCLUSIVE, after its minimum duration or ``force``).

    A forced promotion before the minimum duration is marked in the decision
    record and the audit log. A FAILED or still-running stage is never promoted.
    """
    now = time.time() if now is None else now
    with ops.connect() as db:
        run = _run_row(db, run_id)
        row = _stage_rows(db, run["id"]).get(run["current_stage"])
    if run["state"] not in RunState.ACTIVE:
        raise RolloutError(f"rollout {run['id']} is {run['state']}: nothing to promote")
    if row is None:
        raise RolloutError(f"rollout {run['id']} has not started stage {run['current_stage']} yet: nothing to promote")
    if row["state"] == StageState.RUNNING:
        raise RolloutError(f"stage {row['stage']} is still running ({row['done']}/{row['total']} entities): "
                           "wait for its verdict, or roll back")
    if row["state"] not in (StageState.SOAKING, StageState.INCONCLUSIVE):
        raise RolloutError(f"stage {row['stage']} is {row['state']}: nothing to promote")
    cfg = _stage_config_from_dict(json.loads(run["stage_config"]))
    policy = cfg.stage(row["stage"])
    verdict = _verdict_from_dict(json.loads(row["verdict"])["verdict"]) if row["verdict"] else None
    phase = verdict.phase if verdict else Phase.PENDING
    days = elapsed_days(row["started_at"], now, run["time_scale"])
    gate = promotion_gate(phase, days, policy.min_duration_days, force=force, operator=True)
    if not gate.allowed:
        raise RolloutError(f"stage {row['stage']}: {gate.reason}")
    if not _promote_stage(ops, run, row["stage"], actor=actor, operator=True, force=force, gate_reason=gate.reason,
                          days=days, now=now):
        raise RolloutError(f"stage {row['stage']} was promoted or rolled back meanwhile: see `rollout status`")
    return rollout_status(ops, run["id"])


# --------------------------------------------------------------------------- rollback


def _wait_for_worker_to_stop(ops, job_id: int, actor: str, wait_s: float, sleep: Callable[[float], None]) -> None:
    store = JobStore(ops)
    job = store.get(job_id)
    if job.state in (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED):
        try:
            store.request(job_id, Control.CANCEL, actor=actor)
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
    actor: str,
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
    decision record inputs that fired it, kept in the rollback record.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise RolloutError("a rollback needs a reason (e.g. --reason 'cost up 30% in pilot')")
    token = uuid.uuid4().hex
    now = time.time()
    with ops.transaction() as db:
        run = _run_row(db, run_id)
        state = run["state"]
        if state == RunState.ROLLED_BACK:
            ops.audit(actor, "rollout.rollback.noop", f"run {run['id']}", {"why": "already rolled back"}, db=db)
            return RollbackResult(run["id"], False, 0, 0, (), f"rollout {run['id']} is already rolled back")
        stale = state == RunState.ROLLING_BACK and now - (run["rollback_at"] or 0) > ROLLBACK_STALE_S
        if state == RunState.ROLLING_BACK and not stale:
            ops.audit(actor, "rollout.rollback.noop", f"run {run['id']}", {"why": "in progress"}, db=db)
            return RollbackResult(run["id"], False, 0, 0, (),
                                  f"rollout {run['id']} is being rolled back by another request")
        if state not in RunState.ROLLBACKABLE and not stale:
            raise RolloutError(f"rollout {run['id']} is {state}: it cannot be rolled back")
        cur = db.execute(
            "UPDATE rollout_runs SET state = ?, rollback_token = ?, rollback_at = ?, updated_at = ?, message = ? "
            "WHERE id = ? AND state = ? AND rollback_token IS ?",
            [RunState.ROLLING_BACK, token, now, now, f"rolling back: {reason}", run["id"], state,
             run["rollback_token"]],
        )
        if cur.rowcount != 1:  # cannot happen inside BEGIN IMMEDIATE, but never do it twice
            return RollbackResult(run["id"], False, 0, 0, (), f"rollout {run['id']} changed meanwhile")
        ops.audit(actor, "rollout.rollback.start", f"run {run['id']}", {"reason": reason, "was": state}, db=db)
    if from_job is None and run["job_id"] is not None:
        try:
            _wait_for_worker_to_stop(ops, run["job_id"], actor, wait_s, sleep)
        except RolloutError:
            with ops.transaction() as db:  # let the next request take it over at once
                db.execute("UPDATE rollout_runs SET rollback_at = 0 WHERE id = ? AND rollback_token = ?",
                           [run["id"], token])
            raise
    with ops.connect() as db:
        stage_rows = [r for r in _stage_rows(db, run["id"]).values() if r["state"] != StageState.SKIPPED]
    restored = marked = 0
    exposed: list[str] = []
    if not run["dry_run"] and stage_rows:
        own = graph is None
        try:
            if own:
                from engine.store.graph import GraphStore

                graph = GraphStore.open(settings)
            for r in stage_rows:
                cohort = json.loads(r["cohort"])
                exposed += cohort
                if r["snapshot"]:
                    graph.restore(json.loads(r["snapshot"]))  # idempotent: a retried rollback restores again
                    restored += len(cohort)
                marked += graph.mark_evidence_rolled_back(cohort, discovery_run_id(run["id"], r["stage"], "new"))
        except BaseException:
            with ops.transaction() as db:  # the store failed part way: let the next request retry at once
                db.execute("UPDATE rollout_runs SET rollback_at = 0, message = ? WHERE id = ? AND rollback_token = ?",
                           ["rollback interrupted (store error): run the rollback again", run["id"], token])
            raise
        finally:
            if own and graph is not None:
                graph.close()
    done_at = time.time()
    with ops.transaction() as db:
        cur = db.execute(
            "UPDATE rollout_runs SET state = ?, finished_at = ?, updated_at = ?, message = ? "
            "WHERE id = ? AND rollback_token = ?",
            [RunState.ROLLED_BACK, done_at, done_at, f"rolled back by {actor}: {reason}", run["id"], token],
        )
        if cur.rowcount != 1:
            return RollbackResult(run["id"], False, restored, marked, (),
                                  f"rollout {run['id']}'s rollback was taken over by another request")
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
        record = {"reason": reason, "entities_restored": restored, "evidence_marked": marked,
                  "stages": [r["stage"] for r in stage_rows], "was": state, "dry_run": bool(run["dry_run"]),
                  "config": {"candidate_hash": run["candidate_hash"], "baseline_hash": run["baseline_hash"]},
                  "automatic": from_job is not None}
        if trigger:
            record.update(trigger)
        phase = (trigger or {}).get("verdict", {}).get("phase", "operator")
        _insert_decision(db, run["id"], stage, at=done_at, gate="rollback", action="rollback", phase=phase,
                         actor=actor, reason=reason, record=record)
        ops.audit(actor, "rollout.rollback", f"run {run['id']}",
                  {"reason": reason, "entities_restored": restored, "evidence_marked": marked,
                   "automatic": from_job is not None}, db=db)
    return RollbackResult(run["id"], True, restored, marked, tuple(r["stage"] for r in stage_rows),
                          f"rolled back rollout {run['id']}: {restored} entities restored from their snapshots, "
                          f"{marked} evidence records marked rolled back")


# --------------------------------------------------------------------------- the worker


class _Stop(Exception):
    """The run left the active states (rolled back, cancelled) under the worker: stop quietly."""


#: the longest a soaking / waiting worker sleeps before it looks at the run again
WAIT_POLL_S = 1.0


class _Runner:
    def __init__(self, ctx, graph, run_id: int):
        from engine.monitoring.jsonlog import JsonlLog
        from engine.discovery.runs import METRICS_LOG_NAME, EvidenceSpec, make_source

        self.ctx = ctx
        self.ops = ctx.ops
        self.graph = graph
        self.run_id = run_id
        with self.ops.connect() as db:
            self.run = _run_row(db, run_id)
        self.cfg = _stage_config_from_dict(json.loads(self.run["stage_config"]))
        self.stages: list[str] = json.loads(self.run["stages"])
        self.candidate = ParameterConfig.from_dict(json.loads(self.run["candidate"]), source="rollout candidate")
        self.baseline = ParameterConfig.from_dict(json.loads(self.run["baseline"]), source="rollout baseline")
        self.dry = bool(self.run["dry_run"])
        self.templates = {t.id: t for t in graph.list_templates()}
        self.source = make_source(EvidenceSpec(world_seed=int(self.run["world_seed"])), templates=self.templates)
        self.log = JsonlLog.for_settings(graph.settings, METRICS_LOG_NAME)
        self.restored_this_attempt: set[str] = set()

    # -- state
    def run_state(self) -> str:
        with self.ops.connect() as db:
            return _run_row(db, self.run_id)["state"]

    def stage_row(self, name: str) -> dict | None:
        with self.ops.connect() as db:
            return _stage_rows(db, self.run_id).get(name)

    def _check_active(self) -> None:
        if self.run_state() not in RunState.ACTIVE:
            raise _Stop()

    # -- the run
    def execute(self) -> dict:
        try:
            for name in self.stages:
                self._check_active()
                row = self._ensure_stage(name)
                while True:
                    state = row["state"]
                    if state == StageState.RUNNING:
                        self._process(name)
                    elif state in (StageState.SOAKING, StageState.INCONCLUSIVE):
                        self._wait(name)
                    elif state in (StageState.PROMOTED, StageState.SKIPPED):
                        break
                    else:
                        raise _Stop()
                    row = self.stage_row(name)
            self._complete_after_skip()
        except _Stop:
            pass
        final = rollout_status(self.ops, self.run_id, decisions=0)
        return {"run_id": self.run_id, "state": final.run.state if final.run else "?",
                "stages": {s.name: s.state for s in final.stages}, "entities": final.progress[0]}

    def _complete_after_skip(self) -> None:
        """Every stage is done; when the last one was skipped (nothing left to expose) nobody promoted it:
        the run is complete (the live config changes only when the last stage of the table is promoted)."""
        now = time.time()
        with self.ops.transaction() as db:
            self.ctx.assert_lease(db)
            cur = db.execute(
                "UPDATE rollout_runs SET state = ?, finished_at = ?, updated_at = ?, message = ? WHERE id = ? AND state = ?",
                [RunState.COMPLETED, now, now, f"rollout complete ({self.stages[-1]} skipped: no entity left to expose)",
                 self.run_id, RunState.RUNNING],
            )
            if cur.rowcount == 1:
                self.ops.audit("worker", "rollout.complete", f"run {self.run_id}", {"last_stage": "skipped"}, db=db)

    def _population(self) -> list[CohortMember]:
        members = [CohortMember(e.id, e.tier, e.template_id) for e in self.graph.list_entities()]
        limit = self.run["entity_limit"]
        if limit is not None and limit < len(members):
            keep = set(stratified_sample(members, limit, derive_seed(self.run["seed"], "population")))
            members = [m for m in members if m.entity_id in keep]
        return members

    def _exposed(self) -> set[str]:
        """Exposed before the next stage: this run's entities, plus (live runs) entities an earlier run of
        the same candidate left on the new system."""
        with self.ops.connect() as db:
            mine = {r["entity_id"] for r in db.query("SELECT entity_id FROM rollout_entities WHERE run_id = ?",
                                                     [self.run_id])}
            for r in db.query("SELECT cohort FROM rollout_stages WHERE run_id = ?", [self.run_id]):
                mine.update(json.loads(r["cohort"]))
            if not self.dry:
                mine.update(r["entity_id"] for r in db.query(
                    "SELECT entity_id FROM entity_assignments WHERE system = 'new' AND config_hash = ?",
                    [self.run["candidate_hash"]]))
        return mine

    def _ensure_stage(self, name: str) -> dict:
        row = self.stage_row(name)
        if row is not None:
            return row
        policy = self.cfg.stage(name)
        population = self._population()
        target = policy.entities
        limit = self.run["entity_limit"]
        if limit is not None:
            target = min(target, limit) if target is not None else None
        cohort = next_cohort(population, self._exposed(), target, derive_seed(self.run["seed"], "stage", name))
        shadow = sorted(shadow_subset(cohort, policy.shadow_fraction, derive_seed(self.run["seed"], "shadow", name)))
        snapshot = None if self.dry or not cohort else self.graph.snapshot(cohort)
        now = time.time()
        state = StageState.RUNNING if cohort else StageState.SKIPPED
        with self.ops.transaction() as db:
            self.ctx.assert_lease(db)
            db.execute(
                """INSERT INTO rollout_stages (run_id, stage, idx, state, cohort, shadow, total, done, snapshot,
                   started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)""",
                [self.run_id, name, self.stages.index(name), state, _dumps(cohort), _dumps(shadow), len(cohort),
                 _dumps(snapshot) if snapshot is not None else None, now],
            )
            db.execute("UPDATE rollout_runs SET current_stage = ?, updated_at = ?, message = ? WHERE id = ?",
                       [name, now, f"{name}: {len(cohort)} entities" if cohort else f"{name}: nothing left to expose",
                        self.run_id])
            if not cohort:
                _insert_decision(db, self.run_id, name, at=now, gate="stage_end", action="skip", phase="skipped",
                                 actor="worker", reason="no entity left to expose at this stage",
                                 record={"exposed_before": len(self._exposed()), "target": target})
        self.ctx.heartbeat(done=0, total=len(cohort), message=f"{name}: starting with {len(cohort)} entities")
        return self.stage_row(name)  # type: ignore[return-value]

    def _pair(self, name: str, entity_id: str, shadowed: bool) -> dict:
        from engine.discovery.evidence import EvidenceUnavailable
        from engine.discovery.runs import run_entities

        common = dict(source=self.source, stage_id=stage_key(self.run_id, name), log=self.log)
        old = None
        old_error = None
        if shadowed:
            try:
                [old] = run_entities(self.graph, self.ops, [entity_id], system="old", params=self.baseline,
                                     shadow=True, run_id=discovery_run_id(self.run_id, name, "old"), **common)
            except EvidenceUnavailable:
                raise
            except DiscoveryError as exc:
                old_error = str(exc)
        new = None
        new_error = None
        try:
            [new] = run_entities(self.graph, self.ops, [entity_id], system="new", params=self.candidate,
                                 shadow=self.dry, run_id=discovery_run_id(self.run_id, name, "new"), **common)
        except EvidenceUnavailable:
            raise
        except DiscoveryError as exc:
            new_error = str(exc)
        outcome = PairedOutcome(
            entity_id=entity_id,
            new_cost=float(new.cost_usd) if new else 0.0,
            new_actionable=bool(new.actionable) if new else False,
            new_hops=len(new.hops) if new else 0,
            new_errors=new.error_count if new else 0,
            new_engine_ms=float(new.engine_time_s) * 1000.0 if new else 0.0,
            new_crashed=new is None,
            old_cost=float(old.cost_usd) if old else None,
            old_actionable=bool(old.actionable) if old else None,
        ).to_dict()
        outcome.update({
            "new_stop": new.stop_reason if new else "", "old_stop": old.stop_reason if old else "",
            "new_error": new_error, "old_error": old_error, "shadowed": shadowed,
            "new_evidence_latency_s": float(new.evidence_latency_s) if new else 0.0,
        })
        return outcome

    def _process(self, name: str) -> None:
        policy = self.cfg.stage(name)
        row = self.stage_row(name)
        assert row is not None
        cohort: list[str] = json.loads(row["cohort"])
        shadow = set(json.loads(row["shadow"]))
        with self.ops.connect() as db:
            done_ids = {r["entity_id"] for r in db.query(
                "SELECT entity_id FROM rollout_entities WHERE run_id = ? AND stage = ?", [self.run_id, name])}
            batch_no = next(iter(db.query(
                "SELECT COALESCE(MAX(batch) + 1, 0) AS b FROM rollout_entities WHERE run_id = ? AND stage = ?",
                [self.run_id, name])))["b"]
        remaining = [e for e in cohort if e not in done_ids]
        if remaining and self.ctx.attempt > 1 and not self.dry and row["snapshot"] and name not in self.restored_this_attempt:
            # a killed worker may have written live runs whose checkpoint never landed: undo them, then redo
            snap = json.loads(row["snapshot"])
            self.graph.restore({**snap, "entities": {e: snap["entities"][e] for e in remaining}})
        self.restored_this_attempt.add(name)
        done = len(done_ids)
        total = len(cohort)
        for start in range(0, len(remaining), policy.batch_size):
            batch = remaining[start:start + policy.batch_size]
            results = []
            for eid in batch:
                self.ctx.checkpoint(done=done + len(results), total=total,
                                    message=f"{name}: {done + len(results)}/{total} entities")
                self._check_active()
                results.append(self._pair(name, eid, eid in shadow))
            done = self._commit_batch(name, policy, results, batch_no, done, total)
            batch_no += 1
        self._stage_end(name, policy)

    def _commit_batch(self, name: str, policy: StagePolicy, results: list[dict], batch_no: int, done: int,
                      total: int) -> int:
        with self.ops.connect() as db:
            before = _stage_outcomes(db, self.run_id, name)
        outcomes = before + [PairedOutcome.from_dict(r) for r in results]
        n = len(outcomes)
        final = n >= total
        verdict, record = verdict_record(self.run, policy, outcomes, final=False)
        now = time.time()
        failed = verdict.phase is Phase.FAILED
        with self.ops.transaction() as db:
            self.ctx.assert_lease(db)
            for i, r in enumerate(results):
                db.execute(
                    "INSERT INTO rollout_entities (run_id, entity_id, stage, seq, batch, at, attempt, outcome) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [self.run_id, r["entity_id"], name, len(before) + i, batch_no, now, self.ctx.attempt, _dumps(r)],
                )
                if not self.dry:
                    db.execute(
                        "INSERT INTO entity_assignments (entity_id, system, config_hash, run_id, stage, updated_at) "
                        "VALUES (?, 'new', ?, ?, ?, ?) ON CONFLICT(entity_id) DO UPDATE SET system = 'new', "
                        "config_hash = excluded.config_hash, run_id = excluded.run_id, stage = excluded.stage, "
                        "updated_at = excluded.updated_at",
                        [r["entity_id"], self.run["candidate_hash"], self.run_id, name, now],
                    )
            db.execute("UPDATE rollout_stages SET done = ?, completed_at = ? WHERE run_id = ? AND stage = ?",
                       [n, now if final else None, self.run_id, name])
            if not final or failed:  # the last batch's verdict is the stage-end gate (final=True)
                db.execute("UPDATE rollout_stages SET verdict = ? WHERE run_id = ? AND stage = ?",
                           [_dumps(record), self.run_id, name])
                _insert_decision(db, self.run_id, name, at=now, gate="check",
                                 action="rollback" if failed else "continue", phase=verdict.phase, actor="worker",
                                 reason=verdict.reason, record=record)
        self.ctx.heartbeat(done=n, total=total, message=f"{name}: {n}/{total} entities; {verdict.phase}")
        if failed:
            self._auto_rollback(name, verdict, record)
        return n

    def _auto_rollback(self, name: str, verdict: Verdict, record: dict) -> None:
        rollback(self.ctx.settings, self.ops, self.run_id, "worker",
                 f"{name}: rollback trigger breached: {verdict.reason}", graph=self.graph,
                 from_job=self.ctx.job.id, trigger=record)
        raise _Stop()

    def _stage_end(self, name: str, policy: StagePolicy) -> None:
        """Every entity is in: the final verdict decides soak (pass), wait for a person (inconclusive) or roll back."""
        row = self.stage_row(name)
        if row is None or row["state"] != StageState.RUNNING:
            return
        with self.ops.connect() as db:
            outcomes = _stage_outcomes(db, self.run_id, name)
        if len(outcomes) < row["total"]:
            return
        verdict, record = verdict_record(self.run, policy, outcomes, final=True)
        now = time.time()
        days = elapsed_days(row["started_at"], now, self.run["time_scale"])
        record.update({"elapsed_days": days, "min_duration_days": policy.min_duration_days,
                       "time_scale": self.run["time_scale"]})
        if verdict.phase is Phase.FAILED:
            action, new_state = "rollback", None
        elif verdict.phase is Phase.PASSED:
            action, new_state = "soak", StageState.SOAKING
        else:
            action, new_state = "await_operator", StageState.INCONCLUSIVE
        with self.ops.transaction() as db:
            self.ctx.assert_lease(db)
            db.execute("UPDATE rollout_stages SET verdict = ?, completed_at = COALESCE(completed_at, ?) "
                       "WHERE run_id = ? AND stage = ?", [_dumps(record), now, self.run_id, name])
            _insert_decision(db, self.run_id, name, at=now, gate="stage_end", action=action, phase=verdict.phase,
                             actor="worker", reason=verdict.reason, record=record)
            if new_state is not None:
                db.execute("UPDATE rollout_stages SET state = ? WHERE run_id = ? AND stage = ? AND state = ?",
                           [new_state, self.run_id, name, StageState.RUNNING])
                msg = (f"{name} passed; soaking until {policy.min_duration_days:g} days have passed"
                       if new_state == StageState.SOAKING else f"{name} inconclusive: {verdict.reason}; "
                       "waiting for an operator to promote or roll back")
                db.execute(
                    f"UPDATE rollout_runs SET state = ?, updated_at = ?, message = ? WHERE id = ? "
                    f"AND state IN ({','.join('?' * len(RunState.ACTIVE))})",
                    [RunState.SOAKING if new_state == StageState.SOAKING else RunState.INCONCLUSIVE, now, msg,
                     self.run_id, *RunState.ACTIVE],
                )
        if verdict.phase is Phase.FAILED:
            self._auto_rollback(name, verdict, record)

    def _wait(self, name: str) -> None:
        """Soak until the minimum duration has passed (then promote), or wait for an operator's decision."""
        policy = self.cfg.stage(name)
        while True:
            self._check_active()
            row = self.stage_row(name)
            if row is None or row["state"] not in (StageState.SOAKING, StageState.INCONCLUSIVE):
                return
            now = time.time()
            days = elapsed_days(row["started_at"], now, self.run["time_scale"])
            if row["state"] == StageState.SOAKING:
                phase = Phase(json.loads(row["verdict"])["verdict"]["phase"])
                gate = promotion_gate(phase, days, policy.min_duration_days, force=False, operator=False)
                if gate.allowed:
                    with self.ops.connect() as db:
                        run = _run_row(db, self.run_id)
                    _promote_stage(self.ops, run, name, actor="worker", operator=False, force=False,
                                   gate_reason=gate.reason, days=days, now=now)
                    continue
                left_s = (policy.min_duration_days - days) * 86400.0 / self.run["time_scale"]
                self.ctx.wait(max(0.05, min(WAIT_POLL_S, left_s)),
                              message=f"{name}: soaking, {days:.2f} of {policy.min_duration_days:g} days")
            else:
                self.ctx.wait(WAIT_POLL_S, message=f"{name}: inconclusive, waiting for an operator")


def run_rollout_job(ctx) -> dict:
    """Job handler of kind ``rollout`` (engine.jobs.queue.JOB_KINDS): runs (or resumes) one rollout run."""
    from engine.store.graph import GraphStore

    if ctx.settings is None:
        raise RolloutError("a rollout job needs settings (run it with `python -m engine worker --job ID`)")
    graph = GraphStore.open(ctx.settings)
    try:
        return _Runner(ctx, graph, int(ctx.params["run_id"])).execute()
    finally:
        graph.close()


def run_rollback_job(ctx) -> dict:
    """Job handler of kind ``rollback``: a rollback run by a worker (params: run_id, actor, reason)."""
    p = ctx.params
    return rollback(ctx.settings, ctx.ops, int(p["run_id"]), p.get("actor", "worker"), p.get("reason", "requested"),
                    from_job=ctx.job.id).to_dict()


__all__ = [
    "ALL", "JOB_KIND", "RunState", "StageState", "RolloutError", "UnknownRollout", "RunInfo", "PairedSummary",
    "StageStatus", "DecisionRecord", "RolloutStatus", "RollbackResult", "start_rollout", "rollout_status",
    "list_runs", "decision_records", "paired_outcomes", "recompute_decision", "stage_report", "pause", "resume",
    "cancel", "promote", "rollback", "set_candidate", "candidate_info", "candidate_config", "live_config",
    "live_config_info", "assigned_systems", "stage_key", "discovery_run_id", "run_rollout_job", "run_rollback_job",
]
