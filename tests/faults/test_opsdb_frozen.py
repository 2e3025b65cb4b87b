"""Case 3 of the reliability issue: no single process can hold the operations database hostage.

* a fresh file opened by many processes at once is created and migrated once, and none of them fails
  ("cannot switch ... to WAL mode (database is locked)" was a real race);
* a worker stopped at a random point of its work never keeps `worker --reap` and `rollout rollback` from
  working;
* a worker stopped while it holds a lock (inside a write transaction, or checkpointing as its last
  connection closes) is found in the kernel's lock table and killed, and the reap goes through; a lock
  holder that is running, or is not a worker, is left alone.
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
from engine.jobs.queue import JobState, JobStore, is_worker_command, kill_frozen_workers, launch_worker, worker_env
from engine.store.opsdb import OpsDB, lock_holders
from tests.support.actors import ADMIN
from tests.support.rollouts import candidate_file
from tests.support.stages import stage_table

OPENER = textwrap.dedent(
    """
    import sys, time
    from engine.store.opsdb import OpsDB, lock_holders
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


@pytest.mark.slow  # starts, stops and kills a worker process
def test_a_worker_stopped_inside_a_write_transaction_is_killed_and_the_reap_goes_through(settings, ops, tmp_path):
    """case 3: the stopped worker holds the write lock; `worker --reap` finds it in the kernel's lock table,
    kills it (it is a stopped `python -m engine worker`) and marks its job dead."""
    ready = tmp_path / "ready"
    job = JobStore(ops).submit("tests.support.holder:hold_the_write_lock", {"ready": str(ready)}, actor="test")
    pid = launch_worker(settings, job.id)
    end = time.time() + 60
    while time.time() < end and not ready.exists():
        time.sleep(0.05)
    assert ready.exists(), "the worker never took the lock"
    worker = psutil.Process(pid)
    worker.suspend()
    try:
        assert pid in lock_holders(settings.ops_db_path)
        time.sleep(1.5)  # its heartbeat is now older than --stale-after below
        reap = cli(settings, "worker", "--reap", "--stale-after", "1")
        assert reap.returncode == 0, reap.stderr
        assert JobStore(ops).get(job.id).state is JobState.DEAD
        assert JobStore(ops).get(job.id).message != "holding the write lock"  # its transaction died uncommitted
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    finally:
        if worker.is_running():
            worker.kill()


def test_only_a_stopped_worker_is_killed(tmp_path):
    """A lock holder that is running, or that is not a worker, is never killed."""
    assert is_worker_command(["/x/python", "-m", "engine", "worker", "--job", "3"])
    assert not is_worker_command(["/x/python", "-m", "engine", "rollout", "rollback"])
    assert not is_worker_command(["streamlit", "run", "streamlit_app.py"])
    path = tmp_path / "ops.sqlite"
    OpsDB(path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WITHOUT_WORKER, str(path)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        os.kill(holder.pid, signal.SIGSTOP)
        assert holder.pid in lock_holders(path)
        assert kill_frozen_workers(path) == []  # stopped, but not a worker: left alone
    finally:
        holder.kill()
        holder.wait()


HOLD_WITHOUT_WORKER = textwrap.dedent(
    """
    import sys, time
    from engine.store.opsdb import OpsDB, lock_holders
    ops = OpsDB(sys.argv[1])
    with ops.transaction() as db:
        db.execute("INSERT INTO audit (at, actor, action) VALUES (0, 'x', 'y')")
        print("holding", flush=True)
        time.sleep(600)
    """
)


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
            settings,
            ops,
            stage="pilot",
            stages_file=stages,
            config_file=candidate_file(tmp_path),
            time_scale=1.0,
            actor=ADMIN,
            graph=graph,
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
