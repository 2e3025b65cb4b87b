"""`python -m engine notify ...` in-process: channels, silences, settings, the delivery log as JSON, one-line
errors; and the sender as a job (kind notify.send) run by the job machinery."""

from __future__ import annotations

import json
import time

import pytest

from engine.cli.main import main
from engine.jobs.queue import JobState, JobStore, run_claimed
from engine.notify import sender as ns_sender
from engine.notify import store as ns
from engine.store.outbox import REPEAT_SETTING, enqueue
from tests.support.actors import ADMIN
from tests.support.receivers import WebhookReceiver


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv(ns.CONSOLE_URL_ENV, raising=False)
    return settings


def test_channel_add_list_edit_remove_and_errors(env, ops, capsys):
    assert (
        main(["notify", "channel", "add", "--name", "h", "--kind", "webhook", "--url", "https://x.example/T/secret"])
        == 0
    )
    assert main(["notify", "channel", "add", "--name", "h", "--kind", "webhook", "--url", "https://x.example/a"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert (
        main(["notify", "channel", "add", "--name", "m", "--kind", "email", "--host", "smtp.x", "--to", "a@x.org"]) == 2
    )
    assert "sender" in capsys.readouterr().err
    assert main(["notify", "channel", "edit", "h", "--triggers", "alert.firing,rollout.failed", "--off"]) == 0
    assert main(["notify", "channel", "list", "--json"]) == 0
    [channel] = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert channel["target"] == "https://x.example/***" and channel["enabled"] is False
    assert channel["triggers"] == ["alert.firing", "rollout.failed"]
    assert main(["notify", "channel", "edit", "h", "--triggers", "no.such"]) == 2
    assert main(["notify", "channel", "remove", "h"]) == 0 and ns.list_channels(ops) == []
    actions = [a["action"] for a in ops.list_audit(limit=20)]
    assert actions[:3] == ["notify.channel.remove", "notify.channel.edit", "notify.channel.add"]


def test_silences_and_settings(env, ops, capsys):
    assert main(["notify", "silence", "add", "error-rate", "--for", "2h", "--reason", "deploy"]) == 0
    assert main(["notify", "silence", "list"]) == 0
    assert "rule error-rate" in capsys.readouterr().out
    silence = ns.list_silences(ops)[0]
    assert main(["notify", "silence", "lift", str(silence.id)]) == 0
    assert main(["notify", "silence", "lift", str(silence.id)]) == 2
    assert main(["notify", "silence", "add", "x", "--for", "1s", "--reason", "r"]) == 2  # below the shortest
    assert main(["notify", "settings", "--console-url", "https://ops.example.org", "--repeat", "1h"]) == 0
    out = capsys.readouterr().out
    assert "https://ops.example.org" in out and "1h" in out
    assert ops.get_setting(REPEAT_SETTING) == 3600.0 and ns.console_url(ops) == "https://ops.example.org"
    assert main(["notify", "settings", "--no-repeat"]) == 0 and ops.get_setting(REPEAT_SETTING) == 0.0


def test_send_and_the_delivery_log_as_json(env, ops, capsys):
    hook = WebhookReceiver().start()
    try:
        ns.add_channel(ops, name="h", kind="webhook", config={"url": hook.url}, actor=ADMIN, now=0)
        with ops.transaction() as db:
            enqueue(db, topic="worker.dead", key="k1", subject="worker gone", facts={"job": 1}, link="rollout")
        assert main(["notify", "send"]) == 0 and "1 sent" in capsys.readouterr().out
        assert main(["notify", "deliveries", "--json", "--state", "sent"]) == 0
        [row] = json.loads(capsys.readouterr().out)
        assert row["topic"] == "worker.dead" and row["status"] == "200" and row["attempts"] == 1
    finally:
        hook.stop()


def test_the_sender_runs_as_a_job(env, ops):
    hook = WebhookReceiver().start()
    try:
        ns.add_channel(ops, name="h", kind="webhook", config={"url": hook.url}, actor=ADMIN, now=0)
        with ops.transaction() as db:
            enqueue(db, topic="tuning.finished", key="k2", subject="study done", facts={}, link="tuning")
        store = JobStore(ops)
        job = store.submit(ns_sender.KIND, {"interval_s": 5, "rounds": 1})
        done = run_claimed(store, job.id, env, poll_s=0.05)
        assert done.state is JobState.SUCCEEDED and done.result == {"rounds": 1, "sent": 1, "failed_attempts": 0}
        assert [p["body"]["topic"] for p in hook.posts] == ["tuning.finished"]
    finally:
        hook.stop()


def eventually(condition, timeout_s: float = 60.0) -> bool:
    """Poll ``condition`` (a real worker process acts on its own time) until it holds or the time is up."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.slow  # starts a real worker process
def test_sender_start_delivers_from_a_worker_and_stop_ends_it(env, ops, capsys):
    hook = WebhookReceiver().start()
    try:
        ns.add_channel(ops, name="h", kind="webhook", config={"url": hook.url}, actor=ADMIN, now=0)
        assert main(["notify", "sender", "start", "--interval", "2s"]) == 0
        assert main(["notify", "sender", "start"]) == 0  # one sender per data dir
        assert "already running" in capsys.readouterr().out
        with ops.transaction() as db:
            enqueue(db, topic="rollout.failed", key="k3", subject="stage failed", facts={}, link="rollout")
        job = ns_sender.active_sender(ops)
        assert job is not None
        assert eventually(lambda: len(hook.posts) == 1), JobStore(ops).get(job.id)
        assert main(["notify", "sender", "stop"]) == 0
        assert eventually(lambda: JobStore(ops).get(job.id).state is JobState.CANCELLED)
        assert [p["body"]["topic"] for p in hook.posts] == ["rollout.failed"]
    finally:
        stopping = ns_sender.active_sender(ops)
        if stopping is not None:
            ns_sender.stop_sender(ops, actor=ADMIN)
            eventually(lambda: ns_sender.active_sender(ops) is None)
        hook.stop()
