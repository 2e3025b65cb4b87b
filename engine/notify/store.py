"""Where notifications are configured and logged: channels, silences, deliveries and their attempts.

A **channel** is one receiver (a JSON webhook, a Slack-compatible incoming
webhook, or an e-mail recipient list over SMTP) with the topics it wants
(its triggers, engine.store.outbox.TOPICS) and an on/off switch. Its settings
are stored here, but never a credential: SMTP user and password are read from
environment variables named in the channel (defaults DISCOVERY_SMTP_USER,
DISCOVERY_SMTP_PASSWORD) when a mail is sent, and a setting whose name says
secret is refused. A webhook's URL is stored (it is where to send), and shown
only masked (``mask_webhook_url``): a Slack URL's path is its secret.
Every change (add, edit, remove, a silence) is audited with the URL masked.

A **delivery** is one message for one channel: pending until sent, with its
attempts (when, HTTP status or SMTP reply, error) kept in ``notify_attempts``,
the delivery log the console and ``notify deliveries`` show.

A **silence** mutes one alert rule's messages until a time (audited): they
are logged as skipped, not sent.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from engine.core.access import Actor
from engine.core.errors import DiscoveryError
from engine.core.secrets import MASK, SECRET_KEYS
from engine.store.access import authorize
from engine.store.opsdb import Migration
from engine.store.outbox import REPEAT_SETTING, TOPICS

CHANNELS = "notify_channels"
DELIVERIES = "notify_deliveries"
ATTEMPTS = "notify_attempts"
SILENCES = "notify_silences"

#: the console URL messages link to: a setting (``notify console-url``) wins over the environment variable
CONSOLE_URL_SETTING = "notify.console_url"
CONSOLE_URL_ENV = "DISCOVERY_CONSOLE_URL"
DEFAULT_CONSOLE_URL = "http://localhost:8501"

#: where an e-mail channel reads its SMTP credentials unless it names other variables
DEFAULT_SMTP_USER_ENV = "DISCOVERY_SMTP_USER"
DEFAULT_SMTP_PASSWORD_ENV = "DISCOVERY_SMTP_PASSWORD"
DEFAULT_SMTP_PORT = 587
MAX_NAME_CHARS = 80
MAX_SILENCE_S = 30 * 86_400.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+$")

MIGRATIONS: list[Migration] = [
    Migration(
        component="notify",
        version=1,
        name="notification channels, deliveries, attempts and silences",
        statements=(
            f"""
            CREATE TABLE IF NOT EXISTS {CHANNELS} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                config TEXT NOT NULL,
                triggers TEXT NOT NULL,
                enabled INTEGER NOT NULL DEFAULT 1,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                removed_at REAL
            )
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {DELIVERIES} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                message_id INTEGER NOT NULL,
                channel_id INTEGER NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_at REAL NOT NULL,
                claimed_at REAL,
                sent_at REAL,
                status TEXT NOT NULL DEFAULT '',
                error TEXT NOT NULL DEFAULT '',
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                UNIQUE (message_id, channel_id)
            )
            """,
            f"CREATE INDEX IF NOT EXISTS idx_{DELIVERIES}_due ON {DELIVERIES} (state, next_at)",
            f"""
            CREATE TABLE IF NOT EXISTS {ATTEMPTS} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                delivery_id INTEGER NOT NULL,
                at REAL NOT NULL,
                ok INTEGER NOT NULL,
                status TEXT NOT NULL DEFAULT '',
                error TEXT NOT NULL DEFAULT ''
            )
            """,
            f"CREATE INDEX IF NOT EXISTS idx_{ATTEMPTS}_delivery ON {ATTEMPTS} (delivery_id)",
            f"""
            CREATE TABLE IF NOT EXISTS {SILENCES} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                rule_id TEXT NOT NULL,
                until REAL NOT NULL,
                reason TEXT NOT NULL,
                actor TEXT NOT NULL,
                created_at REAL NOT NULL,
                lifted_at REAL,
                lifted_by TEXT
            )
            """,
            "CREATE TABLE IF NOT EXISTS notify_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), message_id INTEGER)",
        ),
    ),
]


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    EMAIL = "email"

    @property
    def label(self) -> str:
        return {"webhook": "JSON webhook", "slack": "Slack webhook", "email": "e-mail (SMTP)"}[self.value]


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (next_at)
    SENDING = "sending"  # claimed by a sender; a sender that died here is retried with the same key
    SENT = "sent"
    FAILED = "failed"  # given up (too old): shown in the log, never retried by itself
    SKIPPED = "skipped"  # not for this channel (trigger off, channel off, rule silenced)


class NotifyError(DiscoveryError):
    """A channel or silence request that cannot be carried out; the message says how to fix it."""


#: the settings each kind accepts (anything else is refused, so a password cannot slip in as a setting)
KIND_FIELDS: dict[ChannelKind, tuple[str, ...]] = {
    ChannelKind.WEBHOOK: ("url",),
    ChannelKind.SLACK: ("url",),
    ChannelKind.EMAIL: ("host", "port", "sender", "to", "starttls", "username_env", "password_env"),
}


@dataclass(frozen=True)
class Channel:
    id: int
    name: str
    kind: ChannelKind
    config: dict[str, Any]
    triggers: tuple[str, ...]
    enabled: bool
    created_at: float
    updated_at: float
    removed_at: float | None = None

    def wants(self, topic: str) -> bool:
        return topic in self.triggers

    def target(self) -> str:
        """Where it sends, for people: a webhook URL masked, or the mail server and recipients."""
        if self.kind is ChannelKind.EMAIL:
            return f"{', '.join(self.config.get('to', []))} via {self.config.get('host')}:{self.config.get('port')}"
        return mask_webhook_url(self.config.get("url", ""))

    def public(self) -> dict[str, Any]:
        """The channel as pages, the CLI and the audit log show it: no secret, URL masked."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind.value,
            "target": self.target(),
            "triggers": list(self.triggers),
            "enabled": self.enabled,
        }


@dataclass(frozen=True)
class Silence:
    id: int
    rule_id: str
    until: float
    reason: str
    actor: str
    created_at: float
    lifted_at: float | None = None
    lifted_by: str | None = None

    def active(self, now: float) -> bool:
        return self.lifted_at is None and self.until > now


@dataclass(frozen=True)
class DeliveryRow:
    """One line of the delivery log."""

    id: int
    message_id: int
    channel_id: int
    channel: str
    topic: str
    subject: str
    key: str
    state: DeliveryState
    attempts: int
    status: str
    error: str
    created_at: float
    updated_at: float
    next_at: float
    sent_at: float | None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- masking


def mask_webhook_url(url: str | None) -> str:
    """Scheme, host and port of a webhook URL; its path and query (where webhooks keep their token) masked.

    >>> mask_webhook_url("https://hooks.slack.com/services/T0/B0/XYZ")
    'https://hooks.slack.com/***'
    """
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    host = f"[{host}]" if ":" in host else host
    hidden = parts.path.strip("/") or parts.query or parts.fragment or parts.username or parts.password
    return f"{parts.scheme}://{host}{port}" + (f"/{MASK}" if hidden else "")


def redact_channel(text: str, url: str | None = None, secrets: Iterable[str] = ()) -> str:
    """``text`` (an error message) without the channel's URL, its path segments, or the given secrets."""
    if not text:
        return text
    out = text
    if url:
        out = out.replace(url, mask_webhook_url(url))
        try:
            path = urlsplit(url).path
        except ValueError:
            path = ""
        for segment in sorted((s for s in path.split("/") if len(s) >= 6), key=len, reverse=True):
            out = out.replace(segment, MASK)
    for secret in sorted((s for s in secrets if s and len(s) >= 3), key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out


# --------------------------------------------------------------------------- validation


def parse_triggers(triggers: Iterable[str] | None) -> tuple[str, ...]:
    """Topics in TOPICS order; None means every topic except the test message (which always goes)."""
    if triggers is None:
        return tuple(t for t in TOPICS if t != "notify.test")
    wanted = [str(t).strip() for t in triggers if str(t).strip()]
    unknown = [t for t in wanted if t not in TOPICS]
    if unknown:
        raise NotifyError(f"unknown trigger(s) {', '.join(unknown)}: use topics from {', '.join(TOPICS)}")
    return tuple(t for t in TOPICS if t in wanted)


def validate_config(kind: ChannelKind | str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A channel's settings checked and normalised; NotifyError names every problem in one line."""
    try:
        kind = ChannelKind(kind)
    except ValueError:
        raise NotifyError(f"channel kind {kind!r} is not one of {', '.join(k.value for k in ChannelKind)}") from None
    problems: list[str] = []
    allowed = KIND_FIELDS[kind]
    for key in config:
        if key.lower() in SECRET_KEYS or key.lower() in ("username", "user", "login"):
            problems.append(
                f"{key}: credentials are never stored; name the environment variable that holds them "
                "(username_env, password_env)"
            )
        elif key not in allowed:
            problems.append(f"{key}: unknown setting for a {kind.value} channel (allowed: {', '.join(allowed)})")
    out: dict[str, Any] = {}
    if kind in (ChannelKind.WEBHOOK, ChannelKind.SLACK):
        url = str(config.get("url", "")).strip()
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            problems.append("url: give the receiver's http:// or https:// address")
        out["url"] = url
    else:
        host = str(config.get("host", "")).strip()
        if not host or any(c.isspace() for c in host):
            problems.append("host: give the SMTP server's host name")
        port = config.get("port", DEFAULT_SMTP_PORT)
        try:
            port = int(port)
            if not 1 <= port <= 65535:
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"port: {port!r} is not a port number (1..65535)")
            port = DEFAULT_SMTP_PORT
        sender = str(config.get("sender", "")).strip()
        if not _EMAIL.match(sender):
            problems.append("sender: give the From address (name@example.org)")
        to = config.get("to", [])
        if isinstance(to, str):
            to = [t for t in re.split(r"[,;\s]+", to) if t]
        to = [str(t).strip() for t in to]
        if not to or not all(_EMAIL.match(t) for t in to):
            problems.append("to: give one or more recipient addresses, separated by commas")
        starttls = config.get("starttls", True)
        if isinstance(starttls, str):
            starttls = starttls.strip().lower() in ("1", "true", "yes", "on")
        user_env = str(config.get("username_env", DEFAULT_SMTP_USER_ENV)).strip()
        pass_env = str(config.get("password_env", DEFAULT_SMTP_PASSWORD_ENV)).strip()
        for name, value in (("username_env", user_env), ("password_env", pass_env)):
            if not _ENV_NAME.match(value):
                problems.append(f"{name}: {value!r} is not an environment variable name")
        out.update(
            {
                "host": host,
                "port": port,
                "sender": sender,
                "to": to,
                "starttls": bool(starttls),
                "username_env": user_env,
                "password_env": pass_env,
            }
        )
    if problems:
        raise NotifyError(f"{kind.value} channel: {len(problems)} problem(s): " + "; ".join(problems))
    return out


def _clean_name(name: str) -> str:
    text = " ".join(str(name or "").split())
    if not text or len(text) > MAX_NAME_CHARS or not text.isprintable():
        raise NotifyError(f"a channel needs a name of 1..{MAX_NAME_CHARS} printable characters")
    return text


# --------------------------------------------------------------------------- channels


def channel_from_row(row: Mapping[str, Any]) -> Channel:
    return Channel(
        id=int(row["id"]),
        name=row["name"],
        kind=ChannelKind(row["kind"]),
        config=json.loads(row["config"]),
        triggers=tuple(json.loads(row["triggers"])),
        enabled=bool(row["enabled"]),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        removed_at=row["removed_at"],
    )


def list_channels(ops, *, include_removed: bool = False) -> list[Channel]:
    sql = f"SELECT * FROM {CHANNELS}" + ("" if include_removed else " WHERE removed_at IS NULL") + " ORDER BY id"
    with ops.connect() as db:
        return [channel_from_row(r) for r in db.query(sql)]


def get_channel(ops, ref: int | str) -> Channel:
    """A live channel by id or name; NotifyError when there is none."""
    for ch in list_channels(ops):
        if str(ch.id) == str(ref).strip() or ch.name == str(ref).strip():
            return ch
    raise NotifyError(f"no notification channel {ref!r}: see `python -m engine notify channel list`")


def add_channel(
    ops,
    *,
    name: str,
    kind: ChannelKind | str,
    config: Mapping[str, Any],
    triggers: Iterable[str] | None = None,
    enabled: bool = True,
    actor: Actor,
    now: float | None = None,
) -> Channel:
    """Create a channel (approver; audited, URL masked in the audit row). It receives messages enqueued from now
    on."""
    who = authorize(ops, actor, "notify.channel")
    name = _clean_name(name)
    cfg = validate_config(kind, config)
    kind = ChannelKind(kind)
    topics = parse_triggers(triggers)
    now = time.time() if now is None else now
    with ops.transaction() as db:
        if db.conn.execute(f"SELECT 1 FROM {CHANNELS} WHERE name = ? AND removed_at IS NULL", [name]).fetchone():
            raise NotifyError(f"a channel named {name!r} exists already: pick another name or edit that one")
        cur = db.execute(
            f"INSERT INTO {CHANNELS} (name, kind, config, triggers, enabled, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [name, kind.value, json.dumps(cfg), json.dumps(list(topics)), int(enabled), now, now],
        )
        channel_id = int(cur.lastrowid)
        channel = channel_from_row(next(iter(db.query(f"SELECT * FROM {CHANNELS} WHERE id = ?", [channel_id]))))
        ops.audit(who, "notify.channel.add", f"channel:{channel_id}", channel.public(), db=db)
    return channel


def update_channel(
    ops,
    ref: int | str,
    *,
    actor: Actor,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    triggers: Iterable[str] | None = None,
    enabled: bool | None = None,
    now: float | None = None,
) -> Channel:
    """Change a channel's name, settings, triggers or switch (approver; audited: what changed, URL masked).

    ``config`` given for a webhook without a ``url`` keeps the stored URL (a form never shows it back).
    """
    who = authorize(ops, actor, "notify.channel")
    current = get_channel(ops, ref)
    new_name = _clean_name(name) if name is not None else current.name
    cfg = current.config
    if config is not None:
        merged = dict(config)
        if current.kind is not ChannelKind.EMAIL and not str(merged.get("url", "")).strip():
            merged["url"] = current.config.get("url", "")
        cfg = validate_config(current.kind, merged)
    topics = parse_triggers(triggers) if triggers is not None else current.triggers
    on = current.enabled if enabled is None else bool(enabled)
    now = time.time() if now is None else now
    after = Channel(current.id, new_name, current.kind, cfg, topics, on, current.created_at, now, current.removed_at)
    before_pub, after_pub = current.public(), after.public()
    changes = {k: {"from": before_pub[k], "to": after_pub[k]} for k in after_pub if before_pub[k] != after_pub[k]}
    if cfg != current.config and "target" not in changes:
        changes["target"] = {"from": before_pub["target"], "to": after_pub["target"] + " (changed)"}
    if not changes:
        return current
    with ops.transaction() as db:
        if (
            new_name != current.name
            and db.conn.execute(
                f"SELECT 1 FROM {CHANNELS} WHERE name = ? AND removed_at IS NULL AND id != ?", [new_name, current.id]
            ).fetchone()
        ):
            raise NotifyError(f"a channel named {new_name!r} exists already: pick another name")
        db.execute(
            f"UPDATE {CHANNELS} SET name = ?, config = ?, triggers = ?, enabled = ?, updated_at = ? WHERE id = ?",
            [new_name, json.dumps(cfg), json.dumps(list(topics)), int(on), now, current.id],
        )
        ops.audit(who, "notify.channel.edit", f"channel:{current.id}", {"name": new_name, "changes": changes}, db=db)
    return after


def remove_channel(ops, ref: int | str, *, actor: Actor, now: float | None = None) -> Channel:
    """Remove a channel (approver; kept for the delivery log; its pending deliveries are skipped). Audited."""
    who = authorize(ops, actor, "notify.channel")
    current = get_channel(ops, ref)
    now = time.time() if now is None else now
    with ops.transaction() as db:
        db.execute(f"UPDATE {CHANNELS} SET removed_at = ?, updated_at = ? WHERE id = ?", [now, now, current.id])
        db.execute(
            f"UPDATE {DELIVERIES} SET state = ?, error = 'channel removed', updated_at = ? "
            "WHERE channel_id = ? AND state IN (?, ?)",
            [DeliveryState.SKIPPED, now, current.id, DeliveryState.PENDING, DeliveryState.SENDING],
        )
        ops.audit(who, "notify.channel.remove", f"channel:{current.id}", current.public(), db=db)
    return current


def smtp_credentials(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(user, password) from the environment variables an e-mail channel names; None when both are unset."""
    env = os.environ if environ is None else environ
    user = env.get(str(config.get("username_env", DEFAULT_SMTP_USER_ENV)), "")
    password = env.get(str(config.get("password_env", DEFAULT_SMTP_PASSWORD_ENV)), "")
    if not user and not password:
        return None
    return user, password


# --------------------------------------------------------------------------- console URL


def console_url(ops, environ: Mapping[str, str] | None = None) -> str:
    """The base URL messages link to: the stored setting, else DISCOVERY_CONSOLE_URL, else localhost."""
    env = os.environ if environ is None else environ
    stored = ops.get_setting(CONSOLE_URL_SETTING)
    return str(stored or env.get(CONSOLE_URL_ENV) or DEFAULT_CONSOLE_URL).rstrip("/")


def set_console_url(ops, url: str, *, actor: Actor) -> str:
    """Store the console's base URL for links (approver; audited); an empty value falls back to the environment."""
    who = authorize(ops, actor, "notify.settings")
    url = str(url or "").strip().rstrip("/")
    if url:
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise NotifyError(f"console URL {url!r}: give the http:// or https:// address operators open")
    with ops.transaction() as db:
        ops.set_setting(CONSOLE_URL_SETTING, url or None, db=db)
        ops.audit(who, "notify.console_url", url or "(environment)", {}, db=db)
    return url


def set_repeat_interval(ops, seconds: float, *, actor: Actor) -> float:
    """How often a still-firing alert is told again (0: never); approver; audited with the setting."""
    who = authorize(ops, actor, "notify.settings")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= float(seconds) < float("inf"):
        raise NotifyError(f"a repeat interval is 0 (never) or a number of seconds (got {seconds!r})")
    with ops.transaction() as db:
        ops.set_setting(REPEAT_SETTING, float(seconds), db=db)
        ops.audit(who, "notify.repeat_interval", REPEAT_SETTING, {"seconds": float(seconds)}, db=db)
    return float(seconds)


def page_url(base: str, link: str | None) -> str:
    """``base`` + ``/`` + the message's page path; the base alone when the message names no page."""
    if not link:
        return base
    if "://" in link:
        return link
    return f"{base.rstrip('/')}/{link.lstrip('/')}"


# --------------------------------------------------------------------------- silences


def _silence(row: Mapping[str, Any]) -> Silence:
    return Silence(
        id=int(row["id"]),
        rule_id=row["rule_id"],
        until=float(row["until"]),
        reason=row["reason"],
        actor=row["actor"],
        created_at=float(row["created_at"]),
        lifted_at=row["lifted_at"],
        lifted_by=row["lifted_by"],
    )


def add_silence(
    ops, rule_id: str, *, duration_s: float, reason: str, actor: Actor, now: float | None = None
) -> Silence:
    """Mute an alert rule's messages for ``duration_s`` (at most MAX_SILENCE_S; operator). Audited."""
    who = authorize(ops, actor, "notify.silence")
    rule_id = str(rule_id or "").strip()
    if not rule_id:
        raise NotifyError("a silence needs the alert rule's id (see `python -m engine alerts`)")
    if not isinstance(duration_s, (int, float)) or not 0 < float(duration_s) <= MAX_SILENCE_S:
        raise NotifyError(f"a silence lasts more than 0 s and at most {MAX_SILENCE_S / 86400:g} days")
    reason = " ".join(str(reason or "").split())
    if not reason:
        raise NotifyError("a silence needs a reason (one line: why nobody needs to hear of this rule now)")
    now = time.time() if now is None else now
    until = now + float(duration_s)
    with ops.transaction() as db:
        cur = db.execute(
            f"INSERT INTO {SILENCES} (rule_id, until, reason, actor, created_at) VALUES (?, ?, ?, ?, ?)",
            [rule_id, until, reason, str(who), now],
        )
        sid = int(cur.lastrowid)
        ops.audit(
            who, "notify.silence.add", f"rule:{rule_id}", {"silence": sid, "until": until, "reason": reason}, db=db
        )
    return Silence(sid, rule_id, until, reason, str(who), now)


def lift_silence(ops, silence_id: int, *, actor: Actor, now: float | None = None) -> Silence:
    """End a silence early (operator; audited)."""
    who = authorize(ops, actor, "notify.silence")
    now = time.time() if now is None else now
    with ops.transaction() as db:
        rows = list(db.query(f"SELECT * FROM {SILENCES} WHERE id = ?", [int(silence_id)]))
        if not rows:
            raise NotifyError(f"no silence {silence_id}: see `python -m engine notify silence list`")
        s = _silence(rows[0])
        if not s.active(now):
            raise NotifyError(f"silence {silence_id} of rule {s.rule_id} has already ended")
        db.execute(f"UPDATE {SILENCES} SET lifted_at = ?, lifted_by = ? WHERE id = ?", [now, str(who), s.id])
        ops.audit(who, "notify.silence.lift", f"rule:{s.rule_id}", {"silence": s.id}, db=db)
    return Silence(s.id, s.rule_id, s.until, s.reason, s.actor, s.created_at, now, str(who))


def list_silences(ops, *, now: float | None = None, active_only: bool = False) -> list[Silence]:
    now = time.time() if now is None else now
    with ops.connect() as db:
        rows = [_silence(r) for r in db.query(f"SELECT * FROM {SILENCES} ORDER BY id DESC LIMIT 200")]
    return [s for s in rows if s.active(now)] if active_only else rows


def silenced_rules(silences: Sequence[Silence], now: float) -> dict[str, Silence]:
    """The active silence of each rule (the one lasting longest)."""
    out: dict[str, Silence] = {}
    for s in silences:
        if s.active(now) and (s.rule_id not in out or s.until > out[s.rule_id].until):
            out[s.rule_id] = s
    return out


# --------------------------------------------------------------------------- the delivery log


def deliveries(
    ops,
    *,
    limit: int = 200,
    channel_id: int | None = None,
    state: str | None = None,
    topic: str | None = None,
) -> list[DeliveryRow]:
    """The delivery log, newest first, optionally filtered by channel, state and topic."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("d.channel_id", channel_id), ("d.state", state), ("m.topic", topic)):
        if value is not None:
            where.append(f"{column} = ?")  # column names come from this fixed tuple
            params.append(value)
    sql = (
        f"SELECT d.*, c.name AS channel, m.topic, m.subject, m.key FROM {DELIVERIES} d "
        f"JOIN {CHANNELS} c ON c.id = d.channel_id JOIN outbox m ON m.id = d.message_id"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY d.id DESC LIMIT ?"
    params.append(int(limit))
    with ops.connect() as db:
        rows = list(db.query(sql, params))
    return [
        DeliveryRow(
            id=r["id"],
            message_id=r["message_id"],
            channel_id=r["channel_id"],
            channel=r["channel"],
            topic=r["topic"],
            subject=r["subject"],
            key=r["key"],
            state=DeliveryState(r["state"]),
            attempts=r["attempts"],
            status=r["status"],
            error=r["error"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            next_at=r["next_at"],
            sent_at=r["sent_at"],
        )
        for r in rows
    ]


def attempts_of(ops, delivery_id: int) -> list[dict[str, Any]]:
    with ops.connect() as db:
        return list(db.query(f"SELECT * FROM {ATTEMPTS} WHERE delivery_id = ? ORDER BY id", [int(delivery_id)]))
