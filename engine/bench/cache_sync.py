"""The cache change-feed benchmark: what ``CachedGraph.sync()`` costs.

On a fresh temporary data dir with its own embedded FalkorDB (never the
user's), seeds a catalogue and times ``sync()`` when nothing changed (the one
point read every page run pays), after one live-run-sized write by another
GraphStore (point read + changed-ids read + invalidate), the write-sequence
bump clause alone (what the feed adds to every write), and a warm cached read
for scale. Reproduce with
``.venv/bin/python -c "from engine.bench.cache_sync import bench_sync; bench_sync()"``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from engine.cache.cached_graph import CachedGraph
from engine.cache.lru import HypothesisCache
from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.model import Decision, apply_decision
from engine.core.percentiles import percentile
from engine.core.settings import load_settings
from engine.store import falkor
from engine.store.graph import BUMP_WRITE_SEQ, GraphStore


def _us(seconds: list[float], q: float) -> float:
    return (percentile(seconds, q) or 0.0) * 1e6


def bench_sync(
    entities: int = 3400, rounds: int = 2000, seed: int = 7, print_fn: Callable[[str], None] = print
) -> dict[str, float]:
    """Time the change-feed check on ``entities`` catalogue entities; print and return p50/p99 in µs."""
    data_dir = Path(tempfile.mkdtemp(prefix="cache-sync-bench-"))
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    graph = GraphStore.open(settings)
    other = None
    try:
        seed_catalogue(graph, entities, seed=seed, templates=load_templates())
        other = GraphStore.open(settings)
        cached = CachedGraph(graph, HypothesisCache(max_bytes=1 << 30, ttl_s=3600))
        ids = graph.list_entity_ids()
        hot = ids[:200]
        cached.warm(hot)
        idle: list[float] = []
        moved: list[float] = []
        bump: list[float] = []
        hit: list[float] = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            cached.sync()
            idle.append(time.perf_counter() - t0)
        n_moved = max(1, rounds // 10)
        for i in range(n_moved):
            eid = hot[i % len(hot)]
            h = other.get_hypotheses(eid)[0]
            other.save_hypotheses([apply_decision(h, Decision.NO_PROGRESS, h.updated_at + 1)])
            t0 = time.perf_counter()
            cached.sync()
            moved.append(time.perf_counter() - t0)
        for _ in range(n_moved):
            t0 = time.perf_counter()
            graph._query(BUMP_WRITE_SEQ + "RETURN write_seq", {})
            bump.append(time.perf_counter() - t0)
        for i in range(rounds):
            t0 = time.perf_counter()
            cached.get_hypotheses(hot[i % len(hot)])
            hit.append(time.perf_counter() - t0)
    finally:
        if other is not None:
            other.close()
        graph.close()
        falkor.stop_embedded_server(settings)
        shutil.rmtree(data_dir, ignore_errors=True)
    figures = {
        "entities": entities,
        "idle_us_p50": _us(idle, 50), "idle_us_p99": _us(idle, 99),
        "moved_us_p50": _us(moved, 50), "moved_us_p99": _us(moved, 99),
        "bump_us_p50": _us(bump, 50), "bump_us_p99": _us(bump, 99),
        "hit_us_p50": _us(hit, 50), "hit_us_p99": _us(hit, 99),
    }  # fmt: skip
    print_fn(
        f"cache sync on a {entities}-entity graph (embedded FalkorDB, {rounds} idle checks, {n_moved} after a write)"
    )
    print_fn(
        f"  sync, nothing changed (1 point read)           p50 {figures['idle_us_p50']:8.1f} µs  "
        f"p99 {figures['idle_us_p99']:8.1f} µs"
    )
    print_fn(
        f"  sync after another store's write (2 reads)     p50 {figures['moved_us_p50']:8.1f} µs  "
        f"p99 {figures['moved_us_p99']:8.1f} µs"
    )
    print_fn(
        f"  the bump clause alone (added to every write)   p50 {figures['bump_us_p50']:8.1f} µs  "
        f"p99 {figures['bump_us_p99']:8.1f} µs"
    )
    print_fn(
        f"  for scale: a cached get_hypotheses hit         p50 {figures['hit_us_p50']:8.1f} µs  "
        f"p99 {figures['hit_us_p99']:8.1f} µs"
    )
    return figures
