"""The entity view benchmark: what the console's entity view costs per entity.

On a fresh temporary data dir with its own embedded FalkorDB (never the
user's), seeds a catalogue, then for some of its entities loads the view
(ranking + evidence trail) and runs the new system live through
``run_entity`` (run + graph write + metric event). Reproduce with
``.venv/bin/python -c "from engine.bench.entity_view import bench_entity_view; bench_entity_view()"``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from engine.bench import BENCH
from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.percentiles import percentile
from engine.core.settings import load_settings
from engine.discovery.entity_view import live_params, load_entity_view, run_entity
from engine.store import falkor
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db


def _ms(seconds: list[float], q: float) -> float:
    return (percentile(seconds, q) or 0.0) * 1000


def bench_entity_view(
    entities: int = 200, runs_n: int = 50, seed: int = 7, print_fn: Callable[[str], None] = print
) -> dict[str, float]:
    """Seed ``entities`` entities, view and run ``runs_n`` of them; print and return p50/p95 of each step."""
    data_dir = Path(tempfile.mkdtemp(prefix="entity-view-bench-"))
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    graph = GraphStore.open(settings)
    try:
        ops = open_ops_db(settings)
        seed_catalogue(graph, entities, seed=seed, templates=load_templates())
        params = live_params(ops)
        loads: list[float] = []
        walls: list[float] = []
        engine: list[float] = []
        hops: list[int] = []
        for entity_id in graph.list_entity_ids()[:runs_n]:
            t0 = time.perf_counter()
            load_entity_view(graph, entity_id, params)
            loads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run = run_entity(graph, ops, entity_id, actor=BENCH, params=params)
            walls.append(time.perf_counter() - t0)
            engine.append(run.result.engine_time_s)
            hops.append(run.result.iterations)
    finally:
        graph.close()
        falkor.stop_embedded_server(settings)
        shutil.rmtree(data_dir, ignore_errors=True)
    figures = {
        "runs": len(walls),
        "run_wall_ms_p50": _ms(walls, 50), "run_wall_ms_p95": _ms(walls, 95),
        "engine_ms_p50": _ms(engine, 50), "engine_ms_p95": _ms(engine, 95),
        "load_view_ms_p50": _ms(loads, 50), "load_view_ms_p95": _ms(loads, 95),
        "hops_mean": sum(hops) / len(hops), "hops_max": max(hops),
    }  # fmt: skip
    print_fn(
        f"entity view: {figures['runs']} live new-system runs on a {entities}-entity graph "
        "(simulated world, virtual time, embedded store)"
    )
    print_fn(
        f"  run_entity (run + graph write + metric event)  p50 {figures['run_wall_ms_p50']:.1f} ms  "
        f"p95 {figures['run_wall_ms_p95']:.1f} ms"
    )
    print_fn(
        f"  of which engine time                           p50 {figures['engine_ms_p50']:.2f} ms  "
        f"p95 {figures['engine_ms_p95']:.2f} ms"
    )
    print_fn(
        f"  load_entity_view (ranking + evidence trail)    p50 {figures['load_view_ms_p50']:.1f} ms  "
        f"p95 {figures['load_view_ms_p95']:.1f} ms"
    )
    print_fn(f"  hops per run: mean {figures['hops_mean']:.1f}, max {figures['hops_max']}")
    return figures
