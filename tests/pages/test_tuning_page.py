"""AppTest of the Tuning page: launch form, progress, trial table, result tiles, hold-out table, cancel,
hand to rollout, downloads; plus the pure helpers of console/tuning_view.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console import tuning_view as tv
from engine import tuning as studies
from engine.core.configs import CANDIDATE_KEY, LIVE_CONFIG_KEY, set_live_config
from engine.core.settings import load_settings
from engine.jobs.queue import JobState, JobStore, run_claimed
from engine.store import falkor
from engine.store.opsdb import open_ops_db
from engine.tuning.objective import ObjectiveResult
from engine.tuning.outputs import summarize
from engine.tuning.spec import EntitySpec, StudySpec
from engine.tuning.store import Study, create_study, finish_study, get_study, insert_trial, list_trials, set_holdout
from tests.support.actors import ADMIN
from tests.support.console_env import as_shown

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
TIMEOUT = 90
SPEC = StudySpec(
    method="random",
    params=("max_iterations", "delta_accept"),
    iterations=3,
    entities=EntitySpec(n=30),
    seed=2,
    train_fraction=0.7,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tuning-page")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISCOVERY_DATA_DIR", str(data_dir))
        mp.delenv("FALKORDB_URL", raising=False)
        mp.delenv("DISCOVERY_GRAPH", raising=False)
        settings = load_settings().ensure_dirs()
        try:
            yield settings
        finally:
            from console.services import _shared_services

            _shared_services.clear()
            falkor.stop_embedded_server(settings)


def tuning_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/tuning.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_without_studies_says_how_to_start_one(env):
    at = tuning_page()
    assert any("No tuning study yet" in i.value for i in at.info)
    assert at.button(key="FormSubmitter:tune_form-Start study") is not None


def test_launch_form_creates_a_study_and_queues_its_worker_job(env, monkeypatch):
    launched = []
    monkeypatch.setattr(
        "engine.jobs.queue.launch_worker", lambda settings, job_id, **kw: launched.append(job_id) or 4242
    )
    at = tuning_page()
    at.selectbox(key="tune_method").set_value("grid")
    at.number_input(key="tune_iterations").set_value(2)
    at.number_input(key="tune_entities").set_value(30)
    at.multiselect(key="tune_params").set_value(["max_iterations"])
    at.button(key="FormSubmitter:tune_form-Start study").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("started" in s.value for s in at.success), [s.value for s in at.success]
    ops = open_ops_db(env)
    study = get_study(ops, 1)
    assert study.spec.method == "grid" and study.spec.params == ("max_iterations",) and study.spec.iterations == 2
    assert launched == [study.job_id]
    assert JobStore(ops).get(study.job_id).state is JobState.QUEUED
    assert ops.list_audit(action="tuning.create")[0]["actor"] == "local"
    # progress and state of the queued study
    assert "queued" in at.get("progress")[0].proto.text
    # cancel from the console: a queued job is cancelled at once
    at.button(key=f"tune_cancel_{study.id}").click().run()
    assert JobStore(ops).get(study.job_id).state is JobState.CANCELLED


def test_a_finished_study_shows_trials_holdout_result_and_its_charts(env):
    ops = open_ops_db(env)
    study = create_study(ops, SPEC, actor=ADMIN)
    from engine.tuning.runner import submit_study

    job = submit_study(ops, study, actor=ADMIN)
    final = run_claimed(JobStore(ops), job.id, env)  # the worker's code path, in this process
    assert final.state is JobState.SUCCEEDED, final.error
    study = get_study(ops, study.id)
    at = tuning_page()
    labels = {m.label: m.value for m in at.metric}
    assert float(labels["Winner, hold-out"]) >= float(labels["Current config, hold-out"])
    # the improvement tile carries its interval under it: "95% interval -0.05 to +0.31"
    (tile,) = [m for m in at.metric if m.label == "Hold-out improvement"]
    assert re.fullmatch(r"95% interval [+-]\d+\.\d\d to [+-]\d+\.\d\d", tile.delta), tile.delta
    tables = [df.value for df in at.dataframe]
    trials_table = next(t for t in tables if "config hash" in t.columns)
    assert list(trials_table["trial"]) == [t.number for t in list_trials(ops, study.id)] == [0, 1, 2, 3]
    assert set(trials_table["state"]) <= {"finished", "failed"}
    hold = next(t for t in tables if "hold-out score (per entity)" in t.columns and "role" in t.columns)
    assert 0 in set(hold["trial"]) and len(hold) == len(
        [t for t in list_trials(ops, study.id) if t.holdout_score is not None]
    )
    for table in tables:  # one vocabulary: no raw missing or unbounded values reach the operator
        text = table.astype(str).to_string()
        assert not re.search(r"\b(None|nan|NaN|inf|Infinity)\b", text), text
    # the study ended: its line names the winner, not the last trial re-scored nor "starting"
    line = at.get("progress")[0].proto.text
    winner = study.result["winner"]["trial"]
    assert line.startswith("finished") and (
        "trial 0" in line if study.result["winner_is_base"] else f"trial {winner} won" in line
    )
    assert "re-scoring" not in line and "starting" not in line
    # importance, slice and parallel-coordinates charts are drawn
    assert len(at.get("vega_lite_chart")) >= 5
    assert any("hold-out entities: the interval is wide" in as_shown(w.value) for w in at.warning)
    assert at.get("download_button"), "best config and report downloads"


def _result(score: float, n: int) -> ObjectiveResult:
    return ObjectiveResult(score, n, 0, 0, 0, n, 0, 0.0, n, 0, score, 0.0, 0.0, 0.0, 0.0)


def finished_study(ops, point: dict, holdout_n: int = 15) -> Study:
    """A finished study whose trial 1 (``point``) beats trial 0 on training and hold-out: stored as the worker
    stores it, without running the engine (the page only reads it)."""
    study = create_study(ops, SPEC, actor=ADMIN)
    base_point = {p: getattr(study.base_config, p) for p in SPEC.params}
    holdout = study.holdout_ids
    for number, pt, score, hold in ((0, base_point, 1.0, 1.0), (1, point, 2.0, 1.5)):
        cfg = study.base_config.with_changes(**pt)
        insert_trial(
            ops, study, number, point=pt, config=cfg, result=_result(score, 21),
            error=None, started=0.0, finished=1.0, fence=None,
        )  # fmt: skip
        per_entity = {e: hold + (0.2 if i % 2 else -0.2) for i, e in enumerate(holdout)}
        set_holdout(ops, study, number, _result(hold, len(holdout)), None, per_entity)
    summary = summarize(study, list_trials(ops, study.id))
    finish_study(ops, study, summary, finished_at=2.0, fence=None)
    return get_study(ops, study.id)


@pytest.fixture
def live_defaults(env):
    """Each test starts and ends with the defaults live and no candidate handed over."""
    ops = open_ops_db(env)
    ops.set_setting(LIVE_CONFIG_KEY, None)
    ops.set_setting(CANDIDATE_KEY, None)
    yield ops
    ops.set_setting(LIVE_CONFIG_KEY, None)
    ops.set_setting(CANDIDATE_KEY, None)


def texts(at) -> str:
    return "\n".join(
        as_shown(str(e.value))
        for kind in ("markdown", "caption", "info", "success", "error", "warning")
        for e in at.get(kind)
    )


def test_the_winner_is_a_diff_against_the_live_config_with_its_score_and_trial(env, live_defaults):
    study = finished_study(live_defaults, {"max_iterations": 30, "delta_accept": 0.1})
    at = tuning_page()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert "Winner: trial 1 · training score 2.0000 · hold-out score 1.5000 (per entity)" in shown
    diff = next(df.value for df in at.dataframe if "bounds" in df.value.columns)
    assert list(diff["parameter"]) == ["delta_accept", "max_iterations"]
    assert list(diff["from"]) == ["0.06", "20"] and list(diff["to"]) == ["0.1", "30"]
    assert set(diff["group"]) == {"confidence changes per decision", "search and stop rules"}
    assert "2 parameter(s) changed" in shown
    # the improvement with its interval, and the warning of a small hold-out set
    assert "paired bootstrap over" in shown
    assert f"{len(study.holdout_ids)} hold-out entities: the interval is wide" in shown
    assert not at.button(key=f"tune_handoff_{study.id}").disabled


def test_hand_to_rollout_says_what_was_handed_over_in_the_same_rerun(env, live_defaults):
    study = finished_study(live_defaults, {"max_iterations": 30, "delta_accept": 0.1})
    at = tuning_page()
    at.button(key=f"tune_handoff_{study.id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    cand = live_defaults.get_setting(CANDIDATE_KEY)
    assert cand["hash"] == studies.winner_config(study).hash()
    said = [as_shown(s.value) for s in at.success]
    assert any(
        s.startswith(f"Handed to rollout: config {cand['hash']} from tuning study {study.id} (trial 1)") for s in said
    ), said
    assert live_defaults.list_audit(action="tuning.handoff")[0]["actor"] == "local"
    at.run()  # the message stays while it is true (the candidate is still this winner)
    assert any("Handed to rollout" in as_shown(s.value) for s in at.success)


def test_a_winner_identical_to_the_live_config_is_refused_in_one_line(env, live_defaults):
    study = finished_study(live_defaults, {"max_iterations": 30, "delta_accept": 0.1})
    at = tuning_page()
    # the live config becomes the winner after the page was drawn: the click is refused by the engine
    with live_defaults.transaction() as db:
        set_live_config(live_defaults, db, studies.winner_config(study), run_id=1, actor=ADMIN, at=0.0)
    at.button(key=f"tune_handoff_{study.id}").click().run()
    errors = [as_shown(e.value) for e in at.error]
    assert any("identical to the live config: nothing to hand over" in e for e in errors), errors
    assert all("\n" not in e for e in errors)
    assert live_defaults.get_setting(CANDIDATE_KEY) is None
    # drawn again, the page says so in one line and offers no hand-over
    at = tuning_page()
    assert any("Not handed to rollout: the winner" in i.value and "identical to the live config" in i.value
               for i in at.info)  # fmt: skip
    assert at.button(key=f"tune_handoff_{study.id}").disabled
    assert not [df for df in at.dataframe if "bounds" in df.value.columns]


def test_cancel_shows_its_outcome_at_once_and_the_message_goes_when_stale(env, live_defaults, monkeypatch):
    monkeypatch.setattr("engine.jobs.queue.launch_worker", lambda settings, job_id, **kw: 4242)
    ops = live_defaults
    study, job, _ = studies.start_study(ops, env, SPEC, actor=ADMIN)
    JobStore(ops).claim(job.id)  # a worker (this process) holds it: a cancel waits for its next checkpoint
    at = tuning_page()
    assert at.get("progress")[0].proto.text.startswith("running")
    at.button(key=f"tune_cancel_{study.id}").click().run()
    said = [as_shown(s.value) for s in at.success]
    assert f"Cancel requested for study {study.id}: it stops after the trial in progress" in said, said
    assert "cancel requested" in at.get("progress")[0].proto.text
    # the worker stops at its checkpoint: the request message is stale, the state line says what happened
    JobStore(ops).finish(JobStore(ops).get(job.id), JobState.CANCELLED, error="cancelled by an operator")
    at.run()
    assert not [s for s in at.success if "Cancel requested" in s.value]
    assert at.get("progress")[0].proto.text.startswith("cancelled")
    # a queued study is cancelled at once, and says so
    study2, _, _ = studies.start_study(ops, env, SPEC, actor=ADMIN)
    at = tuning_page()
    at.button(key=f"tune_cancel_{study2.id}").click().run()
    said = [as_shown(s.value) for s in at.success]
    assert f"Cancel: study {study2.id} cancelled (it had not started)" in said, said


def test_trial_filters_narrow_the_table(env, live_defaults):
    study = finished_study(live_defaults, {"max_iterations": 30, "delta_accept": 0.1})
    at = tuning_page()

    def trials_shown():
        return list(next(df.value for df in at.dataframe if "config hash" in df.value.columns)["trial"])

    assert trials_shown() == [0, 1]
    at.slider(key=f"tune_f_score_{study.id}").set_value((1.5, 2.0)).run()
    assert trials_shown() == [1]
    at.selectbox(key=f"tune_f_param_{study.id}").set_value("max_iterations").run()
    at.slider(key=f"tune_f_range_{study.id}_max_iterations").set_value((20.0, 25.0)).run()
    assert trials_shown() == []
    assert any("0 of 2 trials shown" in c.value for c in at.caption)


# --------------------------------------------------------------------------- pure helpers


def test_best_so_far_is_monotone_and_skips_failed_trials(env):
    from engine.tuning.store import Trial

    def t(n, score):
        return Trial(
            1,
            n,
            "complete" if score is not None else "failed",
            {"x": n},
            None,
            "",
            score,
            None,
            None if score is not None else "bad",
            0.0,
            1.0,
            None,
            None,
        )

    frame = tv.best_so_far_frame([t(0, 0.5), t(1, 0.3), t(2, None), t(3, 0.7), t(4, 0.6)])
    assert list(frame["best so far"]) == [0.5, 0.5, 0.5, 0.7, 0.7]
    assert frame["score"].isna().tolist() == [False, False, True, False, False]
    tv.best_so_far_chart(frame, 0.5).to_dict()  # renders


def test_file_names_follow_the_console_convention():
    assert tv.file_name("best-config", 7, "json", now=0) == "discovery-tuning-study-7-best-config-19700101-0000.json"
    assert tv.progress_of(3, 0) == 0.0 and tv.progress_of(5, 4) == 1.0


def test_workers_on_the_form_make_a_study_with_trials_in_parallel(env, monkeypatch):
    monkeypatch.setattr("engine.jobs.queue.launch_worker", lambda settings, job_id, **kw: 4242)
    monkeypatch.delenv("DISCOVERY_DASK_SCHEDULER", raising=False)
    at = tuning_page()
    at.number_input(key="tune_iterations").set_value(2)
    at.number_input(key="tune_entities").set_value(30)
    at.number_input(key="tune_workers").set_value(2)
    at.button(key="FormSubmitter:tune_form-Start study").click().run()
    assert not at.exception, [e.value for e in at.exception]
    ops = open_ops_db(env)
    study = studies.latest_study(ops)
    assert study.spec.workers == 2
    assert JobStore(ops).get(study.job_id).params["executor"]["workers"] == 2
    assert any("2 trials at once" in c.value for c in at.caption), [c.value for c in at.caption]
    at.button(key=f"tune_cancel_{study.id}").click().run()
