"""An HTTP evaluator that goes away while the scheduler runs: the scheduler pauses with the reason (a fault, not an
outcome), shows it in its status, resumes when an operator resumes after the evaluator is back, keeps the day's
budget and counts each visit once."""

from __future__ import annotations

import time

import pytest

from engine.discovery.evaluator_server import EvaluatorServer
from engine.discovery.runs import EvidenceSpec
from engine.jobs.queue import JobState, JobStore, wait_for
from engine.monitoring.events import query_events
from engine.production.budget import day_of
from engine.production.control import production_status, resume_production, start_production, stop_production
from engine.production.policy import RefreshPolicy
from engine.production.records import ABANDONED, RESERVED, SETTLED, day_spent
from tests.support.actors import ADMIN

TIMEOUT_S = 180.0
BUDGET = 5.0
CAP = 0.475


def rows(ops, sql, args=()):
    with ops.connect() as db:
        return list(db.query(sql, list(args)))


def wait_until(cond, what: str):
    deadline = time.monotonic() + TIMEOUT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling a real worker process, not pacing the test


@pytest.mark.slow
def test_an_evaluator_outage_pauses_with_the_reason_and_resume_goes_on_within_the_budget(settings, ops, seed_graph):
    graph = seed_graph(30, 7)
    evaluator = EvaluatorServer(world_seed=1, latency_factor=0.02).start()
    store = JobStore(ops)
    try:
        run_id = start_production(
            settings,
            ops,
            budget_usd=BUDGET,
            policy=RefreshPolicy(86400.0, 7 * 86400.0),
            evidence=EvidenceSpec(kind="http", url=evaluator.url, timeout_s=5),
            concurrency=3,
            batch_size=3,
            actor=ADMIN,
        )
        job = store.list(kind="production")[0]
        wait_until(lambda: len(rows(ops, "SELECT 1 FROM production_visits")) >= 3, "the first visits")
        evaluator.stop()
        wait_until(lambda: store.get(job.id).message.startswith("paused by a fault of the evaluator"), "the pause")
        assert store.get(job.id).state is JobState.PAUSED
        st = production_status(ops, graph)
        assert st.state == "paused by a fault" and "unreachable" in st.fault
        evaluator.start()  # the same port
        resume_production(ops, ADMIN, settings=settings)

        def spent_out() -> bool:
            with ops.connect() as db:
                left = BUDGET - day_spent(db, day_of(time.time()))
                busy = list(db.query("SELECT 1 FROM production_batches WHERE state = ?", [RESERVED]))
            return left < CAP and not busy

        wait_until(spent_out, "the day's budget to be spent after the outage")
        assert store.get(job.id).state is JobState.RUNNING
    finally:
        evaluator.stop()
        try:
            stop_production(ops, ADMIN)
        except Exception:  # noqa: BLE001 - already stopped
            pass
        wait_for(store, store.list(kind="production")[0].id, until=lambda j: j.state.is_terminal(), timeout_s=TIMEOUT_S)
    batches = rows(ops, "SELECT * FROM production_batches ORDER BY batch")
    assert {b["state"] for b in batches} <= {SETTLED, ABANDONED}
    assert any(b["state"] == ABANDONED for b in batches)  # the batch the outage stopped: never settled
    with ops.connect() as db:
        assert day_spent(db, day_of(time.time())) <= BUDGET + 1e-9
    visits = [v["entity_id"] for v in rows(ops, "SELECT entity_id FROM production_visits")]
    assert len(visits) == len(set(visits))  # each visit once, the stopped batch's entities visited again
    events = [e for e in query_events(ops) if e.run_id.startswith(f"production-{run_id}-")]
    assert sorted(e.entity_id for e in events) == sorted(visits)
    assert ops.list_audit(10, action="production.fault")
