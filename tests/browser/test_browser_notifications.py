"""The Notifications page in headless Chromium against a real `streamlit run`: add a webhook (a receiver on
127.0.0.1 started by the test), send a test, see it delivered in the delivery log, the URL's token never on
the page."""

from __future__ import annotations

import pytest

from tests.support.browser_harness import (  # noqa: F401
    browser_page,
    chromium,
    console_data_dir,
    console_server,
    open_console,
    wait_for_run,
)
from tests.support.receivers import WebhookReceiver

pytestmark = pytest.mark.browser


@pytest.fixture
def hook():
    r = WebhookReceiver().start()
    try:
        yield r
    finally:
        r.stop()


def test_add_a_webhook_send_a_test_and_see_it_in_the_delivery_log(console_server, browser_page, hook):
    page = open_console(browser_page, console_server.url, "notifications")
    page.get_by_role("heading", name="Notifications", exact=True).wait_for()
    page.get_by_label("Name").fill("on-call")
    page.get_by_label("URL", exact=True).fill(hook.url)
    page.get_by_role("button", name="Add channel").click()
    page.get_by_text("Channel on-call added").wait_for()
    wait_for_run(page)
    page.get_by_role("button", name="Send a test").click()
    page.get_by_text("test message delivered to on-call").wait_for()
    assert [p["body"]["topic"] for p in hook.posts] == ["notify.test"]
    page.get_by_role("heading", name="Delivery log").wait_for()
    # the tiles above the log count deliveries by state; the table under them lists this one
    sent = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text("sent", exact=True))
    assert sent.locator('[data-testid="stMetricValue"]').inner_text().strip() == "1"
    page.get_by_text("1 of 1 deliveries shown").wait_for()
    page.locator('[data-testid="stDataFrame"]').last.wait_for()
    # the grid's accessible copy holds the row's cells
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stDataFrame"] [role="gridcell"]')]
                   .some(c => c.textContent.includes('test message'))""",
        timeout=30_000,
    )
    body = page.locator("body").inner_text()
    assert "T0SECRETPATH" not in body and "abcdef123456" not in body
    assert page.locator('[data-testid="stException"]').count() == 0
