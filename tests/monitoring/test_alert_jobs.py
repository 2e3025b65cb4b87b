"""Periodic alert evaluation: the recurring job (fake clock, inline) and a real detached worker."""

from __future__ import annotations

import time

import pytest

from engine.cli.main import main
from engine.core.errors import ConfigError
from engine.jobs.queue import JobState, JobStore, execute, wait_for
from engine.monitoring import alert_jobs
from engine.monitoring.alerts import AlertStatus, current_states, history, load_rules, save_rules
from engine.monitoring.events import record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.store.opsdb import open_ops_db
from tests.support.actors import ADMIN, OPERATOR
from tests.support.monitoring_data import FakeClock, make_run


@pytest.fixture
def clock():
    return FakeClock(now=time.time())  # events are stamped on this clock too, so windows line up


def _fast_error_rule(settings):
    rules = [
        r.to_json() | ({"hold": "2m", "min_sample": 2} if r.id == "error-rate" else {}) for r in load_rules(settings)
    ]
    save_rules(settings, rules, ops=open_ops_db(settings), actor=ADMIN)


def test_the_job_evaluates_every_interval_and_reads_rule_edits_each_round(settings, ops, clock):
    _fast_error_rule(settings)
    record_runs(
        ops,
        [make_run(f"e{i}", hops=4, errors=("timeout",) * 2) for i in range(3)],
        run_id="t",
        clock=lambda: clock.now - 1,
        log=JsonlLog.for_settings(settings),
    )  # windows end before now
    store = JobStore(ops, clock=clock)
    job = store.submit(alert_jobs.KIND, {"interval_s": 60, "rounds": 4}, actor="test")
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.tick(seconds)

    final = execute(store, store.claim(job.id), settings, sleep=sleep)
    assert final.state is JobState.SUCCEEDED, final.error
    assert final.result["rounds"] == 4 and final.progress_done == 4
    assert sum(sleeps) == pytest.approx(3 * 60)  # waited the interval between rounds, not after the last
    # breach at t0 -> pending; t0+60 still pending (hold 2m); t0+120 firing; t0+180 stays firing
    trail = [(h["from_state"], h["to_state"]) for h in reversed(history(ops, rule_id="error-rate"))]
    assert trail == [(None, "pending"), ("pending", "firing")]
    assert current_states(ops)["error-rate"].state is AlertStatus.FIRING
    assert "round 4" in final.message and "1 firing" in final.message


def test_rule_edits_apply_at_the_next_round(settings, ops, clock):
    record_runs(
        ops,
        [make_run(f"e{i}", hops=4, errors=("timeout",) * 2) for i in range(3)],
        run_id="t",
        clock=lambda: clock.now - 1,
        log=JsonlLog.for_settings(settings),
    )
    store = JobStore(ops, clock=clock)
    job = store.submit(alert_jobs.KIND, {"interval_s": 30, "rounds": 2}, actor="test")
    edited = []

    def sleep(seconds):
        clock.tick(seconds)
        if not edited:  # an operator lowers the minimum sample while the evaluator waits
            rules = [
                r.to_json() | ({"hold": "0s", "min_sample": 1} if r.id == "error-rate" else {})
                for r in load_rules(settings)
            ]
            save_rules(settings, rules, ops=open_ops_db(settings), actor=ADMIN)
            edited.append(True)

    final = execute(store, store.claim(job.id), settings, sleep=sleep)
    assert final.state is JobState.SUCCEEDED
    trail = [(h["from_state"], h["to_state"]) for h in reversed(history(ops, rule_id="error-rate"))]
    assert trail == [(None, "no_data"), ("no_data", "firing")]


def test_a_bad_interval_is_a_one_line_error(settings, ops):
    with pytest.raises(ConfigError, match="shorter than 5s"):
        alert_jobs.start_evaluator(settings, ops, interval="1s", actor=OPERATOR, launch=lambda *a: 0)
    with pytest.raises(ConfigError, match="e.g. 15m"):
        alert_jobs.parse_interval("often")


def test_only_one_evaluator_is_active_and_start_stop_are_audited(settings, ops):
    launched = []
    job, started = alert_jobs.start_evaluator(
        settings, ops, interval="30s", actor=OPERATOR, launch=lambda s, jid: launched.append(jid) or 1
    )
    assert started and launched == [job.id] and job.params["interval_s"] == 30
    again, started = alert_jobs.start_evaluator(
        settings, ops, interval="1m", actor=OPERATOR, launch=lambda s, jid: launched.append(jid) or 1
    )
    assert not started and again.id == job.id and launched == [job.id]
    stopped = alert_jobs.stop_evaluator(ops, actor=OPERATOR)
    assert stopped.state is JobState.CANCELLED  # it was still queued: cancelled at once
    assert alert_jobs.stop_evaluator(ops, actor=OPERATOR) is None
    actions = [a["action"] for a in ops.list_audit()]
    assert "alerts.evaluator.start" in actions and "alerts.evaluator.stop" in actions
    assert "is off" in alert_jobs.describe_evaluator(alert_jobs.latest_evaluator(JobStore(ops)), time.time())


def test_a_real_worker_evaluates_periodically_until_stopped(settings, ops, monkeypatch, capsys):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    record_runs(
        ops, [make_run(f"e{i}") for i in range(3)], run_id="t", clock=time.time, log=JsonlLog.for_settings(settings)
    )
    assert main(["alerts", "--start-evaluator", "--interval", "5s"]) == 0
    assert "started periodic alert evaluation" in capsys.readouterr().out
    store = JobStore(ops)
    job = alert_jobs.active_evaluator(store)
    try:
        # two rounds, 5 s apart, done by the worker process on its own
        job = wait_for(store, job.id, until=lambda j: j.progress_done >= 2 or j.state.is_terminal(), timeout_s=60)
        assert job.state is JobState.RUNNING, job.error
        assert set(current_states(ops)) == {r.id for r in load_rules(settings)}
        assert main(["alerts"]) == 0
        assert f"periodic evaluation running (job {job.id}, every 5s" in capsys.readouterr().out
    finally:
        main(["alerts", "--stop-evaluator"])
    assert f"stop requested for periodic alert evaluation, job {job.id}" in capsys.readouterr().out
    final = wait_for(store, job.id, until=lambda j: j.state.is_terminal(), timeout_s=30)
    assert final.state is JobState.CANCELLED


def test_running_evaluator_reaps_a_dead_worker_first(settings, ops):
    store = JobStore(ops)
    assert alert_jobs.running_evaluator(ops) is None
    assert "periodic evaluation is off" in alert_jobs.evaluator_status(ops, time.time())
    job = store.submit(alert_jobs.KIND, {"interval_s": 60}, actor="test")
    assert alert_jobs.running_evaluator(ops).id == job.id  # queued: active, no worker to reap yet
    store.claim(job.id, pid=2**22 + 12345)  # no such process
    assert alert_jobs.running_evaluator(ops) is None
    assert store.get(job.id).state is JobState.DEAD


@pytest.mark.slow  # starts or kills real processes
def test_an_evaluator_whose_worker_died_shows_as_off_and_can_be_started_again(settings, ops):
    store = JobStore(ops)
    job = store.submit(alert_jobs.KIND, {"interval_s": 60}, actor="test")
    # claimed by a process that no longer exists (what a killed worker leaves behind)
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert store.claim(job.id, pid=gone.pid) is not None
    assert alert_jobs.active_evaluator(store).id == job.id
    assert [j.id for j in alert_jobs.reap_evaluators(ops)] == [job.id]
    assert alert_jobs.active_evaluator(store) is None
    assert "dead" in alert_jobs.describe_evaluator(alert_jobs.latest_evaluator(store), time.time())
    assert "dead" in alert_jobs.evaluator_status(ops, time.time())
    new, started = alert_jobs.start_evaluator(settings, ops, interval="1m", actor=OPERATOR, launch=lambda s, j: 1)
    assert started and new.id != job.id


def test_the_evaluator_view_gives_the_line_and_the_button_from_one_read(settings, ops, clock):
    """Off: no Stop; active: Stop and a line that is not "off"; stop requested: "stopping" (Stop pressed)."""
    view = alert_jobs.evaluator_view(ops, clock.now, clock=clock)
    assert not view.running and "is off" in view.line
    job, _ = alert_jobs.start_evaluator(settings, ops, interval="1m", actor=OPERATOR, launch=lambda *a: 0, clock=clock)
    store = JobStore(ops, clock=clock)
    claimed = store.claim(job.id)  # as a worker would: running, under this (live) process
    view = alert_jobs.evaluator_view(ops, clock.now, clock=clock)
    assert view.running and not view.stopping and "is off" not in view.line and view.job.id == job.id
    alert_jobs.stop_evaluator(ops, actor=OPERATOR, clock=clock)
    view = alert_jobs.evaluator_view(ops, clock.now, clock=clock)
    assert claimed is not None and view.running and view.stopping and "stopping" in view.line, view
