"""Tuning trials in parallel on a real LocalCluster of 2 processes (1 thread each: fits a 2-core CI machine):
a parallel Bayesian study persists every trial once and is the same study as the same seed and parallelism
run in this process; a Dask worker process killed mid-study loses nothing and duplicates nothing."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from engine.jobs.executor import DaskExecutor, ExecutorSpec
from engine.monitoring.events import TABLE as EVENTS_TABLE
from engine.tuning.runner import StudyRunner
from engine.tuning.spec import EntitySpec, StudySpec
from engine.tuning.store import create_study, list_trials
from tests.support.actors import ADMIN

pytestmark = pytest.mark.slow

ITERATIONS = 6


def _spec(method: str, n: int = 60) -> StudySpec:
    return StudySpec(
        method=method,
        params=("max_iterations", "delta_accept", "max_cost_usd"),
        iterations=ITERATIONS,
        entities=EntitySpec(kind="catalogue", n=n, catalogue_seed=7),
        seed=4,
        train_fraction=0.75,
        top_k=2,
        workers=2,
    )


def _study(trials):
    """What makes two studies the same: each trial's point and scores (not when it ran)."""
    return [(t.number, t.point, t.training_score, t.holdout_score, t.error) for t in trials]


def _events_per_run(ops, study_id: int) -> Counter:
    with ops.connect() as db:
        rows = db.query(
            f"SELECT run_id, COUNT(*) AS n FROM {EVENTS_TABLE} WHERE stage_id = ? GROUP BY run_id",
            [f"tuning-{study_id}"],
        )
        return Counter({r["run_id"]: r["n"] for r in rows})


def _assert_once(ops, study):
    trials = list_trials(ops, study.id)
    assert [t.number for t in trials] == list(range(ITERATIONS + 1))  # every trial, once (numbers are unique)
    assert all(t.complete for t in trials)
    # every run of every evaluation recorded exactly once
    events = _events_per_run(ops, study.id)
    for t in trials:
        assert events[f"tuning-{study.id}-t{t.number}"] == len(study.train_ids)
    return trials


@pytest.fixture
def cluster():
    with DaskExecutor(ExecutorSpec(workers=2)) as ex:
        yield ex


def test_a_parallel_bayesian_study_persists_every_trial_once_and_is_the_same_study_in_process(ops, settings, cluster):
    spec = _spec("bayesian")
    seen = []
    on_cluster = create_study(ops, spec, actor=ADMIN)
    summary = StudyRunner(
        ops, on_cluster, settings=settings, executor=cluster, checkpoint=lambda p: seen.append(p.done)
    ).run()
    trials = _assert_once(ops, on_cluster)
    assert summary["trials"] == ITERATIONS + 1
    # persisted as they finished: the stored count grew one by one through the checkpoints
    assert sorted(set(seen))[:4] == [0, 1, 2, 3]
    # the constant liar made the two trials of a batch different points
    for first in range(1, ITERATIONS, 2):
        assert trials[first].point != trials[first + 1].point

    # same seed, same parallelism (2 trials per batch), in this process: the same study
    here = create_study(ops, spec, actor=ADMIN)
    StudyRunner(ops, here, settings=settings).run()
    assert _study(list_trials(ops, here.id)) == _study(trials)


def test_killing_a_dask_worker_mid_study_loses_nothing_and_duplicates_nothing(ops, settings, cluster):
    spec = _spec("random", n=160)
    study = create_study(ops, spec, actor=ADMIN)
    killed = []

    def kill_a_busy_worker(progress):
        if killed:
            return
        busy = [addr for addr, keys in cluster.client.processing().items() if keys]
        if not busy:
            return
        pids = cluster.client.run(os.getpid, workers=busy[:1])
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    StudyRunner(ops, study, settings=settings, executor=cluster, checkpoint=kill_a_busy_worker).run()
    assert killed, "no worker was busy at any checkpoint: the test proved nothing"
    trials = _assert_once(ops, study)
    # the nanny restarted the killed worker; the study is the one an undisturbed run gives
    here = create_study(ops, spec, actor=ADMIN)
    StudyRunner(ops, here, settings=settings).run()
    assert _study(list_trials(ops, here.id)) == _study(trials)
