"""Generic jobs: claim, checkpoints with pause/resume/cancel, failures, dead workers, lease fencing, a real worker."""

from __future__ import annotations

import os
import signal
import time

import pytest

from engine.core.errors import DiscoveryError
from engine.jobs.queue import (
    Control,
    JobError,
    JobState,
    JobStore,
    LeaseLost,
    execute,
    get_job,
    latest_job,
    launch_worker,
    reap_dead_workers,
    recent_jobs,
    resume_job,
    run_claimed,
    wait_for,
    worker_liveness,
    worker_loop,
)


class FakeClock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def tick(self, s: float) -> None:
        self.t += s


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(ops, clock):
    return JobStore(ops, clock=clock)


def count_units(ctx):
    """A restartable handler: does units n0..n-1, recording each in a table, checkpointing after each."""
    with ctx.ops.transaction() as db:
        db.execute("CREATE TABLE IF NOT EXISTS test_units (job_id INTEGER, unit INTEGER, attempt INTEGER)")
    with ctx.ops.connect() as db:
        done = next(iter(db.query("SELECT COUNT(*) AS c FROM test_units WHERE job_id = ?", [ctx.job.id])))["c"]
    n = ctx.params["n"]
    for unit in range(done, n):
        with ctx.ops.transaction() as db:
            ctx.assert_lease(db)
            db.execute("INSERT INTO test_units VALUES (?, ?, ?)", [ctx.job.id, unit, ctx.attempt])
        ctx.checkpoint(done=unit + 1, total=n, message=f"unit {unit}")
    return {"units": n, "attempt": ctx.attempt}


def _units(ops, job_id):
    with ops.connect() as db:
        return [
            (r["unit"], r["attempt"])
            for r in db.query("SELECT unit, attempt FROM test_units WHERE job_id = ? ORDER BY rowid", [job_id])
        ]


def test_a_job_runs_its_handler_and_keeps_the_result(store, settings):
    job = store.submit("count", {"n": 3}, actor="test")
    assert job.state is JobState.QUEUED
    done = run_claimed(store, job.id, settings, handler=count_units)
    assert done.state is JobState.SUCCEEDED
    assert done.result == {"units": 3, "attempt": 1}
    assert (done.progress_done, done.progress_total, done.progress) == (3, 3, 1.0)
    assert [e["event"] for e in reversed(store.events(job.id))] == ["submitted", "claimed", "succeeded"]


def test_a_job_is_claimed_once(store):
    job = store.submit("count", {"n": 1})
    assert store.claim(job.id) is not None
    assert store.claim(job.id) is None
    assert store.claim(kinds=["count"]) is None


def test_pause_blocks_between_units_until_resume(store, settings, ops, clock):
    job = store.submit("count", {"n": 4})
    store.request(job.id, Control.PAUSE, actor="op")  # asked before it starts: honoured at the first checkpoint
    seen = []

    def sleep(s):  # the operator resumes after the worker has sat paused for a while
        clock.tick(s)
        seen.append((store.get(job.id).state, len(_units(ops, job.id))))
        if len(seen) == 3:
            store.request(job.id, Control.RUN, actor="op")

    final = execute(store, store.claim(job.id), settings, sleep=sleep, handler=count_units)
    assert final.state is JobState.SUCCEEDED
    assert seen == [(JobState.PAUSED, 1)] * 3  # nothing ran while paused
    assert [u for u, _ in _units(ops, job.id)] == [0, 1, 2, 3]
    events = [e["event"] for e in reversed(store.events(job.id))]
    assert events[-3:] == ["control:run", "running", "succeeded"] and "paused" in events


def test_cancel_while_paused_ends_the_job_as_cancelled(store, settings, ops, clock):
    job = store.submit("count", {"n": 4})
    store.request(job.id, Control.PAUSE, actor="op")

    def sleep(s):
        clock.tick(s)
        store.request(job.id, Control.CANCEL, actor="op")

    final = execute(store, store.claim(job.id), settings, sleep=sleep, handler=count_units)
    assert final.state is JobState.CANCELLED and "cancelled" in final.error
    assert len(_units(ops, job.id)) == 1


def test_cancel_of_a_queued_job_is_immediate_and_finished_jobs_refuse_controls(store):
    job = store.submit("count", {"n": 1})
    assert store.request(job.id, Control.CANCEL, actor="op").state is JobState.CANCELLED
    with pytest.raises(JobError, match="already cancelled"):
        store.request(job.id, Control.PAUSE, actor="op")


def test_handler_errors_fail_the_job_with_one_line(store, settings):
    def bad_input(ctx):
        raise DiscoveryError("the candidate config file is missing: pass --candidate")

    def bug(ctx):
        raise ZeroDivisionError("division by zero")

    a = run_claimed(store, store.submit("x").id, settings, handler=bad_input)
    b = run_claimed(store, store.submit("x").id, settings, handler=bug)
    assert (a.state, a.error) == (JobState.FAILED, "the candidate config file is missing: pass --candidate")
    assert (b.state, b.error) == (JobState.FAILED, "ZeroDivisionError: division by zero")


def test_unknown_kind_fails_and_names_the_known_kinds(store, settings):
    job = run_claimed(store, store.submit("nope").id, settings)
    assert job.state is JobState.FAILED and "no handler for job kind 'nope'" in job.error


def test_a_silent_worker_is_declared_dead_and_its_job_resumes_from_checkpoint(store, settings, ops, clock):
    job = store.submit("count", {"n": 5})
    claimed = store.claim(job.id)

    class Crash(BaseException):
        pass

    def crashing(ctx):  # dies after two units without finishing (like a killed process)
        count_units_limited(ctx, 2)
        raise Crash

    with pytest.raises(Crash):
        execute(store, claimed, settings, handler=crashing)
    assert store.get(job.id).state is JobState.RUNNING
    assert store.reap(stale_after_s=60) == []  # our own pid is alive and the heartbeat is fresh
    clock.tick(61)
    dead = store.reap(stale_after_s=60)
    assert [j.id for j in dead] == [job.id] and dead[0].state is JobState.DEAD
    store.requeue(job.id, actor="op")
    final = run_claimed(store, job.id, settings, handler=count_units)
    assert final.state is JobState.SUCCEEDED and final.attempts == 2
    assert _units(ops, job.id) == [(0, 1), (1, 1), (2, 2), (3, 2), (4, 2)]


def count_units_limited(ctx, limit):
    with ctx.ops.transaction() as db:
        db.execute("CREATE TABLE IF NOT EXISTS test_units (job_id INTEGER, unit INTEGER, attempt INTEGER)")
    for unit in range(limit):
        with ctx.ops.transaction() as db:
            db.execute("INSERT INTO test_units VALUES (?, ?, ?)", [ctx.job.id, unit, ctx.attempt])
        ctx.checkpoint(done=unit + 1, total=ctx.params["n"])


def test_a_worker_whose_pid_is_gone_is_dead_at_once(store, clock):
    job = store.submit("count", {"n": 1})
    store.claim(job.id, pid=2**22 + 12345)  # no such process
    alive, why = worker_liveness(store.get(job.id), clock())
    assert not alive and "is gone" in why
    assert [j.id for j in store.reap()] == [job.id]


def test_page_helpers_read_and_reap_on_the_ops_db(store, ops):
    first, second = store.submit("count", {"n": 1}), store.submit("other", {"n": 1})
    assert get_job(ops, first.id).kind == "count"
    assert [j.id for j in recent_jobs(ops)] == [second.id, first.id]
    assert [j.id for j in recent_jobs(ops, "count", 5)] == [first.id]
    assert latest_job(ops, "other").id == second.id and latest_job(ops, "none") is None
    store.claim(first.id, pid=2**22 + 12345)  # no such process
    store.claim(second.id, pid=2**22 + 12345)
    assert [j.id for j in reap_dead_workers(ops, kind="count")] == [first.id]
    assert [j.id for j in reap_dead_workers(ops)] == [second.id]
    assert get_job(ops, second.id).state is JobState.DEAD


def test_a_worker_declared_dead_cannot_write_over_its_successor(store, settings, clock):
    job = store.submit("count", {"n": 3})
    old = store.claim(job.id)
    clock.tick(120)
    store.reap(stale_after_s=60)
    store.requeue(job.id, actor="op")
    new = store.claim(job.id)
    with pytest.raises(LeaseLost):
        store.heartbeat(old)
    assert store.heartbeat(new) is Control.RUN
    # the zombie's handler ends: nothing it reports is written
    execute(store, old, settings, handler=lambda ctx: {"zombie": True})
    assert store.get(job.id).state is JobState.RUNNING and store.get(job.id).result is None


def test_only_dead_or_failed_jobs_can_be_requeued(store):
    job = store.submit("count", {"n": 1})
    with pytest.raises(JobError, match="only a dead or failed job"):
        store.requeue(job.id, actor="op")


def test_worker_loop_runs_queued_jobs_in_order_and_exits_when_idle(store, settings, clock):
    ids = [store.submit("tests.jobs.test_jobs:count_units", {"n": 1}).id for _ in range(2)]
    ran = worker_loop(store, settings, idle_exit_s=5, sleep=clock.tick, poll_s=1)
    assert ran == 2 and [store.get(i).state for i in ids] == [JobState.SUCCEEDED] * 2


def test_context_wait_checkpoints_and_can_be_cancelled(store, settings, clock):
    def waits(ctx):
        ctx.wait(3600, message="soaking")
        return {"waited": True}

    job = store.submit("w")
    calls = []

    def sleep(s):
        clock.tick(s)
        calls.append(s)
        if len(calls) == 5:
            store.request(job.id, Control.CANCEL, actor="op")

    final = execute(store, store.claim(job.id), settings, sleep=sleep, poll_s=10, handler=waits)
    assert final.state is JobState.CANCELLED and sum(calls) == 50


@pytest.mark.slow  # starts or kills real processes
def test_real_worker_killed_while_paused_is_detected_and_resumed_exactly_once(store, settings, ops):
    """A detached `python -m engine worker --job ID`, SIGKILLed mid-job, then resumed by a new worker."""
    real = JobStore(ops)  # real clock: the worker process uses one too
    job = real.submit("tests.jobs.test_jobs:count_units", {"n": 5}, actor="test")
    real.request(job.id, Control.PAUSE, actor="test")
    pid = launch_worker(settings, job.id)
    paused = wait_for(real, job.id, until=lambda j: j.state is JobState.PAUSED, timeout_s=60)
    assert paused.pid == pid and paused.progress_done == 1
    os.kill(pid, signal.SIGKILL)
    wait_for(real, job.id, until=lambda j: not worker_liveness(j, time.time())[0], timeout_s=30)
    resumed, how = resume_job(real, settings, job.id, actor="test")
    assert "worker started" in how
    final = wait_for(real, job.id, until=lambda j: j.state.is_terminal(), timeout_s=60)
    assert final.state is JobState.SUCCEEDED, final.error
    assert [u for u, _ in _units(ops, job.id)] == [0, 1, 2, 3, 4]
    assert [a for _, a in _units(ops, job.id)] == [1, 2, 2, 2, 2]
    events = [e["event"] for e in reversed(real.events(job.id))]
    assert "dead" in events and "requeued" in events


def test_a_fault_pause_keeps_an_operators_cancel_and_a_resume_after_it_too(store):
    """A worker that pauses itself for an outage never overwrites what an operator asked meanwhile."""
    job = store.claim(store.submit("count", {"n": 1}).id)
    assert store.pause_for_fault(job, "paused by a fault of the store: gone") is Control.PAUSE
    got = store.get(job.id)
    assert got.state is JobState.PAUSED and got.message.startswith("paused by a fault")
    store.request(job.id, Control.RUN, actor="op")  # the operator says: retry now
    store.resume_after_fault(job)
    assert store.get(job.id).state is JobState.RUNNING and store.get(job.id).control is Control.RUN
    store.request(job.id, Control.CANCEL, actor="op")
    assert store.pause_for_fault(job, "paused by a fault of the store: gone again") is Control.CANCEL
    store.resume_after_fault(job)
    assert store.get(job.id).control is Control.CANCEL
    with store.ops.transaction() as db:  # declared dead (what the reaper writes)
        db.execute("UPDATE jobs SET state = 'dead', token = NULL WHERE id = ?", [job.id])
    with pytest.raises(LeaseLost):  # the old worker's fault pause is refused
        store.pause_for_fault(job, "late")
