"""Tuning page in a real browser: a study started elsewhere (a real worker process) shows up and progresses on
the open page without a click, its importance and parallel-coordinates charts are drawn with marks, the
best-config download is the winner's JSON, and Cancel answers on the open page at once (its button sits in the
polling fragment, whose reruns never redraw a message drawn outside it)."""

from __future__ import annotations

import json
import re

import pytest

from engine.core.params import ParameterConfig
from engine.core.settings import load_settings
from engine.store.opsdb import open_ops_db
from engine.tuning.runner import start_study
from engine.tuning.spec import EntitySpec, StudySpec
from engine.tuning.store import get_study
from tests.support.actors import ADMIN
from tests.support.browser_harness import browser_page, chromium, console_data_dir, console_server, open_console  # noqa: F401

pytestmark = pytest.mark.browser

LIVE_TIMEOUT_MS = 120_000

#: true once the chart in the container with this key has drawn marks: an SVG with mark paths, or a canvas
#: with enough painted pixels that it holds more than axes (vega draws into either)
CHART_DRAWN_JS = """(key) => {
  const root = document.querySelector('.st-key-' + key + ' [data-testid="stVegaLiteChart"]');
  if (!root) return false;
  const svg = root.querySelector('svg.marks, svg');
  if (svg) return svg.querySelectorAll('g[class*="mark-rect"] path, g[class*="mark-line"] path').length > 0;
  const canvas = root.querySelector('canvas');
  if (!canvas || !canvas.width || !canvas.height) return false;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let colored = 0;  // axes and labels are grey: count saturated pixels (bars, coloured lines)
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (a > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 40) colored++;
  }
  return colored > 200;
}"""


def test_a_running_study_updates_the_open_page_and_its_best_config_downloads(console_server, browser_page):
    settings = load_settings({"DISCOVERY_DATA_DIR": str(console_server.data_dir)})
    page = open_console(browser_page, console_server.url, "tuning")
    page.get_by_role("heading", name="Tuning").wait_for()
    page.get_by_text("No tuning study yet").wait_for()

    ops = open_ops_db(settings)
    spec = StudySpec(
        method="random",
        params=("max_iterations", "delta_accept"),
        iterations=4,
        entities=EntitySpec(n=40),
        seed=3,
        train_fraction=0.7,
    )
    study, _, _ = start_study(ops, settings, spec, actor=ADMIN)  # a real detached worker
    # the page only polls: reload once to leave the empty state, then no more clicks
    open_console(browser_page, console_server.url, "tuning")
    page.get_by_role("heading", name=re.compile(rf"^Study {study.id}:")).wait_for(timeout=LIVE_TIMEOUT_MS)
    page.get_by_text(re.compile(r"finished · 5/5 trials")).wait_for(timeout=LIVE_TIMEOUT_MS)
    page.get_by_text("Winner, hold-out").wait_for(timeout=LIVE_TIMEOUT_MS)
    page.get_by_text("Parameter importance").first.wait_for()
    for key in ("tune_importance_chart", "tune_parallel_chart"):
        page.wait_for_function(CHART_DRAWN_JS, arg=key, timeout=30_000)

    button = page.get_by_test_id("stDownloadButton").filter(has_text="Download best config")
    with page.expect_download(timeout=30_000) as info:
        button.click()
    dl = info.value
    assert re.fullmatch(rf"discovery-tuning-study-{study.id}-best-config-\d{{8}}-\d{{4}}\.json", dl.suggested_filename)
    data = json.loads(dl.path().read_text(encoding="utf-8"))
    winner = get_study(ops, study.id).result["winner"]
    assert ParameterConfig.from_dict(data).hash() == winner["config_hash"]
    assert page.locator('[data-testid="stException"]').count() == 0


def test_cancel_answers_on_the_open_page_at_once(console_server, browser_page):
    settings = load_settings({"DISCOVERY_DATA_DIR": str(console_server.data_dir)})
    ops = open_ops_db(settings)
    spec = StudySpec(method="random", params=("max_iterations",), iterations=2, entities=EntitySpec(n=20), seed=1)
    study, _, _ = start_study(ops, settings, spec, actor=ADMIN, launch=False)  # stays queued
    page = open_console(browser_page, console_server.url, "tuning")
    page.get_by_role("heading", name=re.compile(rf"^Study {study.id}:")).wait_for(timeout=LIVE_TIMEOUT_MS)
    page.get_by_role("button", name="Cancel").click()
    # no navigation, no reload: the outcome shows under the button and the state line follows
    page.get_by_text(f"Cancel: study {study.id} cancelled (it had not started)").wait_for(timeout=10_000)
    page.get_by_text(re.compile(r"^cancelled · 0/3 trials")).wait_for(timeout=10_000)
    assert get_study(ops, study.id).job_id is not None
    assert page.locator('[data-testid="stException"]').count() == 0
