"""`python -m engine actionable` on a real data dir after real production runs: table, CSV and JSON of the
feed and of its departures, --output, filters, and one-line errors for what names nothing."""

from __future__ import annotations

import csv
import io
import json

import pytest

from engine.cli.main import main
from engine.core.params import ParameterConfig
from engine.core.settings import load_settings
from engine.production.feed import FEED_COLUMNS, LEFT_COLUMNS
from engine.store import falkor
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.cli import cli_env, one_line_error, run_cli
from tests.support.feed import DAY, T0, RejectEverything, production_runs, promote, seed_feed

SINCE = "2026-12-01"


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    """A data dir with 40 entities, 30 run live at T0, then one of the actionable ones taken out by a run on a
    stricter live config that met only REJECTs: (settings, actionable ids, the one that left)."""
    data_dir = tmp_path_factory.mktemp("actionable-cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISCOVERY_DATA_DIR", str(data_dir))
        mp.delenv("FALKORDB_URL", raising=False)
        mp.delenv("DISCOVERY_GRAPH", raising=False)
        settings = load_settings().ensure_dirs()
        graph = GraphStore.open(settings)
        try:
            ops = open_ops_db(settings)
            _, truth = seed_feed(graph, ops, 40, 30)
            gone = sorted(truth)[0]
            promote(ops, ParameterConfig(actionable_min_accepts=10), run_id=2, at=T0 + DAY)
            production_runs(graph, ops, [gone], at=T0 + 2 * DAY, source=RejectEverything())
            entities = graph.get_entities(truth)
        finally:
            graph.close()
        yield settings, truth - {gone}, gone, entities
        falkor.stop_embedded_server(settings)


@pytest.fixture
def env(fed, monkeypatch):
    settings = fed[0]
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    monkeypatch.delenv("DISCOVERY_GRAPH", raising=False)
    return fed


def test_the_table_lists_the_feed_newest_first_with_a_summary(env, capsys):
    _, truth, gone, entities = env
    assert main(["actionable", "--since", SINCE]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["became", "actionable", "entity"]
    assert out[-1] == f"{len(truth)} entities became actionable in the window (31 live runs read)"
    body = out[1:-1]
    assert len(body) == len(truth)
    assert all(line.startswith("2026-12-01T10:00:00Z") for line in body)
    assert not any(entities[gone].name in line for line in body)


def test_csv_has_every_column_and_one_row_per_entity(env, capsys, tmp_path):
    _, truth, gone, entities = env
    path = tmp_path / "feed.csv"
    assert main(["actionable", "--since", SINCE, "--format", "csv", "--output", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {path}: {len(truth)} entities became actionable")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == FEED_COLUMNS
    assert {r["entity_id"] for r in rows} == truth
    for r in rows:
        assert r["stage"] == "production" and r["system"] == "new" and r["config_origin"] == "the defaults"
        assert r["evidence_url"].startswith("https://") and r["evidence_excerpt"]
        assert int(r["evidence_count"]) >= 2 and ";" in r["categories"]


def test_json_carries_the_accepting_evidence_and_left_carries_the_reason(env, capsys):
    _, truth, gone, _ = env
    assert main(["actionable", "--since", SINCE, "--format", "json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert {i["entity_id"] for i in items} == truth
    assert all(e["decision"] == "ACCEPT" and e["url"] for i in items for e in i["evidence"])
    assert main(["actionable", "--since", SINCE, "--left", "--format", "csv"]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert tuple(row) == LEFT_COLUMNS
    assert row["entity_id"] == gone and row["left"] == "2026-12-03T10:00:00Z"
    assert "was not actionable" in row["reason"] and "REJECT" in row["reason"]
    assert main(["actionable", "--since", SINCE, "--left"]) == 0
    out = capsys.readouterr().out
    assert "was not actionable" in out and "the gate needs 10 across 2" in out
    assert out.splitlines()[-1] == "1 entity left the feed in the window (31 live runs read)"


def test_filters_and_the_window(env, capsys):
    _, truth, gone, entities = env
    some = entities[sorted(truth)[-1]]
    assert main(["actionable", "--since", SINCE, "--country", some.country, "--format", "json"]) == 0
    got = {i["entity_id"] for i in json.loads(capsys.readouterr().out)}
    assert got == {e for e in truth if entities[e].country == some.country}
    assert main(["actionable", "--since", SINCE, "--template", some.template_id, "--format", "json"]) == 0
    got = {i["entity_id"] for i in json.loads(capsys.readouterr().out)}
    assert got == {e for e in truth if entities[e].template_id == some.template_id}
    assert main(["actionable", "--since", "2026-12-02", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["actionable", "--since", "2026-11-30", "--until", "2026-11-30", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["actionable", "--since", "2026-11-30", "--until", "2026-12-01", "--format", "json"]) == 0
    # a bare --until date includes that day; the feed stands as it did then (the later run that took one out
    # is after the window)
    assert {i["entity_id"] for i in json.loads(capsys.readouterr().out)} == truth | {gone}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--since", "last week"], "error: --since: 'last week' is not a date or time: use YYYY-MM-DD"),
        (["--since", SINCE, "--until", "2026-02-30"], "error: --until: '2026-02-30' is not a date or time"),
        (["--since", SINCE, "--country", "Atlantis"], "error: unknown country 'Atlantis': use one of "),
        (["--since", SINCE, "--template", "nope"], "error: unknown template 'nope': use one of "),
        (["--since", SINCE, "--category", "Gardening"], "error: unknown category 'Gardening': use one of "),
        (["--since", SINCE, "--format", "xml"], "error: python -m engine actionable: argument --format: invalid"),
    ],
)
def test_bad_input_is_one_line_saying_what_is_valid(env, capsys, args, expected):
    assert main(["actionable", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1, err


@pytest.mark.slow
def test_a_real_process_prints_the_feed_and_refuses_an_unknown_category(env, tmp_path):
    settings, truth, _, _ = env
    done = run_cli(cli_env(settings), tmp_path, "actionable", "--since", SINCE, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert len(list(csv.DictReader(io.StringIO(done.stdout)))) == len(truth)
    err = one_line_error(run_cli(cli_env(settings), tmp_path, "actionable", "--since", SINCE, "--category", "x"))
    assert "unknown category 'x': use one of " in err and "Ticketing" in err
