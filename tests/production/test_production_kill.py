"""A real scheduler worker SIGKILLed mid-batch, then resumed: the day's budget is never exceeded (the dead batch
counts its whole reservation), nothing of the dead batch is half-written, every scheduled visit counts once."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from engine.discovery.runs import EvidenceSpec
from engine.jobs.queue import JobStore, wait_for
from engine.monitoring.events import query_events
from engine.production.budget import day_of
from engine.production.control import resume_production, start_production, stop_production
from engine.production.policy import RefreshPolicy
from engine.production.records import ABANDONED, RESERVED, SETTLED, day_spent
from tests.support.actors import ADMIN

WORKER_TIMEOUT_S = 180.0
BUDGET = 6.0
#: the default config's per-entity cost cap: a batch is admitted only while one more visit's cap fits
CAP = 0.475


def rows(ops, sql, args=()):
    with ops.connect() as db:
        return list(db.query(sql, list(args)))


def spent_out_of(ops):
    def done() -> bool:
        with ops.connect() as db:
            left = BUDGET - day_spent(db, day_of(time.time()))
            open_batches = list(db.query("SELECT 1 FROM production_batches WHERE state = ?", [RESERVED]))
        return left < CAP and not open_batches

    return done


def process_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(cond, what: str, timeout_s: float = WORKER_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling a real worker process, not pacing the test


@pytest.mark.slow
def test_a_worker_killed_mid_batch_never_overspends_and_counts_each_visit_once(settings, ops, seed_graph):
    graph = seed_graph(30, 7)
    run_id = start_production(
        settings,
        ops,
        budget_usd=BUDGET,
        policy=RefreshPolicy(86400.0, 7 * 86400.0),
        # real sleeps of each hop's latency x 0.005 (about 10 ms a hop): a batch is in flight long enough to kill
        evidence=EvidenceSpec(sleep=True, time_scale=0.005),
        batch_size=3,
        actor=ADMIN,
    )
    store = JobStore(ops)
    job = store.list(kind="production")[0]
    spent_out = spent_out_of(ops)
    try:
        wait_until(
            lambda: (
                rows(ops, "SELECT 1 FROM production_batches WHERE state = ?", [SETTLED])
                and rows(ops, "SELECT 1 FROM production_batches WHERE state = ?", [RESERVED])
            ),
            "a settled batch and one in flight",
        )
        pid = store.get(job.id).pid
        # freeze the worker, and kill it only while it holds a batch in flight (between two batches: let it go on)
        killed: list = []
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        while not killed:
            assert time.monotonic() < deadline, "never caught the worker with a batch in flight"
            os.kill(pid, signal.SIGSTOP)
            killed = rows(
                ops, "SELECT batch, reserved_usd, entities FROM production_batches WHERE state = ?", [RESERVED]
            )
            if not killed:
                os.kill(pid, signal.SIGCONT)
                time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        assert len(killed) == 1
        # SIGKILL is delivered asynchronously: until the process is gone (or a zombie) it still counts as the live
        # worker, and a resume would only ask it to go on
        wait_until(lambda: not process_alive(pid), "the killed worker to be gone")
        job_after, note = resume_production(ops, ADMIN, settings=settings)
        assert "worker started" in note
        wait_until(spent_out, "the day's budget to be spent (no batch in flight, less than a visit's cap left)")
    finally:
        try:
            stop_production(ops, ADMIN)
        except Exception:  # noqa: BLE001 - already stopped
            pass
        wait_for(store, job.id, until=lambda j: j.state.is_terminal(), timeout_s=WORKER_TIMEOUT_S)

    batches = rows(ops, "SELECT * FROM production_batches ORDER BY batch")
    dead = [b for b in batches if b["state"] == ABANDONED]
    assert [b["batch"] for b in dead] == [killed[0]["batch"]]
    assert dead[0]["spent_usd"] is None  # what it bought is unknown: its whole reservation counts
    assert all(b["state"] == SETTLED for b in batches if b["batch"] != killed[0]["batch"])
    with ops.connect() as db:
        spent = day_spent(db, day_of(time.time()))
    expected = sum(b["reserved_usd"] if b["state"] == ABANDONED else b["spent_usd"] for b in batches)
    assert spent == pytest.approx(expected)
    assert spent <= BUDGET + 1e-9  # never over the day's budget, to the cent and below
    assert BUDGET - spent < CAP  # ... and it stopped only when another visit's cap no longer fitted

    visits = rows(ops, "SELECT * FROM production_visits")
    ids = [v["entity_id"] for v in visits]
    assert len(ids) == len(set(ids))  # each scheduled visit once (min age one day: nobody twice)
    assert not any(v["batch"] == killed[0]["batch"] for v in visits)
    # one live metric event per visit, none from the dead batch
    events = [e for e in query_events(ops) if e.run_id.startswith(f"production-{run_id}-")]
    assert sorted(e.entity_id for e in events) == sorted(ids)
    assert not any(e.run_id.startswith(f"production-{run_id}-b{killed[0]['batch']}-") for e in events)
    # the dead batch's entities are back at their snapshot unless a later batch visited them
    dead_ids = json.loads(killed[0]["entities"])["ids"]
    snap = json.loads(
        rows(ops, "SELECT snapshot FROM production_batches WHERE batch = ?", [killed[0]["batch"]])[0]["snapshot"]
    )
    now_state = graph.snapshot(dead_ids)["entities"]
    for eid in dead_ids:
        if eid not in ids:
            assert now_state[eid] == snap["entities"][eid]
    for ev in (e for eid in dead_ids for e in graph.get_evidence(eid)):
        if ev["run_id"].startswith(f"production-{run_id}-b{killed[0]['batch']}-"):
            assert ev["rolled_back"]
