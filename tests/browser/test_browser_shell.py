"""The running console in headless Debian Chromium: the Overview shows the store's counts.

A real `streamlit run` against a temp data dir seeded with 60 demo entities;
Chromium loads it over loopback the way an operator's browser would.
"""

from __future__ import annotations

import re

import pytest

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.settings import load_settings
from engine.store.graph import GraphStore
from tests.support.browser_harness import browser_page, chromium, console_server, open_console, wait_for_run  # noqa: F401

pytestmark = pytest.mark.browser

N_ENTITIES = 60


@pytest.fixture(scope="module")
def console_data_dir(tmp_path_factory):
    """Overrides the harness's empty data dir: 60 entities seeded before the console starts."""
    data_dir = tmp_path_factory.mktemp("browser-shell")
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    with GraphStore.open(settings) as store:
        seed_catalogue(store, N_ENTITIES, seed=11, templates=load_templates())
    return data_dir  # the console attaches to the embedded server started here; the harness stops it


@pytest.fixture(scope="module")
def store_stats(console_data_dir):
    with GraphStore.open(load_settings({"DISCOVERY_DATA_DIR": str(console_data_dir)})) as store:
        return store.stats()


def tiles(page) -> dict[str, int]:
    """Metric tiles on the page: label -> value."""
    found = {}
    for tile in page.locator('[data-testid="stMetric"]').all():
        label = tile.locator('[data-testid="stMetricLabel"]').inner_text().strip()
        value = tile.locator('[data-testid="stMetricValue"]').inner_text().strip()
        found[label] = int(value.replace(",", ""))
    return found


def test_overview_in_chromium_shows_the_stores_counts(console_server, browser_page, store_stats):
    page = open_console(browser_page, console_server.url)
    page.get_by_role("heading", name="Overview", exact=True).wait_for()
    page.locator('[data-testid="stMetric"]').first.wait_for()
    shown = tiles(page)
    assert shown["Entities"] == store_stats.entities == N_ENTITIES
    assert shown["Hypotheses"] == store_stats.hypotheses
    assert shown["Active"] == store_stats.by_status.get("ACTIVE", 0)
    assert shown["Clusters"] == len(store_stats.by_cluster)
    assert shown["Templates"] == len(store_stats.by_template)
    assert page.locator('[data-testid="stException"]').count() == 0
    # the three charts were drawn by vega in the browser
    page.locator('[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg').first.wait_for()
    # the shell's three charts, under their headings (the live-charts slot may add more charts above them)
    for heading in ("Hypotheses by status", "Entities by template", "Top 15 clusters"):
        page.get_by_role("heading", name=heading).wait_for()
    assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 3


def test_navigation_to_hypotheses_and_search(console_server, browser_page, store_stats):
    page = open_console(browser_page, console_server.url)
    page.get_by_role("link", name="Hypotheses").click()
    page.wait_for_url(re.compile(r"/hypotheses(\?.*)?$"))  # the query keeps the operator name
    # exact: the Overview has a "Hypotheses by status" heading that a substring match would find
    page.get_by_role("heading", name="Hypotheses", exact=True).wait_for()
    wait_for_run(page)
    with GraphStore.open(load_settings({"DISCOVERY_DATA_DIR": str(console_server.data_dir)})) as store:
        entity = store.list_entities(limit=1)[0]
    box = page.get_by_label("Find an entity")
    box.fill(entity.id)
    box.press("Enter")
    page.get_by_role("heading", name=entity.name, exact=True).wait_for()
    wait_for_run(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stDataFrame"]').first.is_visible()
