"""The Prometheus exporter against a real ops DB: real discovery runs, alerts, a rollout, a study and the cache,
scraped over HTTP and parsed with prometheus_client's parser, every figure checked against what is stored."""

from __future__ import annotations

import math
import random
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from engine import rollout as ro
from engine.cache.service import CacheService
from engine.discovery.runs import run_entities
from engine.monitoring import alerts as alerts_mod
from engine.monitoring.events import events_of_runs, query_events, record_events
from engine.monitoring.jsonlog import JsonlLog
from engine.notify.exporter import LATENCY_BUCKETS_S, EventTotals, _Group, event_families, serve
from engine.rollout.states import EffectiveState, StageState
from engine.store.opsdb import OpsDB
from engine.tuning.spec import EntitySpec, StudySpec
from engine.tuning.store import create_study
from tests.support.actors import ADMIN
from tests.support.monitoring_data import FakeClock, make_run
from tests.support.rollouts import run_pilot_here
from tests.support.scrape import exporter_on, family_samples, samples, scrape_text, value

COUNTERS = {
    "discovery_runs_total": "runs",
    "discovery_actionable_runs_total": "actionable",
    "discovery_cost_usd_total": "cost",
    "discovery_hops_total": "hops",
    "discovery_errored_hops_total": "errored",
}


def _stage_label(stage_id: str | None) -> str:
    if stage_id is None:
        return "none"
    return "tuning" if stage_id.startswith("tuning-") else stage_id


def expected_from_db(ops) -> tuple[dict[tuple[str, str, str], dict[str, Any]], Counter]:
    """What the exporter should serve, computed the slow way: every event read back and summed in Python."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"runs": 0, "actionable": 0, "cost": 0.0, "hops": 0, "errored": 0, "latencies": []}
    )
    by_type: Counter = Counter()
    for e in query_events(ops, experiments=True):
        key = (e.system, _stage_label(e.stage_id), "true" if e.shadow else "false")
        g = groups[key]
        g["runs"] += 1
        g["actionable"] += int(e.actionable)
        g["cost"] += e.cost_usd
        g["hops"] += e.hops
        g["errored"] += e.error_count
        g["latencies"].append(e.latency_s)
        for kind in e.error_types:
            by_type[(*key, kind)] += 1
    return dict(groups), by_type


def assert_events_match(text: str, ops) -> None:
    groups, by_type = expected_from_db(ops)
    assert groups, "the test recorded no events"
    got = samples(text)
    served_keys = {
        (dict(labels)["system"], dict(labels)["stage"], dict(labels)["shadow"])
        for (name, labels) in got
        if name == "discovery_runs_total"
    }
    assert served_keys == set(groups)
    for (system, stage, shadow), g in groups.items():
        labels = {"system": system, "stage": stage, "shadow": shadow}
        for name, field in COUNTERS.items():
            assert value(text, name, **labels) == pytest.approx(g[field]), (name, labels)
        lat = g["latencies"]
        for bound in LATENCY_BUCKETS_S:
            le = repr(float(bound))
            assert value(text, "discovery_run_latency_seconds_bucket", **labels, le=le) == sum(
                1 for x in lat if x <= bound
            ), (labels, le)
        assert value(text, "discovery_run_latency_seconds_bucket", **labels, le="+Inf") == len(lat)
        assert value(text, "discovery_run_latency_seconds_count", **labels) == len(lat)
        assert value(text, "discovery_run_latency_seconds_sum", **labels) == pytest.approx(math.fsum(lat))
    served_types = {
        tuple(dict(labels)[k] for k in ("system", "stage", "shadow", "type")): v
        for (name, labels), v in got.items()
        if name == "discovery_hop_errors_total"
    }
    assert served_types == dict(by_type)


def counters(text: str) -> dict[tuple, float]:
    return {k: v for k, v in samples(text).items() if k[0].endswith(("_total", "_bucket", "_count", "_sum"))}


def _record_synthetic_errors(ops, settings, *, at: float) -> None:
    """Events whose errored hops are known (the simulated world errs rarely): two types, a tuning trial's stage."""
    runs = [
        make_run("e-1", errors=("timeout", "http_5xx", "timeout"), hops=5, evidence_latency_s=31.0),
        make_run("e-2", system="old", errors=("bad_response",), hops=3, shadow=True, evidence_latency_s=0.2),
    ]
    record_events(
        ops,
        events_of_runs(runs, run_id="tuning-trial", stage_id="tuning-7", at=at),
        log=JsonlLog.for_settings(settings, "metrics"),
    )


@pytest.fixture
def seeded(seed_graph):
    return seed_graph(60, 7)


def test_a_scrape_serves_what_the_ops_db_holds_after_real_runs_and_alerts(settings, ops, seeded):
    clock = FakeClock()
    ids = seeded.list_entity_ids()
    # a shadow comparison outside any stage, and production traffic as the scheduler makes it (live, "production")
    for system in ("new", "old"):
        run_entities(seeded, ops, ids[:8], system=system, shadow=True, clock=clock, rng=random.Random(1))
    run_entities(seeded, ops, ids[8:16], system="new", stage_id="production", clock=clock)
    _record_synthetic_errors(ops, settings, at=clock.now)
    rules = alerts_mod.load_rules(settings)
    alerts_mod.evaluate_alerts(ops, rules, clock.now)

    with exporter_on(settings) as server:
        text = scrape_text(server.url)

    assert value(text, "discovery_opsdb_up") == 1.0
    assert_events_match(text, ops)
    assert value(text, "discovery_last_event_timestamp_seconds") == clock.now
    # alert states: one series per rule and state, exactly one of them 1
    states = alerts_mod.current_states(ops)
    assert set(states) == {r.id for r in rules}
    for rule_id, record in states.items():
        row = {
            s.labels["state"]: s.value
            for s in family_samples(text, "discovery_alert_state")
            if s.labels["rule"] == rule_id
        }
        assert row == {str(st): float(str(st) == str(record.state)) for st in alerts_mod.AlertStatus}, rule_id
        assert value(text, "discovery_alert_acknowledged", rule=rule_id) == 0.0
        if record.value is not None:
            assert value(text, "discovery_alert_value", rule=rule_id) == pytest.approx(record.value)


def test_the_latest_rollout_its_stages_and_their_progress_are_served(settings, ops, seeded, tmp_path):
    run_id = run_pilot_here(settings, ops, seeded, tmp_path)
    status = ro.rollout_status(ops, run_id)
    with exporter_on(settings) as server:
        text = scrape_text(server.url)
    run = str(run_id)
    state = {s.labels["state"]: s.value for s in family_samples(text, "discovery_rollout_state")}
    assert state[str(status.state)] == 1.0 and sum(state.values()) == 1.0
    assert str(EffectiveState.NONE) not in state
    for stage in status.stages:
        stage_states = {
            s.labels["state"]: s.value
            for s in family_samples(text, "discovery_rollout_stage_state")
            if s.labels["stage"] == stage.name and s.labels["run"] == run
        }
        assert stage_states == {str(st): float(st is stage.state) for st in StageState}, stage.name
        assert value(text, "discovery_rollout_stage_entities_done", run=run, stage=stage.name) == stage.done
        if stage.state.is_reached():
            assert value(text, "discovery_rollout_stage_entities_total", run=run, stage=stage.name) == stage.total
    pilot = status.stages[0]
    assert pilot.state.is_reached() and pilot.done == pilot.total > 0
    assert value(text, "discovery_rollout_runs", state=str(status.run.state)) == 1.0
    # the stage's paired runs are counted under its stage key, both systems
    assert_events_match(text, ops)
    assert value(text, "discovery_runs_total", system="new", stage=pilot.stage_id, shadow="false") == pilot.done


def test_counters_only_grow_with_more_events_and_a_restarted_exporter_serves_the_same(settings, ops, seeded):
    clock = FakeClock()
    ids = seeded.list_entity_ids()
    run_entities(seeded, ops, ids[:10], system="new", stage_id="production", clock=clock)
    with exporter_on(settings) as server:
        before = scrape_text(server.url)
        clock.tick(60)
        run_entities(seeded, ops, ids[10:25], system="new", stage_id="production", clock=clock)
        run_entities(seeded, ops, ids[25:30], system="old", shadow=True, clock=clock)
        _record_synthetic_errors(ops, settings, at=clock.now)
        after = scrape_text(server.url)  # the incremental cursor adds only the new events
    first, second = counters(before), counters(after)
    for key, v in first.items():
        assert second[key] >= v, key
    labels = {"system": "new", "stage": "production", "shadow": "false"}
    assert value(after, "discovery_runs_total", **labels) - value(before, "discovery_runs_total", **labels) == 15
    assert_events_match(after, ops)
    with exporter_on(settings) as restarted:  # a fresh process: sums everything from the table again
        again = counters(scrape_text(restarted.url))
    assert again.keys() == second.keys()
    for key, v in second.items():
        assert again[key] == pytest.approx(v), key


def test_a_replaced_ops_db_restarts_the_cursor_instead_of_adding_to_the_old_totals(settings, ops):
    clock = FakeClock()
    _record_synthetic_errors(ops, settings, at=clock.now)
    with exporter_on(settings) as server:
        assert value(scrape_text(server.url), "discovery_runs_total", system="new", stage="tuning", shadow="false") == 1
        for leftover in settings.ops_db_path.parent.glob(settings.ops_db_path.name + "*"):
            leftover.unlink()
        fresh = OpsDB(settings.ops_db_path)
        run = make_run("e-9", system="old")
        record_events(
            fresh, events_of_runs([run], run_id="x", at=clock.now), log=JsonlLog.for_settings(settings, "metrics")
        )
        text = scrape_text(server.url)
    assert value(text, "discovery_runs_total", system="new", stage="tuning", shadow="false") is None
    assert value(text, "discovery_runs_total", system="old", stage="none", shadow="false") == 1
    assert_events_match(text, fresh)


def test_tuning_studies_show_their_state_and_trials(settings, ops):
    spec = StudySpec(
        method="random",
        params=("max_iterations", "delta_accept"),
        iterations=4,
        entities=EntitySpec(kind="catalogue", n=40, catalogue_seed=7),
        seed=1,
        train_fraction=0.7,
    )
    study = create_study(ops, spec, actor=ADMIN)
    with exporter_on(settings) as server:
        text = scrape_text(server.url)
    sid = str(study.id)
    assert value(text, "discovery_tuning_study_trials_planned", study=sid) == 5
    assert value(text, "discovery_tuning_study_trials", study=sid, result="complete") == 0
    assert value(text, "discovery_tuning_study_state", study=sid, state="created") == 1
    assert value(text, "discovery_tuning_study_state", study=sid, state="running") == 0


def test_the_cache_hit_ratio_is_what_the_console_published(settings, ops, seeded):
    service = CacheService(seeded, ops)
    eid = seeded.list_entity_ids()[0]
    service.cached.get_hypotheses(eid)  # a miss
    service.cached.get_hypotheses(eid)  # a hit
    service.cached.get_hypotheses(eid)  # a hit
    service.publish()
    stats = service.cache.stats()
    with exporter_on(settings) as server:
        text = scrape_text(server.url)
    assert stats.requests == 3
    assert value(text, "discovery_cache_hit_ratio") == pytest.approx(stats.hit_rate) == pytest.approx(2 / 3)
    assert value(text, "discovery_cache_requests") == 3
    assert value(text, "discovery_cache_entries") == stats.items


def test_no_cache_figures_before_the_console_published_any(settings, ops):
    with exporter_on(settings) as server:
        text = scrape_text(server.url)
    assert value(text, "discovery_opsdb_up") == 1.0
    assert family_samples(text, "discovery_cache_hit_ratio") == []


def test_event_families_from_literal_totals():
    """The pure half: sums in, families out; cumulative buckets with +Inf = runs."""
    totals = EventTotals()
    totals.groups[("new", "production", "false")] = _Group(
        runs=3, actionable=1, cost_usd=0.5, hops=9, errored_hops=2, latency_sum_s=40.0,
        buckets=[0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3],
    )  # fmt: skip
    totals.errors[("new", "production", "false", "timeout")] = 2
    by_name = {f.name: f for f in event_families(totals, last_event_at=12.0)}
    hist = by_name["discovery_run_latency_seconds"].samples
    buckets = [s for s in hist if s.name.endswith("_bucket")]
    assert [s.labels["le"] for s in buckets][-1] == "+Inf" and buckets[-1].value == 3
    assert [s.value for s in buckets][:-1] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3]
    assert by_name["discovery_hop_errors"].samples[0].labels["type"] == "timeout"
    assert by_name["discovery_last_event_timestamp_seconds"].samples[0].value == 12.0


def test_serve_sums_the_events_in_the_background_before_the_first_scrape(settings, ops):
    clock = FakeClock()
    _record_synthetic_errors(ops, settings, at=clock.now)
    with ops.connect() as db:
        last_id = db.conn.execute("SELECT MAX(id) FROM metric_events").fetchone()[0]
    server = serve(settings, host="127.0.0.1", port=0, warm=True)
    try:
        deadline = time.monotonic() + 120
        while server.collector.cursor < last_id and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.collector.cursor == last_id  # summed with no scrape made
        assert_events_match(scrape_text(server.url), ops)
    finally:
        server.stop()
