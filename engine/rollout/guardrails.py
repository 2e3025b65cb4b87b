"""Guardrails after promotion: the last stage's rollback triggers keep watching production traffic for a bake
period, and a breach reverts the live config.

A rollout judges a candidate on a stage's entities; what goes live is then run
by the production scheduler on the whole catalogue, visit after visit, for
weeks. Like Argo Rollouts' post-promotion analysis, the promotion that makes a
config live (the last stage of the stage table, not a dry run) starts a **bake
window** of ``bake_days`` (scaled by the run's time scale, as minimum
durations are) when that stage sets it (``data/stages.json``). During it the
stage's rollback triggers are evaluated on **production traffic**: the
non-shadow metric events with stage id ``production`` (the scheduler's, see
engine.production) and the promoted config's hash, since the promotion.

**Paired triggers without a pair.** In a stage every candidate run has the
old system's shadow run on the same entity. After promotion only the promoted
config runs, so the comparative metrics (cost increase or reduction,
actionable increase) compare the promoted config's production runs with the
**previous config's own recorded runs**: its last ``BASELINE_MAX_RUNS``
production runs before the promotion (the same traffic path), or, when it
never ran in production (no scheduler ran before the promotion), its shadow
runs in the promoting rollout's stages. The comparison is unpaired (different
visits): the mean cost per run and the actionable rate of each side, with a
percentile bootstrap that resamples each side on its own. Error rate and p95
engine time need no pair and are measured on the promoted config's runs as in
a stage (Clopper-Pearson; bootstrap). Triggers fire only once ``min_sample``
production runs of the promoted config are in (the stage's own minimum).
``judge`` is the pure decision over those recorded figures; its inputs go into
the decision record, from which ``recompute_decision`` recomputes it.

**A breach reverts** (``revert_guardrail``), in one transaction: the live
config back to the previous one (audited as a live-config change, so the
Configs page's history shows it), the run's entities back on it in
``entity_assignments``, the bake state to ``reverted`` by a compare-and-set
(two evaluators or two clicks revert once), a ``guardrail`` decision record
with the breached criteria, their figures, intervals and window, and who or
what acted, and an audit row.

**Graph state written since the promotion is kept** by default. It is evidence
that real hops found (money spent) and the hypothesis states that evidence
supports; the revert changes how the next visits search, not what was found,
and the stage snapshots are from before the stage, so restoring them would
also throw away everything the catalogue learnt since. When the bad config
wrote bad state (a mis-tuned confidence step, say), ``restore_graph=True``
(``rollout guardrail revert --restore-graph``, or the page's tick box) also
runs the rollout's own rollback (engine.rollout.rollback): every exposed
entity restored from its stage snapshot, the run's evidence marked rolled back.

The evaluation runs by itself: the promotion submits a ``rollout.guardrail``
job (``run_guardrail_job``) that evaluates every ``interval_s`` until the
window ends (then a last evaluation over the whole window decides passed, or
unjudged below the minimum sample) or a revert. ``evaluate_guardrail`` is the
same round, callable directly (``now`` is virtual time for tests);
``guardrail_status`` reads the state and ``.describe()`` says it in one line.

Who may: evaluating (and starting the evaluation job) needs an operator
(``rollout.guardrail.evaluate``), reverting and ending a bake early an approver
(``rollout.guardrail.revert`` / ``.end``). A revert that a breached trigger
fires is the engine's own rule: it acts as ``WORKER`` whoever ran the round,
and its record names who evaluated.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np

from engine.core.access import WORKER, Actor
from engine.core.configs import live_config_info, set_live_config, when
from engine.core.params import ParameterConfig
from engine.core.settings import Settings
from engine.jobs.queue import Job, JobError, JobState, JobStore, launch_worker
from engine.monitoring.events import TABLE as EVENTS_TABLE
from engine.rollout import notices
from engine.rollout.cohorts import derive_seed
from engine.rollout.records import (
    GUARDRAIL_GATE,
    RollbackResult,
    RolloutError,
    dumps,
    identity,
    insert_decision,
    read_run,
    stage_key,
    verdict_from_dict,
)
from engine.rollout.rollback import rollback
from engine.rollout.stages import SECONDS_PER_DAY, Metric, StagePolicy
from engine.rollout.stats import (
    Measurement,
    bootstrap_rows,
    clopper_pearson,
    p95,
    p95_rows,
    percentile_interval,
    relative_change_rows,
)
from engine.rollout.verdict import Phase, Verdict, assess
from engine.store.access import authorize

#: the job kind of the periodic evaluation (engine.jobs.queue.JOB_KINDS)
KIND = "rollout.guardrail"
#: the stage id of production traffic (the production scheduler's metric events)
PRODUCTION_STAGE_ID = "production"
#: the previous config's production runs the comparative triggers compare with, at most (the latest ones)
BASELINE_MAX_RUNS = 5000
#: seconds between two evaluations of the job, at most; a short (scaled) bake is evaluated ~20 times
DEFAULT_INTERVAL_S = 60.0
EVALUATIONS_PER_BAKE = 20
MIN_INTERVAL_S = 0.05
#: who acts when the evaluation runs and reverts by itself: the engine (its job, a breached trigger)
GUARDRAIL_ACTOR = WORKER
#: the comparative metrics (they need the previous config's runs)
COMPARATIVE = (Metric.COST_INCREASE_PCT, Metric.COST_REDUCTION_PCT, Metric.ACTIONABLE_INCREASE_PCT)
#: metric names in words, with their unit (describe() is shown to operators as it is)
METRIC_WORDS: dict[str, tuple[str, str]] = {
    Metric.COST_INCREASE_PCT: ("cost increase", " %"),
    Metric.COST_REDUCTION_PCT: ("cost reduction", " %"),
    Metric.ACTIONABLE_INCREASE_PCT: ("actionable increase", " %"),
    Metric.ERROR_RATE_PCT: ("error rate", " %"),
    Metric.P95_LATENCY_MS: ("p95 engine time", " ms"),
}


class GuardrailError(RolloutError):
    """A guardrail request that cannot be done as asked (one line, says what to do)."""


class GuardrailState(StrEnum):
    """``rollout_guardrails.state``."""

    BAKING = "baking"  # the window is open: the triggers are evaluated on production traffic
    PASSED = "passed"  # the window ended with enough traffic and no trigger breached
    UNJUDGED = "unjudged"  # the window ended below the minimum sample: nothing judged, nothing reverted
    REVERTED = "reverted"  # a breach (or an operator) reverted the live config
    ENDED = "ended"  # ended early by an operator, or superseded by a later promotion

    def is_open(self) -> bool:
        return self is GuardrailState.BAKING


#: the states a revert may start from (an operator may revert after a passed bake too)
REVERTIBLE = (GuardrailState.BAKING, GuardrailState.PASSED, GuardrailState.UNJUDGED, GuardrailState.ENDED)


# --------------------------------------------------------------------------- the pure decision


@dataclass(frozen=True)
class Visit:
    """The figures of one production run (a metric event) the guardrail measures."""

    cost_usd: float
    actionable: bool
    hops: int
    errors: int
    engine_ms: float


@dataclass(frozen=True)
class Baseline:
    """The previous config's runs the comparative triggers compare with, and where they came from."""

    visits: tuple[Visit, ...]
    source: str  # "production" | "rollout shadow" | "none"
    start: float | None = None
    end: float | None = None

    def describe(self) -> str:
        if not self.visits:
            return "no recorded run of the previous config: the comparative triggers have no data"
        where = (
            "production runs before the promotion"
            if self.source == "production"
            else "shadow runs in the promoting rollout"
        )
        return f"{len(self.visits):,} {where}"

    def to_dict(self) -> dict:
        return {"source": self.source, "n": len(self.visits), "start": self.start, "end": self.end}


def _boot_means(values: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """``resamples`` bootstrap means of ``values``, one side of an unpaired comparison."""
    return bootstrap_rows(lambda idx: values[idx].mean(axis=-1), len(values), rng, resamples=resamples)


def measure_production(
    promoted: Sequence[Visit],
    previous: Sequence[Visit],
    rng: np.random.Generator,
    *,
    level: float = 0.9,
    resamples: int = 2000,
) -> dict[str, Measurement]:
    """One Measurement per Metric from the promoted config's production runs and the previous config's runs.

    Comparative metrics: relative change of the mean cost per run and of the actionable rate, promoted vs
    previous, with an unpaired percentile bootstrap (each side resampled on its own). Error rate: errored
    hops over hops of the promoted runs, exact Clopper-Pearson. p95 engine time of the promoted runs,
    bootstrap. A metric without data has value None (its trigger shows "no data" and cannot fire).
    """
    out: dict[str, Measurement] = {}
    boot = f"unpaired bootstrap, promoted vs previous config ({resamples} resamples)"
    if promoted and previous:
        new_cost = np.array([v.cost_usd for v in promoted], dtype=float)
        old_cost = np.array([v.cost_usd for v in previous], dtype=float)
        new_act = np.array([1.0 if v.actionable else 0.0 for v in promoted])
        old_act = np.array([1.0 if v.actionable else 0.0 for v in previous])
        n = len(promoted)

        def interval(values: np.ndarray) -> tuple[float, float]:
            return percentile_interval(values, level)

        inc = float(relative_change_rows(old_cost.mean(), new_cost.mean()))
        lo, hi = interval(
            relative_change_rows(_boot_means(old_cost, rng, resamples), _boot_means(new_cost, rng, resamples))
        )
        out[Metric.COST_INCREASE_PCT] = Measurement(Metric.COST_INCREASE_PCT, inc, lo, hi, n, boot, level)
        out[Metric.COST_REDUCTION_PCT] = Measurement(Metric.COST_REDUCTION_PCT, -inc, -hi, -lo, n, boot, level)
        act = float(relative_change_rows(old_act.mean(), new_act.mean()))
        lo, hi = interval(
            relative_change_rows(_boot_means(old_act, rng, resamples), _boot_means(new_act, rng, resamples))
        )
        out[Metric.ACTIONABLE_INCREASE_PCT] = Measurement(Metric.ACTIONABLE_INCREASE_PCT, act, lo, hi, n, boot, level)
    else:
        why = "no production runs of the promoted config yet" if not promoted else "no runs of the previous config"
        for m in COMPARATIVE:
            out[m] = Measurement(m, None, None, None, 0, why, level)
    hops = sum(v.hops for v in promoted)
    errors = sum(v.errors for v in promoted)
    if hops:
        lo, hi = clopper_pearson(errors, hops, level)
        out[Metric.ERROR_RATE_PCT] = Measurement(
            Metric.ERROR_RATE_PCT,
            errors / hops * 100.0,
            lo * 100.0,
            hi * 100.0,
            hops,
            f"exact Clopper-Pearson ({errors} errors in {hops} hops)",
            level,
        )
    else:
        out[Metric.ERROR_RATE_PCT] = Measurement(Metric.ERROR_RATE_PCT, None, None, None, 0, "no hops yet", level)
    lat = np.array([v.engine_ms for v in promoted], dtype=float)
    if len(lat):
        n = len(lat)
        lo, hi = percentile_interval(bootstrap_rows(p95_rows(lat), n, rng, resamples=resamples), level)
        out[Metric.P95_LATENCY_MS] = Measurement(
            Metric.P95_LATENCY_MS,
            p95(lat),
            lo,
            hi,
            n,
            f"bootstrap over runs ({resamples} resamples)",
            level,
        )
    else:
        out[Metric.P95_LATENCY_MS] = Measurement(Metric.P95_LATENCY_MS, None, None, None, 0, "no runs yet", level)
    return {str(k): v for k, v in out.items()}


def triggers_only(policy: StagePolicy) -> StagePolicy:
    """The stage policy the guardrail applies: its rollback triggers (no success criteria: nothing is promoted)."""
    return replace(policy, success=())


def judge(
    policy: StagePolicy, promoted: Sequence[Visit], previous: Sequence[Visit], *, seed: int
) -> tuple[Verdict, dict[str, Measurement]]:
    """The guardrail's verdict over recorded production figures (pure): FAILED when a rollback trigger is
    breached with at least ``min_sample`` promoted runs in, PENDING below it, RUNNING otherwise."""
    m = measure_production(
        promoted,
        previous,
        np.random.default_rng(seed),
        level=policy.confidence,
        resamples=policy.bootstrap_resamples,
    )
    return assess(triggers_only(policy), m, n=len(promoted), final=False), m


def guardrail_seed(run_seed: int, n_promoted: int, n_previous: int) -> int:
    """The bootstrap seed of one evaluation (recorded, so the verdict can be recomputed)."""
    return derive_seed(run_seed, "guardrail", n_promoted, n_previous) % (2**63)


def bake_seconds(bake_days: float, time_scale: float) -> float:
    """Real seconds of a bake of ``bake_days`` scaled days."""
    return bake_days * SECONDS_PER_DAY / time_scale


# --------------------------------------------------------------------------- reading the recorded traffic


def _visits(rows) -> tuple[Visit, ...]:
    return tuple(
        Visit(float(r[0]), bool(r[1]), int(r[2]), int(r[3]), float(r[4])) for r in rows
    )  # cost, actionable, hops, errors, engine ms


_FIGURES = "cost_usd, actionable, hops, error_count, engine_latency_ms"


def promoted_visits(ops, config_hash: str, start: float, end: float) -> tuple[Visit, ...]:
    """The promoted config's production runs with ``start <= at < end`` (non-shadow, stage id production)."""
    with ops.connect() as db:
        rows = db.conn.execute(
            f"SELECT {_FIGURES} FROM {EVENTS_TABLE} WHERE stage_id = ? AND shadow = 0 AND config_hash = ? "
            "AND at >= ? AND at < ? ORDER BY at, id",
            [PRODUCTION_STAGE_ID, config_hash, start, end],
        ).fetchall()
    return _visits(rows)


def previous_visits(ops, row: Mapping[str, Any]) -> Baseline:
    """The previous config's runs: its latest production runs before the promotion, else its shadow runs in
    the promoting rollout (see the module doc)."""
    with ops.connect() as db:
        rows = db.conn.execute(
            f"SELECT {_FIGURES}, at FROM {EVENTS_TABLE} WHERE stage_id = ? AND shadow = 0 AND config_hash = ? "
            "AND at < ? ORDER BY at DESC, id DESC LIMIT ?",
            [PRODUCTION_STAGE_ID, row["previous_hash"], row["promoted_at"], BASELINE_MAX_RUNS],
        ).fetchall()
        if rows:
            return Baseline(_visits(rows), "production", start=float(rows[-1][5]), end=float(rows[0][5]))
        run_stages = db.conn.execute("SELECT stages FROM rollout_runs WHERE id = ?", [row["run_id"]]).fetchone()
        stages = json.loads(run_stages[0]) if run_stages else []
        keys = [stage_key(row["run_id"], s) for s in stages]
        rows = db.conn.execute(
            f"SELECT {_FIGURES}, at FROM {EVENTS_TABLE} WHERE stage_id IN ({','.join('?' * len(keys))}) "
            "AND system = 'old' AND config_hash = ? ORDER BY at DESC, id DESC LIMIT ?",
            [*keys, row["previous_hash"], BASELINE_MAX_RUNS],
        ).fetchall()
    if rows:
        return Baseline(_visits(rows), "rollout shadow", start=float(rows[-1][5]), end=float(rows[0][5]))
    return Baseline((), "none")


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class GuardrailStatus:
    """One bake window: where it stands, its criteria with the latest figures, and how it ended."""

    run_id: int
    stage: str
    state: GuardrailState
    promoted_at: float
    ends_at: float
    bake_days: float
    time_scale: float
    promoted_hash: str
    previous_hash: str
    policy: StagePolicy
    evaluated_at: float | None
    verdict: Verdict | None  # the latest evaluation
    record: dict  # its inputs (window, baseline, measurements)
    ended_at: float | None
    ended_by: str | None
    outcome: str
    job: Job | None
    now: float
    live_hash: str = ""
    decisions: tuple[int, ...] = field(default=())

    @property
    def elapsed_days(self) -> float:
        end = self.ended_at if self.ended_at is not None else self.now
        return max(0.0, min(end, self.ends_at) - self.promoted_at) * self.time_scale / SECONDS_PER_DAY

    @property
    def runs(self) -> int:
        """Production runs of the promoted config measured at the latest evaluation."""
        return self.verdict.n if self.verdict else 0

    @property
    def evaluator_running(self) -> bool:
        return self.job is not None and self.job.state.is_active()

    def criteria_text(self) -> str:
        return (
            ", ".join(f"{criterion_words(str(c.metric), c.op, c.threshold)}" for c in self.policy.rollback)
            or "no rollback trigger"
        )

    def describe(self) -> str:
        """One line: the bake window, the criteria, the verdict so far (or how it ended)."""
        head = f"guardrail of rollout {self.run_id} (config {self.promoted_hash}, previous {self.previous_hash})"
        window = f"bake of {self.bake_days:g} days from {when(self.promoted_at)} to {when(self.ends_at)}"
        if self.state is GuardrailState.BAKING:
            so_far = verdict_words(self.verdict, self.policy.min_sample)
            return (
                f"{head}: baking, day {self.elapsed_days:.1f} of {self.bake_days:g} (until {when(self.ends_at)}); "
                f"watching {self.criteria_text()} on production traffic; so far: {so_far}"
            )
        if self.state is GuardrailState.REVERTED:
            return f"{head}: reverted to {self.previous_hash} {when(self.ended_at)} by {self.ended_by}: {self.outcome}"
        if self.state is GuardrailState.PASSED:
            return f"{head}: {window} passed: {self.outcome}"
        if self.state is GuardrailState.UNJUDGED:
            return f"{head}: {window} ended unjudged: {self.outcome}"
        return f"{head}: {window} ended early {when(self.ended_at)} by {self.ended_by}: {self.outcome}"

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "stage": self.stage,
            "state": str(self.state),
            "promoted_at": self.promoted_at,
            "ends_at": self.ends_at,
            "bake_days": self.bake_days,
            "elapsed_days": self.elapsed_days,
            "time_scale": self.time_scale,
            "promoted_hash": self.promoted_hash,
            "previous_hash": self.previous_hash,
            "live_hash": self.live_hash,
            "triggers": [c.to_dict() for c in self.policy.rollback],
            "min_sample": self.policy.min_sample,
            "evaluated_at": self.evaluated_at,
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "window": self.record.get("window"),
            "baseline": self.record.get("baseline"),
            "ended_at": self.ended_at,
            "ended_by": self.ended_by,
            "outcome": self.outcome,
            "job": self.job.to_dict() if self.job else None,
            "describe": self.describe(),
        }


def _num_words(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    if math.isinf(value):
        return "unbounded" if value > 0 else "unbounded below"
    return f"{value:,.1f}{unit}" if abs(value) < 1e6 else f"{value:,.0f}{unit}"


def criterion_words(metric: str, op: str, threshold: float) -> str:
    """A trigger in words: "cost increase > 15 %"."""
    word, unit = METRIC_WORDS.get(metric, (metric.replace("_", " "), ""))
    return f"{word} {op} {threshold:g}{unit}"


def row_words(row) -> str:
    """One criterion row with its figure and interval in words: "cost increase 45.2 % [30.1 %, 60.3 %] > 15 %"."""
    word, unit = METRIC_WORDS.get(row.metric, (row.metric.replace("_", " "), ""))
    if row.value is None:
        return f"{word}: no data"
    interval = (
        f" [{_num_words(row.low, unit)}, {_num_words(row.high, unit)}]"
        if row.low is not None and row.high is not None and not (math.isnan(row.low) or math.isnan(row.high))
        else ""
    )
    return f"{word} {_num_words(row.value, unit)}{interval} (trigger {row.op} {row.threshold:g}{unit})"


def verdict_words(verdict: Verdict | None, min_sample: int) -> str:
    """The verdict so far in words (no internal names)."""
    if verdict is None:
        return "not evaluated yet"
    if verdict.phase is Phase.PENDING:
        return (
            f"{verdict.n:,} production runs of the promoted config, below the minimum sample of {min_sample:,}: "
            "no trigger can fire yet"
        )
    breached = [r for r in verdict.rows if r.phase is Phase.FAILED]
    if breached:
        return "breached: " + "; ".join(row_words(r) for r in breached)
    return f"no trigger breached in {verdict.n:,} production runs"


def _job_for(ops, row: Mapping[str, Any]) -> Job | None:
    if row["job_id"] is None:
        return None
    try:
        return JobStore(ops).get(int(row["job_id"]))
    except JobError:  # an unknown job id (a deleted row) shows as no evaluator
        return None


def _status_from_row(ops, row: Mapping[str, Any], now: float) -> GuardrailStatus:
    record = json.loads(row["verdict"]) if row["verdict"] else {}
    info = live_config_info(ops) or {}
    return GuardrailStatus(
        run_id=int(row["run_id"]),
        stage=row["stage"],
        state=GuardrailState(row["state"]),
        promoted_at=float(row["promoted_at"]),
        ends_at=float(row["ends_at"]),
        bake_days=float(row["bake_days"]),
        time_scale=float(row["time_scale"]),
        promoted_hash=row["promoted_hash"],
        previous_hash=row["previous_hash"],
        policy=StagePolicy.from_dict(json.loads(row["policy"])),
        evaluated_at=row["evaluated_at"],
        verdict=verdict_from_dict(record.get("verdict")),
        record=record,
        ended_at=row["ended_at"],
        ended_by=row["ended_by"],
        outcome=row["outcome"] or "",
        job=_job_for(ops, row),
        now=now,
        live_hash=str(info.get("hash", ParameterConfig().hash())),
    )


def _read_row(db, run_id: int | None) -> dict | None:
    if run_id is None:
        rows = list(db.query("SELECT * FROM rollout_guardrails ORDER BY promoted_at DESC, run_id DESC LIMIT 1"))
    else:
        rows = list(db.query("SELECT * FROM rollout_guardrails WHERE run_id = ?", [int(run_id)]))
    return rows[0] if rows else None


def guardrail_status(ops, *, run_id: int | None = None, now: float | None = None) -> GuardrailStatus | None:
    """The latest bake window (or run ``run_id``'s), or None when no promotion has baked yet."""
    now = time.time() if now is None else now
    with ops.connect() as db:
        row = _read_row(db, run_id)
    return None if row is None else _status_from_row(ops, row, now)


# --------------------------------------------------------------------------- starting a bake


def begin_bake(db, ops, run: Mapping[str, Any], policy: StagePolicy, *, actor: Actor, now: float) -> bool:
    """Open the bake window of a promotion that made ``run``'s candidate live, inside the promotion's
    transaction ``db`` (False when the stage sets no bake). A window still open from an earlier promotion is
    superseded: the config it watched is no longer live. The promotion authorized ``actor``."""
    if policy.bake_days <= 0:
        return False
    db.execute(
        "UPDATE rollout_guardrails SET state = ?, ended_at = ?, ended_by = ?, outcome = ? "
        "WHERE state = ? AND run_id != ?",
        [
            GuardrailState.ENDED,
            now,
            str(actor),
            f"superseded: rollout {run['id']} made another config live",
            GuardrailState.BAKING,
            run["id"],
        ],
    )
    ends_at = now + bake_seconds(policy.bake_days, float(run["time_scale"]))
    db.execute(
        "INSERT OR REPLACE INTO rollout_guardrails (run_id, stage, state, promoted_at, ends_at, bake_days, "
        "time_scale, promoted_hash, previous_hash, previous, policy, seed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run["id"],
            policy.name,
            GuardrailState.BAKING,
            now,
            ends_at,
            policy.bake_days,
            float(run["time_scale"]),
            run["candidate_hash"],
            run["baseline_hash"],
            run["baseline"],
            dumps(triggers_only(policy).to_dict()),
            int(run["seed"]),
        ],
    )
    insert_decision(
        db,
        run["id"],
        policy.name,
        at=now,
        gate=GUARDRAIL_GATE,
        action="bake",
        phase="",
        actor=actor,
        reason=(
            f"bake of {policy.bake_days:g} days started: the rollback triggers watch production traffic of "
            f"config {run['candidate_hash']} until {when(ends_at)}"
        ),
        record={
            "window": {"start": now, "end": ends_at},
            "bake_days": policy.bake_days,
            "time_scale": float(run["time_scale"]),
            "triggers": [c.to_dict() for c in policy.rollback],
            "min_sample": policy.min_sample,
            "config": {"promoted_hash": run["candidate_hash"], "previous_hash": run["baseline_hash"]},
        },
    )
    ops.audit(
        actor,
        "rollout.guardrail.bake",
        f"run {run['id']}",
        {"bake_days": policy.bake_days, "ends_at": ends_at, "promoted_hash": run["candidate_hash"]},
        db=db,
    )
    return True


def evaluation_interval(bake_days: float, time_scale: float) -> float:
    """Seconds between two evaluations: a minute, or a twentieth of a short (scaled) bake."""
    return max(MIN_INTERVAL_S, min(DEFAULT_INTERVAL_S, bake_seconds(bake_days, time_scale) / EVALUATIONS_PER_BAKE))


def active_evaluator(ops, run_id: int) -> Job | None:
    """The queued, running or paused evaluation job of the run's bake, if any."""
    store = JobStore(ops)
    store.reap(kind=KIND)
    for job in store.list(kind=KIND, states=[s for s in JobState if s.is_active()], limit=50):
        if int(job.params.get("run_id", -1)) == int(run_id):
            return job
    return None


def start_evaluator(
    ops,
    run_id: int | None = None,
    *,
    settings: Settings | None,
    actor: Actor,
    launch: Callable[..., int] = launch_worker,
) -> tuple[Job | None, bool]:
    """Submit the bake's evaluation job unless one is active; start a worker for it when ``settings`` are
    given (else a `python -m engine worker` loop takes it). Returns (job, started now); (None, False) when
    the bake is over. Needs an operator (``rollout.guardrail.evaluate``)."""
    actor = authorize(ops, actor, "rollout.guardrail.evaluate")
    st = guardrail_status(ops, run_id=run_id)
    if st is None:
        raise GuardrailError("no promotion has a bake window yet: promote the last stage of a rollout first")
    if not st.state.is_open():
        return None, False
    current = active_evaluator(ops, st.run_id)
    if current is not None:
        return current, False
    interval = evaluation_interval(st.bake_days, st.time_scale)
    job = JobStore(ops).submit(KIND, {"run_id": st.run_id, "interval_s": interval}, actor=str(actor))
    with ops.transaction() as db:
        db.execute("UPDATE rollout_guardrails SET job_id = ? WHERE run_id = ?", [job.id, st.run_id])
        ops.audit(actor, "rollout.guardrail.evaluator", f"run {st.run_id}", {"job_id": job.id}, db=db)
    if settings is not None:
        launch(settings, job.id)
    return JobStore(ops).get(job.id), True


# --------------------------------------------------------------------------- evaluating


def _evaluation(ops, row: Mapping[str, Any], now: float) -> tuple[Verdict, dict]:
    """Measure and judge the bake window as it stands at ``now``; the verdict and its decision record."""
    policy = StagePolicy.from_dict(json.loads(row["policy"]))
    end = min(now, float(row["ends_at"]))
    promoted = promoted_visits(ops, row["promoted_hash"], float(row["promoted_at"]), end)
    baseline = previous_visits(ops, row)
    seed = guardrail_seed(int(row["seed"]), len(promoted), len(baseline.visits))
    verdict, m = judge(policy, promoted, baseline.visits, seed=seed)
    record = {
        "run_id": row["run_id"],
        "stage": row["stage"],
        "policy": policy.to_dict(),
        "measurements": {k: v.to_dict() for k, v in m.items()},
        "n": len(promoted),
        "final": False,
        "window": {"start": float(row["promoted_at"]), "end": end, "ends_at": float(row["ends_at"])},
        "baseline": {**baseline.to_dict(), "describe": baseline.describe()},
        "test": (
            "engine.rollout.guardrails.judge: the stage's rollback triggers (engine.rollout.verdict.assess) on the "
            "promoted config's production runs; comparative metrics against the previous config's recorded runs "
            "(unpaired bootstrap), error rate Clopper-Pearson, p95 engine time bootstrap; triggers fire only at "
            "n >= min_sample"
        ),
        "thresholds": {
            "rollback": [c.label() + f" ({c.test})" for c in policy.rollback],
            "min_sample": policy.min_sample,
            "confidence": policy.confidence,
        },
        "config": {"promoted_hash": row["promoted_hash"], "previous_hash": row["previous_hash"]},
        "bootstrap_seed": seed,
        "evaluated_at": now,
        "verdict": verdict.to_dict(),
    }
    return verdict, record


def evaluate_guardrail(
    settings: Settings | None,
    ops,
    *,
    run_id: int | None = None,
    now: float | None = None,
    actor: Actor,
) -> GuardrailStatus | None:
    """One evaluation round of the latest bake window (or run ``run_id``'s); its status afterwards.

    Open window: measure the promoted config's production runs so far and judge them; a breached trigger
    reverts the live config (``revert_guardrail``, graph kept); at or after the window's end the last round
    judges the whole window and closes it: passed, or unjudged below the minimum sample. A closed window
    is not evaluated again. None when no promotion has baked. ``now``: virtual time (tests).
    ``actor``: an operator (or the evaluation job's ``WORKER``); a breached trigger reverts as ``WORKER``.
    """
    actor = authorize(ops, actor, "rollout.guardrail.evaluate")
    now = time.time() if now is None else now
    with ops.connect() as db:
        row = _read_row(db, run_id)
    if row is None:
        return None
    if not GuardrailState(row["state"]).is_open():
        return _status_from_row(ops, row, now)
    verdict, record = _evaluation(ops, row, now)
    with ops.transaction() as db:
        db.execute(
            "UPDATE rollout_guardrails SET evaluated_at = ?, verdict = ? WHERE run_id = ? AND state = ?",
            [now, dumps(record), row["run_id"], GuardrailState.BAKING],
        )
    final = now >= float(row["ends_at"])
    policy = StagePolicy.from_dict(json.loads(row["policy"]))
    if verdict.phase is Phase.FAILED:
        revert_guardrail(
            settings,
            ops,
            run_id=int(row["run_id"]),
            actor=WORKER,
            reason="rollback trigger breached on production traffic: " + verdict_words(verdict, policy.min_sample),
            trigger={**record, "evaluated_by": identity(actor)},
            now=now,
            automatic=True,
        )
    elif final:
        passed = verdict.n >= policy.min_sample
        state = GuardrailState.PASSED if passed else GuardrailState.UNJUDGED
        outcome = (
            f"no trigger breached in {verdict.n:,} production runs of the promoted config"
            if passed
            else f"{verdict.n:,} production runs of the promoted config, below the minimum sample of "
            f"{policy.min_sample:,}: nothing judged, nothing reverted"
        )
        action = "pass" if passed else "unjudged"
        _close(ops, row, state, actor=actor, outcome=outcome, action=action, record=record, now=now)
    return guardrail_status(ops, run_id=int(row["run_id"]), now=now)


def _close(
    ops,
    row: Mapping[str, Any],
    state: GuardrailState,
    *,
    actor: Actor,
    outcome: str,
    action: str,
    record: Mapping[str, Any],
    now: float,
    phase: str = "",
) -> bool:
    """Compare-and-set an open window to ``state`` with its decision record and audit row; False if raced."""
    with ops.transaction() as db:
        cur = db.execute(
            "UPDATE rollout_guardrails SET state = ?, ended_at = ?, ended_by = ?, outcome = ? "
            "WHERE run_id = ? AND state = ?",
            [state, now, str(actor), outcome, row["run_id"], GuardrailState.BAKING],
        )
        if cur.rowcount != 1:
            return False
        insert_decision(
            db,
            int(row["run_id"]),
            row["stage"],
            at=now,
            gate=GUARDRAIL_GATE,
            action=action,
            phase=phase or (record.get("verdict") or {}).get("phase", ""),
            actor=actor,
            reason=outcome,
            record=record,
        )
        ops.audit(actor, f"rollout.guardrail.{action}", f"run {row['run_id']}", {"outcome": outcome}, db=db)
    return True


def end_bake(ops, *, run_id: int | None = None, actor: Actor, reason: str, now: float | None = None) -> GuardrailStatus:
    """An approver ends the open bake window early (the config stays live, evaluation stops); audited."""
    actor = authorize(ops, actor, "rollout.guardrail.end")
    if not isinstance(reason, str) or not reason.strip():
        raise GuardrailError("ending a bake early needs a reason (e.g. --reason 'a week of clean traffic')")
    now = time.time() if now is None else now
    with ops.connect() as db:
        row = _read_row(db, run_id)
    if row is None:
        raise GuardrailError("no promotion has a bake window: there is nothing to end")
    if not GuardrailState(row["state"]).is_open():
        raise GuardrailError(f"the bake of rollout {row['run_id']} is already {row['state']}: there is nothing to end")
    record = json.loads(row["verdict"]) if row["verdict"] else {}
    if not _close(
        ops, row, GuardrailState.ENDED, actor=actor, outcome=reason.strip(), action="end_early", record=record,
        now=now, phase="operator",
    ):  # fmt: skip
        raise GuardrailError(
            f"the bake of rollout {row['run_id']} was closed meanwhile: see `rollout guardrail status`"
        )
    st = guardrail_status(ops, run_id=int(row["run_id"]), now=now)
    assert st is not None  # the row was just updated
    return st


# --------------------------------------------------------------------------- reverting


@dataclass(frozen=True)
class RevertResult:
    """What one revert request did (or why it did nothing)."""

    run_id: int
    performed: bool  # False: another request (or evaluator) reverted it already
    entities: int  # assignments put back on the previous config
    live_hash: str  # the live config afterwards
    message: str
    restore: RollbackResult | None = None  # the graph restore, when asked for

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "performed": self.performed,
            "entities": self.entities,
            "live_hash": self.live_hash,
            "message": self.message,
            "restore": self.restore.to_dict() if self.restore else None,
        }


def revert_guardrail(
    settings: Settings | None,
    ops,
    *,
    run_id: int | None = None,
    actor: Actor,
    reason: str,
    restore_graph: bool = False,
    trigger: Mapping[str, Any] | None = None,
    now: float | None = None,
    automatic: bool = False,
) -> RevertResult:
    """Revert the live config to the one the promotion replaced, and the run's entities back onto it.

    One transaction: compare-and-set of the bake state to ``reverted`` (an automatic revert only from an open
    window; an operator's "revert now" also after it ended), the live config set back (audited as a
    live-config change), ``entity_assignments`` of the run's entities back to the old system with the
    previous config, a ``guardrail`` decision record (``trigger``: the evaluation that breached, with its
    figures, intervals and window) and an audit row. Idempotent: a second request finds it reverted and
    does nothing. Refused when another config has been made live since (reverting would undo that one).
    ``restore_graph``: afterwards also roll the run back through engine.rollout.rollback (every exposed
    entity restored from its stage snapshot; idempotent too), which needs ``settings``. ``actor``: an
    approver (``rollout.guardrail.revert``), or ``WORKER`` for the evaluation's automatic revert.
    """
    actor = authorize(ops, actor, "rollout.guardrail.revert")
    if not isinstance(reason, str) or not reason.strip():
        raise GuardrailError("a revert needs a reason (e.g. --reason 'cost up 40% since the promotion')")
    if restore_graph and settings is None:
        raise GuardrailError("restoring the graph needs the data dir settings: run it from the CLI or the console")
    now = time.time() if now is None else now
    with ops.transaction() as db:
        row = _read_row(db, run_id)
        if row is None:
            raise GuardrailError("no promotion has a bake window: there is nothing to revert")
        state = GuardrailState(row["state"])
        rid = int(row["run_id"])
        live = live_config_info(ops) or {}
        live_hash = str(live.get("hash", ParameterConfig().hash()))
        if state is GuardrailState.REVERTED:
            ops.audit(actor, "rollout.guardrail.revert.noop", f"run {rid}", {"why": "already reverted"}, db=db)
            result = RevertResult(rid, False, 0, live_hash, f"rollout {rid}'s config is already reverted")
        elif automatic and state is not GuardrailState.BAKING:
            result = RevertResult(rid, False, 0, live_hash, f"the bake of rollout {rid} is {state}: not reverted")
        elif state not in REVERTIBLE:  # pragma: no cover - every other state is listed
            raise GuardrailError(f"the bake of rollout {rid} is {state}: it cannot be reverted")
        elif live_hash != row["promoted_hash"]:
            raise GuardrailError(
                f"the live config is {live_hash} now, not rollout {rid}'s {row['promoted_hash']}: reverting would "
                "undo a later change; roll that one back instead"
            )
        else:
            previous = ParameterConfig.from_dict(json.loads(row["previous"]), source=f"rollout {rid} baseline")
            outcome = reason.strip()
            db.execute(
                "UPDATE rollout_guardrails SET state = ?, ended_at = ?, ended_by = ?, outcome = ? "
                "WHERE run_id = ? AND state = ?",
                [GuardrailState.REVERTED, now, str(actor), outcome, rid, state],
            )
            set_live_config(
                ops, db, previous, run_id=rid, actor=actor, at=now, how=f"reverted by the guardrail of run {rid}"
            )
            cur = db.execute(
                "UPDATE entity_assignments SET system = 'old', config_hash = ?, updated_at = ? WHERE run_id = ?",
                [previous.hash(), now, rid],
            )
            entities = int(cur.rowcount)
            db.execute(
                "UPDATE rollout_runs SET message = ?, updated_at = ? WHERE id = ?",
                [f"completed; live config reverted to {previous.hash()} by {actor}: {outcome}", now, rid],
            )
            record = dict(trigger or (json.loads(row["verdict"]) if row["verdict"] else {}))
            record.update(
                {
                    "reason": outcome,
                    "automatic": automatic,
                    "was": str(state),
                    "entities_reassigned": entities,
                    "reverted_to": previous.hash(),
                    "reverted_from": row["promoted_hash"],
                    "graph": "restored from the stage snapshots (rollback)" if restore_graph else "kept",
                }
            )
            phase = (trigger or {}).get("verdict", {}).get("phase", "operator") if automatic else "operator"
            insert_decision(
                db, rid, row["stage"], at=now, gate=GUARDRAIL_GATE, action="revert", phase=phase, actor=actor,
                reason=outcome, record=record,
            )  # fmt: skip
            ops.audit(
                actor,
                "rollout.guardrail.revert",
                f"run {rid}",
                {
                    "reason": outcome,
                    "automatic": automatic,
                    "from": row["promoted_hash"],
                    "to": previous.hash(),
                    "entities": entities,
                    "restore_graph": restore_graph,
                },
                db=db,
            )
            # the notification goes in this transaction: it is told exactly when the revert is recorded
            notices.guardrail_reverted(
                db, read_run(db, rid), reason=outcome, record=record, reverted_to=previous.hash(), actor=actor, at=now
            )
            result = RevertResult(
                rid,
                True,
                entities,
                previous.hash(),
                f"reverted the live config of rollout {rid} from {row['promoted_hash']} to {previous.hash()}; "
                f"{entities} entities back on it; graph state {'restored' if restore_graph else 'kept'}",
            )
    if restore_graph and settings is not None and (result.performed or state is GuardrailState.REVERTED):
        restored = rollback(settings, ops, rid, actor, f"guardrail revert, graph restored on request: {reason.strip()}")
        return replace(result, restore=restored, message=f"{result.message}; {restored.message}")
    return result


# --------------------------------------------------------------------------- the job


def run_guardrail_job(ctx) -> dict:
    """Handler of ``rollout.guardrail``: evaluate the run's bake every ``interval_s`` until it closes."""
    run_id = int(ctx.params["run_id"])
    interval_s = max(MIN_INTERVAL_S, float(ctx.params.get("interval_s", DEFAULT_INTERVAL_S)))
    ctx.poll_s = max(MIN_INTERVAL_S, min(ctx.poll_s, interval_s))
    rounds = 0
    while True:
        st = evaluate_guardrail(ctx.settings, ctx.ops, run_id=run_id, actor=GUARDRAIL_ACTOR)
        rounds += 1
        if st is None:
            return {"rounds": rounds, "state": "none"}
        message = f"round {rounds}: {st.describe()}"
        ctx.checkpoint(done=rounds, message=message[:500])
        if not st.state.is_open():
            return {"rounds": rounds, "state": str(st.state), "outcome": st.outcome}
        left = st.ends_at - ctx.clock()
        ctx.wait(max(MIN_INTERVAL_S, min(interval_s, left)), message=message[:500])


__all__ = [
    "KIND",
    "PRODUCTION_STAGE_ID",
    "GuardrailError",
    "GuardrailState",
    "GuardrailStatus",
    "RevertResult",
    "Visit",
    "Baseline",
    "measure_production",
    "judge",
    "begin_bake",
    "start_evaluator",
    "evaluate_guardrail",
    "revert_guardrail",
    "end_bake",
    "guardrail_status",
    "run_guardrail_job",
]
