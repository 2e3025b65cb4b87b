"""Tuning page in a real browser: a study started elsewhere (a real worker process) shows up and progresses on
the open page without a click, and the best-config download is the winner's JSON."""

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
from tests.support.browser_harness import browser_page, chromium, console_data_dir, console_server, open_console  # noqa: F401

pytestmark = pytest.mark.browser

LIVE_TIMEOUT_MS = 120_000


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
    study, _, _ = start_study(ops, settings, spec, actor="browser-test")  # a real detached worker
    # the page only polls: reload once to leave the empty state, then no more clicks
    open_console(browser_page, console_server.url, "tuning")
    page.get_by_role("heading", name=re.compile(rf"^Study {study.id}:")).wait_for(timeout=LIVE_TIMEOUT_MS)
    page.get_by_text(re.compile(r"finished · 5/5 trials")).wait_for(timeout=LIVE_TIMEOUT_MS)
    page.get_by_text("Winner, hold-out").wait_for(timeout=LIVE_TIMEOUT_MS)

    button = page.get_by_test_id("stDownloadButton").filter(has_text="Download best config")
    with page.expect_download(timeout=30_000) as info:
        button.click()
    dl = info.value
    assert re.fullmatch(rf"discovery-tuning-study-{study.id}-best-config-\d{{8}}-\d{{4}}\.json", dl.suggested_filename)
    data = json.loads(dl.path().read_text(encoding="utf-8"))
    winner = get_study(ops, study.id).result["winner"]
    assert ParameterConfig.from_dict(data).hash() == winner["config_hash"]
    assert page.locator('[data-testid="stException"]').count() == 0
