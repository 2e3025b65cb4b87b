"""A page URL opened first after the console starts runs inside the navigation shell.

Streamlit treats an app with a ``pages/`` folder as an old-style multipage app
until st.navigation is first called in that server process, so the very first
request for ``/hypotheses`` used to run the page bare (file-name sidebar,
"streamlit app" entry, no page config). console.services routes it back
through streamlit_app.py; this test is the first request its server sees.
"""

from __future__ import annotations

import pytest

from tests.support.browser_harness import browser_page, chromium, console_data_dir, console_server, open_console  # noqa: F401

pytestmark = pytest.mark.browser


def test_first_request_for_a_page_url_gets_the_navigation_shell(console_server, browser_page):
    page = open_console(browser_page, console_server.url, "hypotheses")
    page.get_by_role("heading", name="Hypotheses", exact=True).wait_for()
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.wait_for()
    links = [t.strip() for t in nav.locator("a").all_inner_texts()]
    # the st.navigation titles, not the pages/ file names of the v1 fallback
    assert any("Overview" in t for t in links), links
    assert not any(t.strip().lower() in {"streamlit app", "overview"} and t.strip() != "Overview" for t in links), links
    assert page.locator('[data-testid="stException"]').count() == 0
