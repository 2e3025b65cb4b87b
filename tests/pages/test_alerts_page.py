"""Alerts page (AppTest) and its pure frames: states, evaluate now, acknowledge, history, rule edits."""

from __future__ import annotations

import json
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from console.alerts_view import (
    NOT_EVALUATED,
    acknowledgeable,
    history_frame,
    rules_frame,
    rules_from_editor,
    state_counts,
    states_frame,
)
from engine.jobs.queue import JobStore
from engine.monitoring import alert_jobs
from engine.monitoring.alerts import (
    SHIPPED_RULES,
    AlertRecord,
    AlertStatus,
    current_states,
    load_rules,
    parse_rules,
    rules_path,
    save_rules,
)
from engine.monitoring.events import record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.store.opsdb import open_ops_db
from tests.support.actors import ADMIN, OPERATOR, VIEWER
from tests.support.console_env import as_shown
from tests.support.monitoring_data import make_run

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
PAGE = "pages/alerts.py"


def shipped_rules():
    return parse_rules(json.loads(SHIPPED_RULES.read_text()))


def _rec(rule_id, state, ack=None):
    return AlertRecord(rule_id, AlertStatus(state), 1.0, f"{state} because", 0.5, 30, 2.0, acknowledged_by=ack)


def test_states_frame_lists_every_rule_worst_first_and_marks_never_evaluated():
    rules = shipped_rules()
    states = {
        "latency-p95": _rec("latency-p95", "ok"),
        "error-rate": _rec("error-rate", "firing"),
        "cost-per-entity": _rec("cost-per-entity", "no_data"),
    }
    frame = states_frame(rules, states)
    assert list(frame["rule"])[:3] == ["error-rate", "cost-per-entity", "latency-p95"]
    assert frame["state"].iloc[0] == "firing" and frame["value"].iloc[0] == "50.0%"
    assert frame["state"].iloc[1] == "no data"  # a state in words, never its internal name
    never = frame[frame["state"] == NOT_EVALUATED]
    assert sorted(never["rule"]) == ["actionable-rate", "cost-increase-vs-old"]
    counts = state_counts(rules, states)
    assert counts == {"firing": 1, "pending": 0, "no_data": 1, "resolved": 0, "ok": 1, NOT_EVALUATED: 2}
    assert acknowledgeable(states | {"x": _rec("x", "pending", ack="someone")}) == ["error-rate"]


def test_rules_round_trip_through_the_editor_frame():
    rules = shipped_rules()
    frame = rules_frame(rules)
    assert parse_rules(rules_from_editor(frame)) == rules
    frame.loc[frame["id"] == "error-rate", "threshold"] = 0.2
    frame["min_sample"] = frame["min_sample"].astype(float)  # what an edited number column can come back as
    edited = {r.id: r for r in parse_rules(rules_from_editor(frame))}
    assert edited["error-rate"].threshold == 0.2 and edited["error-rate"].min_sample == 20


def test_history_frame_formats_values_in_the_rules_unit():
    rules = shipped_rules()
    frame = history_frame(
        [
            {
                "rule_id": "error-rate",
                "at": 1.0,
                "from_state": None,
                "to_state": "pending",
                "value": 0.25,
                "sample": 30,
                "reason": "r",
            }
        ],
        rules,
    )
    assert frame.iloc[0]["value"] == "25.0%" and frame.iloc[0]["from"] == "first evaluation"
    assert frame.iloc[0]["at (UTC)"] == "1970-01-01 00:00:01"


def test_states_frame_has_no_missing_cells_and_puts_acknowledgement_and_runbook_first():
    """Never "None" in an alert row; "acknowledged by" and "runbook" among the first columns (on screen at
    1400 px, no horizontal scrolling); the latency rule named as the run latency, its window in words."""
    rules = shipped_rules()
    frame = states_frame(rules, {"error-rate": _rec("error-rate", "firing", ack="console:ana")})
    columns = list(frame.columns)
    assert columns.index("acknowledged by") < 4 and columns.index("runbook") < 5, columns
    text = frame.astype(str).to_string()
    for raw in ("None", "nan", "NaT", "no_data", "latency_p95_s", "error_rate"):
        assert raw not in text, raw
    never = frame.set_index("rule").loc["latency-p95"]
    assert never["value"] == never["since (UTC)"] == never["acknowledged by"] == never["sample (runs)"] == "—"
    assert never["condition"] == "p95 run latency (evidence + engine) > 30.00s over the last hour"
    assert never["name"] == "p95 run latency (evidence + engine)"
    assert frame.set_index("rule").loc["error-rate", "acknowledged by"] == "console:ana"


# --------------------------------------------------------------------------- the page


def open_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _states_table(at):
    return next(d.value for d in at.dataframe if "condition" in d.value.columns)


def _breaching(settings):
    """Error-rate rule firing at once on 2 runs; three runs with half their hops errored."""
    save_rules(
        settings,
        [r.to_json() | ({"hold": "0s", "min_sample": 2} if r.id == "error-rate" else {}) for r in load_rules(settings)],
        ops=open_ops_db(settings),
        actor=ADMIN,
    )
    record_runs(
        open_ops_db(settings),
        [make_run(f"e{i}", hops=4, errors=("timeout",) * 2) for i in range(3)],
        run_id="t",
        clock=lambda: time.time() - 30,
        log=JsonlLog.for_settings(settings),
    )


def test_before_any_evaluation_every_rule_is_listed_as_not_evaluated(console_env):
    at = open_page()
    assert at.title[0].value == "Alerts"
    table = _states_table(at)
    assert len(table) == 5 and set(table["state"]) == {NOT_EVALUATED}
    assert any("periodic evaluation is off" in c.value for c in at.caption)
    assert any("No state transition" in i.value for i in at.info)


def test_evaluate_now_then_acknowledge_is_audited(console_env):
    _breaching(console_env)
    at = open_page()
    at.button(key="evaluate_now").click().run()
    assert not at.exception
    shown = [as_shown(s.value) for s in at.success] + [as_shown(e.value) for e in at.error]
    assert any("evaluated 5 rules" in text and "1 firing" in text for text in shown), shown
    table = _states_table(at).set_index("rule")
    assert table.loc["error-rate", "state"] == "firing"
    assert table.loc["actionable-rate", "state"] == "no data"  # 3 runs < minimum 50: not ok
    assert "error rate 50.0% > 10.0%" in table.loc["error-rate", "reason"]  # the figure's name, not error_rate
    history = next(d.value for d in at.dataframe if "to" in d.value.columns)
    assert ("error-rate", "firing") in set(zip(history["rule"], history["to"]))
    assert [b.proto.label for b in at.get("download_button")] == ["Download history (CSV)"]
    # acknowledge: recorded under the tab's one identity (console.identity: ``local`` with sign-in off)
    assert at.selectbox(key="ack_rule").value == "error-rate"
    at.text_input(key="ack_note").input("checking the evaluator")
    next(b for b in at.button if b.label == "Acknowledge").click().run()
    assert not at.exception
    assert any("acknowledged error-rate as local" in as_shown(s.value) for s in at.success)
    ops = open_ops_db(console_env)
    assert current_states(ops)["error-rate"].acknowledged_by == "local"
    audit = ops.list_audit(action="alert.acknowledge")
    assert audit and (audit[0]["actor"], audit[0]["actor_verified_by"]) == ("local", "local")
    assert not [w for w in at.selectbox if w.key == "ack_rule"]  # nothing left to acknowledge


def test_buttons_the_role_may_not_use_are_disabled_with_the_role_they_need(console_env, monkeypatch):
    """A viewer may look but not evaluate; an operator may evaluate but not edit the rules (an approver's)."""
    monkeypatch.setattr("console.identity.actor", lambda: VIEWER)
    at = open_page()
    for key in ("evaluate_now", "evaluator_start", "rules_save"):
        assert at.button(key=key).disabled, key
    assert at.button(key="evaluate_now").proto.help == "needs operator"
    assert at.button(key="rules_save").proto.help == "needs approver"
    monkeypatch.setattr("console.identity.actor", lambda: OPERATOR)
    at = open_page()
    assert not at.button(key="evaluate_now").disabled and not at.button(key="evaluator_start").disabled
    assert at.button(key="rules_save").disabled and at.button(key="rules_save").proto.help == "needs approver"
    at.button(key="evaluate_now").click().run()
    assert not at.exception and any("evaluated 5 rules" in as_shown(s.value) for s in at.success)
    assert open_ops_db(console_env).list_audit(action="alert_rules.save") == []


def test_threshold_edit_is_validated_and_saved(console_env):
    at = open_page()
    assert not rules_path(console_env).exists()
    # a bad threshold (a rate above 1) is refused, naming the rule and the field; nothing is written
    at.session_state["rules_editor"] = {"edited_rows": {0: {"threshold": 5.0}}, "added_rows": [], "deleted_rows": []}
    next(b for b in at.button if b.label == "Save rules").click().run()
    assert not at.exception
    errors = [as_shown(e.value) for e in at.error]
    assert any("Not saved" in e and "error-rate" in e and "threshold" in e for e in errors), errors
    assert not rules_path(console_env).exists()
    # a valid edit is saved to the data dir and audited
    at.session_state["rules_editor"] = {
        "edited_rows": {0: {"threshold": 0.2, "hold": "1m"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    next(b for b in at.button if b.label == "Save rules").click().run()
    assert not at.exception
    assert any("changed: error-rate" in as_shown(s.value) for s in at.success), [s.value for s in at.success]
    saved = {r.id: r for r in load_rules(console_env)}
    assert saved["error-rate"].threshold == 0.2 and saved["error-rate"].hold_s == 60
    assert open_ops_db(console_env).list_audit(action="alert_rules.save")


def _save(at, edits):
    at.session_state["rules_editor"] = {"edited_rows": edits, "added_rows": [], "deleted_rows": []}
    next(b for b in at.button if b.label == "Save rules").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_saving_unchanged_rules_writes_nothing_and_says_no_change(console_env):
    at = _save(open_page(), {})
    assert any("no change" in as_shown(i.value) for i in at.info), [i.value for i in at.info]
    assert not rules_path(console_env).exists()  # no copy of the shipped defaults
    assert not open_ops_db(console_env).list_audit(action="alert_rules.save")
    # an edit that sets a value to what it already is is no change either
    at = _save(at, {0: {"threshold": 0.1}})
    assert any("no change" in as_shown(i.value) for i in at.info)
    assert not rules_path(console_env).exists()


def test_a_threshold_edit_shows_the_new_rules_state_at_once(console_env):
    """The edited rule is re-evaluated when saved: its row shows the new rule's state, not the old one."""
    _breaching(console_env)
    at = open_page()
    at.button(key="evaluate_now").click().run()
    assert _states_table(at).set_index("rule").loc["error-rate", "state"] == "firing"
    row = next(i for i, r in enumerate(rules_frame(load_rules(console_env)).itertuples()) if r.id == "error-rate")
    at = _save(at, {row: {"threshold": 0.9}})  # 50% errored is below 90%: no longer breaching
    shown = [as_shown(s.value) for s in at.success]
    assert any("changed: error-rate" in t and "error-rate is now resolved" in t for t in shown), shown
    table = _states_table(at).set_index("rule")
    assert table.loc["error-rate", "state"] == "resolved"
    assert "> 90.0%" in table.loc["error-rate", "condition"]
    assert current_states(open_ops_db(console_env))["error-rate"].state is AlertStatus.RESOLVED


def test_the_evaluator_line_and_its_button_agree(console_env):
    """Off: the line says so and the button is Start; once a job is active: Stop, and never "is off"."""
    at = open_page()
    assert any("periodic evaluation is off" in c.value for c in at.caption)
    assert [b.key for b in at.button if b.key in ("evaluator_start", "evaluator_stop")] == ["evaluator_start"]
    ops = open_ops_db(console_env)
    job, started = alert_jobs.start_evaluator(console_env, ops, interval="1m", actor=ADMIN, launch=lambda *a: 0)
    assert started
    at = open_page()
    assert [b.key for b in at.button if b.key in ("evaluator_start", "evaluator_stop")] == ["evaluator_stop"]
    assert not any("evaluation is off" in c.value for c in at.caption)  # the sidebar says sign-in is off
    # Stop: its outcome is shown in the same run, and the button shows the stop is on its way
    at.button(key="evaluator_stop").click().run()
    assert not at.exception
    assert any(f"stop requested for job {job.id}" in as_shown(s.value) for s in at.success)
    line = next(c.value for c in at.caption if "periodic evaluation" in c.value)
    buttons = [b for b in at.button if b.key in ("evaluator_start", "evaluator_stop")]
    if JobStore(ops).get(job.id).state.is_active():  # a worker would stop at its next heartbeat
        assert "stopping" in line and buttons[0].key == "evaluator_stop" and buttons[0].disabled, line
    else:  # a job no worker had taken is cancelled at once
        assert "is off" in line and buttons[0].key == "evaluator_start", line


def test_alert_page_text_has_no_raw_values(console_env):
    """No "None"/"nan"/"inf" and no internal snake_case name (a state, a metric) anywhere on the page."""
    import re

    _breaching(console_env)
    at = open_page()
    at.button(key="evaluate_now").click().run()
    raw = re.compile(r"\b(None|nan|NaN|NaT|inf|Infinity)\b|\b[a-z]+_[a-z_]+\b")
    texts = [as_shown(e.value) for e in (*at.caption, *at.success, *at.info, *at.markdown)]
    texts += [str(m.label) for m in at.metric]
    texts += [str(v) for d in at.dataframe for c in d.value.columns for v in d.value[c].tolist()]
    # (column headers are relabelled by column_config; material icon names are drawn as icons)
    texts = [re.sub(r":material/[a-z_]+:", "", t) for t in texts]
    found = [(m.group(0), t[:100]) for t in texts for m in raw.finditer(t)]
    found = [(w, t) for w, t in found if f"{w}.json" not in t]  # the rules file's path in the caption
    assert not found, found[:10]
