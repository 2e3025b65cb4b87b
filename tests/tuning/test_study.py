"""Tuning studies: persistence, trial 0, failed trials, resume without repeats, hold-out winner, validate,
handoff, metrics, and a real worker SIGKILLed mid-study."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from engine.core.configs import set_live_config
from engine.core.errors import ConfigError
from engine.core.params import ParameterConfig
from engine.jobs.executor import InProcessExecutor
from engine.jobs.queue import Control, JobState, JobStore, launch_worker, resume_job, wait_for, worker_liveness
from engine.monitoring.events import count_events, query_events
from engine.tuning.objective import ObjectiveResult
from engine.tuning.outputs import handoff, holdout_improvement, summarize, winner_config
from engine.tuning.runner import StudyRunner, submit_study
from engine.tuning.samplers import RandomSampler
from engine.tuning.space import search_space
from engine.tuning.spec import EntitySpec, StudySpec, file_entity_spec
from engine.tuning.store import Trial, create_study, get_study, list_trials
from engine.tuning.validate import validate_config
from tests.support.actors import ADMIN

SMALL = EntitySpec(kind="catalogue", n=40, catalogue_seed=7)


def _spec(**kw) -> StudySpec:
    base = dict(
        method="random",
        params=("max_iterations", "delta_accept", "max_cost_usd"),
        iterations=4,
        entities=SMALL,
        seed=1,
        train_fraction=0.7,
    )
    base.update(kw)
    return StudySpec(**base)


class Crash(Exception):
    """Stands in for a worker that dies between two trials."""


def _run(ops, settings, study, **kw):
    return StudyRunner(ops, study, settings=settings, **kw).run()


# --------------------------------------------------------------------------- creation


def test_a_study_fixes_its_split_and_base_config_at_creation_and_is_audited(ops):
    base = ParameterConfig().with_changes(max_iterations=12)
    study = create_study(ops, _spec(), actor=ADMIN, base_config=base)
    again = get_study(ops, study.id)
    assert again.train_ids == study.train_ids and again.holdout_ids == study.holdout_ids
    assert set(study.train_ids).isdisjoint(study.holdout_ids)
    assert len(study.train_ids) + len(study.holdout_ids) == 40
    assert again.base_config == base
    assert again.spec == study.spec
    audit = ops.list_audit(action="tuning.create")
    assert audit and audit[0]["actor"] == "test-admin" and audit[0]["target"] == f"study:{study.id}"


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(params=("max_iterations", "no_such_param")), "unknown parameter"),
        (dict(method="anneal"), "unknown tuning method"),
        (dict(iterations=0), "iterations 0"),
        (dict(train_fraction=1.0), "between 0 and 1"),
    ],
)
def test_bad_study_specs_are_one_line_errors_and_write_nothing(ops, change, message):
    with pytest.raises(ConfigError, match=message):
        create_study(ops, _spec(**change), actor=ADMIN)
    with ops.connect() as db:
        assert next(db.query("SELECT COUNT(*) AS n FROM tuning_studies"))["n"] == 0


# --------------------------------------------------------------------------- running


def test_trial_0_is_the_current_config_and_every_trial_is_persisted_as_it_finishes(ops, settings):
    base = ParameterConfig().with_changes(max_iterations=15)
    study = create_study(ops, _spec(iterations=3), actor=ADMIN, base_config=base)
    seen = []
    _run(ops, settings, study, checkpoint=lambda p: seen.append(len(list_trials(ops, study.id))))
    trials = list_trials(ops, study.id)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert trials[0].config == base and trials[0].point["max_iterations"] == 15
    # one more stored trial at each trial checkpoint: persisted as each finished, not at the end
    assert seen[:5] == [0, 1, 2, 3, 4]
    assert all(t.complete and t.result is not None for t in trials)
    assert all(t.config.hash() == t.config_hash for t in trials)


class _Recording(InProcessExecutor):
    """The in-process executor, noting the run ids of the units each call hands it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def run(self, fn, units, *, tick=None):
        self.calls.append([unit[3] for unit in units])
        return super().run(fn, units, tick=tick)


@pytest.mark.parametrize("method", ["random", "grid", "bayesian"])
def test_grid_and_random_trials_go_to_the_executor_at_once_with_trial_0_and_bayesian_ones_in_turn(
    ops, settings, method
):
    """With one worker a Dask cluster runs the next trial while the coordinator stores the last only if it
    has the next: grid and random hand over every trial at once, trial 0 first; Bayesian asks each point
    after the last trial is told, so one goes at a time (and trial 0 before the sampler asks anything)."""
    study = create_study(ops, _spec(method=method, iterations=4), actor=ADMIN)
    executor = _Recording()
    _run(ops, settings, study, executor=executor)
    trials = [[f"tuning-{study.id}-t{n}" for n in numbers] for numbers in ([0, 1, 2, 3, 4], *[[n] for n in range(5)])]
    expected = trials[:1] if method != "bayesian" else trials[1:]
    assert executor.calls[: len(expected)] == expected
    assert all(run_id.endswith("-holdout") for call in executor.calls[len(expected) :] for run_id in call)
    points = [tuple(sorted(t.point.items())) for t in list_trials(ops, study.id)]
    if method == "random":  # trial n's point is the n-th draw of the seed, as when trials went one at a time
        space = search_space(study.spec.params, study.base_config)
        draws = RandomSampler(space, seed=study.spec.seed).ask_batch([1, 2, 3, 4])
        assert points[1:] == [tuple(sorted(p.items())) for p in draws]
    if method == "grid":  # trial 0's point (the current config) is not proposed again
        assert len(set(points)) == len(points)


def test_an_invalid_combination_is_a_failed_trial_kept_with_its_error(ops, settings):
    # grid over saturation_count x saturation_window: count > window is refused by ParameterConfig
    spec = _spec(method="grid", params=("saturation_count", "saturation_window"), iterations=5, seed=3)
    study = create_study(ops, spec, actor=ADMIN)
    summary = _run(ops, settings, study)
    trials = list_trials(ops, study.id)
    failed = [t for t in trials if not t.complete]
    assert failed, [t.point for t in trials]
    for t in failed:
        assert t.point["saturation_count"] > t.point["saturation_window"]
        assert "saturation_count" in t.error and t.score is None
    assert summary["failed"] == len(failed)
    assert get_study(ops, study.id).finished_at is not None


@pytest.mark.parametrize("method", ["random", "bayesian", "grid"])
def test_a_crashed_study_resumes_without_repeating_finished_trials(ops, settings, method):
    study = create_study(ops, _spec(method=method, iterations=5), actor=ADMIN)

    def crash_after_three(p):
        if len(list_trials(ops, study.id)) >= 3:
            raise Crash()

    with pytest.raises(Crash):
        _run(ops, settings, study, checkpoint=crash_after_three)
    before = {t.number: t for t in list_trials(ops, study.id)}
    assert sorted(before) == [0, 1, 2]

    runner = StudyRunner(ops, study, settings=settings)
    evaluated = []
    real = runner.scored  # every evaluation's runs are scored (and recorded) here, under its run id
    runner.scored = lambda results, run_id: evaluated.append(run_id) or real(results, run_id)
    runner.run()
    after = list_trials(ops, study.id)
    assert [t.number for t in after] == [0, 1, 2, 3, 4, 5]
    for n, t in before.items():  # finished trials untouched
        assert after[n].finished_at == t.finished_at and after[n].point == t.point
    trial_runs = [r for r in evaluated if not r.endswith("holdout")]
    assert trial_runs == [f"tuning-{study.id}-t{n}" for n in (3, 4, 5)]
    if method != "bayesian":  # a fresh sampler told the finished trials does not propose them again
        keys = [tuple(sorted(t.point.items())) for t in after if t.number > 0]
        assert len(keys) == len(set(keys))


def test_a_resumed_random_study_draws_exactly_what_an_uninterrupted_one_draws(ops, settings):
    a = create_study(ops, _spec(iterations=4), actor=ADMIN)
    _run(ops, settings, a)
    b = create_study(ops, _spec(iterations=4), actor=ADMIN)

    def crash(p):
        if len(list_trials(ops, b.id)) >= 2:
            raise Crash()

    with pytest.raises(Crash):
        _run(ops, settings, b, checkpoint=crash)
    _run(ops, settings, b)
    assert [t.point for t in list_trials(ops, a.id)] == [t.point for t in list_trials(ops, b.id)]
    assert [t.score for t in list_trials(ops, a.id)] == [t.score for t in list_trials(ops, b.id)]


def test_every_trial_run_is_recorded_once_as_shadow_metric_events(ops, settings):
    study = create_study(ops, _spec(iterations=2), actor=ADMIN)

    def crash(p):
        if len(list_trials(ops, study.id)) >= 2:
            raise Crash()

    with pytest.raises(Crash):
        _run(ops, settings, study, checkpoint=crash)
    _run(ops, settings, study)
    n_train, n_hold = len(study.train_ids), len(study.holdout_ids)
    for t in list_trials(ops, study.id):
        assert count_events(ops, run_id=f"tuning-{study.id}-t{t.number}") == n_train
    events = query_events(ops, stage_id=study.stage_id)
    assert all(e.shadow and e.system == "new" for e in events)
    rescored = [t for t in list_trials(ops, study.id) if t.holdout_score is not None]
    assert len(events) == 3 * n_train + len(rescored) * n_hold
    assert (settings.log_dir / "tuning-metrics.jsonl").exists()  # its own log: the live one is not rotated away
    assert not (settings.log_dir / "metrics.jsonl").exists()


# --------------------------------------------------------------------------- hold-out and winner


def test_best_trials_are_rescored_on_the_holdout_set_and_the_winner_never_loses_to_the_base(ops, settings):
    study = create_study(ops, _spec(method="bayesian", iterations=5, top_k=2), actor=ADMIN)
    summary = _run(ops, settings, study)
    trials = list_trials(ops, study.id)
    rescored = [t for t in trials if t.holdout_score is not None]
    ranked = sorted((t for t in trials if t.number > 0 and t.complete), key=lambda t: (-t.score, t.number))
    assert {t.number for t in rescored} == {0} | {t.number for t in ranked[:2]}
    assert summary["winner"]["holdout_score"] >= summary["base"]["holdout_score"]
    win = next(t for t in trials if t.number == summary["winner"]["trial"])
    assert summary["winner"]["gap"] == pytest.approx(win.score - win.holdout_score)
    assert winner_config(get_study(ops, study.id)) == win.config


def _fake(number, score, holdout) -> Trial:
    r = ObjectiveResult(score, 10, 1, 0, 0, 9, 0, 1.0, 10, 0, score, 0, 0, 0, 0)
    h = ObjectiveResult(holdout, 5, 1, 0, 0, 4, 0, 1.0, 10, 0, holdout, 0, 0, 0, 0) if holdout is not None else None
    cfg = ParameterConfig().with_changes(max_iterations=20 + number)  # trial 0: the base (20 is the default)
    return Trial(
        1, number, "complete", {"max_iterations": 20 + number}, cfg, cfg.hash(), score, r, None, 0.0, 1.0, holdout, h
    )


def test_a_trial_worse_than_the_base_on_training_cannot_win_on_holdout_noise(ops):
    study = create_study(ops, _spec(params=("max_iterations",)), actor=ADMIN)
    trials = [_fake(0, 0.50, 0.40), _fake(1, 0.10, 0.90), _fake(2, 0.60, 0.45), _fake(3, 0.70, 0.30)]
    s = summarize(study, trials)
    assert s["winner"]["trial"] == 2  # 1 is poor on training; 3 does not hold on the hold-out set
    assert s["improvement_holdout"] == pytest.approx(0.05)
    s = summarize(study, [_fake(0, 0.50, 0.40), _fake(3, 0.70, 0.30)])
    assert s["winner_is_base"] and s["changes"] == {}


def test_validate_scores_a_config_file_on_the_study_holdout_set(ops, settings, tmp_path):
    study = create_study(ops, _spec(iterations=2), actor=ADMIN)
    _run(ops, settings, study)
    trial0 = list_trials(ops, study.id)[0]
    cfg = ParameterConfig().with_changes(max_iterations=5)
    path = cfg.save(tmp_path / "candidate.json")
    v = validate_config(ParameterConfig.load(path), study=get_study(ops, study.id))
    assert v.base.score == pytest.approx(trial0.holdout_score)
    assert v.candidate.entities == len(study.holdout_ids) and v.candidate_hash == cfg.hash()
    # without a study: the hold-out set the spec would fix, the same for the same seed
    spec = _spec(iterations=2)
    assert validate_config(cfg, spec=spec).holdout_ids == study.holdout_ids


def test_outputs_and_handoff_to_rollout(ops, settings):
    # trial 0 runs a config other than the live one (the defaults), so the winner differs from live
    study = create_study(
        ops, _spec(iterations=2), actor=ADMIN, base_config=ParameterConfig().with_changes(max_iterations=12)
    )
    _run(ops, settings, study)
    out = settings.data_dir / "tuning" / f"study-{study.id}"
    best = ParameterConfig.load(out / "best-config.json")
    assert best == winner_config(get_study(ops, study.id))
    report = (out / "report.md").read_text()
    assert f"# Tuning study {study.id}" in report and "Hold-out re-scoring" in report
    assert "95% interval" in report and "paired bootstrap over" in report  # the improvement with its interval
    assert "hold-out entities: the interval is wide" in report  # 40 entities: a small hold-out set
    path = handoff(ops, settings, study.id, actor=ADMIN, name="my-candidate")
    assert path == settings.data_dir / "configs" / "my-candidate.json"
    assert ParameterConfig.load(path) == best
    candidate = ops.get_setting("rollout.candidate")
    assert candidate["path"] == str(path) and f"tuning study {study.id}" in candidate["source"]
    assert candidate["hash"] == best.hash() and candidate["params"] == best.to_dict()
    assert ops.list_audit(action="rollout.candidate")[0]["actor"] == "test-admin"
    assert ops.list_audit(action="tuning.handoff")[0]["target"] == f"study:{study.id}"


def test_handoff_of_a_winner_identical_to_the_live_config_is_refused_in_one_line(ops, settings):
    study = create_study(ops, _spec(iterations=1), actor=ADMIN)
    _run(ops, settings, study)
    study = get_study(ops, study.id)
    # the live config becomes the winner (whichever trial won): handing it over would roll out live vs live
    with ops.transaction() as db:
        set_live_config(ops, db, winner_config(study), run_id=1, actor=ADMIN, at=0.0)
    with pytest.raises(ConfigError, match="identical to the live config: nothing to hand over") as err:
        handoff(ops, settings, study.id, actor=ADMIN)
    assert "\n" not in str(err.value)
    assert ops.get_setting("rollout.candidate") is None
    assert not (settings.data_dir / "configs").exists() or not list((settings.data_dir / "configs").iterdir())


def test_handoff_of_an_unfinished_study_is_refused(ops, settings):
    study = create_study(ops, _spec(), actor=ADMIN)
    with pytest.raises(ConfigError, match="has not finished"):
        handoff(ops, settings, study.id, actor=ADMIN)
    assert ops.get_setting("rollout.candidate") is None


def test_an_entity_file_that_changed_after_creation_is_refused_on_resume(ops, settings, tmp_path):
    f = tmp_path / "entities.json"
    f.write_text(json.dumps([{"name": f"Club {i}", "sport": "football", "country": "France"} for i in range(12)]))
    spec = _spec(entities=file_entity_spec(f), train_fraction=0.6, iterations=1)
    study = create_study(ops, spec, actor=ADMIN)
    f.write_text(json.dumps([{"name": f"Other {i}"} for i in range(12)]))
    with pytest.raises(ConfigError, match="changed since the study was created"):
        _run(ops, settings, study)


# --------------------------------------------------------------------------- the real worker


@pytest.mark.slow
def test_a_study_whose_worker_is_sigkilled_resumes_without_repeating_finished_trials(ops, settings):
    store = JobStore(ops)
    study = create_study(ops, _spec(iterations=8), actor=ADMIN)
    job = submit_study(ops, study, actor=ADMIN)
    store.request(job.id, Control.PAUSE, actor="t")  # the worker parks at its first checkpoint
    pid = launch_worker(settings, job.id)
    wait_for(store, job.id, until=lambda j: j.state is JobState.PAUSED, timeout_s=90)
    store.request(job.id, Control.RUN, actor="t")
    wait_for(store, job.id, until=lambda j: j.state is JobState.RUNNING, timeout_s=30, poll_s=0.02)
    wait_for(store, job.id, until=lambda j: len(list_trials(ops, study.id)) >= 2, timeout_s=60, poll_s=0.02)
    store.request(job.id, Control.PAUSE, actor="t")
    wait_for(store, job.id, until=lambda j: j.state is JobState.PAUSED, timeout_s=60)
    before = {t.number: t.finished_at for t in list_trials(ops, study.id)}
    assert 2 <= len(before) < 9, before
    os.kill(pid, signal.SIGKILL)
    wait_for(store, job.id, until=lambda j: not worker_liveness(j, time.time())[0], timeout_s=30)
    _, how = resume_job(store, settings, job.id, actor="t")
    assert "worker started" in how
    final = wait_for(store, job.id, until=lambda j: j.state.is_terminal(), timeout_s=120)
    assert final.state is JobState.SUCCEEDED, final.error
    trials = list_trials(ops, study.id)
    assert [t.number for t in trials] == list(range(9))
    assert {n: t.finished_at for n, t in ((t.number, t) for t in trials) if n in before} == before
    assert (
        get_study(ops, study.id).result["winner"]["holdout_score"]
        >= get_study(ops, study.id).result["base"]["holdout_score"]
    )
    for t in trials:  # no trial's runs were recorded twice
        assert count_events(ops, run_id=f"tuning-{study.id}-t{t.number}") == len(study.train_ids)


def test_an_entity_offset_gives_catalogue_entities_no_default_study_uses(ops):
    from engine.tuning.spec import build_workload

    first = build_workload(EntitySpec(n=40), 11).entity_ids
    fresh = build_workload(EntitySpec(n=40, offset=40), 11).entity_ids
    assert len(fresh) == 40 and set(first).isdisjoint(fresh)
    assert build_workload(EntitySpec(n=80), 11).entity_ids == first + fresh  # prefix-stable catalogue
    with pytest.raises(ConfigError, match="offset"):
        build_workload(EntitySpec(n=10, offset=-1), 11)


def test_sensitivity_sweep_separates_parameters_that_move_the_objective_from_ones_that_cannot():
    from engine.tuning.objective import catalogue_workload, sensitivity, sweep_values

    w = catalogue_workload(25, 7, 11)
    rows = {r.name: r for r in sensitivity(w, w.entity_ids, ["max_iterations", "cache_ttl_s"], points=3)}
    assert rows["cache_ttl_s"].spread == 0.0  # lives in the store: the objective cannot see it
    assert rows["max_iterations"].spread > 0.0
    assert rows["max_iterations"].values == sweep_values("max_iterations", ParameterConfig(), 3)
    assert ParameterConfig().max_iterations not in rows["max_iterations"].values
    assert list(rows) == ["max_iterations", "cache_ttl_s"]  # largest spread first


def test_a_grid_smaller_than_the_budget_ends_early_and_its_progress_reaches_the_end(ops, settings):
    # actionable_min_categories has 5 grid values; the default (2) is trial 0, so 4 search trials remain
    study = create_study(ops, _spec(method="grid", params=("actionable_min_categories",), iterations=20), actor=ADMIN)
    seen = []
    summary = _run(ops, settings, study, checkpoint=seen.append)
    trials = list_trials(ops, study.id)
    assert sorted(t.point["actionable_min_categories"] for t in trials) == [1, 2, 3, 4, 5]
    assert summary["grid_exhausted"]
    assert seen[-1].done == seen[-1].total and all(p.done <= p.total for p in seen[2:])


# --------------------------------------------------------------------------- replay evidence and labels


def _record_replay_and_labels(tmp_path, spec: StudySpec):
    """Record the current config's evidence over the study's entities, and the world's truth as labels."""
    from dataclasses import replace

    from engine.discovery.evidence import RecordingSource
    from engine.tuning.objective import run_entities
    from engine.tuning.spec import build_workload

    world = build_workload(spec.entities, spec.world_seed)
    rec = RecordingSource(world.source)
    run_entities(ParameterConfig(), replace(world, source=rec), world.entity_ids)
    replay = rec.save(tmp_path / "evidence.jsonl")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "entity_id,actionable\n" + "".join(f"{e},{str(world.truth(e)).lower()}\n" for e in world.entity_ids)
    )
    return replay, labels


def test_a_study_on_replayed_evidence_scored_by_labels_reproduces_the_world_score_of_the_recorded_config(
    ops, settings, tmp_path
):
    from engine.tuning.spec import evidence_ref, labels_ref

    world_study = create_study(ops, _spec(iterations=1), actor=ADMIN)
    _run(ops, settings, world_study)
    replay, labels = _record_replay_and_labels(tmp_path, world_study.spec)
    spec = _spec(iterations=1, evidence=evidence_ref("replay", replay=replay), labels=labels_ref(labels))
    study = create_study(ops, spec, actor=ADMIN)
    assert study.holdout_ids == world_study.holdout_ids
    _run(ops, settings, study)
    a, b = list_trials(ops, world_study.id)[0], list_trials(ops, study.id)[0]
    assert b.score == pytest.approx(a.score) and b.holdout_score == pytest.approx(a.holdout_score)
    assert b.result.errors == a.result.errors  # every hop of the recorded config was found in the replay
    again = get_study(ops, study.id)
    assert again.spec.evidence.kind == "replay" and again.spec.labels.path == str(labels.resolve())


def test_replay_without_labels_and_bad_labels_are_one_line_errors(ops, tmp_path):
    from engine.tuning.spec import evidence_ref, labels_ref, read_labels

    replay, labels = _record_replay_and_labels(tmp_path, _spec())
    with pytest.raises(ConfigError, match="no ground truth"):
        create_study(ops, _spec(evidence=evidence_ref("replay", replay=replay)), actor=ADMIN)
    with pytest.raises(ConfigError, match="needs a URL"):
        evidence_ref("http")
    with pytest.raises(ConfigError, match="does not exist"):
        evidence_ref("replay", replay=tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.csv"
    bad.write_text("entity_id,actionable\na,true\nb,maybe\n")
    with pytest.raises(ConfigError, match=r"line 3: actionable = 'maybe'"):
        labels_ref(bad)
    js = tmp_path / "labels.json"
    js.write_text(json.dumps([{"id": "a", "actionable": True}, {"entity_id": "b", "actionable": "no"}]))
    assert read_labels(js) == {"a": True, "b": False}
    other = tmp_path / "other.csv"
    other.write_text("entity_id,actionable\nnobody,true\n")
    with pytest.raises(ConfigError, match="labels none of the study's entities"):
        create_study(ops, _spec(evidence=evidence_ref("replay", replay=replay), labels=labels_ref(other)), actor=ADMIN)
    with ops.connect() as db:
        assert next(db.query("SELECT COUNT(*) AS n FROM tuning_studies"))["n"] == 0


def test_rescoring_keeps_each_holdout_entitys_score_and_progress_names_the_trial_being_rescored(ops, settings):
    study = create_study(ops, _spec(iterations=3, top_k=2), actor=ADMIN)
    seen = []
    summary = _run(ops, settings, study, checkpoint=seen.append)
    rescored = [t for t in list_trials(ops, study.id) if t.holdout_score is not None]
    assert rescored
    for t in rescored:
        scores = t.holdout_entity_scores
        assert scores is not None and set(scores) == set(study.holdout_ids)
        assert sum(scores.values()) / len(scores) == pytest.approx(t.holdout_score)
    # each re-scoring is announced before it runs, naming that trial; the last line names the winner
    lines = [p.message for p in seen if "hold-out" in p.message]
    announced = [int(m.split("re-scoring trial ")[1].split(" ")[0]) for m in lines if m.startswith("re-scoring")]
    assert announced == [t.number for t in sorted(rescored, key=lambda t: (t.number != 0, -(t.score or 0)))]
    winner = summary["winner"]["trial"]
    assert seen[-1].done == seen[-1].total
    assert seen[-1].message.startswith("finished:") and (
        f"trial {winner} won" in seen[-1].message or summary["winner_is_base"]
    )


def test_the_holdout_interval_of_a_study_rescored_before_entity_scores_were_kept_comes_from_its_events(ops, settings):
    study = create_study(ops, _spec(iterations=2), actor=ADMIN)
    _run(ops, settings, study)
    study = get_study(ops, study.id)
    kept = holdout_improvement(ops, study, list_trials(ops, study.id))
    assert kept is not None and kept.n == len(study.holdout_ids)
    assert kept.mean == pytest.approx(study.result["improvement_holdout"])
    with ops.transaction() as db:  # as a data dir written before the per-entity scores were kept
        for row in list(db.query("SELECT id, holdout_result FROM tuning_trials WHERE holdout_result IS NOT NULL")):
            data = json.loads(row["holdout_result"])
            data.pop("entity_scores")
            db.execute("UPDATE tuning_trials SET holdout_result = ? WHERE id = ?", [json.dumps(data), row["id"]])
    trials = list_trials(ops, study.id)
    assert all(t.holdout_entity_scores is None for t in trials)
    rebuilt = holdout_improvement(ops, study, trials)
    assert rebuilt is not None
    assert (rebuilt.mean, rebuilt.low, rebuilt.high, rebuilt.n) == pytest.approx(
        (kept.mean, kept.low, kept.high, kept.n)
    )
