"""`python -m engine rollout ...`: a real detached worker behind the CLI, one-line errors, confirmation."""

from __future__ import annotations

import io
import json

import pytest

from engine.cli.main import main
from tests.support.actors import person
from tests.support.rollouts import candidate_file
from tests.support.stages import stage_table


@pytest.fixture
def cli_env(settings, seed_graph, monkeypatch):
    seed_graph(40, 3)
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DISCOVERY_GRAPH", settings.graph_name)
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: rollback must be confirmed by --yes
    return settings


def test_errors_are_one_line_with_exit_code_2(cli_env, capsys):
    assert main(["rollout", "status"]) == 0
    assert "no rollout yet" in capsys.readouterr().out
    for argv, needle in (
        (["rollout", "--stage", "pilott"], "unknown stage 'pilott'"),
        (["rollout"], "--stage"),
        (["rollout", "--stage", "pilot", "--config-file", "/nonexistent/c.json"], "does not exist"),
        (["rollout", "--stage", "pilot", "--time-scale", "-1"], "--time-scale: got -1.0 (allowed: a number > 0"),
        (["rollout", "promote"], "no rollout"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and err.count("\n") == 1, (argv, err)


def test_start_wait_status_report_and_confirmed_rollback(cli_env, tmp_path, capsys):
    stages = stage_table(tmp_path, counts=(10, 20, "all"), loose_triggers=True)
    code = main(
        [
            "rollout",
            "--stage",
            "all",
            "--stages-file",
            str(stages),
            "--entities",
            "20",
            "--config-file",
            str(candidate_file(tmp_path)),
            "--time-scale",
            "400000",
            "--wait",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rollout 1 started: stages pilot -> limited -> production" in out and "completed" in out
    assert main(["rollout", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "completed" and status["progress"] == [20, 20]
    assert [s["state"] for s in status["stages"]] == ["promoted", "promoted", "skipped"]
    assert main(["rollout", "status"]) == 0
    text = capsys.readouterr().out
    assert "rollout 1: completed" in text and "pilot" in text and "decisions" in text
    assert "started by cli:" in text  # the command line's actor (admin while the role map is empty)
    report = tmp_path / "pilot.md"
    assert main(["rollout", "report", "--stage", "pilot", "--output", str(report)]) == 0
    assert report.read_text().startswith("# Rollout 1 — stage pilot")
    assert main(["rollout", "rollback"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert main(["rollout", "rollback", "--yes", "--reason", "test"]) == 0
    assert "rolled back rollout 1: 20 entities restored" in capsys.readouterr().out
    assert main(["rollout", "rollback", "--yes"]) == 0
    assert "already rolled back" in capsys.readouterr().out
    assert main(["rollout", "runs"]) == 0
    assert "rolled_back" in capsys.readouterr().out


def test_bench_rollout_runs_and_checks_the_restore(capsys):
    assert main(["bench", "rollout", "--entities", "40"]) == 0
    out = capsys.readouterr().out
    assert "rollout 1: completed (succeeded)" in out
    assert "paired entities/s" in out and "graph equals the snapshots: True" in out


def test_a_refused_action_is_one_line_naming_the_role_and_exits_non_zero(cli_env, ops, tmp_path, capsys):
    """Once the role map names anyone, the command line's OS user acts with its own role from it (a viewer
    here); a refusal is the engine's PermissionDenied, printed as one line."""
    stages = stage_table(tmp_path, loose_triggers=True)
    args = ["rollout", "--stage", "pilot", "--stages-file", str(stages), "--config-file", str(candidate_file(tmp_path))]
    person(ops, "boss@example.com", "admin")
    for argv, needle in (
        (args, "rollout.start needs the operator role; cli:"),
        (["rollout", "promote"], "rollout.promote needs the approver role; cli:"),
        (["rollout", "promote", "--force"], "rollout.force_promote needs the approver role; cli:"),
        (["rollout", "rollback", "--yes"], "no rollout"),  # nothing to roll back: read before the check
        (["rollout", "pause"], "rollout.pause needs the operator role; cli:"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and err.count("\n") == 1, (argv, err)
    assert ops.list_audit(action="rollout.start") == []
