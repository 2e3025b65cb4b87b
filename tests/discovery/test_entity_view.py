"""Entity view: pure helpers (EIG ranking, trail rows, run summaries), the store edges, and the
Hypotheses page's entity view under AppTest (select an entity, Run discovery, see the result)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from engine.bench.entity_view import bench_entity_view
from engine.core.model import (
    Decision,
    Depth,
    HopRecord,
    HopType,
    Hypothesis,
    HypothesisOutcome,
    RunResult,
    Status,
    UnknownEntity,
)
from engine.core.params import DEFAULT_PARAMS
from engine.discovery.entity_view import (
    EVIDENCE_COLUMNS,
    HOP_COLUMNS,
    RANKING_COLUMNS,
    confidence_chart_rows,
    confidence_rows,
    evidence_rows,
    filter_evidence,
    hop_rows,
    live_params,
    load_entity_view,
    rank_for_view,
    ranking_rows,
    run_entity,
    run_summary,
    trajectory_rows,
)
from engine.monitoring.events import query_events
from tests.support.actors import OPERATOR
from tests.support.console_env import as_shown, seeded_console_env

NOW = 1_800_000_000.0
DAY = 86400.0


def hyp(
    pattern: str,
    category: str,
    confidence: float,
    *,
    status: Status = Status.ACTIVE,
    accepts: int = 0,
    updated_days_ago: float = 0.0,
    entity: str = "fc-test",
) -> Hypothesis:
    return Hypothesis(
        id=f"{entity}::{pattern}",
        entity_id=entity,
        pattern=pattern,
        category=category,
        prior=confidence,
        confidence=confidence,
        status=status,
        accepts=accepts,
        created_at=NOW - 100 * DAY,
        updated_at=NOW - updated_days_ago * DAY,
    )


# --------------------------------------------------------------------------- pure: ranking


def test_ranking_puts_active_hypotheses_first_in_pick_order_with_the_issue_numbers():
    hyps = [
        hyp("crm", "CRM Implementation", 0.42),
        hyp("ceo", "C-Suite Hiring", 0.5),
        hyp("digital", "Digital Transformation", 0.85),
        hyp("done", "C-Suite Hiring", 0.75, status=Status.PROMOTED, accepts=3),
    ]
    params = DEFAULT_PARAMS.with_changes(temporal_decay=0.0)
    ranking = rank_for_view(hyps, params, now=NOW)
    assert [b.pattern for b in ranking] == ["ceo", "crm", "digital", "done"]
    by = {b.pattern: b for b in ranking}
    # the issue's reference values (no confirmations, no age)
    assert by["ceo"].eig == pytest.approx(0.750)
    assert by["crm"].eig == pytest.approx(0.696)
    assert by["digital"].eig == pytest.approx(0.195)
    rows = ranking_rows(ranking, hyps)
    assert list(rows[0]) == list(RANKING_COLUMNS)
    assert [r["rank"] for r in rows] == [1, 2, 3, None]  # PROMOTED is never picked
    assert rows[3]["status"] == "PROMOTED" and rows[3]["accepts"] == 3


def test_ranking_factors_multiply_to_the_eig_and_follow_age_and_cluster_confirmations():
    hyps = [hyp("ceo", "C-Suite Hiring", 0.5, updated_days_ago=30), hyp("ticket", "Ticketing", 0.5)]
    params = DEFAULT_PARAMS.with_changes(
        temporal_decay=0.02, novelty_decay=1.0, cluster_min_size=1, cluster_min_confirmations=1
    )
    ranking = rank_for_view(hyps, params, now=NOW, confirmations={"ceo": 2}, cluster_size=10)
    for b in ranking:
        assert b.eig == pytest.approx(b.uncertainty * b.novelty * b.value * b.recency)
    ceo = next(b for b in ranking if b.pattern == "ceo")
    assert ceo.age_days == pytest.approx(30)
    assert ceo.recency == pytest.approx(math.exp(-0.02 * 30))
    assert ceo.confirmations == 2 and ceo.novelty == pytest.approx(1 / 3)
    # dampened and cold, the C-suite lead now ranks below the fresh ticketing one
    assert [b.pattern for b in ranking] == ["ticket", "ceo"]


def test_non_selectable_hypotheses_are_ordered_by_eig():
    hyps = [
        hyp("a", "General", 0.9, status=Status.SATURATED),
        hyp("b", "General", 0.1, status=Status.DEGRADED),
        hyp("c", "General", 0.5, status=Status.KILLED),
    ]
    ranking = rank_for_view(hyps, DEFAULT_PARAMS, now=NOW)
    assert [b.pattern for b in ranking] == ["b", "c", "a"]
    assert all(r["rank"] is None for r in ranking_rows(ranking, hyps))


# --------------------------------------------------------------------------- pure: evidence and runs


def record(i: int, hid: str, decision: Decision, delta: float, after: float, cost: float, error=None) -> HopRecord:
    return HopRecord(
        iteration=i,
        hypothesis_id=hid,
        pattern=hid.split("::")[1],
        category="General",
        eig=0.5,
        hop_type=HopType.CAREERS_PAGE,
        depth=Depth.SURFACE,
        decision=decision,
        delta=delta,
        confidence_after=after,
        cost_usd=cost,
        latency_s=2.5,
        url="https://x.example/careers",
        excerpt="job ad",
        error=error,
    )


def sample_run() -> tuple[list[Hypothesis], RunResult]:
    before = [hyp("a", "General", 0.5), hyp("b", "Ticketing", 0.4), hyp("c", "General", 0.3)]
    hops = (
        record(1, "fc-test::a", Decision.ACCEPT, 0.06, 0.56, 0.02),
        record(2, "fc-test::a", Decision.ACCEPT, 0.06, 0.62, 0.03),
        record(3, "fc-test::b", Decision.NO_PROGRESS, 0.0, 0.4, 0.01, error="timeout"),
    )
    outcomes = (
        HypothesisOutcome("fc-test::a", "a", "General", 0.62, Status.ACTIVE, 2),
        HypothesisOutcome("fc-test::b", "b", "Ticketing", 0.4, Status.ACTIVE, 0),
        HypothesisOutcome("fc-test::c", "c", "General", 0.3, Status.ACTIVE, 0),
    )
    result = RunResult(
        entity_id="fc-test",
        system="new",
        config_hash="abc",
        iterations=3,
        cost_usd=0.06,
        hops=hops,
        outcomes=outcomes,
        actionable=False,
        stop_reason="cost_cap: spent $0.060; the next hop would cross",
        engine_time_s=0.002,
        evidence_latency_s=7.5,
        shadow=False,
        errors=("timeout",),
    )
    return before, result


def test_run_summary_hop_rows_and_confidences():
    before, result = sample_run()
    s = run_summary(result)
    assert s["stop"] == "cost_cap" and s["iterations"] == 3 and s["cost_usd"] == pytest.approx(0.06)
    assert s["accepts"] == 2 and s["errors"] == 1 and s["actionable"] is False
    assert s["engine_time_ms"] == pytest.approx(2.0)
    rows = hop_rows(result)
    assert list(rows[0]) == list(HOP_COLUMNS)
    assert [r["cumulative_cost_usd"] for r in rows] == pytest.approx([0.02, 0.05, 0.06])
    assert rows[0]["depth"] == "SURFACE" and rows[0]["hop_type"] == "careers_page" and rows[0]["error"] == ""
    assert rows[2]["error"] == "timeout"
    conf = confidence_rows(before, result)
    assert [r["pattern"] for r in conf] == ["a", "b", "c"]  # most moved first, then most hops
    assert conf[0]["before"] == 0.5 and conf[0]["after"] == 0.62 and conf[0]["change"] == pytest.approx(0.12)
    assert conf[0]["hops"] == 2 and conf[1]["hops"] == 1 and conf[2]["hops"] == 0
    long = confidence_chart_rows(conf)
    assert len(long) == 6 and {r["when"] for r in long} == {"before", "after"}


def test_trajectory_starts_each_probed_hypothesis_at_its_prior_state():
    before, result = sample_run()
    rows = trajectory_rows(before, result)
    a = [(r["iteration"], r["confidence"]) for r in rows if r["pattern"] == "a"]
    b = [(r["iteration"], r["confidence"]) for r in rows if r["pattern"] == "b"]
    assert a == [(0, 0.5), (1, 0.56), (2, 0.62)]
    assert b == [(0, 0.4), (3, 0.4)]
    assert not [r for r in rows if r["pattern"] == "c"]  # never probed, not drawn


def test_filter_evidence_by_run_hypothesis_and_rolled_back():
    rows = [
        {"run_id": "r1", "pattern": "a", "rolled_back": True},
        {"run_id": "r1", "pattern": "b", "rolled_back": True},
        {"run_id": "r2", "pattern": "a", "rolled_back": False},
    ]
    assert filter_evidence(rows) == rows
    assert filter_evidence(rows, ["r1"]) == rows[:2]
    assert filter_evidence(rows, [], ["a"]) == [rows[0], rows[2]]
    assert filter_evidence(rows, ["r1"], ["a"]) == [rows[0]]
    assert filter_evidence(rows, include_rolled_back=False) == [rows[2]]


def test_evidence_rows_name_the_depth_and_blank_missing_errors():
    ev = {
        "id": "r:new:fc:1",
        "entity_id": "fc",
        "run_id": "r",
        "system": "new",
        "at": NOW,
        "rolled_back": True,
        "iteration": 1,
        "hypothesis_id": "fc::a",
        "pattern": "a",
        "category": "General",
        "eig": 0.4,
        "hop_type": "rfp_portal",
        "depth": 3,
        "decision": "REJECT",
        "delta": -0.02,
        "confidence_after": 0.48,
        "cost_usd": 0.04,
        "latency_s": 3.0,
        "url": "",
        "excerpt": "",
        "error": None,
    }
    (row,) = evidence_rows([ev])
    assert list(row) == list(EVIDENCE_COLUMNS)
    assert row["depth"] == "AUTHORITY" and row["error"] == "" and row["rolled_back"] is True


def test_live_params_are_the_defaults_until_a_live_config_exists(ops):
    params = live_params(ops)
    assert params.hash() == DEFAULT_PARAMS.hash()


# --------------------------------------------------------------------------- store edges


@pytest.fixture
def seeded_graph(seed_graph):
    return seed_graph(12, seed=5, clock=lambda: NOW)


def test_load_entity_view_reads_hypotheses_cluster_and_empty_trail(seeded_graph):
    entity = seeded_graph.list_entities(limit=1)[0]
    view = load_entity_view(seeded_graph, entity.id, DEFAULT_PARAMS, now=NOW)
    assert view.entity == entity
    assert {h.id for h in view.hypotheses} == {h.id for h in seeded_graph.get_hypotheses(entity.id)}
    assert len(view.ranking) == len(view.hypotheses) and view.evidence == ()
    assert view.cluster_size is not None and view.cluster_size >= 1
    assert [r["rank"] for r in view.ranking_rows()] == list(range(1, len(view.hypotheses) + 1))


def test_live_run_writes_the_graph_records_a_metric_and_shows_in_the_view(seeded_graph, ops):
    entity = seeded_graph.list_entities(limit=1)[0]
    before = {h.id: h for h in seeded_graph.get_hypotheses(entity.id)}
    run = run_entity(seeded_graph, ops, entity.id, actor=OPERATOR, system="new", clock=lambda: NOW + 60)
    result = run.result
    assert result.entity_id == entity.id and result.system == "new" and not result.shadow
    assert result.iterations == len(result.hops) > 0
    assert result.cost_usd <= DEFAULT_PARAMS.max_cost_usd
    assert {h.id for h in run.before} == set(before)
    after = {h.id: h for h in seeded_graph.get_hypotheses(entity.id)}
    for o in result.outcomes:
        assert after[o.id].confidence == pytest.approx(o.confidence)
        assert after[o.id].status == o.status
    moved = [r for r in run.confidence_rows() if r["hops"]]
    assert moved and all(r["before"] == before[r["id"]].confidence for r in moved)
    # evidence trail: one row per hop of this run
    view = load_entity_view(seeded_graph, entity.id, DEFAULT_PARAMS, now=NOW + 120)
    assert len(view.evidence) == result.iterations
    assert {e["run_id"] for e in view.evidence} == {run.run_id}
    assert sorted(e["iteration"] for e in view.evidence) == [h.iteration for h in result.hops]
    # metric event
    events = query_events(ops, run_id=run.run_id)
    assert len(events) == 1
    assert events[0].entity_id == entity.id and events[0].shadow is False
    assert events[0].cost_usd == pytest.approx(result.cost_usd) and events[0].correct is not None


def test_rolled_back_evidence_stays_in_the_trail_flagged(seeded_graph, ops):
    entity = seeded_graph.list_entities(limit=4)[3]
    first = run_entity(seeded_graph, ops, entity.id, actor=OPERATOR, clock=lambda: NOW)
    second = run_entity(seeded_graph, ops, entity.id, actor=OPERATOR, clock=lambda: NOW + 3600)
    assert seeded_graph.mark_evidence_rolled_back([entity.id], first.run_id) == first.result.iterations
    rows = load_entity_view(seeded_graph, entity.id, DEFAULT_PARAMS, now=NOW + 7200).evidence
    assert len(rows) == first.result.iterations + second.result.iterations
    assert {r["run_id"] for r in rows if r["rolled_back"]} == {first.run_id}
    assert {r["run_id"] for r in rows if not r["rolled_back"]} == {second.run_id}
    assert rows[0]["run_id"] == second.run_id  # newest first
    assert len(filter_evidence(rows, include_rolled_back=False)) == second.result.iterations


def test_shadow_run_writes_nothing_to_the_graph_but_is_recorded(seeded_graph, ops):
    entity = seeded_graph.list_entities(limit=2)[1]
    before = seeded_graph.get_hypotheses(entity.id)
    run = run_entity(seeded_graph, ops, entity.id, actor=OPERATOR, system="old", shadow=True, clock=lambda: NOW)
    assert run.result.shadow and run.result.system == "old" and run.result.iterations > 0
    assert seeded_graph.get_hypotheses(entity.id) == before
    assert seeded_graph.get_evidence(entity.id) == []
    (event,) = query_events(ops, run_id=run.run_id)
    assert event.shadow is True and event.system == "old"


def test_unknown_entity_is_one_line_and_writes_nothing(seeded_graph, ops):
    with pytest.raises(UnknownEntity) as err:
        run_entity(seeded_graph, ops, "no-such-club", actor=OPERATOR, clock=lambda: NOW)
    assert "\n" not in str(err.value) and "no-such-club" in str(err.value)
    assert query_events(ops) == []
    with pytest.raises(UnknownEntity):
        load_entity_view(seeded_graph, "no-such-club", DEFAULT_PARAMS)


def test_world_seed_changes_the_world(seeded_graph, ops):
    entity = seeded_graph.list_entities(limit=3)[2]
    runs = [
        run_entity(seeded_graph, ops, entity.id, actor=OPERATOR, shadow=True, world_seed=s, clock=lambda: NOW)
        for s in (1, 1, 2)
    ]
    trails = [[(h.hop_type, h.decision, h.cost_usd) for h in r.result.hops] for r in runs]
    assert trails[0] == trails[1]  # same seed, same state: the same run
    assert trails[0] != trails[2]


# --------------------------------------------------------------------------- the page (AppTest)

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
TIMEOUT = 60


@pytest.fixture(scope="module")
def console_graph(tmp_path_factory):
    with seeded_console_env(tmp_path_factory, "entity-view", 20, 11) as (settings, store):
        yield store


def table(at: AppTest, *columns: str):
    """The one dataframe on the page having all these columns (AppTest records no key for a plain st.dataframe)."""
    found = [df.value for df in at.dataframe if set(columns) <= set(df.value.columns)]
    assert len(found) == 1, f"{len(found)} tables with columns {columns}"
    return found[0]


def open_entity(entity_id: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/hypotheses.py").run()
    at.text_input(key="entity_query").input(entity_id).run()
    at.selectbox(key="entity_id").select(entity_id).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def run_live(at: AppTest, entity) -> AppTest:
    """Run discovery live, as an operator must: shadow off, Run discovery, then confirm the write."""
    at.toggle(key="entity_run_shadow").set_value(False).run()
    at.button(key="entity_run_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (warning,) = [w.value for w in at.warning if "writes to the graph" in w.value]
    assert as_shown(entity.name) in as_shown(warning) or entity.name in warning
    at.button(key="entity_run_confirm").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_search_hint_names_an_entity_the_graph_holds(console_graph):
    first = console_graph.list_entities(limit=1)[0]
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/hypotheses.py").run()
    hint = at.text_input(key="entity_query").placeholder
    assert hint == f"name or id, e.g. {first.name}" and "arsenal" not in hint.lower()
    assert console_graph.search_entities(first.name, limit=1)  # the example finds something


def test_run_discovery_is_a_shadow_run_unless_a_live_write_is_confirmed(console_graph):
    entity = console_graph.list_entities(limit=5)[4]
    before = console_graph.get_hypotheses(entity.id)
    at = open_entity(entity.id)
    assert at.toggle(key="entity_run_shadow").value is True  # the default writes nothing
    at.button(key="entity_run_button").click().run()
    assert not at.exception and any("shadow, nothing written" in as_shown(c.value) for c in at.caption), [
        c.value for c in at.caption
    ]
    assert console_graph.get_evidence(entity.id) == [] and console_graph.get_hypotheses(entity.id) == before
    # live asks first, saying what it will write; Cancel writes nothing
    at.toggle(key="entity_run_shadow").set_value(False).run()
    assert "live" in at.button(key="entity_run_button").label
    at.button(key="entity_run_button").click().run()
    (warning,) = [w.value for w in at.warning if "writes to the graph" in w.value]
    assert f"{len(before)} hypotheses" in warning and "evidence row per hop" in warning
    assert console_graph.get_evidence(entity.id) == []
    at.button(key="entity_run_cancel").click().run()
    assert not [w for w in at.warning if "writes to the graph" in w.value]
    assert console_graph.get_evidence(entity.id) == []
    at = run_live(at, entity)
    assert console_graph.get_evidence(entity.id) and any("live, written" in as_shown(c.value) for c in at.caption)


def test_entity_tables_read_in_words_without_none():
    from console.entity_view import shown_frame

    frame = shown_frame(
        pd.DataFrame(
            [
                {"rank": 1, "status": "active", "hop_type": "linkedin_job", "decision": "WEAK_ACCEPT", "error": None},
                {"rank": None, "status": "killed", "hop_type": "rfp_portal", "decision": "NO_PROGRESS", "error": "x"},
            ]
        )
    )
    assert list(frame["rank"]) == ["1", "—"] and list(frame["error"]) == ["—", "x"]
    assert list(frame["hop_type"]) == ["linkedin job", "rfp portal"]
    assert "_" not in frame.astype(str).to_string(header=False)


def test_hop_chart_lines_never_cross_hops_that_did_not_probe_the_hypothesis():
    from console.entity_view import hop_segments, trajectory_chart

    rows = [
        {"iteration": 0, "pattern": "a", "confidence": 0.5, "decision": "start"},
        {"iteration": 1, "pattern": "a", "confidence": 0.56, "decision": "ACCEPT"},
        {"iteration": 0, "pattern": "b", "confidence": 0.4, "decision": "start"},
        {"iteration": 2, "pattern": "b", "confidence": 0.42, "decision": "WEAK_ACCEPT"},
        {"iteration": 3, "pattern": "a", "confidence": 0.58, "decision": "WEAK_ACCEPT"},
        {"iteration": 4, "pattern": "a", "confidence": 0.64, "decision": "ACCEPT"},
    ]
    seg = {(r["pattern"], r["iteration"]): r["segment"] for r in hop_segments(rows)}
    assert seg[("a", 0)] == seg[("a", 1)] != seg[("a", 3)] == seg[("a", 4)]  # a: 0-1, then 3-4
    assert seg[("b", 0)] != seg[("b", 2)]  # b was not probed at hop 1: no line from its start
    spec = trajectory_chart(rows).to_dict()
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in spec["layer"]]
    assert marks == ["line", "point"]
    assert spec["layer"][0]["encoding"]["detail"]["field"] == "segment"


def test_page_shows_the_eig_ranking_of_the_selected_entity(console_graph):
    entity = console_graph.list_entities(limit=1)[0]
    at = open_entity(entity.id)
    ranking = table(at, "rank", "eig", "novelty")
    assert sorted(ranking["id"]) == sorted(h.id for h in console_graph.get_hypotheses(entity.id))
    assert [str(r) for r in ranking["rank"]] == [str(i) for i in range(1, len(ranking) + 1)]  # fresh: all ACTIVE
    assert list(ranking["score"]) == sorted(ranking["score"], reverse=True)
    assert any("No evidence yet" in i.value for i in at.info)
    assert not [m for m in at.metric if m.label == "Stop reason"]


def test_run_discovery_shows_the_result_and_the_updated_state(console_graph):
    from engine.monitoring.events import count_events
    from engine.store.opsdb import OpsDB

    entity = console_graph.list_entities(limit=2)[1]
    ops = OpsDB(console_graph.settings.ops_db_path)
    events_before = count_events(ops)
    at = open_entity(entity.id)
    at = run_live(at, entity)
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    evidence = console_graph.get_evidence(entity.id)
    assert evidence, "a live run writes the evidence trail"
    (run_id,) = {e["run_id"] for e in evidence}
    assert metrics["Iterations"] == str(len(evidence))
    assert metrics["Actionable"] in ("yes", "no")
    assert as_shown(metrics["Stop reason"]) in (  # in words, never the internal code
        "actionable",
        "nothing active",
        "flat",
        "depth exhausted",
        "max iterations",
        "cost cap reached",
        "no channel",
    )
    cost = sum(e["cost_usd"] for e in evidence)
    assert metrics["Cost"] == f"${cost:.3f}"
    hops = table(at, "cumulative_cost_usd")
    assert list(hops["iteration"]) == list(range(1, len(evidence) + 1))
    trail = table(at, "rolled_back", "run_id")
    assert len(trail) == len(evidence) and set(trail["run_id"]) == {run_id}
    # the page's own hypotheses table and the ranking show the state after the run
    after = {h.id: h for h in console_graph.get_hypotheses(entity.id)}
    shown = at.dataframe[0].value
    assert dict(zip(shown["id"], shown["confidence"])) == pytest.approx({i: h.confidence for i, h in after.items()})
    confidences = table(at, "before", "after")
    assert (confidences["after"] != confidences["before"]).any() or all(r == 0 for r in hops["delta"])
    assert count_events(ops, run_id=run_id) == 1 and count_events(ops) == events_before + 1


def test_page_reads_through_the_cache_and_shows_another_processs_write(console_graph):
    """The hypotheses table is served by the console's cache; a write by another store (as a
    rollout worker or the CLI makes) shows at the next page run, not after the cache's TTL."""
    from console.services import _shared_services, get_cache_service
    from engine.cache.cached_graph import hyps_key
    from engine.core.model import Decision, apply_decision

    entity = console_graph.list_entities(limit=4)[3]
    at = open_entity(entity.id)
    s = console_graph.settings
    svc = get_cache_service(_shared_services(str(s.data_dir), s.falkordb_url, s.graph_name))  # the page's own
    hits = svc.cache.stats().hits
    at.run()
    assert hyps_key(entity.id) in svc.cache and svc.cache.stats().hits > hits  # served by the cache
    hits_page = at.dataframe[0].value
    target = console_graph.get_hypotheses(entity.id)[0]
    console_graph.save_hypotheses([apply_decision(target, Decision.ACCEPT, target.updated_at + 60)])
    fresh = console_graph.get_hypothesis(target.id)
    at.run()
    assert not at.exception and not at.error
    shown = at.dataframe[0].value
    row = shown[shown["id"] == target.id].iloc[0]
    assert row["confidence"] == pytest.approx(fresh.confidence) != pytest.approx(target.confidence)
    assert sorted(hits_page["id"]) == sorted(shown["id"])


def test_shadow_old_run_from_the_page_writes_no_evidence(console_graph):
    entity = console_graph.list_entities(limit=3)[2]
    before = console_graph.get_hypotheses(entity.id)
    at = open_entity(entity.id)
    at.selectbox(key="entity_run_system").select("old").run()
    at.toggle(key="entity_run_shadow").set_value(True).run()
    at.button(key="entity_run_button").click().run()
    assert not at.exception and not at.error
    assert any("shadow" in c.value for c in at.caption)
    assert int(next(m.value for m in at.metric if m.label == "Iterations")) > 0
    assert console_graph.get_evidence(entity.id) == []
    assert console_graph.get_hypotheses(entity.id) == before
    assert any("No evidence yet" in i.value for i in at.info)


def test_evidence_trail_flags_and_filters_rolled_back_hops(console_graph):
    from engine.store.opsdb import OpsDB

    entity = console_graph.list_entities(limit=4)[3]
    ops = OpsDB(console_graph.settings.ops_db_path)
    first = run_entity(console_graph, ops, entity.id, actor=OPERATOR)
    second = run_entity(console_graph, ops, entity.id, actor=OPERATOR)
    console_graph.mark_evidence_rolled_back([entity.id], first.run_id)
    total = first.result.iterations + second.result.iterations
    at = open_entity(entity.id)
    trail = table(at, "rolled_back", "run_id")
    assert len(trail) == total
    assert set(trail.loc[trail["rolled_back"], "run_id"]) == {first.run_id}
    assert any(f"{first.result.iterations} rolled back" in c.value for c in at.caption)
    at.toggle(key="entity_evidence_hide_rolled_back").set_value(True).run()
    trail = table(at, "rolled_back", "run_id")
    assert len(trail) == second.result.iterations and not trail["rolled_back"].any()
    at.toggle(key="entity_evidence_hide_rolled_back").set_value(False).run()
    at.multiselect(key="entity_evidence_runs").select(first.run_id).run()
    assert set(table(at, "rolled_back", "run_id")["run_id"]) == {first.run_id}


def test_store_down_while_viewing_is_a_one_line_error(console_graph, monkeypatch):
    entity = console_graph.list_entities(limit=1)[0]
    at = open_entity(entity.id)
    import engine.discovery.runs

    def down(*_a, **_k):
        from engine.core.errors import StoreUnavailable

        raise StoreUnavailable(
            "graph store unreachable at embedded FalkorDB: start it with `python -m engine store start`"
        )

    monkeypatch.setattr(engine.discovery.runs, "run_entities", down)
    at.button(key="entity_run_button").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "unreachable" in at.error[0].value


def test_bench_measures_real_runs_and_cleans_up():
    lines: list[str] = []
    figures = bench_entity_view(entities=6, runs_n=3, seed=2, print_fn=lines.append)
    assert figures["runs"] == 3 and figures["hops_max"] >= figures["hops_mean"] > 0
    assert figures["run_wall_ms_p95"] >= figures["run_wall_ms_p50"] > 0
    assert len(lines) == 5 and "3 live new-system runs" in lines[0]


RAW = re.compile(r"\b(None|nan|NaN|NaT|inf|Infinity)\b|\b[a-z]+_[a-z_]+\b")


def _page_text(at: AppTest) -> list[str]:
    """Everything the page shows as text: messages, captions, metrics and every table cell."""
    texts = [as_shown(e.value) for e in (*at.caption, *at.markdown, *at.info, *at.warning, *at.success, *at.error)]
    texts += [f"{m.label} {as_shown(m.value)}" for m in at.metric]
    for d in at.dataframe:
        frame = d.value
        texts += [str(v) for column in frame.columns for v in frame[column].tolist() if column not in ("at", "updated")]
        texts += [str(v) for column in ("at", "updated") if column in frame for v in frame[column].isna().tolist() if v]
    return texts


def test_the_hypotheses_page_shows_no_raw_values_or_internal_names(console_graph):
    entity = console_graph.list_entities(limit=6)[5]
    at = run_live(open_entity(entity.id), entity)
    ids = {h.id for h in console_graph.get_hypotheses(entity.id)} | {entity.id, entity.cluster, entity.template_id}
    found = []
    for text in _page_text(at):
        for match in RAW.finditer(text):
            word = match.group(0)
            if not any(word in i for i in ids) and not re.fullmatch(r"(run|new|old)[-_].*", word):
                found.append((word, text[:120]))
    assert not found, found[:10]
