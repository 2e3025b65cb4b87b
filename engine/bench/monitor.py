"""The monitoring benchmark: `python -m engine bench monitor`.

In a temporary data dir (never the user's) records N synthetic run results
with ``record_runs`` in batches (SQLite + JSONL), then times ``summarize``
over three windows, the chart time series, one refresh of the Overview's live
charts against the two full reads it replaced, alert evaluation, building the
7-day report and rendering it in each format. Prints the figures of this one
run; the benchmark times the plumbing, not the engine, so the run results
are random but plausible.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from engine.core.model import Decision, Depth, HopRecord, HopType, HypothesisOutcome, RunResult, Status
from engine.monitoring import alerts as alerts_mod
from engine.monitoring.events import query_events_light, record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.monitoring.reports import FORMATS, build_report, render
from engine.monitoring.windows import default_bucket, series_from_events, summarize, summarize_events, time_series
from engine.store.opsdb import OpsDB


def synthetic_result(i: int, rng: random.Random) -> RunResult:
    """A run result with random but plausible figures (the benchmark times the plumbing, not the engine)."""
    system = "new" if i % 2 else "old"
    hops = rng.randint(2, 12)
    errors = tuple(rng.choice(("timeout", "http_503")) for _ in range(hops) if rng.random() < 0.05)
    patterns = rng.randint(3, 8)
    records = tuple(
        HopRecord(
            iteration=h + 1,
            hypothesis_id=f"e{i}::p{h % patterns}",
            pattern=f"p{h % patterns}",
            category="Ticketing",
            eig=0.1,
            hop_type=HopType.PRESS_RELEASE,
            depth=Depth.SURFACE,
            decision=Decision.NO_PROGRESS if h < len(errors) else rng.choice(list(Decision)),
            delta=0.0,
            confidence_after=0.5,
            cost_usd=0.05,
            latency_s=rng.uniform(0.2, 4.0),
            error=errors[h] if h < len(errors) else None,
        )
        for h in range(hops)
    )
    outcomes = tuple(
        HypothesisOutcome(
            f"e{i}::p{k}",
            f"p{k}",
            "Ticketing",
            rng.random(),
            Status.PROMOTED if rng.random() < 0.1 else Status.ACTIVE,
            0,
        )
        for k in range(patterns)
    )
    return RunResult(
        entity_id=f"e{i % 3400}",
        system=system,
        config_hash=f"cfg-{system}",
        iterations=hops,
        cost_usd=sum(r.cost_usd for r in records),
        hops=records,
        outcomes=outcomes,
        actionable=rng.random() < (0.4 if system == "new" else 0.2),
        stop_reason="bench",
        engine_time_s=rng.uniform(0.0005, 0.01),
        evidence_latency_s=sum(r.latency_s for r in records),
        errors=errors,
    )


def bench_monitor(events: int, batch: int, seed: int, *, print_fn: Callable[[str], None] = print) -> None:
    """Record ``events`` synthetic results (``batch`` per call, figures seeded by ``seed``) and print the timings."""
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    try:
        ops = OpsDB(tmp / "ops.sqlite")
        log = JsonlLog(tmp / "logs" / "metrics.jsonl", max_bytes=5 * 1024 * 1024, backups=3)
        results = [synthetic_result(i, rng) for i in range(events)]
        end = 1_800_000_000.0
        span = 7 * 86400.0
        step = span / max(1, len(results) // batch)
        t_clock = [end - span]

        def clock() -> float:
            t_clock[0] += step
            return t_clock[0]

        t = time.perf_counter()
        for k in range(0, len(results), batch):
            record_runs(ops, results[k : k + batch], run_id="bench", clock=clock, log=log)
        record_s = time.perf_counter() - t
        now = t_clock[0] + 1
        print_fn(
            f"recorded {len(results):,} events in {record_s:.2f}s "
            f"({len(results) / record_s:,.0f} events/s, batches of {batch}; SQLite + JSONL, "
            f"{sum(p.stat().st_size for p in log.files()) / 1e6:.1f} MB kept in {len(log.files())} log files)"
        )
        for label, window in (("1h", 3600.0), ("24h", 86400.0), ("7d", span + 1)):
            t = time.perf_counter()
            s = summarize(ops, window, now=now)
            dt = time.perf_counter() - t
            print_fn(
                f"summarize {label:>3}: {s.overall.runs:>7,} events in {dt * 1000:8.1f} ms"
                f" ({s.overall.runs / dt if dt else 0:,.0f} events/s)"
            )
        t = time.perf_counter()
        points = time_series(ops, span + 1, now=now)
        print_fn(f"time series 7d: {len(points)} points in {(time.perf_counter() - t) * 1000:.1f} ms")
        # what one refresh of the Overview's live charts does (console.live): one light read, both aggregations;
        # against the two full reads of summarize + time_series it replaced
        t = time.perf_counter()
        summarize(ops, span + 1, now=now)
        time_series(ops, span + 1, now=now)
        two_reads_s = time.perf_counter() - t
        t = time.perf_counter()
        light = query_events_light(ops, now - span - 1, now)
        summarize_events(light, start=now - span - 1, end=now, now=now)
        series_from_events(light, default_bucket(span + 1))
        live_s = time.perf_counter() - t
        print_fn(
            f"live charts refresh 7d: {live_s * 1000:.1f} ms for {len(light):,} events "
            f"(summarize + time_series: {two_reads_s * 1000:.1f} ms; "
            f"{two_reads_s / live_s if live_s else 0:.2f}x)"
        )
        rules = alerts_mod.load_rules_file(alerts_mod.SHIPPED_RULES)
        t = time.perf_counter()
        alerts_mod.evaluate_alerts(ops, rules, now)
        print_fn(f"evaluate {len(rules)} alert rules: {(time.perf_counter() - t) * 1000:.1f} ms")
        t = time.perf_counter()
        report = build_report(ops, "7d", now=now, rules=rules)
        build_s = time.perf_counter() - t
        print_fn(f"build 7d report: {build_s * 1000:.1f} ms")
        for fmt in FORMATS:
            t = time.perf_counter()
            text = render(report, fmt)
            print_fn(f"render {fmt:>4}: {(time.perf_counter() - t) * 1000:7.1f} ms, {len(text.encode()):>9,} bytes")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
