"""The Production page in headless Debian Chromium: start the scheduler from the page, watch its visits and spend
advance by themselves (the page's polling fragment, which only a browser exercises), then pause it.

A real `streamlit run` against a temp data dir seeded with 200 demo entities; Start launches a real worker process.
"""

from __future__ import annotations

import re
import time

import pytest

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.settings import load_settings
from engine.jobs.queue import JobState, JobStore, wait_for
from engine.production.control import production_status, stop_production
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.actors import ADMIN
from tests.support.browser_harness import browser_page, chromium, console_server, open_console, wait_for_run  # noqa: F401

pytestmark = pytest.mark.browser

N_ENTITIES = 200
WATCH_S = 120.0


@pytest.fixture(scope="module")
def console_data_dir(tmp_path_factory):
    """Overrides the harness's empty data dir: 200 entities seeded before the console starts."""
    data_dir = tmp_path_factory.mktemp("browser-production")
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
        store = JobStore(ops)
        for job in store.list(kind="production", limit=20):
            if not job.state.is_terminal():
                try:
                    stop_production(ops, ADMIN)
                except Exception:  # noqa: BLE001 - already stopping
                    pass
                wait_for(
                    store, job.id, until=lambda j: j.state.is_terminal() or j.state is JobState.DEAD, timeout_s=WATCH_S
                )
        graph.close()


def button(page, key: str):
    wait_for_run(page)
    locator = page.locator(f".st-key-{key} button:visible")
    deadline = time.monotonic() + 30
    while locator.count() != 1 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    return locator


def progress_text(page) -> str:
    bar = page.locator('[data-testid="stProgress"]')
    return bar.first.inner_text().strip() if bar.count() else ""


def visits_tile(page) -> str:
    tile = page.locator('[data-testid="stMetric"]').filter(has_text="Visits today")
    return tile.first.locator('[data-testid="stMetricValue"]').inner_text().strip() if tile.count() else ""


def test_start_from_the_page_watch_visits_and_spend_advance_then_pause(console_server, browser_page, stores):
    _, graph, ops = stores
    page = open_console(browser_page, console_server.url)
    page.get_by_role("link", name="Production").click()
    page.wait_for_url(re.compile(r".*/production(\?.*)?$"))
    page.get_by_role("heading", name="Production", exact=True).wait_for()
    page.locator('[data-testid="stProgress"]').first.wait_for()
    assert progress_text(page).startswith("Spent today: $0.00"), progress_text(page)

    # one entity per batch: the visits come in over many batches, so the page has something to follow
    batch = page.locator(".st-key-production_batch_size input")
    batch.fill("1")
    batch.press("Enter")
    wait_for_run(page)
    button(page, "production_start").click()
    page.get_by_text(re.compile(r"Start: production scheduler \d+ started \(\$100\.00 a day")).wait_for()

    seen_spend: list[str] = []
    seen_visits: list[str] = []
    deadline = time.monotonic() + WATCH_S
    while len(seen_spend) < 3 or len(seen_visits) < 3:
        assert time.monotonic() < deadline, f"spend/visits did not advance: {seen_spend} {seen_visits}"
        spend, visits = progress_text(page), visits_tile(page)
        if spend and (not seen_spend or spend != seen_spend[-1]):
            seen_spend.append(spend)
        if visits and (not seen_visits or visits != seen_visits[-1]):
            seen_visits.append(visits)
        page.wait_for_timeout(200)  # sampling what the page shows, not pacing the worker
    counts = [int(v.replace(",", "")) for v in seen_visits]
    assert counts == sorted(counts) and counts[-1] > counts[0], seen_visits
    assert all(re.match(r"Spent today: \$[\d,.]+ of \$100\.00", s) for s in seen_spend[1:]), seen_spend

    button(page, "production_pause").click()
    page.get_by_text("Pause: the scheduler stops after its batch").wait_for()
    job = JobStore(ops).list(kind="production")[0]
    wait_for(JobStore(ops), job.id, until=lambda j: j.state is JobState.PAUSED, timeout_s=WATCH_S)
    page.get_by_text("paused", exact=True).wait_for()
    st = production_status(ops, graph)
    assert st.summary.visits >= counts[-1] and st.summary.spent_usd <= 100.0
    n = st.summary.visits
    page.wait_for_timeout(3000)  # a paused scheduler visits nothing more
    assert production_status(ops, graph).summary.visits == n
