"""The Cache page in headless Chromium against a real `streamlit run`: Warm now fills the console's
cache, and a `cache clear` from another process reaches it and shows up without a reload (the
statistics are a fragment refreshing every 2 s)."""

from __future__ import annotations

import pytest

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.cli.main import main
from engine.core.model import Decision, Depth, HopRecord, HopType
from engine.core.settings import load_settings
from engine.store.graph import GraphStore
from tests.support.browser_harness import browser_page, chromium, console_server, open_console, wait_for_run  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def console_data_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("browser-cache")
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    with GraphStore.open(settings) as store:
        seed_catalogue(store, 40, seed=11, templates=load_templates())
    return data_dir


def tile(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True))
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def entries_become(page, predicate_js: str) -> None:
    """Wait (without reloading) until the Entries tile's number satisfies ``predicate_js`` (on n)."""
    page.wait_for_function(
        """(pred) => {
             const tile = [...document.querySelectorAll('[data-testid="stMetric"]')]
               .find(m => m.querySelector('[data-testid="stMetricLabel"]')?.innerText.trim() === 'Entries');
             if (!tile) return false;
             const n = parseInt(tile.querySelector('[data-testid="stMetricValue"]').innerText.replace(/,/g, ''));
             return new Function('n', 'return ' + pred)(n);
           }""",
        arg=predicate_js,
        timeout=30_000,
    )


def test_cli_warm_and_clear_reach_the_console_and_the_page_refreshes_itself(console_server, browser_page,
                                                                             monkeypatch):  # fmt: skip
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(console_server.data_dir))
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    page = open_console(browser_page, console_server.url, "cache")
    page.get_by_role("heading", name="Cache", exact=True).wait_for()
    wait_for_run(page)
    assert tile(page, "Entries") == "0"
    assert main(["cache", "warm", "--interval", "0"]) == 0  # only explicit warming in this test
    # recent discovery activity on one entity makes its cluster a hotspot
    settings = load_settings({"DISCOVERY_DATA_DIR": str(console_server.data_dir)})
    with GraphStore.open(settings) as store:
        entity = store.list_entities(limit=1)[0]
        h = store.get_hypotheses(entity.id)[0]
        rec = HopRecord(1, h.id, h.pattern, h.category, 0.1, HopType.OFFICIAL_SITE, Depth.SURFACE,
                        Decision.ACCEPT, 0.06, 0.5, 0.01, 0.1)  # fmt: skip
        store.add_evidence(entity.id, "browser-run", "new", [rec])
    assert main(["cache", "warm", "--wait", "20"]) == 0  # handled by the console's own process
    entries_become(page, "n > 0")  # the live fragment shows it, no reload
    assert main(["cache", "clear", "--wait", "20"]) == 0
    entries_become(page, "n === 0")
    page.get_by_role("button", name="Warm now").click()
    page.get_by_text("Warm now:").wait_for()
    entries_become(page, "n > 0")
    assert page.locator('[data-testid="stException"]').count() == 0


#: every bar the benchmark chart drew (vega's SVG renderer: one path per bar, inside the rect marks) with
#: its size, and the y axis's labels as drawn
CHART_MARKS_JS = """() => {
  const chart = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')].pop();
  if (!chart) return null;
  const bars = [...chart.querySelectorAll('svg g.mark-rect path')].map((p) => {
    const box = p.getBBox();
    return {d: (p.getAttribute('d') || '').length, width: box.width, height: box.height};
  });
  const labels = [...chart.querySelectorAll('svg g.role-axis-label text')].map((t) => t.textContent);
  return {svg: chart.querySelectorAll('svg').length, bars, labels};
}"""


def test_the_benchmark_chart_is_drawn_with_distinct_whole_labels(console_server, browser_page, monkeypatch):
    page = open_console(browser_page, console_server.url, "cache")
    page.get_by_role("heading", name="Store benchmark", exact=True).wait_for()
    wait_for_run(page)
    entities = page.get_by_label("Entities", exact=True)
    entities.fill("12")
    entities.press("Enter")
    wait_for_run(page)
    page.get_by_role("button", name="Run batch benchmark").click()
    page.get_by_text("queued for a worker process").or_(page.get_by_text("Job ")).first.wait_for()
    page.get_by_text("finished").first.wait_for(timeout=240_000)  # the fragment polls the worker's job
    page.locator('[data-testid="stVegaLiteChart"] svg g.mark-rect path').first.wait_for()
    drawn = page.evaluate(CHART_MARKS_JS)
    assert drawn and drawn["svg"] >= 1, drawn
    bars = [b for b in drawn["bars"] if b["d"] > 0 and b["height"] > 0]
    assert len(bars) == 5, drawn  # the five timed figures of one size
    assert sum(1 for b in bars if b["width"] > 1) >= 4, drawn  # bars with a length, not a blank plot
    figures = [t for t in drawn["labels"] if t.startswith(("read all", "update"))]
    assert len(figures) == 5 and len(set(figures)) == 5, drawn["labels"]
    assert not [t for t in drawn["labels"] if t.endswith("…")], drawn["labels"]
    assert page.locator('[data-testid="stException"]').count() == 0


def test_the_cache_tiles_show_whole_values(console_server, browser_page):
    """At 1400 px every tile's value is whole (the Size tile read "4.49 …")."""
    page = open_console(browser_page, console_server.url, "cache")
    page.get_by_role("heading", name="Cache", exact=True).wait_for()
    page.get_by_role("button", name="Warm now").click()
    page.get_by_text("Warm now:").wait_for()
    values = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="stMetricValue"]')].map((v) => {
             const inner = v.querySelector('div') || v;
             return {text: v.innerText, cut: [v, ...v.querySelectorAll('*')]
               .some((e) => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)};
           })"""
    )
    assert len(values) == 6 and not [v for v in values if v["cut"] or "…" in v["text"]], values
