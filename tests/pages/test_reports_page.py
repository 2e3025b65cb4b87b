"""Reports page (AppTest): window and stage choice, summary line, three download buttons, previews, bad window."""

from __future__ import annotations

import base64
import html
import json
import re
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from engine.monitoring.events import record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.store.opsdb import open_ops_db
from tests.support.console_env import as_shown
from tests.support.monitoring_data import make_run

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
PAGE = "pages/reports.py"
EVIL = "<script>alert(1)</script>"


def _record(settings):
    ops, log, now = open_ops_db(settings), JsonlLog.for_settings(settings), time.time()
    record_runs(
        ops,
        [make_run("a", cost=0.25, actionable=True), make_run("b", cost=0.25)],
        run_id="r",
        stage_id="pilot",
        clock=lambda: now - 600,
        log=log,
        names={"a": EVIL},
    )
    record_runs(
        ops, [make_run("a", system="old", cost=0.5)], run_id="r", stage_id="pilot", clock=lambda: now - 600, log=log
    )
    record_runs(ops, [make_run("c", cost=1.0)], run_id="r2", clock=lambda: now - 3 * 3600, log=log)


def open_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def downloads(at: AppTest) -> dict[str, object]:
    return {b.proto.label: b for b in at.get("download_button")}


def test_summary_and_three_downloads_for_the_default_window(console_env):
    _record(console_env)
    at = open_page()
    assert at.title[0].value == "Reports"
    assert any("**4 runs** in the last **24h** (new 3, old 1)" in m.value for m in at.markdown)
    buttons = downloads(at)
    assert set(buttons) == {"Download Markdown", "Download JSON", "Download HTML"}
    for label, ext in (("Markdown", "md"), ("JSON", "json"), ("HTML", "html")):
        help_ = as_shown(buttons[f"Download {label}"].proto.help)
        assert re.match(rf"discovery-report-\d{{4}}-\d\d-\d\dT\d{{4}}Z-24h\.{ext} · [\d,]+ bytes$", help_), help_
    md = next(c.value for c in at.code)
    assert md.startswith("# Discovery Ops report: last 24h") and EVIL not in md
    data = at.json[0].value
    assert json.loads(data)["window"]["label"] == "24h"


def test_a_shorter_window_and_a_stage_narrow_the_report(console_env):
    _record(console_env)
    at = open_page()
    at.selectbox(key="report_window").select("1h").run()
    assert any("**3 runs** in the last **1h** (new 2, old 1)" in m.value for m in at.markdown)
    assert at.selectbox(key="report_stage").options == ["all stages", "pilot"]
    at.text_input(key="report_custom_window").input("4h").run()
    assert any("**4 runs** in the last **4h**" in m.value for m in at.markdown)
    at.selectbox(key="report_stage").select("pilot").run()
    assert not at.exception
    assert any("**3 runs** in the last **4h**" in m.value and "stage `pilot`" in m.value for m in at.markdown)
    assert "4h.md" in as_shown(downloads(at)["Download Markdown"].proto.help)


def test_a_bad_window_is_one_line_and_nothing_is_offered(console_env):
    at = open_page()
    at.text_input(key="report_custom_window").input("yesterday").run()
    assert not at.exception
    assert len(at.error) == 1 and "e.g. 15m, 24h or 7d" in as_shown(at.error[0].value)
    assert not downloads(at)


def test_an_empty_store_still_gives_a_valid_report(console_env):
    at = open_page()
    assert any("No discovery runs recorded in the last 24h" in i.value for i in at.info)
    assert len(downloads(at)) == 3


def test_the_previews_show_the_overviews_charts_offline_and_markdown_without_entities(console_env):
    """The HTML preview is the downloadable file: the Overview's charts as inline SVG, nothing fetched; the
    Markdown preview escapes the Markdown way (an entity name keeps its characters, no "&amp;")."""
    from console.live import LIVE_METRICS
    from console.vocab import RUN_LATENCY

    _record(console_env)
    at = open_page()
    (frame,) = at.get("iframe")
    src = frame.proto.src
    assert src.startswith("data:text/html;base64,")
    page = base64.b64decode(src.split(",", 1)[1]).decode("utf-8")
    assert page.count("<svg") == 5  # the confidence histogram and the Overview's four live charts
    assert all(f">{html.escape(m.title)}</text>" in page for m in LIVE_METRICS)
    assert not re.search(r"https?://|<script|<link|<img|src=|href=|url\(|@import", page, re.I)
    md = next(c.value for c in at.code)
    assert "\\<script>alert(1)\\</script>" in md
    assert not re.search(r"&(#\d+|[a-z]+);", md)
    assert f"p95 {RUN_LATENCY}" in md
