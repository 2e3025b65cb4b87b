"""AppTest of the Cache page: the console cache's statistics, Warm now, Clear cache, the warming
interval, and the store benchmark run as a job by a real worker process with its chart."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.bench import store as bench_store
from engine.cache import service as cache_service
from engine.jobs.queue import JobState, JobStore, wait_for
from engine.store.opsdb import open_ops_db
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
    assert any(as_shown(s.value).startswith("Warm now: ") and "entries loaded" in s.value for s in at.success)
    assert all(("hyps", e) in svc.cache for e in ids)  # what operators read came back first
    assert metric(at, "Entries") != "0"
    assert len(at.dataframe) >= 1  # the warm-run history
    svc.cached.get_hypotheses(ids[0])
    at = run_page()
    assert "hyps/" + ids[0] in at.dataframe[0].value["key"].tolist()
    assert open_ops_db(settings).list_audit(1)[0]["action"] == "cache.warm"
    assert open_ops_db(settings).list_audit(1)[0]["actor"] == "console:operator"  # the sidebar's Operator
    at.text_input(key="operator_name").input("ana").run()
    at.button(key="cache_clear").click().run()
    assert any("Clear cache:" in as_shown(s.value) for s in at.success)
    assert open_ops_db(settings).list_audit(1, action="cache.clear")[0]["actor"] == "console:ana"
    assert metric(at, "Entries") == "0"


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
    assert not at.exception and any("a worker process is starting" in as_shown(s.value) for s in at.success)
    (job,) = JobStore(ops).list(kind=bench_store.JOB_KIND)
    job = wait_for(JobStore(ops), job.id, until=lambda j: j.state.is_terminal() or j.state == JobState.DEAD,
                   timeout_s=240)  # fmt: skip
    assert job.state == JobState.SUCCEEDED, (job.state, job.error)
    assert [r["entities"] for r in job.result["results"]] == [12]
    at = run_page()  # a fresh session finds the latest benchmark
    assert any(f"Benchmark job {job.id} finished" in as_shown(s.value) for s in at.success)
    (chart,) = at.get("vega_lite_chart")
    assert '"type": "log"' in chart.proto.spec and "chunked parallel" in str(chart.proto)
    table = [d for d in at.dataframe if "batch read chunked (ms)" in d.value.columns]
    assert len(table) == 1 and table[0].value["entities"].tolist() == [12]
    assert ops.list_audit(5, action="cache.bench")[0]["target"] == f"job:{job.id}"
