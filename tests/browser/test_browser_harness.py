"""The browser harness itself: without Chromium, CI fails the browser tests instead of skipping them."""

from __future__ import annotations

import pytest

import tests.support.browser_harness as browser_harness


def test_missing_chromium_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(browser_harness, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        browser_harness.require_chromium()


def test_missing_chromium_skips_outside_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(browser_harness, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        browser_harness.require_chromium()


def test_present_chromium_neither_fails_nor_skips(monkeypatch, tmp_path):
    fake = tmp_path / "chromium"
    fake.write_text("")
    monkeypatch.setattr(browser_harness, "CHROMIUM", fake)
    monkeypatch.setenv("CI", "true")
    browser_harness.require_chromium()


def test_console_pages_lists_the_menu_with_the_default_page_at_the_root(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        "PAGES = [\n"
        '    st.Page("pages/overview.py", title="Overview", default=True),\n'
        '    st.Page("pages/hypotheses.py", title="Hypotheses"),\n'
        '    st.Page("pages/cache.py", title="Cache"),\n'
        "]\n"
    )
    assert browser_harness.console_pages(app) == {"overview": "", "hypotheses": "hypotheses", "cache": "cache"}
    real = browser_harness.console_pages()
    assert list(real)[:2] == ["overview", "hypotheses"] and real["overview"] == ""
