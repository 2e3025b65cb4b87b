"""Rollout batches on the executor: a pilot whose paired runs go to a real LocalCluster of 2 processes (1 thread
each: fits a 2-core CI machine) gives, entity by entity, the paired outcomes of the same pilot in the worker's own
process; bad --workers / scheduler values are refused in one line with nothing stored."""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest

from engine import rollout as ro
from engine.cli.main import main
from engine.core.errors import ConfigError
from engine.core.params import ParameterConfig
from engine.discovery.limits import RunLimits
from engine.jobs.executor import SCHEDULER_ENV, ExecutorUnavailable, announced, make_executor
from engine.monitoring.events import query_events
from engine.rollout import runner
from tests.support.actors import ADMIN
from tests.support.rollouts import candidate_file, hand_over_candidate, run_here
from tests.support.stages import stage_table

#: a candidate whose discovery differs from the live config's (so new and old outcomes differ)
CANDIDATE = ParameterConfig().with_changes(novelty_decay=1.5)
#: the cohort seed both pilots use: the same entities, the same shadow subset
SEED = 11
#: what two runs of the same entity must agree on (engine time and wall-clock latency are measured, not outcomes)
SAME = (
    "entity_id",
    "new_cost",
    "new_actionable",
    "new_hops",
    "new_errors",
    "new_crashed",
    "old_cost",
    "old_actionable",
    "new_stop",
    "old_stop",
    "new_error",
    "old_error",
    "shadowed",
)


@pytest.fixture
def seeded(seed_graph, ops, tmp_path):
    hand_over_candidate(ops, tmp_path / "handed")
    return seed_graph(40, 7)


def _pilot(settings, ops, graph, tmp_path, **kw) -> int:
    return ro.start_rollout(
        settings,
        ops,
        stage="pilot",
        stages_file=stage_table(tmp_path, counts=(20, 30, "all"), batch=(7, 10, 10), loose_triggers=True),
        config_file=candidate_file(tmp_path, CANDIDATE),
        time_scale=86400 * 4,
        seed=SEED,
        launch=False,
        graph=graph,
        actor=ADMIN,
        **kw,
    )


def _outcomes(ops, run_id: int) -> dict[str, tuple]:
    return {o["entity_id"]: tuple(o[k] for k in SAME) for o in ro.paired_outcomes(ops, run_id, "pilot")}


@pytest.mark.slow
def test_a_pilot_on_a_two_process_cluster_gives_the_in_process_outcomes_entity_by_entity(
    settings, ops, seeded, tmp_path, monkeypatch
):
    started: list = []

    def spy(spec):
        executor = make_executor(spec)
        started.append(executor)
        return executor

    monkeypatch.setattr(runner, "make_executor", spy)
    here = _pilot(settings, ops, seeded, tmp_path)
    assert run_here(settings, ops, here).state == "completed"
    in_process = _outcomes(ops, here)
    exposed = sorted(in_process)
    written_here = seeded.snapshot(exposed)
    # back to the state before the pilot, so the second pilot starts where the first did
    assert ro.rollback(settings, ops, here, ADMIN, "the same pilot again on the cluster", graph=seeded).performed

    on_cluster = _pilot(settings, ops, seeded, tmp_path, workers=2)
    info = ro.rollout_status(ops, on_cluster).run
    assert info.executor_spec["workers"] == 2 and info.executor == "local Dask cluster of 2 worker process(es)"
    st = run_here(settings, ops, on_cluster)
    assert st.state == "completed", st.message
    clustered = _outcomes(ops, on_cluster)
    # the batches really ran on a cluster of two worker processes (none was started for the in-process pilot)
    assert [type(e).__name__ for e in started] == ["DaskExecutor"]
    assert started[0].spec.workers == 2 and started[0].client.status == "closed"

    assert len(in_process) == 20 and any(o[SAME.index("shadowed")] for o in in_process.values())
    assert clustered == in_process  # every entity once, with the same paired outcome
    # the live runs the coordinator wrote from the cluster's results equal those written in-process
    written_there = seeded.snapshot(exposed)
    assert _statuses(written_there) == _statuses(written_here)
    # the metric events the coordinator recorded: one per entity and system, as in-process
    counts = [_events(ops, run_id) for run_id in (here, on_cluster)]
    assert counts[0] == counts[1] and counts[0]["new"] == 20
    # the worker closed its cluster and withdrew the announcement the console's panel reads
    assert announced(settings.data_dir) == []


class LosesOneBatch:
    """A real Dask executor whose ``fail_at``-th ``run`` (counted over every executor of the test) loses its units
    after the first came back, as a cluster that lost its workers does (ExecutorUnavailable)."""

    def __init__(self, inner, calls: list[int], fail_at: int):
        self.inner, self.calls, self.fail_at = inner, calls, fail_at
        self.spec = inner.spec

    @property
    def slots(self) -> int:
        return self.inner.slots

    @property
    def address(self) -> str:
        return self.inner.address

    def run(self, fn, units, *, tick=None):
        self.calls.append(len(units))
        done = self.inner.run(fn, units, tick=tick)
        if len(self.calls) != self.fail_at:
            yield from done
            return
        yield next(done)
        done.close()
        raise ExecutorUnavailable("a unit of work was lost with 3 Dask workers in a row (test)")

    def status(self):
        return self.inner.status()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.slow
def test_a_cluster_lost_mid_stage_pauses_it_with_the_reason_and_the_retry_counts_every_entity_once(
    settings, ops, seeded, tmp_path, monkeypatch
):
    here = _pilot(settings, ops, seeded, tmp_path)
    assert run_here(settings, ops, here).state == "completed"
    in_process = _outcomes(ops, here)
    assert ro.rollback(settings, ops, here, ADMIN, "the same pilot again on a failing cluster", graph=seeded).performed

    calls: list[int] = []
    started: list = []

    def flaky(spec):
        started.append(LosesOneBatch(make_executor(spec), calls, fail_at=4))  # after batch 1 was checkpointed
        return started[-1]

    monkeypatch.setattr(runner, "make_executor", flaky)
    monkeypatch.setattr(runner, "FAULT_RETRY_S", 0.1)
    on_cluster = _pilot(settings, ops, seeded, tmp_path, workers=2)
    st = run_here(settings, ops, on_cluster)
    assert st.state == "completed", st.message
    assert len(calls) > 4  # the fault happened, and the stage went on after it
    [fault] = ops.list_audit(action="rollout.fault")
    assert "paused by a fault of the cluster, nothing of the batch counted" in fault["details"]["reason"]
    # a fresh cluster after the fault; every one closed
    assert len(started) == 2 and all(e.inner.client.status == "closed" for e in started)
    assert announced(settings.data_dir) == []
    # every entity once, with the outcome it has in-process; one metric event per run, none of the lost batch
    assert _outcomes(ops, on_cluster) == in_process
    assert _events(ops, on_cluster) == _events(ops, here)


#: what two live runs of the same entity must leave on each hypothesis (its update times are wall clock)
STATE = ("status", "confidence", "accepts", "weak_accepts", "rejects", "no_progress", "last_delta")


def _statuses(snapshot: dict) -> dict:
    """(entity, hypothesis) -> what the live run left on it, for every entity of a snapshot."""
    return {
        (entity_id, h["id"]): tuple(h[k] for k in STATE)
        for entity_id, hyps in snapshot["entities"].items()
        for h in hyps
    }


def _events(ops, run_id: int) -> Counter:
    events = query_events(ops, stage_id=ro.stage_key(run_id, "pilot"))
    return Counter(e.system for e in events)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"workers": 0}, "workers must be a whole number from 1 to 64, got 0"),
        ({"workers": 65}, "workers must be a whole number from 1 to 64, got 65"),
        ({"workers": True}, "workers must be a whole number from 1 to 64, got True"),
        ({"workers": "2"}, "workers must be a whole number from 1 to 64, got '2'"),
        ({"scheduler": "localhost:8786"}, "scheduler 'localhost:8786' is not a Dask scheduler address"),
        ({"scheduler": "http://host:8786"}, "scheduler 'http://host:8786' is not a Dask scheduler address"),
        ({"scheduler": "tcp://host"}, "scheduler 'tcp://host' is not a Dask scheduler address"),
        (
            {"workers": 2, "limits": RunLimits(max_hops_per_s=5.0)},
            "the evaluator limits .* hold in one process only",
        ),
    ],
)
def test_bad_workers_or_scheduler_are_refused_in_one_line_storing_nothing(settings, ops, seeded, tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message) as err:
        _pilot(settings, ops, seeded, tmp_path, **kw)
    assert "\n" not in str(err.value)
    assert ro.list_runs(ops) == []
    with ops.connect() as db:
        assert list(db.query("SELECT id FROM jobs")) == []


def test_the_executor_is_stored_with_the_run_and_a_continued_run_keeps_it(settings, ops, seeded, tmp_path):
    run_id = _pilot(settings, ops, seeded, tmp_path, workers=3, scheduler="tcp://10.0.0.5:8786")
    info = ro.rollout_status(ops, run_id).run
    assert info.executor_spec == {"workers": 3, "scheduler": "tcp://10.0.0.5:8786", "dask": False}
    assert info.executor == "Dask cluster at tcp://10.0.0.5:8786, 3 unit(s) in flight"
    ro.cancel(ops, run_id, ADMIN)
    # "Continue to <next stage>" runs where the earlier run ran, unless told otherwise
    kw = dict(stage="limited", stages_file=stage_table(tmp_path), launch=False, graph=seeded, actor=ADMIN)
    continued = ro.start_rollout(settings, ops, from_run=run_id, **kw)
    assert ro.rollout_status(ops, continued).run.executor_spec == info.executor_spec
    ro.cancel(ops, continued, ADMIN)
    elsewhere = ro.start_rollout(settings, ops, from_run=continued, workers=2, **kw)
    assert ro.rollout_status(ops, elsewhere).run.executor_spec == {"workers": 2, "scheduler": None, "dask": False}
    ro.cancel(ops, elsewhere, ADMIN)
    # the default is the worker's own process, and a run without a stored executor reads as such
    plain = _pilot(settings, ops, seeded, tmp_path)
    assert ro.rollout_status(ops, plain).run.executor == "in this process"
    ro.cancel(ops, plain, ADMIN)


@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DISCOVERY_GRAPH", settings.graph_name)
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    return settings


def test_the_cli_refuses_bad_executor_flags_in_one_line_and_status_names_the_executor(
    cli_env, ops, seeded, tmp_path, capsys, monkeypatch
):
    start = ["rollout", "--stage", "pilot", "--stages-file", str(stage_table(tmp_path)), "--dry-run"]
    for extra, env, needle in (
        (["--workers", "0"], None, "--workers"),
        (["--scheduler", "host:8786"], None, "--scheduler 'host:8786' is not a Dask scheduler address"),
        ([], "udp://x", f"{SCHEDULER_ENV} 'udp://x' is not a Dask scheduler address"),
        (["--workers", "2", "--max-hops-per-s", "5"], None, "hold in one process only"),
    ):
        if env:
            monkeypatch.setenv(SCHEDULER_ENV, env)
        assert main([*start, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and err.count("\n") == 1, (extra, err)
        monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert ro.list_runs(ops) == []

    run_id = _pilot(cli_env, ops, seeded, tmp_path, workers=2)
    assert main(["rollout", "status"]) == 0
    assert "batches run local Dask cluster of 2 worker process(es)" in capsys.readouterr().out
    assert main(["rollout", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["executor_spec"]["workers"] == 2
    ro.cancel(ops, run_id, ADMIN)
