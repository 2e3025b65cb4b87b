"""Rollout steps the fault and report tests share: a pilot run to the end in this process, waiting for a
run's state, and a graph store whose restore fails as if FalkorDB went away."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from engine import rollout as ro
from engine.core.errors import StoreUnavailable
from engine.core.params import ParameterConfig
from engine.jobs.queue import JobState, JobStore, run_claimed
from tests.support.actors import ADMIN
from tests.support.stages import stage_table

#: a live rollout of the live config itself is refused (it would change nothing): tests of the rollout's
#: mechanics hand over this candidate, which differs only in the cache TTL (discovery runs do not read it), so
#: every verdict stays what the live config's own would be
SAME_DISCOVERY = ParameterConfig().with_changes(cache_ttl_s=600.0)


def candidate_file(tmp_path: Path, config: ParameterConfig = SAME_DISCOVERY) -> Path:
    """``config`` saved as a candidate file under ``tmp_path``."""
    return config.save(tmp_path / f"candidate-{config.hash()}.json")


def hand_over_candidate(ops, tmp_path: Path, config: ParameterConfig = SAME_DISCOVERY) -> Path:
    """Hand ``config`` to the next rollout (what tuning's handoff does); its file."""
    path = candidate_file(tmp_path, config)
    ro.set_candidate(ops, path, ADMIN, source="test")
    return path


#: the states a stage's worker stops in by itself
SETTLED = ("soaking", "inconclusive", "completed", "rolled_back")


def run_pilot_here(settings, ops, graph, tmp_path: Path) -> int:
    """A pilot (10 entities, loose triggers) started and run to its end in this process; its run id."""
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="pilot",
        stages_file=stage_table(tmp_path, loose_triggers=True),
        config_file=candidate_file(tmp_path),
        time_scale=86400 * 4,
        launch=False,
        graph=graph,
    )
    job = run_claimed(JobStore(ops), ro.rollout_status(ops, run_id).run.job_id, settings, poll_s=0.05)
    assert job.state is JobState.SUCCEEDED, job.error
    return run_id


def run_here(settings, ops, run_id: int):
    """Run the rollout's job in this process until it returns (what `worker --job ID` does); its status then."""
    job = run_claimed(JobStore(ops), ro.rollout_status(ops, run_id).run.job_id, settings, poll_s=0.05)
    assert job.state is JobState.SUCCEEDED, job.error
    return ro.rollout_status(ops, run_id)


def wait_for_state(ops, run_id: int, states: Iterable[str] = SETTLED, timeout_s: float = 180.0):
    """Poll the run until its effective state is one of ``states``; its status then (or at the timeout)."""
    wanted = set(states)
    end = time.time() + timeout_s
    while time.time() < end and ro.rollout_status(ops, run_id).state not in wanted:
        time.sleep(0.1)
    return ro.rollout_status(ops, run_id)


class StoreGoesAway:
    """``graph`` whose restore fails as an unreachable FalkorDB would (everything else passes through)."""

    def __init__(self, graph):
        self._graph = graph

    def __getattr__(self, name):
        return getattr(self._graph, name)

    def restore(self, snapshot):
        raise StoreUnavailable("FalkorDB went away (test)")


def cancel_and_wait(ops, run_id: int, timeout_s: float = 60.0) -> None:
    """Cancel the run and wait until its worker has stopped: a test never leaves a worker running after it
    (its store would be torn down under it)."""
    ro.cancel(ops, run_id, "test")
    job_id = ro.rollout_status(ops, run_id).run.job_id
    store = JobStore(ops)
    end = time.time() + timeout_s
    while time.time() < end and store.get(job_id).state.is_active():
        time.sleep(0.1)
    assert not store.get(job_id).state.is_active(), store.get(job_id)


def stop_rollout_workers(ops, timeout_s: float = 60.0) -> None:
    """Cancel every active rollout (and bake evaluation) and wait until no job has a worker: a module never leaves
    a worker running into the next one (its data dir would be torn down under it)."""
    from tests.support.guardrails import stop_guardrail_evaluators  # lazy: that module imports this one

    for run in ro.list_runs(ops):
        if run.state.is_active():
            ro.cancel(ops, run.id, "test-teardown")
    stop_guardrail_evaluators(ops)  # lazy import below: tests.support.guardrails imports this module
    deadline = time.monotonic() + timeout_s
    while any(j.state.has_worker() for j in JobStore(ops).list(limit=50)) and time.monotonic() < deadline:
        time.sleep(0.2)
