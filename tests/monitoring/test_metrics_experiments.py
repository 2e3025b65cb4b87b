"""Tuning trials are recorded like every run, but monitoring's windows leave them out."""

from __future__ import annotations

from engine.monitoring.events import (
    EXPERIMENT_STAGE_PREFIX,
    MetricEvent,
    count_events,
    query_events,
    query_events_light,
    record_events,
)
from engine.monitoring.jsonlog import JsonlLog


def _event(i: int, stage_id: str | None, run_id: str) -> MetricEvent:
    return MetricEvent(
        id=None,
        at=1000.0 + i,
        run_id=run_id,
        stage_id=stage_id,
        system="new",
        shadow=True,
        config_hash="h",
        entity_id=f"e{i}",
        cost_usd=0.1,
        iterations=1,
        hops=1,
        hypotheses_tested=1,
        promotions=0,
        actionable=False,
        correct=None,
        engine_latency_ms=1.0,
        evidence_latency_s=1.0,
        error_count=0,
    )


def test_windows_leave_tuning_trials_out_unless_asked(ops, tmp_path):
    log = JsonlLog(tmp_path / "m.jsonl")
    trial_stage = f"{EXPERIMENT_STAGE_PREFIX}7"
    record_events(
        ops,
        [
            _event(0, None, "r0"),
            _event(1, "rollout-1-pilot", "r1"),
            _event(2, trial_stage, "tuning-7-t0"),
            _event(3, trial_stage, "tuning-7-t1"),
        ],
        log=log,
    )
    assert [e.entity_id for e in query_events(ops)] == ["e0", "e1"]
    assert [e.entity_id for e in query_events_light(ops)] == ["e0", "e1"]
    assert count_events(ops) == 2
    assert len(query_events(ops, experiments=True)) == 4
    assert [e.entity_id for e in query_events(ops, stage_id=trial_stage)] == ["e2", "e3"]
    assert count_events(ops, run_id="tuning-7-t1") == 1  # a study checks its own trials by run id
