"""Rollout: take a candidate system pilot -> limited -> production against the old one, watch it, decide.

Thin: every figure comes from engine.rollout.runner (status, decision records, stage
report) and engine.monitoring.events (the stage's metric events); every button calls one
engine.rollout.runner function. The rollout itself runs in a worker process that
engine.rollout.runner.start_rollout launches; this page only polls SQLite.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal, cast

import streamlit as st

from console import rollout_start as rs
from console import rollout_view as rv
from console.cluster_view import cluster_panel
from console.configs_view import diff_frame
from console.feedback import Feedback
from console.identity import actor, operator_field
from console.services import call, get_services
from console.text import md_code, md_escape
from console.vocab import ENGINE_TIME, human
from engine import rollout
from engine.core.configs import config_diff, describe_diff
from engine.core.errors import DiscoveryError
from engine.core.params import ParameterConfig
from engine.discovery.limits import DEFAULT_BUDGET_USD, MAX_BUDGET_USD, MAX_CONCURRENCY, MAX_IN_FLIGHT
from engine.jobs.queue import recent_jobs
from engine.monitoring.events import query_events
from engine.rollout import guardrails
from engine.rollout.estimate import estimate_run_cost
from engine.rollout.records import who_text
from engine.rollout.stages import load_stage_config

REFRESH_S = 2.0
IDLE_REFRESH_S = 10.0
LATEST = 0  # run picker: follow the newest run

#: the colour names st.badge accepts
BadgeColour = Literal["red", "orange", "yellow", "blue", "green", "violet", "gray", "grey", "primary"]

CANDIDATE, LIVE, FILE = "candidate", "live", "file"

services = get_services()
operator_field()  # one name for every page of this tab (console.identity)
settings, ops = services.settings, services.ops
ss = st.session_state

st.title("Rollout")
st.caption(
    "A candidate system goes out pilot → limited → production, paired against the old system on the same "
    "entities. Every stage ends in a verdict: pass (promote after the minimum duration), fail (rolled back "
    "automatically) or inconclusive (waits for you). Only promoting the last stage changes the live config. The "
    "work runs in a worker process; this page polls it."
)


stage_config = call(load_stage_config)


DEFAULTS_HASH = ParameterConfig().hash()


# --------------------------------------------------------------------------- actions (callbacks: one engine call each)


feedback = Feedback("rollout_flash")


def control(label: str, fn, run_id: int, done: str, **kwargs) -> None:
    """Pause or Resume: ``fn(ops, run_id, <operator>, **kwargs)``, the operator read when the button fires."""
    feedback.act(label, fn, ops, run_id, actor(), done=f"{label}: {done}", **kwargs)


def started(run_id: int) -> str:
    status = rollout.rollout_status(ops, run_id)
    run = status.run
    skipped = f"; skipped: {', '.join(run.skipped_stages)}" if run and run.skipped_stages else ""
    source = f" on {run.evidence}" if run and run.evidence_spec.get("kind", rs.WORLD) != rs.WORLD else ""
    return f"Start: rollout {run_id} started ({' → '.join(run.stages) if run else ''}{skipped}){source}"


def chosen_config(choice: str, path: str) -> tuple[ParameterConfig | None, str]:
    """The config the start form's choice names, or None with why (a file not given or not readable)."""
    if choice == CANDIDATE:
        cand = rollout.candidate_config(ops)
        return cand, "" if cand else "no candidate was handed over"
    if choice == LIVE:
        return rollout.live_config(ops), ""
    if not path:
        return None, "choose the candidate's ParameterConfig JSON file (a path on this machine)"
    try:
        return ParameterConfig.load(path), ""
    except DiscoveryError as exc:
        return None, str(exc)


def start() -> None:
    choice = ss["rollout_candidate"]
    path = (ss.get("rollout_config_file") or "").strip()
    if choice == FILE and not path:
        feedback.flash("Start: choose the candidate's ParameterConfig JSON file (a path on this machine)", "error")
        return
    entities = int(ss["rollout_entities"]) or None
    dry_run = bool(ss["rollout_dry_run"])
    guard = rv.start_guard(stage_config, ss["rollout_stage"], entities, dry_run)
    if guard.needs_ack and not ss.get("rollout_ack"):
        feedback.flash(f"Start: {guard.refusal()}", "error")
        return
    try:
        source = rs.source_choice(
            ss.get("rollout_evidence") or rs.WORLD,
            url=ss.get("rollout_evaluator_url") or "",
            timeout_s=float(ss.get("rollout_evaluator_timeout") or rs.DEFAULT_TIMEOUT_S),
            replay_path=ss.get("rollout_replay_path") or "",
            in_flight=ss.get("rollout_in_flight"),
            max_hops_per_s=ss.get("rollout_max_hops_per_s"),
            max_in_flight=ss.get("rollout_max_in_flight"),
        )
        executor = rs.executor_choice(ss.get("rollout_workers"))
    except DiscoveryError as exc:  # a bad URL, no replay file, a limit out of range: nothing is started
        feedback.flash(f"Start: {exc}", "error")
        return
    confirmed = bool(ss.get("rollout_cost_ack"))
    ss["rollout_cost_ack"] = False  # a confirmation is for one start, of the figure it named
    run_id = feedback.act(
        "Start",
        rollout.start_rollout,
        settings,
        ops,
        stage=ss["rollout_stage"],
        entities=entities,
        config_file=path if choice == FILE else None,
        use_live_config=choice == LIVE,
        dry_run=dry_run,
        time_scale=float(ss["rollout_time_scale"]),
        actor=actor(),
        graph=services.graph,
        evidence=source.evidence,
        concurrency=source.concurrency,
        limits=source.limits,
        budget_usd=float(ss.get("rollout_budget", DEFAULT_BUDGET_USD)) if source.paid else None,
        confirm_cost=confirmed,
        workers=executor.workers,
        scheduler=executor.scheduler,
        done=started,
    )
    ss["rollout_ack"] = False
    if run_id is not None:
        ss["rollout_run"] = LATEST
        ss.pop("rollout_confirm", None)
        ss.pop("rollout_promote_confirm", None)


def continue_run(run_id: int, stage: str, needs_ack: bool, refusal: str) -> None:
    """Start the next stage of the table for the same candidate (same population, time scale, dry run)."""
    if needs_ack and not ss.get("rollout_continue_ack"):
        feedback.flash(f"Continue: {refusal}", "error")
        return
    ss["rollout_continue_ack"] = False
    run = by_id_now(run_id)
    new_id = feedback.act(
        "Continue",
        rollout.start_rollout,
        settings,
        ops,
        stage=stage,
        entities=run.entity_limit,
        from_run=run_id,
        dry_run=run.dry_run,
        time_scale=run.time_scale,
        actor=actor(),
        graph=services.graph,
        done=lambda new: f"Continue: rollout {new} started at {stage} with the candidate of rollout {run_id}",
    )
    if new_id is not None:
        ss["rollout_run"] = LATEST


def by_id_now(run_id: int):
    status = rollout.rollout_status(ops, run_id, decisions=0)
    if status.run is None:  # a run picked on this page exists: only a deleted OpsDB loses it
        raise rollout.UnknownRollout(run_id)
    return status.run


def promote_now(run_id: int, force: bool) -> None:
    """Promote with a message in words: what starts next, or what is live now."""
    status = rollout.rollout_status(ops, run_id, decisions=0)
    plan = rv.promotion_plan(status, force)
    run = status.run
    if plan is None or run is None:
        feedback.flash("Promote: the run has no stage to promote", "error")
        return
    candidate = rv.config_label(run.candidate_hash, run.candidate_source)
    old = rv.config_label(run.baseline_hash, defaults_hash=DEFAULTS_HASH)
    feedback.act(
        "Promote",
        rollout.promote,
        ops,
        run_id,
        actor(),
        force=plan.forced,
        done=lambda _: (
            "success",
            "Promote: " + rv.promotion_message(plan, candidate, old, dry_run=run.dry_run, next_of_table=run.next_stage),
        ),
    )


def ask_promote(run_id: int) -> None:
    """Promote: straight on into a next stage; confirm first when it is forced or makes the candidate live.
    Force resets at every click, so it never stays ticked for the next one."""
    force = bool(ss.get("rollout_force"))
    ss["rollout_force"] = False
    status = rollout.rollout_status(ops, run_id, decisions=0)
    plan = rv.promotion_plan(status, force)
    if plan is not None and plan.needs_confirmation:
        ss["rollout_promote_confirm"] = {"run": run_id, "force": plan.forced, "stage": plan.stage}
        return
    promote_now(run_id, force)


def confirm_promote(run_id: int) -> None:
    asked = ss.pop("rollout_promote_confirm", None) or {}
    ss["rollout_force"] = False
    promote_now(run_id, bool(asked.get("force")))


def cancel_promote() -> None:
    ss.pop("rollout_promote_confirm", None)
    ss["rollout_force"] = False
    feedback.flash("Promote: not promoted", "info")


def ask_rollback(run_id: int) -> None:
    ss["rollout_confirm"] = run_id


def keep_rollout() -> None:
    ss.pop("rollout_confirm", None)


def confirm_rollback(run_id: int) -> None:
    reason = (ss.get("rollout_rollback_reason") or "").strip()
    ss.pop("rollout_confirm", None)
    feedback.act(
        "Rollback",
        rollout.rollback,
        settings,
        ops,
        run_id,
        actor(),
        reason=reason or "rolled back by an operator",
        done=lambda r: ("success" if r.performed else "warning", f"Rollback: {r.message}"),
    )


def evaluate_guardrail_now(run_id: int) -> None:
    feedback.act(
        "Evaluate",
        guardrails.evaluate_guardrail,
        settings,
        ops,
        run_id=run_id,
        actor=actor(),
        done=lambda g: ("info", f"Evaluate: {g.describe()}" if g is not None else "Evaluate: no bake window"),
    )


def end_bake_now(run_id: int) -> None:
    reason = (ss.get("rollout_guardrail_reason") or "").strip()
    feedback.act(
        "End bake",
        guardrails.end_bake,
        ops,
        run_id=run_id,
        actor=actor(),
        reason=reason or "ended early by an operator from the console",
        done=lambda g: ("success", "End bake: the bake window is closed; the promoted config stays live"),
    )


def ask_revert(run_id: int) -> None:
    ss["rollout_revert_confirm"] = run_id


def keep_live() -> None:
    ss.pop("rollout_revert_confirm", None)


def confirm_revert(run_id: int) -> None:
    reason = (ss.get("rollout_guardrail_reason") or "").strip()
    restore = bool(ss.get("rollout_revert_restore"))
    ss.pop("rollout_revert_confirm", None)
    ss["rollout_revert_restore"] = False
    feedback.act(
        "Revert",
        guardrails.revert_guardrail,
        settings,
        ops,
        run_id=run_id,
        actor=actor(),
        reason=reason or "reverted by an operator from the console",
        restore_graph=restore,
        done=rv.revert_message,
    )


# --------------------------------------------------------------------------- which run

runs = call(rollout.list_runs, ops, 50)
by_id = {r.id: r for r in runs}
if ss.get("rollout_run") not in (LATEST, *by_id):
    ss["rollout_run"] = LATEST


def run_label(run_id: int) -> str:
    if run_id == LATEST:
        return f"Latest (rollout {runs[0].id})" if runs else "Latest"
    r = by_id[run_id]
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created_at))
    return f"Rollout {r.id} · {r.target}{' · dry run' if r.dry_run else ''} · {human(r.state)} · {when} UTC"


st.selectbox("Rollout run", [LATEST, *by_id], format_func=run_label, key="rollout_run")


# --------------------------------------------------------------------------- the live part


def render_timeline(status) -> None:
    run = status.run
    states = rv.run_stage_states(
        stage_config.names(), run.stages if run else None, {s.name: s.state for s in status.stages}
    )
    scale = run.time_scale if run else stage_config.time_scale
    details = {
        s.name: rv.stage_detail(s.done, s.total, s.elapsed_days, s.min_duration_days, s.state, scale)
        for s in status.stages
    }
    steps = rv.timeline_steps(stage_config, states, current=status.current_stage, details=details)
    for column, step in zip(st.columns(len(steps)), steps):
        with column.container(border=True):
            st.markdown(f"**{step.index + 1:d}. {md_escape(step.name)}**" + ("  ← current" if step.current else ""))
            # a timeline colour comes from rv.STATE_STYLE, whose colours are all badge colours
            st.badge(md_escape(step.badge), icon=step.icon, color=cast(BadgeColour, step.colour))
            st.caption(f"{md_escape(step.entities)} entities · minimum {md_escape(step.min_duration)}")
            if step.detail:
                st.caption(md_escape(step.detail))


def render_promote_confirmation(status) -> None:
    asked = ss.get("rollout_promote_confirm") or {}
    run = status.run
    if asked.get("run") != run.id:
        return
    plan = rv.promotion_plan(status, bool(asked.get("force")))
    if plan is None or plan.stage != asked.get("stage"):
        ss.pop("rollout_promote_confirm", None)
        return
    with st.container(border=True, key="rollout_promote_box"):
        stage = status.stage(plan.stage)
        if plan.forced and stage is not None:
            st.warning(
                md_escape(
                    f"Force-promote {plan.stage} before its minimum duration: "
                    f"{stage.elapsed_days:.2f} of {stage.min_duration_days:g} stage days have passed. "
                    "The decision record marks it as forced."
                ),
                icon=":material/bolt:",
            )
        if plan.makes_live:
            candidate = rv.config_label(run.candidate_hash, run.candidate_source)
            old = rv.config_label(run.baseline_hash, defaults_hash=DEFAULTS_HASH)
            st.warning(
                md_escape(
                    f"Promoting {plan.stage} makes {candidate} the live config (now {old}): every entity "
                    "no rollout holds runs with it from then on. These parameters change:"
                ),
                icon=":material/warning:",
            )
            changes = config_diff(
                ParameterConfig.from_dict(run.baseline_params), ParameterConfig.from_dict(run.candidate_params)
            )
            if changes:
                st.dataframe(diff_frame(changes), hide_index=True, width="stretch", key="rollout_promote_diff")
                st.caption(md_escape(f"In short: {describe_diff(changes)}."))
            else:
                st.caption("No parameter differs: only the system changes.")
        else:
            st.info(
                md_escape(
                    f"Promote {plan.stage}: "
                    + (f"the {plan.next_stage} stage starts next." if plan.next_stage else "the run ends here.")
                )
            )
        k1, k2 = st.columns(2)
        k1.button(
            "Confirm forced promotion" if plan.forced else "Confirm promotion",
            key="rollout_confirm_promote",
            type="primary",
            icon=":material/upgrade:",
            on_click=confirm_promote,
            args=(run.id,),
            width="stretch",
        )
        k2.button("Do not promote", key="rollout_cancel_promote", on_click=cancel_promote, width="stretch")


def render_controls(status, stage) -> None:
    run_id = status.run.id
    actions = rv.permitted_actions(rv.available_actions(status.state, stage.state if stage else None), status, actor())
    # two rows of two: each button keeps its label down to a 900 px wide window
    c1, c2 = st.columns(2)
    c1.button(
        "Pause",
        key="rollout_pause",
        icon=":material/pause:",
        disabled=not actions["pause"].enabled,
        help=md_escape(actions["pause"].why),
        on_click=control,
        args=("Pause", rollout.pause, run_id, "requested; the worker pauses before its next entity"),
        width="stretch",
    )
    c2.button(
        "Resume",
        key="rollout_resume",
        icon=":material/play_arrow:",
        disabled=not actions["resume"].enabled,
        help=md_escape(actions["resume"].why),
        on_click=control,
        args=("Resume", rollout.resume, run_id, "requested; the worker continues from its last checkpoint"),
        kwargs={"settings": settings},
        width="stretch",
    )
    c3, c4 = st.columns(2)
    c3.button(
        "Promote…",
        key="rollout_promote",
        icon=":material/upgrade:",
        disabled=not actions["promote"].enabled or bool(ss.get("rollout_promote_confirm")),
        help=md_escape(actions["promote"].why),
        on_click=ask_promote,
        args=(run_id,),
        width="stretch",
    )
    c4.button(
        "Roll back…",
        key="rollout_rollback",
        icon=":material/undo:",
        type="secondary",
        disabled=not actions["rollback"].enabled or ss.get("rollout_confirm") == run_id,
        help=md_escape(actions["rollback"].why),
        on_click=ask_rollback,
        args=(run_id,),
        width="stretch",
    )
    c3.checkbox(
        "Force: promote before the minimum duration",
        key="rollout_force",
        disabled=not actions["force"].enabled,
        help="Promote before the stage's minimum duration has passed; asks to confirm, is recorded as forced "
        "and resets after every Promote; a second approver (not who started the run) must do it"
        if actions["force"].enabled
        else md_escape(actions["force"].why),
    )
    if actions["promote"].why == rv.FOUR_EYES_HELP:
        st.caption(
            md_escape(f"Four-eyes: you started this run, so an approver other than {actor().key} must promote it.")
        )
    if actions["promote"].enabled:
        render_promote_confirmation(status)
    elif ss.get("rollout_promote_confirm"):  # the actor lost the right to promote (or four-eyes now applies)
        ss.pop("rollout_promote_confirm", None)
    if ss.get("rollout_confirm") == run_id and actions["rollback"].enabled:
        with st.container(border=True):
            exposed = sum(s.done for s in status.stages)
            st.warning(
                f"Roll back rollout {run_id:d}? The worker is stopped, the hypotheses of the "
                f"{'entities of its stages' if not status.run.dry_run else 'entities (dry run: nothing live)'} "
                f"({exposed:,} processed) are restored from the snapshots taken before each stage, the evidence "
                "trail is kept but marked rolled back, and the entities go back to the old system.",
                icon=":material/warning:",
            )
            st.text_input(
                "Reason (kept in the decision record and the audit log)",
                key="rollout_rollback_reason",
                value="rolled back by an operator from the console",
            )
            k1, k2 = st.columns(2)
            k1.button(
                "Confirm rollback",
                key="rollout_confirm_rollback",
                type="primary",
                icon=":material/undo:",
                on_click=confirm_rollback,
                args=(run_id,),
                width="stretch",
            )
            k2.button("Keep the rollout", key="rollout_keep", on_click=keep_rollout, width="stretch")


def render_guardrail(run_id: int) -> None:
    """The bake window after the promotion that made this run's candidate live: criteria, figures, outcome."""
    status = call(guardrails.guardrail_status, ops, run_id=run_id)
    if status is None:
        return
    view = rv.guardrail_view(status)
    st.subheader("Guardrail after promotion")
    badge = f":{view.colour}-badge[{view.icon} {md_escape(view.label)}]"  # md-safe: colour and icon are constants
    st.markdown(f"{badge} Bake window {md_escape(view.window)}")  # md-safe: the badge is built above from constants
    st.progress(view.progress)
    {"error": st.error, "warning": st.warning, "success": st.success}.get(view.outcome_kind, st.info)(
        md_escape(view.outcome)
    )
    st.dataframe(view.criteria, hide_index=True, width="stretch", key="rollout_guardrail_criteria")
    st.caption(md_escape(f"{view.compared_with} {view.evaluator}"))
    if not (view.can_end or view.can_revert):
        return
    st.text_input(
        "Reason (kept in the decision record and the audit log)",
        key="rollout_guardrail_reason",
        value="",
        placeholder="why you end the bake or revert",
    )
    g1, g2, g3 = st.columns(3)
    may_evaluate, may_end, may_revert = (rv.role_help(actor(), c) for c in ("evaluate", "end_bake", "revert"))
    g1.button(
        "Evaluate now",
        key="rollout_guardrail_evaluate",
        icon=":material/refresh:",
        disabled=not view.can_end or bool(may_evaluate),
        help=may_evaluate,  # md-safe: "needs operator" (engine.core.access.needs) or nothing
        on_click=evaluate_guardrail_now,
        args=(run_id,),
        width="stretch",
    )
    g2.button(
        "End bake early",
        key="rollout_guardrail_end",
        icon=":material/stop_circle:",
        disabled=not view.can_end or bool(may_end),
        help=md_escape(
            may_end or "Stop watching: the promoted config stays live and no trigger is evaluated any more."
        ),
        on_click=end_bake_now,
        args=(run_id,),
        width="stretch",
    )
    g3.button(
        "Revert now…",
        key="rollout_guardrail_revert",
        icon=":material/undo:",
        disabled=not view.can_revert or ss.get("rollout_revert_confirm") == run_id or bool(may_revert),
        help=md_escape(may_revert or "Put the previous config live again and the run's entities back on it."),
        on_click=ask_revert,
        args=(run_id,),
        width="stretch",
    )
    if ss.get("rollout_revert_confirm") == run_id and view.can_revert and not may_revert:
        with st.container(border=True):
            st.warning(
                f"Revert the live config from {md_code(status.promoted_hash)} to the previous "
                f"{md_code(status.previous_hash)}? The run's entities go back on it. Graph state written since the "
                "promotion is kept unless you tick the restore below.",
                icon=":material/warning:",
            )
            st.checkbox(
                "Also restore the exposed entities' hypotheses from the stage snapshots (rollback)",
                key="rollout_revert_restore",
            )
            k1, k2 = st.columns(2)
            k1.button(
                "Confirm revert",
                key="rollout_guardrail_confirm",
                type="primary",
                icon=":material/undo:",
                on_click=confirm_revert,
                args=(run_id,),
                width="stretch",
            )
            k2.button("Keep it live", key="rollout_guardrail_keep", on_click=keep_live, width="stretch")


def render_continue(status, view) -> None:
    """A run that ended before the last stage: start the next one for the same candidate."""
    run = status.run
    nxt = view.continue_to
    passed = [s.name for s in status.stages if s.state == rollout.StageState.PROMOTED] + list(run.skipped_stages)
    guard = rv.start_guard(stage_config, nxt, run.entity_limit, run.dry_run, passed=passed)
    if guard.needs_ack:
        st.checkbox(md_escape(guard.ack_label()), key="rollout_continue_ack")
    st.button(
        f"Continue to {md_escape(nxt)}",
        key="rollout_continue",
        type="primary",
        icon=":material/skip_next:",
        on_click=continue_run,
        args=(run.id, nxt, guard.needs_ack, guard.refusal()),
        disabled=bool(rv.role_help(actor(), "start")),
        help=md_escape(
            rv.role_help(actor(), "start")
            or "Start a new rollout at the next stage with this run's candidate, entity limit and time scale."
        ),
    )


def render_criteria(stage, policy) -> None:
    verdict = stage.verdict if stage else None
    phase, reason, icon, colour = rv.verdict_summary(verdict)
    st.markdown(  # md-safe: icon and colour come from rv.PHASE_STYLE; the verdict's own texts are escaped
        f"**Verdict{f' after {verdict.n:,} entities' if verdict else ''}:** "
        f":{colour}-badge[{icon} {md_escape(phase)}] {md_escape(rv.reason_text(reason))}"
    )
    frame = rv.criteria_frame(verdict) if verdict else rv.policy_criteria_frame(policy)
    st.dataframe(
        rv.criteria_display(frame, rv.actionable_pp(stage.paired if stage else None)),
        hide_index=True,
        width="stretch",
        key="rollout_criteria",
        column_config={"n": st.column_config.NumberColumn("n", help="entities (hops for the error rate)")},
    )
    st.caption(  # md-safe: numbers of the stage table and a constant of console.vocab
        f"Intervals at {policy.confidence:.0%}: paired bootstrap over entities ({policy.bootstrap_resamples:,} "
        f"resamples) for the cost and actionable changes and the p95 {ENGINE_TIME}, exact Clopper-Pearson for the "
        f"error rate. Triggers fire only from {policy.min_sample:,} entities. The actionable criterion is a "
        "relative change in %; its change in percentage points (pp) over the paired entities is beside it."
    )


def render_charts(stage) -> None:
    events = call(query_events, ops, stage_id=stage.stage_id)
    frame = rv.old_vs_new_frame(events)
    if frame.empty:
        st.info(f"No discovery runs recorded for stage id {md_code(stage.stage_id)} yet.")
        return
    for column, tile in zip(st.columns(3), rv.figure_tiles(rv.latest_figures(frame))):
        # md-safe: rv.figure_tiles makes labels from a constant table and values from numbers
        column.metric(tile.label, tile.value, tile.delta, border=True, delta_color=tile.delta_color, help=tile.help)
    for column, metric in zip(st.columns(3), rv.SERIES_METRICS):
        column.altair_chart(rv.old_vs_new_chart(frame, metric), width="stretch")
    st.caption(
        f"Running figures over the {len(events)} metric events of stage id {md_code(stage.stage_id)}, "
        "in the order the runs finished (old = baseline in shadow, new = candidate)."
    )


def render_header(status, view) -> None:
    run = status.run
    st.markdown(  # md-safe: icon and colour come from rv.STATE_STYLE / rv.run_view; the label is escaped
        f"### Rollout {run.id:d} :{view.colour}-badge[{view.icon} {md_escape(view.label)}]"
        + (" :gray-badge[dry run]" if run.dry_run else "")
    )
    candidate = rv.config_label(run.candidate_hash, run.candidate_source)
    old = rv.config_label(run.baseline_hash, defaults_hash=DEFAULTS_HASH)
    st.caption(
        md_escape(
            f"Candidate {candidate} vs old {old} · worker: {rv.worker_text(status)} · time scale "
            f"{run.time_scale:g} ({rv.time_scale_help(run.time_scale)}) · started by "
            f"{who_text(run.started_by) or run.actor}"
        )
    )
    st.caption(md_escape(rs.source_text(run)))
    st.caption(md_escape(rs.executor_text(run)))
    if run.cost_estimate:
        st.caption(md_escape(rs.estimate_text(run.cost_estimate)))
    changes = config_diff(
        ParameterConfig.from_dict(run.baseline_params), ParameterConfig.from_dict(run.candidate_params)
    )
    with st.expander(  # md-safe: a count and literal words
        f"What the candidate changes against the old config ({rv.count_text(len(changes), 'parameter')})",
        icon=":material/difference:",
    ):
        if changes:
            st.dataframe(diff_frame(changes), hide_index=True, width="stretch", key="rollout_run_diff")
        else:
            st.caption("No parameter differs from the old system's config: only the system (algorithm) changes.")


def draw_cluster(job_id: int | None) -> None:
    """The Dask cluster the running stage's batches use (nothing when they run in the stage's worker process)."""
    panel = cluster_panel(settings.data_dir, job_id)
    if panel is None:
        return
    st.markdown("**Cluster**")
    if panel.figures:
        for col, (label, value) in zip(st.columns(len(panel.figures)), panel.figures):
            col.metric(label, value)  # md-safe: fixed labels and formatted numbers (console.cluster_view)
    st.caption(md_escape(panel.caption))
    if panel.dashboard_url:
        st.link_button("Open Dask's dashboard", panel.dashboard_url)


def live() -> None:
    feedback.show(keep=True)
    run_id = ss.get("rollout_run") or None
    status = call(rollout.rollout_status, ops, run_id)
    if status.run is None:
        st.info(
            "No rollout has been started yet. Start one below: a pilot of "
            f"{md_escape(rv.entities_label(stage_config.stages[0].entities))} entities first."
        )
        render_timeline(status)
        return
    run = status.run
    view = rv.run_view(status)
    render_header(status, view)
    render_timeline(status)

    current = status.stage(status.current_stage) if status.current_stage else None
    if current is not None:
        message = status.job.message if status.job and status.state == rollout.EffectiveState.RUNNING else ""
        st.progress(
            current.progress if current.total else 0.0,
            text=md_escape(rv.progress_text(current.name, current.done, current.total, view.progress_label, message)),
        )
    done, total = status.progress
    st.caption(f"Whole run: {done:,} of {total:,} entities of the stages reached so far.")
    for note in view.notes:
        st.warning(md_escape(note), icon=":material/info:")
    if view.hint:
        {"error": st.error, "warning": st.warning, "success": st.success}.get(view.hint_kind, st.info)(
            md_escape(view.hint)
        )
    if current is not None:
        countdown = rv.promote_countdown(
            current.state,
            current.elapsed_days,
            current.min_duration_days,
            run.time_scale,
            status.now,
            four_eyes=run.four_eyes_rule(current.name) is not None,
        )
        if countdown:
            st.caption(md_escape(countdown))

    draw_cluster(run.job_id)  # only while the stage's worker has a cluster up (it announces it)
    render_controls(status, current)
    if view.continue_to and not status.state.is_active():
        render_continue(status, view)
    render_guardrail(run.id)

    reached = [s.name for s in status.stages if s.state.is_reached()]
    if not reached:
        st.info("The worker has not started the first stage yet.")
        return
    choice: str | None = "current"
    if reached != [status.current_stage]:
        choice = st.segmented_control(
            "Stage shown",
            ["current", *reached],
            default="current",
            key=f"rollout_stage_shown_{run.id}",
            format_func=lambda o: f"current ({md_escape(status.current_stage)})" if o == "current" else md_escape(o),
        )
    shown_name = status.current_stage if choice is None or choice == "current" else choice
    shown = (status.stage(shown_name) if shown_name is not None else None) or current
    if shown is None:  # a run's current stage is always one of its stages, and a reached stage was picked
        raise RuntimeError(f"rollout {run.id}: no stage {shown_name!r} to show")
    policy = stage_config.stage(shown.name) if shown.name in stage_config.names() else None

    st.subheader(f"Criteria · {md_escape(shown.name)}")
    if policy is not None:
        render_criteria(shown, policy)
    st.subheader(f"Old vs new · {md_escape(shown.name)}")
    render_charts(shown)

    st.subheader("Decision records")
    records = call(rollout.decision_records, ops, run.id)
    st.dataframe(
        rv.records_display(records),
        hide_index=True,
        width="stretch",
        key="rollout_decisions",
    )

    # the downloads are made when clicked (on Streamlit's download thread), not at every poll; the defaults bind
    # the run and stage shown now
    def stage_report_md(run_id: int = run.id, stage: str = shown.name) -> str:
        return rollout.stage_report(ops, run_id, stage)

    def decision_records_json(run_id: int = run.id) -> str:
        return json.dumps([r.to_dict() for r in rollout.decision_records(ops, run_id)], indent=2, default=str)

    now = time.time()
    d1, d2 = st.columns(2)
    d1.download_button(
        f"Stage report · {md_escape(shown.name)} (Markdown)",
        data=stage_report_md,
        file_name=rv.report_file_name(f"rollout-{run.id}-{shown.name}", now),
        mime="text/markdown",
        icon=":material/download:",
        key="rollout_report_download",
        width="stretch",
        on_click="ignore",
    )
    d2.download_button(
        "Decision records with their inputs (JSON)",
        data=decision_records_json,
        file_name=rv.report_file_name(f"rollout-{run.id}-decisions", now, "json"),
        mime="application/json",
        icon=":material/download:",
        key="rollout_records_download",
        width="stretch",
        on_click="ignore",
    )


# Poll every REFRESH_S while the shown run can still change by itself; slowly once it is over (a rollout started
# from the CLI still appears under "Latest" within IDLE_REFRESH_S).
picked_run = ss.get("rollout_run")
shown_run = by_id.get(picked_run) if picked_run else (runs[0] if runs else None)
settled = shown_run is not None and shown_run.state.is_terminal()
st.fragment(live, run_every=IDLE_REFRESH_S if settled else REFRESH_S)()


# --------------------------------------------------------------------------- start


def render_evidence_form(chosen: ParameterConfig | None, live_cfg: ParameterConfig) -> None:
    """Evidence source, entities in flight and the evaluator's limits; on an HTTP evaluator the run's estimated
    cost per stage and, above the budget, the tick that confirms it (engine.rollout.estimate)."""
    st.radio(
        "Evidence",
        rs.EVIDENCE_CHOICES,
        format_func=rs.EVIDENCE_LABELS.get,  # md-safe: constant labels of console.rollout_start
        key="rollout_evidence",
        horizontal=True,
        help="What both systems meet: the seeded simulated world (free), a recorded evidence file (free), or your "
        "HTTP evaluator (every hop is paid: the page shows the estimate first).",
    )
    kind = ss.get("rollout_evidence") or rs.WORLD
    if kind == rs.HTTP:
        u1, u2 = st.columns([3, 1])
        u1.text_input("Evaluator URL", key="rollout_evaluator_url", placeholder=rs.URL_PLACEHOLDER)
        u2.number_input(
            "Timeout (s)",
            min_value=0.1,
            max_value=rs.TIMEOUT_MAX_S,
            value=rs.DEFAULT_TIMEOUT_S,
            format="%g",
            key="rollout_evaluator_timeout",
            help="A wall-clock deadline for each whole hop (connect, send, read the answer).",
        )
    elif kind == rs.REPLAY:
        st.text_input("Replay file", key="rollout_replay_path", placeholder="evidence.jsonl (a path on this machine)")
    p1, p2, p3 = st.columns(3)
    p1.number_input(
        "Entities in flight",
        min_value=0,
        max_value=MAX_CONCURRENCY,
        value=None,
        step=1,
        key="rollout_in_flight",
        placeholder="each stage's setting",
        help=md_escape(
            "How many entities run at once (each entity's hops stay in order); the answers are the same at any "
            f"value. Blank or 0: each stage's setting in the stage table ({rs.stage_concurrency_text(stage_config)})."
        ),
    )
    p2.number_input(
        "Max hops per second",
        min_value=0.01,
        value=None,
        format="%g",
        key="rollout_max_hops_per_s",
        placeholder="no limit",
        help="At most this many hops start per second against the evidence source. Blank: no limit.",
    )
    p3.number_input(
        "Max requests at once",
        min_value=1,
        max_value=MAX_IN_FLIGHT,
        value=None,
        step=1,
        key="rollout_max_in_flight",
        placeholder="no limit",
        help="At most this many evaluator requests open at once. Blank: no limit beyond the entities in flight.",
    )
    st.number_input(
        "Workers",
        min_value=1,
        max_value=rs.WORKERS_MAX,
        value=1,
        step=1,
        key="rollout_workers",
        help=md_escape(rs.WORKERS_HELP),
    )
    if kind != rs.HTTP:
        return
    st.number_input(
        "Confirm above (USD)",
        min_value=0.0,
        max_value=MAX_BUDGET_USD,
        value=DEFAULT_BUDGET_USD,
        format="%g",
        key="rollout_budget",
        help="An estimated cost above this needs your confirmation before the run starts.",
    )
    if chosen is None:
        st.caption("Estimated cost: choose the candidate first.")
        return
    estimate = call(
        estimate_run_cost,
        ops,
        stages=rs.run_stage_policies(stage_config, ss.get("rollout_stage") or stage_config.names()[0]),
        population=call(services.graph.count_entities),
        entity_limit=int(ss.get("rollout_entities") or 0) or None,
        candidate=chosen,
        baseline=live_cfg,
        evidence=rs.estimate_spec(ss.get("rollout_evaluator_url") or ""),
    )
    budget = float(ss.get("rollout_budget", DEFAULT_BUDGET_USD))
    st.dataframe(rs.estimate_frame(estimate), hide_index=True, width="stretch", key="rollout_estimate")
    st.caption(md_escape(rs.estimate_summary(estimate, budget)))
    if estimate.needs_confirmation(budget):
        label = rs.confirm_label(estimate)
        if ss.get("rollout_cost_figure") != label:  # the figure changed: a tick of the old one does not count
            ss["rollout_cost_figure"] = label
            ss["rollout_cost_ack"] = False
        st.checkbox(md_escape(label), key="rollout_cost_ack")


with st.expander("Start a rollout", icon=":material/rocket_launch:", expanded=not runs or settled):
    candidate = call(rollout.candidate_info, ops)
    live_cfg = call(rollout.live_config, ops)
    offered = rv.candidate_offered(candidate, live_cfg.hash())
    choices = [CANDIDATE, LIVE, FILE] if offered else [LIVE, FILE]
    if ss.get("rollout_candidate") not in choices:
        ss.pop("rollout_candidate", None)
    live_label = rv.config_label(live_cfg.hash(), defaults_hash=DEFAULTS_HASH)
    labels = {  # radio options are read as Markdown: the candidate's hash and source are data
        CANDIDATE: (
            f"Handed-over candidate {md_code(candidate['hash'])} ({md_escape(candidate.get('source', ''))})"
            if offered and candidate
            else ""
        ),
        LIVE: f"Live config: {md_escape(live_label)}, dry run only (a live run would compare it with itself)",
        FILE: "ParameterConfig file",
    }
    configs_dir = settings.data_dir / "configs"
    known = sorted(str(p) for p in configs_dir.glob("*.json")) if configs_dir.is_dir() else []
    f1, f2, f3 = st.columns(3)
    f1.selectbox(
        "Stage",
        rv.stage_choices(stage_config),
        key="rollout_stage",
        help="Where the run starts: the first stage (the safe default), a later one (asks you to acknowledge "
        "the stages it skips), or 'all' to go through every stage in order.",
    )
    f2.number_input(
        "Entities (0 = every entity in the graph)",
        min_value=0,
        value=0,
        step=10,
        key="rollout_entities",
        help="Limit the population to a seeded stratified sample of N entities; stage sizes are capped at N.",
    )
    f3.number_input(
        "Time scale",
        min_value=0.001,
        value=float(stage_config.time_scale),
        format="%g",
        key="rollout_time_scale",
        help="Stage seconds per wall second for minimum durations: 1 = real time, "
        "86400 = one stage day every wall second.",
    )
    st.caption(md_escape(f"Time scale: {rv.time_scale_help(float(ss.get('rollout_time_scale') or 1.0))}."))
    st.radio(  # md-safe: the labels above are escaped where they hold data
        "Candidate (new system)", choices, format_func=labels.get, key="rollout_candidate", horizontal=True
    )
    if ss.get("rollout_candidate") == FILE:
        st.text_input(
            "Config file",
            key="rollout_config_file",
            placeholder=known[0] if known else str(configs_dir / "candidate.json"),
        )
        if known:
            st.caption("Configs in the data dir: " + ", ".join(md_code(Path(k).name) for k in known))
    st.checkbox("Dry run (both systems in shadow: nothing live is written)", key="rollout_dry_run")
    chosen, why_not = chosen_config(
        ss.get("rollout_candidate") or choices[0], (ss.get("rollout_config_file") or "").strip()
    )
    if chosen is None:
        st.caption(md_escape(f"Candidate vs live: {why_not}"))
    else:
        changes = config_diff(live_cfg, chosen)
        if changes:
            st.caption(
                md_escape(
                    f"Candidate vs the live config {live_label}: {rv.count_text(len(changes), 'parameter')} change"
                )
            )
            st.dataframe(diff_frame(changes), hide_index=True, width="stretch", key="rollout_start_diff")
        else:
            st.caption(
                md_escape(
                    f"This candidate is identical to the live config {live_label}: a live rollout of it is "
                    "refused (it would change nothing); a dry run measures the new system with these parameters."
                )
            )
    render_evidence_form(chosen, live_cfg)
    guard = rv.start_guard(
        stage_config,
        ss.get("rollout_stage") or stage_config.names()[0],
        int(ss.get("rollout_entities") or 0) or None,
        bool(ss.get("rollout_dry_run")),
    )
    if guard.needs_ack:
        st.checkbox(md_escape(guard.ack_label()), key="rollout_ack")
    may_start = rv.role_help(actor(), "start")
    st.button(
        "Start",
        type="primary",
        icon=":material/rocket_launch:",
        on_click=start,
        key="rollout_start",
        disabled=bool(may_start),
        help=may_start,  # md-safe: "needs operator" (engine.core.access.needs) or nothing
    )
    st.caption("Stage table: " + md_code(stage_config.source or "data/stages.json"))
    st.dataframe(rv.stage_table_display(stage_config), hide_index=True, width="stretch", key="rollout_stage_table")

with st.expander("Rollout jobs", icon=":material/work_history:"):
    jobs = call(recent_jobs, ops, rollout.JOB_KIND, 20)
    st.dataframe(
        rv.jobs_display(jobs),
        hide_index=True,
        width="stretch",
        key="rollout_jobs",
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)},
    )
