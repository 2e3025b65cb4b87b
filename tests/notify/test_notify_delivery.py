"""The sender against real receivers on 127.0.0.1: a JSON webhook that honours Idempotency-Key and an SMTP
server with STARTTLS and a login. A receiver down for an hour gets everything once afterwards; a sender that
dies between sending and marking sends again with the same key; secrets never reach the log or the audit."""

from __future__ import annotations

import json

import httpx
import pytest

from engine.cli.main import main
from engine.core.errors import DiscoveryError
from engine.notify import sender as ns_sender
from engine.notify import store as ns
from engine.store.outbox import enqueue
from tests.support.actors import ADMIN
from tests.support.receivers import SmtpReceiver, WebhookReceiver, self_signed

T0 = 1_900_000_000.0


@pytest.fixture
def hook():
    r = WebhookReceiver().start()
    try:
        yield r
    finally:
        r.stop()


def put(ops, n: int, *, topic: str = "rollout.started", at: float = T0, prefix: str = "ev") -> list[str]:
    keys = []
    with ops.transaction() as db:
        for i in range(n):
            key = f"{prefix}:{i}"
            enqueue(
                db, topic=topic, key=key, subject=f"event {i}", facts={"n": i, "rule id": "r1"}, link="rollout", at=at
            )
            keys.append(key)
    return keys


def add_hook(ops, url: str, name: str = "hook", **kw) -> ns.Channel:
    return ns.add_channel(ops, name=name, kind="webhook", config={"url": url}, actor=ADMIN, now=T0 - 10, **kw)


def test_a_message_reaches_the_webhook_with_its_key_figures_and_console_link(ops, hook, monkeypatch):
    monkeypatch.setenv(ns.CONSOLE_URL_ENV, "https://ops.example.org/console/")
    add_hook(ops, hook.url)
    put(ops, 1)
    report = ns_sender.send_round(ops, now=T0 + 1)
    assert report.sent == 1
    [post] = hook.posts
    assert post["key"].startswith("dops-") and post["body"]["key"] == post["key"]
    assert post["body"]["topic"] == "rollout.started" and post["body"]["subject"] == "event 0"
    assert post["body"]["link"] == "https://ops.example.org/console/rollout"
    assert post["body"]["facts"]["n"] == "0"
    [row] = ns.deliveries(ops)
    assert row.state is ns.DeliveryState.SENT and row.attempts == 1 and row.status == "200"
    # a second round sends nothing more
    assert ns_sender.send_round(ops, now=T0 + 2).sent == 0 and len(hook.posts) == 1


def test_a_receiver_down_for_an_hour_gets_every_message_once_afterwards(ops, hook):
    add_hook(ops, hook.url)
    hook.stop()
    keys = put(ops, 5)
    for minute in range(0, 61, 5):  # a sender round every 5 minutes while the receiver is down
        ns_sender.send_round(ops, now=T0 + minute * 60)
    rows = ns.deliveries(ops)
    assert all(r.state is ns.DeliveryState.PENDING for r in rows) and any("Connect" in r.error for r in rows)
    # backoff: attempts grow slower than the rounds, and a down channel is tried once per round, not per message
    attempts = sum(len(ns.attempts_of(ops, r.id)) for r in rows)
    assert 1 <= attempts <= 13
    hook.start()
    ns_sender.send_round(ops, now=T0 + 3600 + ns_sender.MAX_BACKOFF_S)
    ns_sender.send_round(ops, now=T0 + 3600 + 2 * ns_sender.MAX_BACKOFF_S)
    assert len(hook.posts) == 5 and len(hook.unique) == 5
    assert sorted(p["body"]["event"] for p in hook.posts) == sorted(keys)
    assert all(r.state is ns.DeliveryState.SENT for r in ns.deliveries(ops))
    ns_sender.send_round(ops, now=T0 + 4 * 3600)
    assert len(hook.posts) == 5


def test_a_broken_receiver_is_retried_with_exponential_backoff(ops, hook):
    add_hook(ops, hook.url)
    hook.status = 503
    put(ops, 1)
    tried_at = []
    for second in range(0, 1000, 10):
        before = len(hook.posts)
        ns_sender.send_round(ops, now=T0 + second)
        if len(hook.posts) > before:
            tried_at.append(second)
    gaps = [b - a for a, b in zip(tried_at, tried_at[1:], strict=False)]
    assert gaps[:4] == [30, 60, 120, 240]
    [row] = ns.deliveries(ops)
    assert row.status == "503" and "HTTP 503" in row.error and row.state is ns.DeliveryState.PENDING


class SenderDied(BaseException):
    """Stands in for the sender process dying after the receiver answered and before the mark."""


def test_a_sender_dying_between_send_and_mark_sends_again_with_the_same_key(ops, hook):
    add_hook(ops, hook.url)
    put(ops, 1)

    def die(response: httpx.Response) -> None:
        raise SenderDied()

    with httpx.Client(event_hooks={"response": [die]}) as dying, pytest.raises(SenderDied):
        ns_sender.send_round(ops, now=T0, client=dying)
    [row] = ns.deliveries(ops)
    assert row.state is ns.DeliveryState.SENDING and len(hook.posts) == 1
    # a round soon after leaves it alone (another sender might still be sending it) ...
    assert ns_sender.send_round(ops, now=T0 + 5).sent == 0 and len(hook.posts) == 1
    # ... one after the claim timeout sends it again, with the same key
    assert ns_sender.send_round(ops, now=T0 + ns_sender.CLAIM_TIMEOUT_S).sent == 1
    assert len(hook.posts) == 2 and hook.posts[0]["key"] == hook.posts[1]["key"]
    assert len(hook.unique) == 1  # the receiver that honours the key keeps one
    [row] = ns.deliveries(ops)
    assert row.state is ns.DeliveryState.SENT and row.attempts == 2


def test_triggers_switches_and_silences_skip_with_the_reason_in_the_log(ops, hook):
    add_hook(ops, hook.url, name="all")
    add_hook(ops, hook.url, name="rollouts only", triggers=["rollout.started"])
    off = add_hook(ops, hook.url, name="off")
    ns.update_channel(ops, off.id, enabled=False, actor=ADMIN, now=T0 - 5)
    ns.add_silence(ops, "r1", duration_s=3600, reason="known noisy", actor=ADMIN, now=T0 - 1)
    put(ops, 1, topic="rollout.started", prefix="r")
    put(ops, 1, topic="alert.firing", prefix="a")
    ns_sender.send_round(ops, now=T0 + 1)
    log = {(r.channel, r.topic): r for r in ns.deliveries(ops)}
    assert log["all", "rollout.started"].state is ns.DeliveryState.SENT
    assert log["rollouts only", "rollout.started"].state is ns.DeliveryState.SENT
    assert log["rollouts only", "alert.firing"].error == "trigger off for this channel"
    assert log["all", "alert.firing"].error == "rule silenced"
    assert log["off", "rollout.started"].error == "channel switched off"
    assert len(hook.posts) == 2
    audit = ops.list_audit(action="notify.silence.add")[0]
    assert audit["actor"] == "test-admin" and audit["details"]["reason"] == "known noisy"


def test_a_channel_added_later_does_not_get_older_messages(ops, hook):
    put(ops, 2, at=T0 - 100)
    add_hook(ops, hook.url)
    ns_sender.send_round(ops, now=T0)
    assert hook.posts == [] and ns.deliveries(ops) == []


def test_channel_settings_that_hold_credentials_are_refused(ops):
    with pytest.raises(DiscoveryError, match="credentials are never stored"):
        ns.add_channel(
            ops,
            name="mail",
            kind="email",
            config={"host": "smtp.example.org", "sender": "a@example.org", "to": "b@example.org", "password": "x"},
            actor=ADMIN,
        )
    with pytest.raises(DiscoveryError, match="url"):
        ns.add_channel(ops, name="bad", kind="webhook", config={"url": "ftp://x"}, actor=ADMIN)


# --------------------------------------------------------------------------- e-mail

USER, PASSWORD = "ops-bot", "pa55-w0rd-very-secret"


@pytest.fixture
def tls(tmp_path, monkeypatch):
    cert = self_signed(tmp_path)
    monkeypatch.setenv("DISCOVERY_SMTP_CA_FILE", str(cert[0]))
    return cert


def add_mail(ops, port: int, *, starttls: bool = True) -> ns.Channel:
    return ns.add_channel(
        ops,
        name="mail",
        kind="email",
        config={
            "host": "127.0.0.1",
            "port": port,
            "sender": "ops@example.org",
            "to": "oncall@example.org, lead@example.org",
            "starttls": starttls,
        },
        actor=ADMIN,
        now=T0 - 10,
    )


def test_mail_goes_over_starttls_with_the_environment_login_and_carries_the_key(ops, tls, monkeypatch, capsys):
    smtp = SmtpReceiver(cert=tls, login=(USER, PASSWORD)).start()
    try:
        monkeypatch.setenv(ns.DEFAULT_SMTP_USER_ENV, USER)
        monkeypatch.setenv(ns.DEFAULT_SMTP_PASSWORD_ENV, PASSWORD)
        add_mail(ops, smtp.port)
        put(ops, 1)
        assert ns_sender.send_round(ops, now=T0).sent == 1
        [mail] = smtp.messages
        assert mail["auth"] and mail["to"] == ["oncall@example.org", "lead@example.org"]
        assert "Subject: [Discovery Ops] event 0" in mail["data"] and "X-Idempotency-Key: dops-" in mail["data"]
        assert "Open the console: http://localhost:8501/rollout" in mail["data"]
    finally:
        smtp.stop()


def test_a_wrong_password_is_a_failed_attempt_that_never_shows_the_password(ops, tls, monkeypatch, capsys, settings):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    smtp = SmtpReceiver(cert=tls, login=(USER, "the-right-one")).start()
    try:
        monkeypatch.setenv(ns.DEFAULT_SMTP_USER_ENV, USER)
        monkeypatch.setenv(ns.DEFAULT_SMTP_PASSWORD_ENV, PASSWORD)
        add_mail(ops, smtp.port)
        put(ops, 1)
        ns_sender.send_round(ops, now=T0)
        [row] = ns.deliveries(ops)
        assert row.state is ns.DeliveryState.PENDING and row.status == "535" and smtp.messages == []
    finally:
        smtp.stop()
    assert main(["notify", "deliveries"]) == 0 and main(["notify", "channel", "list"]) == 0
    out = capsys.readouterr().out
    assert "mail  pending  attempts 1  535" in out  # the operator sees the server's answer ...
    shown = out + json.dumps(ops.list_audit(limit=1000)) + json.dumps(ops.list_settings())
    with ops.connect() as db:
        shown += json.dumps([list(r) for r in db.conn.execute("SELECT * FROM notify_channels").fetchall()])
        shown += json.dumps([list(r) for r in db.conn.execute("SELECT * FROM notify_attempts").fetchall()])
    assert PASSWORD not in shown  # ... never the password


def test_credentials_are_never_sent_without_starttls(ops, monkeypatch):
    smtp = SmtpReceiver().start()
    try:
        monkeypatch.setenv(ns.DEFAULT_SMTP_PASSWORD_ENV, PASSWORD)
        add_mail(ops, smtp.port, starttls=False)
        put(ops, 1)
        ns_sender.send_round(ops, now=T0)
        [row] = ns.deliveries(ops)
        assert "without STARTTLS" in row.error and smtp.messages == []
    finally:
        smtp.stop()


def test_a_webhook_url_token_never_appears_in_the_cli_the_audit_or_the_log(ops, hook, capsys, settings, monkeypatch):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    assert main(["notify", "channel", "add", "--name", "h", "--kind", "slack", "--url", hook.url]) == 0
    hook.status = 500
    assert main(["notify", "channel", "test", "h"]) == 1
    assert main(["notify", "channel", "edit", "h", "--url", hook.url + "x", "--off"]) == 0
    assert main(["notify", "channel", "list"]) == 0 and main(["notify", "deliveries"]) == 0
    shown = capsys.readouterr().out + json.dumps(ops.list_audit(limit=1000))
    shown += json.dumps([r.__dict__ for r in ns.deliveries(ops)], default=str)
    assert "HTTP 500" in shown and "127.0.0.1" in shown
    assert "T0SECRETPATH" not in shown and "abcdef123456" not in shown
    assert hook.posts and "text" in hook.posts[0]["body"]  # the Slack body
