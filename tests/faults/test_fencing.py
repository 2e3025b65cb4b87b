"""Case 1 of the reliability issue: a worker declared dead must not write anything afterwards.

Unit level: a fenced graph write (apply_run, restore) lands only while its token holds the fence, and a
refused one changes nothing. Process level: a real worker is SIGSTOPped mid-batch, reaped, then the run is
rolled back (or resumed by a new worker) and the old worker is SIGCONTinued: the graph equals the
snapshots (resp. what the checkpoints say) and the metric events match the checkpoints one to one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections import Counter

import psutil
import pytest

from engine import rollout as ro
from engine.core.errors import LeaseLost
from engine.jobs.queue import JobStore
from engine.monitoring.events import query_events
from engine.rollout.records import discovery_run_id
from engine.store.graph import Fence
from engine.store.opsdb import lock_holders
from tests.support.actors import ADMIN
from tests.support.graphs import seed
from tests.support.rollouts import cancel_and_wait, candidate_file, wait_for_state
from tests.support.stages import stage_table

ATTEMPT_FIELDS = ("accepts", "weak_accepts", "rejects", "no_progress")


def evidence_count(graph, run_id: str | None = None) -> int:
    if run_id is None:
        return int(graph._rows("MATCH (ev:Evidence) RETURN count(ev)")[0][0])
    return int(graph._rows("MATCH (ev:Evidence {run_id: $r}) RETURN count(ev)", {"r": run_id})[0][0])


# --------------------------------------------------------------------------- unit: the fence itself


def test_a_fenced_write_lands_only_while_its_token_holds_the_fence(graph):
    """case 1: check and write in one query; a replaced token writes nothing and says LeaseLost."""
    [ent] = seed(graph, 1)
    hyps = graph.get_hypotheses(ent.id)
    snap = graph.snapshot([ent.id])
    graph.take_fence("rollout:1", "attempt-1")
    mine = graph.fenced(Fence("rollout:1", "attempt-1"))
    h = dataclasses.replace(hyps[0], confidence=0.42)
    mine.apply_run(ent.id, "run-a", "new", [h], [])
    assert graph.get_hypothesis(h.id).confidence == pytest.approx(0.42)

    graph.take_fence("rollout:1", "rollback:xyz")  # a rollback (or a new attempt) takes the fence over
    with pytest.raises(LeaseLost):
        mine.apply_run(ent.id, "run-a", "new", [dataclasses.replace(h, confidence=0.99)], [])
    assert graph.get_hypothesis(h.id).confidence == pytest.approx(0.42)
    with pytest.raises(LeaseLost):
        mine.restore(snap)  # a zombie's resume-restore is refused too: nothing deleted, nothing reset
    assert graph.get_hypothesis(h.id).confidence == pytest.approx(0.42)
    # the holder writes; an unfenced store (the rollback's) is never refused
    graph.fenced(Fence("rollout:1", "rollback:xyz")).restore(snap)
    assert graph.snapshot([ent.id]) == snap
    assert graph.fence_token("rollout:1") == "rollback:xyz"


def test_a_fenced_write_without_a_fence_taken_is_refused(graph):
    [ent] = seed(graph, 1)
    [h, *_] = graph.get_hypotheses(ent.id)
    with pytest.raises(LeaseLost):
        graph.fenced(Fence("rollout:9", "t")).apply_run(
            ent.id, "r", "new", [dataclasses.replace(h, confidence=0.5)], []
        )
    assert graph.get_hypothesis(h.id) == h


# --------------------------------------------------------------------------- process level


@pytest.fixture
def seeded(seed_graph):
    return seed_graph(60, 7)


def live_entities(graph, run_id: int, stage: str) -> int:
    """Entities with live evidence of the stage in the graph (written, checkpointed or not)."""
    q = "MATCH (ev:Evidence {run_id: $r}) RETURN count(DISTINCT ev.entity_id)"
    return int(graph._rows(q, {"r": discovery_run_id(run_id, stage, "new")})[0][0])


def stop_mid_batch(ops, graph, run_id: int) -> psutil.Process:
    """Wait until the worker has live writes whose checkpoint has not landed, then SIGSTOP it."""
    store = JobStore(ops)
    job_id = ro.rollout_status(ops, run_id).run.job_id
    end = time.time() + 120
    while time.time() < end:
        job = store.get(job_id)
        done = ro.rollout_status(ops, run_id).progress[0]
        if job.pid and done >= 8 and live_entities(graph, run_id, "pilot") > done:
            os.kill(job.pid, signal.SIGSTOP)
            # stopped inside a SQLite transaction it would hold the lock, and the reaper would (rightly) kill
            # it: this test is about a worker that wakes up, so stop it between two database operations
            for _ in range(200):
                if job.pid not in lock_holders(ops.path):
                    return psutil.Process(job.pid)
                os.kill(job.pid, signal.SIGCONT)
                time.sleep(0.005)
                os.kill(job.pid, signal.SIGSTOP)
            raise AssertionError("the worker never let go of the database")
        time.sleep(0.02)
    raise AssertionError("the worker made no progress")


def reap_while_stopped(ops, run_id: int) -> None:
    store = JobStore(ops)
    end = time.time() + 30
    while time.time() < end and not store.reap(stale_after_s=0.5):
        time.sleep(0.2)
    assert ro.rollout_status(ops, run_id).state == "dead"


def wake_and_wait_for_exit(proc: psutil.Process) -> None:
    os.kill(proc.pid, signal.SIGCONT)
    try:
        proc.wait(timeout=60)  # it finds its writes refused and exits, changing nothing
    except psutil.TimeoutExpired:
        proc.kill()
        raise AssertionError("the woken worker did not exit") from None


def events_by_entity(ops, run_id: int, stage: str, system: str) -> Counter[str]:
    return Counter(
        e.entity_id for e in query_events(ops, stage_id=ro.stage_key(run_id, stage), system=system, experiments=True)
    )


def start(settings, ops, graph, tmp_path) -> int:
    stages = stage_table(tmp_path, counts=(40, 50, "all"), batch=(4, 10, 10), loose_triggers=True)
    return ro.start_rollout(
        settings,
        ops,
        stage="pilot",
        stages_file=stages,
        config_file=candidate_file(tmp_path),
        time_scale=1.0,
        actor=ADMIN,
        graph=graph,
    )


@pytest.mark.slow  # starts and stops real processes
def test_stopped_worker_reaped_then_rolled_back_writes_nothing_when_it_wakes(settings, ops, seeded, tmp_path):
    """case 1: SIGSTOP -> reap -> rollback -> SIGCONT: graph equals the snapshots, no event after the rollback."""
    ids = seeded.list_entity_ids()
    before = seeded.snapshot(ids)["entities"]
    run_id = start(settings, ops, seeded, tmp_path)
    proc = stop_mid_batch(ops, seeded, run_id)
    try:
        reap_while_stopped(ops, run_id)
        res = ro.rollback(settings, ops, run_id, ADMIN, "zombie test")
        assert res.performed
        evidence_after_rollback = evidence_count(seeded)
        events_after_rollback = len(query_events(ops, experiments=True))
    finally:
        wake_and_wait_for_exit(proc)
    assert ro.rollout_status(ops, run_id).state == "rolled_back"
    assert seeded.snapshot(ids)["entities"] == before  # every entity as before the stage
    assert evidence_count(seeded) == evidence_after_rollback  # the zombie added no evidence
    q = "MATCH (ev:Evidence {run_id: $r}) WHERE ev.rolled_back = false RETURN count(ev)"
    assert seeded._rows(q, {"r": discovery_run_id(run_id, "pilot", "new")})[0][0] == 0
    assert len(query_events(ops, experiments=True)) == events_after_rollback  # and no metric event
    outcomes = ro.paired_outcomes(ops, run_id)
    assert events_by_entity(ops, run_id, "pilot", "new") == Counter(r["entity_id"] for r in outcomes)


@pytest.mark.slow  # starts and stops real processes
def test_stopped_worker_reaped_then_resumed_leaves_events_matching_checkpoints(settings, ops, seeded, tmp_path):
    """case 1: SIGSTOP -> reap -> resume (a new worker) -> SIGCONT: every entity exactly once in the graph,
    the checkpoints and the metric events."""
    ids = seeded.list_entity_ids()
    attempts_before = {
        h["id"]: sum(h[k] for k in ATTEMPT_FIELDS) for hs in seeded.snapshot(ids)["entities"].values() for h in hs
    }
    run_id = start(settings, ops, seeded, tmp_path)
    proc = stop_mid_batch(ops, seeded, run_id)
    try:
        reap_while_stopped(ops, run_id)
        ro.resume(ops, run_id, ADMIN, settings=settings)  # a new worker takes the lease and the fence
        end = time.time() + 30
        while time.time() < end and ro.rollout_status(ops, run_id).state != "running":
            time.sleep(0.05)
        time.sleep(0.5)  # let the new worker get going before the old one wakes
    finally:
        wake_and_wait_for_exit(proc)
    st = wait_for_state(ops, run_id)
    assert st.state in ("soaking", "inconclusive", "completed"), st.state
    cancel_and_wait(ops, run_id)
    outcomes = ro.paired_outcomes(ops, run_id)
    with ops.connect() as db:
        cohort = json.loads(
            next(iter(db.query("SELECT cohort FROM rollout_stages WHERE run_id = ? AND stage = 'pilot'", [run_id])))[
                "cohort"
            ]
        )
    assert sorted(r["entity_id"] for r in outcomes) == sorted(cohort)
    assert events_by_entity(ops, run_id, "pilot", "new") == Counter(cohort)  # one event per checkpoint
    shadowed = Counter(r["entity_id"] for r in outcomes if r["shadowed"])
    assert events_by_entity(ops, run_id, "pilot", "old") == shadowed
    after = seeded.snapshot(ids)["entities"]
    for eid in cohort:
        grown = sum(sum(h[k] for k in ATTEMPT_FIELDS) - attempts_before[h["id"]] for h in after[eid])
        assert grown == next(r["new_hops"] for r in outcomes if r["entity_id"] == eid), eid
