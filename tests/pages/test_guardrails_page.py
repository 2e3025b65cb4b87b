"""AppTest of the Rollout page's guardrail panel: the bake window with its triggers, Evaluate now reverting a bad
config on its production traffic (in the same rerun, by the operator who clicked), and Revert now with its
confirmation on a good one."""

from __future__ import annotations

import time

from engine import rollout as ro
from engine.core.params import ParameterConfig
from engine.rollout import guardrails as gr
from tests.pages.test_rollout_page import buttons, markdown, open_page, seeded_console
from tests.support.console_env import as_shown
from tests.support.guardrails import BAD, production_traffic, promote_into_production, stop_guardrail_evaluators
from tests.support.rollouts import SAME_DISCOVERY


def promoted(settings, graph, ops, tmp_path, monkeypatch, config):
    """``config`` promoted into production by a person; no evaluator worker is launched (the page evaluates)."""
    data_dir = str(settings.data_dir)
    monkeypatch.delenv("DISCOVERY_DATA_DIR")
    try:
        run_id = promote_into_production(settings, ops, graph, tmp_path, config)
    finally:
        monkeypatch.setenv("DISCOVERY_DATA_DIR", data_dir)
    stop_guardrail_evaluators(ops)  # its queued job: the page's buttons evaluate here
    return run_id


def panel_texts(at) -> list[str]:
    return [as_shown(e.value) for kind in (at.info, at.warning, at.success, at.error, at.caption) for e in kind]


def test_the_panel_shows_the_bake_and_evaluate_now_reverts_a_bad_config(tmp_path, monkeypatch):
    with seeded_console(tmp_path, monkeypatch, 7) as (settings, graph, ops):
        ids = graph.list_entity_ids()
        production_traffic(graph, ops, ids, ParameterConfig(), at=1_000.0, system="old")
        run_id = promoted(settings, graph, ops, tmp_path, monkeypatch, BAD)
        at = open_page()
        assert "Guardrail after promotion" in [s.value for s in at.subheader]
        badge = next(as_shown(m) for m in markdown(at) if "Bake window" in m)
        assert "baking" in badge and "7 days" in badge and "day 0.0 of 7" in badge
        criteria = next(df.value for df in at.dataframe if "criterion" in df.value.columns and len(df.value) == 3)
        assert list(criteria["criterion"]) == [
            "cost increase > 15 %",
            "error rate > 10 %",
            "p95 engine time per entity > 1500 ms",
        ]
        assert set(criteria["result"]) == {"pending"}
        on = buttons(at)
        assert on["rollout_guardrail_evaluate"] and on["rollout_guardrail_end"] and on["rollout_guardrail_revert"]

        production_traffic(graph, ops, ids, BAD, at=time.time())
        at.button(key="rollout_guardrail_evaluate").click().run()
        assert not at.exception, [e.value for e in at.exception]
        said = [as_shown(i.value) for i in at.info]
        assert any(t.startswith(f"Evaluate: guardrail of rollout {run_id}") and "reverted to" in t for t in said)
        assert ro.live_config(ops) == ParameterConfig()
        badge = next(as_shown(m) for m in markdown(at) if "Bake window" in m)
        assert "reverted" in badge
        assert any(t.startswith("Reverted ") and "by worker" in t for t in panel_texts(at))
        criteria = next(df.value for df in at.dataframe if "criterion" in df.value.columns and len(df.value) == 3)
        assert list(criteria["result"])[0] == "BREACHED"
        [rec] = [d for d in ro.decision_records(ops, run_id) if d.gate == "guardrail" and d.action == "revert"]
        # the breached trigger reverted (the engine's rule), on the round the console's actor asked for
        assert rec.actor == "worker" and rec.record["evaluated_by"]["key"] == "local" and rec.record["graph"] == "kept"
        assert "rollout_guardrail_revert" not in buttons(at)  # nothing left to revert


def test_revert_now_asks_first_and_reverts_a_good_config_by_hand(tmp_path, monkeypatch):
    with seeded_console(tmp_path, monkeypatch, 7) as (settings, graph, ops):
        run_id = promoted(settings, graph, ops, tmp_path, monkeypatch, SAME_DISCOVERY)
        at = open_page()
        at.button(key="rollout_guardrail_revert").click().run()
        assert ro.live_config(ops) == SAME_DISCOVERY  # not yet: it asks first
        assert any("Revert the live config from" in t for t in panel_texts(at))
        at.text_input(key="rollout_guardrail_reason").input("sales saw odd calls")
        at.button(key="rollout_guardrail_confirm").click().run()
        assert not at.exception, [e.value for e in at.exception]
        ok = [as_shown(s.value) for s in at.success]
        assert any(t.startswith(f"Revert: reverted the live config of rollout {run_id}") for t in ok), ok
        assert ro.live_config(ops) == ParameterConfig()
        status = gr.guardrail_status(ops)
        assert status.state is gr.GuardrailState.REVERTED and status.ended_by == "local"
        assert status.outcome == "sales saw odd calls"
