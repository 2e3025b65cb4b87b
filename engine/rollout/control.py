"""Operator actions on a rollout: start a run, pause, resume, cancel, promote.

Each works from any process through SQLite and is audited. ``start_rollout``
validates everything before writing a thing, records the run and submits its
``rollout`` job (engine.rollout.runner runs it in a worker). Pause, resume and
cancel act on the run's job; promotion is a compare-and-set on the stage's
state (``promote_stage``), shared by the operator's ``promote`` and the
worker's automatic promotion after a passed stage has soaked; promoting the
last stage of the stage table makes the candidate the live config (not in a
dry run) and, when that stage sets ``bake_days``, opens its bake window and
submits its evaluation (engine.rollout.guardrails). Rollback lives in
engine.rollout.rollback.

Who may: every action takes the verified ``Actor`` and checks it first
(``engine.store.access.authorize``): start, pause, resume and cancel need an
operator, promotion an approver (``rollout.force_promote`` for a forced one).
Four-eyes (``four_eyes_rule``): promoting a run into a stage of its table that
sets ``four_eyes``, promoting such a stage when that makes the config live, and
any forced promotion need an approver other than the person who started the
run; the worker never promotes such a stage by itself, it waits for that
approver. A rollback never needs a second person.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.core.access import WORKER, Actor, PermissionDenied, four_eyes_denial, four_eyes_outcome
from engine.core.configs import ResolvedConfig, live_config, live_config_info, rollout_candidate, set_live_config
from engine.core.errors import ConfigError
from engine.core.inputs import MAX_INT64 as MAX_SEED
from engine.core.inputs import checked_number
from engine.core.params import ParameterConfig
from engine.core.settings import Settings, load_settings
from engine.discovery.limits import RunLimits
from engine.discovery.pool import check_concurrency
from engine.discovery.runs import DEFAULT_WORLD_SEED, EvidenceSpec, make_source
from engine.jobs.executor import ExecutorSpec, check_scheduler, check_workers
from engine.jobs.queue import Control, Job, JobError, JobState, JobStore, launch_worker, resume_job
from engine.rollout import notices
from engine.rollout.estimate import CostNotConfirmed, check_budget, estimate_run_cost
from engine.rollout.guardrails import begin_bake
from engine.rollout.guardrails import start_evaluator as start_guardrail_evaluator
from engine.rollout.records import (
    ALL,
    JOB_KIND,
    RolloutError,
    RolloutStatus,
    dumps,
    identity,
    insert_decision,
    read_run,
    read_stages,
    run_evidence,
    run_executor,
    run_info_from_row,
    stage_config_from_dict,
    verdict_from_dict,
)
from engine.rollout.rollback import rollback
from engine.rollout.stages import load_stage_config
from engine.rollout.states import ACTIVE_RUN_STATES, OPEN_STAGE_STATES, RunState, StageState, rollback_interrupted
from engine.rollout.status import rollout_status
from engine.rollout.verdict import Phase, elapsed_days, promotion_gate
from engine.store.access import authorize
from engine.store.graph import GraphStore

#: the largest population limit a rollout takes (the stage table's own bound on stage sizes)
MAX_ROLLOUT_ENTITIES = 10_000_000

#: the stored run states that keep a new rollout from starting
BUSY_RUN_STATES: tuple[RunState, ...] = tuple(s for s in RunState if s.blocks_new_rollout())
#: the stored stage states an operator (or the worker, after soaking) may promote
PROMOTABLE_STAGE_STATES: tuple[StageState, ...] = tuple(s for s in StageState if s.can_promote())
#: what the run says while a passed stage waits for a second person to promote it
FOUR_EYES_WAIT = "waiting for a second approver (four-eyes)"
#: a promotion's record when no four-eyes rule applies to it
FOUR_EYES_NOT_REQUIRED = "not required"


def skipped_stages(names: list[str], stage: str) -> list[str]:
    """The stages of the table a run that starts at ``stage`` goes without (``all``: none).

    Starting later than the first stage exposes the candidate to a stage's entities without the earlier,
    smaller stages having judged it; the console asks for an acknowledgement, the CLI prints them and
    the run's ``start`` decision record keeps them."""
    if stage == ALL or stage not in names:
        return []
    return names[: names.index(stage)]


def _run_candidate(ops, run_id: int) -> ResolvedConfig:
    """The candidate of an earlier run (``from_run``: continue it at its next stage)."""
    with ops.connect() as db:
        run = read_run(db, run_id)
    return ResolvedConfig(
        ParameterConfig.from_dict(json.loads(run["candidate"]), source=f"rollout {run['id']} candidate"),
        run["candidate_source"],
    )


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
    actor: Actor,
    launch: bool = True,
    graph=None,
    use_live_config: bool = False,
    from_run: int | None = None,
    evidence: EvidenceSpec | None = None,
    concurrency: int | None = None,
    limits: RunLimits | None = None,
    budget_usd: float | None = None,
    confirm_cost: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
) -> int:
    """Validate, record a new rollout run, submit its ``rollout`` job and (``launch``) start a worker.

    ``stage``: one stage name (run only that stage) or ``"all"`` (every stage
    in order). ``entities``: limit the population to a seeded stratified
    sample of N entities. ``config_file``: the candidate ParameterConfig
    (default: the handed-over candidate, else the live config). ``stages_file``:
    another stage table (default ``data/stages.json``). ``time_scale``: scaled
    seconds per real second for minimum durations (86400: a day per second).
    ``use_live_config``: roll out the live config even when a candidate was
    handed over (only useful as a dry run). ``from_run``: the candidate of that
    earlier run (the console's "Continue to <next stage>").
    Returns the run id. Every bad input is a one-line DiscoveryError and
    nothing is written; only one rollout may be active at a time.

    A live (not dry-run) rollout of a candidate identical to the live config is
    refused (ConfigError): it would compare the live config with itself and its
    promotion would change nothing. A dry run of it is allowed (it measures the
    new system's algorithm with the live parameters, writing nothing).
    Stages before ``stage`` are skipped: the run's first decision record
    (gate ``start``) names them and who started it.

    ``evidence``: the source both systems meet (default: the simulated world of
    ``world_seed``); a replay file is read and checked now, an HTTP evaluator is
    not contacted. ``concurrency``: entities in flight in every stage (default:
    each stage's ``concurrency`` setting); ``limits``: the evaluator's hops per
    second and requests in flight. The cost estimate of the run
    (engine.rollout.estimate) is stored with it; against a source that costs
    money, an estimate above ``budget_usd`` is refused (CostNotConfirmed, one
    line with the figure) unless ``confirm_cost``.

    ``workers`` / ``scheduler`` (engine.jobs.executor): where each batch's paired runs happen: ``workers`` > 1
    starts a local Dask cluster of that many processes in the stage's worker, ``scheduler`` (tcp://host:8786)
    uses a running cluster with ``workers`` units in flight; default in the worker's own process. Stored with
    the run, so a resumed or continued run uses the same. The evaluator limits hold in one process only, so
    they are refused with a cluster.
    ``actor``: who starts it (an operator); stored with the run, so four-eyes can tell them from the
    approver who promotes it into a stage that needs a second person.
    """
    actor = authorize(ops, actor, "rollout.start")
    executor = _executor_of(workers, scheduler)
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
    if entities is not None:
        checked_number(entities, "entities", 1, MAX_ROLLOUT_ENTITIES, integer=True)
    if from_run is not None and config_file is not None:
        raise RolloutError("give either a config file or a run to continue, not both")
    if from_run is not None:
        resolved = _run_candidate(ops, from_run)
    elif use_live_config and config_file is None:
        resolved = ResolvedConfig(live_config(ops), "live config (new system, same parameters)")
    else:
        resolved = rollout_candidate(ops, config_file)
    candidate, candidate_source = resolved.config, resolved.label
    baseline = live_config(ops)
    if not dry_run and candidate.hash() == baseline.hash():
        live_label = f"live config {baseline.hash()}" if live_config_info(ops) else "live config (the defaults)"
        raise ConfigError(
            f"the candidate ({candidate_source}) is identical to the {live_label}: rolling it out live changes "
            "nothing; hand over a different candidate, choose a config file, or make it a dry run"
        )
    skipped = skipped_stages(names, stage)
    seed = cfg.seed if seed is None else seed
    checked_number(seed, "seed", 0, MAX_SEED, integer=True)
    if world_seed is None:
        world_seed = DEFAULT_WORLD_SEED
    checked_number(world_seed, "world seed", 0, MAX_SEED, integer=True)
    if from_run is not None:  # "Continue to <next stage>": the same evidence, in flight and limits by default
        with ops.connect() as db:
            earlier = read_run(db, from_run)
        evidence = evidence or run_evidence(earlier)
        concurrency = concurrency if concurrency is not None else earlier.get("concurrency")
        if limits is None and earlier.get("limits"):
            limits = RunLimits.from_dict(json.loads(earlier["limits"]))
        if workers is None and scheduler is None:
            executor = run_executor(earlier)
    if evidence is None:
        evidence = EvidenceSpec(world_seed=world_seed)
    if concurrency is not None:
        check_concurrency(concurrency)
    if executor.kind != "in-process" and limits is not None and limits.limits_source:
        raise ConfigError(
            "the evaluator limits (hops per second, requests in flight) hold in one process only: drop "
            "--max-hops-per-s/--max-in-flight or run without --workers/--scheduler"
        )
    budget_usd = check_budget(budget_usd)
    if evidence.kind != "world":
        # a missing or unsound replay file, or a URL that is not http(s), is refused now, not by the worker
        # (the evaluator itself is not contacted)
        checked = make_source(evidence)
        close = getattr(checked, "close", None)
        if callable(close):
            close()
    own_graph = graph is None
    if own_graph:
        graph = GraphStore.open(settings)
    try:
        population = graph.count_entities()
        if population == 0:
            raise RolloutError("the graph holds no entities: seed it first (python -m engine seed --entities 3400)")
    finally:
        if own_graph:
            graph.close()
    estimate = estimate_run_cost(
        ops,
        stages=[cfg.stage(n) for n in run_stages],
        population=population,
        entity_limit=entities,
        candidate=candidate,
        baseline=baseline,
        evidence=evidence,
    )
    if estimate.needs_confirmation(budget_usd) and not confirm_cost:
        raise CostNotConfirmed(
            f"{estimate.describe()}: above the ${budget_usd:,.2f} budget; confirm the cost (--yes on the command "
            "line) or raise the budget (--budget-usd)"
        )
    now = time.time()
    with ops.transaction() as db:
        busy = list(
            db.query(
                f"SELECT id, state FROM rollout_runs WHERE state IN ({','.join('?' * len(BUSY_RUN_STATES))}) "
                "ORDER BY id DESC LIMIT 1",
                list(BUSY_RUN_STATES),
            )
        )
        if busy:
            raise RolloutError(
                f"rollout {busy[0]['id']} is still {busy[0]['state'].replace('_', ' ')}: promote, roll back or "
                "cancel it first"
            )
        cur = db.execute(
            """INSERT INTO rollout_runs (state, target, stages, current_stage, stage_config, candidate,
               candidate_hash, candidate_source, baseline, baseline_hash, dry_run, seed, world_seed, time_scale,
               entity_limit, actor, created_at, updated_at, message, evidence, concurrency, limits, cost_estimate,
               executor, actor_identity)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                RunState.RUNNING,
                stage,
                dumps(run_stages),
                run_stages[0],
                dumps(cfg.to_dict()),
                dumps(candidate.to_dict()),
                candidate.hash(),
                candidate_source,
                dumps(baseline.to_dict()),
                baseline.hash(),
                int(bool(dry_run)),
                seed,
                world_seed,
                cfg.time_scale,
                entities,
                str(actor),
                now,
                now,
                "queued for a worker",
                dumps(evidence.to_dict()),
                concurrency,
                dumps(limits.to_dict()) if limits is not None else None,
                dumps(estimate.to_dict()),
                dumps(executor.to_dict()) if executor.kind != "in-process" else None,
                dumps(identity(actor)),
            ],
        )
        run_id = int(cur.lastrowid)
        ops.audit(
            actor,
            "rollout.start",
            f"run {run_id}",
            {
                "stage": stage,
                "entities": entities,
                "dry_run": bool(dry_run),
                "candidate_hash": candidate.hash(),
                "baseline_hash": baseline.hash(),
                "time_scale": cfg.time_scale,
                "seed": seed,
                "config_file": str(config_file) if config_file else None,
                "skipped_stages": skipped,
                "from_run": from_run,
                "evidence": evidence.describe(),
                "concurrency": concurrency,
                "executor": executor.describe(),
                "limits": limits.to_dict() if limits is not None else None,
                "estimated_cost_usd": round(estimate.total_usd, 4),
                "budget_usd": budget_usd,
                "cost_confirmed": bool(confirm_cost and estimate.needs_confirmation(budget_usd)),
            },
            db=db,
        )
        insert_decision(
            db,
            run_id,
            run_stages[0],
            at=now,
            gate="start",
            action="start",
            phase="",
            actor=actor,
            reason=start_reason(run_stages, skipped, actor, from_run=from_run, dry_run=bool(dry_run)),
            record={
                "skipped_stages": skipped,
                "stages": run_stages,
                "entities": entities,
                "dry_run": bool(dry_run),
                "from_run": from_run,
                "config": {"candidate_hash": candidate.hash(), "baseline_hash": baseline.hash()},
                "candidate_source": candidate_source,
                "evidence": evidence.describe(),
                "concurrency": concurrency,
                "executor": executor.describe(),
                "cost_estimate": estimate.to_dict(),
                "started_by": identity(actor),
                "four_eyes_stages": [n for n in run_stages if cfg.stage(n).four_eyes],
            },
        )
        notices.started(
            db,
            run_id,
            stages=run_stages,
            actor=actor,
            facts={
                "entities": entities if entities is not None else "the whole population",
                "dry run": bool(dry_run),
                "candidate config": candidate.hash(),
                "baseline config": baseline.hash(),
                "evidence": evidence.describe(),
                "estimated cost (USD)": round(estimate.total_usd, 2),
            },
            at=now,
        )
    job = JobStore(ops).submit(JOB_KIND, {"run_id": run_id}, actor=str(actor))
    with ops.transaction() as db:
        db.execute("UPDATE rollout_runs SET job_id = ? WHERE id = ?", [job.id, run_id])
    if launch:
        launch_worker(settings, job.id)
    return run_id


def _executor_of(workers: object, scheduler: object) -> ExecutorSpec:
    """The executor a start asks for, checked (a one-line ConfigError naming the bad value; nothing stored)."""
    return ExecutorSpec(
        workers=1 if workers is None else check_workers(workers, "workers"),
        scheduler=check_scheduler(scheduler, "scheduler") if scheduler not in (None, "") else None,
    )


def start_reason(
    run_stages: list[str], skipped: list[str], actor: Actor | str, *, from_run: int | None = None, dry_run: bool = False
) -> str:
    """The ``start`` decision record's reason: which stages run, which are skipped and by whom."""
    text = f"started by {actor}: {' -> '.join(run_stages)}" + (" (dry run)" if dry_run else "")
    if skipped:
        why = f"passed in rollout {from_run}" if from_run is not None else "skipped at the start"
        text += f"; {', '.join(skipped)} {why}"
    return text


# --------------------------------------------------------------------------- operator controls


def _job_of(ops, run: Mapping[str, Any]) -> Job | None:
    """The run's job (None before it was submitted)."""
    return JobStore(ops).get(run["job_id"]) if run["job_id"] is not None else None


def pause(ops, run_id: int | None, actor: Actor) -> RolloutStatus:
    """Ask the worker to pause between batches (it keeps heartbeating); audited. Needs an operator."""
    actor = authorize(ops, actor, "rollout.pause")
    with ops.connect() as db:
        run = read_run(db, run_id)
    if not RunState(run["state"]).is_active():
        raise RolloutError(f"rollout {run['id']} is {run['state']}: there is nothing to pause")
    job = _job_of(ops, run)
    if job is None or job.state.is_terminal() or job.state is JobState.DEAD:
        raise RolloutError(f"rollout {run['id']} has no live worker to pause: resume it with `rollout resume`")
    JobStore(ops).request(job.id, Control.PAUSE, actor=str(actor))
    ops.audit(actor, "rollout.pause", f"run {run['id']}", {"job_id": job.id})
    return rollout_status(ops, run["id"])


def _env_settings_for(ops) -> Settings | None:
    """The console's and the CLI's settings come from the environment: use them if they point at ``ops``."""
    env = load_settings()
    return env if Path(env.ops_db_path).resolve() == Path(ops.path).resolve() else None


def resume(ops, run_id: int | None, actor: Actor, *, settings: Settings | None = None) -> RolloutStatus:
    """Un-pause a live worker, or requeue a dead or failed run and start a worker; audited.

    A new worker is launched with ``settings``, or with the environment's
    settings when they point at this OpsDB (the console and the CLI); else the
    job is only requeued for a `python -m engine worker` loop.

    The resumed worker continues from the last checkpoint: no entity twice, none skipped.
    A rollback that an outage interrupted is finished here (the rollback itself, audited as one): an
    approver authorized it already, so the engine finishes it (as the worker) on an operator's resume.
    """
    actor = authorize(ops, actor, "rollout.resume")
    with ops.connect() as db:
        run = read_run(db, run_id)
    if rollback_interrupted(run):
        settings = settings or _env_settings_for(ops)
        if settings is None:
            raise RolloutError(
                f"rollout {run['id']}'s rollback was interrupted: finish it with `python -m engine rollout rollback`"
            )
        rollback(settings, ops, run["id"], WORKER, f"finishing a rollback an outage interrupted (resumed by {actor})")
        return rollout_status(ops, run["id"])
    if not RunState(run["state"]).is_active():
        raise RolloutError(f"rollout {run['id']} is {run['state']}: there is nothing to resume")
    job = _job_of(ops, run)
    if job is None:
        raise RolloutError(f"rollout {run['id']} has no job: start a new rollout")
    if settings is None:
        settings = _env_settings_for(ops)
    store = JobStore(ops)
    store.reap()
    job = store.get(job.id)
    if job.state.has_worker():
        store.request(job.id, Control.RUN, actor=str(actor))
        how = "resume requested from the live worker"
    elif job.state.can_requeue() or job.state is JobState.QUEUED:
        if settings is None:
            if job.state.can_requeue():
                store.requeue(job.id, actor=str(actor))
            how = "queued; start a worker (python -m engine worker) to continue it"
        else:
            _, how = resume_job(store, settings, job.id, actor=str(actor))
    else:
        raise RolloutError(f"rollout {run['id']}'s job {job.id} is {job.state}; nothing to resume")
    ops.audit(actor, "rollout.resume", f"run {run['id']}", {"job_id": job.id, "how": how})
    return rollout_status(ops, run["id"])


def cancel(ops, run_id: int | None, actor: Actor) -> RolloutStatus:
    """Stop the rollout where it is (no rollback: exposed entities keep the candidate until rolled back); audited.
    Needs an operator."""
    actor = authorize(ops, actor, "rollout.cancel")
    now = time.time()
    with ops.transaction() as db:
        run = read_run(db, run_id)
        cur = db.execute(
            f"UPDATE rollout_runs SET state = ?, finished_at = ?, updated_at = ?, message = ? "
            f"WHERE id = ? AND state IN ({','.join('?' * len(ACTIVE_RUN_STATES))})",
            [RunState.CANCELLED, now, now, f"cancelled by {actor}", run["id"], *ACTIVE_RUN_STATES],
        )
        if cur.rowcount != 1:
            raise RolloutError(f"rollout {run['id']} is {run['state']}: there is nothing to cancel")
        db.execute(
            f"UPDATE rollout_stages SET state = ? WHERE run_id = ? "
            f"AND state IN ({','.join('?' * len(OPEN_STAGE_STATES))})",
            [StageState.CANCELLED, run["id"], *OPEN_STAGE_STATES],
        )
        ops.audit(actor, "rollout.cancel", f"run {run['id']}", {}, db=db)
    job = _job_of(ops, run)
    if job is not None and not job.state.is_terminal():
        try:
            JobStore(ops).request(job.id, Control.CANCEL, actor=str(actor))
        except JobError:
            pass
    return rollout_status(ops, run["id"])


def four_eyes_rule(run: Mapping[str, Any], stage: str, *, force: bool = False) -> str | None:
    """Which four-eyes rule a promotion of ``stage`` of the run row ``run`` falls under (None: no second person
    needed); the rule itself is ``RunInfo.four_eyes_rule``, on the stage table stored with the run."""
    return run_info_from_row(run).four_eyes_rule(stage, force=force)


def four_eyes_block(run: Mapping[str, Any], stage: str, approver: Actor, *, force: bool = False) -> str | None:
    """Why ``approver`` may not promote ``stage`` of ``run`` under four-eyes (one line naming the rule), or None."""
    rule = four_eyes_rule(run, stage, force=force)
    if rule is None:
        return None
    why = four_eyes_denial(run["actor"], approver)
    return None if why is None else f"{why}; rule: {rule}"


def _started_by(run: Mapping[str, Any]) -> dict:
    """The identity of who started ``run`` (runs stored before identities: its key only)."""
    raw = run.get("actor_identity")
    return dict(json.loads(raw)) if raw else {"key": run["actor"]}


def promote_stage(
    ops,
    run: Mapping[str, Any],
    stage: str,
    *,
    actor: Actor,
    operator: bool,
    force: bool,
    gate_reason: str,
    days: float,
    now: float,
) -> bool:
    """CAS the stage soaking|inconclusive -> promoted and move the run on; one decision record. False if raced.

    The caller has authorized ``actor`` (``promote``, or the worker); the decision record keeps who
    started the run, who approved the promotion and when, and the four-eyes outcome. An automatic
    promotion of a stage that needs a second person is refused: the worker waits for an approver.
    """
    rule = four_eyes_rule(run, stage, force=force)
    if rule is not None and not operator:
        raise RolloutError(f"stage {stage} of rollout {run['id']}: {rule}; the worker does not promote it")
    cfg = stage_config_from_dict(json.loads(run["stage_config"]))
    policy = cfg.stage(stage)
    run_stages = json.loads(run["stages"])
    nxt = run_stages[run_stages.index(stage) + 1] if run_stages.index(stage) + 1 < len(run_stages) else None
    with ops.transaction() as db:
        row = read_stages(db, run["id"]).get(stage)
        if row is None:
            return False
        cur = db.execute(
            f"UPDATE rollout_stages SET state = ?, promoted_at = ? WHERE run_id = ? AND stage = ? "
            f"AND state IN ({','.join('?' * len(PROMOTABLE_STAGE_STATES))})",
            [StageState.PROMOTED, now, run["id"], stage, *PROMOTABLE_STAGE_STATES],
        )
        if cur.rowcount != 1:
            return False
        last_stage_of_table = stage == cfg.names()[-1]
        new_state = RunState.RUNNING if nxt else RunState.COMPLETED
        message = (
            f"{stage} promoted; next: {nxt}"
            if nxt
            else f"{stage} promoted; rollout complete" + (" (dry run: live config unchanged)" if run["dry_run"] else "")
        )
        cur = db.execute(
            f"UPDATE rollout_runs SET state = ?, current_stage = ?, updated_at = ?, message = ?, finished_at = ? "
            f"WHERE id = ? AND state IN ({','.join('?' * len(ACTIVE_RUN_STATES))})",
            [new_state, nxt or stage, now, message, None if nxt else now, run["id"], *ACTIVE_RUN_STATES],
        )
        if cur.rowcount != 1:
            raise RolloutError(f"rollout {run['id']} is no longer active (rolled back or cancelled): not promoted")
        record = dict(json.loads(row["verdict"]) if row["verdict"] else {})
        record.update(
            {
                "gate": gate_reason,
                "elapsed_days": days,
                "min_duration_days": policy.min_duration_days,
                "time_scale": run["time_scale"],
                "force": force,
                "operator": operator,
                "next_stage": nxt,
                "makes_live": bool(not nxt and last_stage_of_table and not run["dry_run"]),
                "started_by": _started_by(run),
                "approved_by": identity(actor),
                "approved_at": now,
                "four_eyes": rule,
                "four_eyes_outcome": (
                    four_eyes_outcome(run["actor"], actor) if rule is not None else FOUR_EYES_NOT_REQUIRED
                ),
            }
        )
        phase = record.get("verdict", {}).get("phase", "")
        forced = force and days < policy.min_duration_days
        insert_decision(
            db,
            run["id"],
            stage,
            at=now,
            gate="promote",
            action="promote" if nxt else "complete",
            phase=phase,
            actor=actor,
            reason=gate_reason,
            record=record,
            forced=forced,
        )
        bakes = False
        if record["makes_live"]:
            set_live_config(
                ops,
                db,
                ParameterConfig.from_dict(json.loads(run["candidate"])),
                run_id=run["id"],
                actor=actor,
                at=now,
            )
            bakes = begin_bake(db, ops, run, policy, actor=actor, now=now)
            notices.production_promoted(db, run, stage, actor=actor, record=record, at=now)
        ops.audit(
            actor,
            "rollout.promote",
            f"run {run['id']}",
            {
                "stage": stage,
                "forced": forced,
                "next": nxt,
                "reason": gate_reason,
                "started_by": run["actor"],
                "four_eyes": record["four_eyes_outcome"],
            },
            db=db,
        )
    if bakes:
        # the bake evaluates itself: its job, with a worker when this process knows the data dir's settings
        # (the console, the CLI, a worker they launched); otherwise a `python -m engine worker` loop takes it
        start_guardrail_evaluator(ops, run["id"], settings=_env_settings_for(ops), actor=actor)
    return True


def promote(ops, run_id: int | None, actor: Actor, force: bool = False, *, now: float | None = None) -> RolloutStatus:
    """An approver's promotion of the current stage (PASSED or INCONCLUSIVE, after its minimum duration or ``force``).

    A forced promotion before the minimum duration is marked in the decision
    record and the audit log. A FAILED or still-running stage is never promoted.
    ``force`` needs ``rollout.force_promote``. Four-eyes (``four_eyes_rule``): a promotion into a
    four-eyes stage, one that makes the config live from such a stage, and any forced one are refused
    (PermissionDenied naming the rule) when ``actor`` is the person who started the run.
    """
    actor = authorize(ops, actor, "rollout.force_promote" if force else "rollout.promote")
    now = time.time() if now is None else now
    with ops.connect() as db:
        run = read_run(db, run_id)
        row = read_stages(db, run["id"]).get(run["current_stage"])
    if not RunState(run["state"]).is_active():
        raise RolloutError(f"rollout {run['id']} is {run['state']}: nothing to promote")
    if row is None:
        raise RolloutError(f"rollout {run['id']} has not started stage {run['current_stage']} yet: nothing to promote")
    if row["state"] == StageState.RUNNING:
        raise RolloutError(
            f"stage {row['stage']} is still running ({row['done']}/{row['total']} entities): "
            "wait for its verdict, or roll back"
        )
    if not StageState(row["state"]).can_promote():
        raise RolloutError(f"stage {row['stage']} is {row['state']}: nothing to promote")
    cfg = stage_config_from_dict(json.loads(run["stage_config"]))
    policy = cfg.stage(row["stage"])
    verdict = verdict_from_dict(json.loads(row["verdict"])["verdict"]) if row["verdict"] else None
    phase = verdict.phase if verdict else Phase.PENDING
    days = elapsed_days(row["started_at"], now, run["time_scale"])
    gate = promotion_gate(phase, days, policy.min_duration_days, force=force, operator=True)
    if not gate.allowed:
        if phase.is_terminal() and phase is not Phase.FAILED and days < policy.min_duration_days:
            raise RolloutError(
                f"stage {row['stage']}: {days:.2f} of {policy.min_duration_days:g} minimum days elapsed; "
                "force it (Force in the console, --force on the command line) to promote earlier"
            )
        raise RolloutError(f"stage {row['stage']}: {gate.reason}")
    blocked = four_eyes_block(run, row["stage"], actor, force=force)
    if blocked:
        raise PermissionDenied(blocked)
    if not promote_stage(
        ops, run, row["stage"], actor=actor, operator=True, force=force, gate_reason=gate.reason, days=days, now=now
    ):
        raise RolloutError(f"stage {row['stage']} was promoted or rolled back meanwhile: see `rollout status`")
    return rollout_status(ops, run["id"])
