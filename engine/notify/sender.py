"""The sender: outbox messages fanned out to channels and delivered with retries, backoff and a log.

One round (``send_round``; ``python -m engine notify send``, or every interval
in a worker, job kind ``notify.send``):

1. **Fan out.** Every outbox message past the cursor becomes one delivery per
   channel that existed when it was enqueued: pending when the channel wants
   its topic, skipped (with the reason in the log) when the channel is off,
   its trigger is off, or the message's alert rule is silenced. The cursor
   moves in the same transaction, so each message is fanned out once.
2. **Deliver.** Each due delivery is claimed (compare-and-set: pending ->
   sending, attempts + 1) and sent with its message's idempotency key. The
   outcome is written with one attempt row: sent, or pending again after an
   exponential backoff (BASE_BACKOFF_S doubling up to MAX_BACKOFF_S), or
   failed once the message is older than GIVE_UP_AFTER_S. A channel that
   fails once in a round is not tried again in that round (its other messages
   wait their turn, in order).

Nothing is lost. A receiver down for an hour is retried at most
MAX_BACKOFF_S apart and gets every message once it answers. A sender that
dies between sending and marking leaves the delivery ``sending``; after
CLAIM_TIMEOUT_S the next round sends it again with the same key
(at-least-once; a receiver that honours the key keeps one copy).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from engine.core.access import Actor
from engine.core.errors import ConfigError
from engine.jobs.queue import Control, Job, JobContext, JobState, JobStore, launch_worker
from engine.monitoring.windows import parse_window
from engine.notify.channels import DeliveryFailed, deliver, short_error
from engine.notify.store import (
    ATTEMPTS,
    CHANNELS,
    DELIVERIES,
    Channel,
    DeliveryState,
    channel_from_row,
    console_url,
    get_channel,
    list_channels,
    list_silences,
    silenced_rules,
)
from engine.store.access import authorize
from engine.store.outbox import TABLE as OUTBOX
from engine.store.outbox import Message, enqueue, message_from_row

KIND = "notify.send"
BASE_BACKOFF_S = 30.0
MAX_BACKOFF_S = 900.0
#: a delivery left ``sending`` this long was being sent by a sender that died: send it again
CLAIM_TIMEOUT_S = 120.0
#: a message still undelivered this long after its event is marked failed (shown, no longer retried)
GIVE_UP_AFTER_S = 3 * 86_400.0
#: messages fanned out per round (the rest next round)
FAN_OUT_BATCH = 1000
DEFAULT_INTERVAL_S = 30.0
MIN_INTERVAL_S = 2.0
ACTIVE_STATES = tuple(s for s in JobState if s.is_active())


def backoff_s(attempts: int) -> float:
    """Wait before attempt ``attempts + 1``: 30 s, 60 s, 120 s, ... at most MAX_BACKOFF_S."""
    return min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** max(0, attempts - 1))


def alert_rules_of(message: Message) -> list[str]:
    """The alert rules a message is about (silences apply to them): one, or several in a grouped reminder."""
    if not message.topic.startswith("alert."):
        return []
    many = message.facts.get("rule ids")
    if many:
        return [r.strip() for r in str(many).split(",") if r.strip()]
    rule = message.facts.get("rule id")
    return [str(rule)] if rule is not None else []


def skip_reason(channel: Channel, message: Message, silenced: Mapping[str, object]) -> str | None:
    """Why ``channel`` does not get ``message`` (None: it does)."""
    if channel.removed_at is not None:
        return "channel removed"
    if message.channel_id is not None:
        return None if message.channel_id == channel.id else "for another channel"
    if not channel.enabled:
        return "channel switched off"
    if not channel.wants(message.topic):
        return "trigger off for this channel"
    rules = alert_rules_of(message)
    if rules and all(r in silenced for r in rules):
        return "rule silenced"
    return None


@dataclass
class RoundReport:
    """What one round did, for the CLI line and the job's message."""

    fanned_out: int = 0
    skipped: int = 0
    sent: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    waiting: int = 0

    def describe(self) -> str:
        return (
            f"{self.sent} sent, {self.failed_attempts} failed attempt(s), {self.given_up} given up, "
            f"{self.waiting} waiting; {self.fanned_out} new deliveries ({self.skipped} skipped)"
        )


def fan_out(ops, now: float, report: RoundReport | None = None) -> RoundReport:
    """Create the deliveries of messages past the cursor (one transaction with the cursor's move)."""
    report = report or RoundReport()
    silenced = silenced_rules(list_silences(ops, now=now), now)
    with ops.transaction() as db:
        row = db.conn.execute("SELECT message_id FROM notify_cursor WHERE id = 1").fetchone()
        cursor = int(row[0]) if row and row[0] is not None else 0
        messages = [
            message_from_row(r)
            for r in db.query(f"SELECT * FROM {OUTBOX} WHERE id > ? ORDER BY id LIMIT ?", [cursor, FAN_OUT_BATCH])
        ]
        if not messages:
            return report
        channels = list_channels_in(db)
        for m in messages:
            for ch in channels:
                if m.channel_id is None and ch.created_at > m.at:
                    continue  # a channel added later does not get older news
                if ch.removed_at is not None and ch.removed_at <= m.at:
                    continue
                why = skip_reason(ch, m, silenced)
                if why == "for another channel":
                    continue
                state = DeliveryState.SKIPPED if why else DeliveryState.PENDING
                cur = db.execute(
                    f"INSERT INTO {DELIVERIES} (message_id, channel_id, state, next_at, error, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(message_id, channel_id) DO NOTHING",
                    [m.id, ch.id, state, now, why or "", now, now],
                )
                if cur.rowcount == 1:
                    report.fanned_out += 1
                    report.skipped += int(bool(why))
        db.execute(
            "INSERT INTO notify_cursor (id, message_id) VALUES (1, ?) "
            "ON CONFLICT(id) DO UPDATE SET message_id = excluded.message_id",
            [messages[-1].id],
        )
    return report


def list_channels_in(db) -> list[Channel]:
    """Every channel (removed ones too: a message from before the removal still lists them) on ``db``."""
    return [channel_from_row(r) for r in db.query(f"SELECT * FROM {CHANNELS} ORDER BY id")]


def _claim(ops, delivery: Mapping, now: float) -> bool:
    with ops.transaction() as db:
        cur = db.execute(
            f"UPDATE {DELIVERIES} SET state = ?, claimed_at = ?, attempts = attempts + 1, updated_at = ? "
            "WHERE id = ? AND state = ? AND attempts = ?",
            [DeliveryState.SENDING, now, now, delivery["id"], delivery["state"], delivery["attempts"]],
        )
        return cur.rowcount == 1


def _record(
    ops, delivery_id: int, attempts: int, message: Message, now: float, *, ok: bool, status: str, error: str
) -> DeliveryState:
    if ok:
        state, next_at = DeliveryState.SENT, now
    elif now - message.at >= GIVE_UP_AFTER_S:
        state, next_at = DeliveryState.FAILED, now
    else:
        state, next_at = DeliveryState.PENDING, now + backoff_s(attempts)
    with ops.transaction() as db:
        db.execute(
            f"UPDATE {DELIVERIES} SET state = ?, next_at = ?, sent_at = ?, status = ?, error = ?, updated_at = ? "
            "WHERE id = ? AND state = ? AND attempts = ?",
            [state, next_at, now if ok else None, status, error, now, delivery_id, DeliveryState.SENDING, attempts],
        )
        db.execute(
            f"INSERT INTO {ATTEMPTS} (delivery_id, at, ok, status, error) VALUES (?, ?, ?, ?, ?)",
            [delivery_id, now, int(ok), status, error],
        )
    return state


def send_round(
    ops,
    *,
    now: float | None = None,
    environ: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
    only_message: int | None = None,
    limit: int = 500,
) -> RoundReport:
    """Fan out, then deliver every due delivery once (``only_message``: just that message's)."""
    now = time.time() if now is None else now
    report = fan_out(ops, now)
    base = console_url(ops, environ)
    sql = (
        f"SELECT d.*, m.key, m.topic, m.subject, m.facts, m.link, m.at AS m_at, m.channel_id AS m_channel "
        f"FROM {DELIVERIES} d JOIN {OUTBOX} m ON m.id = d.message_id "
        "WHERE ((d.state = ? AND d.next_at <= ?) OR (d.state = ? AND d.claimed_at <= ?))"
    )
    params: list = [DeliveryState.PENDING, now, DeliveryState.SENDING, now - CLAIM_TIMEOUT_S]
    if only_message is not None:
        sql += " AND d.message_id = ?"
        params.append(int(only_message))
    sql += " ORDER BY d.id LIMIT ?"
    params.append(int(limit))
    with ops.connect() as db:
        due = list(db.query(sql, params))
    channels = {c.id: c for c in list_channels(ops, include_removed=True)}
    down: set[int] = set()
    for d in due:
        channel = channels.get(d["channel_id"])
        if channel is None or channel.removed_at is not None or d["channel_id"] in down:
            report.waiting += 1
            continue
        if not _claim(ops, d, now):
            continue  # another sender took it
        attempts = d["attempts"] + 1
        message = Message(
            id=d["message_id"],
            key=d["key"],
            topic=d["topic"],
            subject=d["subject"],
            facts=json.loads(d["facts"] or "{}"),
            link=d["link"],
            at=float(d["m_at"]),
            channel_id=d["m_channel"],
        )
        try:
            status = deliver(channel, message, base, environ=environ, client=client)
        except DeliveryFailed as exc:
            state = _record(
                ops, d["id"], attempts, message, now, ok=False, status=exc.status, error=short_error(str(exc))
            )
            down.add(channel.id)
            report.failed_attempts += 1
            report.given_up += int(state is DeliveryState.FAILED)
            report.waiting += int(state is DeliveryState.PENDING)
            continue
        _record(ops, d["id"], attempts, message, now, ok=True, status=status, error="")
        report.sent += 1
    return report


# --------------------------------------------------------------------------- the sender in a worker


def parse_interval(value: str | float) -> float:
    seconds = parse_window(value)
    if seconds < MIN_INTERVAL_S:
        raise ConfigError(f"sender interval {value!r} is shorter than {MIN_INTERVAL_S:g}s: use e.g. 10s, 30s or 1m")
    return seconds


def run_sender_job(ctx: JobContext) -> dict:
    """Handler of ``notify.send``: a round, wait the interval, repeat until cancelled (or ``rounds``)."""
    interval_s = parse_interval(ctx.params.get("interval_s", DEFAULT_INTERVAL_S))
    rounds = ctx.params.get("rounds")
    ctx.poll_s = max(ctx.poll_s, min(2.0, interval_s / 2))
    done = 0
    totals = RoundReport()
    while rounds is None or done < int(rounds):
        r = send_round(ctx.ops, now=ctx.clock())
        done += 1
        totals.sent += r.sent
        totals.failed_attempts += r.failed_attempts
        message = f"round {done}: {r.describe()}"
        ctx.checkpoint(done=done, total=int(rounds) if rounds is not None else 0, message=message)
        if rounds is not None and done >= int(rounds):
            break
        ctx.wait(interval_s, message=message)
    return {"rounds": done, "sent": totals.sent, "failed_attempts": totals.failed_attempts}


def active_sender(ops, *, clock: Callable[[], float] = time.time) -> Job | None:
    """The running sender job, after marking dead the ones whose worker is gone."""
    store = JobStore(ops, clock=clock)
    store.reap(kind=KIND)
    jobs = store.list(kind=KIND, states=ACTIVE_STATES, limit=1)
    return jobs[0] if jobs else None


def start_sender(
    settings,
    ops,
    *,
    interval: str | float = DEFAULT_INTERVAL_S,
    actor: Actor,
    launch: Callable[..., int] = launch_worker,
) -> tuple[Job, bool]:
    """Start the periodic sender in a worker unless one runs (operator). Returns (job, started_now). Audited;
    its rounds then act as the worker on this authorization."""
    who = authorize(ops, actor, "notify.send")
    interval_s = parse_interval(interval)
    current = active_sender(ops)
    if current is not None:
        return current, False
    store = JobStore(ops)
    job = store.submit(KIND, {"interval_s": interval_s}, actor=str(who))
    ops.audit(who, "notify.sender.start", f"job:{job.id}", {"interval_s": interval_s})
    launch(settings, job.id)
    return store.get(job.id), True


def stop_sender(ops, *, actor: Actor) -> Job | None:
    """Ask the running sender to stop (operator; at its next heartbeat). None when none runs. Audited."""
    who = authorize(ops, actor, "notify.send")
    current = active_sender(ops)
    if current is None:
        return None
    job = JobStore(ops).request(current.id, Control.CANCEL, actor=str(who))
    ops.audit(who, "notify.sender.stop", f"job:{job.id}", {})
    return job


def send_now(ops, *, actor: Actor, **kw) -> RoundReport:
    """One sender round now on a person's request (operator): the CLI's `notify send` and the page's Send now.
    The sender worker's own rounds call ``send_round`` (started by an authorized person)."""
    authorize(ops, actor, "notify.send")
    return send_round(ops, **kw)


def describe_sender(job: Job | None) -> str:
    if job is None:
        return "the sender is not running: start it (or run `python -m engine notify send`) to deliver messages"
    return f"the sender runs in job {job.id} ({job.state}): {job.message or 'starting'}"


def send_test(ops, channel_ref: int | str, *, actor: Actor, now: float | None = None, **kw) -> RoundReport:
    """Enqueue a test message for one channel (operator; audited) and deliver it at once; the round's report.

    It goes through the outbox and the delivery log like every message, so a failed test shows its error
    there and is retried like the rest.
    """
    who = authorize(ops, actor, "notify.test")
    channel = get_channel(ops, channel_ref)
    now = time.time() if now is None else now
    with ops.transaction() as db:
        key = f"test:{channel.id}:{uuid.uuid4().hex}"
        enqueue(
            db,
            topic="notify.test",
            key=key,
            subject=f"Test message for channel {channel.name}",
            facts={"channel": channel.name, "sent by": str(who), "kind": channel.kind.label},
            link="notifications",
            at=now,
            channel_id=channel.id,
        )
        message_id = int(db.conn.execute(f"SELECT id FROM {OUTBOX} WHERE key = ?", [key]).fetchone()[0])
        ops.audit(who, "notify.channel.test", f"channel:{channel.id}", {"message": message_id}, db=db)
    return send_round(ops, now=now, only_message=message_id, **kw)
