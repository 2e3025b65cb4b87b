"""Demo monitoring data: real shadow runs of both systems at spread-out virtual times, recorded once."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.cli.main import main
from engine.discovery.demo import pick_entities, seed_demo_metrics
from engine.monitoring.events import count_events, query_events
from engine.store.opsdb import OpsDB

NOW = 1_800_000_000.0
DAY = 86400.0


@pytest.fixture
def seeded(seed_graph):
    return seed_graph(60, 7, clock=lambda: NOW - 2 * DAY)


def test_both_systems_really_run_on_each_entity_at_spread_out_times(seeded, ops, settings):
    before = {eid: seeded.get_hypotheses(eid) for eid in seeded.list_entity_ids()}
    report = seed_demo_metrics(settings, seeded, ops=ops, entities=20, slots=5, now=NOW)
    assert (report.entities, report.events, report.slots) == (20, 40, 5)
    events = query_events(ops)
    assert len(events) == 40
    assert Counter(e.system for e in events) == {"new": 20, "old": 20}
    assert all(e.shadow and e.run_id.startswith("demo-") for e in events)
    # each entity ran once per system, at one of 5 times inside the last 24 h
    assert Counter((e.entity_id, e.system) for e in events).most_common(1)[0][1] == 1
    times = sorted({e.at for e in events})
    assert len(times) == 5 and times[0] > NOW - DAY and times[-1] < NOW
    assert times[-1] - times[0] > DAY / 2
    # real runs against the simulated world: hops were bought, truth is known, names are filled in
    assert all(e.hops > 0 and e.cost_usd > 0 and e.correct is not None and e.entity_name for e in events)
    assert len({round(e.cost_usd, 6) for e in events}) > 5  # not one repeated made-up figure
    # shadow: the graph did not change
    assert {eid: seeded.get_hypotheses(eid) for eid in before} == before
    assert ops.list_audit(action="metrics.seed_demo")[0]["details"]["events"] == 40


def test_it_is_deterministic_and_runs_once(seeded, ops, settings, tmp_path):
    seed_demo_metrics(settings, seeded, ops=ops, entities=10, slots=2, now=NOW)
    again = seed_demo_metrics(settings, seeded, ops=ops, entities=10, slots=2, now=NOW)
    assert again.events == 0 and "already recorded" in again.summary()
    assert count_events(ops) == 20
    other = OpsDB(tmp_path / "other.sqlite")
    seed_demo_metrics(settings, seeded, ops=other, entities=10, slots=2, now=NOW)

    def figures(db):
        return sorted((e.entity_id, e.system, e.at, e.cost_usd, e.hops, e.actionable) for e in query_events(db))

    assert figures(other) == figures(ops)  # the same world, the same runs


def test_catalogue_only_leaves_imported_graphs_alone(seeded, ops, settings):
    report = seed_demo_metrics(settings, seeded, ops=ops, entities=5, slots=1, now=NOW, catalogue_only=True)
    assert report.events == 0 and "not seeded from the demo catalogue" in report.summary()
    ops.audit("cli", "seed", "catalogue:7")
    ops.audit("cli", "import", "/tmp/mine.csv")
    report = seed_demo_metrics(settings, seeded, ops=ops, entities=5, slots=1, now=NOW, catalogue_only=True)
    assert report.events == 0 and "imported" in report.summary()
    assert count_events(ops) == 0


def test_pick_entities_spreads_over_the_catalogue():
    ids = [f"e{i:03d}" for i in range(100)]
    picked = pick_entities(ids, 10)
    assert picked == [f"e{i:03d}" for i in range(0, 100, 10)]
    assert pick_entities(ids[:3], 10) == ids[:3]


def test_demo_ensure_on_a_seeded_catalogue_records_demo_metrics_once(seeded, settings, monkeypatch, capsys):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DISCOVERY_GRAPH", settings.graph_name)
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    ops = OpsDB(settings.ops_db_path)
    ops.audit("cli", "seed", "catalogue:7")
    assert main(["demo", "--ensure"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("demo metrics: ran the new and the old system (shadow, simulated world) on 60 entities")
    assert lines[-1] == "the graph already holds 60 entities: demo catalogue not loaded again"
    assert count_events(ops) == 120
    assert main(["demo", "--ensure"]) == 0
    assert "demo metrics: none added (120 metric events already recorded)" in capsys.readouterr().out
    assert count_events(ops) == 120
