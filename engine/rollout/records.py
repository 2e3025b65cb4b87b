"""The rollout's SQLite records: schema, row values, the readers over them and the decision record inputs.

Four tables hold a rollout (migration component ``rollout``): ``rollout_runs``
(one row per run: target, stage table, candidate and baseline configs, state),
``rollout_stages`` (one row per reached stage: cohort, shadow subset, snapshot,
progress, latest verdict), ``rollout_entities`` (the paired outcome of every
checkpointed entity; primary key run + entity, so no entity is counted twice)
and ``rollout_decisions`` (every gate the run passed, with the inputs from
which ``recompute_decision`` recomputes its verdict); ``entity_assignments``
says which system an exposed entity runs. The frozen dataclasses here are what
the status, the CLI and the console read; the row helpers (``read_run``,
``read_stages``, ``insert_decision``, ...) are shared by the other modules of
the package and take an open connection so callers choose the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.core.access import Actor
from engine.core.errors import DiscoveryError
from engine.discovery.runs import EvidenceSpec
from engine.jobs.executor import ExecutorSpec
from engine.jobs.queue import Job
from engine.rollout.cohorts import derive_seed
from engine.rollout.stages import StageConfig, StagePolicy
from engine.rollout.states import EffectiveState, RunState, StageState
from engine.rollout.stats import Measurement, PairedOutcome, measure, p95
from engine.rollout.verdict import CriterionRow, Phase, Verdict, assess, promotion_gate, recompute_from_record
from engine.store.opsdb import Migration

#: the job kind that runs a rollout (engine.jobs.queue.JOB_KINDS)
JOB_KIND = "rollout"
#: ``--stage all``: every stage of the stage table, in order
ALL = "all"
#: the gate of the decision records the guardrail after promotion writes (engine.rollout.guardrails)
GUARDRAIL_GATE = "guardrail"


# --------------------------------------------------------------------------- schema


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
    Migration(
        component="rollout",
        version=2,
        name="rollout runs: evidence source, concurrency, limits and the cost estimate shown at the start",
        statements=(
            "ALTER TABLE rollout_runs ADD COLUMN evidence TEXT",
            "ALTER TABLE rollout_runs ADD COLUMN concurrency INTEGER",
            "ALTER TABLE rollout_runs ADD COLUMN limits TEXT",
            "ALTER TABLE rollout_runs ADD COLUMN cost_estimate TEXT",
        ),
    ),
    Migration(
        component="rollout",
        version=3,
        name="guardrails after promotion: the bake window of a promoted config and its latest evaluation",
        statements=(
            """
            CREATE TABLE IF NOT EXISTS rollout_guardrails (
                run_id INTEGER PRIMARY KEY,
                stage TEXT NOT NULL,
                state TEXT NOT NULL,
                promoted_at REAL NOT NULL,
                ends_at REAL NOT NULL,
                bake_days REAL NOT NULL,
                time_scale REAL NOT NULL,
                promoted_hash TEXT NOT NULL,
                previous_hash TEXT NOT NULL,
                previous TEXT NOT NULL,
                policy TEXT NOT NULL,
                seed INTEGER NOT NULL,
                job_id INTEGER,
                evaluated_at REAL,
                verdict TEXT,
                ended_at REAL,
                ended_by TEXT,
                outcome TEXT NOT NULL DEFAULT ''
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_rollout_guardrails_state ON rollout_guardrails (state, promoted_at)",
        ),
    ),
    Migration(
        component="rollout",
        version=4,
        name="rollout runs: where the batches' entity runs happen (a local Dask cluster of N workers or a scheduler)",
        statements=("ALTER TABLE rollout_runs ADD COLUMN executor TEXT",),
    ),
    Migration(
        component="rollout",
        version=5,
        name="rollout runs: the verified identity of who started the run (for four-eyes and the decision records)",
        statements=("ALTER TABLE rollout_runs ADD COLUMN actor_identity TEXT",),
    ),
]


class RolloutError(DiscoveryError):
    """A rollout request that cannot be done as asked (one line, says what to do)."""


class UnknownRollout(RolloutError):
    """There is no such run (or no run at all when none was asked for)."""

    def __init__(self, run_id: int | None):
        msg = (
            "no rollout has been started yet: start one with `python -m engine rollout --stage pilot`"
            if run_id is None
            else f"no rollout run {run_id}: list runs with `python -m engine rollout runs`"
        )
        super().__init__(msg)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class RunInfo:
    """One rollout run as ``rollout_runs`` holds it (without the stored configs)."""

    id: int
    job_id: int | None
    state: RunState
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
    #: every stage of the run's stage table, in order (``stages`` is the part this run goes through)
    stages_of_table: tuple[str, ...] = ()
    #: the candidate's and the old system's parameters (for the diff the console shows)
    candidate_params: dict = field(default_factory=dict)
    baseline_params: dict = field(default_factory=dict)
    #: the evidence source (EvidenceSpec.describe()) and its stored spec; runs from before: the world
    evidence: str = ""
    evidence_spec: dict = field(default_factory=dict)
    #: entities in flight (None: each stage's own setting) and the evaluator limits (RunLimits.to_dict())
    concurrency: int | None = None
    limits: dict = field(default_factory=dict)
    #: the estimate shown when the run was started (engine.rollout.estimate.CostEstimate.to_dict())
    cost_estimate: dict = field(default_factory=dict)
    #: where the batches' entity runs happen (ExecutorSpec.describe()) and its stored spec; runs from before:
    #: in the worker's own process
    executor: str = ""
    executor_spec: dict = field(default_factory=dict)
    #: who started the run (``identity(actor)``: key, e-mail, issuer, subject, role); runs from before: the key
    started_by: dict = field(default_factory=dict)
    #: the stages of the run's table that set ``four_eyes`` (runs stored before the setting: none)
    four_eyes_stages: tuple[str, ...] = ()

    def four_eyes_rule(self, stage: str, *, force: bool = False) -> str | None:
        """Which four-eyes rule promoting ``stage`` falls under (one line), or None when it needs no second person.

        A forced promotion always does; otherwise (not in a dry run, which changes nothing live) a promotion
        into a stage of the run that sets ``four_eyes``, and a promotion of such a stage that makes the
        candidate the live config (the last stage of the table).
        """
        if force:
            return "a forced promotion needs a second person"
        if self.dry_run or stage not in self.stages:
            return None
        i = self.stages.index(stage)
        nxt = self.stages[i + 1] if i + 1 < len(self.stages) else None
        if nxt is not None:
            return f"promotion into {nxt} needs a second person" if nxt in self.four_eyes_stages else None
        if self.stages_of_table and stage == self.stages_of_table[-1] and stage in self.four_eyes_stages:
            return f"promoting {stage} makes the config live and needs a second person"
        return None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = list(self.stages)
        d["four_eyes_stages"] = list(self.four_eyes_stages)
        d["stages_of_table"] = list(self.stages_of_table)
        return d

    @property
    def skipped_stages(self) -> tuple[str, ...]:
        """The stages of the table before this run's first: it did not run them."""
        if not self.stages or self.stages[0] not in self.stages_of_table:
            return ()
        return self.stages_of_table[: self.stages_of_table.index(self.stages[0])]

    @property
    def next_stage(self) -> str | None:
        """The stage of the table after this run's last one (None when the run reaches the last stage)."""
        if not self.stages or self.stages[-1] not in self.stages_of_table:
            return None
        i = self.stages_of_table.index(self.stages[-1]) + 1
        return self.stages_of_table[i] if i < len(self.stages_of_table) else None


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
    """One stage of a run: its state, progress, elapsed scaled days, latest verdict and paired totals."""

    name: str
    index: int
    state: StageState
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
        return self.done / self.total if self.total else (1.0 if self.state.is_done() else 0.0)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("verdict", "paired")}
        d["progress"] = self.progress
        d["verdict"] = self.verdict.to_dict() if self.verdict else None
        d["paired"] = self.paired.to_dict() if self.paired else None
        return d


@dataclass(frozen=True)
class DecisionRecord:
    """One gate the run passed (``rollout_decisions``): what was decided, by whom, from which inputs."""

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

    @property
    def started_by(self) -> str:
        """Who started the run, as a page shows it (a promotion's record; empty for other gates)."""
        return who_text(self.record.get("started_by"))

    @property
    def approved_by(self) -> str:
        """Who approved a promotion (the person, or the worker's automatic promotion); empty for other gates."""
        return who_text(self.record.get("approved_by"))

    @property
    def four_eyes_outcome(self) -> str:
        """``met``, ``waived (...)`` or ``not required`` on a promotion's record; empty on other gates."""
        return str(self.record.get("four_eyes_outcome") or "")


@dataclass(frozen=True)
class RolloutStatus:
    """Everything the page and `rollout status` show about one run."""

    run: RunInfo | None
    state: EffectiveState  # the run's state, or queued / paused / dead / failed / stopped from its job
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
    """What one rollback request did (or why it did nothing)."""

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


def dumps(value: Any) -> str:
    """JSON as the rollout tables store it (sorted keys; anything else as its string)."""
    return json.dumps(value, sort_keys=True, default=str)


def stage_config_from_dict(d: Mapping[str, Any]) -> StageConfig:
    """The stage table stored with a run (``rollout_runs.stage_config``)."""
    return StageConfig(
        stages=tuple(StagePolicy.from_dict(s) for s in d["stages"]),
        seed=int(d["seed"]),
        time_scale=float(d["time_scale"]),
        source="stored with the rollout run",
        raw=dict(d),
    )


def run_info_from_row(row: Mapping[str, Any]) -> RunInfo:
    """A ``rollout_runs`` row as a RunInfo."""
    return RunInfo(
        id=row["id"],
        job_id=row["job_id"],
        state=RunState(row["state"]),
        target=row["target"],
        stages=tuple(_loads(row["stages"], [])),
        current_stage=row["current_stage"],
        dry_run=bool(row["dry_run"]),
        seed=row["seed"],
        world_seed=row["world_seed"],
        time_scale=row["time_scale"],
        entity_limit=row["entity_limit"],
        candidate_hash=row["candidate_hash"],
        candidate_source=row["candidate_source"],
        baseline_hash=row["baseline_hash"],
        actor=row["actor"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        message=row["message"],
        stages_of_table=tuple(s["name"] for s in _loads(row["stage_config"], {}).get("stages", [])),
        candidate_params=dict(_loads(row["candidate"], {})),
        baseline_params=dict(_loads(row["baseline"], {})),
        evidence=run_evidence(row).describe(),
        evidence_spec=run_evidence(row).to_dict(),
        concurrency=row.get("concurrency"),
        limits=dict(_loads(row.get("limits"), {}) or {}),
        cost_estimate=dict(_loads(row.get("cost_estimate"), {}) or {}),
        executor=run_executor(row).describe(),
        executor_spec=run_executor(row).to_dict(),
        started_by=dict(_loads(row.get("actor_identity"), {}) or {"key": row["actor"]}),
        four_eyes_stages=tuple(
            s["name"] for s in _loads(row["stage_config"], {}).get("stages", []) if s.get("four_eyes")
        ),
    )


def run_evidence(row) -> EvidenceSpec:
    """The evidence source of a run row: its stored spec, or (runs from before sources were stored) the world."""
    raw = row.get("evidence")
    if raw:
        return EvidenceSpec.from_dict(json.loads(raw), source=f"rollout {row['id']} evidence")
    return EvidenceSpec(world_seed=int(row["world_seed"]))


def run_executor(row) -> ExecutorSpec:
    """Where a run's batches run: its stored spec, or (none stored: runs from before, or in-process) this process."""
    raw = row.get("executor")
    return ExecutorSpec.from_dict(json.loads(raw)) if raw else ExecutorSpec()


def read_run(db, run_id: int | None) -> dict:
    """The run's row (the latest run when ``run_id`` is None); UnknownRollout if there is none."""
    if run_id is None:
        rows = list(db.query("SELECT * FROM rollout_runs ORDER BY id DESC LIMIT 1"))
    else:
        rows = list(db.query("SELECT * FROM rollout_runs WHERE id = ?", [int(run_id)]))
    if not rows:
        raise UnknownRollout(run_id)
    return rows[0]


def read_stages(db, run_id: int) -> dict[str, dict]:
    """The run's ``rollout_stages`` rows by stage name, in stage order."""
    return {r["stage"]: r for r in db.query("SELECT * FROM rollout_stages WHERE run_id = ? ORDER BY idx", [run_id])}


def read_outcomes(db, run_id: int, stage: str, limit: int | None = None) -> list[PairedOutcome]:
    """The stage's checkpointed paired outcomes in processing order (the first ``limit`` of them)."""
    sql = "SELECT outcome FROM rollout_entities WHERE run_id = ? AND stage = ? ORDER BY seq"
    args: list[Any] = [run_id, stage]
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return [PairedOutcome.from_dict(json.loads(r["outcome"])) for r in db.query(sql, args)]


def identity(actor: Actor) -> dict[str, str]:
    """The identity a decision record keeps of an actor: key, e-mail, issuer, subject, role, how verified."""
    return {
        "key": actor.key,
        "email": actor.email,
        "issuer": actor.issuer,
        "subject": actor.subject,
        "role": actor.role.label,
        "verified_by": actor.verified_by,
    }


def who_text(who: object) -> str:
    """An identity of a record as one line: ``alice@example.com`` (its key when it has no e-mail)."""
    if isinstance(who, Mapping):
        email, key = str(who.get("email") or ""), str(who.get("key") or "")
        return email if email and email == key else (f"{key} ({email})" if email else key)
    return str(who or "")


def insert_decision(
    db,
    run_id: int,
    stage: str,
    *,
    at: float,
    gate: str,
    action: str,
    phase: str,
    actor: Actor,
    reason: str,
    record: Mapping[str, Any],
    forced: bool = False,
) -> int:
    """Write one decision record; returns its id. The actor column is the actor's key, the record keeps its
    verified identity (``by``). The caller has authorized ``actor`` for the action it records."""
    full = {**record, "by": identity(actor)}
    cur = db.execute(
        "INSERT INTO rollout_decisions (run_id, stage, at, gate, action, phase, actor, forced, reason, record) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [run_id, stage, at, gate, action, str(phase), str(actor), int(forced), reason, dumps(full)],
    )
    return int(cur.lastrowid)


def decision_from_row(row: Mapping[str, Any]) -> DecisionRecord:
    """A ``rollout_decisions`` row as a DecisionRecord."""
    return DecisionRecord(
        id=row["id"],
        run_id=row["run_id"],
        stage=row["stage"],
        at=row["at"],
        gate=row["gate"],
        action=row["action"],
        phase=row["phase"],
        actor=row["actor"],
        forced=bool(row["forced"]),
        reason=row["reason"],
        record=json.loads(row["record"]),
    )


def measure_stage(policy: StagePolicy, outcomes: Sequence[PairedOutcome], seed: int) -> dict[str, Measurement]:
    """The stage's measurements with the bootstrap generator seeded by ``seed`` (recorded in the decision)."""
    return measure(outcomes, np.random.default_rng(seed), level=policy.confidence, resamples=policy.bootstrap_resamples)


def measurement_seed(run_seed: int, stage: str, n: int) -> int:
    """The bootstrap seed of a stage's check after ``n`` entities (recorded, so the check can be recomputed)."""
    return derive_seed(run_seed, "measure", stage, n) % (2**63)


def verdict_record(
    run: Mapping[str, Any], policy: StagePolicy, outcomes: Sequence[PairedOutcome], *, final: bool
) -> tuple[Verdict, dict]:
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
            "engine.rollout.verdict.assess over engine.rollout.stats.measure: "
            "paired bootstrap over entities for cost and "
            "actionable changes and p95 engine latency, exact Clopper-Pearson for the error rate; "
            "triggers fire only at n >= min_sample"
        ),
        "thresholds": {
            "success": [c.label() + f" ({c.test})" for c in policy.success],
            "rollback": [c.label() + f" ({c.test})" for c in policy.rollback],
            "min_sample": policy.min_sample,
            "confidence": policy.confidence,
        },
        "config": {
            "candidate_hash": run["candidate_hash"],
            "baseline_hash": run["baseline_hash"],
            "candidate_source": run["candidate_source"],
        },
        "bootstrap_seed": seed,
        "dry_run": bool(run["dry_run"]),
        "verdict": verdict.to_dict(),
    }
    return verdict, record


def verdict_from_dict(d: Mapping[str, Any] | None) -> Verdict | None:
    """A verdict stored in a decision record (None when there is none)."""
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
    """Totals over a stage's paired outcomes."""
    paired = [o for o in outcomes if o.paired]
    lat = [o.new_engine_ms for o in outcomes if not o.new_crashed]
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
        return {
            r["entity_id"]: {k: r[k] for k in ("system", "config_hash", "run_id", "stage", "updated_at")} for r in rows
        }


# --------------------------------------------------------------------------- reading


def list_runs(ops, limit: int = 50) -> list[RunInfo]:
    """Rollout runs, newest first."""
    with ops.connect() as db:
        return [
            run_info_from_row(r) for r in db.query("SELECT * FROM rollout_runs ORDER BY id DESC LIMIT ?", [int(limit)])
        ]


def decision_records(
    ops, run_id: int | None = None, *, stage: str | None = None, limit: int | None = None
) -> list[DecisionRecord]:
    """The run's decision records, newest first (the latest run when ``run_id`` is None)."""
    with ops.connect() as db:
        run = read_run(db, run_id)
        sql = "SELECT * FROM rollout_decisions WHERE run_id = ?"
        args: list[Any] = [run["id"]]
        if stage is not None:
            sql += " AND stage = ?"
            args.append(stage)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [decision_from_row(r) for r in db.query(sql, args)]


def paired_outcomes(ops, run_id: int | None = None, stage: str | None = None) -> list[dict]:
    """Checkpointed entities with their paired results, in processing order (for charts and downloads)."""
    with ops.connect() as db:
        run = read_run(db, run_id)
        sql = "SELECT * FROM rollout_entities WHERE run_id = ?"
        args: list[Any] = [run["id"]]
        if stage is not None:
            sql += " AND stage = ?"
            args.append(stage)
        rows = list(db.query(sql + " ORDER BY stage, seq", args))
    out = []
    for r in rows:
        d = json.loads(r["outcome"])
        d.update(
            {
                "run_id": r["run_id"],
                "stage": r["stage"],
                "seq": r["seq"],
                "batch": r["batch"],
                "at": r["at"],
                "attempt": r["attempt"],
            }
        )
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
        d = decision_from_row(rows[0])
        rec = d.record
        if "policy" not in rec:
            return None, True
        if d.gate == GUARDRAIL_GATE:
            # measured on production traffic, not on checkpointed pairs (engine.rollout.guardrails
            # recomputes it from the metric events too)
            again = recompute_from_record(rec)
            return again, again.to_dict() == rec["verdict"]
        policy = StagePolicy.from_dict(rec["policy"])
        outcomes = read_outcomes(db, d.run_id, d.stage, limit=int(rec["n"]))
    from_measurements = recompute_from_record(rec)
    again = assess(
        policy, measure_stage(policy, outcomes, int(rec["bootstrap_seed"])), n=len(outcomes), final=bool(rec["final"])
    )
    recorded = rec["verdict"]
    ok = from_measurements.to_dict() == recorded and again.to_dict() == recorded and len(outcomes) == rec["n"]
    if ok and d.gate == "promote":
        gate = promotion_gate(
            again.phase,
            float(rec["elapsed_days"]),
            float(rec["min_duration_days"]),
            force=bool(rec.get("force")),
            operator=bool(rec.get("operator")),
        )
        ok = gate.allowed
    return again, ok
