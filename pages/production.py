"""Production: keep discovery running over the catalogue within a day's budget; watch its spend, visits and plan.

Thin: the figures come from engine.production.control (status, plan), the frames and the chart from
console.production_view; every button calls one engine.production.control function. The scheduler runs in a
worker process; this page polls SQLite.
"""

from __future__ import annotations

from typing import Literal, cast

import streamlit as st

from console import production_view as pv
from console import rollout_start as rs
from console.feedback import Feedback
from console.identity import actor, needs, operator_field
from console.services import call, get_services
from console.text import md_escape
from engine.core.errors import DiscoveryError
from engine.discovery.limits import MAX_CONCURRENCY
from engine.production import control
from engine.production.budget import DEFAULT_DAILY_BUDGET_USD, MAX_DAILY_BUDGET_USD
from engine.production.scheduler import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE
from engine.rollout import guardrails

REFRESH_S = 2.0
#: the plan reads every entity's hypotheses: kept this long before it is read again
PLAN_TTL_S = 30.0
PLAN_SIZE = 20

BadgeColour = Literal["red", "orange", "yellow", "blue", "green", "violet", "gray", "grey", "primary"]

services = get_services()
operator_field()  # one name for every page of this tab (console.identity)
settings, ops, graph = services.settings, services.ops, services.graph
ss = st.session_state

st.title("Production")
st.caption(
    "The scheduler keeps discovery running over the catalogue: entities a rollout exposed run its candidate, "
    "all others the live config. Within the day's budget (never exceeded: each batch reserves the most it can "
    "cost before it runs) it visits new entities first, then overdue ones, then those due, each by expected "
    "information gain per expected dollar. It runs in a worker process; this page polls it."
)

feedback = Feedback("production_flash")


# --------------------------------------------------------------------------- actions (callbacks: one engine call each)


def start() -> None:
    try:
        policy = pv.policy_from_hours(ss["production_min_age_h"], ss["production_max_age_h"])
        source = rs.source_choice(
            ss.get("production_evidence") or rs.WORLD,
            url=ss.get("production_evaluator_url") or "",
            replay_path=ss.get("production_replay_path") or "",
            in_flight=ss.get("production_in_flight"),
        )
    except DiscoveryError as exc:
        feedback.flash(f"Start: {exc}", "error")
        return
    feedback.act(
        "Start",
        control.start_production,
        settings,
        ops,
        budget_usd=float(ss["production_budget"]),
        policy=policy,
        evidence=source.evidence,
        concurrency=source.concurrency or 1,
        limits=source.limits,
        batch_size=int(ss["production_batch_size"]),
        actor=actor(),
        graph=graph,
        done=lambda run_id: (
            f"Start: production scheduler {run_id} started (${float(ss['production_budget']):,.2f} "
            f"a day; {policy.describe()})"
        ),
    )


def pause() -> None:
    feedback.act("Pause", control.pause_production, ops, actor(), done="Pause: the scheduler stops after its batch")


def resume() -> None:
    feedback.act("Resume", control.resume_production, ops, actor(), settings=settings, done=lambda r: f"Resume: {r[1]}")


def stop() -> None:
    feedback.act("Stop", control.stop_production, ops, actor(), done="Stop: the scheduler stops after its batch")


# --------------------------------------------------------------------------- the live part


def live() -> None:
    feedback.show(keep=True)
    status = call(control.production_status, ops, graph)
    head = st.columns([3, 2])
    with head[0]:
        st.badge(md_escape(status.state), color=cast(BadgeColour, pv.state_colour(status.state)))
        if status.fault:
            st.error(md_escape(f"Fault: {status.fault}"), icon=":material/error:")
        elif status.message and status.active:
            st.caption(md_escape(status.message))
    guard = pv.guardrail_line(call(guardrails.guardrail_status, ops))
    if guard is not None:
        kind, line = guard
        if kind == "info":
            st.info(md_escape(line), icon=":material/shield:")
        elif kind == "warning":
            st.warning(md_escape(line), icon=":material/undo:")
        else:
            st.caption(md_escape(line))
    fraction, text = pv.spend_progress(status.summary.spent_usd, status.budget_usd)
    st.progress(fraction, text=md_escape(text))
    for column, (label, value, help_text) in zip(st.columns(6), pv.tiles(status)):
        column.metric(md_escape(label), md_escape(value), help=md_escape(help_text) if help_text else None)
    buttons = pv.controls_for(status.state)
    b1, b2, b3 = st.columns(3)
    # a role too low for a button draws it disabled with the role it needs (the engine refuses anyway)
    for column, label, fn, allowed, action in (
        (b1, "Pause", pause, buttons.pause, "production.pause"),
        (b2, "Resume", resume, buttons.resume, "production.resume"),
        (b3, "Stop", stop, buttons.stop, "production.stop"),
    ):
        why = needs(action)
        column.button(
            # md-safe: the button's label from the literal tuple above
            label,
            on_click=fn,
            disabled=not allowed or bool(why),
            # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
            help=why,
            key=f"production_{label.lower()}",
            width="stretch",
        )
    if status.timeline:
        st.subheader("Spend and visits today (UTC)")
        st.altair_chart(pv.spend_chart(pv.timeline_frame(status.timeline)), width="stretch")
    else:
        st.caption("No visit today yet.")
    info = control.run_settings(status.run)
    if info:
        st.caption(
            md_escape(
                f"Scheduler {info['id']}: {info['evidence']}; {info['in_flight']}; batches of "
                f"{info['batch_size']}; {info['policy']}; started by {info['started_by']}."
            )
        )


st.fragment(live, run_every=REFRESH_S)()


# --------------------------------------------------------------------------- start


running = call(control.production_status, ops, graph).active
with st.expander("Start the scheduler", expanded=not running):
    c1, c2, c3 = st.columns(3)
    c1.number_input(
        "Budget per day (USD)",
        min_value=0.01,
        max_value=MAX_DAILY_BUDGET_USD,
        value=DEFAULT_DAILY_BUDGET_USD,
        step=10.0,
        key="production_budget",
        # another budget than the default changes what production spends: an approver's choice
        disabled=bool(needs("production.budget")),
        # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
        help="never exceeded, to the cent; the day is the UTC day"
        + (f" ({needs('production.budget')} to change it)" if needs("production.budget") else ""),
    )
    c2.number_input(
        "Revisit after (hours)",
        min_value=0.0,
        max_value=366 * 24.0,
        value=pv.DEFAULT_MIN_AGE_H,
        key="production_min_age_h",
        help="an entity visited more recently is not due",
    )
    c3.number_input(
        "Overdue after (hours)",
        min_value=0.0,
        max_value=366 * 24.0,
        value=pv.DEFAULT_MAX_AGE_H,
        key="production_max_age_h",
        help="an entity not visited for this long goes before the others that are due",
    )
    d1, d2, d3 = st.columns(3)
    kind = d1.selectbox(
        "Evidence",
        rs.EVIDENCE_CHOICES,
        format_func=lambda k: rs.EVIDENCE_LABELS[k],
        key="production_evidence",
    )
    if kind == rs.HTTP:
        d2.text_input("Evaluator URL", placeholder=rs.URL_PLACEHOLDER, key="production_evaluator_url")
    elif kind == rs.REPLAY:
        d2.text_input("Replay file (JSONL)", key="production_replay_path")
    d3.number_input("Entities in flight", min_value=1, max_value=MAX_CONCURRENCY, value=1, key="production_in_flight")
    st.number_input(
        "Batch size",
        min_value=1,
        max_value=MAX_BATCH_SIZE,
        value=DEFAULT_BATCH_SIZE,
        key="production_batch_size",
        help="entities reserved, run and settled together; pause and stop act between batches",
    )
    start_needs = needs("production.start")
    st.button(
        "Start",
        on_click=start,
        type="primary",
        key="production_start",
        disabled=running or bool(start_needs),
        # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
        help=start_needs,
    )
    if running:
        st.caption("A scheduler is running: stop it before starting another.")


# --------------------------------------------------------------------------- the plan


@st.cache_data(ttl=PLAN_TTL_S, show_spinner="Planning the next visits…")
def next_visits(data_dir: str, n: int):
    plan = control.production_plan(ops, graph, limit=n)
    names = {eid: e.name for eid, e in graph.get_entities([d.entity_id for d in plan]).items()}
    return plan, names


st.subheader(f"Next {PLAN_SIZE} visits and why")  # md-safe: a constant number
plan, names = call(next_visits, str(settings.data_dir), PLAN_SIZE)
if plan:
    st.dataframe(
        pv.plan_frame(plan, names).drop(columns=["reason"]), hide_index=True, width="stretch", key="production_plan"
    )
    st.caption(md_escape(f"First: {plan[0].reason}. The plan is read again every {PLAN_TTL_S:.0f} s."))
else:
    st.info("Nothing is due: every entity was visited within the refresh policy's minimum age.")
