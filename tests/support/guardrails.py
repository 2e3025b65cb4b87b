"""Guardrail steps the engine and page tests share: a stage table whose production stage bakes, production
traffic made as the production scheduler makes it, and a config promoted into production by a person."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from engine import rollout as ro
from engine.core.access import Actor
from engine.core.params import ParameterConfig
from engine.discovery.runs import run_entities
from engine.jobs.queue import Control, JobState, JobStore, run_claimed
from engine.rollout import guardrails as gr
from tests.support.actors import ADMIN, as_role
from tests.support.rollouts import candidate_file, wait_for_state
from tests.support.stages import stage_table

#: a config that really costs more in production: no early stop, four times the iterations, ten times the budget
BAD = ParameterConfig().with_changes(
    max_iterations=80,
    max_cost_usd=5.0,
    stop_confidence=1.0,
    flat_epsilon=0.0,
    flat_window=20,
    depth_patience=10,
    saturation_count=20,
    saturation_window=20,
)
#: the production stage's minimum sample; the rollout's own production stage exposes fewer (it ends
#: inconclusive and a person promotes it), production traffic then reaches it
MIN_SAMPLE = 20
BAKE_DAYS = 7.0


def guarded_table(tmp_path: Path, *, bake_days: float = BAKE_DAYS) -> Path:
    """The shipped table at a small scale; production keeps its shipped rollback triggers and bakes."""
    path = stage_table(tmp_path, counts=(5, 10, "all"), min_sample=(5, 10, MIN_SAMPLE), name="guarded.json")
    data = json.loads(path.read_text())
    prod = data["stages"][-1]
    prod["bake_days"] = bake_days
    prod["rollback"] = [
        {"metric": "cost_increase_pct", "op": ">", "threshold": 15, "test": "point"},
        {"metric": "error_rate_pct", "op": ">", "threshold": 10, "test": "point"},
        {"metric": "p95_latency_ms", "op": ">", "threshold": 1500, "test": "point"},
    ]
    path.write_text(json.dumps(data))
    return path


def production_traffic(graph, ops, ids, params: ParameterConfig, at: float, *, system: str = "new"):
    """Visits as the production scheduler makes them: live runs with stage id "production", stamped ``at``."""
    return run_entities(
        graph, ops, ids, system=system, params=params, stage_id=gr.PRODUCTION_STAGE_ID, clock=lambda: at
    )


def promote_into_production(settings, ops, graph, tmp_path, config: ParameterConfig, *, time_scale: float = 1.0):
    """A production-only rollout of ``config`` on 10 entities (below the stage's minimum sample: it ends
    inconclusive) promoted by a person: ``config`` is live and its bake is open. The run id."""
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="production",
        entities=10,
        stages_file=guarded_table(tmp_path),
        config_file=candidate_file(tmp_path, config),
        time_scale=time_scale,
        launch=False,
        actor=ADMIN,
        graph=graph,
    )
    promote_when_inconclusive(settings, ops, run_id, as_role("approver", "console:approver"))
    assert ro.live_config(ops) == config
    return run_id


def promote_when_inconclusive(settings, ops, run_id: int, actor: Actor) -> None:
    """Run the rollout's job (here, in a thread) until its stage waits for a person, promote it, and let the
    job finish (it returns once the run completes)."""
    job_id = ro.rollout_status(ops, run_id).run.job_id
    done = []
    worker = threading.Thread(target=lambda: done.append(run_claimed(JobStore(ops), job_id, settings, poll_s=0.05)))
    worker.start()
    try:
        st = wait_for_state(ops, run_id, ("inconclusive", "completed", "rolled_back", "failed"), timeout_s=240)
        assert st.state == "inconclusive", st.message
        ro.promote(ops, run_id, actor, force=True)
    finally:
        worker.join(240)
    assert done and done[0].state is JobState.SUCCEEDED, done


def stop_guardrail_evaluators(ops) -> None:
    """Cancel every active bake evaluation job (a production promotion made from a page or a worker with the
    data dir in its environment starts one); the caller then waits for their workers as for any other."""
    store = JobStore(ops)
    for job in store.list(kind=gr.KIND, states=[s for s in JobState if s.is_active()], limit=100):
        store.request(job.id, Control.CANCEL, actor="test-teardown")
