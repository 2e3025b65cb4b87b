"""`python -m engine rollout guardrail ...`: status (text and JSON), evaluate (exit 1 once it reverts), revert
(confirmed, idempotent), end, and one-line errors."""

from __future__ import annotations

import io
import json
import time

from engine import rollout as ro
from engine.cli.main import main
from engine.core.params import ParameterConfig
from tests.support.guardrails import BAD, production_traffic, promote_into_production


def one_line_error(capsys, argv, needle):
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1, (argv, err)


def test_guardrail_commands(settings, ops, seed_graph, tmp_path, monkeypatch, capsys):
    graph = seed_graph(40, 3)
    ids = graph.list_entity_ids()
    monkeypatch.delenv("DISCOVERY_DATA_DIR", raising=False)  # promoted here: no evaluator worker is launched
    production_traffic(graph, ops, ids, ParameterConfig(), at=1_000.0, system="old")
    run_id = promote_into_production(settings, ops, graph, tmp_path, BAD)
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DISCOVERY_GRAPH", settings.graph_name)
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: revert must be confirmed by --yes
    capsys.readouterr()

    assert main(["rollout", "guardrail"]) == 0
    out = capsys.readouterr().out
    assert f"guardrail of rollout {run_id}" in out and "baking, day 0.0 of 7" in out
    assert "watching cost increase > 15 %, error rate > 10 %, p95 engine time > 1500 ms" in out
    assert "evaluator: job" in out
    assert main(["rollout", "guardrail", "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "baking" and data["promoted_hash"] == BAD.hash() and data["min_sample"] == 20
    assert main(["rollout", "guardrail", "evaluate"]) == 0
    assert "not evaluated yet" not in capsys.readouterr().out
    assert main(["rollout", "status"]) == 0  # the run's status ends with its bake
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith(f"  guardrail of rollout {run_id}")
    assert main(["rollout", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["guardrail"]["state"] == "baking"

    production_traffic(graph, ops, ids, BAD, at=time.time())
    assert main(["rollout", "guardrail", "evaluate"]) == 1  # it reverted: a script notices
    out = capsys.readouterr().out
    assert f"reverted to {ParameterConfig().hash()}" in out and "cost_increase_pct" in out  # the criteria rows
    assert ro.live_config(ops) == ParameterConfig()

    one_line_error(capsys, ["rollout", "guardrail", "revert"], "confirm with --yes")
    assert main(["rollout", "guardrail", "revert", "--yes", "--reason", "twice"]) == 0
    assert "already reverted" in capsys.readouterr().out
    one_line_error(capsys, ["rollout", "guardrail", "end", "--reason", "late"], "already reverted")
    one_line_error(capsys, ["rollout", "status", "evaluate"], "takes no second word")
    assert main(["rollout", "guardrail", "start"]) == 0
    assert "the bake window is closed" in capsys.readouterr().out
