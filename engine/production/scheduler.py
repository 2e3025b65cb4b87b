"""The production scheduler: a long-running job that keeps discovery running over the catalogue.

Batch after batch it:

1. **plans** (engine.production.policy): reads every entity's hypotheses once (then only the entities
   it visited, and everything again every ``FULL_REFRESH_BATCHES`` batches), scores each by the EIG of
   its best ACTIVE hypothesis (engine.discovery.eig, with the config that entity runs) per expected
   dollar, and orders the due ones: new first, then overdue, then due;
2. **admits** the first entities of the plan whose per-entity cost caps fit in what is left of the
   day's budget (engine.production.budget), at most ``batch_size``; nothing fits -> it waits for the
   next UTC day; nothing due -> it waits until something is;
3. **reserves** (one transaction fenced by its lease): the batch row with its entities, the
   reservation and a snapshot of their hypotheses, after checking the day's spend again inside the
   transaction;
4. **runs** the batch through engine.discovery.runs.run_entities with the *live assignments*: an
   entity a rollout exposed runs that rollout's system and candidate config (engine.rollout.records
   ``assigned_systems``) and its metric event carries the rollout's stage key while the rollout is
   active, every other entity runs the old system with the live config (engine.core.configs
   ``live_config``) and its event carries ``stage_id = "production"``; the evidence source is wrapped
   in ``BudgetedSource`` (each hop's quote checked against the reservation before it is bought);
   the entities of a stage an active rollout is still running are left to the rollout;
5. **settles** (one transaction fenced by its lease): the batch's metric events, one visit row per
   entity, and the batch's real spend in place of its reservation.

Guarantees, as a rollout's (engine.rollout.runner):

* **Pause, resume, cancel** are the job's controls, honoured between batches (a heartbeat a second
  during one; a cancel mid-batch lets the runs in flight finish and writes nothing of the batch).
* **A worker killed mid-batch changes nothing half-written.** Its batch stays ``reserved``; the next
  attempt (or the next scheduler) finds it, restores its entities' hypotheses from the batch's
  snapshot (the evidence its runs wrote is kept, marked rolled back), marks it ``abandoned`` (its whole
  reservation stays in the day's spend: what it bought is unknown) and visits those entities again in a
  later batch. Graph writes go through the fence ``production``, taken by each attempt, so a worker
  declared dead and waking up writes nothing. Each scheduled visit counts exactly once.
* **Faults are not outcomes.** An unreachable store or evaluator stops the batch unsettled; the job
  pauses with the reason, retries by itself with backoff (2 s doubling to 60 s) or at once when an
  operator resumes, and resumes exactly once when the store answers again.

What it tells (engine.production.notices, in the transaction that records the event): a fault pause
(``production.paused_by_fault``, with the audit line, once per fault: retries that fault again before a batch
settles are the same fault) and the day's budget found spent
(``production.budget_exhausted``, once per UTC day). At every batch and every wait it stores in its run's
row how many entities are due, overdue and new (``checkpoint_counts``): the exporter serves them from the
ops DB without reading the graph.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.core.configs import live_config
from engine.core.errors import DiscoveryError, LeaseLost, StoreUnavailable, first_line
from engine.core.model import is_actionable
from engine.core.params import ParameterConfig
from engine.discovery.eig import rank_hypotheses
from engine.discovery.evidence import EvidenceSource, EvidenceUnavailable
from engine.discovery.limits import RunLimits, limit_source
from engine.discovery.runs import (
    METRICS_LOG_NAME,
    EntityContext,
    EvidenceSpec,
    load_contexts,
    make_source,
    run_entities,
)
from engine.jobs.queue import Control, JobCancelled
from engine.monitoring.events import MetricEvent, record_events
from engine.monitoring.jsonlog import JsonlLog
from engine.production import notices
from engine.production.budget import BatchBudget, BudgetedSource, day_of, next_day_start, remaining
from engine.production.policy import (
    COST_HISTORY,
    ORDERS,
    Candidate,
    DueEntity,
    Group,
    RefreshPolicy,
    admit,
    classify,
    expected_cost,
    next_due_at,
)
from engine.production.records import (
    ABANDONED,
    RESERVED,
    SETTLED,
    STAGE_ID,
    ProductionError,
    day_spent,
    dumps,
    last_visits,
    read_run,
    typical_cost,
    visit_costs,
)
from engine.rollout.records import assigned_systems, stage_key
from engine.rollout.states import ACTIVE_RUN_STATES, StageState
from engine.store.graph import SNAPSHOT_FORMAT, SNAPSHOT_VERSION, Fence, GraphStore
from engine.store.rows import hypothesis_props

#: the graph fence every production attempt takes: a worker declared dead writes nothing after it
FENCE_SCOPE = "production"
#: faults of the machinery: they pause the scheduler, they are never an outcome of a visit
INFRA_FAULTS: tuple[type[DiscoveryError], ...] = (StoreUnavailable, EvidenceUnavailable)
FAULT_RETRY_S = 2.0
FAULT_RETRY_MAX_S = 60.0
#: every this many batches the plan re-reads the whole catalogue (in between: the visited entities)
FULL_REFRESH_BATCHES = 20
#: the longest a waiting scheduler sleeps before it looks again (s)
IDLE_POLL_S = 5.0
#: default entities per batch (a batch is reserved, run and settled as one)
DEFAULT_BATCH_SIZE = 50
MAX_BATCH_SIZE = 1000


@dataclass(frozen=True)
class Assignment:
    """How one entity runs in production: system, config, stage id of its metric event."""

    system: str
    params: ParameterConfig
    stage_id: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.system, self.params.hash(), self.stage_id)


@dataclass
class StepResult:
    """What one step of the scheduler did: ran a batch, or why it waits and until when."""

    kind: str  # "ran", "budget" (the day's budget is spent), "idle" (nothing due)
    visits: int = 0
    spent_usd: float = 0.0
    became_actionable: int = 0
    wait_until: float | None = None
    message: str = ""
    entity_ids: list[str] = field(default_factory=list)


def active_rollout_held(db) -> set[str]:
    """Entities a stage of an active rollout is still running (in its cohort, not yet checkpointed): the
    rollout owns them until its checkpoint lands."""
    states = [str(s) for s in ACTIVE_RUN_STATES]
    rows = db.query(
        f"SELECT s.run_id, s.cohort FROM rollout_stages s JOIN rollout_runs r ON r.id = s.run_id "
        f"WHERE r.state IN ({','.join('?' * len(states))}) AND s.state = ?",
        [*states, str(StageState.RUNNING)],
    )
    held: set[str] = set()
    for r in rows:
        done = {
            x["entity_id"] for x in db.query("SELECT entity_id FROM rollout_entities WHERE run_id = ?", [r["run_id"]])
        }
        held.update(e for e in json.loads(r["cohort"]) if e not in done)
    return held


def live_assignments(ops, entity_ids: Sequence[str]) -> dict[str, Assignment]:
    """The assignment of each entity: a rollout's system and candidate for an exposed one (its stage key as
    stage id while that rollout is active), else the old system with the live config (stage ``production``)."""
    live = live_config(ops)
    default = Assignment("old", live, STAGE_ID)
    assigned = assigned_systems(ops, entity_ids)
    runs: dict[int, tuple[ParameterConfig, bool]] = {}
    if assigned:
        with ops.connect() as db:
            for rid in {int(a["run_id"]) for a in assigned.values()}:
                rows = list(db.query("SELECT candidate, state FROM rollout_runs WHERE id = ?", [rid]))
                if rows:
                    cand = ParameterConfig.from_dict(
                        json.loads(rows[0]["candidate"]), source=f"rollout {rid} candidate"
                    )
                    runs[rid] = (cand, rows[0]["state"] in {str(s) for s in ACTIVE_RUN_STATES})
    out: dict[str, Assignment] = {}
    for eid in entity_ids:
        a = assigned.get(eid)
        if a is None or int(a["run_id"]) not in runs:
            out[eid] = default
            continue
        cand, active = runs[int(a["run_id"])]
        params = cand if cand.hash() == a["config_hash"] else live if live.hash() == a["config_hash"] else cand
        stage = stage_key(int(a["run_id"]), a["stage"]) if active else STAGE_ID
        out[eid] = Assignment(str(a["system"]), params, stage)
    return out


def best_eig(ctx: EntityContext, params: ParameterConfig, now: float) -> tuple[float, str]:
    """The EIG of the entity's best ACTIVE hypothesis and its pattern ((0, "") when nothing is ACTIVE)."""
    ranked = rank_hypotheses(
        ctx.hypotheses,
        params,
        now=now,
        confirmations=ctx.confirmations,
        cluster_size=ctx.cluster_size,
        selectable_only=True,
    )
    if not ranked:
        return 0.0, ""
    top = max(ranked, key=lambda b: (b.eig, b.hypothesis_id))
    return top.eig, top.pattern


def read_candidates(
    graph,
    ops,
    entity_ids: Sequence[str] | None,
    now: float,
    *,
    known: Mapping[str, EntityContext] | None = None,
) -> tuple[dict[str, Candidate], dict[str, Assignment], set[str], dict[str, EntityContext]]:
    """What the planner needs of each entity (all of the graph's when ``entity_ids`` is None): its candidate
    (best ACTIVE EIG with the config it runs, expected cost, last visit) and its assignment; the entities an
    active rollout holds (left out); and the contexts read. With ``known`` contexts of every entity asked, only
    their hypotheses are read again (one query): their cluster confirmations stay as last read, which only the
    plan uses (every run reads its own afresh), until the next full read."""
    ids = graph.list_entity_ids() if entity_ids is None else list(entity_ids)
    with ops.connect() as db:
        held = active_rollout_held(db)
    ids = [e for e in ids if e not in held]
    if not ids:
        return {}, {}, held, {}
    assignments = live_assignments(ops, ids)
    if known is not None and all(e in known for e in ids):
        hyps = graph.get_hypotheses_many(ids)
        contexts = [dataclasses.replace(known[e], hypotheses=hyps.get(e, [])) for e in ids]
    else:
        contexts = load_contexts(graph, ids, skip_unknown={})
    with ops.connect() as db:
        seen = last_visits(db, None if entity_ids is None else ids)
        history = visit_costs(db, COST_HISTORY, None if entity_ids is None else ids)
        typical = {h: typical_cost(db, h) for h in {a.params.hash() for a in assignments.values()}}
    out: dict[str, Candidate] = {}
    for c in contexts:
        eid = c.entity.id
        a = assignments[eid]
        eig, pattern = best_eig(c, a.params, now)
        fallback = typical.get(a.params.hash())
        cost, basis = expected_cost(history.get(eid, []), a.params.cost_cap_usd if fallback is None else fallback)
        actionable = is_actionable(c.hypotheses, a.params.actionable_min_accepts, a.params.actionable_min_categories)
        out[eid] = Candidate(eid, eig, cost, seen.get(eid), pattern, basis, actionable)
    return out, assignments, held, {c.entity.id: c for c in contexts}


class Scheduler:
    """One production run's scheduling loop (one attempt of its worker, or the benchmark in virtual time).

    ``ctx`` is the job context (heartbeats, controls, lease); None runs without a job (the benchmark):
    no lease, no fence. ``order`` is a key of engine.production.policy.ORDERS.
    """

    def __init__(
        self,
        graph: GraphStore,
        ops,
        run_id: int,
        *,
        ctx=None,
        clock: Callable[[], float] = time.time,
        source: EvidenceSource | None = None,
        order: str = "eig_per_usd",
        log: JsonlLog | None = None,
    ):
        if order not in ORDERS:
            raise ProductionError(f"unknown scheduling order {order!r}: use one of {', '.join(ORDERS)}")
        self.ctx = ctx
        self.ops = ops
        self.clock = clock
        self.order = order
        self.base_graph = graph
        self.fence = Fence(FENCE_SCOPE, str(ctx.job.token)) if ctx is not None else None
        self.graph = graph.fenced(self.fence) if self.fence is not None else graph
        self.run_id = int(run_id)
        with ops.connect() as db:
            row = read_run(db, self.run_id)
        if row is None:
            raise ProductionError(f"no production run {run_id}: start one with `python -m engine production start`")
        self.row = row
        self.budget_usd = float(row["budget_usd"])
        self.policy = RefreshPolicy(float(row["min_age_s"]), float(row["max_age_s"]))
        self.batch_size = int(row["batch_size"])
        self.concurrency = int(row["concurrency"])
        self.limits = RunLimits.from_dict(json.loads(row["limits"])) if row["limits"] else None
        self.templates = {t.id: t for t in graph.list_templates()}
        if source is None:
            spec = EvidenceSpec.from_dict(json.loads(row["evidence"]), source=f"production run {run_id} evidence")
            source = make_source(spec, templates=self.templates)
            source = limit_source(source, self.limits) if self.limits is not None else source
        self.source = source
        self.log = log if log is not None else JsonlLog.for_settings(graph.settings, METRICS_LOG_NAME)
        self.candidates: dict[str, Candidate] = {}
        self.contexts: dict[str, EntityContext] = {}
        self.assignments: dict[str, Assignment] = {}
        self.batches_since_refresh = FULL_REFRESH_BATCHES
        #: what each batch this attempt abandoned had charged (known in process: it is what the ledger counts)
        self.charged: dict[int, float] = {}
        self.in_flight: int | None = None
        self.fault_delay = FAULT_RETRY_S
        #: wall time spent inside the discovery runs themselves (the rest of a step is the scheduler's overhead)
        self.run_time_s = 0.0

    # -- fencing and recovery
    def take_fence(self) -> None:
        if self.fence is not None:
            self.base_graph.take_fence(self.fence.scope, self.fence.token)

    def _assert_lease(self, db) -> None:
        if self.ctx is not None:
            self.ctx.assert_lease(db)

    def recover(self) -> int:
        """Abandon every batch left ``reserved`` (a killed worker, a fault, a cancel mid-batch): restore its
        entities from its snapshot, mark the evidence its runs wrote as rolled back, keep what it charged in
        the day's spend (its whole reservation when unknown). Returns how many batches it abandoned."""
        with self.ops.connect() as db:
            open_rows = list(db.query("SELECT * FROM production_batches WHERE state = ?", [RESERVED]))
        for b in open_rows:
            snap = json.loads(b["snapshot"]) if b["snapshot"] else None
            if snap is not None and snap.get("entities"):
                self.graph.restore(snap)
                ids = list(snap["entities"])
                for rid in json.loads(b["entities"]).get("run_ids", []):
                    self.base_graph.mark_evidence_rolled_back(ids, rid)
            known = self.charged.get(int(b["batch"])) if int(b["run_id"]) == self.run_id else None
            with self.ops.transaction() as db:
                self._assert_lease(db)
                db.execute(
                    "UPDATE production_batches SET state = ?, spent_usd = ?, settled_at = ? "
                    "WHERE run_id = ? AND batch = ? AND state = ?",
                    [ABANDONED, known, self.clock(), b["run_id"], b["batch"], RESERVED],
                )
            self.batches_since_refresh = FULL_REFRESH_BATCHES  # its entities' state changed back
        return len(open_rows)

    # -- planning
    def _refresh(self, entity_ids: Sequence[str] | None = None) -> None:
        """Re-read the candidates (all of them, or only ``entity_ids``)."""
        if entity_ids is None:
            self.candidates = {}
            self.contexts = {}
        cands, assigns, held, contexts = read_candidates(
            self.graph, self.ops, entity_ids, self.clock(), known=None if entity_ids is None else self.contexts
        )
        for e in held:
            self.candidates.pop(e, None)
        self.candidates.update(cands)
        self.assignments.update(assigns)
        self.contexts.update(contexts)

    def plan(self, limit: int | None = None) -> list[DueEntity]:
        if self.batches_since_refresh >= FULL_REFRESH_BATCHES or not self.candidates:
            self._refresh()
            self.batches_since_refresh = 0
        return ORDERS[self.order](self.candidates.values(), self.policy, self.clock(), limit)

    # -- one batch
    def step(self) -> StepResult:
        now = self.clock()
        day = day_of(now)
        with self.ops.connect() as db:
            spent = day_spent(db, day)
        left = remaining(self.budget_usd, spent)
        due = self.plan(limit=self.batch_size)
        if not due:
            nxt = next_due_at(self.candidates.values(), self.policy)
            self.checkpoint_counts(now)
            return StepResult("idle", wait_until=nxt, message="nothing is due")
        caps = [self.assignments[d.entity_id].params.cost_cap_usd for d in due]
        n = admit(due, caps, left, self.batch_size)
        if n == 0:
            self.checkpoint_counts(now, exhausted=(day, spent))
            return StepResult(
                "budget",
                wait_until=next_day_start(now),
                message=f"the day's budget is spent (${spent:,.2f} of ${self.budget_usd:,.2f}); "
                "visits go on when the next UTC day begins",
            )
        chosen = due[:n]
        return self._run_batch(chosen, caps[:n], day)

    # -- checkpoints: what the status, the exporter and the notifications read
    def due_counts(self, now: float) -> dict[Group, int]:
        """Entities new, overdue and due (neither) under the refresh policy, over what the scheduler last read
        (every entity but those an active rollout holds)."""
        counts = {Group.NEW: 0, Group.OVERDUE: 0, Group.DUE: 0}
        for c in self.candidates.values():
            group, _ = classify(c, self.policy, now)
            if group is not None:
                counts[group] += 1
        return counts

    def checkpoint_counts(self, now: float, *, exhausted: tuple[str, float] | None = None) -> dict[Group, int]:
        """Store the due / overdue / new counts in the run's row (the exporter serves them without reading the
        graph: one small UPDATE per batch or wait); with ``exhausted`` (the day and its spend) the day's budget
        was found spent: in the same transaction, tell it (once per UTC day) and audit it."""
        counts = self.due_counts(now)
        due = sum(counts.values())
        with self.ops.transaction() as db:
            self._assert_lease(db)
            db.execute(
                "UPDATE production_runs SET due_count = ?, overdue_count = ?, new_count = ?, counted_at = ? "
                "WHERE id = ?",
                [due, counts[Group.OVERDUE], counts[Group.NEW], now, self.run_id],
            )
            if exhausted is not None:
                day, spent = exhausted
                opens = datetime.fromtimestamp(next_day_start(now), UTC).strftime("%Y-%m-%d %H:%M UTC")
                told = notices.budget_exhausted(
                    db,
                    self.run_id,
                    day=day,
                    spent_usd=spent,
                    budget_usd=self.budget_usd,
                    still_due=due,
                    overdue=counts[Group.OVERDUE],
                    new=counts[Group.NEW],
                    opens_at=opens,
                    at=now,
                )
                if told:  # the first time today: the event is recorded with its message
                    self.ops.audit(
                        "worker",
                        "production.budget_exhausted",
                        f"production {self.run_id}",
                        {"day": day, "spent_usd": spent, "budget_usd": self.budget_usd, "still_due": due},
                        db=db,
                    )
        return counts

    def _next_batch_no(self) -> int:
        with self.ops.connect() as db:
            row = next(
                iter(
                    db.query(
                        "SELECT COALESCE(MAX(batch) + 1, 0) AS b FROM production_batches WHERE run_id = ?",
                        [self.run_id],
                    )
                )
            )
        return int(row["b"])

    def _run_batch(self, chosen: list[DueEntity], caps: list[float], day: str) -> StepResult:
        ids = [d.entity_id for d in chosen]
        reserved = float(sum(caps))
        batch_no = self._next_batch_no()
        groups: dict[tuple[str, str, str], list[str]] = {}
        for eid in ids:
            groups.setdefault(self.assignments[eid].key, []).append(eid)
        run_ids = {key: f"production-{self.run_id}-b{batch_no}-{key[0]}-{key[1][:8]}" for key in groups}
        errors: dict[str, DiscoveryError] = {}
        # one read of the batch: what the runs start from is also the snapshot a dead worker's batch is restored to
        contexts = {c.entity.id: c for c in load_contexts(self.graph, ids, skip_unknown=errors)}
        snapshot = {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "entities": {eid: [hypothesis_props(h) for h in c.hypotheses] for eid, c in contexts.items()},
        }
        now = self.clock()
        with self.ops.transaction() as db:
            self._assert_lease(db)
            spent = day_spent(db, day)
            if spent + reserved > self.budget_usd + 1e-9:  # someone spent meanwhile: plan again
                return StepResult("ran", message="the ledger moved; planning again")
            db.execute(
                "INSERT INTO production_batches (run_id, batch, day, state, entities, reserved_usd, snapshot, "
                "attempt, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    self.run_id,
                    batch_no,
                    day,
                    RESERVED,
                    dumps({"ids": ids, "run_ids": sorted(run_ids.values())}),
                    reserved,
                    dumps(snapshot),
                    self.ctx.attempt if self.ctx is not None else 1,
                    now,
                ],
            )
        self.in_flight = batch_no
        budget = BatchBudget(reserved)
        source = BudgetedSource(self.source, budget)
        events: list[MetricEvent] = []
        results = []
        t_run = time.perf_counter()
        try:
            for key, members in groups.items():
                a = self.assignments[members[0]]
                results.extend(
                    run_entities(
                        self.graph,
                        self.ops,
                        [],
                        contexts=[contexts[e] for e in members if e in contexts],
                        system=a.system,
                        params=a.params,
                        source=source,
                        run_id=run_ids[key],
                        stage_id=a.stage_id,
                        clock=self.clock,
                        log=self.log,
                        events_out=events,
                        concurrency=self.concurrency,
                        batch_size=max(1, len(members)),
                        errors=errors,
                        tick=self._beat(len(ids)),
                    )
                )
        except BaseException:
            self.charged[batch_no] = budget.charged
            raise
        finally:
            self.run_time_s += time.perf_counter() - t_run
        by_id = {d.entity_id: d for d in chosen}
        at = self.clock()
        became = 0
        with self.ops.transaction() as db:
            self._assert_lease(db)
            record_events(self.ops, events, log=self.log, db=db)
            for r in results:
                a = self.assignments[r.entity_id]
                before = is_actionable(
                    contexts[r.entity_id].hypotheses,
                    a.params.actionable_min_accepts,
                    a.params.actionable_min_categories,
                )
                new_actionable = bool(r.actionable and not before)
                became += new_actionable
                d = by_id[r.entity_id]
                db.execute(
                    "INSERT INTO production_visits (run_id, batch, entity_id, at, day, system, config_hash, stage_id, "
                    "cost_usd, actionable, became_actionable, was_new, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        self.run_id,
                        batch_no,
                        r.entity_id,
                        at,
                        day,
                        r.system,
                        r.config_hash,
                        a.stage_id,
                        float(r.cost_usd),
                        int(bool(r.actionable)),
                        int(new_actionable),
                        int(d.new),
                        d.reason,
                    ],
                )
            cur = db.execute(
                "UPDATE production_batches SET state = ?, spent_usd = ?, settled_at = ? "
                "WHERE run_id = ? AND batch = ? AND state = ?",
                [SETTLED, budget.charged, at, self.run_id, batch_no, RESERVED],
            )
            if cur.rowcount != 1:
                raise LeaseLost(f"production batch {batch_no} was abandoned under this worker; stopping")
            # a batch settled: a fault before it is over (the next one is a new fault, told again)
            db.execute("UPDATE production_runs SET fault_kind = '' WHERE id = ? AND fault_kind != ''", [self.run_id])
        self.in_flight = None
        self.fault_delay = FAULT_RETRY_S
        self.batches_since_refresh += 1
        self._refresh(ids)
        self.checkpoint_counts(self.clock())
        return StepResult(
            "ran",
            visits=len(results),
            spent_usd=budget.charged,
            became_actionable=became,
            message=f"batch {batch_no}: {len(results)} visits, ${budget.charged:,.2f}",
            entity_ids=[r.entity_id for r in results],
        )

    def _beat(self, size: int) -> Callable[[int], None] | None:
        if self.ctx is None:
            return None

        def beat(finished: int) -> None:
            control = self.ctx.heartbeat(message=f"batch of {size} in flight ({min(finished, size)} run)")
            if control is Control.CANCEL:
                raise JobCancelled(f"job {self.ctx.job.id} cancelled by an operator")

        return beat

    def progress_message(self) -> str:
        with self.ops.connect() as db:
            spent = day_spent(db, day_of(self.clock()))
        return f"spent ${spent:,.2f} of ${self.budget_usd:,.2f} today"


# --------------------------------------------------------------------------- the job


class _Worker:
    """The job side: the loop of steps with pause, cancel, waits, fault pauses and their single resume."""

    def __init__(self, ctx, graph: GraphStore, run_id: int):
        self.ctx = ctx
        self.sched = Scheduler(graph, ctx.ops, run_id, ctx=ctx)

    def execute(self) -> dict:
        ctx = self.ctx
        visits = 0
        fenced = False
        while True:
            try:
                if not fenced:  # once per attempt, and again after a fault (the store may have restarted)
                    self.sched.take_fence()
                    fenced = True
                self.sched.recover()
                ctx.checkpoint(message=self.sched.progress_message())
                r = self.sched.step()
                visits += r.visits
                if r.kind != "ran":
                    wait = (
                        IDLE_POLL_S if r.wait_until is None else max(0.05, min(IDLE_POLL_S, r.wait_until - time.time()))
                    )
                    ctx.wait(wait, message=f"{r.message}; {self.sched.progress_message()}")
                else:
                    ctx.heartbeat(message=f"{r.message}; {self.sched.progress_message()}")
            except INFRA_FAULTS as exc:
                fenced = False
                self._pause_for_fault(exc)
            except JobCancelled:
                self._abandon_quietly()
                raise

    def _abandon_quietly(self) -> None:
        """A cancel mid-batch: the runs in flight finished and nothing was written; abandon the batch now."""
        if self.sched.in_flight is None:
            return
        try:
            self.sched.recover()
        except (DiscoveryError, OSError):
            pass  # the next scheduler's recovery does it

    def _pause_for_fault(self, exc: DiscoveryError) -> None:
        """Pause with the reason, then retry by itself with backoff (or at once on an operator's resume); the
        batch in flight was not settled, so nothing of it counts: the retry abandons and redoes it."""
        ctx, store, job = self.ctx, self.ctx.store, self.ctx.job
        what = "evaluator" if isinstance(exc, EvidenceUnavailable) else "store"
        reason = f"paused by a fault of the {what}, nothing of the batch counted: {first_line(exc)}"
        delay = self.sched.fault_delay
        self.sched.fault_delay = min(FAULT_RETRY_MAX_S, self.sched.fault_delay * 2)
        announced = audited = False
        while True:
            if not ctx.settings.data_dir.exists():
                raise exc
            if not announced:
                try:
                    if store.pause_for_fault(job, reason) is Control.CANCEL:
                        raise JobCancelled(f"job {job.id} cancelled by an operator")
                    with ctx.ops.transaction() as db:
                        at = time.time()
                        db.execute(
                            "UPDATE production_runs SET message = ?, updated_at = ? WHERE id = ?",
                            [reason, at, self.sched.run_id],
                        )
                        if not audited:
                            ctx.ops.audit(
                                "worker",
                                "production.fault",
                                f"production {self.sched.run_id}",
                                {"reason": reason},
                                db=db,
                            )
                            self._tell_fault(db, what, reason, at)
                    announced = audited = True
                except StoreUnavailable:
                    pass
            end = time.monotonic() + delay
            resumed = False
            while time.monotonic() < end and not resumed:
                ctx.sleep(min(ctx.poll_s, max(0.0, end - time.monotonic())))
                try:
                    control = store.heartbeat(job, message=f"{reason}; retrying in {end - time.monotonic():.0f}s")
                except StoreUnavailable:
                    continue
                if control is Control.CANCEL:
                    raise JobCancelled(f"job {job.id} cancelled by an operator")
                resumed = control is Control.RUN
            if self._store_is_back():
                try:
                    store.resume_after_fault(job)
                    with ctx.ops.transaction() as db:
                        db.execute(
                            "UPDATE production_runs SET message = ?, updated_at = ? WHERE id = ?",
                            ["resumed after a fault", time.time(), self.sched.run_id],
                        )
                except StoreUnavailable:
                    delay = min(FAULT_RETRY_MAX_S, delay * 2)
                    continue
                return
            announced = False
            delay = min(FAULT_RETRY_MAX_S, delay * 2)

    def _tell_fault(self, db, what: str, reason: str, at: float) -> None:
        """Record the fault in the run's row and, when it opens a new fault, tell it (one message). A fault the
        retries do not clear (the evaluator still away: each retry faults again) is the same fault until a batch
        settles (``_run_batch`` clears ``fault_kind``), so a long outage is told once, not at every retry."""
        cur = db.execute(
            "UPDATE production_runs SET faults = faults + 1, fault_kind = ? WHERE id = ? AND fault_kind = ''",
            [what, self.sched.run_id],
        )
        if cur.rowcount != 1:  # the same fault as before: only what went away may have changed
            db.execute("UPDATE production_runs SET fault_kind = ? WHERE id = ?", [what, self.sched.run_id])
            return
        (row,) = db.query("SELECT faults FROM production_runs WHERE id = ?", [self.sched.run_id])
        notices.paused_by_fault(db, self.sched.run_id, fault_no=int(row["faults"]), what=what, reason=reason, at=at)

    def _store_is_back(self) -> bool:
        try:
            fresh = GraphStore.open(self.ctx.settings)
        except StoreUnavailable:
            return False
        try:
            self.sched.base_graph.close()
        except Exception:  # noqa: BLE001 - the old client's sockets are dead anyway
            pass
        self.sched.base_graph = fresh
        self.sched.graph = fresh.fenced(self.sched.fence) if self.sched.fence is not None else fresh
        try:
            with self.ctx.ops.connect() as db:
                read_run(db, self.sched.run_id)
        except StoreUnavailable:
            return False
        return True


def run_production_job(ctx) -> dict[str, Any]:
    """Job handler of kind ``production`` (engine.jobs.queue.JOB_KINDS): runs (or resumes) one scheduler."""
    if ctx.settings is None:
        raise ProductionError("a production job needs settings (run it with `python -m engine worker --job ID`)")
    worker = _Worker(ctx, GraphStore.open(ctx.settings), int(ctx.params["run_id"]))
    try:
        return worker.execute()
    finally:
        worker.sched.base_graph.close()
        close = getattr(worker.sched.source, "close", None)
        if callable(close):
            close()
