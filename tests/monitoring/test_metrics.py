"""Metric events: derived from run results, stored in SQLite and the JSONL log together."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from engine.monitoring.events import (
    MetricEvent,
    count_events,
    last_event_at,
    query_events,
    record_events,
    record_runs,
    stage_ids,
)
from engine.monitoring.jsonlog import JsonlLog
from tests.support.monitoring_data import FakeClock, make_event, make_run

T0 = 1_800_000_000.0


@pytest.fixture
def log(settings):
    return JsonlLog.for_settings(settings)


def test_event_fields_are_derived_from_the_run():
    run = make_run(
        "arsenal-fc",
        system="old",
        cost=0.8,
        hops=5,
        errors=("timeout", "http_503"),
        actionable=True,
        promoted=1,
        confidences=(0.75, 0.4, 1.0),
        engine_time_s=0.0125,
        evidence_latency_s=7.5,
        config_hash="abc",
        shadow=True,
    )
    e = MetricEvent.from_run(
        run, at=T0, run_id="r1", stage_id="pilot", truth=lambda eid: eid == "arsenal-fc", entity_name="Arsenal FC"
    )
    assert (e.at, e.run_id, e.stage_id, e.system, e.shadow, e.config_hash) == (T0, "r1", "pilot", "old", True, "abc")
    assert (e.entity_id, e.entity_name, e.cost_usd, e.iterations, e.hops) == ("arsenal-fc", "Arsenal FC", 0.8, 5, 5)
    assert e.hypotheses_tested == 3
    assert e.promotions == 1
    assert e.actionable is True and e.correct is True
    assert e.engine_latency_ms == pytest.approx(12.5)
    assert e.evidence_latency_s == 7.5
    assert e.latency_s == pytest.approx(7.5125)
    assert (e.error_count, e.error_types) == (2, ("timeout", "http_503"))
    assert e.confidences == (0.75, 0.4, 1.0)


def test_correct_is_none_without_truth_and_false_when_wrong():
    assert make_event(actionable=True).correct is None
    assert make_event(actionable=True, truth=lambda _: None).correct is None
    assert make_event(actionable=True, truth=lambda _: False).correct is False
    assert make_event(actionable=False, truth=lambda _: False).correct is True


def test_a_promoted_hypothesis_that_was_not_tested_is_not_counted():
    # three hypotheses, the first two promoted, but the single hop looked at the first only -> 1
    e = make_event(hops=1, promoted=2, confidences=(0.8, 0.9, 0.1))
    assert (e.hypotheses_tested, e.promotions) == (1, 1)
    # zero hops: nothing tested, so nothing promoted by this run
    e = make_event(hops=0, promoted=2, confidences=(0.8, 0.9))
    assert (e.hypotheses_tested, e.promotions) == (0, 0)


def test_record_runs_writes_sqlite_rows_and_jsonl_lines(ops, log):
    clock = FakeClock(T0)
    results = [make_run("a", cost=0.1), make_run("b", system="old", errors=("timeout",)), make_run("c", shadow=True)]
    events = record_runs(
        ops,
        results,
        run_id="run-7",
        stage_id="pilot",
        truth={"a": True}.get,
        clock=clock,
        log=log,
        names={"a": "Club A"},
    )
    assert len(events) == 3 and all(e.at == T0 for e in events)
    stored = query_events(ops)
    assert [e.entity_id for e in stored] == ["a", "b", "c"]
    assert all(e.id is not None for e in stored)
    assert stored == events  # the round trip through SQLite keeps every field (ids aside)
    assert stored[0].entity_name == "Club A" and stored[0].correct is False
    assert stored[1].error_types == ("timeout",)
    lines = [json.loads(x) for x in log.path.read_text().splitlines()]
    assert [x["entity_id"] for x in lines] == ["a", "b", "c"]
    assert lines[1]["error_types"] == ["timeout"] and lines[0]["run_id"] == "run-7"
    assert lines[0]["latency_s"] == pytest.approx(events[0].latency_s)


def test_a_log_that_cannot_be_written_rolls_the_rows_back(ops, settings, tmp_path):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the log directory should be")
    bad_log = JsonlLog(blocked / "metrics.jsonl")
    with pytest.raises(OSError):
        record_runs(ops, [make_run("a")], run_id="r", clock=FakeClock(T0), log=bad_log)
    assert count_events(ops) == 0


def test_record_nothing_is_a_no_op(ops, log):
    assert record_events(ops, [], log=log) == 0
    assert not log.path.exists()


def test_queries_filter_by_window_stage_run_system_and_shadow(ops, log):
    clock = FakeClock(T0)
    record_runs(
        ops,
        [make_run("a"), make_run("b", system="old", shadow=True)],
        run_id="r1",
        stage_id="pilot",
        clock=clock,
        log=log,
    )
    clock.tick(100)
    record_runs(ops, [make_run("c")], run_id="r2", stage_id="limited", clock=clock, log=log)
    clock.tick(100)
    record_runs(ops, [make_run("d")], run_id="r3", clock=clock, log=log)

    assert count_events(ops) == 4
    assert [e.entity_id for e in query_events(ops, T0 + 50, T0 + 200)] == ["c"]
    assert [e.entity_id for e in query_events(ops, stage_id="pilot")] == ["a", "b"]
    assert [e.entity_id for e in query_events(ops, run_id="r3")] == ["d"]
    assert [e.entity_id for e in query_events(ops, system="old")] == ["b"]
    assert [e.entity_id for e in query_events(ops, shadow=False, stage_id="pilot")] == ["a"]
    assert [e.entity_id for e in query_events(ops, limit=2)] == ["a", "b"]
    assert stage_ids(ops) == ["limited", "pilot"]
    assert stage_ids(ops, T0 + 50) == ["limited"]
    assert last_event_at(ops) == T0 + 200


def test_last_event_at_of_an_empty_store_is_none(ops):
    assert last_event_at(ops) is None


def test_metrics_migration_is_recorded(ops):
    assert ops.schema_versions()["metrics"] == 1


def test_light_query_has_every_figure_but_the_lists(ops, log):
    from engine.monitoring.events import query_events_light

    record_runs(
        ops,
        [make_run("a", errors=("timeout",), actionable=True), make_run("b", system="old")],
        run_id="r",
        stage_id="s",
        truth=lambda eid: eid == "a",
        clock=lambda: 100.0,
        log=log,
        names={"a": "A"},
    )
    full, light = query_events(ops), query_events_light(ops)
    assert len(full) == len(light) == 2
    for f, lt in zip(full, light):
        assert lt.error_types == () and lt.confidences == () and lt.entity_name == ""
        assert replace(f, error_types=(), confidences=(), entity_name="", stop_reason="") == lt
        assert lt.latency_s == f.latency_s
    assert query_events_light(ops, 0, 200, system="old")[0].entity_id == "b"
