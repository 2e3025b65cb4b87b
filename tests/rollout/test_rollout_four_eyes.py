"""Four-eyes on promotion, against the real stores and a real worker: who started a run may not approve its
promotion into a four-eyes stage, its promotion live from one, or any forced promotion; a second approver may,
and the decision record keeps both identities; the worker waits for that person instead of promoting; a
rollback never waits for anyone; sign-in off records the rule as waived, not met."""

from __future__ import annotations

import json
import threading
import time

import pytest

from engine import rollout as ro
from engine.core.access import LOCAL_ACTOR, PermissionDenied
from engine.core.errors import ConfigError
from engine.jobs.queue import JobState, JobStore, run_claimed
from engine.rollout.records import read_run
from engine.rollout.stages import DEFAULT_STAGES_FILE, load_stage_config, parse_stage_config, save_stage_config
from tests.support.actors import ADMIN, person
from tests.support.rollouts import cancel_and_wait, candidate_file, wait_for_state
from tests.support.stages import SHIPPED_STAGES, stage_table

#: wall seconds a test waits for the worker to reach a state
TIMEOUT_S = 240.0


def pilot_then_production(tmp_path, *, min_days=0.5):
    """Pilot (10 entities) straight into a four-eyes production stage without a bake: each promotion needs
    a second approver."""
    return stage_table(
        tmp_path,
        counts=(10, 30, "all"),
        min_days=(min_days, min_days, min_days),
        loose_triggers=True,
        four_eyes=("production",),
        drop=("limited",),
        bake_days=0,
        name="four-eyes.json",
    )


def start(settings, ops, graph, tmp_path, actor, *, stage="all", stages=None, time_scale=86400 * 4):
    return ro.start_rollout(
        settings,
        ops,
        stage=stage,
        stages_file=stages or pilot_then_production(tmp_path),
        config_file=candidate_file(tmp_path),
        time_scale=time_scale,
        launch=False,
        actor=actor,
        graph=graph,
    )


class Worker:
    """The run's job in a thread of this test (what `worker --job ID` does); joined at the end."""

    def __init__(self, settings, ops, run_id):
        job_id = ro.rollout_status(ops, run_id).run.job_id
        self.done: list = []
        self.thread = threading.Thread(
            target=lambda: self.done.append(run_claimed(JobStore(ops), job_id, settings, poll_s=0.05)), daemon=True
        )
        self.thread.start()

    def join(self):
        """Wait for the job to return; its final Job (a test that cancelled the run sees it cancelled)."""
        self.thread.join(TIMEOUT_S)
        assert self.done, "the worker did not return"
        return self.done[0]


def wait_four_eyes(ops, run_id, stage):
    """Wait until the worker says the passed stage waits for a second approver; its status then."""
    end = time.time() + TIMEOUT_S
    while time.time() < end:
        st = ro.rollout_status(ops, run_id)
        if st.current_stage == stage and ro.FOUR_EYES_WAIT in st.run.message:
            return st
        assert st.state not in ("completed", "rolled_back", "failed", "cancelled"), st.message
        time.sleep(0.1)
    raise AssertionError(f"stage {stage} never waited for a second approver: {ro.rollout_status(ops, run_id).message}")


def last_promotion(ops, run_id):
    return next(d for d in ro.decision_records(ops, run_id) if d.gate == "promote")


# --------------------------------------------------------------------------- the stage table


def test_four_eyes_is_a_validated_per_stage_boolean_on_for_production_in_the_shipped_table():
    shipped = load_stage_config()
    assert [s.name for s in shipped.stages if s.four_eyes] == ["production"]
    data = json.loads(json.dumps(SHIPPED_STAGES))
    del data["stages"][2]["four_eyes"]
    assert not parse_stage_config(data).stage("production").four_eyes  # absent: off
    data["stages"][1]["four_eyes"] = "yes"
    with pytest.raises(ConfigError, match=r"stages\[1\] \(limited\)\.four_eyes: 'yes' is not true or false"):
        parse_stage_config(data)


def test_saving_a_stage_table_needs_an_approver_validates_first_and_is_audited(settings, ops, tmp_path):
    path = tmp_path / "stages.json"
    path.write_text(DEFAULT_STAGES_FILE.read_text())
    olga = person(ops, "olga@example.com", "operator")
    ann = person(ops, "ann@example.com", "approver")
    data = json.loads(path.read_text())
    data["stages"][1]["four_eyes"] = True
    with pytest.raises(PermissionDenied, match="stages.edit needs the approver role; olga@example.com is an operator"):
        save_stage_config(ops, olga, data, path)
    bad = json.loads(json.dumps(data))
    bad["stages"][0]["min_sample"] = -1
    with pytest.raises(ConfigError):
        save_stage_config(ops, ann, bad, path)
    assert json.loads(path.read_text()) == json.loads(DEFAULT_STAGES_FILE.read_text())  # nothing written
    cfg = save_stage_config(ops, ann, data, path)
    assert [s.name for s in cfg.stages if s.four_eyes] == ["limited", "production"]
    assert load_stage_config(path).stage("limited").four_eyes
    audit = ops.list_audit(action="stages.edit")[0]
    assert audit["actor"] == "ann@example.com" and audit["details"]["four_eyes"] == ["limited", "production"]


# --------------------------------------------------------------------------- the rule


def test_the_starter_cannot_promote_into_production_a_second_approver_can_and_the_worker_waits_for_them(
    settings, ops, seed_graph, tmp_path
):
    graph = seed_graph(30, 7)
    alice = person(ops, "alice@example.com", "approver")  # may start (operator) and promote (approver)
    bob = person(ops, "bob@example.com", "approver")
    olga = person(ops, "olga@example.com", "operator")
    run_id = start(settings, ops, graph, tmp_path, alice)
    worker = Worker(settings, ops, run_id)
    try:
        # the pilot passed and soaked past its minimum duration, yet the worker does not promote it
        st = wait_four_eyes(ops, run_id, "pilot")
        assert st.state == "soaking" and st.stage("pilot").state == "soaking"
        assert st.stage("pilot").elapsed_days >= st.stage("pilot").min_duration_days
        assert st.stage("production") is None or st.stage("production").done == 0
        with pytest.raises(PermissionDenied) as err:
            ro.promote(ops, run_id, alice)
        message = str(err.value)
        assert "\n" not in message and message.startswith("four-eyes: alice@example.com started this run")
        assert "promotion into production needs a second person" in message
        with pytest.raises(PermissionDenied, match="rollout.promote needs the approver role"):
            ro.promote(ops, run_id, olga)
        assert ro.rollout_status(ops, run_id).stage("pilot").state == "soaking"  # refused: nothing changed
        ro.promote(ops, run_id, bob)
        d = last_promotion(ops, run_id)
        assert d.stage == "pilot" and d.actor == "bob@example.com"
        assert d.record["started_by"]["email"] == "alice@example.com"
        assert d.record["approved_by"] == {
            "key": "bob@example.com",
            "email": "bob@example.com",
            "issuer": "http://127.0.0.1/test-idp",
            "subject": "bob",
            "role": "approver",
            "verified_by": "oidc",
        }
        assert d.record["four_eyes_outcome"] == "met" and d.four_eyes_outcome == "met"
        assert d.record["approved_at"] == d.at
        assert (d.started_by, d.approved_by) == ("alice@example.com", "bob@example.com")
        # production (the last stage: its promotion makes the candidate live) waits for a second person too
        wait_four_eyes(ops, run_id, "production")
        with pytest.raises(PermissionDenied, match="promoting production makes the config live"):
            ro.promote(ops, run_id, alice)
        assert ro.rollout_status(ops, run_id).stage("production").state == "soaking"  # refused: not live
        ro.promote(ops, run_id, bob)
    finally:
        if ro.rollout_status(ops, run_id).state not in ("completed", "rolled_back", "cancelled"):
            cancel_and_wait(ops, run_id)
        job = worker.join()
    assert job.state is JobState.SUCCEEDED, job.error
    st = ro.rollout_status(ops, run_id)
    assert st.state == "completed"
    assert ro.live_config(ops).hash() == st.run.candidate_hash
    final = last_promotion(ops, run_id)
    assert final.action == "complete" and final.record["makes_live"] and final.record["four_eyes_outcome"] == "met"
    audit = ops.list_audit(action="rollout.promote")
    assert [(a["actor"], a["details"]["started_by"], a["details"]["four_eyes"]) for a in audit] == [
        ("bob@example.com", "alice@example.com", "met")
    ] * 2
    # what an operator reads: the stage report and the CLI's status name both people
    report = ro.stage_report(ops, run_id, "pilot")
    assert "started by alice@example.com" in report and "| bob@example.com |" in report and "| met |" in report


def test_a_forced_promotion_needs_a_second_person_even_without_a_four_eyes_stage(settings, ops, seed_graph, tmp_path):
    graph = seed_graph(30, 7)
    alice = person(ops, "alice@example.com", "approver")
    bob = person(ops, "bob@example.com", "approver")
    stages = stage_table(tmp_path, min_days=(30, 30, 30), loose_triggers=True)  # no four-eyes stage at all
    run_id = start(settings, ops, graph, tmp_path, alice, stage="pilot", stages=stages, time_scale=1.0)
    worker = Worker(settings, ops, run_id)
    try:
        st = wait_for_state(ops, run_id, ("soaking", "inconclusive", "completed", "rolled_back"), TIMEOUT_S)
        assert st.state == "soaking", st.message
        assert ro.four_eyes_rule(_row(ops, run_id), "pilot") is None  # an unforced promotion would need no one
        with pytest.raises(PermissionDenied, match="four-eyes: .*rule: a forced promotion needs a second person"):
            ro.promote(ops, run_id, alice, force=True)
        ro.promote(ops, run_id, bob, force=True)
    finally:
        if ro.rollout_status(ops, run_id).state not in ("completed", "rolled_back", "cancelled"):
            cancel_and_wait(ops, run_id)
        job = worker.join()
    assert job.state is JobState.SUCCEEDED, job.error
    d = last_promotion(ops, run_id)
    assert d.forced and d.actor == "bob@example.com" and d.record["four_eyes_outcome"] == "met"
    assert d.record["four_eyes"] == "a forced promotion needs a second person"


def test_the_starter_may_roll_back_at_once_and_sign_in_off_records_four_eyes_as_waived(
    settings, ops, seed_graph, tmp_path
):
    graph = seed_graph(30, 7)
    # sign-in off: the one built-in identity starts and promotes; the record says waived, never met
    run_id = start(settings, ops, graph, tmp_path, LOCAL_ACTOR)
    worker = Worker(settings, ops, run_id)
    try:
        wait_four_eyes(ops, run_id, "pilot")
        ro.promote(ops, run_id, LOCAL_ACTOR)
        wait_four_eyes(ops, run_id, "production")
    finally:
        cancel_and_wait(ops, run_id)
        worker.join()
    d = last_promotion(ops, run_id)
    assert d.actor == "local" and d.record["four_eyes_outcome"].startswith("waived (local: sign-in is off")
    # a rollback by the approver who started the run: allowed, no second person asked for
    alice = person(ops, "alice@example.com", "approver")
    run_id = start(settings, ops, graph, tmp_path, alice, stage="pilot", time_scale=1.0)
    res = ro.rollback(settings, ops, run_id, alice, "second thoughts", graph=graph)
    assert res.performed
    rb = next(d for d in ro.decision_records(ops, run_id) if d.gate == "rollback")
    assert rb.actor == "alice@example.com" and rb.record["by"]["email"] == "alice@example.com"


def test_the_rule_follows_the_run_and_its_stored_table(settings, ops, seed_graph, tmp_path):
    """Which promotions fall under four-eyes, read from the run's own stage table (no worker needed)."""
    graph = seed_graph(30, 7)
    run_id = start(settings, ops, graph, tmp_path, ADMIN)
    row = _row(ops, run_id)
    assert ro.four_eyes_rule(row, "pilot") == "promotion into production needs a second person"
    live = "promoting production makes the config live and needs a second person"
    assert ro.four_eyes_rule(row, "production") == live
    assert ro.four_eyes_rule(row, "pilot", force=True) == "a forced promotion needs a second person"
    start_record = next(d for d in ro.decision_records(ops, run_id) if d.gate == "start")
    assert start_record.record["started_by"]["key"] == "test-admin"
    assert start_record.record["four_eyes_stages"] == ["production"]
    ro.cancel(ops, run_id, ADMIN)
    dry = ro.start_rollout(
        settings, ops, stage="all", stages_file=pilot_then_production(tmp_path), dry_run=True, launch=False,
        actor=ADMIN, graph=graph,
    )  # fmt: skip
    assert ro.four_eyes_rule(_row(ops, dry), "pilot") is None  # a dry run changes nothing live
    assert ro.four_eyes_rule(_row(ops, dry), "pilot", force=True) is not None
    ro.cancel(ops, dry, ADMIN)


def _row(ops, run_id):
    with ops.connect() as db:
        return read_run(db, run_id)
