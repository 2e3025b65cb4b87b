"""console.rollout_view: the Rollout page's frames, labels and charts, from literals (no Streamlit, no stores)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from console import rollout_view as rv
from engine import rollout
from engine.core.percentiles import percentile
from engine.jobs.queue import Control, Job, JobState, JobStore, run_claimed
from engine.monitoring.events import MetricEvent, query_events
from engine.rollout.stages import load_stage_config
from engine.rollout.stats import Measurement
from engine.rollout.verdict import Phase, assess
from tests.support.actors import ADMIN
from tests.support.rollouts import candidate_file
from tests.support.stages import stage_table


@pytest.fixture(scope="module")
def config():
    return load_stage_config()


def event(system: str, at: float, cost: float, actionable: bool, engine_ms: float, i: int) -> MetricEvent:
    return MetricEvent(
        at=at,
        run_id="r1",
        stage_id="r1:pilot",
        system=system,
        shadow=system == "old",
        config_hash="h",
        entity_id=f"e{i}",
        cost_usd=cost,
        iterations=3,
        hops=3,
        hypotheses_tested=2,
        promotions=0,
        actionable=actionable,
        correct=None,
        engine_latency_ms=engine_ms,
        evidence_latency_s=1.0,
        error_count=0,
        id=i,
    )


# --------------------------------------------------------------------------- timeline and stage table


def test_timeline_has_every_stage_in_order_with_states(config):
    steps = rv.timeline_steps(config, {"pilot": "promoted", "limited": "RUNNING"}, current="limited")
    assert [s.name for s in steps] == ["pilot", "limited", "production"]
    assert [s.state for s in steps] == ["promoted", "running", "pending"]
    assert [s.entities for s in steps] == ["10", "100", "all"]
    assert [s.current for s in steps] == [False, True, False]
    assert steps[0].colour == "green" and steps[1].colour == "blue" and steps[2].colour == "gray"
    assert steps[0].min_duration == "3 days"


def test_unknown_state_is_drawn_neutral_not_dropped(config):
    step = rv.timeline_steps(config, {"pilot": "weird_state"})[0]
    assert step.state == "weird_state" and step.colour == "gray"
    assert rv.timeline_steps(config, {"pilot": "rolled_back"})[0].badge == "rolled back"


def test_stage_table_reads_the_config(config):
    frame = rv.stage_table_frame(config, {"pilot": "failed"})
    assert list(frame["stage"]) == config.names()
    assert list(frame["entities"]) == ["10", "100", "all"]
    assert list(frame["min_duration_days"]) == [s.min_duration_days for s in config.stages]
    assert list(frame["state"]) == ["failed", "pending", "pending"]
    pilot = frame.iloc[0]
    assert "cost_reduction_pct >= 15" in pilot["success"]
    assert "error_rate_pct > 10" in pilot["rollback_triggers"]
    assert rv.stage_choices(config) == ["pilot", "limited", "production", "all"]


# --------------------------------------------------------------------------- criteria


def measurements(cost_red: float, act_inc: float, err: float, n: int = 10) -> dict[str, Measurement]:
    m = lambda metric, v, lo, hi: Measurement(metric, v, lo, hi, n, "test", 0.9)  # noqa: E731
    return {
        "cost_reduction_pct": m("cost_reduction_pct", cost_red, cost_red - 5, cost_red + 5),
        "cost_increase_pct": m("cost_increase_pct", -cost_red, -cost_red - 5, -cost_red + 5),
        "actionable_increase_pct": m("actionable_increase_pct", act_inc, act_inc - 20, act_inc + 20),
        "error_rate_pct": m("error_rate_pct", err, max(0, err - 1), err + 1),
        "p95_latency_ms": m("p95_latency_ms", 12.0, 10.0, 14.0),
    }


def test_criteria_frame_of_a_passing_verdict(config):
    pilot = config.stage("pilot")
    verdict = assess(pilot, measurements(30, 80, 1), n=10, final=True)
    assert verdict.phase is Phase.PASSED
    frame = rv.criteria_frame(verdict)
    assert len(frame) == len(pilot.success) + len(pilot.rollback)
    success = frame[frame["kind"] == "success"]
    triggers = frame[frame["kind"] == "rollback trigger"]
    assert set(success["result"]) == {"pass"} and set(triggers["result"]) == {"ok"}
    cost = frame[frame["criterion"] == "cost_reduction_pct >= 15"].iloc[0]
    assert (cost["value"], cost["low"], cost["high"], cost["threshold"]) == (30, 25, 35, 15)
    # the same frame from the verdict's dict (what a decision record stores)
    assert rv.criteria_frame(verdict.to_dict()).equals(frame)


def test_criteria_frame_marks_a_breached_trigger_and_unshown_success(config):
    pilot = config.stage("pilot")
    verdict = assess(pilot, measurements(-20, 10, 1), n=10, final=True)
    assert verdict.phase is Phase.FAILED
    frame = rv.criteria_frame(verdict)
    breached = frame[frame["result"] == "BREACHED"]
    assert list(breached["metric"]) == ["cost_increase_pct"]
    assert "not shown" in set(frame["result"])


def test_infinite_interval_survives_the_record_round_trip(config):
    pilot = config.stage("pilot")
    ms = measurements(30, 80, 1)
    ms["actionable_increase_pct"] = Measurement("actionable_increase_pct", math.inf, 50.0, math.inf, 10, "t", 0.9)
    frame = rv.criteria_frame(assess(pilot, ms, n=10, final=True).to_dict())
    row = frame[frame["metric"] == "actionable_increase_pct"].iloc[0]
    assert math.isinf(row["value"]) and math.isinf(row["high"]) and row["low"] == 50.0


def test_pending_rows_below_min_sample_and_policy_only_frame(config):
    pilot = config.stage("pilot")
    frame = rv.criteria_frame(assess(pilot, measurements(30, 80, 1, n=2), n=2, final=False))
    assert set(frame["result"]) == {"pending"}
    policy = rv.policy_criteria_frame(pilot)
    assert list(policy["criterion"]) == [c.label() for c in (*pilot.success, *pilot.rollback)]
    assert policy["value"].isna().all() and set(policy["result"]) == {"pending"}


def test_verdict_summary():
    assert rv.verdict_summary(None)[0] == "pending"
    assert rv.verdict_summary({"phase": "failed", "reason": "breached: x"})[:2] == ("failed", "breached: x")
    assert rv.verdict_summary({"phase": "failed"})[3] == "red"


def test_result_labels():
    assert rv.result_label("success", "passed") == "pass"
    assert rv.result_label("success", "inconclusive") == "not shown"
    assert rv.result_label("rollback", "failed") == "BREACHED"
    assert rv.result_label("rollback", "passed") == "ok"
    assert rv.result_label("rollback", "pending") == "pending"


# --------------------------------------------------------------------------- old vs new


def test_old_vs_new_running_figures_by_hand():
    evs = [
        event("new", 100.0, 1.0, True, 10.0, 1),
        event("old", 100.0, 4.0, False, 30.0, 2),
        event("new", 101.0, 3.0, False, 20.0, 3),
        event("old", 101.0, 2.0, True, 50.0, 4),
        event("new", 102.0, 2.0, True, 40.0, 5),
    ]
    frame = rv.old_vs_new_frame(reversed(evs))  # arrival order comes from the events, not the list
    new_cost = frame[(frame.system == "new") & (frame.metric == "cost_per_entity")]
    assert list(new_cost["entities"]) == [1, 2, 3]
    assert list(new_cost["value"]) == pytest.approx([1.0, 2.0, 2.0])
    old_rate = frame[(frame.system == "old") & (frame.metric == "actionable_rate")]
    assert list(old_rate["value"]) == pytest.approx([0.0, 0.5])
    new_p95 = frame[(frame.system == "new") & (frame.metric == "p95_engine_latency_ms")]
    assert list(new_p95["value"]) == pytest.approx(
        [
            10.0,
            np.percentile([10, 20], 95, method="inverted_cdf"),
            np.percentile([10, 20, 40], 95, method="inverted_cdf"),
        ]
    )
    latest = rv.latest_figures(frame)
    assert latest["cost_per_entity"].new == pytest.approx(2.0) and latest["cost_per_entity"].old == pytest.approx(3.0)
    assert (latest["cost_per_entity"].new_runs, latest["cost_per_entity"].old_runs) == (3, 2)


def test_running_p95_equals_the_monitor_percentile_and_long_stages_are_thinned_not_truncated():
    rng = np.random.default_rng(3)
    lat = rng.lognormal(2.0, 1.0, 1000)
    cost = rng.uniform(0.1, 0.5, 1000)
    evs = [event("new", float(i), float(cost[i]), bool(i % 3 == 0), float(lat[i]), i) for i in range(1000)]
    full = rv.old_vs_new_frame(evs, max_points=10_000)
    p95 = full[full.metric == "p95_engine_latency_ms"]["value"].to_numpy()
    for k in (1, 2, 17, 500, 1000):
        assert p95[k - 1] == pytest.approx(percentile(list(lat[:k]), 95))
    thin = rv.old_vs_new_frame(evs, max_points=50)
    ranks = sorted(set(thin["entities"]))
    assert len(ranks) <= 50 and ranks[0] == 1 and ranks[-1] == 1000
    # a thinned point is the same running figure as in the full frame
    merged = thin.merge(full, on=["system", "entities", "metric"], suffixes=("_thin", "_full"))
    assert len(merged) == len(thin)
    assert np.allclose(merged["value_thin"], merged["value_full"])
    assert rv.latest_figures(thin)["cost_per_entity"].new == pytest.approx(float(cost.mean()))
    assert rv.sampled_ranks(5, 400) == {1, 2, 3, 4, 5}


def test_old_vs_new_without_a_side_is_a_gap_not_zero():
    frame = rv.old_vs_new_frame([event("new", 1.0, 1.0, True, 5.0, 1)])
    assert set(frame["system"]) == {"new"}
    latest = rv.latest_figures(frame)
    assert latest["actionable_rate"].old is None and latest["actionable_rate"].old_runs == 0
    empty = rv.old_vs_new_frame([])
    assert empty.empty and list(empty.columns) == list(rv.SERIES_COLUMNS)
    assert all(v.old is None and v.new is None for v in rv.latest_figures(empty).values())


def test_chart_is_one_metric_with_fixed_system_colours():
    frame = rv.old_vs_new_frame([event("new", 1.0, 1.0, True, 5.0, 1), event("old", 1.0, 2.0, False, 7.0, 2)])
    spec = rv.old_vs_new_chart(frame, "cost_per_entity").to_dict()
    assert spec["title"] == "Cost per entity"
    assert spec["encoding"]["color"]["scale"]["domain"] == ["old", "new"]
    values = next(iter(spec["datasets"].values()))
    assert {v["metric"] for v in values} == {"cost_per_entity"} and len(values) == 2


# --------------------------------------------------------------------------- progress, jobs, records, files


def test_progress():
    assert rv.progress_fraction(4, 10) == 0.4
    assert rv.progress_fraction(4, 0) == 0.0 and rv.progress_fraction(None, None) == 0.0
    assert rv.progress_fraction(12, 10) == 1.0
    assert rv.progress_text("pilot", 4, 10, "running") == "pilot: 4 of 10 entities (40%) · running"


def test_jobs_frame():
    job = Job(
        id=3,
        kind="rollout",
        params={},
        state=JobState.RUNNING,
        control=Control.RUN,
        actor="console",
        created_at=1_700_000_000.0,
        started_at=None,
        finished_at=None,
        heartbeat_at=1_700_000_005.0,
        pid=1,
        pid_started=None,
        host="h",
        token="t",
        attempts=1,
        progress_done=5,
        progress_total=20,
        message="batch 1",
        result=None,
        error=None,
    )
    frame = rv.jobs_frame([job])
    row = frame.iloc[0]
    assert (row["id"], row["state"], row["progress"], row["message"]) == (3, "running", 0.25, "batch 1")
    assert str(row["created"]) == "2023-11-14 22:13:20+00:00"


def test_decision_records_frame_newest_first_with_inputs():
    records = [
        {
            "id": 1,
            "run_id": 4,
            "stage": "pilot",
            "at": 100.0,
            "gate": "check",
            "action": "continue",
            "phase": "running",
            "actor": "worker",
            "forced": False,
            "reason": "no trigger breached after 5 entities",
            "record": {"n": 5, "config": {"candidate_hash": "abc", "baseline_hash": "def"}},
        },
        {
            "id": 2,
            "run_id": 4,
            "stage": "pilot",
            "at": 200.0,
            "gate": "promote",
            "action": "complete",
            "phase": "inconclusive",
            "actor": "console:ops",
            "forced": True,
            "reason": "forced by operator",
            "record": {"n": 10, "config": {"candidate_hash": "abc"}},
        },
        {
            "id": 3,
            "run_id": 4,
            "stage": "pilot",
            "at": 300.0,
            "gate": "rollback",
            "action": "rollback",
            "phase": "operator",
            "actor": "console:ops",
            "forced": False,
            "reason": "cost up",
            "record": {},
        },
    ]
    frame = rv.decision_records_frame(records)
    assert list(frame["id"]) == [3, 2, 1]
    assert list(frame["gate"]) == ["rollback", "promote", "check"]
    assert list(frame["forced"]) == [False, True, False]
    assert frame.iloc[1]["n"] == 10 and frame.iloc[1]["candidate_hash"] == "abc"
    assert frame.iloc[0]["n"] is None or math.isnan(frame.iloc[0]["n"])
    assert str(frame.iloc[2]["at"]) == "1970-01-01 00:01:40+00:00"
    assert rv.decision_records_frame([]).empty


def test_run_stage_states_and_details():
    names = ["pilot", "limited", "production"]
    assert rv.run_stage_states(names, None, {}) == dict.fromkeys(names, "pending")
    assert rv.run_stage_states(names, ["pilot"], {"pilot": "rolled_back"}) == {
        "pilot": "rolled_back",
        "limited": rv.NOT_IN_RUN,
        "production": rv.NOT_IN_RUN,
    }
    assert rv.run_stage_states(names, names, {"pilot": "promoted"})["limited"] == "pending"
    assert rv.run_stage_states(names, ["limited"], {"limited": "running"}) == {
        "pilot": rv.SKIPPED_AT_START,
        "limited": "running",
        "production": rv.NOT_IN_RUN,
    }
    assert rv.stage_detail(7, 10, 1.25, 3, "running", 1.0) == (
        "7/10 entities · 1.25 of 3 stage days · 1.75 left (about 42.0 h wall time)"
    )
    assert rv.stage_detail(0, 0, 0, 3, "pending") == ""
    assert rv.stage_detail(0, 0, 0.5, 3, "skipped") == "0/0 entities (none exposed)"
    assert rv.timeline_steps(load_stage_config(), {"limited": rv.NOT_IN_RUN})[1].badge == "not in this run"


def test_report_file_name():
    assert rv.report_file_name("rollout pilot", 1_700_000_000.0) == "discovery-rollout-pilot-20231114-2213.md"
    assert rv.report_file_name("Run #7 / limited", 0.0, "json") == "discovery-run-7-limited-19700101-0000.json"


def test_time_scale_help():
    assert rv.time_scale_help(86400) == "one stage day every 1 wall second"
    assert rv.time_scale_help(36000) == "one stage day every 2.4 wall seconds"
    assert rv.time_scale_help(1) == "real time"
    assert rv.time_scale_help(4) == "one stage day every 6 wall hours"
    assert rv.time_scale_help(0.5) == "one stage day every 2 wall days"
    assert "positive" in rv.time_scale_help(0)


# --------------------------------------------------------------------------- controls


def test_available_actions_follow_the_state():
    enabled = lambda state, stage=None: {n for n, a in rv.available_actions(state, stage).items() if a.enabled}  # noqa: E731
    assert enabled("none") == set()
    assert enabled("running", "running") == {"pause", "rollback"}
    assert enabled("inconclusive", "inconclusive") == {"pause", "promote", "rollback"}
    assert enabled("soaking", "soaking") == {"pause", "promote", "rollback"}
    assert enabled("paused", "running") == {"resume", "rollback"}
    assert enabled("dead", "running") == {"resume", "rollback"}
    assert enabled("completed", "promoted") == {"rollback"}
    assert enabled("rolled_back", "rolled_back") == set()
    assert enabled("rolling_back") == set()
    why = rv.available_actions("rolled_back", "rolled_back")["rollback"].why
    assert why == "the rollout is rolled back"
    assert "inconclusive" in rv.available_actions("running", "running")["promote"].why


def test_state_hints():
    kind, text = rv.state_hint("soaking", "pilot", elapsed_days=1.0, min_days=3.0, time_scale=86400.0)
    assert kind == "info" and "about 2.0 s wall time from now, one stage day every 1 wall second" in text
    assert "--force" not in text and "tick Force" in text
    kind, text = rv.state_hint("soaking", "pilot", elapsed_days=1.0, min_days=3.0, time_scale=1.0)
    assert "about 2.0 days wall time from now, real time" in text
    assert rv.state_hint("inconclusive", "limited")[0] == "warning"
    kind, text = rv.state_hint("dead", "pilot", note="worker pid 12 is gone")
    assert kind == "error" and "worker pid 12 is gone" in text
    assert rv.state_hint("running", "pilot") is None and rv.state_hint("rolled_back", "pilot") is None
    fault = "paused by a fault of the store, nothing of the batch counted: cannot reach FalkorDB"
    kind, text = rv.state_hint("paused", "limited", note=fault)
    assert kind == "error" and text.startswith(fault) and "Resume retries now" in text
    assert rv.state_hint("paused", "limited", note="heartbeat 1.0s ago")[0] == "info"
    kind, text = rv.state_hint("rollback_interrupted", "limited")
    assert kind == "error" and "Resume" in text
    assert rv.state_style("rollback_interrupted")[1] == "red"
    assert [rv.duration_text(s) for s in (5, 45, 600, 7200, 259200)] == ["5.0 s", "45 s", "10 min", "2.0 h", "3.0 days"]


# --------------------------------------------------------------------------- one p95, on a real stage


def test_the_rollout_page_p95_is_the_criteria_p95(settings, ops, seed_graph, tmp_path):
    """The page's p95 tile and the stage's p95 criterion read the same runs through the same percentile rule."""
    graph = seed_graph(60, 7)
    run_id = rollout.start_rollout(
        settings, ops, stage="pilot", stages_file=stage_table(tmp_path), time_scale=86400 * 4, launch=False,
        actor=ADMIN, graph=graph, config_file=candidate_file(tmp_path),
    )  # fmt: skip
    job_id = rollout.rollout_status(ops, run_id).run.job_id
    assert run_claimed(JobStore(ops), job_id, settings, poll_s=0.05).state is JobState.SUCCEEDED
    (pilot,) = [s for s in rollout.rollout_status(ops, run_id).stages if s.name == "pilot"]
    (criterion,) = [r for r in pilot.verdict.rows if r.metric == "p95_latency_ms"]
    frame = rv.old_vs_new_frame(query_events(ops, stage_id=pilot.stage_id))
    page_p95 = rv.latest_figures(frame)["p95_engine_latency_ms"].new
    assert criterion.n == pilot.done == 10
    assert page_p95 == criterion.value


def test_figure_tiles_format_each_metric_and_give_no_delta_without_an_old_side():
    latest = {
        "cost_per_entity": rv.SideBySide("cost_per_entity", 0.30, 0.25, 4, 5),
        "actionable_rate": rv.SideBySide("actionable_rate", 0.2, 0.25, 4, 5),
        "p95_engine_latency_ms": rv.SideBySide("p95_engine_latency_ms", None, 12.34, 0, 5),
    }
    cost, rate, p95 = rv.figure_tiles(latest)
    assert (cost.label, cost.value, cost.delta) == ("Cost per entity · new", "$0.250", "-$0.050 per entity vs old")
    assert cost.delta_color == "inverse"
    assert cost.help == "old: $0.300 over 4 runs; new over 5 runs"
    assert (rate.value, rate.delta, rate.delta_color) == ("25.0%", "+5.0 pp vs old", "normal")
    assert (p95.value, p95.delta, p95.help) == ("12.3 ms", None, "old: — over 0 runs; new over 5 runs")
