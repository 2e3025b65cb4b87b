"""Running a tuning study: the trial loop, hold-out re-scoring, resume after a crash, and the study's job.

**Trials.** Trial 0 is the base config (the config current at creation).
Trials 1..N are proposed by the sampler, one at a time; each is evaluated with
``engine.tuning.objective`` on the training entities and stored the moment it
finishes (a failed trial is kept with its error; the sampler is told it
failed). The runner checkpoints between trials (heartbeat, pause, cancel).
When the search is done, trial 0 and the ``top_k`` best search trials are
re-scored on the hold-out entities and the winner is picked
(``engine.tuning.outputs.summarize``).

**Trials in parallel.** ``spec.workers`` trials run at once on an executor
(``engine.jobs.executor``: a local Dask cluster of that many processes, or a
running cluster); this process stays the coordinator (it alone stores trials,
records metric events, checkpoints). A trial is a pure unit (``trial_runs``:
spec, config and entity ids in, the runs out), so a Dask worker that dies has
its units re-run elsewhere and each result still arrives here once. Grid and
random points do not depend on earlier trials: all are handed out at once,
trial 0 with them, whatever the number of workers (one worker runs the next
trial while this process stores the last; two do not wait on trial 0 alone).
Bayesian trials go in batches of ``workers`` points asked together by
scikit-optimize's constant liar (``BayesianSampler.ask_batch``), stored as
each finishes and told in trial order when the batch is in, so the same seed
and the same parallelism give the same study (one trial in flight is exactly
the serial study).

**Resume.** A study is a job of kind ``tuning`` (``engine.jobs.queue``;
handler ``run_tuning_job``). A worker that is killed loses at most the trial
it was evaluating: on resume the runner reads the finished trials, rebuilds
the sampler and *tells* it every finished trial (Bayesian: a fresh
scikit-optimize Optimizer re-told all points; random: the i-th draw is a
function of (seed, i); grid: told points are skipped), and continues with the
next trial number. Trial numbers are unique per study in the table, so no
finished trial is run twice.

**Every run is recorded.** Each trial's runs (shadow runs of the new system)
go through ``engine.monitoring.events.record_events`` (fenced by the job lease) with ``stage_id =
"tuning-<study>"`` and ``run_id = "tuning-<study>-t<trial>[-holdout]"``
(skipped when that run id is already recorded, so a resumed trial is not
counted twice). The events go to the metric_events table like every run's;
their JSONL lines go to ``logs/tuning-metrics.jsonl``, so a study's tens of
thousands of lines do not rotate the live system's ``metrics.jsonl`` away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.core.access import Actor
from engine.core.errors import ConfigError, DiscoveryError
from engine.core.model import RunResult
from engine.core.params import ParameterConfig

# launch_worker is looked up on the module when called, as resume_job's own call to it is, so one
# substitute (tests start no real worker) replaces both
from engine.jobs import queue as job_queue
from engine.jobs.executor import ExecutorSpec, InProcessExecutor, UnitDone, announce, make_executor, withdraw
from engine.jobs.queue import Control, JobState, JobStore, resume_job
from engine.monitoring.events import TABLE as EVENTS_TABLE
from engine.monitoring.events import MetricEvent, events_of_runs, record_events
from engine.monitoring.jsonlog import JsonlLog
from engine.store.access import authorize
from engine.tuning.objective import ObjectiveResult, Workload, entity_scores, run_entities, score_results
from engine.tuning.outputs import summarize, write_outputs
from engine.tuning.samplers import BayesianSampler, GridSampler, make_sampler
from engine.tuning.space import search_space
from engine.tuning.spec import StudySpec, spec_to_json, workload_for
from engine.tuning.store import (
    Clock,
    Study,
    attach_job,
    create_study,
    finish_study,
    get_study,
    insert_trial,
    list_trials,
    set_holdout,
)

JOB_KIND = "tuning"
#: a study writes one metric event per entity per trial (tens of thousands): its JSONL lines go to their
#: own rotating log so they never rotate the live system's metrics.jsonl away (SQLite keeps all events)
METRICS_LOG_NAME = "tuning-metrics.jsonl"


@dataclass(frozen=True)
class Progress:
    """What the runner reports at each checkpoint (done/total counts every evaluation:
    the trials, then the hold-out re-scorings)."""

    done: int
    total: int
    message: str


class StudyRunner:
    """Runs (or resumes) one study to the end. ``checkpoint(Progress)`` is called between
    evaluations (the job context's checkpoint: heartbeat, pause, cancel); ``fence(db)`` is
    called inside every trial write (the job lease)."""

    def __init__(
        self,
        ops,
        study: Study,
        *,
        settings=None,
        checkpoint: Callable[[Progress], None] | None = None,
        fence: Callable[[Any], None] | None = None,
        clock: Clock = time.time,
        log=None,
        record_metrics: bool = True,
        timer: Callable[[], float] = time.perf_counter,
        executor=None,
    ):
        self.ops = ops
        #: where trials run (engine.jobs.executor); the runner stays the one that writes
        self.executor = executor or InProcessExecutor()
        self.study = study
        self.settings = settings
        self.checkpoint = checkpoint or (lambda p: None)
        self.fence = fence
        self.clock = clock
        self.timer = timer
        self.record_metrics = record_metrics
        self._log = log
        self._workload: Workload | None = None

    # -- pieces
    @property
    def workload(self) -> Workload:
        if self._workload is None:
            w = workload_for(self.study.spec)
            missing = [e for e in (*self.study.train_ids, *self.study.holdout_ids) if e not in w.entities]
            if missing:
                raise ConfigError(
                    f"study {self.study.id}: {len(missing)} of its entities (e.g. {missing[0]!r}) are not in "
                    f"{w.description}; the entity set changed since the study was created"
                )
            self._workload = w
        return self._workload

    def _metrics_log(self):
        if self._log is None and self.settings is not None:
            self._log = JsonlLog.for_settings(self.settings, name=METRICS_LOG_NAME)
        return self._log

    def _record(self, events: Sequence[MetricEvent], run_id: str) -> None:
        """The evaluation's metric events, stamped now, once per run id, in one transaction fenced by the
        job's lease (a worker declared dead records nothing)."""
        if not self.record_metrics:
            return
        log = self._metrics_log()
        if log is None:
            return
        at = float(self.clock())
        stamped = [replace(e, at=at) for e in events]
        with self.ops.transaction() as db:
            if self.fence is not None:
                self.fence(db)
            if db.conn.execute(f"SELECT 1 FROM {EVENTS_TABLE} WHERE run_id = ? LIMIT 1", [run_id]).fetchone():
                return
            record_events(self.ops, stamped, log=log, db=db)

    def evaluate(self, config: ParameterConfig, entity_ids: Sequence[str], run_id: str) -> ObjectiveResult:
        return self.evaluate_per_entity(config, entity_ids, run_id)[0]

    def evaluate_per_entity(
        self, config: ParameterConfig, entity_ids: Sequence[str], run_id: str
    ) -> tuple[ObjectiveResult, dict[str, float]]:
        """The score and each entity's own score (the hold-out re-scoring keeps both)."""
        self.workload  # noqa: B018 - refuses a study whose entity set changed, before anything runs
        return self.scored(trial_runs(*self._unit(config, entity_ids, run_id)), run_id)

    def scored(self, runs: TrialRuns, run_id: str) -> tuple[ObjectiveResult, dict[str, float]]:
        """Record a finished unit's metric events (once per run id) and score its runs."""
        self._record(runs.events, run_id)
        rewards = self.study.spec.rewards
        truth = self.workload.truth
        return score_results(runs.results, truth, rewards), entity_scores(runs.results, truth, rewards)

    def _unit(self, config: ParameterConfig, entity_ids: Sequence[str], run_id: str) -> tuple:
        """The arguments of ``trial_runs`` for one evaluation (plain data: it may run on another machine)."""
        return (self.study.spec, config, tuple(entity_ids), run_id, self.study.stage_id)

    def _total_evaluations(self) -> int:
        return self.study.total_trials + self.study.spec.top_k + 1

    # -- the run
    def run(self) -> dict:
        study = self.study
        spec = study.spec
        base = study.base_config
        space = search_space(spec.params, base)
        trials = list_trials(self.ops, study.id)
        total = self._total_evaluations()
        done = len(trials)
        self.checkpoint(Progress(done, total, f"resuming after {done} finished trial(s)" if done else "starting"))

        base_point = {n: getattr(base, n) for n in spec.params}
        sampler = make_sampler(spec.method, space, budget=spec.iterations, seed=spec.seed)
        adaptive = isinstance(sampler, BayesianSampler)  # its points depend on the losses told; grid, random not
        if adaptive and not any(t.number == 0 for t in trials):
            self._run_trial(0, base_point, base)
            trials = list_trials(self.ops, study.id)
            self.checkpoint(Progress(len(trials), total, "trial 0 (current config) done"))

        # every finished trial, trial 0 included (it tells the model where the current config stands)
        sampler.replay((t.point, -t.training_score if t.complete else None) for t in trials)
        finished = {t.number for t in trials}
        # a resumed study fills the trials its last batch left unfinished first, then goes on
        todo = [n for n in range(1, spec.iterations + 1) if n not in finished]
        # grid and random: trial 0 goes out with the others (no idle worker while it runs alone). Its point is
        # known now; telling it to the sampler first is what running it first did (a grid skips the point)
        first = [] if 0 in finished else [0]
        if first:
            sampler.tell(base_point, None)
        if isinstance(sampler, GridSampler):  # a grid smaller than the budget ends early: say so in the total
            total = len(trials) + len(first) + min(len(todo), sampler.remaining()) + spec.top_k + 1
        exhausted = False
        # grid and random points do not depend on the trials told: every trial left goes to the executor at
        # once (its workers bound what runs; one worker computes the next trial while this process stores the
        # last); a Bayesian batch is the trials in flight, told before the next
        in_flight = max(1, spec.workers) if adaptive else max(1, len(todo))
        while todo or first:
            numbers = todo[:in_flight]
            points = sampler.ask_batch(numbers)
            if len(points) < len(numbers):
                numbers = numbers[: len(points)]
                exhausted = True
            if not numbers and not first:
                break
            losses = self._run_batch(
                first + numbers, [base_point] * len(first) + points, total, configs={0: base} if first else None
            )
            # told in trial order once the batch is in: the same seed and parallelism give the same study
            for point, number in zip(points, numbers):
                sampler.tell(point, losses[number])
            todo, first = todo[len(numbers) :], []
            if exhausted:
                break
        return self._finish(exhausted)

    def _run_trial(self, number: int, point: Mapping[str, Any], config: ParameterConfig | None) -> float | None:
        return self._run_batch([number], [point], None, configs={number: config} if config is not None else None)[
            number
        ]

    def _run_batch(
        self,
        numbers: Sequence[int],
        points: Sequence[Mapping[str, Any]],
        total: int | None,
        *,
        configs: Mapping[int, ParameterConfig] | None = None,
    ) -> dict[int, float | None]:
        """Evaluate trials ``numbers`` at once on the executor; each is stored the moment it finishes (once:
        a unit's result arrives once, whichever worker ran it). Returns each trial's loss (None: failed)."""
        started = self.clock()
        losses: dict[int, float | None] = {}
        units: list[tuple] = []
        unit_trial: list[tuple[int, Mapping[str, Any], ParameterConfig]] = []
        for number, point in zip(numbers, points):
            try:
                config = (configs or {}).get(number) or self.study.base_config.with_changes(**point)
            except ConfigError as exc:  # an invalid combination (cross-field rule): a failed trial, kept
                losses[number] = self._store_trial(number, point, None, None, str(exc), started)
                continue
            units.append(self._unit(config, self.study.train_ids, f"tuning-{self.study.id}-t{number}"))
            unit_trial.append((number, point, config))

        def tick() -> None:
            self.checkpoint(Progress(len(list_trials(self.ops, self.study.id)), total or 0, self._waiting(numbers)))

        for done in self.executor.run(trial_runs, units, tick=tick if total is not None else None):
            number, point, config = unit_trial[done.index]
            result, error = self._outcome(done, f"tuning-{self.study.id}-t{number}")
            losses[number] = self._store_trial(number, point, config, result, error, started)
            if total is not None:
                self.checkpoint(self._progress_after(number, total))
        return losses

    def _outcome(self, done: UnitDone, run_id: str) -> tuple[ObjectiveResult | None, str | None]:
        if done.error is None:
            return self.scored(done.value, run_id)[0], None
        if isinstance(done.error, ConfigError):
            return None, str(done.error)
        if isinstance(done.error, DiscoveryError):  # the evidence source failed: kept with its error
            return None, f"{type(done.error).__name__}: {done.error}"
        raise done.error

    def _store_trial(
        self,
        number: int,
        point: Mapping[str, Any],
        config: ParameterConfig | None,
        result: ObjectiveResult | None,
        error: str | None,
        started: float,
    ) -> float | None:
        insert_trial(
            self.ops,
            self.study,
            number,
            point=point,
            config=config,
            result=result,
            error=error,
            started=started,
            finished=self.clock(),
            fence=self.fence,
        )
        return -result.score if result is not None else None

    def _waiting(self, numbers: Sequence[int]) -> str:
        which = ", ".join(str(n) for n in numbers)
        return f"trial(s) {which} running ({self.executor.spec.describe()})"

    def _progress_after(self, number: int, total: int) -> Progress:
        trials = list_trials(self.ops, self.study.id)
        best = max((t.training_score for t in trials if t.complete), default=None)
        spec = self.study.spec
        return Progress(
            len(trials),
            total,
            f"trial {number}/{spec.iterations} done; best training score {best:.4f}"
            if best is not None
            else f"trial {number}/{spec.iterations} done",
        )

    def _finish(self, grid_exhausted: bool) -> dict:
        study = self.study
        trials = list_trials(self.ops, study.id)
        complete = [t for t in trials if t.complete]
        if not any(t.number == 0 and t.complete for t in trials):
            raise ConfigError(f"study {study.id}: trial 0 (the current config) failed: {trials[0].error}")
        ranked = sorted((t for t in complete if t.number > 0), key=lambda t: (-t.training_score, t.number))
        chosen = [t for t in complete if t.number == 0] + ranked[: study.spec.top_k]
        base_done = len(trials)
        total = base_done + len(chosen)
        todo = [t for t in chosen if t.holdout_score is None]
        # said before the work, naming the trial(s) being re-scored: a message read after the step
        # ("re-scoring 4/4 (trial 1)") was taken for the winner's
        first = chosen.index(todo[0]) if todo else len(chosen)
        if todo:
            self.checkpoint(Progress(base_done + first, total, holdout_message(first, len(chosen), todo[0].number)))
        units = [self._unit(t.trial_config, study.holdout_ids, f"tuning-{study.id}-t{t.number}-holdout") for t in todo]
        finished = first

        def tick() -> None:
            self.checkpoint(Progress(base_done + finished, total, "re-scoring on the hold-out entities"))

        for done in self.executor.run(trial_runs, units, tick=tick):
            t = todo[done.index]
            if done.error is not None:
                raise done.error
            res, per_entity = self.scored(done.value, f"tuning-{study.id}-t{t.number}-holdout")
            set_holdout(self.ops, study, t.number, res, self.fence, per_entity)
            finished += 1
            if finished < len(chosen):
                nxt = chosen[finished].number
                self.checkpoint(Progress(base_done + finished, total, holdout_message(finished, len(chosen), nxt)))
        summary = summarize(study, list_trials(self.ops, study.id), grid_exhausted=grid_exhausted)
        self.checkpoint(Progress(total, total, finished_message(summary)))
        write_outputs(self.ops, study, summary, self.settings)
        finish_study(self.ops, study, summary, finished_at=self.clock(), fence=self.fence)
        return summary


# --------------------------------------------------------------------------- the unit of work


#: the module of the trials' unit (``trial_runs``): a local cluster's fork server imports it once for all workers
UNIT_MODULE = __name__

#: workloads built in this process (a Dask worker keeps the few studies it serves; the catalogue and the
#: world are rebuilt from the spec, never shipped)
_WORKLOADS: dict[str, Workload] = {}
_WORKLOADS_KEPT = 4


@dataclass(frozen=True)
class TrialRuns:
    """What one evaluation sends back to the coordinator: each run without its hop trail and outcomes (the
    score needs only its totals; a trail is the bulk of a run and would cross the network for nothing), and
    the runs' metric events, complete (stamped when the coordinator records them)."""

    results: tuple[RunResult, ...]
    events: tuple[MetricEvent, ...]


def trial_runs(
    spec: StudySpec, config: ParameterConfig, entity_ids: Sequence[str], run_id: str, stage_id: str
) -> TrialRuns:
    """One evaluation, pure: the new system in shadow over ``entity_ids`` of the study's workload with
    ``config``. Runs wherever the executor puts it (this process or a Dask worker): the workload is built
    from the spec there (the world from its seed, a replay or entity file from its shared path, checked by
    sha256; an HTTP evaluator from its URL)."""
    key = spec_to_json(spec)
    workload = _WORKLOADS.get(key)
    if workload is None:
        workload = workload_for(spec)
        if len(_WORKLOADS) >= _WORKLOADS_KEPT:
            _WORKLOADS.pop(next(iter(_WORKLOADS)))
        _WORKLOADS[key] = workload
    results = run_entities(config, workload, entity_ids)
    names = {r.entity_id: workload.entities[r.entity_id].name for r in results}
    events = events_of_runs(results, run_id=run_id, stage_id=stage_id, truth=workload.truth, at=0.0, names=names)
    return TrialRuns(tuple(replace(r, hops=(), outcomes=()) for r in results), tuple(events))


def holdout_message(index: int, count: int, trial: int) -> str:
    """The progress line while trial ``trial`` is re-scored, the ``index``-th (0-based) of ``count``."""
    return f"re-scoring trial {trial} on the hold-out entities ({index + 1} of {count} re-scored trials)"


def finished_message(summary: Mapping[str, Any]) -> str:
    """The study's last progress line: which trial won (never the last trial that was re-scored)."""
    winner = summary["winner"]["trial"]
    if summary["winner_is_base"]:
        return "finished: the current config (trial 0) won on the hold-out entities"
    return f"finished: trial {winner} won on the hold-out entities"


# --------------------------------------------------------------------------- the study's job


def submit_study(ops, study: Study, *, actor: Actor, executor: ExecutorSpec | None = None):
    """Queue the study's job and link it to the study (operator). Returns the Job. ``executor``: where its
    trials run (a running cluster's address is kept with the job, so a resume uses it again)."""
    who = authorize(ops, actor, "tuning.start")
    params: dict[str, Any] = {"study_id": study.id}
    if executor is not None and executor.kind != "in-process":
        params["executor"] = executor.to_dict()
    job = JobStore(ops).submit(JOB_KIND, params, actor=str(who))
    attach_job(ops, study.id, job.id)
    return job


def run_tuning_job(ctx) -> dict:
    """Job handler (kind ``tuning``): run or resume the study in ``ctx.params['study_id']``."""
    study = get_study(ctx.ops, int(ctx.params["study_id"]))

    def checkpoint(p: Progress) -> None:
        ctx.checkpoint(done=p.done, total=p.total, message=p.message)

    spec = ExecutorSpec.from_dict({**dict(ctx.params.get("executor") or {}), "workers": study.spec.workers})
    if spec.kind != "in-process":
        ctx.checkpoint(message=f"starting the executor: {spec.describe()}")
    with make_executor(spec, preload=(UNIT_MODULE,)) as executor:
        if not isinstance(executor, InProcessExecutor) and ctx.settings is not None:
            announce(ctx.settings.data_dir, ctx.job.id, executor, what=f"tuning study {study.id}")
        try:
            runner = StudyRunner(
                ctx.ops,
                study,
                settings=ctx.settings,
                checkpoint=checkpoint,
                fence=ctx.assert_lease,
                clock=ctx.clock,
                executor=executor,
            )
            summary = runner.run()
        finally:
            if ctx.settings is not None:
                withdraw(ctx.settings.data_dir, ctx.job.id)
    return {
        "study_id": study.id,
        "winner": summary["winner"],
        "base": summary["base"],
        "improvement_holdout": summary["improvement_holdout"],
    }


def study_state(ops, study: Study) -> str:
    """finished, or the state of its job (queued, running, paused, failed, cancelled, dead), or 'created'."""
    if study.finished_at is not None:
        return "finished"
    if study.job_id is None:
        return "created"
    return str(JobStore(ops).get(study.job_id).state)


def cancel_study(ops, study_id: int, *, actor: Actor):
    """Ask the study's worker to stop at its next checkpoint (operator; a queued study is cancelled at once)."""
    who = authorize(ops, actor, "tuning.cancel")
    study = get_study(ops, study_id)
    if study.job_id is None:
        raise ConfigError(f"study {study_id} was never started: nothing to cancel")
    if study.finished_at is not None:
        raise ConfigError(f"study {study_id} already finished: nothing to cancel")
    job = JobStore(ops).request(study.job_id, Control.CANCEL, actor=str(who))
    ops.audit(who, "tuning.cancel", f"study:{study_id}", {"job": study.job_id})
    return job


def resume_study(ops, settings, study_id: int, *, actor: Actor, launch: bool = True):
    """Resume a dead, failed, paused or cancelled study from its finished trials (operator)."""
    who = authorize(ops, actor, "tuning.resume")
    study = get_study(ops, study_id)
    if study.finished_at is not None:
        raise ConfigError(f"study {study_id} already finished: nothing to resume")
    store = JobStore(ops)
    if study.job_id is not None and store.get(study.job_id).state is not JobState.CANCELLED:
        job, how = resume_job(store, settings, study.job_id, actor=str(who), launch=launch)
    else:  # never started or cancelled: a new job continues from the finished trials, on the same executor
        before = store.get(study.job_id).params.get("executor") if study.job_id is not None else None
        executor = ExecutorSpec.from_dict({**dict(before or {}), "workers": study.spec.workers})
        job = submit_study(ops, study, actor=who, executor=executor)
        how = "queued"
        if launch:
            how = f"worker started (pid {job_queue.launch_worker(settings, job.id)})"
    ops.audit(who, "tuning.resume", f"study:{study_id}", {"job": job.id})
    return job, how


def start_study(
    ops,
    settings,
    spec: StudySpec,
    *,
    actor: Actor,
    launch: bool = True,
    base_config: ParameterConfig | None = None,
    scheduler: str | None = None,
):
    """Create the study, queue its job and (``launch``) start a detached worker. Returns (study, job, pid).
    ``spec.workers`` > 1 runs that many trials at once on a local Dask cluster, or on the running cluster at
    ``scheduler`` (engine.jobs.executor). Operator."""
    who = authorize(ops, actor, "tuning.start")
    executor = ExecutorSpec(workers=spec.workers, scheduler=scheduler)
    study = create_study(ops, spec, actor=who, base_config=base_config)
    job = submit_study(ops, study, actor=who, executor=executor)
    pid = job_queue.launch_worker(settings, job.id) if launch else None
    return get_study(ops, study.id), job, pid
