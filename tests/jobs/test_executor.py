"""The executor interface: which executor the flags ask for (one-line errors), the in-process executor, and a
real LocalCluster of 2 processes (1 thread each, so it fits a 2-core CI machine): results once each, a unit's
error comes back with it, and a compare on the cluster equals the in-process compare entity by entity."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from engine.core.errors import ConfigError
from engine.core.params import ParameterConfig
from engine.discovery.runs import EvidenceSpec, compare_entities, run_entities
from engine.jobs.executor import (
    SCHEDULER_ENV,
    DaskExecutor,
    ExecutorSpec,
    InProcessExecutor,
    announce,
    announced,
    cluster_status,
    executor_spec,
    make_executor,
    withdraw,
)
from engine.monitoring.events import query_events

NOW = 1_700_000_000.0


def fixed_clock() -> float:
    """Virtual time (module level: it travels to the cluster's processes by reference)."""
    return NOW


def square(x: int) -> int:
    return x * x


def refuse_three(x: int) -> int:
    if x == 3:
        raise ConfigError("three is refused")
    return x


#: how long the cluster may take to settle or answer on a busy 2-core machine
SETTLE_S = 30.0


def _same(results):
    """Runs without the measured engine time (the one field that is wall-clock, not an answer)."""
    return [dataclasses.replace(r, engine_time_s=0.0) for r in results]


# --------------------------------------------------------------------------- which executor


def test_the_default_is_in_process_and_workers_start_a_local_cluster():
    assert executor_spec(env={}).kind == "in-process"
    assert executor_spec(1, env={}).kind == "in-process"
    assert executor_spec(2, env={}).kind == "local"
    spec = executor_spec(2, "tcp://10.0.0.5:8786", env={})
    assert spec.kind == "remote" and spec.scheduler == "tcp://10.0.0.5:8786"
    # the environment names a running cluster when no --scheduler is given
    assert executor_spec(None, env={SCHEDULER_ENV: "tcp://sched:8786"}).scheduler == "tcp://sched:8786"
    assert ExecutorSpec.from_dict(spec.to_dict()) == spec
    assert isinstance(make_executor(ExecutorSpec()), InProcessExecutor)


@pytest.mark.parametrize(
    "workers, scheduler, env, message",
    [
        (0, None, {}, "--workers must be a whole number from 1 to 64"),
        (65, None, {}, "--workers must be a whole number from 1 to 64"),
        (True, None, {}, "--workers must be"),
        (2, "localhost:8786", {}, "--scheduler 'localhost:8786' is not a Dask scheduler address"),
        (2, "http://host:8786", {}, "is not a Dask scheduler address: use tcp://host:8786"),
        (2, "tcp://host", {}, "is not a Dask scheduler address"),
        (2, None, {SCHEDULER_ENV: "nonsense"}, f"{SCHEDULER_ENV} 'nonsense' is not a Dask scheduler address"),
    ],
)
def test_bad_flags_are_one_line_errors(workers, scheduler, env, message):
    with pytest.raises(ConfigError) as err:
        executor_spec(workers, scheduler, env=env)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_in_process_runs_each_unit_in_order_and_keeps_errors_with_their_unit():
    done = list(InProcessExecutor().run(refuse_three, [(1,), (3,), (5,)]))
    assert [d.index for d in done] == [0, 1, 2]
    assert [d.value for d in done] == [1, None, 5]
    assert isinstance(done[1].error, ConfigError)


# --------------------------------------------------------------------------- a real local cluster


@pytest.fixture
def cluster():
    with DaskExecutor(ExecutorSpec(workers=2)) as ex:
        yield ex


@pytest.mark.slow
def test_a_local_cluster_returns_every_unit_once_with_its_error(cluster, tmp_path):
    done = list(cluster.run(square, [(i,) for i in range(12)]))
    assert sorted(d.index for d in done) == list(range(12))
    assert {d.index: d.value for d in done} == {i: i * i for i in range(12)}
    errs = {d.index: d.error for d in cluster.run(refuse_three, [(1,), (3,)])}
    assert errs[0] is None and isinstance(errs[1], ConfigError) and "three is refused" in str(errs[1])

    # the scheduler releases finished tasks and learns the workers' memory from their heartbeats a moment later:
    # read the status until it has settled (a busy machine takes longer), then check it
    deadline = time.monotonic() + SETTLE_S
    status = cluster.status()
    while (status.tasks_in_flight or not status.memory_bytes) and time.monotonic() < deadline:
        time.sleep(0.2)
        status = cluster.status()
    assert status.kind == "local" and status.workers == 2 and status.threads == 2
    assert status.memory_bytes > 0 and status.tasks_in_flight == 0
    assert len(set(cluster.worker_pids())) == 2 and os.getpid() not in cluster.worker_pids()
    # the console reads a running job's cluster from its announcement
    announce(tmp_path, 7, cluster, what="tuning study 1")
    (entry,) = announced(tmp_path)
    assert entry["address"] == cluster.address and entry["job_id"] == 7
    assert cluster_status(entry["address"], timeout_s=SETTLE_S).workers == 2
    withdraw(tmp_path, 7)
    assert announced(tmp_path) == []


def _how_this_worker_runs() -> tuple[bytes, object, object]:
    import dask  # lazy: read in the worker, where the cluster's settings apply

    with open("/proc/self/cmdline", "rb") as f:
        cmdline = f.read()
    config = dask.config.get
    return cmdline, config("distributed.worker.profile.enabled"), config("distributed.admin.tick.interval")


@pytest.mark.slow
def test_a_local_cluster_forks_its_workers_from_a_fork_server_and_runs_them_without_the_profiler(cluster):
    """The speed settings: a worker is a fork of the fork server (its imports done; a spawned one boots its own
    interpreter and imports everything again), and Dask's per-worker stack sampler and 20 ms loop checks, which
    took CPU beside every unit, are off or slowed."""
    seen = cluster.client.run(_how_this_worker_runs)
    assert len(seen) == 2
    for cmdline, profile, tick in seen.values():
        assert b"multiprocessing.forkserver" in cmdline, cmdline
        assert profile is False and tick == "500ms"


@pytest.mark.slow
def test_a_compare_on_the_cluster_equals_the_in_process_compare_entity_by_entity(seed_graph, ops, cluster):
    graph = seed_graph(30)
    ids = graph.list_entity_ids()
    evidence = EvidenceSpec(world_seed=3)
    candidate = ParameterConfig().with_changes(max_iterations=9)
    here = compare_entities(graph, ops, ids, params_new=candidate, evidence=evidence, clock=fixed_clock, run_id="here")
    there = compare_entities(
        graph, ops, ids, params_new=candidate, evidence=evidence, clock=fixed_clock, run_id="there", executor=cluster
    )
    assert [r.entity_id for r in there.new] == [r.entity_id for r in here.new] == ids
    assert _same(there.new) == _same(here.new)
    assert _same(there.old) == _same(here.old)
    assert any(r.hops for r in there.new)  # real runs, not empty ones
    # every run recorded once, by the coordinator
    assert len(query_events(ops, run_id="there-new")) == len(ids) == len(query_events(ops, run_id="there-old"))


@pytest.mark.slow
def test_live_runs_on_the_cluster_write_what_in_process_runs_write(seed_graph, ops, cluster, settings):
    graph = seed_graph(12)
    ids = graph.list_entity_ids()
    a, b = ids[:6], ids[6:]
    shadow_here = run_entities(graph, ops, b, shadow=True, clock=fixed_clock, run_id="s")
    live = run_entities(graph, ops, b, clock=fixed_clock, run_id="live", executor=cluster, evidence=EvidenceSpec())
    assert _same(live) == [dataclasses.replace(r, shadow=False) for r in _same(shadow_here)]
    # the coordinator wrote the hypotheses: the graph holds the live runs' outcomes
    stored = graph.get_hypotheses_many(b)
    for r in live:
        conf = {h.id: h.confidence for h in stored[r.entity_id]}
        assert all(conf[o.id] == pytest.approx(o.confidence) for o in r.outcomes)
    assert a  # the first half stays untouched by this run
    with pytest.raises(ConfigError, match="need the evidence source as a spec"):
        run_entities(graph, ops, a, shadow=True, source=object(), executor=cluster)
