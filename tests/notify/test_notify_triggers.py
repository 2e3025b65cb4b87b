"""Every trigger produces exactly one message per channel, through the engine code that records its event.

Table-driven: each scenario runs real engine steps (alert evaluation, a rollout in this process, a tuning study,
a failed job, the reaper) and says how many messages of each topic its events make. The sender then delivers
to a JSON webhook and an SMTP server on 127.0.0.1, and each receives exactly that many of each topic, each
once. ``test_the_table_covers_every_topic`` fails when a topic is added without a scenario.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter

import pytest

from engine import rollout as ro
from engine.core.errors import ConfigError
from engine.jobs.queue import JobStore, execute, run_claimed
from engine.monitoring.alerts import AlertRule, Metric, Severity, evaluate_alerts
from engine.monitoring.events import record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.notify import sender as ns_sender
from engine.notify import store as ns
from engine.production.control import production_status, resume_production, start_production
from engine.production.policy import RefreshPolicy
from engine.production.scheduler import Scheduler
from engine.rollout import guardrails as gr
from engine.rollout import notices
from engine.store.outbox import REPEAT_SETTING, TOPICS, list_messages
from engine.tuning.runner import StudyRunner
from engine.tuning.spec import EntitySpec, StudySpec
from engine.tuning.store import create_study
from tests.support.actors import ADMIN, ENGINE, as_role
from tests.support.guardrails import BAD, production_traffic, promote_into_production, stop_guardrail_evaluators
from tests.support.monitoring_data import make_run
from tests.support.production import scheduler_without_evaluator, wait_until
from tests.support.receivers import SmtpReceiver, WebhookReceiver
from tests.support.rollouts import candidate_file
from tests.support.stages import stage_table

#: topics no scenario here makes: a test message is made by "send a test"
NOT_HERE = {"notify.test"}

# --------------------------------------------------------------------------- scenarios


def alerts(ctx) -> dict[str, int]:
    """pending -> firing -> (a reminder while it stays firing) -> resolved -> no data: one rule, real events."""
    ops = ctx["ops"]
    now = float(int(time.time()))  # whole seconds: the hold and repeat arithmetic below is exact
    log = JsonlLog(ctx["tmp"] / "metrics.jsonl")
    runs = [make_run(f"e{i}", errors=("timeout",) * 2, hops=4) for i in range(30)]
    record_runs(ops, runs, run_id="r", clock=lambda: now - 10, log=log)
    ops.set_setting(REPEAT_SETTING, 600.0)
    rule = AlertRule("err", "Error rate", Metric.ERROR_RATE, ">", 0.10, 300, 20, Severity.CRITICAL, 3600, "check it")
    evaluate_alerts(ops, [rule], now)  # pending
    evaluate_alerts(ops, [rule], now + 10)  # still pending: no message
    evaluate_alerts(ops, [rule], now + 300)  # firing
    evaluate_alerts(ops, [rule], now + 600)  # firing, not yet a repeat interval: no message
    evaluate_alerts(ops, [rule], now + 900)  # still firing after the repeat interval: a reminder
    evaluate_alerts(ops, [rule], now + 950)  # same reminder period: nothing
    cleared = AlertRule("err", "Error rate", Metric.ERROR_RATE, ">", 0.90, 300, 20, Severity.CRITICAL, 3600, "x")
    evaluate_alerts(ops, [cleared], now + 1000)  # resolved
    starved = AlertRule("err", "Error rate", Metric.ERROR_RATE, ">", 0.90, 300, 999, Severity.CRITICAL, 3600, "x")
    evaluate_alerts(ops, [starved], now + 1100)  # no data (the rule had data before)
    return {"alert.pending": 1, "alert.firing": 2, "alert.resolved": 1, "alert.no_data": 1}


def _start(ctx, stages, stage: str) -> int:
    return ro.start_rollout(
        ctx["settings"],
        ctx["ops"],
        stage=stage,
        stages_file=stages,
        config_file=candidate_file(ctx["tmp"]),
        time_scale=86400 * 4,
        launch=False,
        graph=ctx["graph"],
        actor=ADMIN,
    )


def _run(ctx, run_id: int) -> None:
    job = ro.rollout_status(ctx["ops"], run_id).run.job_id
    run_claimed(JobStore(ctx["ops"]), job, ctx["settings"], poll_s=0.05)


def rollout_to_production(ctx) -> dict[str, int]:
    """Three stages pass, soak and are promoted; the last promotion makes the candidate live."""
    stages = stage_table(ctx["tmp"], counts=(5, 10, "all"), batch=(5, 5, 10), min_sample=(5, 5, 5), loose_triggers=True)
    _run(ctx, _start(ctx, stages, "all"))
    return {"rollout.started": 1, "rollout.stage_passed": 3, "production.promoted": 1}


def rollout_inconclusive_then_rolled_back(ctx) -> dict[str, int]:
    """A success criterion nothing can show: inconclusive, a person rolls back."""
    stages = stage_table(ctx["tmp"], loose_triggers=True, name="never.json")
    data = json.loads(stages.read_text())
    data["stages"][0]["success"] = [{"metric": "error_rate_pct", "op": "<", "threshold": 0}]
    stages.write_text(json.dumps(data))
    run_id = _start(ctx, stages, "pilot")
    worker = threading.Thread(target=_run, args=(ctx, run_id), daemon=True)
    worker.start()
    end = time.time() + 120
    while ro.rollout_status(ctx["ops"], run_id).state != "inconclusive":
        assert time.time() < end, ro.rollout_status(ctx["ops"], run_id).state
        time.sleep(0.1)
    ro.rollback(ctx["settings"], ctx["ops"], run_id, as_role("approver", "alice"), "not convinced", graph=ctx["graph"])
    worker.join(60)
    [waiting] = list_messages(ctx["ops"], topic="rollout.inconclusive")
    assert f"rollout promote --run {run_id}" in waiting.facts["who can act"] and waiting.link == "rollout"
    assert any("interval [" in str(v) for k, v in waiting.facts.items() if k.startswith("success criterion"))
    return {"rollout.started": 1, "rollout.inconclusive": 1, "rollout.rolled_back": 1}


def rollout_failed(ctx) -> dict[str, int]:
    """A rollback trigger every run breaches: the worker rolls back by itself."""
    stages = stage_table(ctx["tmp"], name="fails.json")
    data = json.loads(stages.read_text())
    data["stages"][0]["rollback"] = [{"metric": "error_rate_pct", "op": ">=", "threshold": 0}]
    stages.write_text(json.dumps(data))
    _run(ctx, _start(ctx, stages, "pilot"))
    assert ro.rollout_status(ctx["ops"], ro.list_runs(ctx["ops"])[0].id).state == "rolled_back"
    [failed] = list_messages(ctx["ops"], topic="rollout.failed")
    breached = [v for k, v in failed.facts.items() if k.startswith("breached trigger")]
    assert breached and "error_rate_pct >= 0" in breached[0] and "interval [" in breached[0]
    return {"rollout.started": 1, "rollout.failed": 1, "rollout.rolled_back": 1}


def tuning(ctx) -> dict[str, int]:
    """A small study finishes; another study's job fails."""
    ops = ctx["ops"]
    spec = StudySpec(
        method="random",
        params=("max_iterations",),
        iterations=1,
        entities=EntitySpec(kind="catalogue", n=12, catalogue_seed=7),
        seed=1,
        train_fraction=0.7,
        top_k=1,
    )
    StudyRunner(ops, create_study(ops, spec, actor=ADMIN), settings=ctx["settings"]).run()
    store = JobStore(ops)
    job = store.claim(store.submit("tuning", {"study_id": 99}).id)

    def broken(job_ctx):
        raise ConfigError("the evaluator refused every request")

    execute(store, job, ctx["settings"], handler=broken)
    return {"tuning.finished": 1, "tuning.failed": 1}


def guardrail_reverted(ctx) -> dict[str, int]:
    """A bad config promoted into production breaches its bake on production traffic: the guardrail reverts it
    (and a second evaluation, finding it reverted, tells nobody again)."""
    settings, ops, graph = ctx["settings"], ctx["ops"], ctx["graph"]
    ids = graph.list_entity_ids()
    production_traffic(graph, ops, ids, ro.live_config(ops), at=1_000.0, system="old")
    promote_into_production(settings, ops, graph, ctx["tmp"], BAD)
    promoted_at = gr.guardrail_status(ops).promoted_at
    production_traffic(graph, ops, ids, BAD, at=promoted_at + 3600)
    assert (
        gr.evaluate_guardrail(settings, ops, now=promoted_at + 3601, actor=ENGINE).state is gr.GuardrailState.REVERTED
    )
    gr.evaluate_guardrail(settings, ops, now=promoted_at + 3602, actor=ENGINE)
    [reverted] = list_messages(ops, topic="production.guardrail_reverted")
    breached = [v for k, v in reverted.facts.items() if "cost_increase_pct" in f"{k} {v}"]
    assert breached and reverted.link == "rollout", reverted.facts
    stop_guardrail_evaluators(ops)
    return {
        "rollout.started": 1,
        "rollout.inconclusive": 1,
        "production.promoted": 1,
        "production.guardrail_reverted": 1,
    }


DAY = 86400.0
#: 05:20 UTC of a fixed day: a scenario's minutes of virtual steps never cross midnight
T0 = 1_800_000_000.0 - (1_800_000_000.0 % DAY) + 5 * 3600 + 1200


def production_budget(ctx) -> dict[str, int]:
    """The day's budget runs out: told once that day however often the scheduler finds it spent, and once again the
    next UTC day when that day's budget runs out too."""
    settings, ops, graph = ctx["settings"], ctx["ops"], ctx["graph"]
    now = [T0]
    prod = start_production(
        settings, ops, budget_usd=1.5, policy=RefreshPolicy(0.0, DAY), batch_size=4, actor=ADMIN, launch=False
    )
    sched = Scheduler(graph, ops, prod, clock=lambda: now[0])
    for _day in range(2):
        kinds: list[str] = []
        while kinds.count("budget") < 3:  # found spent three times: told once
            kinds.append(sched.step().kind)
            now[0] += 60
            assert len(kinds) < 40, kinds
        assert "ran" in kinds
        now[0] += DAY
    told = list_messages(ops, topic="production.budget_exhausted")
    assert len(told) == 2 and len(ops.list_audit(10, action="production.budget_exhausted")) == 2
    first = told[-1]  # newest first
    assert first.link == "production" and first.facts["budget"] == "$1.50", first.facts
    spent = float(first.facts["spent"].lstrip("$"))
    assert 1.5 - 0.475 < spent <= 1.5  # nothing more fitted under the per-entity cap
    assert int(first.facts["entities still due"]) == 30  # every entity stays due under a zero minimum age
    return {"production.budget_exhausted": 2}


def production_fault(ctx) -> dict[str, int]:
    """The evaluator goes away: the scheduler pauses, told once with who can act, although each retry faults again;
    the evaluator back, a batch settles and the fault is over."""
    settings, ops, graph = ctx["settings"], ctx["ops"], ctx["graph"]
    with scheduler_without_evaluator(settings, ops) as f:
        wait_until(lambda: len(ops.list_audit(10, action="production.fault")) >= 2, "a retry to fault again")
        [told] = list_messages(ops, topic="production.paused_by_fault")
        assert told.link == "production" and told.facts["fault of"] == "evaluator", told.facts
        assert "python -m engine production resume" in told.facts["who can act"]
        wait_until(lambda: production_status(ops, graph).state == "paused by a fault", "the fault pause")
        f.evaluator.start()  # the same port
        resume_production(ops, ADMIN, settings=settings, launch=False)

        def settled() -> bool:
            with ops.connect() as db:
                (row,) = db.query("SELECT fault_kind FROM production_runs WHERE id = ?", [f.run_id])
            return row["fault_kind"] == ""

        wait_until(settled, "a batch to settle after the fault")
    assert len(list_messages(ops, topic="production.paused_by_fault")) == 1
    return {"production.paused_by_fault": 1}


def worker_dead(ctx) -> dict[str, int]:
    store = JobStore(ctx["ops"])
    job = store.submit("rollout", {"run_id": 1})
    store.claim(job.id, pid=2**22 + 12345)  # no such process
    assert [j.id for j in store.reap()] == [job.id]
    assert store.reap() == []  # reaped once, told once
    return {"worker.dead": 1}


SCENARIOS = {
    "alerts": alerts,
    "rollout to production": rollout_to_production,
    "rollout inconclusive, rolled back": rollout_inconclusive_then_rolled_back,
    "rollout failed": rollout_failed,
    "tuning": tuning,
    "worker dead": worker_dead,
    "guardrail reverted": guardrail_reverted,
    "production budget exhausted": production_budget,
    "production paused by a fault": production_fault,
}
#: the topics each scenario makes (checked against what it returns)
COVERS = {
    "alerts": {"alert.pending", "alert.firing", "alert.resolved", "alert.no_data"},
    "rollout to production": {"rollout.started", "rollout.stage_passed", "production.promoted"},
    "rollout inconclusive, rolled back": {"rollout.started", "rollout.inconclusive", "rollout.rolled_back"},
    "rollout failed": {"rollout.started", "rollout.failed", "rollout.rolled_back"},
    "tuning": {"tuning.finished", "tuning.failed"},
    "worker dead": {"worker.dead"},
    "guardrail reverted": {
        "rollout.started",
        "rollout.inconclusive",
        "production.promoted",
        "production.guardrail_reverted",
    },
    "production budget exhausted": {"production.budget_exhausted"},
    "production paused by a fault": {"production.paused_by_fault"},
}


def test_the_table_covers_every_topic():
    covered = set().union(*COVERS.values())
    assert covered | NOT_HERE == set(TOPICS), f"no scenario makes: {sorted(set(TOPICS) - covered - NOT_HERE)}"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_trigger_makes_exactly_one_message_per_channel(name, settings, ops, graph, seed_graph, tmp_path):
    seed_graph(30, 7)
    hook = WebhookReceiver().start()
    smtp = SmtpReceiver().start()
    try:
        ns.add_channel(ops, name="hook", kind="webhook", config={"url": hook.url}, actor=ADMIN, now=0)
        ns.add_channel(
            ops,
            name="mail",
            kind="email",
            config={"host": "127.0.0.1", "port": smtp.port, "sender": "o@x.org", "to": "p@x.org", "starttls": False},
            actor=ADMIN,
            now=0,
        )
        os.environ.pop(ns.DEFAULT_SMTP_PASSWORD_ENV, None)
        expected = SCENARIOS[name]({"settings": settings, "ops": ops, "graph": graph, "tmp": tmp_path})
        assert set(expected) == COVERS[name]
        made = Counter(m.topic for m in list_messages(ops, limit=10_000))
        assert dict(made) == expected
        ns_sender.send_round(ops)
        assert Counter(hook.topics()) == Counter(expected) and len(hook.unique) == sum(expected.values())
        log = ns.deliveries(ops, limit=1000)
        assert Counter(r.topic for r in log if r.channel == "mail") == Counter(expected)
        assert len(smtp.messages) == sum(expected.values())
        assert len({m["data"].split("X-Idempotency-Key: ")[1].split()[0] for m in smtp.messages}) == len(smtp.messages)
        assert all(r.state is ns.DeliveryState.SENT for r in ns.deliveries(ops, limit=1000))
        assert len(ns.deliveries(ops, limit=1000)) == 2 * sum(expected.values())
    finally:
        hook.stop()
        smtp.stop()


def test_the_guardrail_revert_message_is_ready_for_the_guardrail_to_call(ops):
    """The one call the guardrail's revert makes (wired at merge): the breached criterion with its interval."""
    run = {"id": 7, "candidate_hash": "c" * 40}
    record = {
        "thresholds": {"confidence": 0.9},
        "verdict": {
            "rows": [
                {"kind": "rollback", "metric": "error_rate_pct", "op": ">", "threshold": 5.0, "value": 9.1,
                 "low": 6.2, "high": 12.4, "n": 400, "phase": "failed", "reason": "breached"},
            ]
        },
    }  # fmt: skip
    for _ in range(2):  # a retried revert adds nothing
        with ops.transaction() as db:
            notices.guardrail_reverted(
                db, run, reason="errors up", record=record, reverted_to="b" * 40, actor=ENGINE, at=1.0
            )
    [m] = list_messages(ops, topic="production.guardrail_reverted")
    assert "90% interval [6.2, 12.4]" in m.facts["breached trigger"] and m.facts["live config now"] == "b" * 40
