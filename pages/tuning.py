"""Tuning: search the discovery parameters, confirm the winner on hold-out entities, hand it to a rollout.

Thin: studies, trials and outputs come from engine.tuning.study; the study runs in a
worker process (a job of kind ``tuning``); this page only starts, polls and
controls it.
"""

from __future__ import annotations

import streamlit as st

from console import tuning_view as tv
from console.feedback import Feedback
from console.identity import actor, operator_field
from console.services import call, get_services
from console.text import md_code, md_escape
from engine import tuning as studies
from engine.core.errors import ConfigError
from engine.core.params import PARAMETER_SPECS
from engine.jobs.queue import JobState, get_job, reap_dead_workers
from engine.tuning import DEFAULT_TUNED, METHODS
from engine.tuning.objective import Rewards

REFRESH_S = 2.0
LATEST = 0

services = get_services()
operator_field()  # one name for every page of this tab (console.identity)
settings, ops = services.settings, services.ops
ss = st.session_state

st.title("Tuning")
st.caption(
    "Each trial runs the new discovery system in shadow over the training entities against the simulated world "
    "and scores it (rewards for true actionable calls, penalties for false ones and for dollars spent). Trial 0 "
    "is the current config. The best trials are re-scored on hold-out entities chosen by hash when the study is "
    "created; the winner must beat the current config on training and never loses to it on hold-out."
)


feedback = Feedback("tuning_flash")


# --------------------------------------------------------------------------- launch


def form_spec() -> studies.StudySpec:
    """The study the form describes; ConfigError when it is not a valid one."""
    spec = studies.StudySpec(
        method=ss["tune_method"],
        params=tuple(ss["tune_params"]),
        iterations=int(ss["tune_iterations"]),
        entities=studies.EntitySpec(
            kind="catalogue", n=int(ss["tune_entities"]), catalogue_seed=int(ss["tune_catalogue_seed"])
        ),
        seed=int(ss["tune_seed"]),
        world_seed=int(ss["tune_world_seed"]),
        rewards=Rewards(
            true_actionable=float(ss["tune_r_true"]),
            false_actionable=float(ss["tune_r_false"]),
            per_usd=float(ss["tune_r_usd"]),
        ),
        train_fraction=float(ss["tune_split"]),
        top_k=int(ss["tune_top_k"]),
    )
    if not spec.params:
        raise ConfigError("pick at least one parameter to tune")
    return spec


def launch() -> None:
    out = feedback.act(
        "Start study",
        lambda: studies.start_study(ops, settings, form_spec(), actor=actor()),
        done=lambda out: f"Study {out[0].id} started: job {out[1].id}, worker pid {out[2]}",
    )
    if out is not None:
        ss["tune_pick"] = LATEST


with st.expander("Start a study", expanded=not studies.list_studies(ops, limit=1)), st.form("tune_form"):
    c1, c2, c3, c4 = st.columns(4)
    c1.selectbox(
        "Method",
        METHODS,
        index=METHODS.index("bayesian"),
        key="tune_method",
        help="grid: every grid point (a seeded sample when larger than the budget); random: uniform "
        "draws; bayesian: Gaussian-process model with expected improvement",
    )
    c2.number_input("Iterations (search trials)", 1, 2000, 30, key="tune_iterations")
    c3.number_input("Entities (training + hold-out)", 10, 20000, 200, step=50, key="tune_entities")
    c4.number_input("Seed", 0, 10**6, 0, key="tune_seed", help="sampler seed; also fixes the hold-out set")
    st.multiselect(
        "Parameters to tune",
        [s.name for s in PARAMETER_SPECS],
        default=list(DEFAULT_TUNED),
        key="tune_params",
        help="default: the documented subset (engine.tuning.space.DEFAULT_TUNED)",
    )
    c1, c2, c3, c4 = st.columns(4)
    c1.slider("Training fraction", 0.5, 0.95, 0.8, 0.05, key="tune_split")
    c2.number_input("Top trials re-scored on hold-out", 1, 20, 3, key="tune_top_k")
    c3.number_input("Catalogue seed", 0, 10**6, studies.DEFAULT_CATALOGUE_SEED, key="tune_catalogue_seed")
    c4.number_input("World seed", 0, 10**6, studies.DEFAULT_WORLD_SEED, key="tune_world_seed")
    c1, c2, c3, _ = st.columns(4)
    c1.number_input("Reward per true actionable call", 0.0, 1000.0, Rewards().true_actionable, key="tune_r_true")
    c2.number_input("Penalty per false actionable call", 0.0, 1000.0, Rewards().false_actionable, key="tune_r_false")
    c3.number_input("Penalty per USD spent", 0.0, 1000.0, Rewards().per_usd, key="tune_r_usd")
    st.form_submit_button("Start study", type="primary", on_click=launch)

feedback.show()

all_studies = call(studies.list_studies, ops, 200)
if not all_studies:
    st.info(
        "No tuning study yet: start one above, or from the command line with "
        "`python -m engine tune --method bayesian --iterations 30`."
    )
    st.stop()

labels = {LATEST: "latest study"} | {s.id: tv.study_label(s, studies.study_state(ops, s)) for s in all_studies}
st.selectbox("Study", list(labels), format_func=labels.__getitem__, key="tune_pick")


def cancel(study_id: int) -> None:
    feedback.act(
        "Cancel",
        studies.cancel_study,
        ops,
        study_id,
        actor=actor(),
        done=f"Cancel requested for study {study_id}: it stops after the trial in progress",
    )


def resume(study_id: int) -> None:
    feedback.act(
        "Resume",
        studies.resume_study,
        ops,
        settings,
        study_id,
        actor=actor(),
        done=lambda out: f"Study {study_id}: {out[1]}",
    )


def hand_off(study_id: int) -> None:
    feedback.act(
        "Hand to rollout",
        studies.handoff,
        ops,
        settings,
        study_id,
        actor=actor(),
        done=lambda path: f"Winner written to {path} and set as the candidate of the next rollout (Rollout page)",
    )


@st.fragment(run_every=REFRESH_S)
def live() -> None:
    pick = ss.get("tune_pick", LATEST)
    study = call(studies.get_study, ops, pick) if pick != LATEST else call(studies.latest_study, ops)
    if study is None:  # the page stopped above when there was no study; studies are never deleted
        raise RuntimeError("no tuning study to show, though the study list was not empty")
    reap_dead_workers(ops)  # a study whose worker died shows as dead, with a Resume button
    state = studies.study_state(ops, study)
    job = get_job(ops, study.job_id) if study.job_id else None
    trials = studies.list_trials(ops, study.id)
    spec = study.spec

    st.subheader(f"Study {study.id:d}: {md_escape(study.name)}")
    st.caption(
        f"{md_escape(study.sampler)} · {md_escape(spec.entities.describe())} · "
        f"{md_escape(spec.evidence.describe(spec.world_seed))}"
        + (f" scored by {md_code(spec.labels.path)}" if spec.labels else "")
        + f" · {len(study.train_ids)} training / "
        f"{len(study.holdout_ids)} hold-out entities · tuned: {md_escape(', '.join(spec.params))}"
        + (f" · full grid {study.grid_full_size:,} points" if study.grid_full_size else "")
    )
    done = job.progress_done if job else len(trials)
    total = job.progress_total if job and job.progress_total else study.total_trials
    st.progress(
        tv.progress_of(done, total),
        text=f"{md_escape(state)} · {len(trials)}/{study.total_trials:,} trials · "
        f"{md_escape(job.message if job else '')}",
    )
    if job and job.error:
        st.error(f"job {job.id:d}: {md_escape(job.error)}")

    b1, b2, b3, _ = st.columns([1, 1, 1, 3])
    running = state in JobState and JobState(state).is_active()  # "created" and "finished" are study states
    b1.button("Cancel", disabled=not running, on_click=cancel, args=(study.id,), key=f"tune_cancel_{study.id}")
    b2.button(
        "Resume",
        disabled=state not in ("dead", "failed", "cancelled", "created"),
        on_click=resume,
        args=(study.id,),
        key=f"tune_resume_{study.id}",
    )
    b3.button(
        "Hand to rollout",
        disabled=study.result is None or study.result.get("winner_is_base", True),
        on_click=hand_off,
        args=(study.id,),
        key=f"tune_handoff_{study.id}",
        type="primary",
        help="write the winner to <data dir>/configs/ and make it the candidate config of the next rollout",
    )

    if study.result:
        for col, (label, value, help_) in zip(st.columns(4), tv.result_tiles(study.result)):
            col.metric(label, value, help=help_, border=True)  # md-safe: constant labels, scores and trial numbers
        if study.result["winner_is_base"]:
            st.info(
                "The current config won on the hold-out set: no tuned trial beat it on training and held up "
                "on hold-out, so there is nothing to roll out."
            )
        else:
            st.markdown(
                "Winner's changes: "
                + ", ".join(
                    f"{md_code(k)} {md_escape(v['from'])} → {md_escape(v['to'])}"
                    for k, v in study.result["changes"].items()
                )
            )

    frame = tv.trials_frame(trials, spec.params)
    if not trials:
        st.info("Waiting for trial 0 (the current config)…")
        return
    left, right = st.columns(2)
    with left:
        st.markdown("**Best so far** (training score)")
        base_score = next((t.score for t in trials if t.number == 0), None)
        st.altair_chart(tv.best_so_far_chart(tv.best_so_far_frame(trials), base_score), width="stretch")
    with right:
        param = st.selectbox("Objective against parameter", list(spec.params), key=f"tune_param_{study.id}")
        st.altair_chart(tv.param_chart(frame, param), width="stretch")

    winner = study.result["winner"]["trial"] if study.result else None
    hold = tv.holdout_frame(trials, winner)
    if not hold.empty:
        st.markdown("**Training vs hold-out** (re-scored trials; gap = training − hold-out)")
        c1, c2 = st.columns(2)
        c1.altair_chart(tv.holdout_chart(hold), width="stretch")
        c2.dataframe(hold, hide_index=True, width="stretch", key=f"tune_hold_{study.id}")

    st.markdown("**Trials**")
    st.dataframe(frame, hide_index=True, width="stretch", key=f"tune_trials_{study.id}")

    if study.result:
        cfg = studies.winner_config(study)
        d1, d2, _ = st.columns([1, 1, 2])
        d1.download_button(
            "Download best config",
            cfg.to_json() + "\n",
            file_name=tv.file_name("best-config", study.id, "json"),
            mime="application/json",
            key=f"tune_dl_cfg_{study.id}",
        )
        report = studies.render_report(study, trials, study.result)
        d2.download_button(
            "Download report",
            report,
            file_name=tv.file_name("report", study.id, "md"),
            mime="text/markdown",
            key=f"tune_dl_report_{study.id}",
        )


live()
