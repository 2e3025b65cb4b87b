"""Reports: the three formats state window, config hashes, generation time and method; HTML is escaped, offline
and draws the console's own charts; Markdown escapes the Markdown way (no HTML entities)."""

from __future__ import annotations

import html
import json
import math
import re
from html.parser import HTMLParser

import pytest

from console import live, vocab
from engine.core.errors import ConfigError
from engine.monitoring import charts
from engine.monitoring.alerts import SHIPPED_RULES, evaluate_alerts, load_rules_file
from engine.monitoring.events import record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.monitoring.reports import build_report, md_cell, render, report_filename, to_dict
from tests.support.monitoring_data import FakeClock, make_run

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00Z
EVIL = "<script>alert(1)</script>"


@pytest.fixture
def report(ops, settings):
    log = JsonlLog.for_settings(settings)
    clock = FakeClock(T0)
    record_runs(
        ops,
        [
            make_run("evil-fc", cost=2.5, actionable=True, config_hash="hash-new-1"),
            make_run("plain-fc", cost=0.5, errors=("timeout",), config_hash="hash-new-1"),
        ],
        run_id="r1",
        stage_id="pilot",
        clock=clock,
        log=log,
        names={"evil-fc": EVIL, "plain-fc": "Plain & Co"},
    )
    clock.tick(3600)
    record_runs(
        ops,
        [make_run("evil-fc", system="old", cost=4.0, config_hash="hash-old-9", evidence_latency_s=12.0)],
        run_id="r1",
        stage_id="pilot",
        clock=clock,
        log=log,
        names={"evil-fc": EVIL},
    )
    rules = load_rules_file(SHIPPED_RULES)
    evaluate_alerts(ops, rules, clock.tick(60))
    return build_report(ops, "24h", now=clock.tick(60), rules=rules)


def test_html_escapes_entity_names_and_every_text(report):
    page = render(report, "html")
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Plain &amp; Co" in page
    assert "<script" not in page.lower()


def test_html_is_self_contained_and_well_formed(report):
    page = render(report, "html")
    for external in ("http://", "https://", "src=", "href=", "@import", "url(", "<script", "<link", "<img"):
        assert external not in page.lower()
    assert page.count("<svg") == 5  # histogram + four time series

    class Checker(HTMLParser):
        VOID = {"meta", "br", "img", "hr", "input", "link", "circle", "line", "rect", "polyline"}

        def __init__(self):
            super().__init__()
            self.stack = []

        def handle_starttag(self, tag, attrs):
            if tag not in self.VOID:
                self.stack.append(tag)

        def handle_startendtag(self, tag, attrs):
            pass

        def handle_endtag(self, tag):
            if tag in self.VOID:
                return
            assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> after {self.stack[-3:]}"
            self.stack.pop()

    c = Checker()
    c.feed(page)
    assert c.stack == []


@pytest.mark.parametrize("fmt", ["md", "json", "html"])
def test_every_format_states_window_hashes_generation_time_and_method(report, fmt):
    text = render(report, fmt)
    assert "2027-01-15 09:02:00Z" in text  # generated at == window end
    assert "2027-01-14 09:02:00Z" in text  # window start (24 h earlier)
    assert "hash-new-1" in text and "hash-old-9" in text
    assert "nearest rank: the value at 1-based rank ceil(q/100 * n)" in text


def test_html_draws_the_consoles_charts_rendered_offline_by_vl_convert(report):
    """One chart vocabulary: each SVG of the report is the console's altair chart (the Overview draws the
    same builder's output in the browser), rendered by vl-convert; titles and fields are the console's."""
    page = render(report, "html")
    assert live.metric_chart is charts.metric_chart and live.LIVE_METRICS is charts.LIVE_METRICS
    frame = live.series_frame(report.series)  # what the Overview charts, from the same series
    for metric in live.LIVE_METRICS:
        console_chart = live.metric_chart(frame, metric, report.window_label)
        spec = console_chart.to_dict()
        assert spec["layer"][0]["title"] == metric.title and "value" in json.dumps(spec["layer"][0]["encoding"])
        # the very SVG the console's chart renders to is in the file, title and axis words included
        svg = charts.to_svg(console_chart, prefix=metric.field)
        assert svg in page
        assert f">{html.escape(metric.title)}</text>" in svg
        assert "time (UTC), last 24 h" in svg
    assert f"p95 {vocab.RUN_LATENCY}, s" in page  # the run latency keeps its full name in the report
    svgs = re.findall(r"<svg\b[^>]*>", page)
    assert len(svgs) == 5 and all('class="marks"' in tag for tag in svgs)  # Vega's SVG renderer made them all
    assert ">Final confidence of hypotheses</text>" in page


def test_the_engine_and_the_console_name_the_latencies_alike():
    assert charts.RUN_LATENCY == vocab.RUN_LATENCY and charts.ENGINE_TIME == vocab.ENGINE_TIME


def test_markdown_escapes_the_markdown_way_without_html_entities(report):
    md = render(report, "md")
    assert EVIL not in md and "\\<script>alert(1)\\</script>" in md  # a backslash keeps the tag text
    assert "Plain & Co" in md  # a lone & is plain text in Markdown, not "&amp;"
    assert not re.search(r"&(#\d+|#x[0-9a-f]+|[a-z]+);", md, re.I), re.findall(r"&\S+;", md)
    assert md_cell("a|b\nc") == "a\\|b c"
    assert md_cell("Hyndman & Fan, p95 < 30 s") == "Hyndman & Fan, p95 < 30 s"
    assert md_cell("&amp; <b>x</b> &#33;") == "\\&amp; \\<b>x\\</b> \\&#33;"
    assert "| new | old | all |" in md
    assert f"| {vocab.RUN_LATENCY}, p50 / p95 / p99 |" in md and f"| {vocab.ENGINE_TIME}, p50 / p95 |" in md
    assert "| p95 latency |" not in md and "| latency p50" not in md


def test_json_carries_the_measured_figures(report):
    data = json.loads(render(report, "json"))
    assert data["window"]["label"] == "24h" and data["window"]["end"] - data["window"]["start"] == 86400
    assert data["by_system"]["new"]["runs"] == 2 and data["by_system"]["old"]["runs"] == 1
    assert data["by_system"]["new"]["cost_per_entity"] == pytest.approx(1.5)
    assert data["comparison"]["cost_reduction_pct"] == pytest.approx((4.0 - 1.5) / 4.0 * 100)
    assert data["comparison"]["old_runs"] == 1 and data["comparison"]["new_runs"] == 2
    assert data["by_system"]["new"]["errors_by_type"] == {"timeout": 1}
    assert data["top_cost_runs"][0]["entity_name"] == EVIL and data["top_cost_runs"][0]["cost_usd"] == 4.0
    assert [a["rule_id"] for a in data["alerts"]] == sorted(r.id for r in report.rules)
    assert {a["state"] for a in data["alerts"]} == {"no_data"}  # 3 runs < every rule's minimum sample
    assert data["stages"][0]["stage_id"] == "pilot"
    assert sum(p["runs"] for p in data["series"]["points"]) == 3
    assert data == to_dict(report) | {}  # to_json is exactly to_dict, serialised


def test_an_empty_window_renders_without_made_up_numbers(ops):
    r = build_report(ops, 900, now=T0)
    assert r.window_label == "15m"
    md = render(r, "md")
    assert "No runs in the window." in md
    assert "$0.000" not in md  # cost per entity of nothing is n/a, not zero
    assert "n/a" in md
    data = json.loads(render(r, "json"))
    assert data["by_system"]["new"]["cost_per_entity"] is None
    assert data["comparison"]["cost_reduction_pct"] is None
    assert "no data" in render(r, "html")


def test_report_filename_names_time_window_and_format():
    assert report_filename(T0 + 125 * 60, "24h", "html") == "discovery-report-2027-01-15T1005Z-24h.html"
    assert re.fullmatch(r"discovery-report-\d{4}-\d\d-\d\dT\d{4}Z-7d\.md", report_filename(T0, "7d", "md"))
    with pytest.raises(ConfigError):
        report_filename(T0, "24h", "pdf")


def test_missing_and_unbounded_figures_read_as_words_never_none_nan_or_inf():
    from engine.monitoring.reports import ms, num, pct, secs, signed_pct, usd

    assert [f(None) for f in (usd, pct, signed_pct, secs, num, ms)] == ["n/a"] * 6
    assert secs(float("nan")) == "n/a" and secs(math.inf) == "no upper bound" and num(-math.inf) == "no lower bound"
    shown = (usd(0.5), pct(0.125), signed_pct(-3.0), secs(1.234), ms(2.0))
    assert shown == ("$0.500", "12.5%", "-3.0%", "1.23 s", "2.00 ms")


def test_a_window_reads_with_its_unit_in_words():
    assert [charts.window_words(w) for w in ("24h", "15m", "1d", "7d", "2w", "90s", "odd")] == [
        "last 24 h",
        "last 15 min",
        "last 1 day",
        "last 7 days",
        "last 2 weeks",
        "last 90 s",
        "last odd",
    ]


def test_svg_ids_are_made_unique_per_chart():
    """Two SVGs of one page must not share an id: a clip path of one would clip the other's marks."""
    import altair as alt
    import pandas as pd

    clipped = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(clip=True).encode(x="x:Q", y="y:Q")
    svg = charts.to_svg(clipped, prefix="cost")
    assert "http" not in svg and svg.startswith("<svg ")
    ids = re.findall(r'\bid="([^"]+)"', svg)
    assert ids and all(i.startswith("cost-") for i in ids)
    assert all(ref.startswith("cost-") for ref in re.findall(r"url\(#([^)]+)\)", svg))
