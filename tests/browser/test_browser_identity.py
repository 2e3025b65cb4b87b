"""The operator's name follows them: typed once in Chromium, it is on every page, survives a reload,
and is who the audit log says acted (issue 12, point 5)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.settings import load_settings
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.browser_harness import (  # noqa: F401
    browser_page,
    chromium,
    console_pages,
    console_server,
    open_console,
    wait_for_run,
)

pytestmark = pytest.mark.browser

NAME = "alice"


@pytest.fixture(scope="module")
def console_data_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("browser-identity")
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    with GraphStore.open(settings) as store:
        seed_catalogue(store, 20, seed=3, templates=load_templates())
    return data_dir


def operator_box(page):
    return page.locator('[data-testid="stSidebar"]').get_by_label("Operator", exact=True)


def test_the_operator_name_is_on_every_page_after_a_reload_and_in_the_audit_log(console_server, browser_page):
    page = open_console(browser_page, console_server.url, "rollout")
    box = operator_box(page)
    box.fill(NAME)
    box.press("Enter")
    wait_for_run(page)
    for name in console_pages():
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name.title(), exact=True).click()
        wait_for_run(page)
        expect(operator_box(page), f"{name}: the name did not follow").to_have_value(NAME, timeout=30_000)
    page.reload(wait_until="domcontentloaded")
    wait_for_run(page)
    # the widget may be drawn an instant before its value arrives: expect() polls until it holds the name
    expect(operator_box(page), "a reload lost the name").to_have_value(NAME, timeout=30_000)
    # an action records it: clear the cache from the Cache page
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Cache", exact=True).click()
    page.wait_for_url(re.compile(r".*/cache(\?.*)?$"), timeout=30_000)
    wait_for_run(page)
    button = page.get_by_role("button", name="Clear cache")
    expect(button).to_be_visible(timeout=30_000)
    expect(operator_box(page)).to_have_value(NAME, timeout=30_000)
    button.click()
    # "notRunning" may still be the previous run's state right after the click: wait for the outcome itself
    expect(page.get_by_text(re.compile(r"Clear cache: [\d,]+ entries dropped"))).to_be_visible(timeout=30_000)
    ops = open_ops_db(load_settings({"DISCOVERY_DATA_DIR": str(console_server.data_dir)}))
    rows = ops.list_audit(5, action="cache.clear")
    assert rows and rows[0]["actor"] == f"console:{NAME}"
    assert page.locator('[data-testid="stException"]').count() == 0
