"""`python -m engine notify ...`: channels, the delivery log, silences and the sender.

``notify channel add|list|edit|remove|test`` configures where messages go
(webhook URLs are shown masked; SMTP credentials are never flags, only names of
environment variables). ``notify send`` runs one sender round (or one every
``--every``); ``notify sender start|stop|status`` runs it in a worker.
``notify deliveries`` prints the delivery log; ``notify silence add|list|lift``
mutes an alert rule for a time. Every change is audited.
"""

from __future__ import annotations

import argparse
import json
import time

from engine.cli.args import LIMIT, ROW_ID, duration, whole
from engine.cli.common import actor, open_ops
from engine.core.settings import load_settings
from engine.monitoring.windows import format_window, parse_window
from engine.notify import sender as notify_sender
from engine.notify import store as ns
from engine.store.outbox import DEFAULT_REPEAT_S, REPEAT_SETTING, TOPICS

KINDS = tuple(k.value for k in ns.ChannelKind)
STATES = tuple(s.value for s in ns.DeliveryState)
SILENCE = duration(60.0, ns.MAX_SILENCE_S)
PORT = whole(1, 65535)
INTERVAL = duration(notify_sender.MIN_INTERVAL_S, 86_400.0)
REPEAT = duration(60.0, 7 * 86_400.0)


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at)) if at else "—"


def _triggers(text: str | None) -> list[str] | None:
    if text is None or text.strip().lower() == "all":
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def _config(args: argparse.Namespace) -> dict:
    if args.kind in ("webhook", "slack"):
        return {"url": args.url or ""}
    cfg: dict = {"host": args.host or "", "sender": args.sender or "", "to": args.to or ""}
    for flag, key in (
        ("port", "port"),
        ("username_env", "username_env"),
        ("password_env", "password_env"),
    ):
        if getattr(args, flag) is not None:
            cfg[key] = getattr(args, flag)
    cfg["starttls"] = not args.no_starttls
    return cfg


def cmd_channel(args: argparse.Namespace) -> int:
    ops = open_ops()
    who = actor(ops)
    if args.channel_command == "add":
        ch = ns.add_channel(
            ops, name=args.name, kind=args.kind, config=_config(args), triggers=_triggers(args.triggers), actor=who
        )
        print(f"channel {ch.id} ({ch.name}) added: {ch.kind.label} to {ch.target()}, {len(ch.triggers)} trigger(s)")
        return 0
    if args.channel_command == "list":
        channels = ns.list_channels(ops)
        if args.json:
            print(json.dumps([c.public() for c in channels], indent=2))
            return 0
        if not channels:
            print("no channels: add one with `python -m engine notify channel add --name N --kind webhook --url U`")
        for c in channels:
            state = "on" if c.enabled else "off"
            print(f"{c.id:>4}  {c.name}  [{c.kind.label}, {state}]  {c.target()}")
            print(f"      triggers: {', '.join(TOPICS[t] for t in c.triggers) or 'none'}")
        return 0
    if args.channel_command == "edit":
        current = ns.get_channel(ops, args.channel)
        config = None
        if args.url is not None:
            config = {**current.config, "url": args.url}
        enabled = True if args.on else False if args.off else None
        ch = ns.update_channel(
            ops,
            args.channel,
            actor=who,
            name=args.name,
            config=config,
            triggers=_triggers(args.triggers),
            enabled=enabled,
        )
        state = "on" if ch.enabled else "off"
        print(f"channel {ch.id} ({ch.name}): {state}, {len(ch.triggers)} trigger(s), {ch.target()}")
        return 0
    if args.channel_command == "remove":
        ch = ns.remove_channel(ops, args.channel, actor=who)
        print(f"channel {ch.id} ({ch.name}) removed; its log is kept")
        return 0
    report = notify_sender.send_test(ops, args.channel, actor=who)
    row = ns.deliveries(ops, limit=1, channel_id=ns.get_channel(ops, args.channel).id)
    outcome = row[0] if row else None
    if outcome is not None and outcome.state is ns.DeliveryState.SENT:
        print(f"test message sent (status {outcome.status})")
        return 0
    error = outcome.error if outcome is not None else report.describe()
    print(f"test message not delivered: {error}; it is retried with the rest (see `notify deliveries`)")
    return 1


def cmd_deliveries(args: argparse.Namespace) -> int:
    ops = open_ops()
    channel_id = ns.get_channel(ops, args.channel).id if args.channel else None
    rows = ns.deliveries(ops, limit=args.limit, channel_id=channel_id, state=args.state, topic=args.topic)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "channel": r.channel,
                        "topic": r.topic,
                        "subject": r.subject,
                        "state": r.state.value,
                        "attempts": r.attempts,
                        "status": r.status,
                        "error": r.error,
                        "created_at": r.created_at,
                        "sent_at": r.sent_at,
                        "next_at": r.next_at,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return 0
    if not rows:
        print("no deliveries yet")
    for r in rows:
        extra = f" next try {_when(r.next_at)}" if r.state is ns.DeliveryState.PENDING and r.attempts else ""
        print(
            f"{r.id:>5}  {_when(r.created_at)}  {r.channel}  {r.state.value}  attempts {r.attempts}"
            f"  {r.status or '—'}  {TOPICS.get(r.topic, r.topic)}: {r.subject}"
            + (f"  error: {r.error}" if r.error else "")
            + extra
        )
    return 0


def cmd_silence(args: argparse.Namespace) -> int:
    ops = open_ops()
    if args.silence_command == "add":
        s = ns.add_silence(ops, args.rule, duration_s=parse_window(args.duration), reason=args.reason, actor=actor(ops))
        print(f"silence {s.id}: rule {s.rule_id} muted until {_when(s.until)} ({s.reason})")
        return 0
    if args.silence_command == "lift":
        s = ns.lift_silence(ops, args.silence, actor=actor(ops))
        print(f"silence {s.id} of rule {s.rule_id} lifted")
        return 0
    now = time.time()
    silences = ns.list_silences(ops, now=now, active_only=not args.all)
    if not silences:
        print("no active silences" if not args.all else "no silences")
    for s in silences:
        state = "active" if s.active(now) else "ended"
        print(f"{s.id:>4}  rule {s.rule_id}  until {_when(s.until)}  {state}  by {s.actor}: {s.reason}")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    ops = open_ops()
    who = actor(ops)
    if args.every is None:
        print(notify_sender.send_now(ops, actor=who).describe())
        return 0
    interval = parse_window(args.every)
    while True:  # until Ctrl-C (main turns it into exit code 130); each round re-checks the role
        print(f"{_when(time.time())}  {notify_sender.send_now(ops, actor=who).describe()}", flush=True)
        time.sleep(interval)


def cmd_sender(args: argparse.Namespace) -> int:
    ops = open_ops()
    if args.sender_command == "start":
        job, started = notify_sender.start_sender(load_settings(), ops, interval=args.interval, actor=actor(ops))
        print(("started: " if started else "already running: ") + notify_sender.describe_sender(job))
        return 0
    if args.sender_command == "stop":
        stopped = notify_sender.stop_sender(ops, actor=actor(ops))
        print(f"stop requested for job {stopped.id}" if stopped else "the sender is not running")
        return 0
    print(notify_sender.describe_sender(notify_sender.active_sender(ops)))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    ops = open_ops()
    if args.console_url is not None:
        ns.set_console_url(ops, args.console_url, actor=actor(ops))
    if args.repeat is not None or args.no_repeat:
        ns.set_repeat_interval(ops, 0.0 if args.no_repeat else parse_window(args.repeat), actor=actor(ops))
    repeat = float(ops.get_setting(REPEAT_SETTING, DEFAULT_REPEAT_S) or 0)
    print(f"console URL: {ns.console_url(ops)}")
    print(f"firing alerts repeated every: {format_window(repeat) if repeat else 'never'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "notify",
        help="notifications: channels, delivery log, silences, the sender",
        description="Tell people about alerts, rollouts, tuning studies and dead workers: webhook, Slack and "
        "e-mail channels with triggers per channel, a sender with retries and a delivery log, silences.",
    )
    sub = p.add_subparsers(dest="notify_command", metavar="ACTION")
    sub.required = True

    ch = sub.add_parser("channel", help="add, list, edit, remove or test a channel")
    chs = ch.add_subparsers(dest="channel_command", metavar="ACTION")
    chs.required = True
    add = chs.add_parser("add", help="add a webhook, Slack or e-mail channel")
    add.add_argument("--name", required=True, help="what operators call it")
    add.add_argument("--kind", required=True, choices=KINDS, help="webhook (JSON), slack, or email (SMTP)")
    add.add_argument("--url", help="webhook/slack: the receiver's URL (stored, shown masked)")
    add.add_argument("--host", help="email: SMTP server host")
    add.add_argument("--port", type=PORT, help=f"email: SMTP port (default {ns.DEFAULT_SMTP_PORT})")
    add.add_argument("--sender", help="email: the From address")
    add.add_argument("--to", help="email: recipients, separated by commas")
    add.add_argument("--no-starttls", action="store_true", help="email: do not use STARTTLS (trusted server only)")
    add.add_argument(
        "--username-env", help=f"email: variable holding the SMTP user (default {ns.DEFAULT_SMTP_USER_ENV})"
    )
    add.add_argument(
        "--password-env", help=f"email: variable holding the SMTP password (default {ns.DEFAULT_SMTP_PASSWORD_ENV})"
    )
    add.add_argument("--triggers", help="comma-separated topics (default all; see `notify topics`)")
    add.set_defaults(func=cmd_channel)
    lst = chs.add_parser("list", help="the channels, URLs masked")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=cmd_channel)
    edit = chs.add_parser("edit", help="change a channel's name, URL, triggers or switch it on/off")
    edit.add_argument("channel", help="channel id or name")
    edit.add_argument("--name", help="new name")
    edit.add_argument("--url", help="new URL (webhook/slack)")
    edit.add_argument("--triggers", help="comma-separated topics, or all")
    onoff = edit.add_mutually_exclusive_group()
    onoff.add_argument("--on", action="store_true", help="switch the channel on")
    onoff.add_argument("--off", action="store_true", help="switch the channel off (its messages are skipped)")
    edit.set_defaults(func=cmd_channel)
    rm = chs.add_parser("remove", help="remove a channel (its delivery log is kept)")
    rm.add_argument("channel", help="channel id or name")
    rm.set_defaults(func=cmd_channel)
    test = chs.add_parser("test", help="send a test message now (logged like any other)")
    test.add_argument("channel", help="channel id or name")
    test.set_defaults(func=cmd_channel)

    d = sub.add_parser("deliveries", help="the delivery log: state, attempts, status and error per message")
    d.add_argument("--channel", help="only this channel (id or name)")
    d.add_argument("--state", choices=STATES, help="only deliveries in this state")
    d.add_argument("--topic", choices=tuple(TOPICS), help="only this topic")
    d.add_argument("--limit", type=LIMIT, default=50, help="how many (newest first; default 50)")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=cmd_deliveries)

    s = sub.add_parser("silence", help="mute an alert rule's messages for a time (audited)")
    ss = s.add_subparsers(dest="silence_command", metavar="ACTION")
    ss.required = True
    sa = ss.add_parser("add", help="mute a rule for a duration")
    sa.add_argument("rule", help="the alert rule's id")
    sa.add_argument("--for", dest="duration", type=SILENCE, required=True, help="how long, e.g. 2h")
    sa.add_argument("--reason", required=True, help="why (one line)")
    sa.set_defaults(func=cmd_silence)
    sl = ss.add_parser("list", help="active silences (--all: every one)")
    sl.add_argument("--all", action="store_true", help="include ended silences")
    sl.set_defaults(func=cmd_silence)
    sx = ss.add_parser("lift", help="end a silence now")
    sx.add_argument("silence", type=ROW_ID, help="silence id")
    sx.set_defaults(func=cmd_silence)

    send = sub.add_parser("send", help="run the sender once (or every --every) in this process")
    send.add_argument("--every", type=INTERVAL, help="repeat at this interval until Ctrl-C, e.g. 30s")
    send.set_defaults(func=cmd_send)

    sender = sub.add_parser("sender", help="run the sender in a worker: start, stop, status")
    sender.add_argument("sender_command", choices=("start", "stop", "status"), help="what to do")
    sender.add_argument("--interval", type=INTERVAL, default="30s", help="start: time between two rounds (default 30s)")
    sender.set_defaults(func=cmd_sender)

    st = sub.add_parser("settings", help="show or set the console URL of links and the repeat interval")
    st.add_argument("--console-url", help=f"base URL of links (empty: {ns.CONSOLE_URL_ENV} or localhost)")
    rep = st.add_mutually_exclusive_group()
    rep.add_argument("--repeat", type=REPEAT, help="repeat a firing alert every (e.g. 4h)")
    rep.add_argument("--no-repeat", action="store_true", help="never repeat a firing alert")
    st.set_defaults(func=cmd_settings)

    t = sub.add_parser("topics", help="the topics a channel can be triggered by")
    t.set_defaults(func=lambda args: print("\n".join(f"{k}  {v}" for k, v in TOPICS.items())) or 0)
