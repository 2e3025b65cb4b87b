"""AppTest of the Production page against the real stores and a real worker process: the empty page, the plan
with why each entity is due, Start (a worker visits entities and spends within the budget), Pause, Stop, and a
start refused in one line."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.access import PermissionDenied
from engine.core.settings import load_settings
from engine.jobs.queue import JobState, JobStore, wait_for
from engine.production.control import production_status, start_production, stop_production
from engine.store import falkor
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.actors import ADMIN, OPERATOR, VIEWER
from tests.support.console_env import as_shown

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
PAGE = "pages/production.py"
TIMEOUT = 60
WORKER_TIMEOUT_S = 120.0


@contextmanager
def seeded_console(tmp_path, monkeypatch, n: int = 30):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    monkeypatch.delenv("DISCOVERY_GRAPH", raising=False)
    settings = load_settings().ensure_dirs()
    graph = GraphStore.open(settings)
    ops = open_ops_db(settings)
    try:
        seed_catalogue(graph, n, seed=7, templates=load_templates())
        yield settings, graph, ops
    finally:
        try:
            stop_all(ops)
        finally:
            from console.services import _shared_service, _shared_services

            _shared_service.clear()
            _shared_services.clear()
            graph.close()
            falkor.stop_embedded_server(settings)


def stop_all(ops) -> None:
    store = JobStore(ops)
    for job in store.list(kind="production", limit=20):
        if not job.state.is_terminal():
            try:
                stop_production(ops, ADMIN)
            except Exception:  # noqa: BLE001 - already stopping
                pass
            wait_for(
                store,
                job.id,
                until=lambda j: not j.state.has_worker() and j.state.value != "queued",
                timeout_s=WORKER_TIMEOUT_S,
            )


@pytest.fixture
def console(tmp_path, monkeypatch):
    with seeded_console(tmp_path, monkeypatch) as stores:
        yield stores


def open_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def buttons(at: AppTest) -> dict[str, bool]:
    return {b.key: not b.disabled for b in at.button if b.key}


def flashes(at: AppTest) -> tuple[list[str], list[str]]:
    return [as_shown(s.value) for s in at.success], [as_shown(e.value) for e in at.error]


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_an_operator_starts_with_the_default_budget_and_a_viewer_cannot_start(console, monkeypatch):
    """The budget is an approver's choice: an operator sees its field disabled ("needs approver") and starts
    with the default; a viewer sees Start disabled ("needs operator"), and the engine refuses both anyway."""
    monkeypatch.setattr("console.identity.actor", lambda: OPERATOR)
    at = open_page()
    budget = at.number_input(key="production_budget")
    assert budget.disabled and "needs approver" in budget.proto.help
    assert buttons(at)["production_start"]
    monkeypatch.setattr("console.identity.actor", lambda: VIEWER)
    at = open_page()
    assert not buttons(at)["production_start"] and at.button(key="production_start").proto.help == "needs operator"
    _, _, ops = console
    with pytest.raises(PermissionDenied, match="production.budget needs the approver role"):
        start_production(load_settings(), ops, budget_usd=5.0, actor=OPERATOR, launch=False)
    assert ops.list_audit(action="production.start") == []


def test_empty_page_shows_not_started_the_start_form_and_the_plan(console):
    at = open_page()
    assert at.title[0].value == "Production"
    assert any("not started" in m.value for m in at.markdown)
    assert buttons(at) == {
        "production_pause": False,
        "production_resume": False,
        "production_stop": False,
        "production_start": True,
    }
    assert metric(at, "Due") == "30" and metric(at, "Visits today") == "0" and metric(at, "Budget today") == "—"
    plan = next(df.value for df in at.dataframe if "EIG per $" in df.value.columns)
    assert len(plan) == 20 and set(plan["why"]) == {"new"} and list(plan["#"]) == list(range(1, 21))
    assert list(plan["EIG per $"]) == sorted(plan["EIG per $"], reverse=True)  # new ones by EIG per dollar
    assert any("First: new: never visited" in as_shown(c.value) for c in at.caption), [c.value for c in at.caption]


def test_start_from_the_page_visits_within_the_budget_then_pause_and_stop(console):
    _, graph, ops = console
    at = open_page()
    at.number_input(key="production_budget").set_value(2.0)
    at.number_input(key="production_batch_size").set_value(2)
    at.button(key="production_start").click().run()
    ok, errors = flashes(at)
    assert not errors and ok and ok[0].startswith("Start: production scheduler 1 started ($2.00 a day;")
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while production_status(ops, graph).summary.visits < 2:
        assert time.monotonic() < deadline, "no visit within the timeout"
        time.sleep(0.3)  # polling a real worker process, not pacing the test
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    st = production_status(ops, graph)
    assert st.run["actor"] == "local"
    assert int(metric(at, "Visits today").replace(",", "")) >= 2
    bars = [as_shown(p.proto.text) for p in at.get("progress")]
    assert any("of $2.00" in t for t in bars), bars
    assert buttons(at)["production_pause"] and not buttons(at)["production_start"]
    at.button(key="production_pause").click().run()
    ok, errors = flashes(at)
    assert not errors and ok == ["Pause: the scheduler stops after its batch"]
    job = wait_for(JobStore(ops), st.job.id, until=lambda j: j.state is JobState.PAUSED, timeout_s=WORKER_TIMEOUT_S)
    assert job.state is JobState.PAUSED
    at.run()
    assert buttons(at)["production_resume"] and not buttons(at)["production_pause"]
    assert production_status(ops, graph).summary.spent_usd <= 2.0
    at.button(key="production_stop").click().run()
    job = wait_for(JobStore(ops), st.job.id, until=lambda j: j.state.is_terminal(), timeout_s=WORKER_TIMEOUT_S)
    assert job.state is JobState.CANCELLED
    actions = {a["action"]: a["actor"] for a in ops.list_audit(20)}
    assert actions["production.start"] == actions["production.pause"] == "local"


def test_a_bad_refresh_policy_is_refused_in_one_line_and_starts_nothing(console):
    _, _, ops = console
    at = open_page()
    at.number_input(key="production_min_age_h").set_value(48.0)
    at.number_input(key="production_max_age_h").set_value(24.0)
    at.button(key="production_start").click().run()
    ok, errors = flashes(at)
    assert not ok and len(errors) == 1 and errors[0].startswith("Start: refresh policy: the maximum age")
    assert JobStore(ops).list(kind="production") == []
