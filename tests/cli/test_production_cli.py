"""`python -m engine production ...`: status and plan on a seeded data dir, one-line errors, and a real detached
worker started, paused and stopped from the command line."""

from __future__ import annotations

import json

import pytest

from engine.cli.main import main
from engine.jobs.queue import JobState, JobStore, wait_for

WORKER_TIMEOUT_S = 120.0


@pytest.fixture
def cli_env(settings, seed_graph, monkeypatch):
    seed_graph(25, 3)
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DISCOVERY_GRAPH", settings.graph_name)
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    return settings


def test_status_and_plan_before_anything_ran(cli_env, capsys):
    assert main(["production", "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("production: not started")
    assert "entities 25: 25 due (25 new, 0 overdue)" in out
    assert main(["production", "status", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (st["state"], st["due"], st["new"], st["visits"], st["budget_usd"]) == ("not started", 25, 25, 0, None)
    assert main(["production", "plan", "--top", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("the next 5 visits") and len(lines) == 7
    assert all("new: never visited" in line for line in lines[2:])
    assert main(["production", "plan", "--top", "3", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [d["rank"] for d in plan] == [1, 2, 3] and all(d["new"] for d in plan)
    assert plan[0]["eig_per_usd"] >= plan[1]["eig_per_usd"] >= plan[2]["eig_per_usd"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["production", "start", "--budget-usd", "nan"], "--budget-usd"),
        (["production", "start", "--budget-usd", "0"], "--budget-usd"),
        (["production", "start", "--budget-usd", "1e400"], "--budget-usd"),
        (["production", "start", "--min-age", "2d", "--max-age", "1d"], "the maximum age (86400 s) is below"),
        (["production", "start", "--max-age", "400d"], "--max-age"),
        (["production", "start", "--batch-size", "0"], "--batch-size"),
        (["production", "start", "--replay", "/nonexistent/e.jsonl"], "/nonexistent/e.jsonl"),
        (["production", "pause"], "production has never been started"),
        (["production", "resume"], "production has never been started"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(cli_env, capsys, argv, needle):
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1, (argv, err)


@pytest.mark.slow
def test_start_pause_status_and_stop_a_real_worker(cli_env, capsys, ops):
    assert main(["production", "start", "--budget-usd", "1.5", "--batch-size", "2", "--min-age", "0"]) == 0
    assert capsys.readouterr().out.startswith("production scheduler 1 started: $1.50 a day;")
    store = JobStore(ops)
    job = store.list(kind="production")[0]
    try:
        wait_for(store, job.id, until=lambda j: j.state is JobState.RUNNING, timeout_s=WORKER_TIMEOUT_S)
        assert main(["production", "start"]) == 2  # one scheduler at a time
        assert "is already running" in capsys.readouterr().err
        assert main(["production", "pause"]) == 0
        wait_for(store, job.id, until=lambda j: j.state is JobState.PAUSED, timeout_s=WORKER_TIMEOUT_S)
        assert main(["production", "status"]) == 0
        out = capsys.readouterr().out
        assert "production: paused" in out and "of $1.50" in out
        assert main(["production", "resume"]) == 0
        assert "resume requested" in capsys.readouterr().out
    finally:
        main(["production", "stop"])
        done = wait_for(store, job.id, until=lambda j: j.state.is_terminal(), timeout_s=WORKER_TIMEOUT_S)
    assert done.state is JobState.CANCELLED
    capsys.readouterr()
    assert main(["production", "status", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["state"] == "stopped" and st["budget_usd"] == 1.5 and 0 <= st["spent_usd"] <= 1.5


@pytest.mark.slow
def test_bench_production_shrunk_prints_budget_spend_ratio_and_overhead(capsys):
    assert main(["bench", "production", "--entities", "80", "--batch-size", "10"]) == 0
    out = capsys.readouterr().out
    assert "seeded 80 entities" in out and "warm-up day 1: 80 visits" in out
    lines = [line for line in out.splitlines() if " budget $" in line]
    assert [line.split()[0] for line in lines] == ["eig_per_usd", "round_robin", "round_robin_open_first"]
    assert all("(within budget, $" in line and "ms per visit" in line for line in lines)
    assert "EIG per dollar vs round robin: " in out and "found per dollar" in out


def test_start_on_an_empty_graph_is_refused_in_one_line(settings, monkeypatch, capsys):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DISCOVERY_GRAPH", settings.graph_name)
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    assert main(["production", "start"]) == 2
    err = capsys.readouterr().err
    assert err == "error: the graph holds no entities: seed it first (python -m engine seed --entities 3400)\n"
    assert main(["production", "plan"]) == 0
    assert "the graph holds no entities" in capsys.readouterr().out
