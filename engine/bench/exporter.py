"""The exporter benchmark: `python -m engine bench exporter --events 100000`.

In a temporary data dir (never the user's) inserts N synthetic metric events
(random but plausible figures, spread over no stage, production, rollout and
tuning stages, both systems, shadow and live), evaluates the shipped alert rules once, serves
``/metrics`` on 127.0.0.1 and scrapes it over HTTP, printing the median of
three cases: the first scrape of a fresh exporter process (it sums every
event), a scrape with no new events, and a scrape after 1,000 new events (the
incremental cursor sums only those); plus the response size and the series
count. The figures are of this one run; nothing is asserted about them.
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from engine.core.errors import DiscoveryError
from engine.monitoring import alerts as alerts_mod
from engine.monitoring.events import TABLE as EVENTS_TABLE
from engine.monitoring.events import MetricEvent
from engine.notify.exporter import ExporterServer, OpsCollector
from engine.store.opsdb import OpsDB

#: the stage ids the synthetic events are spread over, in turn (one label value each, tuning-* collapse to one)
BENCH_STAGES: tuple[str | None, ...] = (None, "production", "rollout-1-pilot", "rollout-1-limited", "tuning-1")
#: error types of the synthetic errored hops
ERROR_TYPES = ("timeout", "http_5xx", "connection_dropped", "bad_response")
#: events per insert transaction while filling the data dir
FILL_BATCH = 5_000
#: events recorded between the scrapes of the incremental case
INCREMENT = 1_000
#: repetitions of each case (the median is printed)
COLD_REPEATS = 5
WARM_REPEATS = 20
INCREMENTAL_REPEATS = 5


def synthetic_event(i: int, rng: random.Random, at: float) -> MetricEvent:
    """A metric event with random but plausible figures (the benchmark times the exporter, not the engine)."""
    system = "new" if i % 2 else "old"
    hops = rng.randint(2, 12)
    errors = tuple(rng.choice(ERROR_TYPES) for _ in range(hops) if rng.random() < 0.05)
    return MetricEvent(
        at=at,
        run_id="bench",
        stage_id=BENCH_STAGES[(i // 997) % len(BENCH_STAGES)],
        system=system,
        shadow=i % 3 == 0,
        config_hash=f"cfg-{system}",
        entity_id=f"e{i % 3400}",
        cost_usd=0.0125 * hops,
        iterations=hops,
        hops=hops,
        hypotheses_tested=min(hops, 5),
        promotions=0,
        actionable=rng.random() < (0.4 if system == "new" else 0.2),
        correct=None,
        engine_latency_ms=rng.uniform(0.5, 10.0),
        evidence_latency_s=sum(rng.lognormvariate(1.0, 0.6) for _ in range(hops)),
        error_count=len(errors),
        error_types=errors,
    )


def _record(ops: OpsDB, rng: random.Random, start: int, n: int, at: float) -> None:
    """``n`` synthetic events with ids after ``start``, inserted in transactions of FILL_BATCH rows."""
    for k in range(start, start + n, FILL_BATCH):
        rows = [synthetic_event(i, rng, at).to_row() for i in range(k, min(k + FILL_BATCH, start + n))]
        with ops.transaction() as db:
            db.table(EVENTS_TABLE).insert_all(rows)


def _scrape(url: str) -> tuple[float, bytes]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        body = resp.read()
    return time.perf_counter() - t, body


def bench_exporter(events: int, seed: int, *, print_fn: Callable[[str], None] = print) -> dict[str, float]:
    """Fill a throwaway ops DB with ``events`` events, scrape it over HTTP and print the medians; the figures."""
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-exporter-"))
    try:
        ops = OpsDB(tmp / "ops.sqlite")
        now = 1_800_000_000.0
        t = time.perf_counter()
        _record(ops, rng, 0, events, now)
        print_fn(f"inserted {events:,} metric events in {time.perf_counter() - t:.1f}s (throwaway data dir)")
        alerts_mod.evaluate_alerts(ops, alerts_mod.load_rules_file(alerts_mod.SHIPPED_RULES), now)

        cold: list[float] = []
        body = b""
        for _ in range(COLD_REPEATS):  # a fresh exporter each time: its first scrape sums every event
            server = ExporterServer(OpsCollector(ops.path), host="127.0.0.1", port=0).start()
            try:
                took, body = _scrape(server.url)
            finally:
                server.stop()
            cold.append(took)
        server = ExporterServer(OpsCollector(ops.path), host="127.0.0.1", port=0).start()
        try:
            _scrape(server.url)
            warm = [_scrape(server.url)[0] for _ in range(WARM_REPEATS)]
            incremental: list[float] = []
            recorded = events
            for _ in range(INCREMENTAL_REPEATS):
                _record(ops, rng, recorded, INCREMENT, now)
                recorded += INCREMENT
                took, body = _scrape(server.url)
                incremental.append(took)
        finally:
            server.stop()
        text = body.decode()
        if "discovery_opsdb_up 1.0" not in text:
            raise DiscoveryError("the exporter did not read the benchmark's ops DB: " + " ".join(text.split())[:300])
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        figures = {
            "events": float(events),
            "first_scrape_ms": statistics.median(cold) * 1000,
            "scrape_ms": statistics.median(warm) * 1000,
            "incremental_scrape_ms": statistics.median(incremental) * 1000,
            "response_bytes": float(len(body)),
            "series": float(series),
        }
        print_fn(
            f"first scrape of a fresh exporter (sums all {events:,} events): "
            f"median {figures['first_scrape_ms']:.1f} ms over {COLD_REPEATS}"
        )
        print_fn(f"scrape with no new events: median {figures['scrape_ms']:.1f} ms over {WARM_REPEATS}")
        print_fn(
            f"scrape after {INCREMENT:,} new events (incremental cursor): "
            f"median {figures['incremental_scrape_ms']:.1f} ms over {INCREMENTAL_REPEATS}"
        )
        print_fn(f"response: {len(body):,} bytes, {series:,} series (uncompressed)")
        return figures
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
