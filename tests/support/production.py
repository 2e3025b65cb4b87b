"""A production scheduler in this process whose evaluator goes away: its job runs in a thread (what `worker --job ID`
does), on an HTTP evaluator stopped before the first batch, so the first batch faults and the job pauses."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from engine.discovery.evaluator_server import EvaluatorServer
from engine.discovery.runs import EvidenceSpec
from engine.jobs.queue import JobStore, run_claimed
from engine.production.control import start_production, stop_production
from engine.production.policy import RefreshPolicy
from tests.support.actors import ADMIN

TIMEOUT_S = 120.0
#: a day's budget far above what visiting every seeded entity costs: no budget message in a fault scenario
BUDGET_USD = 100.0


@dataclass
class FaultingScheduler:
    run_id: int
    job_id: int
    evaluator: EvaluatorServer
    store: JobStore


def wait_until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling a worker thread, not pacing the test


@contextmanager
def scheduler_without_evaluator(settings, ops) -> Iterator[FaultingScheduler]:
    """Start a scheduler on an HTTP evaluator, stop the evaluator, run the job in a thread; stop it all at the end."""
    evaluator = EvaluatorServer(world_seed=1, latency_factor=0.02).start()
    store = JobStore(ops)
    run_id = start_production(
        settings,
        ops,
        budget_usd=BUDGET_USD,
        policy=RefreshPolicy(86400.0, 7 * 86400.0),
        evidence=EvidenceSpec(kind="http", url=evaluator.url, timeout_s=5),
        concurrency=2,
        batch_size=3,
        actor=ADMIN,
        launch=False,
    )
    evaluator.stop()
    job_id = store.list(kind="production")[0].id
    worker = threading.Thread(
        target=run_claimed, args=(store, job_id, settings), kwargs={"poll_s": 0.05}, daemon=True, name="production"
    )
    worker.start()
    try:
        yield FaultingScheduler(run_id, job_id, evaluator, store)
    finally:
        evaluator.stop()
        try:
            stop_production(ops, ADMIN)
        except Exception:  # noqa: BLE001 - already stopped
            pass
        worker.join(TIMEOUT_S)
        assert not worker.is_alive(), "the production job did not stop"
