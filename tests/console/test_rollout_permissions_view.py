"""Which Rollout page controls the actor may use: its role ("needs approver") and four-eyes ("a second approver
must promote") grey buttons out; the decision table names who started and who approved (pure: no Streamlit)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from console import rollout_view as rv
from engine.core.access import LOCAL_ACTOR, OIDC, Actor, Role
from engine.rollout.records import RunInfo, identity, run_info_from_row
from engine.rollout.states import RunState

ALICE = Actor("alice@example.com", Role.APPROVER, OIDC, email="alice@example.com")
BOB = Actor("bob@example.com", Role.APPROVER, OIDC, email="bob@example.com")
OLGA = Actor("olga@example.com", Role.OPERATOR, OIDC, email="olga@example.com")
VERA = Actor("vera@example.com", Role.VIEWER, OIDC, email="vera@example.com")


def run(*, stages=("pilot", "production"), four_eyes=("production",), dry_run=False, actor=ALICE) -> RunInfo:
    """A run row as the store keeps it, read back through the same reader the page uses."""
    table = {"stages": [{"name": n, "four_eyes": n in four_eyes} for n in ("pilot", "production")]}
    row = {
        "id": 1, "job_id": 1, "state": RunState.SOAKING, "target": "all", "stages": json.dumps(list(stages)),
        "current_stage": stages[0], "dry_run": int(dry_run), "seed": 1, "world_seed": 1, "time_scale": 1.0,
        "entity_limit": None, "candidate_hash": "c" * 16, "candidate_source": "file", "baseline_hash": "b" * 16,
        "actor": actor.key, "created_at": 0.0, "updated_at": 0.0, "finished_at": None, "message": "",
        "stage_config": json.dumps(table), "candidate": "{}", "baseline": "{}", "world": None,
        "actor_identity": json.dumps(identity(actor)),
    }  # fmt: skip
    return run_info_from_row(row)


def status(info: RunInfo, stage: str = "pilot"):
    return SimpleNamespace(run=info, current_stage=stage)


SOAKING = rv.available_actions("soaking", "soaking")


def test_a_viewer_sees_every_control_disabled_with_the_role_it_needs():
    acts = rv.permitted_actions(SOAKING, status(run()), VERA)
    assert (acts["promote"].enabled, acts["promote"].why) == (False, "needs approver")
    assert (acts["force"].enabled, acts["force"].why) == (False, "needs approver")
    assert (acts["rollback"].enabled, acts["rollback"].why) == (False, "needs approver")
    assert (acts["pause"].enabled, acts["pause"].why) == (False, "needs operator")
    assert rv.role_help(VERA, "start") == "needs operator" and rv.role_help(VERA, "revert") == "needs approver"
    assert rv.role_help(OLGA, "evaluate") is None and rv.role_help(OLGA, "end_bake") == "needs approver"


def test_an_operator_pauses_but_does_not_promote_or_roll_back():
    acts = rv.permitted_actions(SOAKING, status(run(actor=OLGA)), OLGA)
    assert acts["pause"].enabled and not acts["promote"].enabled and acts["promote"].why == "needs approver"
    assert acts["rollback"].why == "needs approver"


def test_four_eyes_keeps_the_starter_from_promoting_into_production_but_not_from_rolling_back():
    info = run()
    acts = rv.permitted_actions(SOAKING, status(info), ALICE)
    assert (acts["promote"].enabled, acts["promote"].why) == (False, rv.FOUR_EYES_HELP)
    assert (acts["force"].enabled, acts["force"].why) == (False, rv.FOUR_EYES_HELP)
    assert acts["rollback"].enabled  # a rollback never waits for a second person
    other = rv.permitted_actions(SOAKING, status(info), BOB)
    assert other["promote"].enabled and other["force"].enabled
    # sign-in off: one identity cannot be told from another, so nothing is greyed out (the record says waived)
    local = rv.permitted_actions(SOAKING, status(run(actor=LOCAL_ACTOR)), LOCAL_ACTOR)
    assert local["promote"].enabled


def test_without_a_four_eyes_stage_only_forcing_needs_someone_else():
    info = run(four_eyes=())
    acts = rv.permitted_actions(SOAKING, status(info), ALICE)
    assert acts["promote"].enabled and (acts["force"].enabled, acts["force"].why) == (False, rv.FOUR_EYES_HELP)
    dry = rv.permitted_actions(SOAKING, status(run(dry_run=True)), ALICE)
    assert dry["promote"].enabled  # a dry run changes nothing live: four-eyes is for what reaches production


def test_a_state_that_cannot_promote_keeps_its_own_reason():
    acts = rv.permitted_actions(rv.available_actions("running", "running"), status(run()), VERA)
    assert not acts["promote"].enabled and "only a passed (soaking) or inconclusive" in acts["promote"].why


def test_the_decision_table_names_who_started_and_who_approved():
    rec = {
        "id": 3, "run_id": 1, "stage": "pilot", "at": 0.0, "gate": "promote", "action": "promote", "phase": "passed",
        "actor": "bob@example.com", "forced": False, "reason": "soaked",
        "record": {"started_by": identity(ALICE), "approved_by": identity(BOB), "four_eyes_outcome": "met"},
    }  # fmt: skip
    check = {**rec, "id": 2, "gate": "check", "action": "continue", "actor": "worker", "record": {}}
    frame = rv.records_display([rec, check])
    assert list(frame.columns[-4:]) == ["started by", "approved by", "four-eyes", "reason"]
    top, below = frame.iloc[0], frame.iloc[1]
    assert (top["started by"], top["approved by"], top["four-eyes"]) == ("alice@example.com", "bob@example.com", "met")
    assert (below["started by"], below["approved by"], below["four-eyes"]) == ("—", "—", "—")
