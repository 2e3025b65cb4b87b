"""Alerts that stay firing: one grouped reminder per repeat interval for every rule still firing, never early
or twice (two evaluations at once included), and a silence mutes a grouped reminder only when it covers
every rule in it."""

from __future__ import annotations

import time

from engine.monitoring.alerts import AlertRule, Metric, Severity, evaluate_alerts
from engine.monitoring.events import record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.notify import sender as ns_sender
from engine.notify import store as ns
from engine.store.outbox import REPEAT_SETTING, list_messages
from tests.support.actors import ADMIN
from tests.support.monitoring_data import make_run
from tests.support.receivers import WebhookReceiver


def rule(rule_id: str, severity: Severity = Severity.WARNING) -> AlertRule:
    return AlertRule(rule_id, rule_id.title(), Metric.ERROR_RATE, ">", 0.10, 0, 5, severity, 3600, "look")


def test_rules_still_firing_are_grouped_into_one_reminder_per_interval(ops, tmp_path):
    now = float(int(time.time()))
    runs = [make_run(f"e{i}", errors=("timeout",) * 2, hops=4) for i in range(10)]
    record_runs(ops, runs, run_id="r", clock=lambda: now - 10, log=JsonlLog(tmp_path / "m.jsonl"))
    ops.set_setting(REPEAT_SETTING, 600.0)
    rules = [rule("errors-a"), rule("errors-b", Severity.CRITICAL)]
    evaluate_alerts(ops, rules, now)  # both fire at once (no hold)
    for t in (100, 599, 600, 601, 700):
        evaluate_alerts(ops, rules, now + t)
    evaluate_alerts(ops, rules, now + 700)  # a second evaluation at the same moment adds nothing
    reminders = [m for m in list_messages(ops, topic="alert.firing") if "still firing" in m.subject]
    assert len(reminders) == 1
    [grouped] = reminders
    assert grouped.subject.startswith("[critical] 2 alerts are still firing")
    assert grouped.facts["rule ids"] == "errors-a, errors-b" and "firing for 10m" in grouped.facts["Errors-A (warning)"]
    evaluate_alerts(ops, rules, now + 1200)  # the second interval: one more
    assert len([m for m in list_messages(ops, topic="alert.firing") if "still firing" in m.subject]) == 2
    # firing itself was told once per rule
    assert len([m for m in list_messages(ops, topic="alert.firing") if "is firing" in m.subject]) == 2


def test_a_silence_mutes_a_grouped_reminder_only_when_it_covers_every_rule(ops, tmp_path):
    hook = WebhookReceiver().start()
    try:
        now = float(int(time.time()))
        ns.add_channel(ops, name="h", kind="webhook", config={"url": hook.url}, actor=ADMIN, now=now - 100)
        runs = [make_run(f"e{i}", errors=("timeout",) * 2, hops=4) for i in range(10)]
        record_runs(ops, runs, run_id="r", clock=lambda: now - 10, log=JsonlLog(tmp_path / "m.jsonl"))
        ops.set_setting(REPEAT_SETTING, 600.0)
        rules = [rule("errors-a"), rule("errors-b")]
        ns.add_silence(ops, "errors-a", duration_s=86400, reason="known", actor=ADMIN, now=now - 1)
        evaluate_alerts(ops, rules, now)
        evaluate_alerts(ops, rules, now + 600)
        ns_sender.send_round(ops, now=now + 601)
        got = [p["body"]["subject"] for p in hook.posts]
        assert any("Errors-B is firing" in s for s in got) and not any("Errors-A is firing" in s for s in got)
        assert any("2 alerts are still firing" in s for s in got)  # errors-b is not silenced
    finally:
        hook.stop()
