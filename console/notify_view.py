"""The Notifications page's tables and choices, as pure functions (no Streamlit): channels with their targets
masked, the delivery log (filtered, newest first, every column sortable as a number or a time), silences,
trigger labels, and the settings a channel form turns into."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from console.vocab import display_frame
from engine.notify.store import Channel, ChannelKind, DeliveryRow, DeliveryState, Silence
from engine.store.outbox import TOPICS

#: delivery states in the filter's order, as operators read them
STATE_LABELS: dict[str, str] = {
    DeliveryState.PENDING.value: "pending",
    DeliveryState.SENDING.value: "sending",
    DeliveryState.SENT.value: "sent",
    DeliveryState.FAILED.value: "failed (given up)",
    DeliveryState.SKIPPED.value: "skipped",
}
#: the topics a channel form offers (a test message always goes to its channel)
TRIGGER_TOPICS: tuple[str, ...] = tuple(t for t in TOPICS if t != "notify.test")
KIND_LABELS: dict[str, str] = {k.value: k.label for k in ChannelKind}


def when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + " UTC" if at else "—"


def topic_label(topic: str) -> str:
    return TOPICS.get(topic, topic)


def channels_frame(channels: Sequence[Channel]) -> pd.DataFrame:
    """One row per channel: name, kind, where it sends (masked), on/off, triggers."""
    rows = [
        {
            "id": c.id,
            "name": c.name,
            "kind": c.kind.label,
            "sends to": c.target(),
            "on": "yes" if c.enabled else "no",
            "triggers": f"{len(c.triggers)} of {len(TRIGGER_TOPICS)}",
        }
        for c in channels
    ]
    return pd.DataFrame(rows, columns=["id", "name", "kind", "sends to", "on", "triggers"])


def filter_deliveries(
    rows: Iterable[DeliveryRow],
    *,
    channels: Sequence[str] = (),
    states: Sequence[str] = (),
    topics: Sequence[str] = (),
    text: str = "",
) -> list[DeliveryRow]:
    """The rows matching every filter given (an empty filter keeps all); ``text`` searches subject and error."""
    needle = text.strip().lower()
    return [
        r
        for r in rows
        if (not channels or r.channel in channels)
        and (not states or r.state.value in states)
        and (not topics or r.topic in topics)
        and (not needle or needle in r.subject.lower() or needle in r.error.lower())
    ]


def deliveries_frame(rows: Sequence[DeliveryRow]) -> pd.DataFrame:
    """The delivery log as a table: times as datetimes (they sort), attempts as numbers."""
    data = [
        {
            "enqueued": pd.Timestamp(r.created_at, unit="s"),
            "channel": r.channel,
            "event": topic_label(r.topic),
            "message": r.subject,
            "state": STATE_LABELS.get(r.state.value, r.state.value),
            "attempts": r.attempts,
            "status": r.status or "—",
            "sent": when(r.sent_at) if r.sent_at else "—",
            "next try": when(r.next_at) if r.state is DeliveryState.PENDING and r.attempts else "—",
            "error": r.error or "—",
        }
        for r in rows
    ]
    columns = ["enqueued", "channel", "event", "message", "state", "attempts", "status", "sent", "next try", "error"]
    return display_frame(pd.DataFrame(data, columns=columns))


def delivery_counts(rows: Sequence[DeliveryRow]) -> dict[str, int]:
    """How many deliveries are in each state (every state listed, zeros included)."""
    counts = dict.fromkeys(STATE_LABELS, 0)
    for r in rows:
        counts[r.state.value] = counts.get(r.state.value, 0) + 1
    return {STATE_LABELS[k]: v for k, v in counts.items()}


def silences_frame(silences: Sequence[Silence], now: float) -> pd.DataFrame:
    rows = [
        {
            "id": s.id,
            "rule": s.rule_id,
            "until": when(s.until),
            "state": "active" if s.active(now) else ("lifted" if s.lifted_at else "ended"),
            "by": s.actor,
            "reason": s.reason,
        }
        for s in silences
    ]
    return pd.DataFrame(rows, columns=["id", "rule", "until", "state", "by", "reason"])


def channel_config(kind: str, form: Mapping[str, Any]) -> dict[str, Any]:
    """What a channel form's fields become for engine.notify.store.add_channel/update_channel."""
    if kind in (ChannelKind.WEBHOOK.value, ChannelKind.SLACK.value):
        return {"url": str(form.get("url") or "").strip()}
    return {
        "host": str(form.get("host") or "").strip(),
        "port": int(form.get("port") or 587),
        "sender": str(form.get("sender") or "").strip(),
        "to": str(form.get("to") or "").strip(),
        "starttls": bool(form.get("starttls", True)),
        "username_env": str(form.get("username_env") or "").strip() or "DISCOVERY_SMTP_USER",
        "password_env": str(form.get("password_env") or "").strip() or "DISCOVERY_SMTP_PASSWORD",
    }


def send_test_outcome(rows: Sequence[DeliveryRow]) -> str:
    """What "Send a test" says, from the channel's newest delivery (the test just sent)."""
    if not rows:
        return "the test message was not queued"
    r = rows[0]
    if r.state is DeliveryState.SENT:
        return f"test message delivered to {r.channel} (status {r.status})"
    return f"test message to {r.channel} not delivered yet: {r.error or r.state.value}; it is retried"
