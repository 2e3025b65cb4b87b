"""Staged rollout against the real stores: full run, automatic rollback to the snapshot, dry run, controls,
decision records that recompute, concurrent rollbacks, and a SIGKILL'd worker resumed (exactly once)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from engine import rollout as ro
from engine.core.errors import ConfigError, DiscoveryError
from engine.core.params import ParameterConfig
from engine.jobs.queue import JobState, JobStore, run_claimed
from engine.monitoring.events import query_events
from tests.support.actors import ADMIN, as_role
from tests.support.rollouts import StoreGoesAway, cancel_and_wait, hand_over_candidate, wait_for_state
from tests.support.stages import stage_table

#: named people with fixed roles (their key is what the audit log and the decision records keep)
ALICE = as_role("approver", "alice")
BOB = as_role("operator", "bob")

#: a candidate that really costs more: no early stop, four times the iterations and ten times the budget
BAD = ParameterConfig().with_changes(
    max_iterations=80,
    max_cost_usd=5.0,
    stop_confidence=1.0,
    flat_epsilon=0.0,
    flat_window=20,
    depth_patience=10,
    saturation_count=20,
    saturation_window=20,
)


@pytest.fixture
def seeded(seed_graph, ops, tmp_path):
    """60 entities, and a handed-over candidate the discovery runs cannot tell from the live config (a live
    rollout of the live config itself is refused)."""
    hand_over_candidate(ops, tmp_path / "handed")
    return seed_graph(60, 7)


def state_of(graph, ids):
    """Every hypothesis of the entities, as stored (the snapshot's own format)."""
    return graph.snapshot(ids)["entities"]


def run_job_here(settings, ops, run_id):
    """Run the rollout's job in this process until it returns (what `worker --job ID` does)."""
    st = ro.rollout_status(ops, run_id)
    return run_claimed(JobStore(ops), st.run.job_id, settings, poll_s=0.05)


def cohort(ops, run_id, stage):
    with ops.connect() as db:
        row = next(iter(db.query("SELECT cohort FROM rollout_stages WHERE run_id = ? AND stage = ?", [run_id, stage])))
    return json.loads(row["cohort"])


# --------------------------------------------------------------------------- full run


def test_full_pilot_to_production_promotes_each_stage_after_its_duration(settings, ops, seeded, tmp_path):
    ids = seeded.list_entity_ids()
    before = state_of(seeded, ids)
    stages = stage_table(tmp_path)
    cand = tmp_path / "cand.json"
    ParameterConfig().with_changes(novelty_decay=1.5).save(cand)
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="all",
        stages_file=stages,
        config_file=cand,
        time_scale=86400 * 4,
        launch=False,
        actor=ADMIN,
        graph=seeded,
    )
    job = run_job_here(settings, ops, run_id)
    assert job.state is JobState.SUCCEEDED, job.error
    st = ro.rollout_status(ops, run_id)
    assert st.state == "completed"
    assert [(s.name, s.state, s.done, s.total) for s in st.stages] == [
        ("pilot", "promoted", 10, 10),
        ("limited", "promoted", 20, 20),
        ("production", "promoted", 30, 30),
    ]
    # cumulative exposure: disjoint cohorts that together are every entity
    cohorts = [cohort(ops, run_id, s) for s in ("pilot", "limited", "production")]
    assert sum(map(len, cohorts)) == len(set().union(*map(set, cohorts))) == 60
    # each stage waited out its minimum duration (scaled) before the worker promoted it
    for s in st.stages:
        assert s.elapsed_days >= s.min_duration_days
    promotes = [d for d in st.decisions if d.gate == "promote"]
    assert [d.actor for d in promotes] == ["worker"] * 3 and not any(d.forced for d in promotes)
    # the live stage ran the candidate live and wrote to the graph; the baseline ran in shadow
    after = state_of(seeded, ids)
    assert after != before
    for stage in ("pilot", "limited", "production"):
        events = query_events(ops, stage_id=ro.stage_key(run_id, stage))
        new = [e for e in events if e.system == "new"]
        old = [e for e in events if e.system == "old"]
        assert len(new) == len(old) == len(cohort(ops, run_id, stage))
        assert all(not e.shadow for e in new) and all(e.shadow for e in old)
        assert {e.config_hash for e in new} == {ParameterConfig.load(cand).hash()}
    # production promoted: the candidate is now the live config (the old system's config next time)
    assert ro.live_config(ops) == ParameterConfig.load(cand)
    assert set(ro.assigned_systems(ops).keys()) == set(ids)
    # every gate recomputes to what it recorded
    for d in ro.decision_records(ops, run_id):
        verdict, ok = ro.recompute_decision(ops, d.id)
        assert ok, (d.id, d.gate, d.reason)
    report = ro.stage_report(ops, run_id, "limited")
    assert "# Rollout" in report and "| success | error_rate_pct" in report and "engine time per entity" in report


def test_decision_record_recomputes_and_a_tampered_one_does_not(settings, ops, seeded, tmp_path):
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="pilot",
        stages_file=stage_table(tmp_path, lenient=False),
        time_scale=86400 * 100,
        launch=False,
        graph=seeded,
        actor=ADMIN,
    )
    run_job_here_until(settings, ops, run_id, lambda st: st.state in ("inconclusive", "completed", "rolled_back"))
    recs = ro.decision_records(ops, run_id)
    assert recs and all(ro.recompute_decision(ops, d.id)[1] for d in recs)
    rec = recs[0]
    rec.record["measurements"]["cost_reduction_pct"]["value"] = 99.0
    rec.record["verdict"]["phase"] = "passed"
    with ops.transaction() as db:
        db.execute("UPDATE rollout_decisions SET record = ? WHERE id = ?", [json.dumps(rec.record), rec.id])
    assert ro.recompute_decision(ops, rec.id)[1] is False
    ro.cancel(ops, run_id, ADMIN)


def run_job_here_until(settings, ops, run_id, until, timeout=120):
    """Run the job in a thread; return the status once ``until(status)`` holds (the job keeps waiting)."""
    t = threading.Thread(target=run_job_here, args=(settings, ops, run_id), daemon=True)
    t.start()
    end = time.time() + timeout
    while time.time() < end:
        st = ro.rollout_status(ops, run_id)
        if until(st):
            return st, t
        time.sleep(0.1)
    raise AssertionError(f"rollout {run_id} never reached the wanted state: {ro.rollout_status(ops, run_id).state}")


# --------------------------------------------------------------------------- failing stage


def test_failing_stage_rolls_back_by_itself_and_graph_equals_snapshot(settings, ops, seeded, tmp_path):
    ids = seeded.list_entity_ids()
    before = state_of(seeded, ids)
    evidence_before = {e: len(seeded.get_evidence(e)) for e in ids}
    bad = tmp_path / "bad.json"
    BAD.save(bad)
    stages = stage_table(tmp_path, counts=(10, 40, "all"), min_sample=(5, 10, 10))
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="all",
        stages_file=stages,
        config_file=bad,
        time_scale=86400 * 4,
        launch=False,
        graph=seeded,
        actor=ADMIN,
    )
    job = run_job_here(settings, ops, run_id)
    assert job.state is JobState.SUCCEEDED, job.error
    st = ro.rollout_status(ops, run_id)
    assert st.state == "rolled_back"
    pilot = st.stage("pilot")
    assert pilot.state == "rolled_back"
    # it really cost more: the trigger saw a measured cost increase above 10%
    assert pilot.paired.new_cost_usd > pilot.paired.old_cost_usd * 1.10
    rb = [d for d in st.decisions if d.gate == "rollback"]
    assert len(rb) == 1 and rb[0].actor == "worker" and rb[0].phase == "failed"
    assert "cost_increase_pct" in rb[0].reason
    assert ro.recompute_decision(ops, rb[0].id)[1]
    # it stopped at the first batch that breached (min sample 5), not after the whole stage
    assert pilot.done == 5
    assert [s.state for s in st.stages[1:]] == ["pending", "pending"]
    # graph equals the snapshot taken before the stage, exactly; the evidence trail is kept, marked rolled back
    assert state_of(seeded, ids) == before
    exposed = cohort(ops, run_id, "pilot")
    for eid in exposed:
        trail = seeded.get_evidence(eid)
        ours = [e for e in trail if e["run_id"] == ro.discovery_run_id(run_id, "pilot", "new")]
        assert len(trail) >= evidence_before[eid]
        assert all(e["rolled_back"] for e in ours)
    assigned = ro.assigned_systems(ops, exposed)
    assert {a["system"] for a in assigned.values()} <= {"old"}
    assert ops.list_audit(action="rollout.rollback")[0]["actor"] == "worker"
    assert ro.live_config(ops) == ParameterConfig()  # nothing promoted


def test_manual_rollback_after_promotion_restores_every_stage_and_is_idempotent(settings, ops, seeded, tmp_path):
    ids = seeded.list_entity_ids()
    before = state_of(seeded, ids)
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="all",
        stages_file=stage_table(tmp_path, counts=(10, 20, "all"), loose_triggers=True),
        entities=30,
        time_scale=86400 * 4,
        launch=False,
        graph=seeded,
        actor=ADMIN,
    )
    assert run_job_here(settings, ops, run_id).state is JobState.SUCCEEDED
    assert ro.rollout_status(ops, run_id).state == "completed"
    assert state_of(seeded, ids) != before
    res = ro.rollback(settings, ops, run_id, ADMIN, "second thoughts", graph=seeded)
    assert res.performed and res.entities_restored == 30 and res.evidence_marked > 0
    assert state_of(seeded, ids) == before
    again = ro.rollback(settings, ops, run_id, ADMIN, "again", graph=seeded)
    assert not again.performed and "already" in again.message
    assert len([a for a in ops.list_audit(action="rollout.rollback")]) == 1


def test_two_rollbacks_at_once_make_one(settings, ops, seeded, tmp_path):
    ids = seeded.list_entity_ids()
    before = state_of(seeded, ids)
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="pilot",
        stages_file=stage_table(tmp_path, loose_triggers=True),
        time_scale=1.0,
        launch=False,
        graph=seeded,
        actor=ADMIN,
    )
    st, worker = run_job_here_until(settings, ops, run_id, lambda s: s.state == "soaking")
    barrier = threading.Barrier(2)
    results = []

    def request(who):
        barrier.wait()
        results.append(ro.rollback(settings, ops, run_id, who, "race", graph=seeded))

    threads = [threading.Thread(target=request, args=(as_role("approver", f"op{i}"),)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    worker.join(30)
    assert sorted(r.performed for r in results) == [False, True]
    assert len(ops.list_audit(action="rollout.rollback")) == 1
    assert len(ops.list_audit(action="rollout.rollback.noop")) == 1
    assert len([d for d in ro.decision_records(ops, run_id) if d.gate == "rollback"]) == 1
    assert state_of(seeded, ids) == before
    assert JobStore(ops).get(st.run.job_id).state is JobState.CANCELLED  # the worker was stopped first


# --------------------------------------------------------------------------- dry run, controls, gates


def test_dry_run_touches_nothing_live(settings, ops, seeded, tmp_path):
    ids = seeded.list_entity_ids()
    before = state_of(seeded, ids)
    evidence = {e: seeded.get_evidence(e) for e in ids}
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="all",
        stages_file=stage_table(tmp_path),
        dry_run=True,
        config_file=None,
        time_scale=86400 * 4,
        launch=False,
        graph=seeded,
        actor=ADMIN,
    )
    assert run_job_here(settings, ops, run_id).state is JobState.SUCCEEDED
    st = ro.rollout_status(ops, run_id)
    assert st.state == "completed" and st.progress == (60, 60)
    assert state_of(seeded, ids) == before
    assert {e: seeded.get_evidence(e) for e in ids} == evidence
    assert ro.assigned_systems(ops) == {}
    assert ops.get_setting(ro.LIVE_CONFIG_KEY) is None
    with ops.connect() as db:
        assert all(r["snapshot"] is None for r in db.query("SELECT snapshot FROM rollout_stages"))
    events = query_events(ops, stage_id=ro.stage_key(run_id, "pilot"))
    assert events and all(e.shadow for e in events)


def test_inconclusive_waits_for_a_person_and_promote_respects_min_duration(settings, ops, seeded, tmp_path):
    stages = stage_table(tmp_path, lenient=False, min_days=(3, 7, 30))
    run_id = ro.start_rollout(
        settings, ops, stage="pilot", stages_file=stages, time_scale=1.0, launch=False, graph=seeded, actor=ADMIN
    )
    st, worker = run_job_here_until(
        settings, ops, run_id, lambda s: s.state in ("inconclusive", "soaking", "rolled_back")
    )
    if st.state == "rolled_back":
        pytest.skip("this world made the default candidate breach a trigger")
    with pytest.raises(DiscoveryError, match="minimum days"):
        ro.promote(ops, run_id, ALICE)
    st = ro.promote(ops, run_id, ALICE, force=True)
    worker.join(30)
    assert st.state == "completed"
    d = ro.decision_records(ops, run_id)[0]
    assert d.gate == "promote" and d.forced and d.actor == "alice"
    assert ro.recompute_decision(ops, d.id)[1]
    audit = ops.list_audit(action="rollout.promote")[0]
    assert audit["actor"] == "alice" and audit["details"]["forced"] is True
    # pilot only: the live config is not changed by a pilot
    assert ops.get_setting(ro.LIVE_CONFIG_KEY) is None


def test_pause_resume_and_cancel_between_entities(settings, ops, seeded, tmp_path):
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="pilot",
        stages_file=stage_table(tmp_path, batch=(2, 10, 10), loose_triggers=True),
        time_scale=1.0,
        launch=False,
        graph=seeded,
        actor=ADMIN,
    )
    st, worker = run_job_here_until(settings, ops, run_id, lambda s: s.progress[0] >= 2)
    ro.pause(ops, run_id, BOB)
    st, _ = None, None
    end = time.time() + 30
    while time.time() < end and ro.rollout_status(ops, run_id).state != "paused":
        time.sleep(0.05)
    paused = ro.rollout_status(ops, run_id)
    assert paused.state == "paused"
    time.sleep(0.5)
    assert ro.rollout_status(ops, run_id).progress == paused.progress  # nothing runs while paused
    ro.resume(ops, run_id, BOB)
    end = time.time() + 60
    while time.time() < end and ro.rollout_status(ops, run_id).state not in ("soaking", "inconclusive"):
        time.sleep(0.05)
    ro.cancel(ops, run_id, BOB)
    worker.join(30)
    st = ro.rollout_status(ops, run_id)
    assert st.state == "cancelled" and st.progress == (10, 10)
    assert [a["action"] for a in ops.list_audit(actor="bob")][::-1] == [
        "rollout.pause",
        "rollout.resume",
        "rollout.cancel",
    ]
    with pytest.raises(DiscoveryError, match="nothing to"):
        ro.pause(ops, run_id, BOB)


def test_bad_requests_are_one_line_errors_and_write_nothing(settings, ops, seeded, tmp_path):
    stages = stage_table(tmp_path)
    with pytest.raises(DiscoveryError, match="unknown stage 'pilott'"):
        ro.start_rollout(settings, ops, stage="pilott", stages_file=stages, launch=False, graph=seeded, actor=ADMIN)
    with pytest.raises(ConfigError, match="does not exist"):
        ro.start_rollout(
            settings, ops, stage="pilot", config_file=tmp_path / "nope.json", launch=False, graph=seeded, actor=ADMIN
        )
    with pytest.raises(DiscoveryError, match="entities: got 0"):
        ro.start_rollout(settings, ops, stage="pilot", entities=0, launch=False, graph=seeded, actor=ADMIN)
    with pytest.raises(DiscoveryError, match="seed: got 100000000000000000000 .allowed"):
        ro.start_rollout(settings, ops, stage="pilot", seed=10**20, launch=False, graph=seeded, actor=ADMIN)
    with pytest.raises(DiscoveryError, match="world seed: got nan"):
        ro.start_rollout(settings, ops, stage="pilot", world_seed=float("nan"), launch=False, graph=seeded, actor=ADMIN)
    with pytest.raises(ConfigError, match="time scale"):
        ro.start_rollout(settings, ops, stage="pilot", time_scale=0, launch=False, graph=seeded, actor=ADMIN)
    with pytest.raises(DiscoveryError, match="no rollout"):
        ro.promote(ops, None, ADMIN)
    assert ro.list_runs(ops) == [] and JobStore(ops).list() == []
    run_id = ro.start_rollout(settings, ops, stage="pilot", stages_file=stages, launch=False, graph=seeded, actor=ADMIN)
    with pytest.raises(DiscoveryError, match=f"rollout {run_id} is still running"):
        ro.start_rollout(settings, ops, stage="pilot", stages_file=stages, launch=False, graph=seeded, actor=ADMIN)
    with pytest.raises(DiscoveryError, match="still running|not started"):
        ro.promote(ops, run_id, ADMIN)
    for exc in (DiscoveryError,):
        try:
            ro.start_rollout(settings, ops, stage="pilott", launch=False, graph=seeded, actor=ADMIN)
        except exc as e:
            assert "\n" not in str(e)


def test_candidate_handoff_is_used_and_audited(settings, ops, seeded, tmp_path):
    path = tmp_path / "configs" / "tuned.json"
    tuned = ParameterConfig().with_changes(exploration_bonus=0.8)
    tuned.save(path)
    info = ro.set_candidate(ops, path, ADMIN, source="study 3")
    assert info["hash"] == tuned.hash()
    assert ops.list_audit(action="rollout.candidate")[0]["actor"] == ADMIN.key
    path.unlink()  # the stored values are the candidate, not the file
    run_id = ro.start_rollout(
        settings, ops, stage="pilot", stages_file=stage_table(tmp_path), launch=False, graph=seeded, actor=ADMIN
    )
    run = ro.rollout_status(ops, run_id).run
    assert run.candidate_hash == tuned.hash() and run.baseline_hash == ParameterConfig().hash()
    assert "study 3" in run.candidate_source


# --------------------------------------------------------------------------- a real worker, killed


#: the pilot's progress at which the SIGKILL test stops waiting for a mid-batch moment (it has 40 entities)
LAST_CHANCE = 28


@pytest.mark.slow  # starts or kills real processes
def test_sigkilled_worker_resumed_processes_every_entity_exactly_once(settings, ops, seeded, tmp_path):
    ids = seeded.list_entity_ids()
    attempts_before = {
        h["id"]: sum(h[k] for k in ("accepts", "weak_accepts", "rejects", "no_progress"))
        for hs in state_of(seeded, ids).values()
        for h in hs
    }
    stages = stage_table(tmp_path, counts=(40, 50, "all"), batch=(4, 10, 10), loose_triggers=True)
    run_id = ro.start_rollout(
        settings, ops, stage="pilot", stages_file=stages, time_scale=1.0, actor=ADMIN, graph=seeded
    )  # launches a detached `python -m engine worker --job ID`
    store = JobStore(ops)
    job_id = ro.rollout_status(ops, run_id).run.job_id
    # Kill it mid-batch: live runs written to the graph whose checkpoint has not landed yet. That window is short
    # (the batch's one graph write, then its checkpoint); on a machine so busy that no look lands in one before the
    # pilot nears its end, kill it between batches instead: every entity must still count exactly once. (Freezing
    # the worker to look is no good: frozen inside a transaction it holds the ops database's lock.)
    end = time.time() + 120
    while time.time() < end:
        job = store.get(job_id)
        done = ro.rollout_status(ops, run_id).progress[0]
        live = seeded._rows(
            "MATCH (ev:Evidence {run_id: $r}) RETURN count(DISTINCT ev.entity_id)",
            {"r": ro.discovery_run_id(run_id, "pilot", "new")},
        )[0][0]
        if job.pid and done >= 8 and (live > done or done >= LAST_CHANCE):
            break
        time.sleep(0.02)
    else:
        raise AssertionError("worker made no progress")
    os.kill(job.pid, signal.SIGKILL)
    end = time.time() + 30
    while time.time() < end and not store.reap(stale_after_s=3600):
        time.sleep(0.1)
    killed_at = ro.rollout_status(ops, run_id)
    assert killed_at.state == "dead"
    assert 8 <= killed_at.progress[0] < 40
    ro.resume(ops, run_id, ADMIN, settings=settings)  # requeue + a new detached worker
    st = wait_for_state(ops, run_id)
    assert st.state in ("soaking", "inconclusive", "completed"), st.state
    cancel_and_wait(ops, run_id)
    rows = ro.paired_outcomes(ops, run_id)
    exposed = cohort(ops, run_id, "pilot")
    assert sorted(r["entity_id"] for r in rows) == sorted(exposed)  # none twice, none skipped
    assert sorted(r["seq"] for r in rows) == list(range(40))
    assert {r["attempt"] for r in rows} == {1, 2}
    # the graph saw each entity's live run exactly once: hypothesis attempts grew by that run's hops
    after = state_of(seeded, ids)
    for eid in exposed:
        grown = sum(
            sum(h[k] for k in ("accepts", "weak_accepts", "rejects", "no_progress")) - attempts_before[h["id"]]
            for h in after[eid]
        )
        outcome = next(r for r in rows if r["entity_id"] == eid)
        assert grown == outcome["new_hops"], eid
    assert store.get(job_id).attempts == 2


def test_a_rollback_interrupted_by_the_store_can_be_retried_at_once(settings, ops, seeded, tmp_path):
    from engine.core.errors import StoreUnavailable

    ids = seeded.list_entity_ids()
    before = state_of(seeded, ids)
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="pilot",
        stages_file=stage_table(tmp_path, loose_triggers=True),
        time_scale=86400 * 4,
        launch=False,
        graph=seeded,
        actor=ADMIN,
    )
    assert run_job_here(settings, ops, run_id).state is JobState.SUCCEEDED
    assert ro.rollout_status(ops, run_id).state == "completed"

    with pytest.raises(StoreUnavailable):
        ro.rollback(settings, ops, run_id, ADMIN, "first try", graph=StoreGoesAway(seeded))
    assert ro.rollout_status(ops, run_id).state == "rollback_interrupted"  # says so, and offers resume/rollback
    res = ro.rollback(settings, ops, run_id, ADMIN, "second try", graph=seeded)
    assert res.performed and res.entities_restored == 10
    assert state_of(seeded, ids) == before
    assert ro.rollout_status(ops, run_id).state == "rolled_back"
