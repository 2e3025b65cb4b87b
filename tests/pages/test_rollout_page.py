"""AppTest of the Rollout page against the real stores and a real worker process.

Each test seeds 60 demo entities in its own data dir, opens the console's
Rollout page in-process (AppTest runs the polling fragment inline, once per
run) and drives it with its widgets. Start launches a real
`python -m engine worker --job ID` through engine.rollout.start_rollout; the
test waits for the worker by polling SQLite, then runs the page again and
compares what it shows with what engine.rollout says.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from streamlit.testing.v1 import AppTest

from engine import rollout
from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.access import LOCAL_ACTOR
from engine.core.settings import load_settings
from engine.jobs.queue import JobStore, wait_for
from engine.rollout.stages import load_stage_config
from engine.store import falkor
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.actors import ADMIN
from tests.support.console_env import as_shown
from tests.support.guardrails import stop_guardrail_evaluators
from tests.support.rollouts import hand_over_candidate

#: the console's actor with sign-in off (what the audit log and the decision records name)
LOCAL = str(LOCAL_ACTOR)

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
PAGE = "pages/rollout.py"
N_ENTITIES = 60
TIMEOUT = 60  # seconds per script run (the first imports altair/pandas and connects)
WORKER_TIMEOUT_S = 120.0
FAST = 864000.0  # time scale: a stage day every 0.1 s, so a 3-day pilot soaks in 0.3 s


@contextmanager
def seeded_console(tmp_path, monkeypatch, catalogue_seed: int):
    """A data dir with 60 catalogue entities the page runs against: yields (settings, graph, ops);
    afterwards every worker is stopped and so is the embedded store."""
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    monkeypatch.delenv("DISCOVERY_GRAPH", raising=False)
    settings = load_settings().ensure_dirs()
    graph = GraphStore.open(settings)
    ops = open_ops_db(settings)
    try:
        seed_catalogue(graph, N_ENTITIES, seed=catalogue_seed, templates=load_templates())
        hand_over_candidate(ops, tmp_path)  # a live rollout of the live config itself is refused
        yield settings, graph, ops
    finally:
        try:
            stop_workers(ops)
        finally:
            from console.services import _shared_services

            _shared_services.clear()
            graph.close()
            falkor.stop_embedded_server(settings)


@pytest.fixture
def console(tmp_path, monkeypatch):
    """Catalogue seed 7: the default candidate's pilot ends inconclusive there (no trigger breached), so the
    run waits for a person."""
    with seeded_console(tmp_path, monkeypatch, 7) as stores:
        yield stores


@pytest.fixture
def failing_console(tmp_path, monkeypatch):
    """Catalogue seed 5: the default candidate's pilot breaches a rollback trigger there (seeded simulated world)."""
    with seeded_console(tmp_path, monkeypatch, 5) as stores:
        yield stores


def stop_workers(ops) -> None:
    """Cancel whatever rollout is still active and wait until no worker holds a job."""
    for run in rollout.list_runs(ops):
        if run.state.is_active():
            rollout.cancel(ops, run.id, ADMIN)
    stop_guardrail_evaluators(ops)  # a production promotion from the page starts one
    store = JobStore(ops)
    for job in store.list(limit=100):
        if not job.state.is_terminal():
            wait_for(
                store,
                job.id,
                until=lambda j: not j.state.has_worker() and j.state.value != "queued",
                timeout_s=WORKER_TIMEOUT_S,
            )


def open_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def start(at: AppTest, *, stage: str = "pilot", dry_run: bool = False, time_scale: float = FAST) -> AppTest:
    at.selectbox(key="rollout_stage").select(stage)
    at.number_input(key="rollout_time_scale").set_value(time_scale)
    if dry_run:
        at.checkbox(key="rollout_dry_run").check()
    at.button(key="rollout_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def settle(ops, run_id: int | None = None, *, leave=("queued", "running")):
    """Poll the store until the worker has taken the run out of ``leave`` (e.g. the stage's entities are done)."""
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while True:
        status = rollout.rollout_status(ops, run_id)
        if status.state not in leave:
            return status
        assert time.monotonic() < deadline, f"rollout still {status.state} after {WORKER_TIMEOUT_S:.0f}s"
        time.sleep(0.3)  # polling a real worker process, not pacing the test


def markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def buttons(at: AppTest) -> dict[str, bool]:
    """Button key -> enabled."""
    return {b.key: not b.disabled for b in at.button if b.key}


def flashes(at: AppTest) -> tuple[list[str], list[str]]:
    return [as_shown(s.value) for s in at.success], [as_shown(e.value) for e in at.error]


def all_hypotheses(graph) -> dict:
    return graph.snapshot(graph.list_entity_ids())


# --------------------------------------------------------------------------- before any rollout


def test_empty_page_shows_the_stage_table_and_the_start_form(console):
    at = open_page()
    assert at.title[0].value == "Rollout"
    assert any("No rollout has been started yet" in i.value for i in at.info)
    names = load_stage_config().names()
    # timeline: every stage of the table, all pending
    for i, name in enumerate(names, 1):
        assert f"**{i}. {name}**" in markdown(at)
    assert sum("pending" in m for m in markdown(at) if m.startswith(":gray-badge")) == len(names)
    table = next(df.value for df in at.dataframe if "rollback triggers" in df.value.columns)
    assert list(table["stage"]) == names
    assert at.selectbox(key="rollout_stage").options == [*names, "all"]
    assert at.selectbox(key="rollout_stage").value == names[0]  # the safe default: the first stage
    assert buttons(at) == {"rollout_start": True}  # no run: no run controls yet
    # the form shows what the handed-over candidate changes against the live config
    diff = next(df.value for df in at.dataframe if "parameter" in df.value.columns)
    assert list(diff["parameter"]) == ["cache_ttl_s"]
    assert at.radio(key="rollout_candidate").options[1].startswith("Live config")


def test_start_without_a_config_file_path_is_a_one_line_error_and_starts_nothing(console):
    _, _, ops = console
    at = open_page()
    at.radio(key="rollout_candidate").set_value("file")
    start(at)
    ok, errors = flashes(at)
    assert errors == ["Start: choose the candidate's ParameterConfig JSON file (a path on this machine)"]
    at.text_input(key="rollout_config_file").input("/nonexistent/candidate.json")
    at.button(key="rollout_start").click().run()
    ok, errors = flashes(at)
    assert len(errors) == 1 and errors[0].startswith("Start: ") and "/nonexistent/candidate.json" in errors[0]
    assert "\n" not in errors[0]
    assert rollout.list_runs(ops) == []


# --------------------------------------------------------------------------- a dry-run pilot in a worker


def test_dry_run_pilot_runs_in_a_worker_and_the_page_shows_its_state(console):
    _, graph, ops = console
    before = all_hypotheses(graph)
    at = open_page()
    start(at, dry_run=True)
    ok, errors = flashes(at)
    assert not errors and ok and ok[0].startswith("Start: rollout 1 started (pilot)")
    status = settle(ops)  # the worker ran the 10 pilot entities (old and new, both in shadow)
    assert status.run.dry_run and status.run.actor == LOCAL
    pilot = status.stage("pilot")
    assert (pilot.done, pilot.total) == (10, 10)
    at.run()
    assert not at.exception, [e.value for e in at.exception]

    shown = markdown(at)
    assert any(m.startswith("### Rollout 1 ") and "dry run" in m for m in shown)
    assert "**1. pilot**  ← current" in shown
    pilot_badge = shown[shown.index("**1. pilot**  ← current") + 1]
    assert status.stage("pilot").state.replace("_", " ") in pilot_badge
    assert ":gray-badge[:material/remove: not in this run]" in shown  # limited and production: not in this run
    [progress] = at.get("progress")
    assert as_shown(progress.proto.text).startswith("pilot: 10 of 10 entities (100%)")

    # criteria: the verdict's rows with their measured values, intervals and thresholds, in words and units
    criteria = next(df.value for df in at.dataframe if "criterion" in df.value.columns)
    rows = status.stage("pilot").verdict.rows
    assert len(criteria) == len(rows) == 5
    for (_, shown_row), row in zip(criteria.iterrows(), rows):
        assert shown_row["threshold"].split()[1] == f"{row.threshold:g}" and shown_row["n"] == row.n
        assert shown_row["threshold"].endswith("%")  # every pilot criterion is a percentage
        assert "None" not in shown_row.to_string() and "nan" not in shown_row.to_string()
    actionable = criteria[criteria["criterion"].str.startswith("actionable change")]
    assert actionable["measured"].str.contains(" pp\\)").all()  # the relative change and its points
    assert any(
        m.startswith("**Verdict after 10 entities:**") and status.stage("pilot").verdict.phase.value in m for m in shown
    )

    # decision records: the engine's, newest first
    records = next(df.value for df in at.dataframe if "gate" in df.value.columns)
    assert list(records["id"]) == [d.id for d in rollout.decision_records(ops, 1)]
    assert set(records["gate"]) >= {"start", "check", "stage end"}  # in words, not snake_case

    # live old-vs-new: both systems ran every pilot entity
    assert len(at.get("vega_lite_chart")) == 3
    assert [m.label for m in at.metric] == [
        "Cost per entity · new",
        "Actionable rate · new",
        "p95 engine time per entity · new",
    ]

    downloads = {d.key: d for d in at.get("download_button")}
    assert set(downloads) == {"rollout_report_download", "rollout_records_download"}
    assert downloads["rollout_report_download"].proto.label == "Stage report · pilot (Markdown)"

    assert all_hypotheses(graph) == before  # a dry run writes nothing live


# --------------------------------------------------------------------------- rollback asks first


def test_rollback_needs_a_second_explicit_confirmation_and_restores_the_graph(console):
    _, graph, ops = console
    before = all_hypotheses(graph)
    at = open_page()
    start(at, time_scale=1.0)  # real time: the pilot cannot be promoted by itself for 3 days
    status = settle(ops)
    assert status.state in ("soaking", "inconclusive")
    assert all_hypotheses(graph) != before  # the candidate ran live on the 10 pilot entities
    at.run()
    assert buttons(at)["rollout_rollback"]

    at.button(key="rollout_rollback").click().run()
    assert not at.exception
    assert rollout.rollout_status(ops).state == status.state  # nothing happened yet
    assert any("Roll back rollout 1?" in as_shown(w.value) for w in at.warning)
    assert "rollout_confirm_rollback" in buttons(at) and not buttons(at)["rollout_rollback"]

    at.button(key="rollout_keep").click().run()  # changed my mind
    assert "rollout_confirm_rollback" not in buttons(at)
    assert rollout.rollout_status(ops).state == status.state

    at.button(key="rollout_rollback").click().run()
    at.text_input(key="rollout_rollback_reason").input("pilot looks worse than the old system")
    at.button(key="rollout_confirm_rollback").click().run()
    assert not at.exception, [e.value for e in at.exception]
    ok, errors = flashes(at)
    assert not errors and ok[0].startswith("Rollback: rolled back rollout 1: 10 entities restored")

    after = rollout.rollout_status(ops)
    assert after.state == "rolled_back" and after.stage("pilot").state == "rolled_back"
    assert all_hypotheses(graph) == before  # restored exactly from the stage's snapshot
    [record] = [d for d in rollout.decision_records(ops, 1) if d.gate == "rollback"]
    assert record.actor == LOCAL and record.reason == "pilot looks worse than the old system"
    assert any(a["action"] == "rollout.rollback" for a in ops.list_audit(actor=LOCAL))
    shown = markdown(at)
    assert any(m.startswith("### Rollout 1 ") and "rolled back" in m for m in shown)
    assert buttons(at)["rollout_rollback"] is False  # a rolled-back run cannot be rolled back again


# --------------------------------------------------------------------------- pause, resume, promote


def test_pause_resume_and_a_forced_promotion_before_the_minimum_duration(console):
    _, _, ops = console
    at = open_page()
    start(at, dry_run=True, time_scale=1.0)
    status = settle(ops)
    assert status.state in ("soaking", "inconclusive")
    job_id = status.run.job_id
    at.run()
    hint = {"inconclusive": ("warning", "A person decides"), "soaking": ("info", "promoted automatically")}[
        status.state
    ]
    assert any(hint[1] in as_shown(e.value) for e in getattr(at, hint[0]))
    assert {k for k, on in buttons(at).items() if on} >= {"rollout_pause", "rollout_promote", "rollout_rollback"}
    assert not buttons(at)["rollout_resume"]

    at.button(key="rollout_pause").click().run()
    assert flashes(at)[0] == ["Pause: requested; the worker pauses before its next entity"]
    wait_for(JobStore(ops), job_id, until=lambda j: j.state.value == "paused", timeout_s=WORKER_TIMEOUT_S)
    at.run()
    assert buttons(at)["rollout_resume"] and not buttons(at)["rollout_pause"]
    assert any(as_shown(i.value).startswith("Paused between batches") for i in at.info)
    at.button(key="rollout_resume").click().run()
    assert flashes(at)[0] == ["Resume: requested; the worker continues from its last checkpoint"]
    wait_for(JobStore(ops), job_id, until=lambda j: j.state.value == "running", timeout_s=WORKER_TIMEOUT_S)
    at.run()

    # 3 minimum days at real time: promotion is refused without force, in words about the Force control ...
    at.button(key="rollout_promote").click().run()
    ok, errors = flashes(at)
    assert len(errors) == 1 and "minimum days elapsed" in errors[0] and "Force in the console" in errors[0]
    assert rollout.rollout_status(ops).stage("pilot").state == status.stage("pilot").state
    # ... and with Force it asks first; Force is unticked again at once
    at.checkbox(key="rollout_force").check()
    at.button(key="rollout_promote").click().run()
    assert at.checkbox(key="rollout_force").value is False
    assert any("Force-promote pilot before its minimum duration" in as_shown(w.value) for w in at.warning)
    assert rollout.rollout_status(ops).stage("pilot").state == status.stage("pilot").state  # nothing yet
    at.button(key="rollout_confirm_promote").click().run()
    ok, errors = flashes(at)
    assert not errors and ok == [
        "Promote: pilot promoted (forced): this run ends here and the live config did NOT change (dry run); "
        "continue to limited to take it further."
    ]
    assert at.checkbox(key="rollout_force").value is False
    after = rollout.rollout_status(ops)
    assert after.stage("pilot").state == "promoted" and after.state == "completed"
    [promotion] = [d for d in rollout.decision_records(ops, 1) if d.gate == "promote"]
    assert promotion.forced and promotion.actor == LOCAL
    audit = [a for a in ops.list_audit(actor=LOCAL) if a["action"] == "rollout.promote"]
    assert audit and audit[0]["details"]["forced"] is True
    # the stage's clock stopped at the promotion
    assert "promoted after" in next(m for m in (c.value for c in at.caption) if "stage days" in m)


# --------------------------------------------------------------------------- an automatic rollback, as shown


def test_a_breached_trigger_rolls_back_by_itself_and_the_page_says_which(failing_console):
    _, graph, ops = failing_console
    before = all_hypotheses(graph)
    at = open_page()
    start(at)
    status = settle(ops, leave=("queued", "running", "rolling_back"))
    assert status.state == "rolled_back", (
        f"expected the pilot on catalogue seed 5 to breach a trigger: {status.message}"
    )
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.startswith("### Rollout 1 ") and "rolled back" in m for m in markdown(at))
    criteria = next(df.value for df in at.dataframe if "criterion" in df.value.columns)
    breached = criteria[criteria["result"] == "BREACHED"]
    assert len(breached) >= 1 and set(breached["kind"]) == {"rollback trigger"}
    records = next(df.value for df in at.dataframe if "gate" in df.value.columns)
    top = records.iloc[0]
    assert (top["gate"], top["action"], top["actor"]) == ("rollback", "rollback", "worker")
    assert not buttons(at)["rollout_rollback"] and not buttons(at)["rollout_promote"]
    assert all_hypotheses(graph) == before  # the automatic rollback restored the pilot's snapshot


# --------------------------------------------------------------------------- a dead worker, resumed from the page


@pytest.mark.slow  # starts or kills real processes
def test_a_killed_worker_shows_as_dead_and_resume_starts_a_new_one_from_the_checkpoint(console):
    _, _, ops = console
    at = open_page()
    start(at, dry_run=True, time_scale=1.0)
    status = settle(ops)
    waiting = status.state
    assert waiting in ("soaking", "inconclusive")
    job = JobStore(ops).get(status.run.job_id)
    os.kill(job.pid, signal.SIGKILL)  # the worker this test started through the page
    try:
        psutil.Process(job.pid).wait(timeout=30)
    except psutil.NoSuchProcess:
        pass

    at.run()
    assert rollout.rollout_status(ops).state == "dead"
    assert any(m.startswith("### Rollout 1 ") and "worker stopped" in m for m in markdown(at))
    assert any("Resume starts a new worker" in as_shown(e.value) for e in at.error)
    assert buttons(at)["rollout_resume"] and not buttons(at)["rollout_pause"]

    at.button(key="rollout_resume").click().run()
    assert flashes(at) == (["Resume: requested; the worker continues from its last checkpoint"], [])
    resumed = wait_for(
        JobStore(ops),
        job.id,
        until=lambda j: j.state.value == "running" and j.attempts == 2,
        timeout_s=WORKER_TIMEOUT_S,
    )
    assert resumed.pid != job.pid
    status = settle(ops, leave=("queued", "running", "dead"))
    assert status.state == waiting and status.worker_alive
    pilot = status.stage("pilot")
    assert (pilot.done, pilot.total) == (10, 10)
    seen = [o["entity_id"] for o in rollout.paired_outcomes(ops, 1, "pilot")]
    assert len(seen) == len(set(seen)) == 10  # every pilot entity exactly once
