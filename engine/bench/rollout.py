"""The rollout benchmark: `python -m engine bench rollout --entities N`.

Seeds N entities in a throwaway data dir with its own embedded FalkorDB (never
the user's), runs every stage of the shipped stage table in this process with
durations 0 and criteria replaced so every stage passes (it measures the
rollout machinery, not the candidate), then rolls the whole run back and checks
the graph equals the snapshots taken before. Prints per-stage throughput
(paired entities and discovery runs per second, trigger checks, engine p95)
and the rollback time of this one run, line by line as they are measured.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from engine import rollout
from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.access import SYSTEM, Actor, Role
from engine.core.params import ParameterConfig
from engine.core.settings import Settings
from engine.jobs.queue import JobState, JobStore, run_claimed
from engine.rollout.stages import DEFAULT_STAGES_FILE
from engine.store import falkor
from engine.store.graph import GraphStore
from engine.store.opsdb import OpsDB

#: the benchmark acts as the engine on its own throwaway data dir
BENCH_ACTOR = Actor("bench", Role.ADMIN, SYSTEM)


def mechanics_stage_table(shipped: dict) -> dict:
    """The shipped stage table (sizes, batches, min samples, intervals) with durations 0, no rollback trigger,
    no four-eyes stage (no second person is there to promote) and one success criterion every run clears: it
    measures the runner, not the candidate."""
    data = json.loads(json.dumps(shipped))
    for s in data["stages"]:
        s["min_duration_days"] = 0
        s["test"] = "point"
        s["success"] = [{"metric": "error_rate_pct", "op": "<=", "threshold": 100}]
        s["rollback"] = []
        s["four_eyes"] = False
    return data


def run_rollout_bench(entities: int, seed: int, *, keep: bool = False, echo: Callable[[str], None] = print) -> bool:
    """Run the benchmark, printing its figures through ``echo``; True when the run succeeded and the rollback
    restored the graph exactly. ``keep``: leave the throwaway data dir in place."""
    tmp = Path(tempfile.mkdtemp(prefix="discovery-bench-rollout-"))
    settings = Settings(data_dir=tmp / "data", graph_name="bench").ensure_dirs()
    graph = GraphStore.open(settings)
    try:
        ops = OpsDB(settings.ops_db_path)
        t0 = time.perf_counter()
        seed_catalogue(graph, entities, seed, load_templates())
        echo(f"seeded {entities} entities in {time.perf_counter() - t0:.1f} s (throwaway data dir {tmp})")
        ids = graph.list_entity_ids()
        before = graph.snapshot(ids)["entities"]
        stages = tmp / "stages.json"
        stages.write_text(json.dumps(mechanics_stage_table(json.loads(DEFAULT_STAGES_FILE.read_text()))))
        # a live rollout of the live config itself is refused; this candidate differs only in the cache TTL,
        # which discovery runs do not read, so the bench measures the runner on the live config's behaviour
        candidate = ParameterConfig().with_changes(cache_ttl_s=600.0).save(tmp / "candidate.json")
        run_id = rollout.start_rollout(
            settings,
            ops,
            stage="all",
            stages_file=stages,
            config_file=candidate,
            launch=False,
            actor=BENCH_ACTOR,
            graph=graph,
        )
        run = rollout.rollout_status(ops, run_id).run
        if run is None or run.job_id is None:  # start_rollout has just created both
            raise rollout.RolloutError(f"rollout {run_id} was started but has no job to run")
        job_id = run.job_id
        t0 = time.perf_counter()
        job = run_claimed(JobStore(ops), job_id, settings, poll_s=0.05)
        wall = time.perf_counter() - t0
        st = rollout.rollout_status(ops, run_id, decisions=10000)
        echo(
            f"rollout {run_id}: {st.state} ({job.state}) in {wall:.1f} s; stages of the shipped table, "
            "criteria replaced so every stage passes (this measures the runner, not the candidate)"
        )
        rows = rollout.paired_outcomes(ops, run_id)
        for s in st.stages:
            mine = [r for r in rows if r["stage"] == s.name]
            if not mine or s.started_at is None or s.completed_at is None or s.paired is None:
                echo(f"  {s.name:<11} {s.state}")
                continue
            secs = max(1e-9, s.completed_at - s.started_at)
            checks = [d for d in st.decisions if d.stage == s.name and d.gate == "check"]
            echo(
                f"  {s.name:<11} {len(mine):>5} entities in {secs:7.1f} s = {len(mine) / secs:6.1f} paired entities/s "
                f"({2 * len(mine) / secs:6.1f} discovery runs/s); {len(checks)} trigger checks; "
                f"engine p95 {s.paired.new_engine_ms_p95:.2f} ms"
            )
        t0 = time.perf_counter()
        res = rollout.rollback(settings, ops, run_id, BENCH_ACTOR, "bench: measure the rollback", graph=graph)
        rb = time.perf_counter() - t0
        exact = graph.snapshot(ids)["entities"] == before
        echo(
            f"rollback of {res.entities_restored} entities ({res.evidence_marked} evidence records marked) in "
            f"{rb:.2f} s = {res.entities_restored / max(rb, 1e-9):.0f} entities/s; graph equals the snapshots: {exact}"
        )
        return exact and job.state is JobState.SUCCEEDED
    finally:
        graph.close()
        falkor.stop_embedded_server(settings)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
