"""Monitoring in a real browser: the Overview's live charts follow new metric events without a click, and the
Reports page's downloads are files with the expected content.

A real `streamlit run` on a temp data dir; the test records metric events into that data dir's SQLite (as a
worker in another process would) while Chromium has the page open.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from engine.core.settings import load_settings
from engine.monitoring.events import count_events, record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.store.opsdb import open_ops_db
from tests.support.browser_harness import browser_page, chromium, console_data_dir, console_server, open_console  # noqa: F401
from tests.support.monitoring_data import make_run

pytestmark = pytest.mark.browser

EVIL = "<script>alert(1)</script>"
LIVE_TIMEOUT_MS = 45_000  # several refresh periods of the live fragment (console.live.REFRESH_S)


def _settings(server):
    return load_settings({"DISCOVERY_DATA_DIR": str(server.data_dir)})


def _record(server, results, *, ago_s: float = 60, names=None, stage_id=None) -> int:
    """Record events stamped ``ago_s`` seconds before now; returns how many the store holds in the last day."""
    settings = _settings(server)
    ops = open_ops_db(settings)
    now = time.time()
    record_runs(
        ops,
        results,
        run_id="browser",
        stage_id=stage_id,
        clock=lambda: now - ago_s,
        log=JsonlLog.for_settings(settings),
        names=names,
    )
    return count_events(ops, now - 86400)


def _live_caption(page, runs: int):
    return page.get_by_text(re.compile(rf"^{runs:,} runs in the last 24h \(new \d+, old \d+\)"))


def test_overview_charts_follow_new_events_without_a_click(console_server, browser_page):
    before = count_events(open_ops_db(_settings(console_server)), time.time() - 86400)
    page = open_console(browser_page, console_server.url)
    page.get_by_role("heading", name="Live monitoring: old vs new").wait_for()
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    if before == 0:
        page.get_by_text("No discovery runs recorded in the last 24h").wait_for()
        page.wait_for_function("document.querySelectorAll('[data-testid=stVegaLiteChart]').length === 3")
        assert charts.count() == 3  # only the graph's own charts so far

    # a worker records runs: the open page shows them on its own
    n1 = _record(
        console_server,
        [make_run(f"n{i}", cost=0.2, actionable=True) for i in range(4)]
        + [make_run(f"o{i}", system="old", cost=0.4) for i in range(3)],
        ago_s=1800,
    )
    _live_caption(page, n1).wait_for(timeout=LIVE_TIMEOUT_MS)
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=stVegaLiteChart]').length === 7", timeout=LIVE_TIMEOUT_MS
    )
    page.locator('[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg').last.wait_for()

    n2 = _record(console_server, [make_run(f"m{i}", system="old", cost=0.8) for i in range(5)], ago_s=30)
    assert n2 == n1 + 5
    _live_caption(page, n2).wait_for(timeout=LIVE_TIMEOUT_MS)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_reports_page_downloads_files_with_the_expected_content(console_server, browser_page):
    runs = _record(
        console_server,
        [make_run("evil-fc", cost=0.3, actionable=True), make_run("ok-fc", cost=0.1)],
        names={"evil-fc": EVIL},
        stage_id="pilot",
    )
    page = open_console(browser_page, console_server.url, "reports")
    page.get_by_role("heading", name="Reports").wait_for()
    page.get_by_text(re.compile(rf"{runs:,} runs in the last 24h")).first.wait_for()

    def download(label: str):
        button = page.get_by_test_id("stDownloadButton").filter(has_text=label)
        with page.expect_download(timeout=30_000) as info:
            button.click()
        dl = info.value
        return dl.suggested_filename, open(dl.path(), encoding="utf-8").read()

    name, md = download("Download Markdown")
    assert re.fullmatch(r"discovery-report-\d{4}-\d\d-\d\dT\d{4}Z-24h\.md", name)
    assert md.startswith("# Discovery Ops report: last 24h")
    assert "Percentile method:" in md and "Config hashes: new: cfg-new" in md
    assert re.search(rf"^\| runs \(entities\) \| .* \| {runs} \(\d+\) \|$", md, re.M), md[:2000]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and EVIL not in md

    name, page_html = download("Download HTML")
    assert name.endswith("-24h.html")
    assert page_html.lstrip().lower().startswith("<!doctype html>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page_html and "<script" not in page_html.lower()

    name, raw = download("Download JSON")
    data = json.loads(raw)
    assert name.endswith("-24h.json") and data["window"]["label"] == "24h"
    assert data["by_system"]["new"]["runs"] + data["by_system"]["old"]["runs"] == runs
    assert page.locator('[data-testid="stException"]').count() == 0


def test_alerts_page_evaluates_and_runs_the_periodic_evaluator(console_server, browser_page):
    from engine.jobs.queue import JobStore, wait_for
    from engine.monitoring import alert_jobs
    from engine.monitoring.alerts import current_states, load_rules

    ops = open_ops_db(_settings(console_server))
    page = open_console(browser_page, console_server.url, "alerts")
    page.get_by_role("heading", name="Alerts").wait_for()
    page.get_by_role("button", name="Evaluate now").click()
    page.get_by_text(re.compile(r"^evaluated 5 rules: ")).wait_for()
    assert set(current_states(ops)) == {r.id for r in load_rules(_settings(console_server))}

    page.get_by_role("button", name="Start periodic evaluation").click()
    page.get_by_text(re.compile(r"^periodic evaluation started in a worker \(job \d+, every 1m\)")).wait_for()
    job = alert_jobs.active_evaluator(JobStore(ops))
    try:
        assert job is not None
        # the worker process evaluates on its own; the page's fragment shows it running without a click
        wait_for(JobStore(ops), job.id, until=lambda j: j.progress_done >= 1 or j.state.is_terminal(), timeout_s=60)
        page.get_by_text(re.compile(rf"^periodic evaluation running \(job {job.id}, every 1m")).wait_for(
            timeout=LIVE_TIMEOUT_MS
        )
        page.get_by_role("button", name="Stop periodic evaluation").click()
        page.get_by_text(f"stop requested for job {job.id}").wait_for()
        final = wait_for(JobStore(ops), job.id, until=lambda j: j.state.is_terminal(), timeout_s=30)
        assert str(final.state) == "cancelled"
    finally:
        alert_jobs.stop_evaluator(ops, actor="test-cleanup")
    assert page.locator('[data-testid="stException"]').count() == 0
