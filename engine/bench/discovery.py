"""The discovery benchmark: `python -m engine bench discovery`.

Runs the new and the old system on N generated catalogue entities against the
simulated world in virtual time, in memory (no store, nothing recorded), and
prints the engine's own time per entity (evidence calls excluded) p50/p95/max,
the wall time of the whole run and the evidence latency the same run would
take for real; then the new system once more timed in thread CPU time, and the
figures next to the aims (p95 < 20 ms per entity, a full run < 60 s).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from engine.catalogue.generator import generate_catalogue, templates_for
from engine.catalogue.templates import load_templates
from engine.core.params import ParameterConfig
from engine.core.percentiles import percentile
from engine.discovery.runs import EvidenceSpec, make_source
from engine.discovery.systems import run_batch


def _loadavg() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def _ms(values: list[float], q: float) -> float:
    return percentile(values, q) or 0.0  # values are never empty: the caller checks entities >= 1


def bench_discovery(
    entities: int,
    seed: int,
    world_seed: int,
    params: ParameterConfig,
    *,
    now: float,
    print_fn: Callable[[str], None] = print,
) -> dict[str, float]:
    """Time both systems on ``entities`` catalogue entities (catalogue ``seed``, world ``world_seed``) at ``now``.

    Prints the figures and returns the new system's ``new_wall_s``, ``new_p95_ms``, ``new_cpu_p95_ms``
    and the old system's ``old_wall_s``.
    """
    catalogue = generate_catalogue(entities, seed)
    templates = templates_for(catalogue, load_templates())
    world = make_source(EvidenceSpec(world_seed=world_seed), templates=templates, entities=catalogue)
    print_fn(
        f"bench discovery: {len(catalogue):,} catalogue entities (seed {seed}), simulated world seed "
        f"{world_seed}, virtual time, in memory; config {params.hash()}"
    )
    figures: dict[str, tuple[float, float]] = {}
    for system in ("new", "old"):
        t0 = time.perf_counter()
        results = run_batch(catalogue, templates, world, params, system, now=now)
        wall = time.perf_counter() - t0
        eng = [r.engine_time_s * 1000.0 for r in results]
        hops = sum(r.iterations for r in results)
        evidence = sum(r.evidence_latency_s for r in results)
        figures[system] = (wall, _ms(eng, 95))
        print_fn(
            f"  {system}: engine time per entity p50 {_ms(eng, 50):.2f} ms, p95 {_ms(eng, 95):.2f} ms, "
            f"max {max(eng):.2f} ms (evidence calls excluded) · full run {wall:.2f} s wall for {hops:,} hops "
            f"({wall / max(hops, 1) * 1e6:.0f} µs per hop incl. the simulated world) · the same evidence for "
            f"real, sequentially: {evidence / 3600:.1f} h"
        )
    # The same new-system run timed in this thread's CPU time: what the engine itself costs, immune to
    # other processes competing for the cores (wall-clock percentiles above include being preempted).
    cpu = [
        r.engine_time_s * 1000.0
        for r in run_batch(catalogue, templates, world, params, "new", now=now, timer=time.thread_time)
    ]
    print_fn(
        f"  new, CPU time: engine time per entity p50 {_ms(cpu, 50):.2f} ms, p95 {_ms(cpu, 95):.2f} ms, "
        f"max {max(cpu):.2f} ms (thread CPU time; load average now {_loadavg()})"
    )
    new_wall, new_p95 = figures["new"]
    print_fn(
        f"  aim: p95 < 20 ms per entity -> {new_p95:.2f} ms ({new_p95 / 20.0:.1%} of the aim); full "
        f"{len(catalogue):,}-entity new-system run < 60 s -> {new_wall:.2f} s ({new_wall / 60.0:.1%} of a "
        f"minute); new/old wall ratio {new_wall / figures['old'][0]:.2f}"
    )
    return {
        "new_wall_s": new_wall,
        "new_p95_ms": new_p95,
        "new_cpu_p95_ms": _ms(cpu, 95),
        "old_wall_s": figures["old"][0],
    }
