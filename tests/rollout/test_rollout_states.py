"""The rollout state rules (engine.rollout.states): one test per predicate, from literal state strings."""

from __future__ import annotations

import pytest

from engine.jobs.queue import JobState
from engine.rollout.states import (
    ACTIVE_RUN_STATES,
    OPEN_STAGE_STATES,
    ROLLBACK_STALE_S,
    EffectiveState,
    RunState,
    StageState,
    effective_state,
    rollback_interrupted,
)

ALL_EFFECTIVE = (
    "none",
    "queued",
    "running",
    "soaking",
    "inconclusive",
    "paused",
    "dead",
    "failed",
    "stopped",
    "rolling_back",
    "rollback_interrupted",
    "rolled_back",
    "completed",
    "cancelled",
)


def holds(enum, predicate, values) -> set[str]:
    return {v for v in values if predicate(enum(v))}


# --------------------------------------------------------------------------- stored values


def test_values_are_the_stored_strings():
    assert [s.value for s in RunState] == [
        "running",
        "soaking",
        "inconclusive",
        "rolling_back",
        "rolled_back",
        "completed",
        "cancelled",
    ]
    assert [s.value for s in StageState] == [
        "pending",
        "running",
        "soaking",
        "inconclusive",
        "promoted",
        "rolled_back",
        "skipped",
        "cancelled",
    ]
    assert {s.value for s in EffectiveState} == set(ALL_EFFECTIVE)
    assert RunState("soaking") == "soaking" and f"{StageState.SKIPPED:<8}|" == "skipped |"


# --------------------------------------------------------------------------- RunState


def test_run_is_active_while_a_stage_is_in_play():
    assert holds(RunState, RunState.is_active, [s.value for s in RunState]) == {"running", "soaking", "inconclusive"}
    assert ACTIVE_RUN_STATES == ("running", "soaking", "inconclusive")


def test_run_is_terminal_when_over():
    assert holds(RunState, RunState.is_terminal, [s.value for s in RunState]) == {
        "rolled_back",
        "completed",
        "cancelled",
    }


def test_run_can_be_rolled_back_unless_rolled_back_or_rolling_back():
    assert holds(RunState, RunState.can_rollback, [s.value for s in RunState]) == {
        "running",
        "soaking",
        "inconclusive",
        "completed",
        "cancelled",
    }


def test_one_active_or_rolling_back_run_blocks_a_new_rollout():
    assert holds(RunState, RunState.blocks_new_rollout, [s.value for s in RunState]) == {
        "running",
        "soaking",
        "inconclusive",
        "rolling_back",
    }


# --------------------------------------------------------------------------- StageState


def test_stage_is_reached_once_it_has_a_row():
    assert holds(StageState, StageState.is_reached, [s.value for s in StageState]) == {s.value for s in StageState} - {
        "pending"
    }


def test_stage_is_open_while_run_or_decided():
    assert holds(StageState, StageState.is_open, [s.value for s in StageState]) == {
        "running",
        "soaking",
        "inconclusive",
    }
    assert OPEN_STAGE_STATES == ("running", "soaking", "inconclusive")


def test_stage_can_be_promoted_when_soaking_or_inconclusive():
    assert holds(StageState, StageState.can_promote, [s.value for s in StageState]) == {"soaking", "inconclusive"}


def test_stage_is_done_when_promoted_or_skipped():
    assert holds(StageState, StageState.is_done, [s.value for s in StageState]) == {"promoted", "skipped"}


# --------------------------------------------------------------------------- EffectiveState


def test_effective_is_active_while_a_stage_is_in_play():
    assert holds(EffectiveState, EffectiveState.is_active, ALL_EFFECTIVE) == {
        "running",
        "soaking",
        "inconclusive",
        "queued",
        "paused",
        "dead",
        "failed",
    }


def test_effective_is_terminal_when_over():
    assert holds(EffectiveState, EffectiveState.is_terminal, ALL_EFFECTIVE) == {"completed", "rolled_back", "cancelled"}


def test_effective_awaits_operator_when_it_will_not_move_on_by_itself():
    assert holds(EffectiveState, EffectiveState.awaits_operator, ALL_EFFECTIVE) == {
        "inconclusive",
        "paused",
        "dead",
        "failed",
        "stopped",
        "rollback_interrupted",
    }


def test_effective_can_pause_while_a_worker_carries_it():
    assert holds(EffectiveState, EffectiveState.can_pause, ALL_EFFECTIVE) == {
        "running",
        "soaking",
        "inconclusive",
        "queued",
    }


def test_effective_can_resume_when_paused_dead_failed_or_a_rollback_was_interrupted():
    assert holds(EffectiveState, EffectiveState.can_resume, ALL_EFFECTIVE) == {
        "paused",
        "dead",
        "failed",
        "rollback_interrupted",
    }


def test_every_state_that_is_not_over_has_a_way_out():
    """Case 2 of the reliability issue: no state leaves an operator without an action. Every state but the
    terminal ones (and a rollback in progress, which ends by itself) allows resume, rollback or promotion."""
    for value in ALL_EFFECTIVE:
        state = EffectiveState(value)
        if state.is_terminal() or state in (EffectiveState.NONE, EffectiveState.ROLLING_BACK):
            continue
        ways = {
            "resume": state.can_resume(),
            "rollback": state.can_rollback(),
            "pause": state.can_pause(),
        }
        assert any(ways.values()), value


def test_effective_can_promote_an_active_run_whose_stage_is_promotable():
    assert EffectiveState("soaking").can_promote(StageState("soaking"))
    assert EffectiveState("dead").can_promote(StageState("inconclusive"))
    assert not EffectiveState("running").can_promote(StageState("running"))
    assert not EffectiveState("completed").can_promote(StageState("soaking"))
    assert not EffectiveState("stopped").can_promote(StageState("inconclusive"))


def test_effective_can_rollback_unless_none_rolled_back_or_rolling_back():
    assert holds(EffectiveState, EffectiveState.can_rollback, ALL_EFFECTIVE) == set(ALL_EFFECTIVE) - {
        "none",
        "rolled_back",
        "rolling_back",
    }


# --------------------------------------------------------------------------- effective_state


@pytest.mark.parametrize(
    ("run", "job", "alive", "expected"),
    [
        ("completed", "succeeded", False, "completed"),  # a run that is over says so, whatever its job
        ("rolling_back", "running", True, "rolling_back"),
        ("rolling_back", "failed", False, "rolling_back"),
        ("running", None, False, "running"),  # no job yet
        ("running", "queued", False, "queued"),
        ("soaking", "paused", True, "paused"),
        ("soaking", "paused", False, "dead"),
        ("inconclusive", "running", True, "inconclusive"),
        ("running", "running", False, "dead"),
        ("running", "dead", False, "dead"),
        ("running", "failed", False, "failed"),
        ("running", "cancelled", False, "cancelled"),
        ("soaking", "succeeded", False, "stopped"),
    ],
)
def test_effective_state_combines_run_job_and_worker(run, job, alive, expected):
    got = effective_state(RunState(run), JobState(job) if job else None, alive)
    assert got is EffectiveState(expected)


def test_a_stalled_rollback_is_reported_as_interrupted():
    assert effective_state(RunState("rolling_back"), None, False, rollback_stalled=True) is EffectiveState(
        "rollback_interrupted"
    )
    assert rollback_interrupted({"state": "rolling_back", "rollback_at": 0}, now=10.0)
    assert not rollback_interrupted({"state": "rolling_back", "rollback_at": 9.0}, now=10.0)
    assert rollback_interrupted({"state": "rolling_back", "rollback_at": 9.0}, now=10.0 + ROLLBACK_STALE_S)
    assert not rollback_interrupted({"state": "completed", "rollback_at": 0}, now=10.0)


# --------------------------------------------------------------------------- JobState


def test_job_is_active_while_queued_or_held_by_a_worker():
    assert holds(JobState, JobState.is_active, [s.value for s in JobState]) == {"queued", "running", "paused"}
