"""The entity view in headless Debian Chromium: search an entity, run discovery, see the hop trail.

A real `streamlit run` against a temp data dir seeded with 15 demo entities;
the run goes through the console into the embedded graph, which the test then
reads to check that what the browser shows is what was written.
"""

from __future__ import annotations

import re

import pytest

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.settings import load_settings
from engine.monitoring.events import query_events
from engine.store.graph import GraphStore
from engine.store.opsdb import OpsDB
from tests.support.browser_harness import browser_page, chromium, console_server, open_console, wait_for_run  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def console_data_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("browser-entity-view")
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    with GraphStore.open(settings) as store:
        seed_catalogue(store, 15, seed=23, templates=load_templates())
    return data_dir


def metric_values(page) -> dict[str, str]:
    found = {}
    for tile in page.locator('[data-testid="stMetric"]').all():
        label = tile.locator('[data-testid="stMetricLabel"]').inner_text().strip()
        found[label] = tile.locator('[data-testid="stMetricValue"]').inner_text().strip()
    return found


def test_search_run_discovery_and_see_the_hop_trail(console_server, browser_page):
    settings = load_settings({"DISCOVERY_DATA_DIR": str(console_server.data_dir)})
    with GraphStore.open(settings) as store:
        entity = store.list_entities(limit=1)[0]
    page = open_console(browser_page, console_server.url)
    page.get_by_role("link", name="Hypotheses").click()
    page.get_by_role("heading", name="Hypotheses").wait_for()
    box = page.get_by_label("Find an entity")
    box.fill(entity.name)
    box.press("Enter")
    page.get_by_role("heading", name=entity.name).wait_for()
    page.get_by_role("heading", name="Ranked by expected information gain").wait_for()
    page.get_by_text("No evidence yet").wait_for()
    wait_for_run(page)

    # Run discovery is a shadow run by default: a live one is switched on and then confirmed
    page.get_by_text("Shadow run", exact=True).click()
    wait_for_run(page)
    page.get_by_role("button", name="Run discovery (live)…").click()
    page.get_by_text("A live run writes to the graph").wait_for()
    wait_for_run(page)
    with GraphStore.open(settings) as store:
        assert store.get_evidence(entity.id) == [], "nothing is written before the confirmation"
    page.get_by_role("button", name="Write to the graph: run live").click()
    page.get_by_role("heading", name="Last run").wait_for()
    page.get_by_role("heading", name="Hop by hop").or_(page.get_by_text("Hop by hop")).first.wait_for()
    page.get_by_text(re.compile(r"\d+ of \d+ hops, newest first")).wait_for()
    wait_for_run(page)
    assert page.locator('[data-testid="stException"]').count() == 0

    with GraphStore.open(settings) as store:
        evidence = store.get_evidence(entity.id)
    assert evidence, "the live run wrote its evidence trail"
    (run_id,) = {e["run_id"] for e in evidence}
    shown = metric_values(page)
    assert shown["Iterations"] == str(len(evidence))
    assert shown["Cost"] == f"${sum(e['cost_usd'] for e in evidence):.3f}"
    assert shown["Actionable"] in ("yes", "no")
    assert page.get_by_text(f"{len(evidence)} of {len(evidence)} hops, newest first").is_visible()
    assert page.get_by_text(run_id).first.is_visible()
    # ranking, hop trail, confidences, evidence trail, plus the page's two tables
    assert page.locator('[data-testid="stDataFrame"]').count() >= 5
    # the before/after confidence chart was drawn by vega (the EIG chart sits in a closed expander)
    page.locator(
        '[data-testid="stVegaLiteChart"] canvas:visible, [data-testid="stVegaLiteChart"] svg:visible'
    ).first.wait_for()
    (event,) = query_events(OpsDB(settings.ops_db_path), run_id=run_id)
    assert event.entity_id == entity.id and event.iterations == len(evidence)

    with page.expect_download() as download:
        page.get_by_role("button", name="Download the evidence trail (CSV)").click()
    name = download.value.suggested_filename
    assert re.fullmatch(rf"discovery-evidence-{re.escape(entity.id)}-\d{{8}}-\d{{4}}\.csv", name), name
    lines = download.value.path().read_text(encoding="utf-8").strip().splitlines()
    assert len(lines) == len(evidence) + 1 and run_id in lines[1]
