"""Tuning: search the discovery parameters, confirm the winner on hold-out entities, hand it to a rollout.

Thin: studies, trials and outputs come from engine.tuning.study; the study runs in a
worker process (a job of kind ``tuning``); this page only starts, polls and
controls it.
"""

from __future__ import annotations

import streamlit as st

from console import tuning_view as tv
from console.cluster_view import cluster_panel
from console.feedback import Feedback
from console.identity import actor, needs, operator_field
from console.services import call, get_services
from console.text import md_code, md_escape
from engine import tuning as studies
from engine.core.configs import candidate_info, config_diff, live_config, live_config_info
from engine.core.errors import ConfigError
from engine.core.params import PARAMETER_SPECS
from engine.discovery.limits import MAX_CONCURRENCY
from engine.jobs.executor import MAX_WORKERS, SCHEDULER_ENV, executor_spec
from engine.jobs.queue import Control, JobState, get_job, reap_dead_workers
from engine.tuning import DEFAULT_TUNED, METHODS
from engine.tuning.analysis import TrialFilter, filter_trials, param_importance
from engine.tuning.objective import Rewards
from engine.tuning.outputs import holdout_improvement

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


feedback = Feedback("tuning_flash")  # Start study (a form: its outcome shows on the full rerun)
#: the study's buttons sit in the polling fragment, whose reruns never reach a message drawn outside it:
#: their outcome is drawn inside it, right under the button, in the same rerun as the click
controls = Feedback("tuning_controls")
handover = Feedback("tuning_handover")


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
        concurrency=int(ss["tune_concurrency"]),
        workers=int(ss["tune_workers"]),
    )
    if not spec.params:
        raise ConfigError("pick at least one parameter to tune")
    return spec


def launch() -> None:
    out = feedback.act(
        "Start study",
        lambda: studies.start_study(
            ops, settings, form_spec(), actor=actor(), scheduler=executor_spec(int(ss["tune_workers"])).scheduler
        ),
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
    c1, c2, c3, c4 = st.columns(4)
    c4.number_input(
        "Entities in flight",
        1,
        MAX_CONCURRENCY,
        1,
        key="tune_concurrency",
        help="entities of a trial run at once (each entity's hops in order); the scores are the same at any "
        "value. It pays against an evaluator that waits; the simulated world in virtual time runs one at a time",
    )
    c1.number_input("Reward per true actionable call", 0.0, 1000.0, Rewards().true_actionable, key="tune_r_true")
    c2.number_input("Penalty per false actionable call", 0.0, 1000.0, Rewards().false_actionable, key="tune_r_false")
    c3.number_input("Penalty per USD spent", 0.0, 1000.0, Rewards().per_usd, key="tune_r_usd")
    c1, _, _, _ = st.columns(4)
    c1.number_input(
        "Workers",
        1,
        MAX_WORKERS,
        1,
        key="tune_workers",
        help="trials run at once: more than 1 starts a local Dask cluster of that many processes on this machine "
        f"(or uses the running cluster named by {md_code(SCHEDULER_ENV)}); 1 runs them one after another in the "
        "study's worker process. Part of the study: the same seed and workers give the same study",
    )
    start_needs = needs("tuning.start")
    # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
    st.form_submit_button("Start study", type="primary", on_click=launch, disabled=bool(start_needs), help=start_needs)

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


def study_signature(study_id: int) -> tuple:
    """What a button's message is about: while this stays the same the message is current; once the study moves
    on (the worker picked it up, the cancel took effect, another candidate was handed over) it is stale."""
    study = studies.get_study(ops, study_id)
    job = get_job(ops, study.job_id) if study.job_id else None
    cand = candidate_info(ops) or {}
    return (study_id, studies.study_state(ops, study), str(job.control) if job else "", cand.get("hash"))


def remember(fb: Feedback, study_id: int) -> None:
    ss[f"{fb.key}_about"] = study_signature(study_id)


def show_fresh(fb: Feedback, study_id: int) -> None:
    """Draw ``fb``'s message while the study is as the button left it; drop it once stale."""
    if ss.get(f"{fb.key}_about") != study_signature(study_id):
        ss.pop(fb.key, None)
    fb.show(keep=True)


def cancel_done(job) -> str:
    if job.state is JobState.CANCELLED:
        return f"Cancel: study {job.params.get('study_id')} cancelled (it had not started)"
    return f"Cancel requested for study {job.params.get('study_id')}: it stops after the trial in progress"


def cancel(study_id: int) -> None:
    controls.act("Cancel", studies.cancel_study, ops, study_id, actor=actor(), done=cancel_done)
    remember(controls, study_id)


def resume(study_id: int) -> None:
    controls.act(
        "Resume",
        studies.resume_study,
        ops,
        settings,
        study_id,
        actor=actor(),
        done=lambda out: f"Study {study_id} resumed: {out[1]}",
    )
    remember(controls, study_id)


def hand_off(study_id: int) -> None:
    handover.act(
        "Hand to rollout",
        studies.handoff,
        ops,
        settings,
        study_id,
        actor=actor(),
        done=lambda path: tv.handed_over_text(candidate_info(ops) or {"path": str(path)}),
    )
    remember(handover, study_id)


@st.cache_data(max_entries=32, show_spinner=False)
def importance_of(params: tuple[str, ...], points: tuple, scores: tuple, seed: int) -> dict[str, float]:
    """engine.tuning.analysis.param_importance, once per set of finished trials (the fragment polls)."""
    return param_importance([dict(zip(params, p)) for p in points], list(scores), params, seed=seed)


def draw_winner(study: studies.Study, trials: list[studies.Trial]) -> None:
    """The winner as a diff against the live config, its tiles with the hold-out interval, the hand-over."""
    result = study.result
    assert result is not None
    st.markdown(f"#### {md_escape(tv.winner_heading(result))}")
    interval = holdout_improvement(ops, study, trials)
    for col, (label, value, help_) in zip(st.columns(4), tv.result_tiles(result, interval)):
        # the improvement carries its interval under it, in grey (it is neither good nor bad news)
        delta = tv.interval_delta(interval) if label == "Hold-out improvement" else None
        col.metric(label, value, delta, "off", help=help_, border=True, delta_arrow="off")  # md-safe: labels, numbers
    st.caption(f"Hold-out improvement: {md_escape(tv.interval_text(interval))}")
    warning = tv.small_holdout_warning(len(study.holdout_ids))
    if warning:
        st.warning(md_escape(warning), icon=":material/warning:")

    live_cfg, winner = live_config(ops), studies.winner_config(study)
    live_hash = live_cfg.hash()
    changes = config_diff(live_cfg, winner)
    if result["winner_is_base"]:
        st.info(
            "The current config won on the hold-out set: no tuned trial beat it on training and held up "
            "on hold-out, so there is nothing to roll out."
        )
    if study.base_config.hash() != live_hash:
        st.caption(
            f"The live config changed since this study started: trial 0 ran {md_code(study.base_config.hash())}, "
            f"the diff below is against today's live config {md_code(live_hash)}."
        )
    live_label = "live config" if live_config_info(ops) else "live config (the defaults)"
    if not changes:
        st.info(
            f"Not handed to rollout: the winner ({md_code(winner.hash())}) is identical to the "
            f"{md_escape(live_label)}; a rollout would compare it with itself.",
            icon=":material/block:",
        )
    else:
        st.markdown(
            f"**What Hand to rollout gives the next rollout**: winner {md_code(winner.hash())} against the "
            f"{md_escape(live_label)} {md_code(live_hash)}, {len(changes)} parameter(s) changed"
        )
        st.dataframe(tv.winner_diff_frame(changes), hide_index=True, width="stretch", key=f"tune_diff_{study.id}")
        cand = candidate_info(ops)
        if cand and cand.get("hash") != winner.hash():
            st.caption(
                f"Replaces the current candidate {md_code(cand.get('hash', ''))} ({md_escape(cand.get('source', ''))})."
            )
    handoff_needs = needs("tuning.handoff")
    st.button(
        "Hand to rollout",
        disabled=result["winner_is_base"] or not changes or bool(handoff_needs),
        on_click=hand_off,
        args=(study.id,),
        key=f"tune_handoff_{study.id}",
        type="primary",
        # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
        help=handoff_needs
        or "write the winner to <data dir>/configs/ and make it the candidate config of the next rollout",
    )
    show_fresh(handover, study.id)


def draw_charts(study: studies.Study, trials: list[studies.Trial], frame) -> None:
    """Best so far, importance, slice, parallel coordinates, training vs hold-out."""
    params = list(study.spec.params)
    done = [t for t in trials if t.complete and t.score is not None]
    importance = importance_of(
        tuple(params),
        tuple(tuple(float(t.point[p]) for p in params) for t in done),
        tuple(float(t.training_score) for t in done),
        study.spec.seed,
    )
    left, right = st.columns(2)
    with left:
        st.markdown("**Best so far** (training score)")
        base_score = next((t.score for t in trials if t.number == 0), None)
        st.altair_chart(tv.best_so_far_chart(tv.best_so_far_frame(trials), base_score), width="stretch")
    with right:
        st.markdown("**Parameter importance** (share of the training score's variance each parameter explains)")
        if importance and any(importance.values()):
            with st.container(key="tune_importance_chart"):  # the key names it for the browser test
                st.altair_chart(tv.importance_chart(tv.importance_frame(importance)), width="stretch")
        else:
            st.caption("Shown from 4 finished trials whose scores differ.")
    top = tv.top_params(importance, params)
    st.markdown("**Slice**: training score against each parameter")
    chosen = st.multiselect(
        "Parameters in the slice plot", params, default=top, key=f"tune_slice_{study.id}", max_selections=9
    )
    if chosen:
        st.altair_chart(tv.slice_chart(tv.slice_frame(frame, chosen)))
    st.markdown(f"**Parallel coordinates** over the {len(top)} most important parameters and the score")
    with st.container(key="tune_parallel_chart"):
        st.altair_chart(tv.parallel_chart(tv.parallel_frame(frame, top)), width="stretch")

    hold = tv.holdout_frame(trials, study.result["winner"]["trial"] if study.result else None)
    if not hold.empty:
        st.markdown("**Training vs hold-out** (re-scored trials; gap = training − hold-out)")
        c1, c2 = st.columns(2)
        c1.altair_chart(tv.holdout_chart(hold), width="stretch")
        c2.dataframe(tv.holdout_table(hold), hide_index=True, width="stretch", key=f"tune_hold_{study.id}")


def draw_trials(study: studies.Study, trials: list[studies.Trial]) -> None:
    """The trials table with its filters: state, training-score range, one parameter's range."""
    st.markdown("**Trials**")
    sid = study.id
    f1, f2, f3, f4 = st.columns([1.5, 2, 1.2, 2])
    states = sorted({t.state for t in trials})
    picked = f1.multiselect("State", states, default=states, format_func=tv.state_label, key=f"tune_f_state_{sid}")
    flt = TrialFilter(states=set(picked))
    score_range = tv.filter_bounds(trials)
    if score_range:
        lo, hi = f2.slider(
            "Training score (per entity)", *score_range, value=score_range, format="%.4f", key=f"tune_f_score_{sid}"
        )
        flt = TrialFilter(
            states=flt.states,
            score_min=lo if lo > score_range[0] else None,
            score_max=hi if hi < score_range[1] else None,
        )
    param = f3.selectbox("Parameter", ["(any)", *study.spec.params], key=f"tune_f_param_{sid}")
    if param != "(any)":
        bounds = tv.filter_bounds(trials, param)
        if bounds:
            low, high = float(bounds[0]), float(bounds[1])
            plo, phi = f4.slider(
                f"{md_escape(param)} range", low, high, value=(low, high), key=f"tune_f_range_{sid}_{param}"
            )
            flt = TrialFilter(flt.states, flt.score_min, flt.score_max, param, plo, phi)
    shown = filter_trials(trials, flt)
    st.caption(f"{len(shown)} of {len(trials)} trials shown")
    table = tv.trials_table(shown, study.spec.params)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key=f"tune_trials_{sid}",
        column_config={c: st.column_config.NumberColumn(format=f) for c, f in tv.number_formats(table).items()},
    )


def draw_cluster(job_id: int | None) -> None:
    """The Dask cluster the study's trials run on (nothing when they run in the study's own process)."""
    panel = cluster_panel(settings.data_dir, job_id)
    if panel is None:
        return
    st.markdown("**Cluster**")
    if panel.figures:
        for col, (label, value) in zip(st.columns(len(panel.figures)), panel.figures):
            col.metric(label, value)  # md-safe: fixed labels and formatted numbers (console.cluster_view)
    st.caption(md_escape(panel.caption))
    if panel.dashboard_url:
        st.link_button("Open Dask's dashboard", panel.dashboard_url)


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
        + (f" · {spec.workers:d} trials at once" if spec.workers > 1 else "")
    )
    done = job.progress_done if job else len(trials)
    total = job.progress_total if job and job.progress_total else study.total_trials
    finished = state == "finished"
    line = tv.status_line(
        state,
        trials_done=len(trials),
        trials_total=study.total_trials,
        job_message=job.message if job else "",
        cancel_requested=bool(job and job.control is Control.CANCEL),
        result=study.result,
    )
    st.progress(1.0 if finished else tv.progress_of(done, total), text=md_escape(line))
    if job and job.error and state == "failed":
        st.error(f"job {job.id:d}: {md_escape(job.error)}")

    b1, b2, _ = st.columns([1, 1, 4])
    running = state in JobState and JobState(state).is_active()  # "created" and "finished" are study states
    cancel_needs, resume_needs = needs("tuning.cancel"), needs("tuning.resume")
    b1.button(
        "Cancel",
        disabled=not running or bool(cancel_needs),
        on_click=cancel,
        args=(study.id,),
        key=f"tune_cancel_{study.id}",
        # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
        help=cancel_needs,
    )
    b2.button(
        "Resume",
        disabled=state not in ("dead", "failed", "cancelled", "created") or bool(resume_needs),
        on_click=resume,
        args=(study.id,),
        key=f"tune_resume_{study.id}",
        # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
        help=resume_needs,
    )
    show_fresh(controls, study.id)
    if running:
        draw_cluster(study.job_id)

    if study.result:
        draw_winner(study, trials)

    if not trials:
        st.info("Waiting for trial 0 (the current config)…")
        return
    draw_charts(study, trials, tv.trials_frame(trials, spec.params))
    draw_trials(study, trials)

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
