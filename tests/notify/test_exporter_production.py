"""The exporter's production figures against a real scheduler: batches run in this process on a fixed clock, the
exporter scraped over HTTP and parsed with prometheus_client's parser, every figure checked against
``production_status`` (what the Production page and `production status` show) at the same moment."""

from __future__ import annotations

import dataclasses
import time

import pytest

from engine.jobs.queue import JobState, JobStore
from engine.notify.exporter import PRODUCTION_STATES, ExporterServer, OpsCollector, production_state
from engine.production.control import production_status, start_production, state_of
from engine.production.policy import RefreshPolicy
from engine.production.scheduler import Scheduler
from tests.support.actors import ADMIN
from tests.support.production import scheduler_without_evaluator, wait_until
from tests.support.scrape import family_samples, scrape_text, value

DAY = 86400.0
#: a fixed moment well inside a UTC day (05:20): a few minutes of steps never cross midnight
T0 = 1_800_000_000.0 - (1_800_000_000.0 % DAY) + 5 * 3600 + 1200


def scrape(settings, now: float) -> str:
    """One scrape of an exporter whose clock says ``now`` (the day it reads the ledger of)."""
    server = ExporterServer(OpsCollector(settings.ops_db_path, clock=lambda: now), host="127.0.0.1", port=0).start()
    try:
        return scrape_text(server.url)
    finally:
        server.stop()


def assert_matches_status(text: str, ops, graph, now: float) -> None:
    st = production_status(ops, graph, now=now)
    assert value(text, "discovery_production_spent_today_usd") == pytest.approx(st.summary.spent_usd, abs=1e-9)
    assert value(text, "discovery_production_budget_usd") == st.budget_usd
    assert value(text, "discovery_production_visits_today") == st.summary.visits
    assert value(text, "discovery_production_entities_visited_today") == st.summary.entities
    with ops.connect() as db:
        (total,) = db.query("SELECT COUNT(*) AS n FROM production_visits")
    assert value(text, "discovery_production_visits_total") == total["n"]
    assert value(text, "discovery_production_entities_due") == st.due
    assert value(text, "discovery_production_entities_overdue") == st.overdue
    assert value(text, "discovery_production_entities_new") == st.new
    assert value(text, "discovery_production_counted_timestamp_seconds") == now
    current = st.state.replace(" ", "_")
    assert current in PRODUCTION_STATES
    for s in PRODUCTION_STATES:
        assert value(text, "discovery_production_state", state=s) == (1.0 if s == current else 0.0), s


def test_production_figures_follow_the_scheduler_batch_by_batch_and_day_by_day(settings, ops, seed_graph):
    graph = seed_graph(40, 7)
    now = [T0]
    before = scrape(settings, now[0])  # nothing started yet: the scheduler is "not started", nothing spent
    assert value(before, "discovery_production_state", state="not_started") == 1.0
    assert value(before, "discovery_production_spent_today_usd") == 0.0
    assert value(before, "discovery_production_visits_total") == 0.0
    assert family_samples(before, "discovery_production_budget_usd") == []
    assert value(before, "discovery_production_fault", reason="none") == 0.0

    prod = start_production(
        settings,
        ops,
        budget_usd=2.5,
        policy=RefreshPolicy(3600.0, DAY),
        batch_size=4,
        actor=ADMIN,
        launch=False,
    )
    sched = Scheduler(graph, ops, prod, clock=lambda: now[0])
    ran = 0
    kind = ""
    for _ in range(30):
        kind = sched.step().kind
        if kind != "ran":
            break
        ran += 1
        text = scrape(settings, now[0])
        assert_matches_status(text, ops, graph, now[0])
        assert value(text, "discovery_production_visits_today") > 0
        now[0] += 60
    assert kind == "budget" and ran >= 2
    text = scrape(settings, now[0])
    assert_matches_status(text, ops, graph, now[0])
    assert value(text, "discovery_production_state", state="starting") == 1.0  # its job was never claimed
    spent = value(text, "discovery_production_spent_today_usd")
    assert spent is not None and 0 < spent <= 2.5 + 1e-9
    assert value(text, "discovery_production_entities_new") > 0  # the budget ran out before every entity was seen

    # the next UTC day, past the maximum age: yesterday's visits are overdue, today's spend starts again
    now[0] += DAY + 60
    assert sched.step().kind == "ran"
    text = scrape(settings, now[0])
    assert_matches_status(text, ops, graph, now[0])
    assert value(text, "discovery_production_entities_overdue") > 0
    assert value(text, "discovery_production_visits_total") > value(text, "discovery_production_visits_today") > 0
    assert value(text, "discovery_production_spent_today_usd") < spent + 1e-9


def test_the_state_label_is_the_production_pages_words_for_every_job_state(settings, ops, seed_graph):
    seed_graph(10, 7)
    start_production(settings, ops, budget_usd=1.0, actor=ADMIN, launch=False)
    job = JobStore(ops).list(kind="production")[0]
    for js in JobState:
        for message in ("", "paused by a fault of the store, nothing of the batch counted: down"):
            j = dataclasses.replace(job, state=js, message=message)
            assert production_state(js, message, alive=True) == state_of(j).replace(" ", "_"), (js, message)
    assert production_state(None, "", alive=False) == "not_started"
    assert production_state(JobState.RUNNING, "", alive=False) == "stopped_unexpectedly"  # what the reaper makes
    reachable = {production_state(js, m, True) for js in JobState for m in ("", "paused by a fault")}
    assert set(PRODUCTION_STATES) == reachable | {"not_started"}


def test_a_fault_pause_is_served_with_what_went_away(settings, ops, seed_graph):
    graph = seed_graph(12, 7)
    with scheduler_without_evaluator(settings, ops):
        for _ in range(50):  # the job retries by itself (2 s, then 4 s, ...): a scrape made inside one pause
            wait_until(lambda: production_status(ops, graph).state == "paused by a fault", "the fault pause")
            text = scrape(settings, time.time())
            st = production_status(ops, graph)
            if st.state == "paused by a fault":
                break
        assert st.state == "paused by a fault"
        assert value(text, "discovery_production_fault", reason="evaluator") == 1.0
        assert [s.labels for s in family_samples(text, "discovery_production_fault")] == [{"reason": "evaluator"}]
        assert value(text, "discovery_production_state", state="paused_by_a_fault") == 1.0
        assert value(text, "discovery_production_budget_usd") == st.budget_usd
    text = scrape(settings, time.time())
    assert value(text, "discovery_production_fault", reason="none") == 0.0
    assert value(text, "discovery_production_state", state="stopped") == 1.0
