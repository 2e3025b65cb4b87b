"""The production scheduler against the real stores: live assignments during an active rollout, the day's
budget to the cent, pause and resume of its job, a batch abandoned by a dead worker restored from its snapshot."""

from __future__ import annotations

import threading
import time

import pytest

from engine import rollout as ro
from engine.core.configs import live_config
from engine.jobs.queue import JobState, JobStore, run_claimed
from engine.monitoring.events import query_events
from engine.production.budget import day_of
from engine.production.control import (
    pause_production,
    production_status,
    resume_production,
    start_production,
    stop_production,
)
from engine.production.policy import RefreshPolicy
from engine.production.records import ABANDONED, RESERVED, SETTLED, STAGE_ID, day_spent
from engine.production.scheduler import Scheduler
from tests.support.actors import ADMIN
from tests.support.rollouts import SAME_DISCOVERY, candidate_file, wait_for_state
from tests.support.stages import stage_table

DAY = 86400.0


def visits(ops):
    with ops.connect() as db:
        return list(db.query("SELECT * FROM production_visits ORDER BY batch, entity_id"))


def batches(ops):
    with ops.connect() as db:
        return list(db.query("SELECT * FROM production_batches ORDER BY run_id, batch"))


def test_an_exposed_entity_runs_the_candidate_and_the_others_the_live_config(settings, ops, seed_graph, tmp_path):
    graph = seed_graph(30, 7)
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="pilot",
        stages_file=stage_table(tmp_path, min_days=(30, 30, 30), loose_triggers=True),
        config_file=candidate_file(tmp_path),
        time_scale=1.0,  # the pilot soaks for 30 real days: the rollout stays active while production runs
        launch=False,
        actor=ADMIN,
        graph=graph,
    )
    job_id = ro.rollout_status(ops, run_id).run.job_id
    rollout_thread = threading.Thread(
        target=run_claimed, args=(JobStore(ops), job_id, settings), kwargs={"poll_s": 0.05}, daemon=True
    )
    rollout_thread.start()
    try:
        assert wait_for_state(ops, run_id, ["soaking", "rolled_back", "inconclusive"]).state == "soaking"
        exposed = set(ro.assigned_systems(ops))
        assert len(exposed) == 10
        prod = start_production(settings, ops, budget_usd=100.0, batch_size=50, actor=ADMIN, launch=False)
        result = Scheduler(graph, ops, prod).step()
        assert result.kind == "ran" and result.visits == 30
    finally:
        ro.cancel(ops, run_id, ADMIN)
        rollout_thread.join(timeout=60)
    rows = {v["entity_id"]: v for v in visits(ops)}
    assert set(rows) == set(graph.list_entity_ids())
    cand, live = SAME_DISCOVERY.hash(), live_config(ops).hash()
    assert cand != live
    for eid, v in rows.items():
        if eid in exposed:
            assert (v["system"], v["config_hash"], v["stage_id"]) == ("new", cand, ro.stage_key(run_id, "pilot"))
        else:
            assert (v["system"], v["config_hash"], v["stage_id"]) == ("old", live, STAGE_ID)
    # every visit is one live metric event with the same system, config and stage id
    events = [e for e in query_events(ops) if e.run_id.startswith(f"production-{prod}-")]
    assert sorted((e.entity_id, e.system, e.config_hash, e.stage_id) for e in events) == sorted(
        (eid, v["system"], v["config_hash"], v["stage_id"]) for eid, v in rows.items()
    )
    assert not any(e.shadow for e in events)


def test_the_days_budget_is_never_exceeded_and_the_next_day_opens_a_new_one(settings, ops, seed_graph):
    graph = seed_graph(40, 7)
    now = [1_800_000_000.0]
    prod = start_production(
        settings,
        ops,
        budget_usd=2.5,
        policy=RefreshPolicy(0.0, DAY),
        batch_size=3,
        actor=ADMIN,
        launch=False,
    )
    sched = Scheduler(graph, ops, prod, clock=lambda: now[0])
    kinds = []
    for _ in range(30):
        r = sched.step()
        kinds.append(r.kind)
        if r.kind == "budget":
            break
        now[0] += 60
    assert kinds[-1] == "budget" and kinds.count("ran") >= 2
    day = day_of(now[0])
    with ops.connect() as db:
        spent = day_spent(db, day)
    rows = batches(ops)
    assert all(b["state"] == SETTLED for b in rows)
    assert spent == pytest.approx(sum(b["spent_usd"] for b in rows))
    assert spent <= 2.5 + 1e-9
    # what is left is less than one more visit's cap: admitting another would risk the budget
    assert 2.5 - spent < 0.475
    assert r.wait_until is not None and day_of(r.wait_until) != day
    # the next UTC day has a budget of its own
    now[0] = r.wait_until + 1
    assert sched.step().kind == "ran"
    st = production_status(ops, graph, now=now[0])
    assert st.summary.visits > 0 and st.summary.spent_usd <= 2.5


def test_a_batch_left_reserved_is_restored_and_counted_at_its_reservation(settings, ops, seed_graph):
    graph = seed_graph(12, 7)
    ids = graph.list_entity_ids()
    before = graph.snapshot(ids)["entities"]
    now = [1_800_000_000.0]
    prod = start_production(settings, ops, budget_usd=50.0, batch_size=4, actor=ADMIN, launch=False)

    class Dies(Exception):
        pass

    sched = Scheduler(graph, ops, prod, clock=lambda: now[0])
    original = sched._run_batch

    def run_then_die(chosen, caps, day):
        original(chosen, caps, day)
        # the batch ran and was written; now pretend the worker died before it settled
        with ops.transaction() as db:
            db.execute("UPDATE production_batches SET state = ?, spent_usd = NULL WHERE batch = 0", [RESERVED])
            db.execute("DELETE FROM production_visits")
        raise Dies()

    sched._run_batch = run_then_die
    with pytest.raises(Dies):
        sched.step()
    reserved = batches(ops)[0]["reserved_usd"]
    assert graph.snapshot(ids)["entities"] != before  # the dead batch had written its runs
    fresh = Scheduler(graph, ops, prod, clock=lambda: now[0])
    assert fresh.recover() == 1
    assert graph.snapshot(ids)["entities"] == before  # ... restored from the batch's snapshot
    (b,) = batches(ops)
    assert b["state"] == ABANDONED
    with ops.connect() as db:
        assert day_spent(db, day_of(now[0])) == pytest.approx(reserved)  # what it bought is unknown: all of it
    r = fresh.step()  # its entities are still new: visited again, once
    assert r.kind == "ran" and r.visits == 4
    assert len({v["entity_id"] for v in visits(ops)}) == len(visits(ops)) == 4


def test_pause_resume_and_stop_of_the_job(settings, ops, seed_graph, monkeypatch):
    seed_graph(40, 7)
    monkeypatch.setattr("engine.production.scheduler.IDLE_POLL_S", 0.2)
    prod = start_production(
        settings, ops, budget_usd=100.0, policy=RefreshPolicy(0.0, DAY), batch_size=2, actor=ADMIN, launch=False
    )
    job_id = JobStore(ops).list(kind="production")[0].id
    t = threading.Thread(
        target=run_claimed, args=(JobStore(ops), job_id, settings), kwargs={"poll_s": 0.05}, daemon=True
    )
    t.start()
    try:
        end = time.time() + 60
        while len(visits(ops)) < 4 and time.time() < end:
            time.sleep(0.05)
        assert len(visits(ops)) >= 4
        pause_production(ops, ADMIN)
        end = time.time() + 60
        while JobStore(ops).get(job_id).state is not JobState.PAUSED and time.time() < end:
            time.sleep(0.05)
        assert JobStore(ops).get(job_id).state is JobState.PAUSED
        n = len(visits(ops))
        time.sleep(0.5)
        assert len(visits(ops)) == n  # paused: nothing more is visited
        resume_production(ops, ADMIN, launch=False)
        end = time.time() + 60
        while len(visits(ops)) <= n and time.time() < end:
            time.sleep(0.05)
        assert len(visits(ops)) > n
        stop_production(ops, ADMIN)
        t.join(timeout=60)
        assert JobStore(ops).get(job_id).state is JobState.CANCELLED
    finally:
        if t.is_alive():
            stop_production(ops, ADMIN)
            t.join(timeout=60)
    assert all(b["state"] in (SETTLED, ABANDONED) for b in batches(ops))
    actions = [a["action"] for a in ops.list_audit(20)]
    assert {"production.start", "production.pause", "production.resume", "production.stop"} <= set(actions)
    assert prod == 1
