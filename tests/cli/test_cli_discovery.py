"""`python -m engine discover | compare | bench discovery` as a user runs them: real processes, real stores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

from engine.catalogue.generator import generate_catalogue, seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.settings import REPO_ROOT, Settings
from engine.monitoring.events import query_events
from engine.store import falkor
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db

PY = sys.executable
ENTITY = generate_catalogue(1, 7)[0].id


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run the CLI in this process against a fresh data dir seeded with 30 entities (``cli.process`` runs
    it as a real subprocess); the embedded server is stopped at teardown."""
    from engine.cli.main import main

    settings = Settings(data_dir=tmp_path / "data")
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    monkeypatch.delenv("DISCOVERY_GRAPH", raising=False)
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def run(*args: str, check: bool = True) -> Done:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        done = Done(code, out, err)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def process(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([PY, "-m", "engine", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=240)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    run.settings = settings
    run.process = process
    try:
        with GraphStore.open(settings.ensure_dirs()) as g:
            seed_catalogue(g, 30, 7, load_templates())
        yield run
    finally:
        falkor.stop_embedded_server(settings)


def one_line_error(done) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def graph_state(settings, ids):
    with GraphStore.open(settings) as g:
        return {eid: (g.get_hypotheses(eid), g.get_evidence(eid)) for eid in ids}


@pytest.mark.parametrize("command", [["discover"], ["compare"], ["bench", "discovery"]])
def test_every_discovery_command_has_help(command, capsys):
    from engine.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m engine " + " ".join(command))


@pytest.mark.slow  # starts or kills real processes
def test_discover_prints_the_trail_writes_the_graph_and_records_the_run(cli):
    done = cli.process("discover", "--entity", ENTITY, "--seed", "2")  # as a user runs it
    out = done.stdout
    assert f"entity   {ENTITY}" in out and "live (hypotheses and evidence written to the graph)" in out
    trail = [line for line in out.splitlines() if re.match(r"\s*\d+\s{2}", line)]
    assert trail, out
    for line in trail:
        assert re.search(
            r"\d\.\d{3}\s+\w+\s+(SURFACE|OPERATIONAL|AUTHORITY)\s+"
            r"(ACCEPT|WEAK_ACCEPT|REJECT|NO_PROGRESS)\s+[+-]\d\.\d\d\s+\d\.\d\d\s+\$\d\.\d{3}",
            line,
        ), line
    assert re.search(r"result   \d+ hops · \$\d\.\d{3} spent · actionable: (YES|no)", out)
    assert re.search(r"stop     \w+: ", out)
    with GraphStore.open(cli.settings) as g:
        evidence = g.get_evidence(ENTITY)
    assert len(evidence) == len(trail)
    ops = open_ops_db(cli.settings)
    (event,) = query_events(ops)
    assert event.entity_id == ENTITY and not event.shadow and event.hops == len(trail)
    assert event.correct is not None  # the simulated world knows the truth
    assert [a["target"] for a in ops.list_audit(action="discover")] == [ENTITY]


def test_discover_shadow_old_writes_nothing_and_json_is_parseable(cli):
    before = graph_state(cli.settings, [ENTITY])
    done = cli("discover", "--entity", ENTITY, "--system", "old", "--shadow", "--json")
    data = json.loads(done.stdout)
    assert data["system"] == "old" and data["shadow"] is True and data["entity_id"] == ENTITY
    assert data["iterations"] == len(data["hops"]) > 0
    assert data["cost_usd"] <= 0.475 + 1e-9
    assert graph_state(cli.settings, [ENTITY]) == before
    (event,) = query_events(open_ops_db(cli.settings))
    assert event.shadow and event.system == "old"


def test_bad_input_is_one_line_exit_2_and_nothing_written(cli, tmp_path):
    before = graph_state(cli.settings, [ENTITY])
    assert "unknown entity id 'no-such-club'" in one_line_error(
        cli("discover", "--entity", "no-such-club", check=False)
    )
    bad = tmp_path / "params.json"
    bad.write_text(json.dumps({"max_iterations": 0, "delta_acept": 0.1}))
    msg = one_line_error(cli("discover", "--entity", ENTITY, "--config-file", str(bad), check=False))
    assert str(bad) in msg and "delta_acept" in msg
    bad.write_text("{not json")
    assert "not valid JSON" in one_line_error(cli("compare", "--entities", "5", "--config-file", str(bad), check=False))
    msg = one_line_error(
        cli("discover", "--entity", ENTITY, "--evaluator-url", "http://127.0.0.1:9/evaluate", check=False)
    )
    assert "unreachable" in msg
    assert "fewer than --entities" in one_line_error(cli("compare", "--entities", "500", check=False))
    assert graph_state(cli.settings, [ENTITY]) == before
    assert query_events(open_ops_db(cli.settings)) == []


def test_discover_against_a_local_http_evaluator(cli):
    from tests.support.evaluator import Evaluator

    ev = Evaluator()
    try:
        done = cli("discover", "--entity", ENTITY, "--evaluator-url", ev.url, "--shadow")
    finally:
        ev.close()
    assert f"HTTP evaluator {ev.url}" in done.stdout
    assert len(ev.requests) > 0 and "ACCEPT" in done.stdout
    assert all(r["body"]["entity"]["id"] == ENTITY for r in ev.requests)


def test_compare_on_graph_entities_is_shadow_and_recorded(cli):
    ids = [e.id for e in generate_catalogue(30, 7)]
    before = graph_state(cli.settings, ids)
    done = cli("compare", "--entities", "12", "--seed", "3", "--world-seed", "2")
    out = done.stdout
    for label in (
        "cost total (USD)",
        "cost per entity (USD)",
        "actionable calls",
        "actionable rate",
        "precision",
        "recall",
        "error rate",
        "hop latency p50 (s)",
        "hop latency p95 (s)",
        "iterations per entity",
    ):
        assert re.search(rf"^{re.escape(label)}\s+\S+\s+\S+\s+\S+", out, re.M), label
    assert "12 of the graph's 30 entities (sample seed 3)" in out
    assert "stop reasons old: " in out and "paired (same entities)" in out
    assert graph_state(cli.settings, ids) == before
    events = query_events(open_ops_db(cli.settings), shadow=True)
    assert Counter_of(events) == {"new": 12, "old": 12}
    assert len({e.entity_id for e in events}) == 12


def Counter_of(events):
    out = {}
    for e in events:
        out[e.system] = out.get(e.system, 0) + 1
    return out


def test_compare_catalogue_json_is_deterministic_and_touches_no_store(tmp_path, monkeypatch, capsys):
    from engine.cli.main import main

    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(tmp_path / "untouched"))
    outs = []
    for _ in range(2):
        assert main(["compare", "--catalogue", "--entities", "40", "--seed", "7", "--world-seed", "3", "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    a, b = outs
    for key in ("new", "old"):
        for field in ("n", "cost_total_usd", "actionable", "precision", "recall", "hops", "errors"):
            assert a[key][field] == b[key][field]
    assert a["new"]["n"] == a["old"]["n"] == 40
    assert a["truly_actionable"] is not None
    assert not (tmp_path / "untouched").exists()


def test_bench_discovery_prints_figures_and_ratios(tmp_path, monkeypatch, capsys):
    from engine.cli.main import main

    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(tmp_path / "untouched"))
    assert main(["bench", "discovery", "--entities", "60"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"new: engine time per entity p50 \d+\.\d\d ms, p95 \d+\.\d\d ms", out)
    assert re.search(r"old: engine time per entity p50", out)
    assert re.search(r"full 60-entity new-system run < 60 s -> \d+\.\d\d s", out)
    assert not (tmp_path / "untouched").exists()
