"""console.rollout_view's words for the operator, from literals: one run state function (run_view) whose lines never
contradict, the stage clock under a time scale, the start guard, the promotion plan and message, and tables with
units and no raw values."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from console import rollout_view as rv
from engine.jobs.queue import Control, Job, JobState
from engine.rollout.records import PairedSummary, RunInfo, StageStatus
from engine.rollout.stages import load_stage_config
from engine.rollout.states import EffectiveState, RunState, StageState
from engine.rollout.stats import Measurement
from engine.rollout.verdict import assess

TABLE = ("pilot", "limited", "production")
RAW = re.compile(r"\bNone\b|\bnan\b|\binf\b|Infinity|[a-z]+_[a-z_]+")


@pytest.fixture(scope="module")
def config():
    return load_stage_config()


def run_info(stages=TABLE, *, dry_run=False, state=RunState.COMPLETED) -> RunInfo:
    return RunInfo(
        id=3, job_id=9, state=state, target=stages[0] if len(stages) == 1 else "all", stages=tuple(stages),
        current_stage=stages[-1], dry_run=dry_run, seed=1, world_seed=1, time_scale=36000.0, entity_limit=None,
        candidate_hash="cand123", candidate_source="candidate c.json (tuning)", baseline_hash="base456",
        actor="console:alice", created_at=0.0, updated_at=0.0, finished_at=None, message="",
        stages_of_table=TABLE,
    )  # fmt: skip


def stage(name, state, done=10, total=10, elapsed=1.0, min_days=3.0) -> StageStatus:
    return StageStatus(
        name, TABLE.index(name), StageState(state), f"rollout-3-{name}", done, total, 10, min_days, elapsed,
        0.0, None, None, None, None, None,
    )  # fmt: skip


def make_job(state: JobState, heartbeat: float | None = 95.0, message: str = "") -> Job:
    return Job(
        id=9, kind="rollout", params={}, state=state, control=Control.RUN, actor="a", created_at=0.0,
        started_at=1.0, finished_at=None, heartbeat_at=heartbeat, pid=None, pid_started=None, host=None,
        token=None, attempts=1, progress_done=0, progress_total=0, message=message, result=None, error=None,
    )  # fmt: skip


def status(run, stages, state, *, job_state=JobState.SUCCEEDED, alive=False, heartbeat=95.0):
    job = make_job(job_state, heartbeat) if job_state else None
    return SimpleNamespace(
        run=run,
        state=EffectiveState(state),
        current_stage=stages[-1].name if stages else None,
        stages=tuple(stages),
        job=job,
        worker_alive=alive,
        worker_note="",
        now=100.0,
        message="",
        stage=lambda n: next((s for s in stages if s.name == n), None),
    )


def test_a_completed_pilot_only_run_says_the_live_config_did_not_change_and_offers_the_next_stage():
    view = rv.run_view(status(run_info(("pilot",)), [stage("pilot", "promoted")], "completed"))
    assert view.label == "ended after pilot · live config unchanged" and view.colour != "green"
    assert "live config did NOT change" in view.hint and view.continue_to == "limited"


def test_a_run_that_exposed_nobody_says_so_in_words_and_colour():
    view = rv.run_view(status(run_info(("pilot",)), [stage("pilot", "skipped", 0, 0)], "completed"))
    assert view.label == "completed · no entity exposed" and view.colour == "orange"
    assert "0/0 entities" in view.hint and view.hint_kind == "warning"


def test_a_run_that_skipped_stages_says_so_and_a_live_completion_names_both_configs():
    view = rv.run_view(status(run_info(("limited", "production")), [stage("production", "promoted")], "completed"))
    assert view.notes == ("This run started at limited: pilot skipped.",)
    assert view.label == "completed · live config changed" and view.colour == "green"
    assert view.hint == "cand123 is now the live config (was base456)." and view.continue_to is None
    dry = rv.run_view(status(run_info(dry_run=True), [stage("production", "promoted")], "completed"))
    assert dry.label == "dry run completed" and "did not change" in dry.hint


def test_active_states_never_contradict_the_worker_or_the_stage():
    inconclusive = status(
        run_info(("pilot",), state=RunState.RUNNING), [stage("pilot", "inconclusive")], "inconclusive",
        job_state=JobState.RUNNING, alive=True,
    )  # fmt: skip
    view = rv.run_view(inconclusive)
    assert view.label == "pilot inconclusive · waiting for you" and "completed" not in view.label
    assert rv.worker_text(inconclusive) == "alive, last heartbeat 5.0 s ago"
    future = status(
        run_info(("pilot",), state=RunState.RUNNING), [stage("pilot", "running")], "running",
        job_state=JobState.RUNNING, alive=True, heartbeat=100.4,
    )  # fmt: skip
    assert rv.worker_text(future) == "alive, last heartbeat 0.0 s ago"  # never "-0.0s ago"
    queued = status(run_info(("pilot",), state=RunState.RUNNING), [], "queued", job_state=JobState.QUEUED)
    assert rv.run_view(queued).label == "queued · waiting for a worker"
    assert rv.worker_text(queued) == "waiting for a worker process to start"
    ended = status(run_info(("pilot",)), [stage("pilot", "promoted")], "completed")
    assert rv.worker_text(ended) == "ended (job succeeded)"  # no stale "starting" once the work ended


def test_stage_clock_freezes_once_decided_and_counts_down_to_promote_without_force():
    assert rv.stage_clock("promoted", 3.5, 3, 36000) == "promoted after 3.50 of 3 stage days (8.4 s wall time)"
    assert rv.stage_clock("rolled_back", 1.0, 3, 1) == "rolled back after 1.00 of 3 stage days (24.0 h wall time)"
    assert rv.stage_clock("soaking", 1.0, 3, 36000) == "1.00 of 3 stage days · 2.00 left (about 4.8 s wall time)"
    assert rv.stage_clock("inconclusive", 4.0, 3, 1).endswith("minimum duration reached")
    text = rv.promote_countdown("inconclusive", 1.0, 3.0, 36000, now=0.0)
    assert text == "Promote works without Force in about 4.8 s, at 00:00:04 UTC."
    assert rv.promote_countdown("inconclusive", 3.0, 3.0, 1, now=0.0).startswith("The minimum duration has passed")
    assert rv.promote_countdown("promoted", 1.0, 3.0, 1, now=0.0) == ""


def test_start_guard(config):
    assert not rv.start_guard(config, "pilot", None, False).needs_ack  # the form's defaults are safe
    assert not rv.start_guard(config, "all", None, False).needs_ack
    later = rv.start_guard(config, "limited", 50, False)
    assert later.reasons == ("this rollout skips pilot and starts at limited",)
    everything = rv.start_guard(config, "production", None, False)
    assert everything.reasons == (
        "this rollout skips pilot, limited and starts at production",
        "production runs the candidate live on every entity of the graph at once",
    )
    assert rv.start_guard(config, "production", None, True).reasons == (
        "this rollout skips pilot, limited and starts at production",
    )
    assert not rv.start_guard(config, "limited", None, False, passed=["pilot"]).needs_ack  # Continue after a pilot
    assert everything.refusal().startswith("tick the acknowledgement first: this rollout skips pilot")


def test_candidate_offered_only_while_it_is_not_live():
    assert rv.candidate_offered({"hash": "abc"}, "def")
    assert not rv.candidate_offered({"hash": "abc"}, "abc")  # promoted: consumed
    assert not rv.candidate_offered(None, "abc")


def test_promotion_plan_and_messages():
    run = run_info(("pilot", "limited", "production"), state=RunState.RUNNING)
    into_limited = rv.promotion_plan(status(run, [stage("pilot", "soaking")], "soaking"), force=True)
    assert into_limited.next_stage == "limited" and not into_limited.makes_live and into_limited.forced
    assert into_limited.needs_confirmation  # forced: asks first
    assert rv.promotion_message(into_limited, "c", "o", dry_run=False, next_of_table="production") == (
        "pilot passed (forced): the limited stage starts now."
    )
    soaked = rv.promotion_plan(status(run, [stage("pilot", "soaking", elapsed=5.0)], "soaking"), force=True)
    assert not soaked.forced and not soaked.needs_confirmation  # Force ticked but not needed
    last = rv.promotion_plan(
        status(run, [stage("production", "inconclusive", elapsed=40, min_days=30)], "inconclusive"), False
    )
    assert last.makes_live and last.needs_confirmation
    assert rv.promotion_message(
        last, "cand123 (file c.json)", "the defaults (d0)", dry_run=False, next_of_table=None
    ) == ("cand123 (file c.json) is now the live config (was the defaults (d0)).")
    pilot_only = rv.promotion_plan(
        status(run_info(("pilot",)), [stage("pilot", "inconclusive")], "inconclusive"), False
    )
    assert rv.promotion_message(pilot_only, "c", "o", dry_run=False, next_of_table="limited") == (
        "pilot promoted: this run ends here and the live config did NOT change; continue to limited to take it further."
    )
    dry_last = rv.promotion_plan(
        status(run_info(dry_run=True), [stage("production", "soaking")], "inconclusive"), False
    )
    assert not dry_last.makes_live


def test_the_time_scale_reads_in_words():
    assert rv.time_scale_help(36000) == "one stage day every 2.4 wall seconds"
    assert rv.time_scale_help(0.0001) == "one stage day every 10,000 wall days"
    assert rv.time_scale_help(1) == "real time"


def test_criteria_have_units_words_and_the_actionable_change_in_pp(config):
    policy = config.stage("pilot")
    measurements = {
        "cost_reduction_pct": Measurement("cost_reduction_pct", -12.5, -20.0, -5.0, 10, "bootstrap", 0.9),
        "cost_increase_pct": Measurement("cost_increase_pct", 12.5, 5.0, 20.0, 10, "bootstrap", 0.9),
        "actionable_increase_pct": Measurement(
            "actionable_increase_pct", -60.0, float("-inf"), float("inf"), 10, "bootstrap", 0.9
        ),
        "error_rate_pct": Measurement("error_rate_pct", None, None, None, 0, "cp", 0.9),
        "p95_latency_ms": Measurement("p95_latency_ms", 1.2, 1.0, 1.5, 10, "bootstrap", 0.9),
    }  # fmt: skip
    verdict = assess(policy, measurements, n=10, final=True)
    paired = PairedSummary(10, 10, 1.0, 1.0, 2, 5, 30, 0, 0, 1.2, 1.0)
    shown = rv.criteria_display(rv.criteria_frame(verdict), rv.actionable_pp(paired))
    text = shown.to_string()
    assert not RAW.search(text.replace("p95 engine time", "")), text
    row = shown[shown["criterion"].str.startswith("actionable change")].iloc[0]
    assert row["measured"] == "−60.0 % relative (−30.0 pp)" and row["threshold"] == "≥ 50 %"
    assert row["interval"] == "no lower bound to no upper bound %"
    cost = shown[shown["criterion"].str.startswith("cost reduction")].iloc[0]
    assert cost["measured"] == "−12.5 %" and cost["threshold"] == "≥ 15 %"
    error = shown[shown["criterion"].str.startswith("error rate")].iloc[0]
    assert error["measured"] == "—" and error["interval"] == "—"
    policy_only = rv.criteria_display(rv.policy_criteria_frame(config.stage("limited")))
    assert "p95 engine time per entity < 500 ms" in set(policy_only["criterion"])


def test_records_jobs_and_stage_table_have_no_raw_values(config):
    records = rv.records_display(
        [
            {"id": 1, "at": 1.0, "stage": "pilot", "gate": "start", "action": "start", "phase": "", "actor": "a",
             "forced": False, "reason": "", "record": {}},
            {"id": 2, "at": 2.0, "stage": "pilot", "gate": "stage_end", "action": "await_operator",
             "phase": "inconclusive", "actor": "worker", "forced": True, "reason": "r", "record": {"n": 10}},
        ]
    )  # fmt: skip
    assert list(records["gate"]) == ["stage end", "start"] and list(records["action"]) == ["await operator", "start"]
    assert list(records["n"]) == ["10", "—"] and list(records["forced"]) == ["yes", ""]
    assert list(records["phase"]) == ["inconclusive", "—"]
    assert list(records["at (UTC)"]) == ["1970-01-01 00:00:02", "1970-01-01 00:00:01"]
    table = rv.stage_table_display(config)
    assert "minimum duration (days)" in table.columns and not any("_" in c for c in table.columns)
    assert "cost reduction ≥ 15 %" in table.iloc[0]["success criteria"]
    job = make_job(JobState.CANCELLED, heartbeat=None)
    jobs = rv.jobs_display([job])
    assert jobs.iloc[0]["last heartbeat (UTC)"] == "—" and jobs.iloc[0]["state"] == "cancelled"
    assert not RAW.search(jobs.to_string())


def test_a_rolled_back_run_says_who_and_why_as_typed():
    rolled = status(run_info(("pilot",), state=RunState.ROLLED_BACK), [stage("pilot", "rolled_back")], "rolled_back")
    rolled.message = "rolled back by console:bob: cost up"
    view = rv.run_view(rolled)
    assert view.label == "rolled back" and view.notes == ("rolled back by console:bob: cost up",)
