"""Case 3 of the reliability issue: no single process can hold the operations database hostage.

* a fresh file opened by many processes at once is created and migrated once, and none of them fails
  ("cannot switch ... to WAL mode (database is locked)" was a real race);
* a worker stopped at a random point of its work never keeps `worker --reap` and `rollout rollback` from
  working (SQLite's checkpoint-on-close, under an exclusive lock, is switched off);
* a worker stopped inside a write transaction, which does hold the write lock, is killed by the reaper
  once its heartbeat is stale, and the reap goes through.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from engine import rollout as ro
from engine.core.settings import REPO_ROOT
from engine.jobs.queue import JobState, JobStore, worker_env
from engine.store.opsdb import OpsDB
from tests.support.stages import stage_table

OPENER = textwrap.dedent(
    """
    import sys, time
    from engine.store.opsdb import OpsDB
    path, start_at, who = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    while time.time() < start_at:
        time.sleep(0.001)
    OpsDB(path).audit(who, "test.open", "fresh file")
    """
)


@pytest.mark.slow  # starts processes
def test_many_processes_opening_fresh_files_at_once_never_fail(tmp_path):
    """case 3: 5 fresh files x 6 processes released at the same instant; every one opens, migrates, writes."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for round_no in range(5):
        path = tmp_path / f"round{round_no}" / "ops.sqlite"
        path.parent.mkdir()
        start_at = time.time() + 1.0
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPENER, str(path), str(start_at), f"p{i}"],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(6)
        ]
        errors = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
        assert all(code == 0 for code, _ in errors), errors
        ops = OpsDB(path)
        assert sorted(r["actor"] for r in ops.list_audit(action="test.open")) == [f"p{i}" for i in range(6)]
        with ops.connect() as db:
            [(n, distinct)] = db.conn.execute(
                "SELECT count(*), count(DISTINCT component || version) FROM schema_migrations"
            ).fetchall()
        assert n == distinct  # every migration once
        assert not list(path.parent.glob(".ops.sqlite.*"))  # no temporary file left behind


HOLDER = textwrap.dedent(
    """
    import sys, time
    from engine.jobs.queue import JobStore
    from engine.store.opsdb import OpsDB
    ops = OpsDB(sys.argv[1])
    store = JobStore(ops)
    job = store.claim(int(sys.argv[2]))
    with ops.transaction() as db:   # holds the write lock ...
        db.execute("UPDATE jobs SET message = 'holding the write lock' WHERE id = ?", [job.id])
        print("holding", flush=True)
        time.sleep(600)             # ... until it is stopped, then killed
    """
)


@pytest.mark.slow  # starts, stops and kills a process
def test_a_worker_stopped_inside_a_write_transaction_is_killed_by_the_reaper(tmp_path):
    path = tmp_path / "ops.sqlite"
    ops = OpsDB(path, busy_timeout_s=1.0)
    store = JobStore(ops)
    job = store.submit("test.hold", {}, actor="test")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(job.id)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(1.2)  # its heartbeat is now older than the stale window below
        [dead] = store.reap(stale_after_s=1.0)
        assert dead.id == job.id and dead.state is JobState.DEAD
        proc.wait(timeout=10)  # killed (the reaper's own wait may have collected it first)
        assert store.get(job.id).message != "holding the write lock"  # its transaction died uncommitted
        ops.audit("test", "after", "the lock is free again")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=str(REPO_ROOT),
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.slow  # stops a real worker at random points, five times
def test_reap_and_rollback_always_work_whatever_point_a_worker_was_stopped_at(settings, ops, seed_graph, tmp_path):
    graph = seed_graph(60, 7)
    rng = random.Random(11)
    stages = stage_table(tmp_path, counts=(40, 50, "all"), batch=(2, 10, 10), loose_triggers=True)
    for _ in range(5):
        run_id = ro.start_rollout(
            settings, ops, stage="pilot", stages_file=stages, time_scale=1.0, actor="test", graph=graph
        )
        job_id = ro.rollout_status(ops, run_id).run.job_id
        end = time.time() + 60
        while time.time() < end and not JobStore(ops).get(job_id).pid:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.3, 2.0))
        worker = psutil.Process(JobStore(ops).get(job_id).pid)
        worker.suspend()
        try:
            time.sleep(1.5)
            reap = cli(settings, "worker", "--reap", "--stale-after", "1")
            assert reap.returncode == 0, reap.stderr
            back = cli(settings, "rollout", "rollback", "--yes", "--reason", "frozen worker")
            assert back.returncode == 0, back.stderr
            assert ro.rollout_status(ops, run_id).state == "rolled_back"
        finally:
            if worker.is_running():
                worker.kill()
                worker.wait(timeout=10)
    assert Path(settings.ops_db_path).exists()
