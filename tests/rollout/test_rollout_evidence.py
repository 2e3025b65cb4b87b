"""Rollouts on any evidence source (issue 13, point 3): the run stores its source, an HTTP evaluator gives
the same paired outcomes as the world it serves, a cost above the budget needs a confirmation, and an
evaluator that goes away mid-stage pauses the stage (not a failure, not a rollback); Resume carries on
exactly once per entity."""

from __future__ import annotations

import json
import re
import time

import pytest

from engine import rollout as ro
from engine.core.errors import ConfigError
from engine.discovery.evaluator_server import EvaluatorServer
from engine.discovery.limits import RunLimits
from engine.discovery.runs import EvidenceSpec
from engine.jobs.queue import JobState, JobStore
from engine.monitoring.events import query_events
from engine.rollout.estimate import CostNotConfirmed
from tests.support.actors import ADMIN
from tests.support.rollouts import cancel_and_wait, hand_over_candidate, run_here, wait_for_state
from tests.support.stages import stage_table


@pytest.fixture
def seeded(seed_graph, ops, tmp_path):
    hand_over_candidate(ops, tmp_path / "handed")
    return seed_graph(60, 7)


def test_a_pilot_over_http_runs_every_entity_in_flight_and_sends_each_hop_once(settings, ops, seeded, tmp_path):
    stages = stage_table(tmp_path, loose_triggers=True)
    common = dict(stage="pilot", stages_file=stages, time_scale=86400 * 4, launch=False, graph=seeded, actor=ADMIN)
    world_run = ro.start_rollout(settings, ops, dry_run=True, **common)
    run_here(settings, ops, world_run)
    with EvaluatorServer(world_seed=1, latency_factor=0.002) as evaluator:
        spec = EvidenceSpec(kind="http", url=evaluator.url, timeout_s=10)
        http_run = ro.start_rollout(
            settings, ops, dry_run=True, evidence=spec, concurrency=8, budget_usd=None, **common
        )
        st = run_here(settings, ops, http_run)
        requests, peak = evaluator.requests, evaluator.peak_in_flight
    assert peak >= 2  # entities really were in flight
    assert st.run.evidence == spec.describe() and st.run.concurrency == 8
    assert st.run.evidence_spec["url"] == evaluator.url
    events = query_events(ops, stage_id=ro.stage_key(http_run, "pilot"))
    assert requests == sum(e.hops for e in events)  # every hop one request: nothing sent twice
    rows = ro.paired_outcomes(ops, http_run)
    # the same cohort as on the world (cohorts do not depend on the source), every entity paired, none crashed
    assert sorted(r["entity_id"] for r in rows) == sorted(r["entity_id"] for r in ro.paired_outcomes(ops, world_run))
    assert len(rows) == 10 and not any(r["new_crashed"] for r in rows)
    assert all(r["old_cost"] is not None for r in rows)


def test_the_estimate_on_a_paid_source_needs_a_confirmation_above_the_budget(settings, ops, seeded, tmp_path):
    spec = EvidenceSpec(kind="http", url="http://127.0.0.1:9/evaluate")
    kw = dict(stage="pilot", stages_file=stage_table(tmp_path), launch=False, graph=seeded, actor=ADMIN, evidence=spec)
    with pytest.raises(
        CostNotConfirmed, match=r"estimated cost \$[\d.,]+ on HTTP evaluator .* above the \$0.00 budget"
    ):
        ro.start_rollout(settings, ops, budget_usd=0.0, **kw)
    assert ro.list_runs(ops) == []  # nothing written
    run_id = ro.start_rollout(settings, ops, budget_usd=0.0, confirm_cost=True, **kw)
    run = ro.rollout_status(ops, run_id).run
    assert run.cost_estimate["paid"] and run.cost_estimate["total_usd"] > 0
    assert [s["entities"] for s in run.cost_estimate["stages"]] == [10]
    audit = ops.list_audit(5, action="rollout.start")[0]
    assert audit["details"]["cost_confirmed"] is True
    cancel_and_wait(ops, run_id)
    # the world costs nothing real: no confirmation whatever the budget
    ro.start_rollout(settings, ops, budget_usd=0.0, **{**kw, "evidence": None})


def test_bad_sources_and_settings_are_refused_in_one_line_before_anything_is_written(settings, ops, seeded, tmp_path):
    kw = dict(stage="pilot", stages_file=stage_table(tmp_path), launch=False, graph=seeded, actor=ADMIN)
    with pytest.raises(ConfigError, match="does not exist"):
        ro.start_rollout(settings, ops, evidence=EvidenceSpec(kind="replay", replay_path=tmp_path / "none.jsonl"), **kw)
    with pytest.raises(ConfigError, match="--concurrency must be a whole number from 1 to 256"):
        ro.start_rollout(settings, ops, concurrency=0, **kw)
    with pytest.raises(ConfigError, match="--budget-usd"):
        ro.start_rollout(settings, ops, budget_usd=float("nan"), **kw)
    with pytest.raises(ConfigError, match="--max-hops-per-s"):
        ro.start_rollout(settings, ops, limits=RunLimits(max_hops_per_s=-1), **kw)
    assert ro.list_runs(ops) == []


@pytest.mark.slow
def test_an_evaluator_gone_mid_stage_pauses_the_stage_and_resume_counts_every_entity_once(
    settings, ops, seeded, tmp_path
):
    stages = stage_table(tmp_path, counts=(30, 40, "all"), batch=(3, 10, 10), loose_triggers=True)
    evaluator = EvaluatorServer(world_seed=1, latency_factor=0.02).start()
    try:
        run_id = ro.start_rollout(
            settings,
            ops,
            stage="pilot",
            stages_file=stages,
            time_scale=86400 * 4,
            actor=ADMIN,
            graph=seeded,
            evidence=EvidenceSpec(kind="http", url=evaluator.url, timeout_s=5),
            concurrency=3,
            budget_usd=None,
        )  # a detached worker
        end = time.time() + 120
        while time.time() < end and ro.rollout_status(ops, run_id).progress[0] < 6:
            time.sleep(0.05)
        assert ro.rollout_status(ops, run_id).progress[0] >= 6, "the worker made no progress"
        evaluator.stop()
        end = time.time() + 120
        while time.time() < end and "fault of the evaluator" not in (ro.rollout_status(ops, run_id).run.message or ""):
            time.sleep(0.1)
        paused = ro.rollout_status(ops, run_id)
        assert "paused by a fault of the evaluator" in paused.run.message, paused.run.message
        assert paused.run.state == "running"  # not failed, not rolled back
        assert JobStore(ops).get(paused.run.job_id).state is JobState.PAUSED
        assert paused.progress[0] < 30
        # it retries by itself, each time waiting longer (2 s, then 4 s, ...): never hammering a source that is away
        waits: list[int] = []
        end = time.time() + 60
        while time.time() < end and not any(w >= 3 for w in waits):
            message = JobStore(ops).get(paused.run.job_id).message or ""
            waits += [int(m) for m in re.findall(r"retrying in (\d+)s", message)]
            time.sleep(0.2)
        assert any(w >= 3 for w in waits), waits
        evaluator.start()  # the same port
        ro.resume(ops, run_id, ADMIN, settings=settings)
        st = wait_for_state(ops, run_id)
        assert st.state in ("soaking", "inconclusive", "completed"), (st.state, st.run.message)
    finally:
        evaluator.stop()
        if ro.rollout_status(ops, run_id).run.state in ("running", "soaking", "inconclusive"):
            cancel_and_wait(ops, run_id)
    rows = ro.paired_outcomes(ops, run_id)
    with ops.connect() as db:
        cohort = json.loads(
            next(iter(db.query("SELECT cohort FROM rollout_stages WHERE run_id = ?", [run_id])))["cohort"]
        )
    assert sorted(r["entity_id"] for r in rows) == sorted(cohort)  # none twice, none skipped
    assert not any(r["new_crashed"] for r in rows)  # the outage was never booked against the candidate
    stage_id = ro.stage_key(run_id, "pilot")
    news = [e.entity_id for e in query_events(ops, stage_id=stage_id, system="new")]
    assert sorted(news) == sorted(cohort)  # one metric event per entity, the paused batch's none
    assert ops.list_audit(10, action="rollout.fault")
