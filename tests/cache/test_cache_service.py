"""CacheService (the console's cache reachable through the OpsDB), the `cache` CLI and the store
benchmark (tiny sizes: the figures are not asserted, only that they are measured and consistent)."""

from __future__ import annotations

import json

import pytest

from engine.bench.store import bench_size, chart_rows, format_report, run_bench_job, run_store_bench
from engine.cache import service as cache_service
from engine.cache.cached_graph import hyps_key
from engine.cache.service import CacheService, published_stats, request, set_warm_interval, warm_interval
from engine.cache.warmer import list_warm_runs
from engine.cli.main import main
from engine.core.errors import ConfigError, StoreUnavailable
from tests.support.actors import ADMIN, person
from tests.support.graphs import seed


@pytest.fixture
def data_dir(settings, monkeypatch):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    return settings


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_tick_publishes_statistics(graph, ops):
    seed(graph, 3)
    svc = CacheService(graph, ops)
    svc.cached.get_hypotheses("club-001")
    svc.cached.get_hypotheses("club-001")
    svc.tick()
    snap = published_stats(ops)
    assert snap["cache"]["hits"] == 1 and snap["cache"]["misses"] == 1 and snap["cache"]["items"] == 1
    assert snap["most_accessed"][0] == {"key": "hyps/club-001", "entity_id": "club-001", "hits": 1,
                                        "bytes": snap["most_accessed"][0]["bytes"]}  # fmt: skip
    assert snap["error"] is None and snap["warmer"]["interval_s"] == 300.0


def test_requests_are_carried_out_once_and_old_ones_are_not_replayed(graph, ops):
    seed(graph, 3)
    old = request(ops, "clear", actor=ADMIN)  # left before the service started
    svc = CacheService(graph, ops)
    svc.cached.get_hypotheses("club-000")
    svc.tick()
    assert hyps_key("club-000") in svc.cache  # the old clear was not replayed
    rid = request(ops, "clear", actor=ADMIN)
    svc.tick()
    assert hyps_key("club-000") not in svc.cache and published_stats(ops)["handled_request"] == rid != old
    svc.cached.get_hypotheses("club-000")
    svc.tick()
    assert hyps_key("club-000") in svc.cache  # handled once
    svc.cached.clear()
    request(ops, "warm", actor=ADMIN)  # the access log remembers club-000
    svc.tick()
    assert hyps_key("club-000") in svc.cache
    assert list_warm_runs(ops)[0]["trigger"] == "request:test-admin"
    assert [a["action"] for a in ops.list_audit(5)][:3] == ["cache.warm", "cache.clear", "cache.clear"]


def test_periodic_warming_follows_the_interval_setting(graph, ops):
    seed(graph, 2)
    clock = Clock()
    svc = CacheService(graph, ops, clock=clock)
    set_warm_interval(ops, 60, actor=ADMIN)
    svc.tick()
    assert svc.warmer.stats().rounds == 0
    clock.t += 61
    svc.tick()
    assert svc.warmer.stats().rounds == 1 and svc.warmer.stats().last.trigger == "periodic"
    set_warm_interval(ops, 0, actor=ADMIN)
    clock.t += 1000
    svc.tick()
    assert svc.warmer.stats().rounds == 1 and warm_interval(ops) == 0
    with pytest.raises(ConfigError, match="warm interval"):
        set_warm_interval(ops, 2, actor=ADMIN)
    with pytest.raises(ConfigError, match="unknown cache action"):
        request(ops, "explode", actor=ADMIN)


def test_a_store_error_is_published_not_raised(graph, ops):
    seed(graph, 1)
    svc = CacheService(graph, ops)

    def broken(_trigger="x"):
        raise ConnectionError("store gone")

    svc.warmer.warm_once = broken
    request(ops, "warm", actor=ADMIN)
    svc.tick()
    assert published_stats(ops)["error"] == "store gone"


def test_warm_now_and_clear_act_for_the_actor_and_are_audited(graph, ops):
    seed(graph, 2)
    svc = CacheService(graph, ops)
    svc.cached.get_hypotheses("club-000")
    svc.cached.clear()
    ana = person(ops, "ana@example.com", "operator")
    report = cache_service.warm_now(svc, ops, actor=ana)
    assert report.loaded >= 1 and hyps_key("club-000") in svc.cache
    assert list_warm_runs(ops)[0]["trigger"] == "ana@example.com"
    n = cache_service.clear(svc, ops, actor=ana)
    assert n == report.loaded + report.already_cached and hyps_key("club-000") not in svc.cache
    audit = ops.list_audit(2)
    assert [(a["action"], a["actor"]) for a in audit] == [
        ("cache.clear", "ana@example.com"),
        ("cache.warm", "ana@example.com"),
    ]
    assert {(a["actor_email"], a["actor_role"]) for a in audit} == {("ana@example.com", "operator")}
    assert audit[0]["details"] == {"entries": n}
    assert audit[1]["details"] == {"planned": report.planned, "loaded": report.loaded}


def test_warm_now_names_a_store_that_does_not_answer(graph, ops):
    svc = CacheService(graph, ops)

    def broken(_trigger="x"):
        raise ConnectionError("store gone")

    svc.warmer.warm_once = broken
    with pytest.raises(StoreUnavailable, match=r"the store did not answer \(store gone\)"):
        cache_service.warm_now(svc, ops, actor=ADMIN)
    assert not ops.list_audit(5, action="cache.warm")


# ------------------------------------------------------------------ CLI


def test_cache_stats_before_and_after_a_console_published(data_dir, graph, ops, capsys):
    assert main(["cache", "stats"]) == 0
    assert "no cache has published" in capsys.readouterr().out
    seed(graph, 2)
    svc = CacheService(graph, ops)
    svc.cached.get_hypotheses("club-001")
    svc.cached.get_hypotheses("club-001")
    svc.tick()
    assert main(["cache", "stats"]) == 0
    out = capsys.readouterr().out
    assert "hit rate   50.0%" in out and "hyps/club-001" in out
    assert main(["cache", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"]["hits"] == 1


def test_cache_warm_and_clear_reach_a_running_console(data_dir, graph, ops, capsys):
    seed(graph, 2)
    svc = CacheService(graph, ops, poll_s=0.05).start()
    try:
        svc.cached.get_hypotheses("club-000")
        assert main(["cache", "clear", "--wait", "10"]) == 0
        assert "cleared its cache" in capsys.readouterr().out
        assert hyps_key("club-000") not in svc.cache
        assert main(["cache", "warm", "--wait", "10"]) == 0
        assert "warmed its cache" in capsys.readouterr().out
        assert hyps_key("club-000") in svc.cache
    finally:
        svc.stop()
    assert main(["cache", "warm", "--wait", "0.3"]) == 2  # nobody is listening any more
    assert "no console handled request" in capsys.readouterr().err


def test_cache_warm_interval_and_plan(data_dir, graph, capsys):
    seed(graph, 4)
    assert main(["cache", "warm", "--interval", "120"]) == 0
    assert "every 120 s" in capsys.readouterr().out
    assert main(["cache", "warm", "--interval", "1"]) == 2
    assert "error: warm interval" in capsys.readouterr().err
    assert main(["cache", "warm", "--plan"]) == 0
    assert "a warming round now would load" in capsys.readouterr().out


# ------------------------------------------------------------------ the benchmark


def test_bench_measures_every_figure_on_a_small_graph(tmp_path):
    steps = []
    r = bench_size(40, repeats=1, row_sample=20, hot_gets=2000, workdir=tmp_path,
                   progress=lambda d, t, m: steps.append((d, m)))  # fmt: skip
    assert r.hypotheses > 40 and r.read_success_rate == 1.0 and r.update_batch_success_rate == 1.0
    assert r.update_batch_rows == r.hypotheses and r.update_row_sample == 20
    for name in ("read_chunked_s", "read_one_query_s", "read_per_entity_s", "hot_cache_p50_us", "hot_cache_p99_us",
                 "hot_cachetools_p50_us", "point_read_p50_us", "update_batch_s", "update_row_s_per_row",
                 "process_peak_rss_mb", "server_peak_rss_mb"):  # fmt: skip
        assert getattr(r, name) > 0, name
    assert r.hot_cache_p50_us <= r.hot_cache_p99_us
    assert 0 <= r.zipf_cold_hit_rate <= r.zipf_warm_hit_rate <= 1 and r.zipf_accesses == 40
    assert [m for _, m in steps][0] == "40 entities: seeding"
    assert list(tmp_path.iterdir()) == []  # its temp data dir is gone (and its server stopped)
    text = format_report([r])
    assert "batch read, all hypotheses" in text and "Zipf s=1.1" in text and "peak memory" in text
    assert {row["figure"] for row in chart_rows([r])} >= {"batch read: chunked parallel", "update: row by row"}


def test_bench_job_reports_progress_and_growth(tmp_path, monkeypatch):
    import engine.bench.store as bs

    monkeypatch.setattr(bs, "HOT_GETS", 1000)
    monkeypatch.setattr(bs, "POINT_READS", 20)

    class Ctx:
        params = {"entities": 15, "growth": 2, "repeats": 1, "row_sample": 10}
        seen: list = []

        def checkpoint(self, *, done, total, message):
            self.seen.append((done, total, message))

    ctx = Ctx()
    out = run_bench_job(ctx)
    assert [r["entities"] for r in out["results"]] == [15, 30]
    assert ctx.seen[-1] == (12, 12, "done") and "growth 15 -> 30 entities" in out["report"]
    assert len(out["chart"]) == 10
    json.dumps(out)  # a job result must be JSON
    with pytest.raises(ConfigError):
        run_store_bench(5)
