"""The notification outbox: one row per event worth telling people about, written with its cause.

Every area that records an event a person should hear of (an alert firing, a
stage waiting for a decision, a rollback, a dead worker) calls ``enqueue``
with the connection of the transaction that records the event. The row is
therefore committed exactly when the event is, and never without it: a crash
before the commit loses both, a crash after keeps both, and the sender
(engine.notify.sender) delivers what the table holds later, whenever a
receiver is reachable.

``key`` names the event, not the call: enqueueing the same key twice (a
retried transaction, an evaluator and a console evaluating the same
transition, a resumed worker) keeps the first row and does nothing else. The
sender sends that key to receivers as the message's idempotency key.

A message carries what a person needs to act without opening anything: a
one-line ``subject``, ``facts`` (an ordered mapping of short labels to
figures, e.g. the breached criterion with its interval) and ``link``, the
console page to open (a path such as ``"rollout"``, joined to the configured
console URL when the message is sent, so a changed URL applies to messages
still waiting).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from engine.core.errors import ConfigError
from engine.store.opsdb import Migration, OpsDB

TABLE = "outbox"

#: every topic a message may carry, with what an operator reads for it (triggers are switched per topic)
TOPICS: dict[str, str] = {
    "alert.pending": "alert pending",
    "alert.firing": "alert firing",
    "alert.resolved": "alert resolved",
    "alert.no_data": "alert without data",
    "rollout.started": "rollout started",
    "rollout.stage_passed": "stage passed, soaking",
    "rollout.inconclusive": "stage inconclusive, waiting for a person",
    "rollout.failed": "stage failed, rolling back",
    "rollout.rolled_back": "rollback done",
    "production.promoted": "production promoted",
    "production.guardrail_reverted": "production guardrail reverted",
    "production.paused_by_fault": "production scheduler paused by a fault",
    "production.budget_exhausted": "production spent the day's budget",
    "tuning.finished": "tuning study finished",
    "tuning.failed": "tuning study failed",
    "worker.dead": "worker dead",
    "notify.test": "test message",
}

#: an alert that stays firing is told again this often (settings_kv; 0 turns reminders off)
REPEAT_SETTING = "notify.repeat_interval_s"
DEFAULT_REPEAT_S = 4 * 3600.0

#: the longest key, subject and link accepted (they are table cells, headers and mail subjects)
MAX_KEY_CHARS = 300
MAX_SUBJECT_CHARS = 300

MIGRATIONS: list[Migration] = [
    Migration(
        component="outbox",
        version=1,
        name="notification outbox",
        statements=(
            f"""
            CREATE TABLE IF NOT EXISTS {TABLE} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                key TEXT NOT NULL UNIQUE,
                topic TEXT NOT NULL,
                subject TEXT NOT NULL,
                facts TEXT NOT NULL DEFAULT '{{}}',
                link TEXT,
                at REAL NOT NULL,
                channel_id INTEGER
            )
            """,
            f"CREATE INDEX IF NOT EXISTS idx_{TABLE}_at ON {TABLE} (at)",
        ),
    ),
]


@dataclass(frozen=True)
class Message:
    """One outbox row as the sender and the pages read it."""

    id: int
    key: str
    topic: str
    subject: str
    facts: dict[str, Any]
    link: str | None
    at: float
    channel_id: int | None = None  # a message for one channel only ("send a test"); None: every channel

    @property
    def topic_label(self) -> str:
        return TOPICS.get(self.topic, self.topic)


def enqueue(
    db: sqlite_utils.Database,
    *,
    topic: str,
    key: str,
    subject: str,
    facts: Mapping[str, Any],
    link: str | None = None,
    at: float | None = None,
    channel_id: int | None = None,
) -> bool:
    """Add one message in the caller's open transaction (``db`` from ``ops.transaction()``).

    Idempotent on ``key``: True when the row was written, False when a message with that key exists
    already (nothing changes). ``facts`` must be JSON-able; ``link`` is a console page path.
    """
    if topic not in TOPICS:
        raise ConfigError(f"unknown notification topic {topic!r}: use one of {', '.join(TOPICS)}")
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_CHARS:
        raise ConfigError(f"a notification needs a key of 1..{MAX_KEY_CHARS} characters naming its event")
    line = " ".join(str(subject).split())[:MAX_SUBJECT_CHARS]
    if not line:
        raise ConfigError(f"notification {key!r} needs a subject (one line saying what happened)")
    try:
        facts_json = json.dumps(dict(facts), ensure_ascii=False, allow_nan=False, default=str)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"notification {key!r}: facts are not JSON-able ({exc})") from None
    cur = db.execute(
        f"INSERT INTO {TABLE} (key, topic, subject, facts, link, at, channel_id) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(key) DO NOTHING",
        [key, topic, line, facts_json, link, time.time() if at is None else float(at), channel_id],
    )
    return bool(cur.rowcount == 1)


def message_from_row(row: Mapping[str, Any]) -> Message:
    return Message(
        id=int(row["id"]),
        key=row["key"],
        topic=row["topic"],
        subject=row["subject"],
        facts=json.loads(row["facts"] or "{}"),
        link=row["link"],
        at=float(row["at"]),
        channel_id=row["channel_id"],
    )


def messages_after(ops: OpsDB, after_id: int, *, limit: int = 500) -> list[Message]:
    """Messages with an id above ``after_id``, oldest first."""
    with ops.connect() as db:
        rows = db.query(f"SELECT * FROM {TABLE} WHERE id > ? ORDER BY id LIMIT ?", [int(after_id), int(limit)])
        return [message_from_row(r) for r in rows]


def list_messages(ops: OpsDB, *, limit: int = 200, topic: str | None = None) -> list[Message]:
    """Newest first, optionally of one topic."""
    sql = f"SELECT * FROM {TABLE}"
    params: list[Any] = []
    if topic is not None:
        sql += " WHERE topic = ?"
        params.append(topic)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(int(limit))
    with ops.connect() as db:
        return [message_from_row(r) for r in db.query(sql, params)]


def figure(value: Any, digits: int = 4) -> str:
    """A number as a message shows it: short, never "nan" or "inf" (those read as words)."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return {"inf": "no upper bound", "-inf": "no lower bound", "nan": "n/a"}.get(value, value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if value in (float("inf"), float("-inf")):
            return "no upper bound" if value > 0 else "no lower bound"
        return f"{value:.{digits}g}"
    return str(value)


def interval_text(low: Any, high: Any, level: Any = None) -> str:
    """``[low, high]`` with the confidence level when known: "95% interval [0.12, 0.31]"."""
    pct = f"{float(level) * 100:g}% " if isinstance(level, (int, float)) and not isinstance(level, bool) else ""
    return f"{pct}interval [{figure(low)}, {figure(high)}]"


def criterion_text(row: Mapping[str, Any], level: Any = None) -> str:
    """One criterion row of a verdict (engine.rollout.verdict.CriterionRow.to_dict) in words, with its interval."""
    return (
        f"{row.get('metric')} {row.get('op')} {figure(row.get('threshold'))}: "
        f"value {figure(row.get('value'))}, {interval_text(row.get('low'), row.get('high'), level)}, "
        f"n={figure(row.get('n'))} ({row.get('reason', '')})"
    )
