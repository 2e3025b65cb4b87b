"""Monitoring in a real browser: the Overview's live charts follow new metric events without a click, its tiles
stay readable at 900 px and its alert banner leads to the Alerts page, and the Reports page's downloads are files
with the expected content.

A real `streamlit run` on a temp data dir; the test records metric events into that data dir's SQLite (as a
worker in another process would) while Chromium has the page open.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.settings import load_settings
from engine.monitoring.alerts import acknowledge, evaluate_alerts, load_rules, save_rules
from engine.monitoring.events import count_events, record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.actors import ADMIN
from tests.support.browser_harness import (  # noqa: F401
    browser_page,
    chromium,
    console_data_dir,
    console_server,
    open_console,
    running_console,
    wait_for_run,
)
from tests.support.monitoring_data import make_run

pytestmark = pytest.mark.browser

EVIL = "<script>alert(1)</script>"
LIVE_TIMEOUT_MS = 45_000  # several refresh periods of the live fragment (console.live.REFRESH_S)
NARROW = {"width": 900, "height": 1000}
#: enough entities that the Overview's counts have four and five digits ("1,500", "12,000")
NARROW_ENTITIES = 1_500
#: the nodes in an element whose content is wider than their box (cut, or drawn with "…")
CUT_JS = """node => [node, ...node.querySelectorAll('*')]
  .filter(el => el.scrollWidth > el.clientWidth).map(el => `${el.tagName} ${el.scrollWidth}>${el.clientWidth}`)"""
#: every tile's label and value (and delta), with the nodes of them that are cut
CUT_NODES_JS = """() => [...document.querySelectorAll('[data-testid=stMetric]')].map(tile => {
  const cut = [];
  for (const part of ['stMetricLabel', 'stMetricValue', 'stMetricDelta']) {
    const node = tile.querySelector(`[data-testid=${part}]`);
    if (!node) continue;
    for (const el of [node, ...node.querySelectorAll('*')]) {
      if (el.scrollWidth > el.clientWidth) cut.push(`${part} ${el.tagName} ${el.scrollWidth}>${el.clientWidth}`);
    }
  }
  return {label: tile.querySelector('[data-testid=stMetricLabel]').innerText.trim(),
          value: tile.querySelector('[data-testid=stMetricValue]').innerText.trim(), cut};
})"""


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
    return page.get_by_text(re.compile(rf"^{runs:,} runs in the last 24 h \(new \d+, old \d+\)"))


def test_overview_charts_follow_new_events_without_a_click(console_server, browser_page):
    before = count_events(open_ops_db(_settings(console_server)), time.time() - 86400)
    page = open_console(browser_page, console_server.url)
    page.get_by_role("heading", name="Live monitoring: old vs new").wait_for()
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    if before == 0:
        page.get_by_text("No discovery runs recorded in the last 24 h").wait_for()
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
    assert "\\<script>alert(1)\\</script>" in md and EVIL not in md  # escaped the Markdown way
    assert not re.search(r"&(#\d+|[a-z]+);", md)  # no HTML entity in a Markdown file

    name, page_html = download("Download HTML")
    assert name.endswith("-24h.html")
    assert page_html.lstrip().lower().startswith("<!doctype html>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page_html and "<script" not in page_html.lower()
    assert page_html.count("<svg") == 5 and "http://" not in page_html and "https://" not in page_html

    name, raw = download("Download JSON")
    data = json.loads(raw)
    assert name.endswith("-24h.json") and data["window"]["label"] == "24h"
    assert data["by_system"]["new"]["runs"] + data["by_system"]["old"]["runs"] == runs
    assert page.locator('[data-testid="stException"]').count() == 0


@pytest.fixture(scope="module")
def narrow_console(tmp_path_factory):
    """A console on a catalogue of 1,500 entities, a day of old and new runs and two firing alerts, one of
    them acknowledged: what the Overview shows an operator on a busy day."""
    data_dir = tmp_path_factory.mktemp("overview-narrow")
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    with GraphStore.open(settings) as store:
        seed_catalogue(store, NARROW_ENTITIES, seed=12, templates=load_templates())
    firing = {"error-rate", "latency-p95"}
    save_rules(
        settings,
        [r.to_json() | ({"hold": "0s", "min_sample": 1} if r.id in firing else {}) for r in load_rules(settings)],
        ops=open_ops_db(settings),
        actor=ADMIN,
    )
    ops, log, now = open_ops_db(settings), JsonlLog.for_settings(settings), time.time()
    for hour in range(12):
        record_runs(
            ops,
            [make_run(f"n{hour}-{i}", cost=1.25, errors=("timeout",), evidence_latency_s=115.1) for i in range(3)]
            + [make_run(f"o{hour}-{i}", system="old", cost=0.75, evidence_latency_s=90.4) for i in range(3)],
            run_id="narrow",
            clock=lambda h=hour: now - 3600 * h - 60,
            log=log,
        )
    evaluate_alerts(ops, load_rules(settings), time.time())
    acknowledge(ops, "latency-p95", actor=ADMIN, now=time.time(), note="known")
    with running_console(data_dir) as server:
        yield server


def test_overview_at_900_px_keeps_every_tile_readable_and_its_banner_leads_to_alerts(narrow_console, browser_page):
    page = browser_page
    page.set_viewport_size(NARROW)
    open_console(page, narrow_console.url)
    page.get_by_text(re.compile(r"^\d+ runs in the last 24 h")).wait_for(timeout=LIVE_TIMEOUT_MS)
    # the live section can arrive before the graph's tiles on a loaded machine: wait for all thirteen
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=stMetric] [data-testid=stMetricValue]').length >= 13",
        timeout=LIVE_TIMEOUT_MS,
    )
    wait_for_run(page)
    tiles = page.evaluate(CUT_NODES_JS)
    shown = {t["label"]: t["value"] for t in tiles}
    assert shown["Entities"] == f"{NARROW_ENTITIES:,}" and len(shown["Hypotheses"].replace(",", "")) >= 4
    assert shown["p95 run latency (evidence + engine)"].endswith(" s")
    assert len(tiles) == 9 + 4, shown  # the graph's nine and the live four
    assert [t for t in tiles if t["cut"]] == [], "tiles cut at 900 px"

    # the banner: one link naming the alert nobody acknowledged, counting the other, leading to Alerts
    banner = page.get_by_role("link", name=re.compile(r"Alerts: 1 firing, 1 pending — open the Alerts page$"))
    banner.wait_for()
    assert page.evaluate(CUT_JS, banner.element_handle()) == []  # the whole line, not cut
    detail = page.get_by_text(re.compile(r"^firing: error-rate · pending: cost-increase-vs-old · 1 acknowledged"))
    assert "latency-p95" not in detail.inner_text()  # acknowledged: counted, not listed
    banner.click()
    page.get_by_role("heading", name="Alerts").wait_for()
    assert re.search(r"/alerts(\?|$)", page.url), page.url
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
        alert_jobs.stop_evaluator(ops, actor=ADMIN)
    assert page.locator('[data-testid="stException"]').count() == 0
