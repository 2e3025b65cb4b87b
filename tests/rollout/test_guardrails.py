"""Guardrails after promotion against the real stores: a deliberately bad config promoted into production is
reverted by its bake on production traffic (live config, assignments, decision record, audit); a good one is not
and its bake passes at the window's end; the window's end stops evaluation; two evaluators revert once; the
graph is kept unless a restore is asked for; the evaluation job ends with the window."""

from __future__ import annotations

import json
import threading

import pytest

from engine import rollout as ro
from engine.core.configs import live_config_history
from engine.core.params import ParameterConfig
from engine.jobs.queue import JobState, JobStore, run_claimed
from engine.rollout import guardrails as gr
from engine.rollout.stages import SECONDS_PER_DAY
from tests.support.actors import ADMIN, ENGINE, OPERATOR, as_role
from tests.support.guardrails import (
    BAD,
    BAKE_DAYS,
    guarded_table,
    production_traffic,
    promote_into_production,
    promote_when_inconclusive,
)
from tests.support.rollouts import SAME_DISCOVERY, candidate_file

#: an approver who reverts or ends a bake by hand
APPROVER_ANN = as_role("approver", "console:approver")

ENTITIES = 40


@pytest.fixture
def seeded(seed_graph):
    return seed_graph(ENTITIES, 7)


def decisions(ops, run_id, action):
    return [d for d in ro.decision_records(ops, run_id) if d.gate == "guardrail" and d.action == action]


def audit_actions(ops, action):
    return [r for r in ops.list_audit(500, action=action)]


def test_a_bad_config_in_production_is_reverted_by_its_bake(settings, ops, seeded, tmp_path):
    ids = seeded.list_entity_ids()
    previous = ro.live_config(ops)
    # the previous config has been running in production (the scheduler's traffic before the rollout)
    before = production_traffic(seeded, ops, ids, previous, at=1_000.0, system="old")
    run_id = promote_into_production(settings, ops, seeded, tmp_path, BAD)
    st = gr.guardrail_status(ops)
    assert st is not None and st.state is gr.GuardrailState.BAKING and st.run_id == run_id
    assert st.promoted_hash == BAD.hash() and st.previous_hash == previous.hash()
    assert st.ends_at - st.promoted_at == pytest.approx(BAKE_DAYS * SECONDS_PER_DAY)
    assert decisions(ops, run_id, "bake")
    job = st.job
    assert job is not None and job.kind == gr.KIND and job.state is JobState.QUEUED  # no worker from a test
    exposed = {e for e, a in ro.assigned_systems(ops).items() if a["run_id"] == run_id}
    assert len(exposed) == 10 and all(a["config_hash"] == BAD.hash() for a in ro.assigned_systems(ops).values())

    # below the minimum sample nothing can fire yet
    t = st.promoted_at + 3600
    production_traffic(seeded, ops, ids[:10], BAD, at=t)
    early = gr.evaluate_guardrail(settings, ops, now=t + 1, actor=ENGINE)
    assert early.state is gr.GuardrailState.BAKING and early.verdict.phase == "pending" and early.runs == 10
    assert "below the minimum sample of 20" in early.describe()

    # the whole catalogue visited by the bad config: cost per run far above the previous config's
    after = production_traffic(seeded, ops, ids, BAD, at=t + 7200)
    old_cost = sum(r.cost_usd for r in before) / len(before)
    new_cost = sum(r.cost_usd for r in after) / len(after)
    assert new_cost > old_cost * 1.15, (old_cost, new_cost)
    graph_before_revert = seeded.snapshot(ids)["entities"]
    res = gr.evaluate_guardrail(settings, ops, now=t + 7201, actor=OPERATOR)  # an operator's "Evaluate now"
    assert res.state is gr.GuardrailState.REVERTED and res.ended_by == str(gr.GUARDRAIL_ACTOR)
    # the live config is the previous one again, and every entity the run put on BAD is back on it
    assert ro.live_config(ops) == previous
    assigned = ro.assigned_systems(ops)
    assert {e for e, a in assigned.items() if a["run_id"] == run_id} == exposed
    assert all(a["system"] == "old" and a["config_hash"] == previous.hash() for a in assigned.values())
    # the decision record: what breached, the figures, the interval, the window, who acted
    [rec] = decisions(ops, run_id, "revert")
    assert rec.actor == str(gr.GUARDRAIL_ACTOR) and rec.phase == "failed" and rec.record["automatic"] is True
    assert rec.record["evaluated_by"]["key"] == "test-operator"  # the trigger reverted, not the operator
    breached = [r for r in rec.record["verdict"]["rows"] if r["phase"] == "failed"]
    assert [r["metric"] for r in breached] == ["cost_increase_pct"]
    cost = rec.record["measurements"]["cost_increase_pct"]
    assert cost["value"] > 15 and cost["low"] <= cost["value"] <= cost["high"]
    assert rec.record["n"] == 50 and rec.record["window"]["start"] == st.promoted_at
    assert rec.record["baseline"]["source"] == "production" and rec.record["baseline"]["n"] == ENTITIES
    assert rec.record["graph"] == "kept" and rec.record["reverted_to"] == previous.hash()
    verdict, ok = ro.recompute_decision(ops, rec.id)
    assert ok and verdict.phase == "failed"
    [audit] = audit_actions(ops, "rollout.guardrail.revert")
    assert audit["actor"] == str(gr.GUARDRAIL_ACTOR) and audit["details"]["to"] == previous.hash()
    # the Configs page's history lists the revert as a live-config change that says so
    newest = live_config_history(ops)[0]
    assert newest.hash == previous.hash() and newest.actor == str(gr.GUARDRAIL_ACTOR)
    assert (ro.live_config_info(ops) or {})["how"] == f"reverted by the guardrail of run {run_id}"
    # graph state written since the promotion is kept by default
    assert seeded.snapshot(ids)["entities"] == graph_before_revert
    assert "reverted to " + previous.hash() in res.describe() and "cost increase" in res.describe()
    # the evaluation job finds the bake closed and ends at once
    job = run_claimed(JobStore(ops), job.id, settings, poll_s=0.05)
    assert job.state is JobState.SUCCEEDED and job.result["state"] == "reverted"


def test_a_good_config_is_not_reverted_and_its_bake_passes_at_the_window_end(settings, ops, seeded, tmp_path):
    ids = seeded.list_entity_ids()
    run_id = promote_into_production(settings, ops, seeded, tmp_path, SAME_DISCOVERY)
    st = gr.guardrail_status(ops)
    # no production traffic before: the comparison falls back to the previous config's shadow runs in the rollout
    production_traffic(seeded, ops, ids, SAME_DISCOVERY, at=st.promoted_at + 60)
    mid = gr.evaluate_guardrail(settings, ops, now=st.promoted_at + 120, actor=ENGINE)
    assert mid.state is gr.GuardrailState.BAKING and mid.verdict.phase == "running"
    assert mid.record["baseline"]["source"] == "rollout shadow"
    assert "no trigger breached in 40 production runs" in mid.describe()
    # a bad config's traffic stamped after the window's end does not count, and the last round closes the window
    production_traffic(seeded, ops, ids, SAME_DISCOVERY.with_changes(max_iterations=80), at=st.ends_at + 10)
    end = gr.evaluate_guardrail(settings, ops, now=st.ends_at + 20, actor=ENGINE)
    assert end.state is gr.GuardrailState.PASSED and end.runs == ENTITIES
    assert ro.live_config(ops) == SAME_DISCOVERY
    assert [d.actor for d in decisions(ops, run_id, "pass")] == [str(gr.GUARDRAIL_ACTOR)]
    assert not decisions(ops, run_id, "revert")
    # a closed window is not evaluated again
    again = gr.evaluate_guardrail(settings, ops, now=st.ends_at + 99_999, actor=ENGINE)
    assert again.state is gr.GuardrailState.PASSED and again.evaluated_at == end.evaluated_at
    assert "passed" in again.describe()


def test_a_window_that_ends_below_the_minimum_sample_is_unjudged(settings, ops, seeded, tmp_path):
    promote_into_production(settings, ops, seeded, tmp_path, SAME_DISCOVERY)
    st = gr.guardrail_status(ops)
    done = gr.evaluate_guardrail(settings, ops, now=st.ends_at + 1, actor=ENGINE)
    assert done.state is gr.GuardrailState.UNJUDGED and ro.live_config(ops) == SAME_DISCOVERY
    assert "nothing judged, nothing reverted" in done.describe()


def test_two_evaluators_at_once_revert_once(settings, ops, seeded, tmp_path):
    ids = seeded.list_entity_ids()
    previous = ro.live_config(ops)
    production_traffic(seeded, ops, ids, previous, at=1_000.0, system="old")
    run_id = promote_into_production(settings, ops, seeded, tmp_path, BAD)
    st = gr.guardrail_status(ops)
    production_traffic(seeded, ops, ids, BAD, at=st.promoted_at + 60)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def evaluate():
        barrier.wait()
        try:
            results.append(gr.evaluate_guardrail(settings, ops, now=st.promoted_at + 120, actor=ENGINE))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert [r.state for r in results] == [gr.GuardrailState.REVERTED] * 2
    assert len(decisions(ops, run_id, "revert")) == 1
    assert len(audit_actions(ops, "rollout.guardrail.revert")) == 1
    assert [e.hash for e in live_config_history(ops)[:2]] == [previous.hash(), BAD.hash()]
    assert sum(1 for e in live_config_history(ops) if e.actor == str(gr.GUARDRAIL_ACTOR)) == 1
    # an operator's second click is a no-op too
    again = gr.revert_guardrail(settings, ops, actor=APPROVER_ANN, reason="click twice")
    assert not again.performed and "already reverted" in again.message


def test_an_operator_reverts_now_with_the_graph_restored_on_request(settings, ops, seeded, tmp_path):
    ids = seeded.list_entity_ids()
    before = seeded.snapshot(ids)["entities"]
    run_id = promote_into_production(settings, ops, seeded, tmp_path, SAME_DISCOVERY)
    with pytest.raises(gr.GuardrailError, match="needs a reason"):
        gr.revert_guardrail(settings, ops, actor=APPROVER_ANN, reason=" ")
    res = gr.revert_guardrail(settings, ops, actor=APPROVER_ANN, reason="sales saw odd calls", restore_graph=True)
    assert res.performed and res.restore is not None and res.restore.performed
    assert ro.live_config(ops) == ParameterConfig()
    assert ro.rollout_status(ops, run_id).state == "rolled_back"
    assert seeded.snapshot(ids)["entities"] == before  # the stage snapshot: the exposed entities as they were
    [rec] = decisions(ops, run_id, "revert")
    assert rec.actor == "console:approver" and rec.phase == "operator" and rec.record["graph"].startswith("restored")


def test_ending_a_bake_early_stops_evaluation_and_keeps_the_config(settings, ops, seeded, tmp_path):
    ids = seeded.list_entity_ids()
    run_id = promote_into_production(settings, ops, seeded, tmp_path, BAD)
    st = gr.end_bake(ops, actor=APPROVER_ANN, reason="a clean week of traffic elsewhere")
    assert st.state is gr.GuardrailState.ENDED and "ended early" in st.describe()
    production_traffic(seeded, ops, ids, BAD, at=st.promoted_at + 60)
    assert gr.evaluate_guardrail(settings, ops, now=st.promoted_at + 120, actor=ENGINE).state is gr.GuardrailState.ENDED
    assert ro.live_config(ops) == BAD and not decisions(ops, run_id, "revert")
    with pytest.raises(gr.GuardrailError, match="already ended"):
        gr.end_bake(ops, actor=APPROVER_ANN, reason="again")


def test_the_evaluation_job_ends_with_the_window(settings, ops, seeded, tmp_path):
    # four seconds of real time are the whole 7-day bake: evaluated every 0.2 s (a twentieth of it)
    scale = BAKE_DAYS * SECONDS_PER_DAY / 4.0
    promote_into_production(settings, ops, seeded, tmp_path, SAME_DISCOVERY, time_scale=scale)
    st = gr.guardrail_status(ops)
    assert st.job is not None and st.job.params["interval_s"] == pytest.approx(0.2)
    job = run_claimed(JobStore(ops), st.job.id, settings, poll_s=0.05)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.result["state"] == "unjudged" and job.result["rounds"] >= 2
    assert gr.guardrail_status(ops).state is gr.GuardrailState.UNJUDGED
    # nothing to start once the window is closed
    assert gr.start_evaluator(ops, settings=None, actor=ADMIN) == (None, False)


def test_no_bake_without_bake_days_and_a_stage_table_refuses_it_before_the_last_stage(settings, ops, seeded, tmp_path):
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="production",
        entities=10,
        stages_file=guarded_table(tmp_path, bake_days=0),
        config_file=candidate_file(tmp_path, SAME_DISCOVERY),
        launch=False,
        actor=ADMIN,
        graph=seeded,
    )
    promote_when_inconclusive(settings, ops, run_id, ADMIN)
    assert gr.guardrail_status(ops) is None and gr.evaluate_guardrail(settings, ops, actor=ENGINE) is None
    data = json.loads(guarded_table(tmp_path).read_text())
    data["stages"][0]["bake_days"] = 3
    from engine.core.errors import ConfigError
    from engine.rollout.stages import parse_stage_config

    with pytest.raises(ConfigError, match=r"bake_days: only the last stage"):
        parse_stage_config(data)
    data["stages"][0]["bake_days"] = 0
    data["stages"][-1]["bake_days"] = float("nan")
    with pytest.raises(ConfigError, match=r"\(production\)\.bake_days"):
        parse_stage_config(data)
