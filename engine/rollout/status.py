"""What an operator sees of a rollout run: ``rollout_status`` (stages, verdict, criteria, decisions, worker)
and the Markdown report of one stage.

Read-only and usable from any process: everything comes from SQLite, and the
run's effective state combines the stored run state with its job's state and
the worker's liveness (engine.rollout.states.effective_state).
"""

from __future__ import annotations

import json
import math
import time

from engine.jobs.queue import JobStore, worker_liveness
from engine.monitoring.reports import md_cell
from engine.rollout.records import (
    RolloutError,
    RolloutStatus,
    StageStatus,
    UnknownRollout,
    decision_from_row,
    paired_summary,
    read_outcomes,
    read_run,
    read_stages,
    run_info_from_row,
    stage_config_from_dict,
    stage_key,
    verdict_from_dict,
    who_text,
)
from engine.rollout.states import EffectiveState, RunState, StageState, effective_state, rollback_interrupted
from engine.rollout.verdict import elapsed_days


def rollout_status(ops, run_id: int | None = None, *, decisions: int = 50, now: float | None = None) -> RolloutStatus:
    """The state of a run (the latest when ``run_id`` is None); a status with ``run=None`` if none exists."""
    now = time.time() if now is None else now
    with ops.connect() as db:
        try:
            run = read_run(db, run_id)
        except UnknownRollout:
            if run_id is not None:
                raise
            return RolloutStatus(
                None,
                EffectiveState.NONE,
                None,
                (),
                None,
                (),
                None,
                (),
                None,
                False,
                "no rollout yet",
                "no rollout has been started",
                now,
            )
        stage_rows = read_stages(db, run["id"])
        cfg = stage_config_from_dict(json.loads(run["stage_config"]))
        stages = []
        for i, name in enumerate(json.loads(run["stages"])):
            policy = cfg.stage(name)
            row = stage_rows.get(name)
            if row is None:
                stages.append(
                    StageStatus(
                        name,
                        i,
                        StageState.PENDING,
                        stage_key(run["id"], name),
                        0,
                        0,
                        policy.entities,
                        policy.min_duration_days,
                        0.0,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                    )
                )
                continue
            outcomes = read_outcomes(db, run["id"], name)
            last = row["verdict"] and json.loads(row["verdict"])
            # a decided stage's clock stops: at its promotion or rollback, or when the run ended (cancelled)
            end = row["promoted_at"] or row["rolled_back_at"] or run["finished_at"] or now
            stages.append(
                StageStatus(
                    name=name,
                    index=i,
                    state=StageState(row["state"]),
                    stage_id=stage_key(run["id"], name),
                    done=row["done"],
                    total=row["total"],
                    target=policy.entities,
                    min_duration_days=policy.min_duration_days,
                    elapsed_days=elapsed_days(row["started_at"], end, run["time_scale"]),
                    started_at=row["started_at"],
                    completed_at=row["completed_at"],
                    promoted_at=row["promoted_at"],
                    rolled_back_at=row["rolled_back_at"],
                    verdict=verdict_from_dict(last["verdict"]) if last else None,
                    paired=paired_summary(outcomes) if outcomes else None,
                )
            )
        recs = [
            decision_from_row(r)
            for r in db.query(
                "SELECT * FROM rollout_decisions WHERE run_id = ? ORDER BY id DESC LIMIT ?", [run["id"], int(decisions)]
            )
        ]
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
        run=run_info_from_row(run),
        state=effective_state(
            RunState(run["state"]), job.state if job else None, alive, rollback_stalled=rollback_interrupted(run, now)
        ),
        current_stage=run["current_stage"],
        stages=tuple(stages),
        verdict=current.verdict if current else None,
        criteria=current.verdict.rows if current and current.verdict else (),
        paired=current.paired if current else None,
        decisions=tuple(recs),
        job=job,
        worker_alive=alive,
        worker_note=note,
        message=run["message"],
        now=now,
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
        f"- candidate config `{r.candidate_hash}` ({md_cell(r.candidate_source)}); "
        f"baseline (old system) `{r.baseline_hash}`",
        f"- started {ts(s.started_at)}; entities done {ts(s.completed_at)}; promoted {ts(s.promoted_at)}; "
        f"rolled back {ts(s.rolled_back_at)}",
        f"- elapsed {s.elapsed_days:.2f} of {s.min_duration_days:g} minimum days (time scale {r.time_scale:g})",
        f"- metric events: stage id `{s.stage_id}`",
        f"- started by {md_cell(who_text(r.started_by) or r.actor)}",  # an identity: shown as text
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
        lines += [
            f"Verdict: **{v.phase}** after {v.n} entities — {md_cell(v.reason)}",
            "",
            "| kind | metric | test | threshold | value | interval | phase |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in v.rows:
            lines.append(
                f"| {row.kind} | {row.metric} | {row.test} | {row.op} {row.threshold:g} | {fmt(row.value)} | "
                f"[{fmt(row.low)}, {fmt(row.high)}] | {row.phase} |"
            )
    lines += [
        "",
        "## Decision records",
        "",
        "| id | time | gate | action | phase | actor | forced | four-eyes | reason |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in sorted((d for d in st.decisions if d.stage == stage), key=lambda d: d.id):
        lines.append(  # reasons and actors are typed by people: shown as text, never as markup
            f"| {d.id} | {ts(d.at)} | {d.gate} | {d.action} | {d.phase} | {md_cell(d.approved_by or d.actor)} | "
            f"{'yes' if d.forced else ''} | {md_cell(d.four_eyes_outcome)} | {md_cell(d.reason)} |"
        )
    lines += [
        "",
        "Latency: the criteria measure the candidate's own engine time per entity (decision time, "
        "evidence latency excluded: it is virtual in the simulated world).",
        "",
    ]
    return "\n".join(lines)
