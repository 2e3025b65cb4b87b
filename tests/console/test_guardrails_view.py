"""The Rollout page's guardrail panel as pure data: the bake window, the triggers with figures and intervals in
words, the outcome per state, and which buttons make sense; no internal name, None, nan or inf reaches it."""

from __future__ import annotations

import re

from console import production_view as pv
from console import rollout_view as rv
from engine.core.params import ParameterConfig
from engine.rollout import guardrails as gr
from engine.rollout.stages import load_stage_config

RAW = re.compile(r"\bNone\b|\bnan\b|\binf\b|Infinity|[a-z]+_[a-z_]+")
DAY = 86400.0
POLICY = load_stage_config().stage("production")


def status(state: gr.GuardrailState, *, verdict=None, live_hash="abc", ended_by=None, outcome="", record=None):
    return gr.GuardrailStatus(
        run_id=3,
        stage="production",
        state=state,
        promoted_at=0.0,
        ends_at=7 * DAY,
        bake_days=7.0,
        time_scale=1.0,
        promoted_hash="abc",
        previous_hash=ParameterConfig().hash(),
        policy=gr.triggers_only(POLICY),
        evaluated_at=None if verdict is None else 2 * DAY,
        verdict=verdict,
        record=record or {},
        ended_at=None if state is gr.GuardrailState.BAKING else 3 * DAY,
        ended_by=ended_by,
        outcome=outcome,
        job=None,
        now=2 * DAY,
        live_hash=live_hash,
    )


def visits(n, cost):
    return [gr.Visit(cost, i % 3 == 0, 10, 0, 20.0) for i in range(n)]


def test_an_open_bake_shows_its_window_its_triggers_and_all_three_buttons():
    view = rv.guardrail_view(status(gr.GuardrailState.BAKING))
    assert view.label == "baking" and view.colour == "blue"
    assert view.window.startswith("7 days: 1970-01-01 00:00 UTC to 1970-01-08 00:00 UTC · day 2.0 of 7")
    assert view.progress == 2 / 7
    assert list(view.criteria["criterion"]) == [
        "cost increase > 15 %",
        "error rate > 10 %",
        f"p95 {rv.ENGINE_TIME} > 1500 ms",
    ]
    assert view.outcome == "So far: not evaluated yet." and view.can_end and view.can_revert
    assert not RAW.search(view.criteria.to_string() + view.outcome + view.evaluator + view.compared_with)


def test_a_breach_so_far_and_a_revert_read_in_words():
    verdict, _ = gr.judge(POLICY, visits(150, 0.3), visits(200, 0.1), seed=1)
    record = {"baseline": {"n": 200, "describe": "200 production runs before the promotion"}}
    view = rv.guardrail_view(status(gr.GuardrailState.BAKING, verdict=verdict, record=record))
    assert view.outcome_kind == "error" and view.outcome == "So far: breached: cost increase > 15 %."
    assert list(view.criteria["result"]) == ["BREACHED", "ok", "ok"]
    assert view.criteria.iloc[0]["measured"] == "+200.0 %" and " to " in view.criteria.iloc[0]["interval"]
    assert view.compared_with.endswith("previous config's 200 production runs before the promotion.")
    assert "Last evaluated 1970-01-03 00:00 UTC." in view.evaluator
    reverted = rv.guardrail_view(
        status(
            gr.GuardrailState.REVERTED,
            verdict=verdict,
            live_hash=ParameterConfig().hash(),
            ended_by="guardrail",
            outcome=gr.verdict_words(verdict, POLICY.min_sample),
        )
    )
    assert reverted.label == "reverted" and reverted.outcome.startswith("Reverted 1970-01-04 00:00 UTC by guardrail")
    assert not reverted.can_end and not reverted.can_revert
    for text in (view.outcome, reverted.outcome, view.criteria.to_string(), reverted.criteria.to_string()):
        assert not RAW.search(text), text


def test_closed_windows_say_how_they_ended_and_revert_stays_possible_while_the_config_is_live():
    passed = rv.guardrail_view(status(gr.GuardrailState.PASSED, outcome="no trigger breached in 400 runs"))
    assert passed.outcome_kind == "success" and passed.label == "bake passed"
    assert not passed.can_end and passed.can_revert
    unjudged = rv.guardrail_view(status(gr.GuardrailState.UNJUDGED, outcome="12 runs"))
    assert unjudged.outcome_kind == "warning" and unjudged.label == "bake ended unjudged"
    ended = rv.guardrail_view(status(gr.GuardrailState.ENDED, ended_by="console:ann", outcome="clean week"))
    assert ended.outcome.endswith("by console:ann: clean week")
    superseded = rv.guardrail_view(status(gr.GuardrailState.ENDED, live_hash="other"))
    assert not superseded.can_revert  # another config is live: reverting would undo it


def test_the_production_page_tells_an_open_bake_and_warns_of_a_revert():
    """The Production page's line about the last promotion's guardrail: none before any bake, an open one as
    information, a revert as a warning, any other ending as a caption; each the status's own one line."""
    assert pv.guardrail_line(None) is None
    baking = status(gr.GuardrailState.BAKING)
    assert pv.guardrail_line(baking) == ("info", baking.describe())
    reverted = status(gr.GuardrailState.REVERTED, ended_by="guardrail", outcome="cost up 40%")
    kind, line = pv.guardrail_line(reverted)
    assert kind == "warning" and "reverted to" in line and "cost up 40%" in line
    passed = status(gr.GuardrailState.PASSED, outcome="no trigger breached")
    assert pv.guardrail_line(passed) == ("caption", passed.describe())
