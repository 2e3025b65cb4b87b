"""AppTest of the Rollout page's Start form on other evidence (issue 13): the fields each evidence choice needs,
the one-line refusals of a bad URL or a missing replay file, the cost estimate of an HTTP evaluator run and the
tick that must confirm it above the budget, and the run header naming the run's source, pace and estimate.

The HTTP runs here point at a loopback port nothing listens on: the start never contacts the evaluator, and the
worker it launches pauses on the fault until the fixture's teardown cancels it.
"""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from engine import rollout
from engine.discovery.limits import DEFAULT_BUDGET_USD
from tests.pages.test_rollout_page import flashes, markdown, open_page, seeded_console, start
from tests.support.browser_harness import free_port
from tests.support.console_env import as_shown


@pytest.fixture
def console(tmp_path, monkeypatch):
    with seeded_console(tmp_path, monkeypatch, 7) as stores:
        yield stores


def captions(at: AppTest) -> list[str]:
    return [as_shown(c.value) for c in at.caption]


def keys(at: AppTest) -> set[str]:
    """Keys of the widgets drawn now."""
    widgets = [*at.text_input, *at.number_input, *at.checkbox, *at.radio, *at.selectbox]
    return {w.key for w in widgets if w.key}


def choose_http(at: AppTest, url: str) -> AppTest:
    at.radio(key="rollout_evidence").set_value("http").run()
    at.text_input(key="rollout_evaluator_url").input(url).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_each_evidence_choice_shows_the_fields_it_needs(console):
    at = open_page()
    evidence = at.radio(key="rollout_evidence")
    assert evidence.options == ["Simulated world", "Replay file", "HTTP evaluator"]
    assert evidence.value == "world"  # the free, seeded source by default
    pace = {"rollout_in_flight", "rollout_max_hops_per_s", "rollout_max_in_flight"}
    assert pace <= keys(at)
    source_fields = {"rollout_evaluator_url", "rollout_evaluator_timeout", "rollout_replay_path", "rollout_budget"}
    assert not source_fields & keys(at)
    in_flight = at.number_input(key="rollout_in_flight")
    assert in_flight.value is None  # blank: each stage's setting, which the help names
    assert "pilot 5, limited 10, production 32" in as_shown(in_flight.help)

    at.radio(key="rollout_evidence").set_value("replay").run()
    assert "rollout_replay_path" in keys(at) and "rollout_evaluator_url" not in keys(at)
    assert pace <= keys(at)

    at.radio(key="rollout_evidence").set_value("http").run()
    assert {"rollout_evaluator_url", "rollout_evaluator_timeout", "rollout_budget"} <= keys(at)
    assert "rollout_replay_path" not in keys(at)
    assert at.number_input(key="rollout_evaluator_timeout").value == 30.0
    assert at.number_input(key="rollout_budget").value == DEFAULT_BUDGET_USD
    # the estimate: one row per stage the start goes through (the pilot) and the total
    table = next(df.value for df in at.dataframe if "estimated cost" in df.value.columns)
    assert list(table["stage"]) == ["pilot", "total"]
    assert list(table["entities"]) == ["10", "10"]
    assert any(c.startswith("Estimated cost $") and "within your $25.00 budget" in c for c in captions(at))
    at.selectbox(key="rollout_stage").select("all").run()
    table = next(df.value for df in at.dataframe if "estimated cost" in df.value.columns)
    assert list(table["stage"]) == ["pilot", "limited", "production", "total"]
    assert list(table["entities"]) == ["10", "50", "0", "60"]  # cumulative exposure of the 60 entities


def test_a_bad_url_or_a_missing_replay_file_is_one_line_and_starts_nothing(console, tmp_path):
    _, _, ops = console
    at = choose_http(open_page(), "")
    start(at)
    assert flashes(at)[1] == ["Start: the http evidence source needs a URL: pass --evaluator-url http://host:port/path"]
    at.text_input(key="rollout_evaluator_url").input("ftp://evaluator.example/judge").run()
    start(at)
    [error] = flashes(at)[1]
    assert error.startswith("Start: evaluator URL 'ftp://evaluator.example/judge' is not an http(s) URL")
    at.radio(key="rollout_evidence").set_value("replay").run()
    at.text_input(key="rollout_replay_path").input(str(tmp_path / "missing.jsonl")).run()
    start(at)
    [error] = flashes(at)[1]
    assert error.startswith("Start: ") and "missing.jsonl" in error and "\n" not in error
    assert rollout.list_runs(ops) == []


def test_an_estimate_above_the_budget_is_refused_without_the_tick_and_started_with_it(console):
    _, _, ops = console
    url = f"http://127.0.0.1:{free_port()}/evaluate"
    at = choose_http(open_page(), url)
    at.number_input(key="rollout_in_flight").set_value(3).run()
    at.number_input(key="rollout_max_in_flight").set_value(2).run()
    at.number_input(key="rollout_budget").set_value(0.0).run()
    total = next(df.value for df in at.dataframe if "estimated cost" in df.value.columns).iloc[-1]["estimated cost"]
    assert re.fullmatch(r"\$\d+\.\d\d", total) and total != "$0.00"
    assert any("above your $0.00 budget, so Start needs your confirmation" in c for c in captions(at))
    tick = at.checkbox(key="rollout_cost_ack")
    assert as_shown(tick.label) == f"I confirm the estimated cost of {total}" and tick.value is False

    start(at)  # not ticked: the engine refuses it, in one line with the figure
    [error] = flashes(at)[1]
    assert error.startswith(f"Start: estimated cost {total} on HTTP evaluator {url}") and "above the $0.00" in error
    assert "\n" not in error and rollout.list_runs(ops) == []

    at.checkbox(key="rollout_cost_ack").check()
    at.button(key="rollout_start").click().run()
    ok, errors = flashes(at)
    assert not errors and ok == [f"Start: rollout 1 started (pilot) on HTTP evaluator {url}"]
    assert at.checkbox(key="rollout_cost_ack").value is False  # one tick, one start
    run = rollout.rollout_status(ops, 1).run
    assert run.evidence_spec["kind"] == "http" and run.evidence_spec["url"] == url
    assert run.concurrency == 3 and run.limits["max_in_flight"] == 2
    assert f"${run.cost_estimate['total_usd']:,.2f}" == total

    # the run header names the source, the pace and the estimate recorded at the start
    assert any(m.startswith("### Rollout 1 ") for m in markdown(at))
    shown = captions(at)
    assert f"Evidence: HTTP evaluator {url} · 3 entities in flight, at most 2 requests at once" in shown
    assert f"Estimated at the start: {total} (pilot 10 entities {total})" in shown


def test_a_world_run_header_says_each_stage_sets_its_entities_in_flight(console):
    _, _, ops = console
    at = open_page()
    start(at, dry_run=True)
    ok, errors = flashes(at)
    assert not errors and ok == ["Start: rollout 1 started (pilot)"]
    shown = captions(at)
    assert "Evidence: simulated world (seed 1, virtual time) · entities in flight: each stage's setting" in shown
    assert any(c.startswith("Estimated at the start: $") and "costs nothing real" in c for c in shown)
    assert rollout.rollout_status(ops, 1).run.concurrency is None
