"""The executor's command-line flags: `tune --workers/--scheduler` and `compare --workers/--scheduler`, bad
values as one-line errors that store nothing, and a study whose job runs its trials on a local cluster."""

from __future__ import annotations

import pytest

from engine.cli.main import main
from engine.core.settings import load_settings
from engine.jobs.executor import SCHEDULER_ENV, DaskExecutor, announced, make_executor
from engine.jobs.queue import JobState, JobStore, run_claimed
from engine.store.opsdb import open_ops_db
from engine.tuning import runner as tuning_runner
from engine.tuning.store import get_study, list_studies, list_trials

SMALL = ["--entities", "30", "--params", "max_iterations,delta_accept", "--validation-split", "0.7"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    return load_settings().ensure_dirs()


@pytest.fixture
def no_launch(monkeypatch):
    """Workers are not started; the test runs the job in this process with run_claimed."""
    launched = []
    monkeypatch.setattr("engine.jobs.queue.launch_worker", lambda settings, job_id, **kw: launched.append(job_id) or 0)
    return launched


@pytest.mark.parametrize(
    "argv, environ, message",
    [
        (["tune", "--iterations", "2", "--workers", "0"], {}, "--workers: got 0 (allowed: a whole number from 1"),
        (["tune", "--iterations", "2", "--workers", "65"], {}, "--workers: got 65"),
        (["tune", "--iterations", "2", "--workers", "two"], {}, "--workers"),
        (
            ["tune", "--iterations", "2", "--scheduler", "localhost:8786"],
            {},
            "--scheduler 'localhost:8786' is not a Dask scheduler address: use tcp://host:8786",
        ),
        (["tune", "--iterations", "2"], {SCHEDULER_ENV: "http://x"}, f"{SCHEDULER_ENV} 'http://x' is not a Dask"),
        (["compare", "--catalogue", "--entities", "5", "--workers", "2"], {}, "drop --catalogue"),
        (["compare", "--entities", "5", "--workers", "2", "--max-in-flight", "4"], {}, "cannot be combined"),
        (["compare", "--entities", "5", "--scheduler", "tcp://nohost"], {}, "is not a Dask scheduler address"),
    ],
)
def test_bad_executor_flags_are_one_line_errors_and_store_nothing(
    env, capsys, no_launch, monkeypatch, argv, environ, message
):
    for k, v in environ.items():
        monkeypatch.setenv(k, v)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert list_studies(open_ops_db(env)) == [] and no_launch == []


@pytest.mark.slow
def test_a_study_with_workers_runs_its_trials_on_a_local_cluster_from_its_job(env, capsys, no_launch, monkeypatch):
    made = []

    def spy(spec, **kw):
        made.append(make_executor(spec, **kw))
        return made[-1]

    monkeypatch.setattr(tuning_runner, "make_executor", spy)
    assert main(["tune", "--method", "random", "--iterations", "3", *SMALL, "--workers", "2", "--detach"]) == 0
    out = capsys.readouterr().out
    assert "trials run local Dask cluster of 2 worker process(es)" in out
    ops = open_ops_db(env)
    study = get_study(ops, 1)
    assert study.spec.workers == 2
    store = JobStore(ops)
    job = store.get(study.job_id)
    assert job.params["executor"] == {"workers": 2, "scheduler": None, "dask": False}
    done = run_claimed(store, job.id, env)
    assert done.state is JobState.SUCCEEDED, done.error
    (executor,) = made
    assert isinstance(executor, DaskExecutor) and executor.spec.workers == 2 and executor.spec.kind == "local"
    assert [t.number for t in list_trials(ops, 1)] == [0, 1, 2, 3]
    assert get_study(ops, 1).finished_at is not None
    assert announced(env.data_dir) == []  # the cluster was closed and its announcement withdrawn
