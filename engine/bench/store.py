"""The store benchmark: `python -m engine bench store --entities N` (and the Cache page's job).

One run measures, for N entities and (by default) 10×N, each in its own
temporary data dir with its own embedded FalkorDB (never the user's):

* batch read of every hypothesis of the N entities: chunked and parallel
  (AsyncBatchGraph, chunk 100, 10 in flight) vs the same read as one query
  vs one GraphStore query per entity;
* hot get latency p50/p99 (one call timed at a time): HypothesisCache.get,
  CachedGraph.get_hypotheses (cache + list copy), a bare cachetools TTLCache
  get, and a FalkorDB point read (GraphStore.get_hypotheses);
* batch update of every hypothesis' confidence (one ACCEPT each) vs row by
  row (read, model.apply_decision, save), the latter timed on a sample of
  rows and reported per row;
* hit rate of a Zipf (s = 1.1) access trace of N reads through a
  CachedGraph, cold vs after one warming round planned from an earlier
  trace of 2×N reads (the same popularity ranking);
* peak RSS of this process and of the FalkorDB server (VmHWM).

Timings are medians of ``repeats`` runs where repeating is cheap. Nothing
is asserted: the figures are printed with the issue's aims next to them.
"""

from __future__ import annotations

import gc
import resource
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cachetools

from engine.cache.cached_graph import CachedGraph, hyps_key
from engine.cache.lru import HypothesisCache
from engine.cache.warmer import CacheWarmer, WarmerConfig, replay_trace, zipf_trace
from engine.catalogue.generator import DEMO_SEED, seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.access import Actor
from engine.core.errors import ConfigError
from engine.core.model import Decision, apply_decision
from engine.core.percentiles import percentile_sorted
from engine.core.settings import Settings
from engine.jobs.queue import JobStore, launch_worker
from engine.store import falkor
from engine.store.access import authorize
from engine.store.batch import AsyncBatchGraph, DecisionUpdate, run_batch
from engine.store.graph import GraphStore

Progress = Callable[[int, int, str], None]

ZIPF_S = 1.1
HOT_GETS = 100_000
POINT_READS = 1_000
ROW_SAMPLE = 1_000
WARM_SHARE = 50  # % of the entities a warming round may load in the Zipf replay


@dataclass
class SizeResult:
    """Every figure measured at one size (seconds unless named otherwise)."""

    entities: int
    hypotheses: int = 0
    seed_s: float = 0.0
    read_chunked_s: float = 0.0
    read_one_query_s: float = 0.0
    read_per_entity_s: float = 0.0
    read_chunks: int = 0
    read_success_rate: float = 0.0
    hot_cache_p50_us: float = 0.0
    hot_cache_p99_us: float = 0.0
    hot_cached_graph_p50_us: float = 0.0
    hot_cached_graph_p99_us: float = 0.0
    hot_cachetools_p50_us: float = 0.0
    hot_cachetools_p99_us: float = 0.0
    point_read_p50_us: float = 0.0
    point_read_p99_us: float = 0.0
    timer_overhead_us: float = 0.0
    update_batch_s: float = 0.0
    update_batch_rows: int = 0
    update_batch_success_rate: float = 0.0
    update_row_s_per_row: float = 0.0
    update_row_sample: int = 0
    zipf_accesses: int = 0
    zipf_history: int = 0
    zipf_cold_hit_rate: float = 0.0
    zipf_warm_hit_rate: float = 0.0
    zipf_warmed_entities: int = 0
    process_peak_rss_mb: float = 0.0
    server_peak_rss_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def update_row_by_row_s(self) -> float:
        """Row by row for every row, at the measured per-row rate."""
        return self.update_row_s_per_row * self.update_batch_rows

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["update_row_by_row_s"] = self.update_row_by_row_s
        return d


# --------------------------------------------------------------------------- helpers


def _median_time(fn: Callable[[], Any], repeats: int, timer: Callable[[], float] = time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        t0 = timer()
        fn()
        times.append(timer() - t0)
    return statistics.median(times)


def _percentiles_us(samples_ns: list[int]) -> tuple[float, float]:
    samples_ns.sort()
    p50, p99 = percentile_sorted(samples_ns, 50), percentile_sorted(samples_ns, 99)
    return (p50 or 0.0) / 1000.0, (p99 or 0.0) / 1000.0


def _time_calls(fn: Callable[[Any], Any], keys: list[Any]) -> list[int]:
    clock = time.perf_counter_ns
    out = [0] * len(keys)
    for i, k in enumerate(keys):
        t0 = clock()
        fn(k)
        out[i] = clock() - t0
    return out


def _peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident set (VmHWM) of ``pid`` (default: this process) in MiB; 0.0 when unknown."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


# --------------------------------------------------------------------------- one size


def bench_size(
    n: int,
    *,
    repeats: int = 3,
    row_sample: int = ROW_SAMPLE,
    hot_gets: int | None = None,
    seed: int = DEMO_SEED,
    progress: Progress | None = None,
    step0: int = 0,
    total_steps: int = 0,
    workdir: Path | None = None,
) -> SizeResult:
    """Every figure at ``n`` entities, in a fresh temporary data dir that is removed afterwards."""
    say = progress or (lambda done, total, message: None)
    total = total_steps or STEPS_PER_SIZE
    tmp = Path(tempfile.mkdtemp(prefix=f"discovery-bench-{n}-", dir=workdir))
    settings = Settings(data_dir=tmp / "data", falkordb_url=None, graph_name="bench").ensure_dirs()
    res = SizeResult(entities=n)
    graph = None
    try:
        graph = GraphStore.open(settings)
        say(step0, total, f"{n:,} entities: seeding")
        report = seed_catalogue(graph, n, seed, load_templates())
        res.seed_s, res.hypotheses = report.seconds, report.hypotheses
        ids = graph.list_entity_ids()

        # ---- batch reads
        say(step0 + 1, total, f"{n:,} entities: batch reads")

        async def chunked(b: AsyncBatchGraph):
            await b.read_hypotheses(ids[:200])  # warm the connections
            times, last = [], None
            for _ in range(repeats):
                t0 = time.perf_counter()
                last = await b.read_hypotheses(ids)
                times.append(time.perf_counter() - t0)
            one = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                await b.read_hypotheses(ids, chunk_size=len(ids), concurrency=1)
                one.append(time.perf_counter() - t0)
            return statistics.median(times), statistics.median(one), last

        res.read_chunked_s, res.read_one_query_s, last = run_batch(settings, chunked)
        res.read_chunks, res.read_success_rate = last.chunks, last.success_rate
        got = sum(len(v) for v in last.values.values())
        if got != res.hypotheses:
            raise ConfigError(f"batch read returned {got} hypotheses, expected {res.hypotheses}")
        res.read_per_entity_s = _median_time(lambda: [graph.get_hypotheses(e) for e in ids], 1)

        # ---- hot gets
        say(step0 + 2, total, f"{n:,} entities: hot gets")
        cache = HypothesisCache(max_bytes=1 << 30, ttl_s=3600)
        cached = CachedGraph(graph, cache)
        hot_ids = ids[: min(len(ids), 1000)]
        cached.get_hypotheses_many(hot_ids)
        bare: cachetools.TTLCache[tuple[str, str], Any] = cachetools.TTLCache(maxsize=1 << 20, ttl=3600)
        for e in hot_ids:
            bare[hyps_key(e)] = cache.peek(hyps_key(e))
        trace = zipf_trace(hot_ids, hot_gets or HOT_GETS, s=ZIPF_S, seed=seed)
        keys = [hyps_key(e) for e in trace]
        gc.collect()
        overhead = _time_calls(lambda k: None, keys[:20_000])
        res.timer_overhead_us = statistics.median(overhead) / 1000.0
        res.hot_cache_p50_us, res.hot_cache_p99_us = _percentiles_us(_time_calls(cache.get, keys))
        res.hot_cachetools_p50_us, res.hot_cachetools_p99_us = _percentiles_us(_time_calls(bare.get, keys))
        res.hot_cached_graph_p50_us, res.hot_cached_graph_p99_us = _percentiles_us(
            _time_calls(cached.get_hypotheses, trace)
        )
        res.point_read_p50_us, res.point_read_p99_us = _percentiles_us(
            _time_calls(graph.get_hypotheses, trace[:POINT_READS])
        )

        # ---- batch update vs row by row
        say(step0 + 3, total, f"{n:,} entities: batch update")
        hyp_ids = [h.id for hs in last.values.values() for h in hs]
        now = time.time()
        t0 = time.perf_counter()
        upd = run_batch(
            settings, lambda b: b.apply_decisions([DecisionUpdate(h, Decision.ACCEPT) for h in hyp_ids], now=now)
        )
        res.update_batch_s = time.perf_counter() - t0
        res.update_batch_rows, res.update_batch_success_rate = len(hyp_ids), upd.success_rate
        sample = hyp_ids[: min(row_sample, len(hyp_ids))]
        t0 = time.perf_counter()
        for hid in sample:
            h = graph.get_hypothesis(hid)
            graph.save_hypotheses([apply_decision(h, Decision.ACCEPT, now)])
        res.update_row_s_per_row = (time.perf_counter() - t0) / max(len(sample), 1)
        res.update_row_sample = len(sample)

        # ---- Zipf trace: cold vs warmed
        say(step0 + 4, total, f"{n:,} entities: Zipf trace cold vs warmed")
        accesses = zipf_trace(ids, 3 * n, s=ZIPF_S, seed=seed + 1)
        history, trace = accesses[: 2 * n], accesses[2 * n :]
        replay_cache = CachedGraph(graph, HypothesisCache(max_bytes=1 << 30, ttl_s=3600, access_log=2 * n + 10))
        cold = replay_trace(replay_cache, trace, history=history)
        warmer = CacheWarmer(
            replay_cache, config=WarmerConfig(max_entities=max(1, n * WARM_SHARE // 100), recent_limit=n)
        )
        warm = replay_trace(replay_cache, trace, history=history, warmer=warmer)
        res.zipf_accesses, res.zipf_history = len(trace), len(history)
        res.zipf_cold_hit_rate, res.zipf_warm_hit_rate = cold.hit_rate, warm.hit_rate
        res.zipf_warmed_entities = warm.warmed_entities

        # ---- memory
        say(step0 + 5, total, f"{n:,} entities: memory")
        res.process_peak_rss_mb = _peak_rss_mb()
        res.server_peak_rss_mb = _peak_rss_mb(falkor.server_status(settings).pid)
        return res
    finally:
        if graph is not None:
            graph.close()
        falkor.stop_embedded_server(settings)
        shutil.rmtree(tmp, ignore_errors=True)


STEPS_PER_SIZE = 6


def run_store_bench(
    n: int, *, growth: int = 10, repeats: int = 3, row_sample: int = ROW_SAMPLE, progress: Progress | None = None,
    workdir: Path | None = None,
) -> list[SizeResult]:  # fmt: skip
    """Figures at ``n`` entities and, if ``growth`` > 1, at ``growth``×n."""
    if not isinstance(n, int) or n < 10:
        raise ConfigError(f"--entities must be a whole number >= 10 (got {n!r})")
    if growth not in (0, 1) and growth < 2:
        raise ConfigError(f"--growth must be 1 (off) or >= 2 (got {growth!r})")
    sizes = [n] + ([n * growth] if growth > 1 else [])
    total = STEPS_PER_SIZE * len(sizes)
    out = []
    for i, size in enumerate(sizes):
        out.append(bench_size(size, repeats=repeats, row_sample=row_sample, progress=progress,
                              step0=i * STEPS_PER_SIZE, total_steps=total, workdir=workdir))  # fmt: skip
    if progress:
        progress(total, total, "done")
    return out


# --------------------------------------------------------------------------- report


def _ratio(a: float, b: float) -> str:
    return f"{a / b:,.1f}x" if b > 0 else "n/a"


def _ms(s: float) -> str:
    return f"{s * 1000:,.1f} ms"


def chart_rows(results: list[SizeResult]) -> list[dict[str, Any]]:
    """Long-form rows (entities, figure, seconds) for a chart of the timed figures."""
    rows = []
    for r in results:
        for label, value in (
            ("batch read: chunked parallel", r.read_chunked_s),
            ("batch read: one query", r.read_one_query_s),
            ("batch read: one query per entity", r.read_per_entity_s),
            ("update: batch", r.update_batch_s),
            ("update: row by row", r.update_row_by_row_s),
        ):
            rows.append({"entities": r.entities, "figure": label, "seconds": value})
    return rows


def format_report(results: list[SizeResult]) -> str:
    lines = []
    for r in results:
        per_row = r.update_row_s_per_row
        lines += [
            f"== {r.entities:,} entities, {r.hypotheses:,} hypotheses (seeded in {r.seed_s:.1f} s) ==",
            f"batch read, all hypotheses    chunked parallel (chunk 100, 10 in flight, {r.read_chunks} chunks): "
            f"{_ms(r.read_chunked_s)}   [seed target < 5 s, aim < 0.5 s: "
            f"{'met' if r.read_chunked_s < 0.5 else 'NOT met'}]",
            f"                              one query: {_ms(r.read_one_query_s)} "
            f"({_ratio(r.read_one_query_s, r.read_chunked_s)} the chunked time)",
            f"                              one query per entity: {_ms(r.read_per_entity_s)} "
            f"({_ratio(r.read_per_entity_s, r.read_chunked_s)} the chunked time)",
            f"hot get p50 / p99             HypothesisCache.get: {r.hot_cache_p50_us:.2f} / "
            f"{r.hot_cache_p99_us:.2f} µs"
            f"   [aim p99 < 50 µs: {'met' if r.hot_cache_p99_us < 50 else 'NOT met'}]",
            f"                              bare cachetools TTLCache.get: {r.hot_cachetools_p50_us:.2f} / "
            f"{r.hot_cachetools_p99_us:.2f} µs  -> cache/bare p50 "
            f"{_ratio(r.hot_cache_p50_us, r.hot_cachetools_p50_us)}, "
            f"p99 {_ratio(r.hot_cache_p99_us, r.hot_cachetools_p99_us)}   [aim within 3x: "
            f"{'met' if r.hot_cache_p50_us <= 3 * r.hot_cachetools_p50_us else 'NOT met'}]",
            f"                              CachedGraph.get_hypotheses (cache + list copy): "
            f"{r.hot_cached_graph_p50_us:.2f} / {r.hot_cached_graph_p99_us:.2f} µs",
            f"                              FalkorDB point read (GraphStore.get_hypotheses): "
            f"{r.point_read_p50_us:,.0f} / {r.point_read_p99_us:,.0f} µs  -> "
            f"{_ratio(r.point_read_p50_us, r.hot_cache_p50_us)} the cached p50",
            f"                              (each call timed alone; timer overhead {r.timer_overhead_us:.2f} µs "
            "included)",
            f"update every confidence       batch ({r.update_batch_rows:,} rows, read + apply_decision + CAS write): "
            f"{_ms(r.update_batch_s)} ({r.update_batch_success_rate:.1%} ok)",
            f"                              row by row: {per_row * 1000:.3f} ms/row measured on "
            f"{r.update_row_sample:,} rows "
            f"-> {r.update_row_by_row_s:,.1f} s for all  -> batch is "
            f"{_ratio(r.update_row_by_row_s, r.update_batch_s)} faster   [aim >= 20x: "
            f"{'met' if r.update_batch_s > 0 and r.update_row_by_row_s / r.update_batch_s >= 20 else 'NOT met'}]",
            f"Zipf s={ZIPF_S} trace             {r.zipf_accesses:,} reads after a {r.zipf_history:,}-read history: "
            f"cold {r.zipf_cold_hit_rate:.1%}, warmed ({r.zipf_warmed_entities:,} entities; "
            f"budget {WARM_SHARE}% of the catalogue) {r.zipf_warm_hit_rate:.1%}"
            f"   [seed target > 70%, aim >= 90%: {'met' if r.zipf_warm_hit_rate >= 0.9 else 'NOT met'}]",
            f"peak memory (RSS)             this process {r.process_peak_rss_mb:,.0f} MiB, FalkorDB server "
            f"{r.server_peak_rss_mb:,.0f} MiB   [aim process < 500 MiB: "
            f"{'met' if r.process_peak_rss_mb < 500 else 'NOT met'}]",
            "",
        ]
    if len(results) == 2:
        a, b = results
        k = b.entities / a.entities
        lines.append(
            f"== growth {a.entities:,} -> {b.entities:,} entities "
            f"({k:g}x the entities; aim <= {1.2 * k:g}x the time) =="
        )
        for label, x, y in (
            ("batch read, chunked parallel", a.read_chunked_s, b.read_chunked_s),
            ("batch read, one query", a.read_one_query_s, b.read_one_query_s),
            ("batch read, one query per entity", a.read_per_entity_s, b.read_per_entity_s),
            ("batch update", a.update_batch_s, b.update_batch_s),
            ("hot get p99 (HypothesisCache)", a.hot_cache_p99_us, b.hot_cache_p99_us),
            ("FalkorDB point read p50", a.point_read_p50_us, b.point_read_p50_us),
            ("FalkorDB server peak RSS", a.server_peak_rss_mb, b.server_peak_rss_mb),
        ):
            verdict = (
                ""
                if "RSS" in label or "p99" in label or "p50" in label
                else ("   [met]" if y <= 1.2 * k * x else "   [NOT met]")
            )
            lines.append(f"  {label:<34} {_ratio(y, x)}{verdict}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- as a job (the Cache page)

#: the job kind, spelled "module:function" so any worker resolves it without a registry entry
JOB_KIND = "bench.store"
HEARTBEAT_S = 10.0


def run_bench_job(ctx: Any) -> dict[str, Any]:
    """Job handler: params {entities, growth, repeats, row_sample}; progress per step; the figures as result.

    A benchmark is cheap to redo, so a resumed job simply runs again from the start.
    """
    p = ctx.params
    entities = int(p.get("entities", 3400))
    growth = int(p.get("growth", 1))

    def progress(done: int, total: int, message: str) -> None:
        ctx.checkpoint(done=done, total=total, message=message)  # honours pause and cancel

    # a step can take longer than the runner's staleness limit (seeding 34,000 entities): keep beating
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                ctx.heartbeat()
            except Exception:  # noqa: BLE001 - the next checkpoint reports a lost lease properly
                return

    beater = threading.Thread(target=beat, name="bench-heartbeat", daemon=True)
    if hasattr(ctx, "heartbeat"):
        beater.start()
    try:
        results = run_store_bench(entities, growth=growth, repeats=int(p.get("repeats", 3)),
                                  row_sample=int(p.get("row_sample", ROW_SAMPLE)), progress=progress)  # fmt: skip
    finally:
        stop.set()
    return {
        "results": [r.to_dict() for r in results],
        "chart": chart_rows(results),
        "report": format_report(results),
    }


def submit_bench_job(settings: Settings, ops: Any, *, entities: int, growth: int = 1, actor: Actor) -> int:
    """Queue the benchmark and start a worker process for it (operator, as warming: it loads the store);
    returns the job id (audited)."""
    who = authorize(ops, actor, "cache.warm")
    if not isinstance(entities, int) or entities < 10:
        raise ConfigError(f"benchmark entities must be a whole number >= 10 (got {entities!r})")
    if growth not in (1,) and growth < 2:
        raise ConfigError(f"benchmark growth must be 1 (off) or >= 2 (got {growth!r})")
    job = JobStore(ops).submit(JOB_KIND, {"entities": entities, "growth": growth}, actor=str(who))
    ops.audit(who, "cache.bench", f"job:{job.id}", {"entities": entities, "growth": growth})
    launch_worker(settings, job.id)
    return job.id


__all__ = [
    "JOB_KIND",
    "SizeResult",
    "bench_size",
    "chart_rows",
    "format_report",
    "run_bench_job",
    "run_store_bench",
    "submit_bench_job",
]
