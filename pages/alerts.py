"""Alerts: the current state of every rule, acknowledgement, periodic evaluation, history and thresholds."""

import time

import streamlit as st

from console.alerts_view import (
    METRIC_HELP,
    STATE_ICONS,
    acknowledgeable,
    evaluated_line,
    history_frame,
    rules_frame,
    rules_from_editor,
    state_counts,
    state_style,
    states_frame,
)
from console.feedback import Feedback
from console.identity import actor, needs, operator_field
from console.naming import download_name
from console.services import call, get_services
from console.text import md_code, md_escape
from console.vocab import human
from engine.core.errors import DiscoveryError
from engine.monitoring import alert_jobs, alerts
from engine.monitoring.alerts import OPS, SCOPES, Severity

REFRESH_S = 10
INTERVALS = ("30s", "1m", "5m", "15m")
#: width of a state tile: "not evaluated" and its icon whole; six fit a row at 1400 px, they wrap when narrower
TILE_PX = 140
#: the states table: short columns narrow, so "acknowledged by" and "runbook" are on screen at 1400 px
STATES_COLUMN_CONFIG = {
    "state": st.column_config.TextColumn("state", width="small"),
    "name": st.column_config.TextColumn("name", width="medium"),
    "value": st.column_config.TextColumn("value", width="small"),
    "acknowledged by": st.column_config.TextColumn("acknowledged by", width="medium"),
    "runbook": st.column_config.TextColumn("runbook", width="large", help="what to check first"),
    "condition": st.column_config.TextColumn("condition", width="medium"),
    "reason": st.column_config.TextColumn("reason", width="medium"),
}

services = get_services()
operator_field()  # one name for every page of this tab (console.identity)
settings, ops = services.settings, services.ops

st.title("Alerts")
rules = call(alerts.load_rules, settings)

# Actions run as widget callbacks: they finish before the page is drawn, so what follows shows their effect.
# Each section has its own message, drawn beside the buttons that made it (in the same run).
feedback = Feedback("alerts_flash")
evaluator_feedback = Feedback("alerts_evaluator_flash")
ack_feedback = Feedback("alerts_ack_flash")
rules_feedback = Feedback("alerts_rules_flash")


def evaluated(evaluations) -> str:
    changed = sum(1 for ev in evaluations if ev.changed)
    return f"evaluated {len(evaluations)} rules: {alert_jobs.round_summary(evaluations)} ({changed} changed state)"


def on_evaluate() -> None:
    feedback.act(
        "", lambda: alerts.evaluate(ops, alerts.load_rules(settings), actor=actor(), now=time.time()), done=evaluated
    )


def on_start() -> None:
    interval = st.session_state.get("evaluator_interval", "1m")
    evaluator_feedback.act(
        "",
        alert_jobs.start_evaluator,
        settings,
        ops,
        interval=interval,
        actor=actor(),
        done=lambda out: (
            f"periodic evaluation {'started in a worker' if out[1] else 'was already running'} "
            f"(job {out[0].id}, every {interval})"
        ),
    )


def on_stop() -> None:
    evaluator_feedback.act(
        "",
        alert_jobs.stop_evaluator,
        ops,
        actor=actor(),
        done=lambda job: (
            f"stop requested for job {job.id}: it stops at its next heartbeat"
            if job
            else "periodic evaluation had already stopped"
        ),
    )


def on_acknowledge() -> None:
    ack_feedback.act(
        "",
        alerts.acknowledge,
        ops,
        st.session_state["ack_rule"],
        actor=actor(),
        now=time.time(),
        note=(st.session_state.get("ack_note") or "").strip(),
        done=lambda rec: f"acknowledged {rec.rule_id} as {rec.acknowledged_by}",
    )


# ----------------------------------------------------------------- evaluation
# Buttons the signed-in role may not use are drawn disabled with the role they need (the engine refuses anyway).
evaluate_needs = needs("alerts.evaluate")
st.button(
    "Evaluate now",
    key="evaluate_now",
    type="primary",
    icon=":material/refresh:",
    on_click=on_evaluate,
    disabled=bool(evaluate_needs),
    # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
    help=evaluate_needs or "measure every rule over its window ending now and record the transitions",
)
feedback.show()


@st.fragment(run_every=REFRESH_S)
def evaluator_panel() -> None:
    """The periodic evaluator's line and its one button, from one read (alert_jobs.evaluator_view): a worker
    that died shows as off with Start, a running one with Stop; they never disagree."""
    view = alert_jobs.evaluator_view(ops, time.time())
    role_needed = needs("alerts.evaluator")
    st.caption(md_escape(view.line))
    with st.container(horizontal=True, vertical_alignment="bottom"):  # buttons as wide as their labels
        if view.running:
            st.button(
                "Stop periodic evaluation",
                key="evaluator_stop",
                icon=":material/stop:",
                on_click=on_stop,
                disabled=view.stopping or bool(role_needed),
                # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
                help="stop already requested: the worker stops at its next heartbeat" if view.stopping else role_needed,
            )
        else:
            st.selectbox("Every", INTERVALS, index=1, key="evaluator_interval", width=100)
            st.button(
                "Start periodic evaluation",
                key="evaluator_start",
                icon=":material/play_arrow:",
                on_click=on_start,
                disabled=bool(role_needed),
                # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
                help=role_needed or "a worker process evaluates every rule at this interval until stopped",
            )
    evaluator_feedback.show()


evaluator_panel()


@st.fragment(run_every=REFRESH_S)
def current_states() -> None:
    """States as the store holds them now (the worker may change them between two page runs)."""
    states = alerts.current_states(ops)
    counts = state_counts(rules, states)
    with st.container(horizontal=True):  # tiles as wide as their labels, wrapping on a narrow screen
        for state, n in counts.items():
            # md-safe: the states are the fixed AlertStatus values and their icons (STATE_ICONS)
            st.metric(f"{STATE_ICONS[state]} {md_escape(human(state))}", f"{n:,}", border=True, width=TILE_PX)
    frame = states_frame(rules, states)
    st.dataframe(
        # the "state" column holds state names; str() only tells the type checker, which sees any cell value
        frame.style.map(lambda v: state_style(str(v)), subset=["state"]),
        hide_index=True,
        width="stretch",
        key="alert_states",
        column_config=STATES_COLUMN_CONFIG,
    )
    if states:
        last = max(r.evaluated_at for r in states.values())
        st.caption(
            f"last evaluated {md_escape(time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(last)))} UTC · "
            f"no data means too few runs in the window (below the rule's minimum sample), never ok"
        )


st.subheader("Current states")
current_states()

# ----------------------------------------------------------------- acknowledge
states_now = alerts.current_states(ops)
open_alerts = acknowledgeable(states_now)
if open_alerts:
    st.subheader("Acknowledge")
    with st.form("ack_form", border=True):
        st.selectbox("Alert", open_alerts, key="ack_rule", format_func=lambda r: f"{r} ({human(states_now[r].state)})")
        st.text_input("Note", key="ack_note", placeholder="optional: what you are doing about it")
        ack_needs = needs("alerts.acknowledge")
        st.form_submit_button(
            "Acknowledge",
            icon=":material/done:",
            on_click=on_acknowledge,
            disabled=bool(ack_needs),
            # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
            help=ack_needs,
        )
ack_feedback.show()

# ----------------------------------------------------------------- history
st.subheader("History")
trail = alerts.history(ops, limit=500)
if not trail:
    st.info("No state transition recorded yet.")
else:
    chosen = st.multiselect(
        "Rules", sorted({h["rule_id"] for h in trail}), key="history_rules", placeholder="all rules"
    )
    frame = history_frame([h for h in trail if not chosen or h["rule_id"] in chosen], rules)
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        key="alert_history",
    )
    st.caption(f"{len(frame)} transitions, newest first (last 500 kept on screen)")
    st.download_button(
        "Download history (CSV)",
        frame.to_csv(index=False).encode("utf-8"),
        mime="text/csv",
        key="history_csv",
        file_name=download_name("alert-history", "csv"),
        icon=":material/download:",
        on_click="ignore",
    )

# ----------------------------------------------------------------- thresholds
st.subheader("Rules and thresholds")
source = alerts.rules_source(settings)
st.caption(
    f"from {md_code(source)}"
    + (" (shipped defaults)" if source == alerts.SHIPPED_RULES else " (saved edits)")
    + " · fractions for rates (0.10 = 10%), USD, seconds or percent as the unit column says · "
    "durations like 30s, 5m, 1h"
)
edited = st.data_editor(
    rules_frame(rules),
    hide_index=True,
    width="stretch",
    key="rules_editor",
    num_rows="fixed",
    disabled=("id", "name", "metric", "unit"),
    column_config={
        "metric": st.column_config.TextColumn(
            "metric", help="; ".join(f"{md_escape(k)}: {md_escape(v)}" for k, v in METRIC_HELP.items())
        ),
        "op": st.column_config.SelectboxColumn("op", options=list(OPS), required=True),
        "threshold": st.column_config.NumberColumn("threshold", required=True, format="%.4g"),
        "hold": st.column_config.TextColumn("hold", help="breach this long before firing (0s: at once)"),
        "window": st.column_config.TextColumn("window", help="how far back the figure is measured"),
        "min_sample": st.column_config.NumberColumn(
            "min sample", min_value=1, step=1, format="%d", help="fewer runs than this in the window is no data"
        ),
        "severity": st.column_config.SelectboxColumn("severity", options=[s.value for s in Severity], required=True),
        "system": st.column_config.SelectboxColumn("system", options=list(SCOPES), required=True),
        "runbook": st.column_config.TextColumn("runbook", width="large"),
    },
)
rules_needs = needs("alerts.rules")
with st.container(horizontal=True):
    save = st.button(
        "Save rules",
        key="rules_save",
        icon=":material/save:",
        disabled=bool(rules_needs),
        # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
        help=rules_needs,
    )
    reset = source != alerts.SHIPPED_RULES and st.button(
        "Reset to defaults",
        key="rules_reset",
        icon=":material/restart_alt:",
        disabled=bool(rules_needs),
        # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
        help=rules_needs,
    )
if save:
    try:
        update = alerts.update_rules(settings, rules_from_editor(edited), ops=ops, actor=actor(), now=time.time())
    except DiscoveryError as exc:
        st.error(f"Not saved, nothing changed. {md_escape(exc)}", icon=":material/error:")
    else:
        if not update.written:
            rules_feedback.flash("no change: the rules are as saved, nothing written", "info")
        else:
            rules_feedback.flash(
                f"saved {len(update.rules)} rules to {alerts.rules_path(settings)} "
                f"(changed: {', '.join(update.changed)}); re-evaluated at once: {evaluated_line(update.evaluations)}"
            )
        st.session_state.pop("rules_editor", None)
        st.rerun()  # the states table above shows the changed rules' new states
if reset:
    call(alerts.reset_rules, settings, ops=ops, actor=actor())
    defaults = alerts.load_rules(settings)
    changed = alerts.changed_rule_ids(rules, defaults)
    evaluations = alerts.evaluate_alerts(ops, [r for r in defaults if r.id in changed], time.time())
    rules_feedback.flash(
        "rules reset to the shipped defaults"
        + (f"; re-evaluated at once: {evaluated_line(evaluations)}" if evaluations else " (no rule changed)")
    )
    st.session_state.pop("rules_editor", None)
    st.rerun()
rules_feedback.show()
