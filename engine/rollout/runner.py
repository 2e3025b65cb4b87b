"""Running a rollout: the worker side of a rollout run, and the ``rollout`` job handler.

A run takes a candidate config (the *new* system with a ParameterConfig)
through the stages of its stage table (``data/stages.json``,
engine.rollout.stages) against the *old* system with the live config, on the
SAME entities (paired):

* **Cohorts.** Exposure is cumulative: each stage adds the entities not yet
  exposed in this run (10, then 90 more, then the rest), drawn by a seeded
  sample stratified by tier and template (engine.rollout.cohorts). ``entities=N``
  limits the population to a seeded stratified sample of N entities of the
  graph (stage sizes are capped at N; a stage left with nothing to add is
  skipped).
* **Snapshot.** Before a stage runs anything, the hypothesis state of its
  entities is snapshotted (GraphStore.snapshot) and stored with the stage row.
* **Pairs.** Each stage entity runs the old system in shadow (no writes; only
  for the stage's ``shadow_fraction``) and then the new system live, both from
  the same graph state, both through engine.discovery.runs.run_entities so each
  run is a metric event (``run_id`` = the discovery run id of the stage,
  ``stage_id`` = ``stage_key(run, stage)``).
* **Checkpoints.** After every batch (``batch_size`` of the stage) the batch's
  paired outcomes are written to ``rollout_entities`` in one transaction fenced
  by the worker's lease. A resumed run restores the not-yet-checkpointed
  entities of the stage from the snapshot (undoing a half-done batch whose
  checkpoint never landed) and continues with them: every entity exactly once,
  none skipped.
* **Verdict.** After every batch: engine.rollout.stats.measure over the stage's
  outcomes so far and engine.rollout.verdict.assess; every check writes a
  decision record (engine.rollout.records). FAILED -> automatic rollback
  (engine.rollout.rollback); at the end of the stage PASSED -> ``soaking``
  until the minimum duration (scaled by ``time_scale``) has passed, then
  automatic promotion (engine.rollout.control.promote_stage); INCONCLUSIVE ->
  ``inconclusive``, waiting for an approver to promote or roll back.
* **Executor.** ``--workers N`` / ``--scheduler ADDR`` (stored with the run,
  engine.jobs.executor) send each batch's entity runs, old and new, to a Dask
  cluster through ``run_entities(executor=..., evidence=<the run's spec>)``:
  the units are pure, this worker stays the coordinator (it alone writes the
  graph, the checkpoints and the events), and the outcomes are those of the
  same batch in this process. The worker starts the cluster for its first
  batch (a local one of N processes, or a connection to the scheduler),
  announces it for the console's cluster panel, and closes it when it stops
  processing: at a stage's end (a soaking stage holds no cluster), on pause,
  on a fault, on cancel and on exit.
* ``dry_run``: both systems in shadow, no snapshot, no graph writes, no
  assignment or live-config change.
* **Fencing.** Every write of the worker carries its job's lease token: the
  checkpoint transaction asserts the lease in SQLite, and the metric events of
  the batch are written in that same transaction (so events and checkpoints
  match one to one); graph writes (``apply_run``, the resume restore) go
  through ``GraphStore.fenced`` on the scope ``rollout:<run id>``, which the
  worker takes at the start of each attempt and a rollback takes over. A
  worker that was declared dead and wakes up changes nothing.
* **Faults are not verdicts.** A store, ops-database, evaluator or cluster
  outage (StoreUnavailable, EvidenceUnavailable, ExecutorUnavailable: a
  scheduler that cannot be reached, a unit lost with its workers) stops the batch without
  checkpointing it: the job pauses with the reason (``paused by a fault``)
  and the worker retries by itself with backoff (reopening the graph store,
  which restarts the embedded server), or at once when an operator resumes.
  The retry restores the stage's not-yet-checkpointed entities from the
  snapshot and runs them again, so every entity counts exactly once. A
  rollback interrupted by an outage (``rolling_back``) is finished by the
  retry as well, or by the next request.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

from engine.core.access import WORKER
from engine.core.errors import DiscoveryError, LeaseLost, StoreUnavailable, first_line
from engine.core.params import ParameterConfig
from engine.discovery.evidence import EvidenceUnavailable
from engine.discovery.limits import RunLimits, limit_source
from engine.discovery.runs import METRICS_LOG_NAME, load_contexts, make_source, run_entities
from engine.jobs.executor import ExecutorUnavailable, InProcessExecutor, announce, make_executor, withdraw
from engine.jobs.queue import Control, JobCancelled
from engine.monitoring.events import MetricEvent, record_events
from engine.monitoring.jsonlog import JsonlLog
from engine.rollout import notices
from engine.rollout.cohorts import CohortMember, derive_seed, next_cohort, shadow_subset, stratified_sample
from engine.rollout.control import FOUR_EYES_WAIT, four_eyes_rule, promote_stage
from engine.rollout.records import (
    RolloutError,
    discovery_run_id,
    dumps,
    insert_decision,
    read_outcomes,
    read_run,
    read_stages,
    run_evidence,
    run_executor,
    stage_config_from_dict,
    stage_key,
    verdict_record,
)
from engine.rollout.rollback import fence_scope, rollback
from engine.rollout.stages import StagePolicy
from engine.rollout.states import ACTIVE_RUN_STATES, RunState, StageState, rollback_interrupted
from engine.rollout.stats import PairedOutcome
from engine.rollout.status import rollout_status
from engine.rollout.verdict import Phase, Verdict, elapsed_days, promotion_gate
from engine.store.graph import Fence, GraphStore


class _Stop(Exception):
    """The run left the active states (rolled back, cancelled) under the worker: stop quietly."""


#: the longest a soaking / waiting worker sleeps before it looks at the run again
WAIT_POLL_S = 1.0
#: faults of the machinery: they pause the run, they are never an outcome of the candidate
INFRA_FAULTS: tuple[type[DiscoveryError], ...] = (StoreUnavailable, EvidenceUnavailable, ExecutorUnavailable)
#: first wait after a fault before the worker retries by itself; doubled per failed retry up to the max
FAULT_RETRY_S = 2.0
FAULT_RETRY_MAX_S = 60.0


class _Runner:
    """One attempt of a worker at one rollout run: creates, runs, checks and waits out its stages in order."""

    def __init__(self, ctx, graph, run_id: int):
        self.ctx = ctx
        self.ops = ctx.ops
        self.base_graph = graph  # unfenced: reads, snapshots and the rollback (which takes the fence over)
        self.fence = Fence(fence_scope(run_id), str(ctx.job.token))
        self.graph = graph.fenced(self.fence)  # the worker's own writes
        self.run_id = run_id
        with self.ops.connect() as db:
            self.run = read_run(db, run_id)
        self.cfg = stage_config_from_dict(json.loads(self.run["stage_config"]))
        self.stages: list[str] = json.loads(self.run["stages"])
        self.candidate = ParameterConfig.from_dict(json.loads(self.run["candidate"]), source="rollout candidate")
        self.baseline = ParameterConfig.from_dict(json.loads(self.run["baseline"]), source="rollout baseline")
        self.dry = bool(self.run["dry_run"])
        self.templates = {t.id: t for t in graph.list_templates()}
        self.evidence = run_evidence(self.run)
        self.limits = RunLimits.from_dict(json.loads(self.run["limits"])) if self.run.get("limits") else None
        source = make_source(self.evidence, templates=self.templates)
        self.source = limit_source(source, self.limits) if self.limits is not None else source
        self.log = JsonlLog.for_settings(graph.settings, METRICS_LOG_NAME)
        #: where the batches' entity runs happen; a Dask cluster is started for the first batch and closed when
        #: the worker stops processing (stage end, pause, fault, cancel, exit): a soaking stage holds no cluster
        self.executor_spec = run_executor(self.run)
        self.executor: Any = None
        self.restored_this_attempt: set[str] = set()
        #: a fault interrupted a batch: the stage's not-checkpointed entities are restored before going on
        self.after_fault = False
        #: metric events of the entities run since the last checkpoint (written with it)
        self.pending_events: list[MetricEvent] = []
        #: the checkpointed outcomes of the stage being processed, as in rollout_entities (read once per
        #: ``_process``, extended by each commit): a batch's verdict does not re-read every earlier one
        self.outcomes: dict[str, list[PairedOutcome]] = {}
        #: the wait before the next retry after a fault: doubles per fault up to the max, reset by a commit
        self.fault_delay = FAULT_RETRY_S

    # -- state
    def run_state(self) -> RunState:
        with self.ops.connect() as db:
            return RunState(read_run(db, self.run_id)["state"])

    def stage_row(self, name: str) -> dict | None:
        with self.ops.connect() as db:
            return read_stages(db, self.run_id).get(name)

    def _existing_stage_row(self, name: str) -> dict:
        """The row of a stage this worker has already created; a missing one means the run's rows were lost."""
        row = self.stage_row(name)
        if row is None:
            raise RolloutError(f"rollout {self.run_id}: stage {name!r} has no row although it was started")
        return row

    def _check_active(self) -> None:
        if not self.run_state().is_active():
            raise _Stop()

    # -- the run
    def execute(self) -> dict:
        try:
            while True:
                try:
                    self._run_stages()
                    break
                except INFRA_FAULTS as exc:
                    self._pause_for_fault(exc)
                except LeaseLost:
                    self._stop_if_taken_over()
                    raise
        except _Stop:
            pass
        final = rollout_status(self.ops, self.run_id, decisions=0)
        return {
            "run_id": self.run_id,
            "state": final.run.state if final.run else "?",
            "stages": {s.name: s.state for s in final.stages},
            "entities": final.progress[0],
        }

    def _run_stages(self) -> None:
        """Every stage from where the run stands (re-entrant: a retry after a fault starts here again)."""
        self._finish_interrupted_rollback()
        self._check_active()
        if not self.dry:
            self.base_graph.take_fence(self.fence.scope, self.fence.token)
        for name in self.stages:
            self._check_active()
            row = self._ensure_stage(name)
            while True:
                state = StageState(row["state"])
                if state is StageState.RUNNING:
                    self._process(name)
                elif state.can_promote():  # soaking or inconclusive: wait for the time or for a person
                    self.close_executor()
                    self._wait(name)
                elif state.is_done():
                    break
                else:
                    raise _Stop()
                row = self._existing_stage_row(name)
        self._complete_after_skip()

    def _finish_interrupted_rollback(self) -> None:
        """A rollback that an outage interrupted is finished by whoever comes next: this worker too."""
        with self.ops.connect() as db:
            run = read_run(db, self.run_id)
        if rollback_interrupted(run):
            rollback(
                self.ctx.settings,
                self.ops,
                self.run_id,
                WORKER,
                "finishing a rollback an outage interrupted",
                graph=self.base_graph,
                from_job=self.ctx.job.id,
            )
            raise _Stop()

    def _stop_if_taken_over(self) -> None:
        """The graph refused a write: if a rollback or a cancel took the run over, stop quietly."""
        try:
            if not self.run_state().is_active():
                raise _Stop()
        except StoreUnavailable:
            pass

    def _pause_for_fault(self, exc: DiscoveryError) -> None:
        """The machinery failed (not the candidate): pause with the reason, then retry by itself with backoff,
        or at once when an operator resumes. The batch in flight was not checkpointed, so nothing of it counts;
        the retry restores its entities from the snapshot and runs them again."""
        self.pending_events.clear()
        self.after_fault = True
        self.restored_this_attempt.clear()
        self.close_executor()  # the retry starts (or reaches) the cluster afresh
        what = (
            "evaluator"
            if isinstance(exc, EvidenceUnavailable)
            else "cluster"
            if isinstance(exc, ExecutorUnavailable)
            else "store"
        )
        reason = f"paused by a fault of the {what}, nothing of the batch counted: {first_line(exc)}"
        store, job = self.ctx.store, self.ctx.job
        delay = self.fault_delay
        # the next fault before a batch commits waits twice as long (a source that stays away is not hammered)
        self.fault_delay = min(FAULT_RETRY_MAX_S, self.fault_delay * 2)
        announced = audited = False
        while True:
            if not self.ctx.settings.data_dir.exists():
                raise exc  # the data dir itself is gone: nothing to wait for
            if not announced:
                try:
                    if store.pause_for_fault(job, reason) is Control.CANCEL:
                        raise JobCancelled(f"job {job.id} cancelled by an operator")
                    with self.ops.transaction() as db:
                        db.execute(
                            "UPDATE rollout_runs SET message = ?, updated_at = ? WHERE id = ?",
                            [reason, time.time(), self.run_id],
                        )
                        if not audited:
                            self.ops.audit(WORKER, "rollout.fault", f"run {self.run_id}", {"reason": reason}, db=db)
                    announced = audited = True
                except StoreUnavailable:
                    pass  # the operations database itself is away: keep trying
            end = time.monotonic() + delay
            resumed = False
            while time.monotonic() < end and not resumed:
                self.ctx.sleep(min(self.ctx.poll_s, max(0.0, end - time.monotonic())))
                try:
                    control = store.heartbeat(job, message=f"{reason}; retrying in {end - time.monotonic():.0f}s")
                    self._check_active()
                except StoreUnavailable:
                    continue
                if control is Control.CANCEL:
                    raise JobCancelled(f"job {job.id} cancelled by an operator")
                resumed = control is Control.RUN
            if self._store_is_back():
                try:
                    store.resume_after_fault(job)
                except StoreUnavailable:
                    delay = min(FAULT_RETRY_MAX_S, delay * 2)
                    continue
                return
            announced = False  # still away: pause again (an operator's resume may have lifted it) and wait longer
            delay = min(FAULT_RETRY_MAX_S, delay * 2)

    def _store_is_back(self) -> bool:
        """Reopen the graph store (this restarts a dead embedded server) and read the run: both answer."""
        try:
            fresh = GraphStore.open(self.ctx.settings)
        except StoreUnavailable:
            return False
        try:
            self.base_graph.close()
        except Exception:  # noqa: BLE001 - the old client's sockets are dead anyway
            pass
        self.base_graph = fresh
        self.graph = fresh.fenced(self.fence)
        try:
            self.run_state()
        except StoreUnavailable:
            return False
        return True

    def _complete_after_skip(self) -> None:
        """Every stage is done; when the last one was skipped (nothing left to expose) nobody promoted it:
        the run is complete (the live config changes only when the last stage of the table is promoted)."""
        now = time.time()
        with self.ops.transaction() as db:
            self.ctx.assert_lease(db)
            cur = db.execute(
                "UPDATE rollout_runs SET state = ?, finished_at = ?, updated_at = ?, message = ? "
                "WHERE id = ? AND state = ?",
                [
                    RunState.COMPLETED,
                    now,
                    now,
                    f"rollout complete ({self.stages[-1]} skipped: no entity left to expose)",
                    self.run_id,
                    RunState.RUNNING,
                ],
            )
            if cur.rowcount == 1:
                self.ops.audit(WORKER, "rollout.complete", f"run {self.run_id}", {"last_stage": "skipped"}, db=db)

    def _population(self) -> list[CohortMember]:
        members = [CohortMember(e.id, e.tier, e.template_id) for e in self.graph.list_entities()]
        limit = self.run["entity_limit"]
        if limit is not None and limit < len(members):
            keep = set(stratified_sample(members, limit, derive_seed(self.run["seed"], "population")))
            members = [m for m in members if m.entity_id in keep]
        return members

    def _exposed(self) -> set[str]:
        """Exposed before the next stage: this run's entities, plus (live runs) entities an earlier run of
        the same candidate left on the new system."""
        with self.ops.connect() as db:
            mine = {
                r["entity_id"]
                for r in db.query("SELECT entity_id FROM rollout_entities WHERE run_id = ?", [self.run_id])
            }
            for r in db.query("SELECT cohort FROM rollout_stages WHERE run_id = ?", [self.run_id]):
                mine.update(json.loads(r["cohort"]))
            if not self.dry:
                mine.update(
                    r["entity_id"]
                    for r in db.query(
                        "SELECT entity_id FROM entity_assignments WHERE system = 'new' AND config_hash = ?",
                        [self.run["candidate_hash"]],
                    )
                )
        return mine

    def _ensure_stage(self, name: str) -> dict:
        row = self.stage_row(name)
        if row is not None:
            return row
        policy = self.cfg.stage(name)
        population = self._population()
        target = policy.entities
        limit = self.run["entity_limit"]
        if limit is not None:
            target = min(target, limit) if target is not None else None
        cohort = next_cohort(population, self._exposed(), target, derive_seed(self.run["seed"], "stage", name))
        shadow = sorted(shadow_subset(cohort, policy.shadow_fraction, derive_seed(self.run["seed"], "shadow", name)))
        snapshot = None if self.dry or not cohort else self.graph.snapshot(cohort)
        now = time.time()
        state = StageState.RUNNING if cohort else StageState.SKIPPED
        with self.ops.transaction() as db:
            self.ctx.assert_lease(db)
            db.execute(
                """INSERT INTO rollout_stages (run_id, stage, idx, state, cohort, shadow, total, done, snapshot,
                   started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)""",
                [
                    self.run_id,
                    name,
                    self.stages.index(name),
                    state,
                    dumps(cohort),
                    dumps(shadow),
                    len(cohort),
                    dumps(snapshot) if snapshot is not None else None,
                    now,
                ],
            )
            db.execute(
                "UPDATE rollout_runs SET current_stage = ?, updated_at = ?, message = ? WHERE id = ?",
                [
                    name,
                    now,
                    f"{name}: {len(cohort)} entities" if cohort else f"{name}: nothing left to expose",
                    self.run_id,
                ],
            )
            if not cohort:
                insert_decision(
                    db,
                    self.run_id,
                    name,
                    at=now,
                    gate="stage_end",
                    action="skip",
                    phase="skipped",
                    actor=WORKER,
                    reason="no entity left to expose at this stage",
                    record={"exposed_before": len(self._exposed()), "target": target},
                )
        self.ctx.heartbeat(done=0, total=len(cohort), message=f"{name}: starting with {len(cohort)} entities")
        return self._existing_stage_row(name)

    # -- the executor
    def _executor(self) -> Any:
        """The Dask executor of this run's batches, started on first use (None: in this process)."""
        if self.executor_spec.kind == "in-process":
            return None
        if self.executor is None:
            self.ctx.heartbeat(message=f"starting the executor: {self.executor_spec.describe()}")
            self.executor = make_executor(self.executor_spec)  # ExecutorUnavailable: a fault of the cluster
            if not isinstance(self.executor, InProcessExecutor) and self.ctx.settings is not None:
                announce(self.ctx.settings.data_dir, self.ctx.job.id, self.executor, what=f"rollout {self.run_id}")
        return self.executor

    def close_executor(self) -> None:
        """Close the cluster (if one runs) and withdraw its announcement (the console's cluster panel)."""
        executor, self.executor = self.executor, None
        if executor is None:
            return
        try:
            if self.ctx.settings is not None:
                withdraw(self.ctx.settings.data_dir, self.ctx.job.id)
        finally:
            executor.close()

    def _between_batches(self, *, done: int, total: int, message: str) -> None:
        """Honour pause and cancel between batches (ctx.checkpoint); a paused stage holds no cluster."""
        if self.executor is not None and self.ctx.heartbeat(message=message) is Control.PAUSE:
            self.close_executor()
        self.ctx.checkpoint(done=done, total=total, message=message)

    def concurrency(self, policy: StagePolicy) -> int:
        """Entities in flight in this stage: the run's ``--concurrency``, else the stage table's setting."""
        return int(self.run.get("concurrency") or policy.concurrency)

    def _pairs(self, name: str, batch: list[str], shadow: set[str], progress: Callable[[int], None]) -> list[dict]:
        """Run the batch on both systems, many entities in flight (engine.discovery.runs.run_entities): the old
        system in shadow on the shadowed ones, then the new one (live unless a dry run), both from the graph
        state at the start of the batch; the batch's live runs are one graph write. A run of one system that
        fails on one entity (not the machinery) is that system's crash on that entity; a fault of the
        machinery propagates and nothing of the batch counts. Metric events wait in ``pending_events``."""
        stage_id = stage_key(self.run_id, name)
        in_flight = self.concurrency(self.cfg.stage(name))
        # on a cluster: the units get the run's evidence spec (each worker builds the source from it), the
        # coordinator keeps its own source for the ground truth; the results are those of this process
        executor = self._executor()
        common = functools.partial(
            run_entities,
            self.graph,
            self.ops,
            source=self.source,
            stage_id=stage_id,
            log=self.log,
            events_out=self.pending_events,
            concurrency=in_flight,
            batch_size=max(1, len(batch)),
            tick=progress,
            executor=executor,
            evidence=self.evidence if executor is not None else None,
        )
        new_errors: dict[str, DiscoveryError] = {}
        contexts = load_contexts(self.graph, batch, skip_unknown=new_errors)  # one read for both systems
        old_errors: dict[str, DiscoveryError] = {e: err for e, err in new_errors.items() if e in shadow}
        old_runs = common(
            [],
            contexts=[c for c in contexts if c.entity.id in shadow],
            system="old",
            params=self.baseline,
            shadow=True,
            run_id=discovery_run_id(self.run_id, name, "old"),
            errors=old_errors,
        )
        new_runs = common(
            [],
            contexts=contexts,
            system="new",
            params=self.candidate,
            shadow=self.dry,
            run_id=discovery_run_id(self.run_id, name, "new"),
            errors=new_errors,
        )
        olds = {r.entity_id: r for r in old_runs}
        news = {r.entity_id: r for r in new_runs}
        outcomes = []
        for entity_id in batch:
            old, new = olds.get(entity_id), news.get(entity_id)
            outcome = PairedOutcome(
                entity_id=entity_id,
                new_cost=float(new.cost_usd) if new else 0.0,
                new_actionable=bool(new.actionable) if new else False,
                new_hops=len(new.hops) if new else 0,
                new_errors=new.error_count if new else 0,
                new_engine_ms=float(new.engine_time_s) * 1000.0 if new else 0.0,
                new_crashed=new is None,
                old_cost=float(old.cost_usd) if old else None,
                old_actionable=bool(old.actionable) if old else None,
            ).to_dict()
            outcome.update(
                {
                    "new_stop": new.stop_reason if new else "",
                    "old_stop": old.stop_reason if old else "",
                    "new_error": str(new_errors[entity_id]) if entity_id in new_errors else None,
                    "old_error": str(old_errors[entity_id]) if entity_id in old_errors else None,
                    "shadowed": entity_id in shadow,
                    "new_evidence_latency_s": float(new.evidence_latency_s) if new else 0.0,
                }
            )
            outcomes.append(outcome)
        return outcomes

    def _process(self, name: str) -> None:
        policy = self.cfg.stage(name)
        self.outcomes.pop(name, None)  # read afresh from the checkpoints (a retry, a resumed attempt)
        row = self._existing_stage_row(name)
        cohort: list[str] = json.loads(row["cohort"])
        shadow = set(json.loads(row["shadow"]))
        with self.ops.connect() as db:
            done_ids = {
                r["entity_id"]
                for r in db.query(
                    "SELECT entity_id FROM rollout_entities WHERE run_id = ? AND stage = ?", [self.run_id, name]
                )
            }
            batch_no = next(
                iter(
                    db.query(
                        "SELECT COALESCE(MAX(batch) + 1, 0) AS b FROM rollout_entities WHERE run_id = ? AND stage = ?",
                        [self.run_id, name],
                    )
                )
            )["b"]
        remaining = [e for e in cohort if e not in done_ids]
        if (
            remaining
            and (self.ctx.attempt > 1 or self.after_fault)
            and not self.dry
            and row["snapshot"]
            and name not in self.restored_this_attempt
        ):
            # a killed worker (or a fault mid-batch) may have written live runs whose checkpoint never
            # landed: undo them, then redo
            snap = json.loads(row["snapshot"])
            self.graph.restore({**snap, "entities": {e: snap["entities"][e] for e in remaining}})
        self.restored_this_attempt.add(name)
        done = len(done_ids)
        total = len(cohort)
        for start in range(0, len(remaining), policy.batch_size):
            batch = remaining[start : start + policy.batch_size]
            # pause and cancel are honoured between batches; within one, a heartbeat a second keeps the lease
            self._between_batches(done=done, total=total, message=f"{name}: {done}/{total} entities")
            self._check_active()
            results = self._pairs(name, batch, shadow, self._beat(name, done, total, len(batch)))
            done = self._commit_batch(name, policy, results, batch_no, done, total)
            batch_no += 1
        self._stage_end(name, policy)

    def _beat(self, name: str, done: int, total: int, size: int) -> Callable[[int], None]:
        """The heartbeat of a batch in flight (about once a second, from the worker's own thread): liveness,
        progress "n of the batch under way", and a cancel (raised; the runs in flight finish first)."""

        def beat(finished: int) -> None:
            control = self.ctx.heartbeat(
                message=f"{name}: {done}/{total} entities; batch of {size} in flight ({min(finished, size)} run)"
            )
            if control is Control.CANCEL:
                raise JobCancelled(f"job {self.ctx.job.id} cancelled by an operator")

        return beat

    def _commit_batch(
        self, name: str, policy: StagePolicy, results: list[dict], batch_no: int, done: int, total: int
    ) -> int:
        if name not in self.outcomes:
            with self.ops.connect() as db:
                self.outcomes[name] = read_outcomes(db, self.run_id, name)
        before = self.outcomes[name]
        outcomes = before + [PairedOutcome.from_dict(r) for r in results]
        n = len(outcomes)
        final = n >= total
        verdict, record = verdict_record(self.run, policy, outcomes, final=False)
        now = time.time()
        failed = verdict.phase is Phase.FAILED
        with self.ops.transaction() as db:
            self.ctx.assert_lease(db)
            record_events(self.ops, self.pending_events, log=self.log, db=db)
            for i, r in enumerate(results):
                db.execute(
                    "INSERT INTO rollout_entities (run_id, entity_id, stage, seq, batch, at, attempt, outcome) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [self.run_id, r["entity_id"], name, len(before) + i, batch_no, now, self.ctx.attempt, dumps(r)],
                )
                if not self.dry:
                    db.execute(
                        "INSERT INTO entity_assignments (entity_id, system, config_hash, run_id, stage, updated_at) "
                        "VALUES (?, 'new', ?, ?, ?, ?) ON CONFLICT(entity_id) DO UPDATE SET system = 'new', "
                        "config_hash = excluded.config_hash, run_id = excluded.run_id, stage = excluded.stage, "
                        "updated_at = excluded.updated_at",
                        [r["entity_id"], self.run["candidate_hash"], self.run_id, name, now],
                    )
            db.execute(
                "UPDATE rollout_stages SET done = ?, completed_at = ? WHERE run_id = ? AND stage = ?",
                [n, now if final else None, self.run_id, name],
            )
            if not final or failed:  # the last batch's verdict is the stage-end gate (final=True)
                db.execute(
                    "UPDATE rollout_stages SET verdict = ? WHERE run_id = ? AND stage = ?",
                    [dumps(record), self.run_id, name],
                )
                insert_decision(
                    db,
                    self.run_id,
                    name,
                    at=now,
                    gate="check",
                    action="rollback" if failed else "continue",
                    phase=verdict.phase,
                    actor=WORKER,
                    reason=verdict.reason,
                    record=record,
                )
        self.pending_events.clear()
        self.outcomes[name] = outcomes  # committed: what rollout_entities now holds
        self.fault_delay = FAULT_RETRY_S  # the machinery works again
        self.ctx.heartbeat(done=n, total=total, message=f"{name}: {n}/{total} entities; {verdict.phase}")
        if failed:
            self._auto_rollback(name, verdict, record)
        return n

    def _auto_rollback(self, name: str, verdict: Verdict, record: dict) -> None:
        rollback(
            self.ctx.settings,
            self.ops,
            self.run_id,
            WORKER,
            f"{name}: rollback trigger breached: {verdict.reason}",
            graph=self.base_graph,
            from_job=self.ctx.job.id,
            trigger=record,
        )
        raise _Stop()

    def _stage_end(self, name: str, policy: StagePolicy) -> None:
        """Every entity is in: the final verdict decides soak (pass), wait for a person (inconclusive) or roll back."""
        row = self.stage_row(name)
        if row is None or row["state"] != StageState.RUNNING:
            return
        with self.ops.connect() as db:
            outcomes = read_outcomes(db, self.run_id, name)
        if len(outcomes) < row["total"]:
            return
        verdict, record = verdict_record(self.run, policy, outcomes, final=True)
        now = time.time()
        days = elapsed_days(row["started_at"], now, self.run["time_scale"])
        record.update(
            {"elapsed_days": days, "min_duration_days": policy.min_duration_days, "time_scale": self.run["time_scale"]}
        )
        if verdict.phase is Phase.FAILED:
            action, new_state = "rollback", None
        elif verdict.phase is Phase.PASSED:
            action, new_state = "soak", StageState.SOAKING
        else:
            action, new_state = "await_operator", StageState.INCONCLUSIVE
        with self.ops.transaction() as db:
            self.ctx.assert_lease(db)
            db.execute(
                "UPDATE rollout_stages SET verdict = ?, completed_at = COALESCE(completed_at, ?) "
                "WHERE run_id = ? AND stage = ?",
                [dumps(record), now, self.run_id, name],
            )
            insert_decision(
                db,
                self.run_id,
                name,
                at=now,
                gate="stage_end",
                action=action,
                phase=verdict.phase,
                actor=WORKER,
                reason=verdict.reason,
                record=record,
            )
            if new_state is not None:
                db.execute(
                    "UPDATE rollout_stages SET state = ? WHERE run_id = ? AND stage = ? AND state = ?",
                    [new_state, self.run_id, name, StageState.RUNNING],
                )
                msg = (
                    f"{name} passed; soaking until {policy.min_duration_days:g} days have passed"
                    if new_state == StageState.SOAKING
                    else f"{name} inconclusive: {verdict.reason}; waiting for an approver to promote or roll back"
                )
                db.execute(
                    f"UPDATE rollout_runs SET state = ?, updated_at = ?, message = ? WHERE id = ? "
                    f"AND state IN ({','.join('?' * len(ACTIVE_RUN_STATES))})",
                    [
                        RunState.SOAKING if new_state == StageState.SOAKING else RunState.INCONCLUSIVE,
                        now,
                        msg,
                        self.run_id,
                        *ACTIVE_RUN_STATES,
                    ],
                )
                notices.stage_end(db, self.run, name, record, passed=new_state == StageState.SOAKING, at=now)
        if verdict.phase is Phase.FAILED:
            self._auto_rollback(name, verdict, record)

    def _wait(self, name: str) -> None:
        """Soak until the minimum duration has passed (then promote), or wait for an operator's decision."""
        policy = self.cfg.stage(name)
        while True:
            self._check_active()
            row = self.stage_row(name)
            if row is None or not StageState(row["state"]).can_promote():
                return
            now = time.time()
            days = elapsed_days(row["started_at"], now, self.run["time_scale"])
            if row["state"] == StageState.SOAKING:
                phase = Phase(json.loads(row["verdict"])["verdict"]["phase"])
                gate = promotion_gate(phase, days, policy.min_duration_days, force=False, operator=False)
                if gate.allowed:
                    with self.ops.connect() as db:
                        run = read_run(db, self.run_id)
                    rule = four_eyes_rule(run, name)
                    if rule is not None:  # a person other than the starter promotes it; the worker only waits
                        self._await_second_approver(name, rule)
                        continue
                    promote_stage(
                        self.ops,
                        run,
                        name,
                        actor=WORKER,
                        operator=False,
                        force=False,
                        gate_reason=gate.reason,
                        days=days,
                        now=now,
                    )
                    continue
                left_s = (policy.min_duration_days - days) * 86400.0 / self.run["time_scale"]
                self.ctx.wait(
                    max(0.05, min(WAIT_POLL_S, left_s)),
                    message=f"{name}: soaking, {days:.2f} of {policy.min_duration_days:g} days",
                )
            else:
                self.ctx.wait(WAIT_POLL_S, message=f"{name}: inconclusive, waiting for an approver")

    def _await_second_approver(self, name: str, rule: str) -> None:
        """A passed stage that has soaked but needs four-eyes: say so on the run (once) and wait for a person."""
        message = f"{name} passed and soaked; {FOUR_EYES_WAIT}: {rule}"
        with self.ops.transaction() as db:
            self.ctx.assert_lease(db)
            db.execute(
                f"UPDATE rollout_runs SET message = ?, updated_at = ? WHERE id = ? AND message != ? "
                f"AND state IN ({','.join('?' * len(ACTIVE_RUN_STATES))})",
                [message, time.time(), self.run_id, message, *ACTIVE_RUN_STATES],
            )
        self.ctx.wait(WAIT_POLL_S, message=f"{name}: {FOUR_EYES_WAIT}")


def run_rollout_job(ctx) -> dict:
    """Job handler of kind ``rollout`` (engine.jobs.queue.JOB_KINDS): runs (or resumes) one rollout run."""
    if ctx.settings is None:
        raise RolloutError("a rollout job needs settings (run it with `python -m engine worker --job ID`)")
    runner = _Runner(ctx, GraphStore.open(ctx.settings), int(ctx.params["run_id"]))
    try:
        return runner.execute()
    finally:
        runner.close_executor()
        runner.base_graph.close()
        close = getattr(runner.source, "close", None)
        if callable(close):
            close()  # an HTTP evaluator's pooled connections
