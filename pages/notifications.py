"""Notifications: channels (webhook, Slack, e-mail) with their triggers, "send a test", the sender, the
delivery log and silences. Thin: tables and choices come from console.notify_view, every button calls one
engine.notify function through console.feedback."""

import time

import streamlit as st

from console import notify_view as nv
from console.feedback import Feedback
from console.identity import actor, needs, operator_field
from console.services import call, get_services
from console.text import md_escape
from engine.monitoring import alerts
from engine.notify import sender as notify_sender
from engine.notify import store as ns
from engine.store.outbox import DEFAULT_REPEAT_S, REPEAT_SETTING

SILENCE_CHOICES = {"1 hour": 3600.0, "4 hours": 4 * 3600.0, "1 day": 86400.0, "1 week": 7 * 86400.0}
LOG_ROWS = 500
ss = st.session_state

services = get_services()
operator_field()  # one name for every page of this tab (console.identity)
settings, ops = services.settings, services.ops

st.title("Notifications")
st.caption(
    "Alerts, rollout events, tuning studies and dead workers are written to an outbox in the same transaction "
    "as the event; the sender delivers them to each channel that wants them, with retries, and logs every "
    "attempt. SMTP credentials come from environment variables and are never stored or shown."
)

channel_feedback = Feedback("notify_channel_flash")
edit_feedback = Feedback("notify_edit_flash")
sender_feedback = Feedback("notify_sender_flash")
silence_feedback = Feedback("notify_silence_flash")


# ----------------------------------------------------------------- callbacks


def _gate(action: str) -> dict:
    """A button's ``disabled``/``help`` for ``action``: disabled with "needs approver" when the role is too low."""
    why = needs(action)
    return {"disabled": bool(why), "help": why}


def on_add() -> None:
    kind = ss["nf_kind"]
    form = {k: ss.get(f"nf_{k}") for k in ("url", "host", "port", "sender", "to", "starttls")}
    form.update(username_env=ss.get("nf_username_env"), password_env=ss.get("nf_password_env"))
    channel_feedback.act(
        "Add channel",
        ns.add_channel,
        ops,
        name=ss.get("nf_name", ""),
        kind=kind,
        config=nv.channel_config(kind, form),
        triggers=ss.get("nf_triggers") or [],
        actor=actor(),
        done=lambda ch: f"Channel {ch.name} added: {ch.kind.label} to {ch.target()}",
    )
    ss["nf_url"] = ""  # never keep a webhook URL in the form once it is saved


def on_save(channel_id: int) -> None:
    url = str(ss.get(f"ne_url_{channel_id}") or "").strip()
    current = ns.get_channel(ops, channel_id)
    config = {**current.config, "url": url} if url and current.kind is not ns.ChannelKind.EMAIL else None
    edit_feedback.act(
        "Save channel",
        ns.update_channel,
        ops,
        channel_id,
        actor=actor(),
        config=config,
        triggers=ss.get(f"ne_triggers_{channel_id}") or [],
        enabled=bool(ss.get(f"ne_enabled_{channel_id}")),
        done=lambda ch: f"Channel {ch.name} saved ({'on' if ch.enabled else 'off'}, {len(ch.triggers)} triggers)",
    )
    ss[f"ne_url_{channel_id}"] = ""


def on_test(channel_id: int) -> None:
    def send() -> str:
        notify_sender.send_test(ops, channel_id, actor=actor())
        return nv.send_test_outcome(ns.deliveries(ops, limit=1, channel_id=channel_id))

    result = edit_feedback.act("Send a test", send, done=lambda text: text)
    if result is not None and "not delivered" in result:
        edit_feedback.flash(result, "warning")


def on_remove(channel_id: int) -> None:
    edit_feedback.act(
        "Remove channel",
        ns.remove_channel,
        ops,
        channel_id,
        actor=actor(),
        done=lambda ch: f"Channel {ch.name} removed; its log is kept",
    )


def on_send_now() -> None:
    sender_feedback.act(
        "Send now", notify_sender.send_now, ops, actor=actor(), done=lambda r: f"Send now: {r.describe()}"
    )


def on_start_sender() -> None:
    sender_feedback.act(
        "Start sender",
        notify_sender.start_sender,
        settings,
        ops,
        actor=actor(),
        done=lambda r: ("Sender started" if r[1] else "The sender was running already") + f" (job {r[0].id})",
    )


def on_stop_sender() -> None:
    sender_feedback.act(
        "Stop sender",
        notify_sender.stop_sender,
        ops,
        actor=actor(),
        done=lambda j: f"Stop requested for job {j.id}" if j else "The sender was not running",
    )


def on_silence() -> None:
    silence_feedback.act(
        "Silence",
        ns.add_silence,
        ops,
        ss.get("ns_rule") or "",
        duration_s=SILENCE_CHOICES[ss["ns_for"]],
        reason=ss.get("ns_reason", ""),
        actor=actor(),
        done=lambda s: f"Rule {s.rule_id} silenced until {nv.when(s.until)}",
    )


def on_lift() -> None:
    silence_feedback.act(
        "Lift",
        ns.lift_silence,
        ops,
        int(ss["ns_lift"]),
        actor=actor(),
        done=lambda s: f"Silence of rule {s.rule_id} lifted",
    )


def on_settings() -> None:
    def save() -> str:
        url = ns.set_console_url(ops, ss.get("nset_url", ""), actor=actor())
        hours = float(ss.get("nset_repeat", 0.0))
        ns.set_repeat_interval(ops, hours * 3600.0, actor=actor())
        return f"Links go to {url or ns.console_url(ops)}; firing alerts repeat every {hours:g} h" + (
            " (never)" if not hours else ""
        )

    sender_feedback.act("Settings", save, done=lambda text: text)


# ----------------------------------------------------------------- sender
st.subheader("Sender")
job = call(notify_sender.active_sender, ops)
st.caption(md_escape(notify_sender.describe_sender(job)))
with st.container(horizontal=True):
    st.button("Send now", icon=":material/send:", on_click=on_send_now, key="nf_send_now", **_gate("notify.send"))
    if job is None:
        st.button(
            "Start sender",
            icon=":material/play_arrow:",
            on_click=on_start_sender,
            key="nf_start",
            **_gate("notify.send"),
        )
    else:
        st.button("Stop sender", icon=":material/stop:", on_click=on_stop_sender, key="nf_stop", **_gate("notify.send"))
sender_feedback.show()

# ----------------------------------------------------------------- channels
st.subheader("Channels")
channels = call(ns.list_channels, ops)
if channels:
    st.dataframe(nv.channels_frame(channels), hide_index=True, width="stretch", key="nf_channels")
else:
    st.info("No channel yet: add a webhook, a Slack webhook or an e-mail channel below.")

with st.expander("Add a channel", expanded=not channels):
    st.selectbox("Kind", list(nv.KIND_LABELS), format_func=lambda k: nv.KIND_LABELS[k], key="nf_kind")
    with st.form("nf_add", border=False):
        st.text_input("Name", key="nf_name", placeholder="e.g. on-call webhook")
        if ss.get("nf_kind", "webhook") in ("webhook", "slack"):
            st.text_input("URL", key="nf_url", type="password", help="stored, and shown masked: its path is a secret")
        else:
            st.text_input("SMTP host", key="nf_host")
            st.number_input("Port", key="nf_port", min_value=1, max_value=65535, value=587, step=1)
            st.text_input("From", key="nf_sender")
            st.text_input("To (comma-separated)", key="nf_to")
            st.checkbox("STARTTLS", key="nf_starttls", value=True)
            st.text_input("Variable holding the user", key="nf_username_env", value=ns.DEFAULT_SMTP_USER_ENV)
            st.text_input("Variable holding the password", key="nf_password_env", value=ns.DEFAULT_SMTP_PASSWORD_ENV)
        st.multiselect(
            "Triggers",
            nv.TRIGGER_TOPICS,
            default=list(nv.TRIGGER_TOPICS),
            format_func=nv.topic_label,
            key="nf_triggers",
        )
        st.form_submit_button("Add channel", icon=":material/add:", on_click=on_add, **_gate("notify.channel"))
channel_feedback.show()

if channels:
    st.markdown("**Edit a channel**")
    chosen = st.selectbox(
        "Channel",
        [c.id for c in channels],
        key="ne_channel",
        format_func=lambda i: next(c.name for c in channels if c.id == i),
    )
    current = next(c for c in channels if c.id == chosen)
    with st.form(f"ne_form_{current.id}", border=True):
        st.caption(f"sends to {md_escape(current.target())} ({md_escape(current.kind.label)})")
        st.toggle("On", value=current.enabled, key=f"ne_enabled_{current.id}")
        st.multiselect(
            "Triggers",
            nv.TRIGGER_TOPICS,
            default=list(current.triggers),
            format_func=nv.topic_label,
            key=f"ne_triggers_{current.id}",
        )
        if current.kind is not ns.ChannelKind.EMAIL:
            st.text_input("New URL (empty keeps the stored one)", key=f"ne_url_{current.id}", type="password")
        st.form_submit_button(
            "Save", icon=":material/save:", on_click=on_save, args=(current.id,), **_gate("notify.channel")
        )
    with st.container(horizontal=True):
        st.button("Send a test", icon=":material/send:", on_click=on_test, args=(current.id,), key="ne_test",
                  **_gate("notify.test"))  # fmt: skip
        st.button("Remove", icon=":material/delete:", on_click=on_remove, args=(current.id,), key="ne_remove",
                  **_gate("notify.channel"))  # fmt: skip
    edit_feedback.show()

# ----------------------------------------------------------------- delivery log
st.subheader("Delivery log")
log = call(ns.deliveries, ops, limit=LOG_ROWS)
if not log:
    st.info("Nothing delivered yet: messages appear here as events happen (or after Send a test).")
else:
    with st.container(horizontal=True):
        for label, n in nv.delivery_counts(log).items():
            st.metric(md_escape(label), f"{n:,}", border=True, width=140)
    with st.container(horizontal=True):
        pick_channels = st.multiselect("Channel", sorted({r.channel for r in log}), key="nl_channels")
        pick_states = st.multiselect(
            "State", list(nv.STATE_LABELS), format_func=lambda k: nv.STATE_LABELS[k], key="nl_states"
        )
        pick_topics = st.multiselect(
            "Event", sorted({r.topic for r in log}), format_func=nv.topic_label, key="nl_topics"
        )
        search = st.text_input("Search", key="nl_search", placeholder="message or error")
    shown = nv.filter_deliveries(log, channels=pick_channels, states=pick_states, topics=pick_topics, text=search)
    st.dataframe(
        nv.deliveries_frame(shown),
        hide_index=True,
        width="stretch",
        key="nl_table",
        column_config={"enqueued": st.column_config.DatetimeColumn("enqueued", format="YYYY-MM-DD HH:mm:ss")},
    )
    st.caption(f"{len(shown):,} of {len(log):,} deliveries shown (newest {LOG_ROWS:,}); click a header to sort")

# ----------------------------------------------------------------- silences
st.subheader("Silences")
now = time.time()
rule_ids = [r.id for r in call(alerts.load_rules, settings)]
with st.form("ns_form", border=True):
    st.selectbox("Alert rule", rule_ids, key="ns_rule")
    st.selectbox("For", list(SILENCE_CHOICES), key="ns_for")
    st.text_input("Reason", key="ns_reason", placeholder="why nobody needs to hear of this rule now")
    st.form_submit_button(
        "Silence", icon=":material/notifications_off:", on_click=on_silence, **_gate("notify.silence")
    )
silences = call(ns.list_silences, ops, now=now)
active = [s for s in silences if s.active(now)]
if silences:
    st.dataframe(nv.silences_frame(silences, now), hide_index=True, width="stretch", key="ns_table")
if active:
    with st.container(horizontal=True):
        st.selectbox("Silence", [s.id for s in active], key="ns_lift", format_func=lambda i: f"silence {i}")
        st.button(
            "Lift",
            icon=":material/notifications_active:",
            on_click=on_lift,
            key="ns_lift_btn",
            **_gate("notify.silence"),
        )
silence_feedback.show()

# ----------------------------------------------------------------- settings
with st.expander("Links and repeats"), st.form("nset_form", border=False):
    st.text_input(
        "Console URL in links",
        value=str(ops.get_setting(ns.CONSOLE_URL_SETTING) or ""),
        key="nset_url",
        placeholder=f"empty: {ns.CONSOLE_URL_ENV} or {ns.DEFAULT_CONSOLE_URL}",
    )
    st.number_input(
        "Repeat a firing alert every (hours, 0: never)",
        min_value=0.0,
        max_value=168.0,
        value=float(ops.get_setting(REPEAT_SETTING, DEFAULT_REPEAT_S) or 0) / 3600.0,
        step=1.0,
        key="nset_repeat",
    )
    st.form_submit_button("Save", on_click=on_settings, **_gate("notify.settings"))
