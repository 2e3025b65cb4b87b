"""AppTest of the Cache page: the console cache's statistics, Warm now, Clear cache, the warming
interval, and the store benchmark run as a job by a real worker process with its chart."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console import cache_view as cv
from engine.bench import store as bench_store
from engine.cache import service as cache_service
from engine.cache.lru import AccessCount
from engine.cache.warmer import WarmReport
from engine.jobs.queue import JobState, JobStore, wait_for
from engine.store.opsdb import open_ops_db
from tests.support.actors import VIEWER
from tests.support.console_env import as_shown, seeded_console_env

PAGE = Path(__file__).resolve().parents[2] / "pages" / "cache.py"
TIMEOUT = 60


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    with seeded_console_env(tmp_path_factory, "cache-page", 30, 7) as (settings, store):
        yield settings, store


def run_page() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert len(values) == 1, (label, values)
    return values[0]


def test_tiles_are_short_and_the_detail_is_in_their_help():
    from engine.cache.lru import CacheStats

    stats = CacheStats(5, 5, 0, 0, 0, 0, 0, 0, 12, int(4.49 * 1048576), 64 * 1048576, None, 300.0)
    tiles = {label: (value, help_) for label, value, help_ in cv.stat_tiles(stats)}
    assert tiles["Size"][0] == "4.5 MiB" and "4,708,106 bytes of 64.0 MiB" in tiles["Size"][1]
    assert all(len(value) <= 8 for value, _ in tiles.values()), tiles
    assert [cv.size_text(n) for n in (0, 2048, 3 * 1048576)] == ["0 B", "2 KiB", "3.0 MiB"]


def test_most_accessed_lists_only_entries_with_hits():
    items = [AccessCount(("hyps", "a"), 3, "a", 10), AccessCount(("ent", "b"), 0, "b", 10)]
    assert cv.most_accessed_frame(items)["key"].tolist() == ["hyps/a"]
    assert "Nothing cached yet" in cv.most_accessed_empty(0)
    assert "No hits yet: 12 cache entries" in cv.most_accessed_empty(12)


def test_warm_message_keeps_entities_and_entries_apart():
    report = WarmReport(0.0, "manual", 1000, 2, 999, 0.005)
    assert cv.warm_message(report) == (
        "Warm now: 1,000 entities planned, 999 of them already cached; loading the rest added 2 cache entries in 5 ms"
    )


def test_bench_chart_draws_zero_and_names_every_figure_apart():
    rows = [
        {"entities": 12, "figure": f, "seconds": v}
        for f, v in zip(cv.BENCH_FIGURE_LABELS, (0.0, 0.01, 0.2, 0.0005, 3.0))
    ]
    spec = cv.bench_chart(rows).to_dict()
    assert spec["encoding"]["x"]["scale"]["type"] == "symlog"  # a 0 ms figure has a place on the scale
    assert spec["encoding"]["y"]["axis"]["labelLimit"] == 0  # labels never cut
    labels = [r["figure"] for r in spec["datasets"][next(iter(spec["datasets"]))]]
    assert len(labels) == 5 and len(set(labels)) == 5


def test_page_shows_the_console_cache_and_warm_now_fills_it(seeded):
    settings, store = seeded
    at = run_page()
    assert metric(at, "Entries") == "0" and metric(at, "Hit rate") == "0.0%"
    assert any("Nothing cached yet" in c.value for c in at.caption)
    # operators read some entities through the console's cache (as the Hypotheses page would)
    from console.services import _shared_services, get_cache_service

    services = _shared_services(str(settings.data_dir), None, settings.graph_name)
    svc = get_cache_service(services)
    ids = store.list_entity_ids()[:3]
    for eid in ids + ids[:1]:
        svc.cached.get_hypotheses(eid)
    svc.cached.clear()
    at = run_page()
    at.button(key="cache_warm").click().run()
    assert not at.exception
    warmed = [as_shown(s.value) for s in at.success if as_shown(s.value).startswith("Warm now: ")]
    assert warmed and "entities planned" in warmed[0] and "cache entries" in warmed[0], warmed
    assert all(("hyps", e) in svc.cache for e in ids)  # what operators read came back first
    assert metric(at, "Entries") != "0"
    assert len(at.dataframe) >= 1  # the warm-run history
    # warmed entries were never read from the cache: Most accessed lists none of them, and says why
    assert not [d for d in at.dataframe if "hits" in d.value.columns]
    assert any("No hits yet" in c.value for c in at.caption)
    svc.cached.get_hypotheses(ids[0])
    at = run_page()
    (accessed,) = [d.value for d in at.dataframe if "hits" in d.value.columns]
    assert accessed["key"].tolist() == ["hyps/" + ids[0]] and (accessed["hits"] > 0).all()
    assert open_ops_db(settings).list_audit(1)[0]["action"] == "cache.warm"
    assert open_ops_db(settings).list_audit(1)[0]["actor"] == "local"  # the tab's identity, never "console"
    at.button(key="cache_clear").click().run()
    assert any("Clear cache:" in as_shown(s.value) for s in at.success)
    assert open_ops_db(settings).list_audit(1, action="cache.clear")[0]["actor"] == "local"
    assert metric(at, "Entries") == "0"


def test_a_viewer_sees_the_cache_buttons_disabled_with_the_role_they_need(seeded, monkeypatch):
    monkeypatch.setattr("console.identity.actor", lambda: VIEWER)
    at = run_page()
    for key in ("cache_warm", "cache_clear", "cache_save_interval", "cache_bench_run"):
        assert at.button(key=key).disabled and at.button(key=key).proto.help == "needs operator", key


def test_interval_is_saved_and_validated(seeded):
    settings, _ = seeded
    at = run_page()
    at.number_input(key="cache_interval").set_value(120.0).run()
    at.button(key="cache_save_interval").click().run()
    assert any("every 120 s" in as_shown(s.value) for s in at.success)
    assert cache_service.warm_interval(open_ops_db(settings)) == 120.0
    at.number_input(key="cache_interval").set_value(2.0).run()
    at.button(key="cache_save_interval").click().run()
    assert any("warm interval must be" in as_shown(e.value) for e in at.error)


def test_benchmark_runs_in_a_worker_and_the_page_charts_it(seeded):
    settings, _ = seeded
    ops = open_ops_db(settings)
    at = run_page()
    assert any("No benchmark has run yet" in c.value for c in at.caption)
    at.number_input(key="cache_bench_entities").set_value(12).run()
    at.button(key="cache_bench_run").click().run()
    assert not at.exception and any("queued for a worker process" in as_shown(s.value) for s in at.success)
    (job,) = JobStore(ops).list(kind=bench_store.JOB_KIND)
    job = wait_for(JobStore(ops), job.id, until=lambda j: j.state.is_terminal() or j.state == JobState.DEAD,
                   timeout_s=240)  # fmt: skip
    assert job.state == JobState.SUCCEEDED, (job.state, job.error)
    assert [r["entities"] for r in job.result["results"]] == [12]
    at = run_page()  # a fresh session finds the latest benchmark
    assert any(f"Benchmark job {job.id} finished" in as_shown(s.value) for s in at.success)
    (chart,) = at.get("vega_lite_chart")
    assert '"type": "symlog"' in chart.proto.spec and "read all: chunked parallel" in str(chart.proto)
    table = [d for d in at.dataframe if "batch read chunked (ms)" in d.value.columns]
    assert len(table) == 1 and table[0].value["entities"].tolist() == [12]
    assert ops.list_audit(5, action="cache.bench")[0]["target"] == f"job:{job.id}"


def test_cache_page_text_has_no_raw_values(seeded):
    """After a warm and a benchmark: no "None"/"nan"/"inf" and no internal snake_case name on the page."""
    import re

    at = run_page()
    at.button(key="cache_warm").click().run()
    raw = re.compile(r"\b(None|nan|NaN|NaT|inf|Infinity)\b|\b[a-z]+_[a-z_]+\b")
    texts = [as_shown(e.value) for e in (*at.caption, *at.markdown, *at.success, *at.info, *at.warning)]
    texts += [f"{m.label} {m.value}" for m in at.metric]
    texts += [str(v) for d in at.dataframe for c in d.value.columns for v in d.value[c].tolist()]
    texts += [str(c) for d in at.dataframe for c in d.value.columns]
    found = [(m.group(0), t[:100]) for t in texts for m in raw.finditer(t) if "python -m engine" not in t]
    assert not found, found[:10]
