"""`python -m engine tune ...`: a real study through a real worker, validate mode, status/list/cancel/resume/
export/handoff, and one-line errors that write nothing."""

from __future__ import annotations

import json

import pytest

from engine.cli.main import main
from engine.core.configs import set_live_config
from engine.core.params import ParameterConfig
from engine.core.settings import load_settings
from engine.jobs.queue import JobState, JobStore, run_claimed
from engine.store.opsdb import open_ops_db
from engine.tuning.outputs import winner_config
from engine.tuning.store import get_study, list_studies, list_trials
from tests.support.actors import ADMIN

SMALL = ["--entities", "30", "--params", "max_iterations,delta_accept", "--validation-split", "0.7"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    return load_settings().ensure_dirs()


@pytest.fixture
def no_launch(monkeypatch):
    """Workers are not started; the test runs the job in-process with run_claimed when it wants."""
    launched = []
    monkeypatch.setattr("engine.jobs.queue.launch_worker", lambda settings, job_id, **kw: launched.append(job_id) or 0)
    return launched


@pytest.mark.slow
def test_tune_runs_a_study_in_a_worker_and_writes_the_outputs(env, tmp_path, capsys):
    out, rep = tmp_path / "best.json", tmp_path / "report.md"
    rc = main(
        [
            "tune",
            "--method",
            "random",
            "--iterations",
            "2",
            *SMALL,
            "--output-file",
            str(out),
            "--report-file",
            str(rep),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "study 1 finished: 3 trials" in text and "optimism gap" in text
    ops = open_ops_db(env)
    study = get_study(ops, 1)
    assert ParameterConfig.load(out).hash() == study.result["winner"]["config_hash"]
    assert "# Tuning study 1" in rep.read_text()
    assert [t.number for t in list_trials(ops, 1)] == [0, 1, 2]
    job = JobStore(ops).get(study.job_id)
    assert job.state is JobState.SUCCEEDED and job.pid is not None  # it ran in a worker process

    assert main(["tune", "--config-file", str(out), "--validate", "--json"]) == 0
    v = json.loads(capsys.readouterr().out)
    assert v["candidate"]["config_hash"] == study.result["winner"]["config_hash"]
    assert v["candidate"]["score"] == pytest.approx(study.result["winner"]["holdout_score"])
    assert v["base"]["score"] == pytest.approx(study.result["base"]["holdout_score"])
    assert "study 1" in v["holdout"]


def test_detached_study_status_cancel_resume_export_and_handoff(env, tmp_path, capsys, no_launch):
    assert main(["tune", "--method", "grid", "--iterations", "3", *SMALL, "--detach"]) == 0
    assert "detached" in capsys.readouterr().out
    ops = open_ops_db(env)
    study = get_study(ops, 1)
    assert no_launch == [study.job_id]
    assert main(["tune", "status"]) == 0
    assert "[queued]" in capsys.readouterr().out
    assert main(["tune", "cancel", "1"]) == 0
    assert JobStore(ops).get(study.job_id).state is JobState.CANCELLED
    capsys.readouterr()
    assert main(["tune", "export", "1", "--output-file", str(tmp_path / "x.json")]) == 2
    assert "has not finished" in capsys.readouterr().err

    assert main(["tune", "resume", "1"]) == 0
    resumed = get_study(ops, 1)
    assert resumed.job_id != study.job_id and no_launch[-1] == resumed.job_id
    assert run_claimed(JobStore(ops), resumed.job_id, env).state is JobState.SUCCEEDED
    capsys.readouterr()
    assert main(["tune", "list"]) == 0
    assert "finished" in capsys.readouterr().out
    assert main(["tune", "status", "1", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "finished" and len(status["trials"]) == 4
    assert (
        main(
            ["tune", "export", "1", "--output-file", str(tmp_path / "x.json"), "--report-file", str(tmp_path / "x.md")]
        )
        == 0
    )
    assert ParameterConfig.load(tmp_path / "x.json").hash() == get_study(ops, 1).result["winner"]["config_hash"]
    # a winner identical to the live config is refused in one line; another live config lets it through
    with ops.transaction() as db:
        set_live_config(ops, db, winner_config(get_study(ops, 1)), run_id=1, actor=ADMIN, at=0.0)
    assert main(["tune", "handoff", "1", "--name", "from-cli"]) == 2
    assert "identical to the live config: nothing to hand over" in capsys.readouterr().err
    with ops.transaction() as db:  # cache_ttl_s: a parameter no study here tunes
        set_live_config(ops, db, ParameterConfig().with_changes(cache_ttl_s=330.0), run_id=2, actor=ADMIN, at=0.0)
    assert main(["tune", "handoff", "1", "--name", "from-cli"]) == 0
    assert ops.get_setting("rollout.candidate")["path"].endswith("configs/from-cli.json")


def test_validate_without_a_study_uses_the_split_the_flags_define(env, tmp_path, capsys):
    cfg = ParameterConfig().with_changes(max_iterations=8).save(tmp_path / "c.json")
    assert main(["tune", "--config-file", str(cfg), "--validate", *SMALL]) == 0
    text = capsys.readouterr().out
    assert "candidate" in text and "base" in text and "difference" in text
    assert list_studies(open_ops_db(env)) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tune", "--iterations", "2", "--validation-split", "1.5", *SMALL[:2]], "between 0 and 1"),
        (["tune", "--iterations", "2", "--params", "max_iterations,bogus"], "unknown parameter"),
        (["tune", "--iterations", "0"], "--iterations: got 0 (allowed: a whole number from 1 to 10,000)"),
        (["tune", "--iterations", "2", "--detach", "--output-file", "x.json"], "need the study to finish"),
        (["tune", "--validate"], "needs both --config-file"),
        (["tune", "--config-file", "/nonexistent/c.json", "--validate"], "does not exist"),
        (["tune", "--iterations", "2", "--validation-data", "/nonexistent/e.csv"], "does not exist"),
        (["tune", "--iterations", "2", "--rewards", "per_usd=-1"], "invalid rewards"),
        (
            ["tune", "--iterations", "2", "--output-file", "/nonexistent-dir/best.json"],
            "directory /nonexistent-dir does not exist: create it or choose another --output-file",
        ),
        (["tune", "status", "9"], "no tuning study with id 9"),
        (["tune", "--iterations", "2", "--evidence", "replay"], "needs a file"),
        (["tune", "--iterations", "2", "--evidence", "http"], "needs a URL"),
        (["tune", "--iterations", "2", "--labels", "/nonexistent/labels.csv"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(env, capsys, no_launch, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert list_studies(open_ops_db(env)) == [] and no_launch == []


def test_bench_tuning_prints_evaluations_and_the_ratio(capsys):
    assert main(["bench", "tuning", "--seeds", "1", "--budget", "12", "--random-budget", "30", "--tolerance", "5"]) == 0
    text = capsys.readouterr().out
    assert "seed 0: bayesian" in text and "ratio random/bayesian" in text
