"""AppTest of the Rollout page's guards: a later start asks for an acknowledgement, the live config itself is
refused as a live candidate, promotion into the live config asks first with the diff and then says what is live,
and a run that ended before the last stage says the live config did not change and continues."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from engine import rollout
from engine.core.params import ParameterConfig
from tests.pages.test_rollout_page import FAST, buttons, flashes, markdown, open_page, seeded_console, settle, start
from tests.support.actors import ADMIN
from tests.support.console_env import as_shown
from tests.support.rollouts import SAME_DISCOVERY


@pytest.fixture
def console(tmp_path, monkeypatch):
    """Catalogue seed 7 (the pilot of the handed-over candidate ends inconclusive there: it waits for a person)."""
    with seeded_console(tmp_path, monkeypatch, 7) as stores:
        yield stores


def shown_texts(at: AppTest) -> list[str]:
    return [as_shown(e.value) for kind in (at.info, at.warning, at.success, at.error, at.caption) for e in kind]


def test_a_later_start_needs_the_acknowledgement_and_is_refused_without_it(console):
    _, _, ops = console
    at = open_page()
    at.selectbox(key="rollout_stage").select("limited").run()
    ack = at.checkbox(key="rollout_ack")
    assert as_shown(ack.label).startswith("I understand: this rollout skips pilot and starts at limited")
    start(at, stage="limited", dry_run=True)
    ok, errors = flashes(at)
    assert errors == ["Start: tick the acknowledgement first: this rollout skips pilot and starts at limited"]
    assert rollout.list_runs(ops) == []
    at.checkbox(key="rollout_ack").check()
    at.button(key="rollout_start").click().run()
    ok, errors = flashes(at)
    assert not errors and ok == ["Start: rollout 1 started (limited; skipped: pilot)"]
    [record] = [d for d in rollout.decision_records(ops, 1) if d.gate == "start"]
    assert record.record["skipped_stages"] == ["pilot"] and record.actor == "local"
    assert at.checkbox(key="rollout_ack").value is False  # the acknowledgement is for one start only
    assert any("This run started at limited: pilot skipped." in t for t in shown_texts(at))
    assert ":orange-badge[:material/skip_next: skipped]" in [as_shown(m) for m in markdown(at)]


def test_the_live_config_as_a_live_candidate_is_refused_in_one_line(console):
    _, _, ops = console
    at = open_page()
    at.radio(key="rollout_candidate").set_value("live").run()
    assert any("identical to the live config" in t and "dry run" in t for t in shown_texts(at))
    start(at)
    ok, errors = flashes(at)
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith("Start: the candidate (live config") and "identical to the live config" in errors[0]
    assert rollout.list_runs(ops) == []


def test_promoting_production_confirms_with_the_diff_then_says_what_is_live(console):
    _, _, ops = console
    at = open_page()
    at.selectbox(key="rollout_stage").select("production").run()
    at.number_input(key="rollout_entities").set_value(20).run()
    at.checkbox(key="rollout_ack").check()
    start(at, stage="production", time_scale=1.0)  # real time: 30 minimum days never pass in the test
    status = settle(ops)
    assert status.state in ("soaking", "inconclusive"), status.message
    at.run()
    at.checkbox(key="rollout_force").check()
    at.button(key="rollout_promote").click().run()
    assert at.checkbox(key="rollout_force").value is False
    warnings = [as_shown(w.value) for w in at.warning]
    assert any(w.startswith(f"Promoting production makes {SAME_DISCOVERY.hash()}") for w in warnings)
    diff = next(df.value for df in at.dataframe if "parameter" in df.value.columns and len(df.value))
    assert list(diff["parameter"]) == ["cache_ttl_s"] and list(diff["to"]) == ["600"]
    assert rollout.live_config(ops) == ParameterConfig()  # nothing yet
    at.button(key="rollout_confirm_promote").click().run()
    ok, errors = flashes(at)
    defaults = ParameterConfig().hash()
    assert not errors and ok[0].startswith(f"Promote: {SAME_DISCOVERY.hash()} (candidate ")
    assert ok[0].endswith(f"is now the live config (was the defaults ({defaults})) (forced).")
    assert rollout.live_config(ops) == SAME_DISCOVERY
    assert any(m.startswith("### Rollout 1 ") and "live config changed" in m for m in markdown(at))
    # the handed-over candidate is live now: it is not offered again
    assert "candidate" not in at.radio(key="rollout_candidate").options


def test_a_pilot_only_run_says_the_live_config_did_not_change_and_continues(console):
    _, _, ops = console
    at = open_page()
    start(at, time_scale=1.0)
    status = settle(ops)
    assert status.state in ("soaking", "inconclusive")
    at.run()
    at.checkbox(key="rollout_force").check()
    at.button(key="rollout_promote").click().run()
    at.button(key="rollout_confirm_promote").click().run()
    ok, errors = flashes(at)
    assert not errors and ok[0].startswith("Promote: pilot promoted (forced): this run ends here and the live config")
    assert any("ended after pilot · live config unchanged" in m for m in markdown(at))
    assert any("the live config did NOT change" in t for t in shown_texts(at))
    assert buttons(at)["rollout_continue"]
    assert next(b for b in at.button if b.key == "rollout_continue").label == "Continue to limited"
    at.button(key="rollout_continue").click().run()
    ok, errors = flashes(at)
    assert not errors and ok == ["Continue: rollout 2 started at limited with the candidate of rollout 1"]
    run = rollout.rollout_status(ops, 2).run
    assert run.stages == ("limited",) and run.candidate_hash == SAME_DISCOVERY.hash() and run.time_scale == 1.0
    rollout.cancel(ops, 2, ADMIN)


def test_a_second_pilot_of_the_same_candidate_says_it_exposed_no_entity(console):
    _, _, ops = console
    at = open_page()
    start(at, time_scale=FAST)
    first = settle(ops, leave=("queued", "running", "soaking"))
    if first.state == "inconclusive":
        rollout.promote(ops, 1, ADMIN, force=True)
    assert rollout.rollout_status(ops, 1).state == "completed"
    at.run()
    start(at, time_scale=FAST)
    second = settle(ops, 2, leave=("queued", "running", "soaking"))
    assert second.state == "completed" and second.progress == (0, 0)
    at.run()
    assert any(m.startswith("### Rollout 2 ") and "no entity exposed" in m for m in markdown(at))
    assert any("No entity was exposed (0/0 entities)" in as_shown(w.value) for w in at.warning)
    assert not any(m.startswith("### Rollout 2 ") and ":green-badge" in m for m in markdown(at))


RAW_WORDS = ("None", "nan", "inf", "Infinity", "rolled_back", "stage_end", "await_operator", "min_duration_days")


def rendered_text(at: AppTest) -> str:
    """Everything the page drew as text: markdown, captions, alerts, buttons and every table cell."""
    parts = [as_shown(m.value) for m in at.markdown] + shown_texts(at)
    parts += [b.label for b in at.button] + [df.value.to_string() for df in at.dataframe]
    return "\n".join(parts)


def test_a_rolled_back_run_shows_no_raw_value_anywhere(console):
    _, _, ops = console
    at = open_page()
    start(at, time_scale=1.0)
    settle(ops)
    at.run()
    at.button(key="rollout_rollback").click().run()
    at.button(key="rollout_confirm_rollback").click().run()
    assert rollout.rollout_status(ops).state == "rolled_back"
    at.run()
    text = rendered_text(at)
    raw = [w for w in RAW_WORDS if re.search(rf"(?<![\w-]){w}(?![\w-])", text)]
    assert raw == [], text
    assert "p95 engine time per entity" in text and "pp" in text
