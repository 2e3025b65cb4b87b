"""AppTest of the Rollout page by role and four-eyes: a viewer sees every control greyed out with the role it
needs; the approver who started a run into a four-eyes stage sees Promote greyed out ("four-eyes: a second
approver must promote") but may roll back; a second approver promotes it and the decision table names both."""

from __future__ import annotations

import pytest

from console import rollout_view as rv
from engine import rollout
from tests.pages.test_rollout_page import buttons, open_page, seeded_console, settle
from tests.support.actors import person
from tests.support.console_env import as_shown
from tests.support.rollouts import cancel_and_wait, candidate_file
from tests.support.stages import stage_table


@pytest.fixture
def console(tmp_path, monkeypatch):
    with seeded_console(tmp_path, monkeypatch, 7) as stores:
        yield stores


def acting_as(monkeypatch, who) -> None:
    """The console's signed-in actor for the next runs of the page (what sign-in resolves)."""
    monkeypatch.setattr("console.identity.actor", lambda: who)


def helps(at) -> dict[str, str]:
    return {b.key: as_shown(b.help or "") for b in at.button if b.key}


def test_roles_and_four_eyes_grey_out_what_the_actor_may_not_do(console, tmp_path, monkeypatch):
    settings, graph, ops = console
    alice = person(ops, "alice@example.com", "approver")
    bob = person(ops, "bob@example.com", "approver")
    vera = person(ops, "vera@example.com", "viewer")
    stages = stage_table(
        tmp_path, min_days=(0.01, 0.01, 0.01), loose_triggers=True, four_eyes=("production",), drop=("limited",),
        bake_days=0, name="four-eyes.json",
    )  # fmt: skip
    run_id = rollout.start_rollout(
        settings, ops, stage="all", stages_file=stages, config_file=candidate_file(tmp_path), time_scale=86400,
        actor=alice, graph=graph,
    )  # fmt: skip
    try:
        st = settle(ops, run_id)
        assert st.state == "soaking" and st.current_stage == "pilot", st.message

        acting_as(monkeypatch, vera)
        at = open_page()
        on, why = buttons(at), helps(at)
        assert not on["rollout_promote"] and why["rollout_promote"] == "needs approver"
        assert not on["rollout_rollback"] and why["rollout_rollback"] == "needs approver"
        assert not on["rollout_pause"] and why["rollout_pause"] == "needs operator"

        acting_as(monkeypatch, alice)
        at = open_page()
        on, why = buttons(at), helps(at)
        assert not on["rollout_promote"] and why["rollout_promote"] == rv.FOUR_EYES_HELP
        assert on["rollout_rollback"]  # a rollback never waits for a second person
        captions = [as_shown(c.value) for c in at.caption]
        assert any(c.startswith("Four-eyes: you started this run") for c in captions), captions
        assert any("started by alice@example.com" in c for c in captions), captions
        assert any("pilot passed · waiting for a second approver" in as_shown(m.value) for m in at.markdown)
        hints = [as_shown(i.value) for i in at.info]
        assert any("Four-eyes: promotion into production needs a second person" in h for h in hints), hints

        acting_as(monkeypatch, bob)
        at = open_page()
        assert buttons(at)["rollout_promote"]
        at.button(key="rollout_promote").click().run()
        assert not at.exception, [e.value for e in at.exception]
        [promotion] = [d for d in rollout.decision_records(ops, run_id) if d.gate == "promote"]
        assert (promotion.started_by, promotion.approved_by) == ("alice@example.com", "bob@example.com")
        assert promotion.four_eyes_outcome == "met"
        table = next(df.value for df in at.dataframe if "approved by" in df.value.columns)
        row = table[table["gate"] == "promote"].iloc[0]
        assert (row["started by"], row["approved by"], row["four-eyes"]) == (
            "alice@example.com",
            "bob@example.com",
            "met",
        )
    finally:
        if rollout.rollout_status(ops, run_id).state not in ("completed", "rolled_back", "cancelled"):
            cancel_and_wait(ops, run_id)
