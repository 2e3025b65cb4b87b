"""The Actionable page in headless Debian Chromium: after real production runs (one entity later taken out by a
stricter live config and REJECTs), the operator opens the feed from the menu, sees the entities and the departure
with its reason, and downloads the feed's CSV: a real file whose rows are exactly the entities in the feed."""

from __future__ import annotations

import csv
import io
import re

import pytest

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.settings import load_settings
from engine.production.feed import FEED_COLUMNS
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.browser_harness import browser_page, chromium, console_server, open_console, wait_for_run  # noqa: F401
from tests.support.feed import feed_with_departure

pytestmark = pytest.mark.browser

N_ENTITIES = 40


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    """A data dir with production traffic, made before the console starts: (data dir, in the feed, the one gone)."""
    data_dir = tmp_path_factory.mktemp("browser-actionable")
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    with GraphStore.open(settings) as store:
        seed_catalogue(store, N_ENTITIES, seed=7, templates=load_templates())
        in_feed, gone = feed_with_departure(store, open_ops_db(settings), 30)
        names = {e.id: e.name for e in store.get_entities([*in_feed, gone]).values()}
    return data_dir, in_feed, gone, names


@pytest.fixture(scope="module")
def console_data_dir(fed):
    """Overrides the harness's empty data dir with the one holding the production traffic."""
    return fed[0]


def test_open_the_feed_see_the_departure_and_download_the_csv(console_server, browser_page, fed):
    _, in_feed, gone, names = fed
    page = open_console(browser_page, console_server.url)
    page.get_by_role("link", name="Actionable").click()
    page.get_by_role("heading", name="Actionable").wait_for()
    page.get_by_role("heading", name="Left the feed").wait_for()
    wait_for_run(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    n = len(in_feed)
    page.get_by_text(
        f"{n} entities became actionable in this window and are still actionable; 1 left the feed"
    ).wait_for()
    assert page.locator('[data-testid="stDataFrame"]').count() == 3  # feed, evidence, departures

    with page.expect_download(timeout=30_000) as info:
        page.get_by_test_id("stDownloadButton").filter(has_text="Download the feed (CSV)").click()
    download = info.value
    assert re.fullmatch(r"discovery-actionable-\d{8}-\d{4}\.csv", download.suggested_filename)
    with open(download.path(), encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(io.StringIO(fh.read())))
    assert tuple(rows[0]) == FEED_COLUMNS
    assert {r["entity_id"] for r in rows} == in_feed and gone not in {r["entity_id"] for r in rows}
    assert {r["entity"] for r in rows} == {names[e] for e in in_feed}
    assert all(r["became_actionable"] == "2026-12-01T10:00:00Z" and r["stage"] == "production" for r in rows)
    assert all(r["evidence_url"].startswith("https://") and r["evidence_excerpt"] for r in rows)

    with page.expect_download(timeout=30_000) as info:
        page.get_by_test_id("stDownloadButton").filter(has_text="Download the departures (CSV)").click()
    with open(info.value.path(), encoding="utf-8", newline="") as fh:
        (left,) = list(csv.DictReader(fh))
    assert left["entity_id"] == gone and "was not actionable" in left["reason"]
