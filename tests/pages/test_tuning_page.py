"""AppTest of the Tuning page: launch form, progress, trial table, result tiles, hold-out table, cancel,
hand to rollout, downloads; plus the pure helpers of console/tuning_view.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console import tuning_view as tv
from engine.core.settings import load_settings
from engine.jobs.queue import JobState, JobStore, run_claimed
from engine.store import falkor
from engine.store.opsdb import open_ops_db
from engine.tuning.spec import EntitySpec, StudySpec
from engine.tuning.store import create_study, get_study, list_trials

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
    assert ops.list_audit(action="tuning.create")[0]["actor"] == "console:operator"
    # progress and state of the queued study
    assert "queued" in at.get("progress")[0].proto.text
    # cancel from the console: a queued job is cancelled at once
    at.button(key=f"tune_cancel_{study.id}").click().run()
    assert JobStore(ops).get(study.job_id).state is JobState.CANCELLED


def test_a_finished_study_shows_trials_holdout_result_and_hands_off(env):
    ops = open_ops_db(env)
    study = create_study(ops, SPEC, actor="test")
    from engine.tuning.runner import submit_study

    job = submit_study(ops, study, actor="test")
    final = run_claimed(JobStore(ops), job.id, env)  # the worker's code path, in this process
    assert final.state is JobState.SUCCEEDED, final.error
    study = get_study(ops, study.id)
    at = tuning_page()
    labels = {m.label: m.value for m in at.metric}
    assert float(labels["Winner, hold-out"]) >= float(labels["Current config, hold-out"])
    frames = {df.proto.id: df for df in at.dataframe}
    tables = [df.value for df in at.dataframe]
    trials_table = next(t for t in tables if "config_hash" in t.columns)
    assert list(trials_table["trial"]) == [t.number for t in list_trials(ops, study.id)] == [0, 1, 2, 3]
    hold = next(t for t in tables if "hold-out" in t.columns)
    assert 0 in set(hold["trial"]) and len(hold) == len(
        [t for t in list_trials(ops, study.id) if t.holdout_score is not None]
    )
    assert frames  # tables render
    assert at.get("download_button"), "best config and report downloads"
    handoff_btn = at.button(key=f"tune_handoff_{study.id}")
    if study.result["winner_is_base"]:
        assert handoff_btn.disabled
    else:
        handoff_btn.click().run()
        assert ops.get_setting("rollout.candidate")["source"].startswith(f"tuning study {study.id}")


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
