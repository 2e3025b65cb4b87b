"""Alert rules: one test per state transition (fake clock), measuring, rule files, evaluation and acknowledgement."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from engine.core.errors import ConfigError
from engine.monitoring.alerts import (
    SHIPPED_RULES,
    AlertRule,
    AlertState,
    AlertStatus,
    Measurement,
    Metric,
    Severity,
    acknowledge,
    current_states,
    evaluate_alerts,
    history,
    load_rules,
    load_rules_file,
    measure,
    parse_rules,
    reset_rules,
    rules_path,
    save_rules,
    step,
)
from engine.monitoring.events import record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.monitoring.windows import summarize_events
from tests.support.actors import APPROVER, OPERATOR, person
from tests.support.monitoring_data import FakeClock, make_event, make_run

T0 = 1_800_000_000.0
OK, PENDING, FIRING, RESOLVED, NO_DATA = (
    AlertStatus.OK,
    AlertStatus.PENDING,
    AlertStatus.FIRING,
    AlertStatus.RESOLVED,
    AlertStatus.NO_DATA,
)

RULE = AlertRule(
    id="error-rate",
    name="Error rate",
    metric=Metric.ERROR_RATE,
    op=">",
    threshold=0.10,
    hold_s=300,
    min_sample=20,
    severity=Severity.CRITICAL,
    window_s=3600,
    runbook="check the evidence source",
)
HIGH = Measurement(0.25, 50)
LOW = Measurement(0.02, 50)
FEW = Measurement(0.25, 5)
NONE = Measurement(None, 0, "no runs in the window")


def at(state: AlertStatus, since: float = T0) -> AlertState:
    return AlertState(state, since, "previous")


# --------------------------------------------------------------------------- transitions, one per test


def test_first_evaluation_without_data_is_no_data():
    s = step(RULE, None, NONE, T0)
    assert (s.state, s.since) == (NO_DATA, T0)
    assert "no runs in the window" in s.reason


def test_sample_below_minimum_is_no_data_not_ok_even_if_clear():
    s = step(RULE, at(OK), Measurement(0.0, 19), T0 + 60)
    assert s.state is NO_DATA
    assert "sample 19 < minimum 20" in s.reason


def test_sample_below_minimum_is_no_data_not_firing_even_if_breaching():
    assert step(RULE, at(OK), FEW, T0 + 60).state is NO_DATA


def test_firing_without_data_becomes_no_data():
    s = step(RULE, at(FIRING), NONE, T0 + 60)
    assert (s.state, s.since) == (NO_DATA, T0 + 60)


def test_no_data_that_stays_no_data_keeps_its_since():
    s = step(RULE, at(NO_DATA, T0), NONE, T0 + 600)
    assert (s.state, s.since) == (NO_DATA, T0)


def test_first_evaluation_clear_is_ok():
    assert step(RULE, None, LOW, T0) == AlertState(OK, T0, step(RULE, None, LOW, T0).reason, 0.02, 50)


def test_ok_that_stays_clear_keeps_its_since():
    s = step(RULE, at(OK, T0), LOW, T0 + 600)
    assert (s.state, s.since) == (OK, T0)


def test_no_data_then_clear_is_ok():
    assert step(RULE, at(NO_DATA), LOW, T0 + 60).state is OK


def test_ok_breaching_goes_pending_not_firing():
    s = step(RULE, at(OK), HIGH, T0 + 60)
    assert (s.state, s.since) == (PENDING, T0 + 60)
    assert "fires after 300s" in s.reason


def test_no_data_breaching_goes_pending():
    assert step(RULE, at(NO_DATA), HIGH, T0 + 60).state is PENDING


def test_breach_with_zero_hold_fires_at_once():
    s = step(replace(RULE, hold_s=0), at(OK), HIGH, T0 + 60)
    assert (s.state, s.since) == (FIRING, T0 + 60)


def test_pending_within_hold_stays_pending_and_keeps_since():
    s = step(RULE, at(PENDING, T0), HIGH, T0 + 299)
    assert (s.state, s.since) == (PENDING, T0)
    assert "299s < hold 300s" in s.reason


def test_pending_for_the_hold_time_fires():
    s = step(RULE, at(PENDING, T0), HIGH, T0 + 300)
    assert (s.state, s.since) == (FIRING, T0 + 300)
    assert "300s >= hold 300s" in s.reason


def test_pending_that_clears_goes_back_to_ok():
    s = step(RULE, at(PENDING, T0), LOW, T0 + 120)
    assert (s.state, s.since) == (OK, T0 + 120)


def test_firing_that_still_breaches_stays_firing_and_keeps_since():
    s = step(RULE, at(FIRING, T0), HIGH, T0 + 3600)
    assert (s.state, s.since) == (FIRING, T0)


def test_firing_that_clears_is_resolved():
    s = step(RULE, at(FIRING, T0), LOW, T0 + 60)
    assert (s.state, s.since) == (RESOLVED, T0 + 60)


def test_resolved_within_hold_stays_resolved():
    s = step(RULE, at(RESOLVED, T0), LOW, T0 + 100)
    assert (s.state, s.since) == (RESOLVED, T0)


def test_resolved_clear_for_the_hold_time_is_ok():
    s = step(RULE, at(RESOLVED, T0), LOW, T0 + 300)
    assert (s.state, s.since) == (OK, T0 + 300)


def test_resolved_that_breaches_again_restarts_the_hold():
    s = step(RULE, at(RESOLVED, T0), HIGH, T0 + 100)
    assert (s.state, s.since) == (PENDING, T0 + 100)


def test_less_than_rule_breaches_below_threshold():
    rule = replace(RULE, metric=Metric.ACTIONABLE_RATE, op="<", threshold=0.30)
    assert step(rule, at(OK), Measurement(0.29, 50), T0).state is PENDING
    assert step(rule, at(OK), Measurement(0.30, 50), T0).state is OK


def test_a_flapping_figure_never_fires():
    clock = FakeClock(T0)
    state = None
    for i in range(20):  # breach and clear alternate every 2 minutes; hold is 5 minutes
        state = step(RULE, state, HIGH if i % 2 == 0 else LOW, clock.tick(120))
        assert state.state is not FIRING


def test_a_steady_breach_fires_once_after_the_hold_then_stays():
    clock = FakeClock(T0)
    states = []
    state = None
    for _ in range(10):
        state = step(RULE, state, HIGH, clock.tick(60))
        states.append(state.state)
    assert states[:5] == [PENDING] * 5 and states[5:] == [FIRING] * 5  # fires at the 5th minute after pending


# --------------------------------------------------------------------------- measuring


def _summary(events):
    return summarize_events(events, start=T0 - 3600, end=T0, now=T0)


def test_measure_reads_each_metric_from_the_summary():
    events = [
        make_event(
            system="new",
            cost=0.4,
            hops=10,
            errors=("timeout",) * 2,
            actionable=True,
            evidence_latency_s=5.0,
            engine_time_s=0.0,
        ),
        make_event(system="old", cost=1.0, hops=10, actionable=False, evidence_latency_s=15.0, engine_time_s=0.0),
    ]
    s = _summary(events)
    rule = replace(RULE, min_sample=1)
    assert measure(replace(rule, metric=Metric.ERROR_RATE), s) == Measurement(0.1, 2, "")
    assert measure(replace(rule, metric=Metric.COST_PER_ENTITY), s).value == pytest.approx(0.7)
    assert measure(replace(rule, metric=Metric.ACTIONABLE_RATE), s).value == pytest.approx(0.5)
    assert measure(replace(rule, metric=Metric.LATENCY_P95_S), s).value == 15.0  # nearest rank of [5, 15]
    inc = measure(replace(rule, metric=Metric.COST_INCREASE_PCT), s)
    assert (inc.value, inc.sample) == (pytest.approx(-60.0), 1)
    assert measure(replace(rule, metric=Metric.COST_PER_ENTITY, system="new"), s) == Measurement(0.4, 1, "")


def test_measure_without_runs_is_none_with_a_reason():
    s = _summary([make_event(system="new")])
    m = measure(replace(RULE, metric=Metric.COST_PER_ENTITY, system="old"), s)
    assert m == Measurement(None, 0, "no old runs in the window")
    inc = measure(replace(RULE, metric=Metric.COST_INCREASE_PCT), s)
    assert inc.value is None and inc.sample == 0 and "no old runs" in inc.detail


# --------------------------------------------------------------------------- rule files


def test_shipped_rules_are_the_seed_defaults():
    rules = {r.id: r for r in load_rules_file(SHIPPED_RULES)}
    assert {(r.metric, r.op, r.threshold) for r in rules.values()} == {
        (Metric.ERROR_RATE, ">", 0.10),
        (Metric.COST_PER_ENTITY, ">", 1.00),
        (Metric.ACTIONABLE_RATE, "<", 0.30),
        (Metric.LATENCY_P95_S, ">", 30.0),
        (Metric.COST_INCREASE_PCT, ">", 15.0),
    }
    for r in rules.values():
        assert r.hold_s > 0 and r.min_sample >= 1 and r.runbook and r.window_s > 0


def test_every_bad_field_is_one_line_of_the_error():
    raw = {
        "rules": [
            {
                "id": "x",
                "metric": "latency",
                "op": "=>",
                "threshold": "high",
                "hold": "soon",
                "min_sample": 0,
                "severity": "loud",
                "window": None,
                "system": "both",
                "runbook": "",
                "colour": "red",
            }
        ]
    }
    with pytest.raises(ConfigError) as exc:
        parse_rules(raw)
    text = str(exc.value)
    assert "\n" not in text
    head, _, rest = text.partition(": 10 invalid field(s): ")
    assert head == "alert rules"
    problems = rest.split("; ")
    fields = [problem.split(": ")[1] for problem in problems]
    assert sorted(fields) == sorted(
        ["colour", "metric", "op", "threshold", "hold", "window", "min_sample", "severity", "system", "runbook"]
    )
    assert all(problem.startswith("rule 1 (x): ") for problem in problems)


def test_rate_thresholds_must_be_fractions_and_ids_unique():
    good = json.loads(SHIPPED_RULES.read_text())["rules"][0]
    with pytest.raises(ConfigError) as exc:
        parse_rules([dict(good, threshold=10), good, dict(good)])
    text = str(exc.value)
    assert "rule 1 (error-rate): threshold: got 10 (allowed: a number from 0 to 1): error_rate is a fraction" in text
    assert "rule 3 (error-rate): id: duplicate id 'error-rate'" in text


def test_saved_rules_override_the_shipped_ones_which_stay_untouched(settings, ops):
    shipped_text = SHIPPED_RULES.read_text()
    rules = load_rules(settings)
    edited = [replace(r, threshold=0.2) if r.id == "error-rate" else r for r in rules]
    alice = person(ops, "alice@example.com", "approver")
    save_rules(settings, edited, ops=ops, actor=alice)
    assert SHIPPED_RULES.read_text() == shipped_text
    assert rules_path(settings).exists()
    again = {r.id: r for r in load_rules(settings)}
    assert again["error-rate"].threshold == 0.2
    assert [r.id for r in load_rules(settings)] == [r.id for r in rules]
    assert load_rules(settings) == edited
    (entry,) = ops.list_audit(action="alert_rules.save")
    assert (entry["actor"], entry["actor_email"], entry["actor_role"]) == (
        "alice@example.com",
        "alice@example.com",
        "approver",
    )
    assert reset_rules(settings, ops=ops, actor=alice) is True
    assert load_rules(settings) == rules


def test_saving_invalid_rules_writes_nothing(settings, ops):
    raw = [r.to_json() for r in load_rules(settings)]
    raw[1]["threshold"] = -1
    with pytest.raises(ConfigError, match="cost-per-entity"):
        save_rules(settings, raw, ops=ops, actor=APPROVER)
    assert not rules_path(settings).exists()


def test_a_corrupt_rules_file_is_a_config_error(settings):
    rules_path(settings).write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_rules(settings)


@pytest.mark.parametrize(
    "rule, change, says",
    [
        (0, {"threshold": float("nan")}, "rule 1 (error-rate): threshold: got nan (allowed: a number from 0 to 1)"),
        (
            1,
            {"threshold": float("inf")},
            "rule 2 (cost-per-entity): threshold: got inf (allowed: a number from 0 to 1,000,000)",
        ),
        (1, {"threshold": 10**400}, "threshold: got an integer of 401 digits"),
        (0, {"threshold": True}, "threshold: got True"),
        (
            0,
            {"hold": float("inf")},
            "rule 1 (error-rate): hold: got inf (allowed: a duration like 5m, 1h or 24h, or 0s, at most 366d)",
        ),
        (0, {"hold": "9999d"}, "hold: got '9999d'"),
        (0, {"hold": 10**400}, "hold: got an integer of 401 digits"),
        (
            0,
            {"window": float("nan")},
            "rule 1 (error-rate): window: got nan (allowed: a duration like 5m, 1h or 24h, at most 366d)",
        ),
        (0, {"window": "9" * 400 + "s"}, "window: got '999"),
        (0, {"window": 0}, "window: got 0"),
        (
            0,
            {"min_sample": 10**300},
            "min_sample: got an integer of 301 digits (allowed: a whole number from 1 to 1,000,000)",
        ),
        (0, {"min_sample": 2.5}, "min_sample: got 2.5"),
        (0, {"id": "two\nlines"}, "rule 1: id: required, a non-empty line"),
    ],
)
def test_case_9_rule_numbers_are_finite_and_bounded_with_a_one_line_error(rule, change, says):
    """case 9 (every input bounded): a NaN threshold compares false forever (a rule that never fires), an infinite
    hold or window never elapses; each is refused in one line naming the rule, the field and what is allowed."""
    raw = json.loads(SHIPPED_RULES.read_text())["rules"]
    raw[rule].update(change)
    with pytest.raises(ConfigError) as exc:
        parse_rules(raw)
    assert "\n" not in str(exc.value) and says in str(exc.value), str(exc.value)


def test_rule_durations_may_be_seconds_and_the_bounds_themselves():
    raw = json.loads(SHIPPED_RULES.read_text())["rules"][:1]
    raw[0].update(hold=0, window=366 * 86400, min_sample=1_000_000, threshold=1)
    (rule,) = parse_rules(raw)
    assert (rule.hold_s, rule.window_s, rule.min_sample, rule.threshold) == (0.0, 366 * 86400.0, 1_000_000, 1.0)


@pytest.mark.parametrize(
    "content, says",
    [
        (None, "is a directory, not a file"),
        ('{"rules": ["caf\u00e9"]}'.encode("latin-1"), "is not UTF-8 text"),
        (('{"rules": [' + "9" * 5000 + "]}").encode(), "holds a number with thousands of digits"),
    ],
    ids=["directory", "latin-1", "5000-digits"],
)
def test_case_9_a_rules_file_that_cannot_be_read_is_one_line(settings, content, says):
    """case 9: the data dir's alert_rules.json is a directory, is not UTF-8, or holds a number too long to parse."""
    path = rules_path(settings)
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as exc:
        load_rules(settings)
    assert "\n" not in str(exc.value) and f"alert rules file {path} " in str(exc.value) and says in str(exc.value)


# --------------------------------------------------------------------------- evaluation against the store


def _fast_rule(**kw):
    return replace(RULE, **{"min_sample": 3, "hold_s": 120, "window_s": 600, **kw})


def test_evaluate_persists_states_and_only_transitions_in_history(ops, settings):
    log = JsonlLog.for_settings(settings)
    clock = FakeClock(T0)
    rule = _fast_rule()
    evaluate_alerts(ops, [rule], clock())  # no runs yet
    assert current_states(ops)["error-rate"].state is NO_DATA

    record_runs(
        ops, [make_run(f"e{i}", hops=4, errors=("timeout",)) for i in range(3)], run_id="r", clock=clock, log=log
    )  # error rate 25%
    for minutes in (1, 2, 3, 4):
        (ev,) = evaluate_alerts(ops, [rule], T0 + 60 * minutes)
    assert ev.current.state is FIRING  # pending at +1 min, firing at +3 min (held 120 s)
    states = current_states(ops)["error-rate"]
    assert (states.state, states.since, states.sample) == (FIRING, T0 + 180, 3)
    assert states.value == pytest.approx(0.25)

    # the runs age out of the 10-minute window: resolved is not reached, data is missing instead
    evaluate_alerts(ops, [rule], T0 + 700)
    trail = [(h["from_state"], h["to_state"]) for h in reversed(history(ops))]
    assert trail == [(None, "no_data"), ("no_data", "pending"), ("pending", "firing"), ("firing", "no_data")]


def test_evaluate_resolves_when_fresh_runs_are_clean(ops, settings):
    log = JsonlLog.for_settings(settings)
    clock = FakeClock(T0)
    rule = _fast_rule(hold_s=0)
    record_runs(ops, [make_run(f"e{i}", errors=("timeout",) * 4) for i in range(3)], run_id="bad", clock=clock, log=log)
    assert evaluate_alerts(ops, [rule], clock.tick(1))[0].current.state is FIRING
    clock.tick(601)
    record_runs(ops, [make_run(f"c{i}") for i in range(3)], run_id="good", clock=clock, log=log)
    assert evaluate_alerts(ops, [rule], clock.tick(1))[0].current.state is RESOLVED
    assert evaluate_alerts(ops, [rule], clock.tick(1))[0].current.state is OK


def test_acknowledge_is_recorded_audited_and_cleared_by_the_next_episode(ops, settings):
    log = JsonlLog.for_settings(settings)
    clock = FakeClock(T0)
    rule = _fast_rule(hold_s=0)
    record_runs(ops, [make_run(f"e{i}", errors=("timeout",) * 4) for i in range(3)], run_id="bad", clock=clock, log=log)
    evaluate_alerts(ops, [rule], clock.tick(1))
    bob = person(ops, "bob@example.com", "operator")
    rec = acknowledge(ops, "error-rate", actor=bob, now=clock.tick(5), note="on it")
    assert (rec.acknowledged_by, rec.ack_note) == ("bob@example.com", "on it")
    assert current_states(ops)["error-rate"].acknowledged
    (entry,) = ops.list_audit(action="alert.acknowledge")
    assert (entry["actor"], entry["target"], entry["details"]["state"]) == ("bob@example.com", "error-rate", "firing")
    assert entry["actor_email"] == "bob@example.com" and entry["actor_verified_by"] == "oidc"

    evaluate_alerts(ops, [rule], clock.tick(1))  # still firing: the acknowledgement holds
    assert current_states(ops)["error-rate"].acknowledged
    evaluate_alerts(ops, [rule], clock.tick(700))  # data gone: a new state needs a new acknowledgement
    assert not current_states(ops)["error-rate"].acknowledged


def test_acknowledging_an_ok_or_unknown_alert_is_refused(ops):
    with pytest.raises(ConfigError, match="evaluate first"):
        acknowledge(ops, "error-rate", actor=OPERATOR, now=T0)
    evaluate_alerts(ops, [_fast_rule()], T0)
    with pytest.raises(ConfigError, match="only pending or firing"):
        acknowledge(ops, "error-rate", actor=OPERATOR, now=T0)
    assert ops.list_audit(action="alert.acknowledge") == []


def test_evaluate_measures_each_rule_on_its_own_window(ops, settings):
    log = JsonlLog.for_settings(settings)
    clock = FakeClock(T0)
    record_runs(ops, [make_run(f"e{i}", cost=2.0) for i in range(3)], run_id="r", clock=clock, log=log)
    short = replace(RULE, id="short", metric=Metric.COST_PER_ENTITY, threshold=1.0, min_sample=3, window_s=60)
    long = replace(short, id="long", window_s=3600)
    evs = {e.rule.id: e for e in evaluate_alerts(ops, [short, long], T0 + 120)}
    assert evs["short"].current.state is NO_DATA
    assert evs["long"].current.state is PENDING
    assert evs["long"].measurement.value == pytest.approx(2.0)


# --------------------------------------------------------------------------- names and rule edits


def test_figures_and_windows_read_in_words():
    from console.vocab import RUN_LATENCY
    from engine.monitoring.alerts import Metric, window_words

    assert Metric.LATENCY_P95_S.label == f"p95 {RUN_LATENCY}"  # one name with the console's vocabulary
    assert all("_" not in m.label for m in Metric)
    assert [window_words(s) for s in (3600, 21600, 300, 86400, 90, 45.5)] == [
        "the last hour",
        "the last 6 hours",
        "the last 5 minutes",
        "the last day",
        "the last 90 seconds",
        "the last 45.5s",
    ]


def test_update_rules_writes_nothing_when_unchanged_and_reevaluates_what_changed(settings, ops):
    from engine.monitoring.alerts import SHIPPED_RULES, load_rules, rules_path, update_rules

    rules = load_rules(settings)
    unchanged = update_rules(settings, [r.to_json() for r in rules], ops=ops, actor=APPROVER, now=1_000.0)
    assert not unchanged.written and unchanged.changed == [] and unchanged.evaluations == []
    assert not rules_path(settings).exists() and not ops.list_audit(action="alert_rules.save")
    edited = [r.to_json() | ({"threshold": 0.5} if r.id == "error-rate" else {}) for r in rules]
    done = update_rules(settings, edited, ops=ops, actor=APPROVER, now=1_000.0)
    assert done.written and done.changed == ["error-rate"]
    assert [ev.rule.id for ev in done.evaluations] == ["error-rate"]  # the edited rule only, evaluated now
    assert rules_path(settings).exists() and ops.list_audit(action="alert_rules.save")
    assert SHIPPED_RULES.exists()
