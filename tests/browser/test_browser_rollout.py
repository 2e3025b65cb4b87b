"""The Rollout page in headless Debian Chromium: start a pilot, watch it advance, roll it back (confirmed).

A real `streamlit run` against a temp data dir seeded with 60 demo entities.
The Start button launches a real worker process; the page's polling fragment
(st.fragment(run_every=...)) must show its progress without any click, which
only a browser exercises (AppTest runs fragments once per script run).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from engine import rollout
from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.settings import load_settings
from engine.jobs.queue import JobStore
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.browser_harness import browser_page, chromium, console_server, open_console, wait_for_run  # noqa: F401

pytestmark = pytest.mark.browser

N_ENTITIES = 60
WATCH_S = 120.0


@pytest.fixture(scope="module")
def console_data_dir(tmp_path_factory):
    """Overrides the harness's empty data dir: 60 entities seeded before the console starts."""
    data_dir = tmp_path_factory.mktemp("browser-rollout")
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    with GraphStore.open(settings) as store:
        seed_catalogue(store, N_ENTITIES, seed=7, templates=load_templates())
    return data_dir


@pytest.fixture(scope="module")
def stores(console_data_dir):
    settings = load_settings({"DISCOVERY_DATA_DIR": str(console_data_dir)})
    graph = GraphStore.open(settings)
    ops = open_ops_db(settings)
    try:
        yield settings, graph, ops
    finally:
        for run in rollout.list_runs(ops):  # never leave a worker running into the next module
            if run.state.is_active():
                rollout.cancel(ops, run.id, "test-teardown")
        deadline = time.monotonic() + 60
        while any(j.state.has_worker() for j in JobStore(ops).list(limit=50)) and time.monotonic() < deadline:
            time.sleep(0.2)
        graph.close()


def button(page, key: str):
    """The visible button of widget ``key`` (Streamlit tags a keyed widget's container with class st-key-<key>;
    a button with help text also holds a hidden copy). Waits for the script run to settle first."""
    wait_for_run(page)
    locator = page.locator(f".st-key-{key} button:visible")
    deadline = time.monotonic() + 30
    while locator.count() != 1 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    return locator


def progress_text(page) -> str:
    bar = page.locator('[data-testid="stProgress"]')
    return bar.first.inner_text().strip() if bar.count() else ""


def test_start_a_pilot_watch_it_advance_then_roll_it_back_with_confirmation(console_server, browser_page, stores):
    _, graph, ops = stores
    before = graph.snapshot(graph.list_entity_ids())
    # open the app's root first, then navigate: a fresh server hit on a deep link first runs pages/ in
    # Streamlit's old directory mode (no st.navigation, see the report); operators arrive at the root
    page = open_console(browser_page, console_server.url)
    page.get_by_role("link", name="Rollout").click()
    page.wait_for_url("**/rollout")
    page.get_by_role("heading", name="Rollout", exact=True).wait_for()
    page.get_by_text("No rollout has been started yet").wait_for()

    # Start: a live pilot at real time (time scale 1, the default), so it stays for a person to decide
    page.get_by_label("Stage", exact=True).wait_for()
    page.locator('[data-testid="stFormSubmitButton"] button').click()
    page.get_by_text(re.compile(r"Start: rollout \d+ queued")).wait_for()
    run_id = rollout.list_runs(ops)[0].id

    # progress advances by itself (the fragment polls the worker's checkpoints), up to all 10 pilot entities
    seen: list[str] = []
    deadline = time.monotonic() + WATCH_S
    while "10 of 10 entities" not in (seen[-1] if seen else ""):
        assert time.monotonic() < deadline, f"progress never reached 10 of 10; saw {seen}"
        text = progress_text(page)
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        page.wait_for_timeout(200)  # sampling what the page shows, not pacing the worker
    assert len(seen) >= 2 and seen[0] != seen[-1], seen
    assert seen[-1].startswith("pilot: 10 of 10 entities (100%)")
    state = rollout.rollout_status(ops, run_id).state
    assert state in ("running", "soaking", "inconclusive")
    assert graph.snapshot(graph.list_entity_ids()) != before  # the candidate ran live on the pilot

    # the verdict's criteria and the decision records are on the page
    page.get_by_role("heading", name="Criteria · pilot").wait_for()
    page.get_by_role("heading", name="Decision records").wait_for()

    # the stage report downloads as Markdown under the console's file-name scheme, made from the store
    with page.expect_download() as download:
        button(page, "rollout_report_download").click()
    assert re.fullmatch(rf"discovery-rollout-{run_id}-pilot-\d{{8}}-\d{{4}}\.md", download.value.suggested_filename)
    report = Path(download.value.path()).read_text()
    assert report.startswith(f"# Rollout {run_id} — stage pilot")
    assert "| success | cost_reduction_pct |" in report and "## Decision records" in report

    # Rollback asks first: nothing happens on the first click
    button(page, "rollout_rollback").click()
    page.get_by_text(f"Roll back rollout {run_id}?").wait_for()
    assert rollout.rollout_status(ops, run_id).state not in ("rolling_back", "rolled_back")
    button(page, "rollout_confirm_rollback").click()
    page.get_by_text(re.compile(rf"Rollback: rolled back rollout {run_id}: 10 entities restored")).wait_for(
        timeout=WATCH_S * 1000
    )
    wait_for_run(page)

    status = rollout.rollout_status(ops, run_id)
    assert status.state == "rolled_back" and status.stage("pilot").state == "rolled_back"
    # the page shows the rolled-back state: run header, pilot on the timeline, no second rollback
    page.locator("h3", has_text=f"Rollout {run_id}").filter(has_text="rolled back").wait_for()
    assert button(page, "rollout_rollback").is_disabled()
    assert page.locator('[data-testid="stException"]').count() == 0
    assert graph.snapshot(graph.list_entity_ids()) == before  # the graph is back to the snapshot
