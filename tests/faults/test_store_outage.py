"""Case 2 of the reliability issue: a store outage is a fault of the machinery, never an outcome of the
candidate. The embedded FalkorDB is SIGKILLed while a real worker runs a stage: the batch in flight is not
checkpointed, the run pauses with the reason, the worker brings the store back by itself and carries on,
and every entity counts exactly once (no ``new_crashed``, no rollback trigger)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from engine import rollout as ro
from engine.core.errors import StoreUnavailable
from engine.jobs.queue import JobStore
from engine.monitoring.events import query_events
from engine.store import falkor
from engine.store.graph import GraphStore
from tests.support.actors import ADMIN
from tests.support.rollouts import StoreGoesAway, cancel_and_wait, candidate_file, run_pilot_here, wait_for_state
from tests.support.stages import stage_table

ATTEMPT_FIELDS = ("accepts", "weak_accepts", "rejects", "no_progress")


@pytest.fixture
def seeded(seed_graph):
    return seed_graph(60, 7)


@pytest.mark.slow  # kills the embedded server under a real worker
def test_killing_the_graph_store_mid_stage_pauses_and_resumes_exactly_once(settings, ops, seeded, tmp_path):
    ids = seeded.list_entity_ids()
    attempts_before = {
        h["id"]: sum(h[k] for k in ATTEMPT_FIELDS) for hs in seeded.snapshot(ids)["entities"].values() for h in hs
    }
    stages = stage_table(tmp_path, counts=(40, 50, "all"), batch=(4, 10, 10))  # the shipped triggers
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="pilot",
        stages_file=stages,
        config_file=candidate_file(tmp_path),
        time_scale=1.0,
        actor=ADMIN,
        graph=seeded,
    )
    store = JobStore(ops)
    job_id = ro.rollout_status(ops, run_id).run.job_id
    end = time.time() + 120
    while time.time() < end and ro.rollout_status(ops, run_id).progress[0] < 8:
        time.sleep(0.02)
    server = falkor.server_status(settings).pid
    assert server is not None
    os.kill(server, signal.SIGKILL)

    # the worker pauses with the reason (it may already be retrying: look at the job's events and the audit)
    end = time.time() + 60
    while time.time() < end and not ops.list_audit(action="rollout.fault"):
        time.sleep(0.05)
    [fault] = ops.list_audit(action="rollout.fault")
    assert "paused by a fault of the store" in fault["details"]["reason"]
    assert any(e["event"] == "paused" for e in store.events(job_id))

    st = wait_for_state(ops, run_id)
    assert st.state in ("soaking", "inconclusive", "completed"), (st.state, st.run.message)
    cancel_and_wait(ops, run_id)
    assert store.get(job_id).attempts == 1  # the same worker carried on: no resume was needed

    outcomes = ro.paired_outcomes(ops, run_id)
    assert not [r for r in outcomes if r["new_crashed"] or r["new_error"] or r["old_error"]]
    cohort = [r["entity_id"] for r in outcomes]
    assert len(cohort) == 40 and len(set(cohort)) == 40
    events = Counter(
        e.entity_id for e in query_events(ops, stage_id=ro.stage_key(run_id, "pilot"), system="new", experiments=True)
    )
    assert events == Counter(cohort)
    with GraphStore.open(settings) as fresh:  # the test's own client lost its connection with the server
        after = fresh.snapshot(ids)["entities"]
    for eid in cohort:
        grown = sum(sum(h[k] for k in ATTEMPT_FIELDS) - attempts_before[h["id"]] for h in after[eid])
        assert grown == next(r["new_hops"] for r in outcomes if r["entity_id"] == eid), eid


def test_a_rollback_interrupted_by_an_outage_is_finished_by_resume(settings, ops, seeded, tmp_path):
    """case 2: the automatic rollback failed on a dead store and `rollout resume` answered "nothing to resume";
    now the run says rollback_interrupted, and resume finishes the rollback."""
    ids = seeded.list_entity_ids()
    before = seeded.snapshot(ids)["entities"]
    run_id = run_pilot_here(settings, ops, seeded, tmp_path)
    with pytest.raises(StoreUnavailable):
        ro.rollback(settings, ops, run_id, ADMIN, "store dies", graph=StoreGoesAway(seeded))
    st = ro.rollout_status(ops, run_id)
    assert st.state == "rollback_interrupted" and st.state.can_resume() and st.state.awaits_operator()
    st = ro.resume(ops, run_id, ADMIN, settings=settings)
    assert st.state == "rolled_back"
    assert seeded.snapshot(ids)["entities"] == before
    assert [a["action"] for a in ops.list_audit(action="rollout.rollback")]  # finished and audited
