"""The Prometheus exporter: ``/metrics`` in the text exposition format, read from the ops DB at scrape time.

Teams that run Prometheus and Grafana scrape a service's figures rather than
open another console. ``OpsCollector`` is a prometheus_client custom collector:
each scrape reads the operations database (engine.store.opsdb) and turns what
is stored into metric families. Nothing is counted in this process's memory
(it keeps only a cache of sums the table gives again), so two exporters, or
one restarted, serve the same numbers.

What is served (every name starts with ``discovery_``; the README's "Metrics
for Prometheus" lists them with their labels):

- **metric events** (engine.monitoring.events), by ``system`` (new, old),
  ``stage`` and ``shadow`` (true, false): counters of runs, actionable runs,
  cost, hops, errored hops and errored hops by ``type``, and the run latency
  (evidence + engine, seconds) as a histogram. ``stage`` is the event's
  stage id (``production``, ``rollout-<run>-<stage>``), ``none`` for runs
  outside any stage, and ``tuning`` for every tuning trial (experiments: one
  study records thousands of shadow runs; one label value for all studies
  keeps the series few).
- **alerts** (engine.monitoring.alerts): one ``discovery_alert_state`` series
  per rule and state, 1 for the rule's current state and 0 for the others,
  plus the measured value and whether it is acknowledged.
- **rollout** (engine.rollout): the latest run's effective state (as the
  Rollout page shows it), each stage's state and entities done / total, and
  how many runs are in each stored state.
- **tuning** (engine.tuning.store): trials finished (complete, failed) and
  planned, and the state, of every unfinished study and of the latest one.
- **production** (engine.production): the scheduler's state (as the
  Production page words it), whether it is paused by a fault (and of what:
  store or evaluator), the UTC day's spend against its budget, visits today
  and entities visited today, visits in total (a counter), and the entities
  due, overdue and new as the scheduler last counted them (it stores them in
  its run's row at every batch and every wait: the exporter never reads the
  graph).
- **cache** (engine.cache.service): the hit ratio, entries and bytes the
  cache-owning process (the console) last published to the ops DB.
- ``discovery_opsdb_up`` 1 when the ops DB answered; 0, with
  ``discovery_opsdb_error_info{error="<one line>"}``, when it did not (no
  file, unreadable, locked): a scrape never answers with a traceback, and
  never with half the families.

Counters are monotonic across scrapes and restarts because they are sums over
the append-only ``metric_events`` table. Cheap to scrape: the sums, bucket
counts (``SUM(CASE ...)``) and error types (``json_each``) are computed by
SQLite with GROUP BY, never by loading rows, and each process keeps an
incremental cursor: the totals up to the highest event id already summed, so
a scrape reads only the events recorded since the last one (the first read
of a process sums them all; ``serve`` makes it in the background at start).
The cursor restarts from zero when the file is replaced or holds fewer events
than it had. ``python -m engine bench exporter`` states the cost.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.cache.service import STATS_KEY as CACHE_STATS_KEY
from engine.core.errors import DiscoveryError, first_line
from engine.core.settings import Settings
from engine.jobs.queue import JobState, JobStore, worker_liveness
from engine.monitoring.alerts import STATES_TABLE, AlertStatus
from engine.monitoring.events import EXPERIMENT_STAGE_PREFIX
from engine.monitoring.events import TABLE as EVENTS_TABLE
from engine.store.opsdb import OpsDB

#: the port Prometheus exporters of this kind customarily use (the README's scrape config says the same)
DEFAULT_PORT = 9108
DEFAULT_HOST = "127.0.0.1"
METRICS_PATH = "/metrics"

#: upper bounds (seconds) of the run latency histogram's buckets. A run's latency is its evidence latency plus
#: engine time: hops of the simulated world take 1.5-7 s each (data/world_profile.json) and a run makes 2 to
#: ~20 of them, so most runs take 5 s to 2 min; a real evaluator (fetch + LLM) is in the same range. 30 s is
#: the shipped p95 alert threshold (data/alert_rules.json), so histogram_quantile agrees with the alert at the
#: edge that matters; 600 s catches runs stuck behind evaluator timeouts. 0.5-2.5 s resolve replayed and cached
#: runs. Fewer than 16 buckets keep each scrape's series few.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    45.0,
    60.0,
    90.0,
    120.0,
    180.0,
    300.0,
    600.0,
)

#: the ``stage`` label of events recorded outside any stage, and of every tuning trial
NO_STAGE = "none"
TUNING_STAGE = "tuning"

#: the studies shown: every unfinished one (newest first, at most this many) and the latest
MAX_STUDIES = 20

#: a tuning study's state when it has no job yet, and once it finished (otherwise: its job's state)
STUDY_CREATED = "created"
STUDY_FINISHED = "finished"
STUDY_STATES: tuple[str, ...] = (STUDY_CREATED, *(str(s) for s in JobState), STUDY_FINISHED)

#: the production scheduler's states as the Production page words them (engine.production.control.state_of),
#: spaces as underscores; "not_started" before any scheduler was started. This package may not import
#: engine.production (a sibling of its layer): tests/notify/test_exporter_production.py holds the two together.
PRODUCTION_STATES: tuple[str, ...] = (
    "not_started",
    "starting",
    "running",
    "paused",
    "paused_by_a_fault",
    "stopped",
    "failed",
    "stopped_unexpectedly",
)
#: job state -> production state (a paused job whose message says so is paused by a fault)
_PRODUCTION_JOB_STATES = {
    JobState.QUEUED: "starting",
    JobState.RUNNING: "running",
    JobState.PAUSED: "paused",
    JobState.SUCCEEDED: "stopped",
    JobState.CANCELLED: "stopped",
    JobState.FAILED: "failed",
    JobState.DEAD: "stopped_unexpectedly",
}
#: the prefix of a job's message while the scheduler is paused by a fault (engine.production.scheduler)
FAULT_PREFIX = "paused by a fault"
#: the fault gauge's ``reason`` label when there is no fault
NO_FAULT = "none"

#: the latest production run's row: budget, job, what the scheduler last counted, its fault kind
_PRODUCTION_RUN_SQL = """
SELECT id, job_id, budget_usd, due_count, overdue_count, new_count, counted_at, fault_kind
FROM production_runs ORDER BY id DESC LIMIT 1
"""
#: the UTC day's spend over every run, as engine.production.records.day_spent counts it (an open batch at
#: its reservation, an abandoned one at what it charged or, unknown, its reservation)
_PRODUCTION_SPENT_SQL = """
SELECT COALESCE(SUM(CASE WHEN state = 'reserved' THEN reserved_usd ELSE COALESCE(spent_usd, reserved_usd) END), 0)
FROM production_batches WHERE day = ?
"""
_PRODUCTION_VISITS_SQL = """
SELECT COUNT(*), COUNT(DISTINCT entity_id), (SELECT COUNT(*) FROM production_visits)
FROM production_visits WHERE day = ?
"""

#: the label names of the event families, in the order the SQL returns them
EVENT_LABELS = ("system", "stage", "shadow")

#: how a stage id becomes the ``stage`` label, in SQL (tuning trials collapse to one value, no stage is "none")
_STAGE_SQL = (
    f"CASE WHEN stage_id IS NULL THEN '{NO_STAGE}' "
    f"WHEN stage_id LIKE '{EXPERIMENT_STAGE_PREFIX}%' THEN '{TUNING_STAGE}' ELSE stage_id END"
)
_LATENCY_SQL = "(evidence_latency_s + engine_latency_ms / 1000.0)"
_BUCKET_SQL = ", ".join(f"SUM(CASE WHEN lat <= {b!r} THEN 1 ELSE 0 END)" for b in LATENCY_BUCKETS_S)

#: one row per (system, stage, shadow) of the events with lo < id <= hi: runs, actionable, cost, hops,
#: errored hops, latency sum, then the cumulative bucket counts
_EVENTS_SQL = f"""
SELECT system, stage, shadow, COUNT(*), SUM(actionable), SUM(cost_usd), SUM(hops), SUM(error_count), SUM(lat),
       {_BUCKET_SQL}
FROM (SELECT system, {_STAGE_SQL} AS stage, shadow, actionable, cost_usd, hops, error_count, {_LATENCY_SQL} AS lat
      FROM {EVENTS_TABLE} WHERE id > ? AND id <= ?)
GROUP BY system, stage, shadow
"""

#: errored hops by type (one entry of error_types per errored hop), only over events that have any
_ERRORS_SQL = f"""
SELECT e.system, e.stage, e.shadow, j.value, COUNT(*)
FROM (SELECT system, {_STAGE_SQL} AS stage, shadow, error_types
      FROM {EVENTS_TABLE} WHERE error_count > 0 AND id > ? AND id <= ?) AS e, json_each(e.error_types) AS j
GROUP BY 1, 2, 3, 4
"""

_STUDIES_SQL = """
SELECT s.id, s.finished_at, s.job_id, json_extract(s.spec, '$.iterations') AS iterations, j.state AS job_state,
       (SELECT COUNT(*) FROM tuning_trials t WHERE t.study_id = s.id AND t.state = 'complete') AS complete,
       (SELECT COUNT(*) FROM tuning_trials t WHERE t.study_id = s.id AND t.state = 'failed') AS failed
FROM tuning_studies s LEFT JOIN jobs j ON j.id = s.job_id
WHERE s.id IN (SELECT id FROM tuning_studies WHERE finished_at IS NULL ORDER BY id DESC LIMIT ?)
   OR s.id = (SELECT MAX(id) FROM tuning_studies)
ORDER BY s.id
"""


class OpsDBMissing(DiscoveryError):
    """The data dir has no operations database (yet): the exporter never creates one."""


# --------------------------------------------------------------------------- event totals


@dataclass
class _Group:
    """The sums of one (system, stage, shadow) group of metric events."""

    runs: int = 0
    actionable: int = 0
    cost_usd: float = 0.0
    hops: int = 0
    errored_hops: int = 0
    latency_sum_s: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_S))


@dataclass
class EventTotals:
    """What every metric event up to ``cursor`` (an event id) adds up to: the state of the incremental cursor."""

    cursor: int = 0
    file_id: tuple[int, int] | None = None  # (device, inode) of the file the totals were read from
    groups: dict[tuple[str, str, str], _Group] = field(default_factory=dict)
    errors: dict[tuple[str, str, str, str], int] = field(default_factory=dict)

    def add(self, conn: sqlite3.Connection, lo: int, hi: int) -> None:
        """Add the events with ``lo < id <= hi`` (two GROUP BY queries; no row is loaded)."""
        for row in conn.execute(_EVENTS_SQL, (lo, hi)):
            key = (str(row[0]), str(row[1]), "true" if row[2] else "false")
            g = self.groups.setdefault(key, _Group())
            g.runs += row[3]
            g.actionable += row[4] or 0
            g.cost_usd += row[5] or 0.0
            g.hops += row[6] or 0
            g.errored_hops += row[7] or 0
            g.latency_sum_s += row[8] or 0.0
            g.buckets = [a + (b or 0) for a, b in zip(g.buckets, row[9:], strict=True)]
        for system, stage, shadow, kind, n in conn.execute(_ERRORS_SQL, (lo, hi)):
            error_key = (str(system), str(stage), "true" if shadow else "false", str(kind))
            self.errors[error_key] = self.errors.get(error_key, 0) + n
        self.cursor = hi


# --------------------------------------------------------------------------- the collector


class OpsCollector(Collector):
    """A prometheus_client collector over one data dir's ops DB, read at every scrape.

    ``collect`` builds every family first and yields them only when the whole
    read succeeded; when the ops DB cannot be read it yields the up gauge at 0
    and the error line instead (and prints that line on stderr once per
    change, for whoever runs the exporter).
    """

    def __init__(self, db_path: Path | str, *, clock=time.time):
        self.db_path = Path(db_path)
        self._clock = clock
        self._ops: OpsDB | None = None
        self._totals = EventTotals()
        self._lock = threading.Lock()  # scrapes are served from threads: one read of the cursor at a time
        self._last_error: str | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> OpsCollector:
        return cls(settings.ops_db_path)

    @property
    def cursor(self) -> int:
        """The highest metric event id summed so far (0 before the first read)."""
        return self._totals.cursor

    # ------------------------------------------------------------------ Collector

    def describe(self) -> Iterable[Metric]:
        return []  # the families depend on what is stored; never read the DB at registration

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        with self._lock:
            try:
                families = self._read()
                error = None
            except (DiscoveryError, sqlite3.Error, OSError, ValueError, KeyError) as exc:
                families, error = [], first_line(exc) or type(exc).__name__
            if error is not None and error != self._last_error:
                print(f"exporter: the operations database did not answer: {error}", file=sys.stderr, flush=True)
            self._last_error = error
        up = GaugeMetricFamily(
            "discovery_opsdb_up", "1 when the operations database answered this scrape, 0 when it did not"
        )
        up.add_metric([], 0.0 if error else 1.0)
        yield up
        if error is not None:
            info = GaugeMetricFamily(
                "discovery_opsdb_error_info",
                "why the operations database did not answer (1 while it does not; the error is the label)",
                labels=["error"],
            )
            info.add_metric([error], 1.0)
            yield info
        yield from families
        took = GaugeMetricFamily(
            "discovery_exporter_scrape_duration_seconds", "how long this scrape took to read the operations database"
        )
        took.add_metric([], time.perf_counter() - started)
        yield took

    # ------------------------------------------------------------------ reading

    def _open(self) -> OpsDB:
        if not self.db_path.exists():
            raise OpsDBMissing(
                f"no operations database at {self.db_path}: point DISCOVERY_DATA_DIR at the data dir the console uses"
            )
        if self._ops is None:
            self._ops = OpsDB(self.db_path)  # migrates an older file once, like every other process
        return self._ops

    def _read(self) -> list[Metric]:
        ops = self._open()
        now = self._clock()
        families: list[Metric] = []
        with ops.connect() as db:
            conn = db.conn
            families += self._events(conn)
            families += _alerts(conn)
            run = _latest_run(conn)
            families += _run_counts(conn)
            families += _studies(conn)
            production = _production_rows(conn, now)
            cache = conn.execute("SELECT value FROM settings_kv WHERE key = ?", (CACHE_STATS_KEY,)).fetchone()
        # the job and the worker's liveness: what the Rollout page shows (engine.rollout.status)
        families += _rollout(ops, run, now)
        families += _production(ops, production, now)
        families += _cache(json.loads(cache[0]) if cache else None)
        return families

    def _events(self, conn: sqlite3.Connection) -> list[Metric]:
        stat = os.stat(self.db_path)
        file_id = (stat.st_dev, stat.st_ino)
        hi = conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {EVENTS_TABLE}").fetchone()[0]
        totals = self._totals
        if totals.file_id != file_id or hi < totals.cursor:
            totals = EventTotals(file_id=file_id)  # another file, or fewer events than summed: start over
        if hi > totals.cursor:
            fresh = EventTotals(
                cursor=totals.cursor,
                file_id=file_id,
                groups={k: _Group(**{**vars(g), "buckets": list(g.buckets)}) for k, g in totals.groups.items()},
                errors=dict(totals.errors),
            )
            fresh.add(conn, totals.cursor, hi)  # on failure the previous totals stay as they were
            totals = fresh
        self._totals = totals
        last = conn.execute(f"SELECT MAX(at) FROM {EVENTS_TABLE}").fetchone()[0]
        return event_families(totals, last_event_at=last)


def event_families(totals: EventTotals, *, last_event_at: float | None = None) -> list[Metric]:
    """The metric-event families of ``totals`` (pure: the collector's SQL fills the totals)."""
    labels = list(EVENT_LABELS)
    runs = CounterMetricFamily("discovery_runs", "discovery runs recorded (one per entity run)", labels=labels)
    actionable = CounterMetricFamily(
        "discovery_actionable_runs", "runs that ended with the entity actionable", labels=labels
    )
    cost = CounterMetricFamily("discovery_cost_usd", "evidence cost of the runs, USD", labels=labels)
    hops = CounterMetricFamily("discovery_hops", "hops made (errored hops included)", labels=labels)
    errored = CounterMetricFamily("discovery_errored_hops", "hops whose evidence source failed", labels=labels)
    by_type = CounterMetricFamily(
        "discovery_hop_errors", "errored hops by error type (timeout, http_5xx, ...)", labels=[*labels, "type"]
    )
    latency = HistogramMetricFamily(
        "discovery_run_latency_seconds",
        "run latency (evidence + engine) per run, seconds; buckets in engine/notify/exporter.py LATENCY_BUCKETS_S",
        labels=labels,
    )
    for key in sorted(totals.groups):
        g = totals.groups[key]
        values = list(key)
        runs.add_metric(values, g.runs)
        actionable.add_metric(values, g.actionable)
        cost.add_metric(values, g.cost_usd)
        hops.add_metric(values, g.hops)
        errored.add_metric(values, g.errored_hops)
        buckets = [(_le(b), float(n)) for b, n in zip(LATENCY_BUCKETS_S, g.buckets, strict=True)]
        latency.add_metric(values, [*buckets, ("+Inf", float(g.runs))], sum_value=g.latency_sum_s)
    for error_key in sorted(totals.errors):
        by_type.add_metric(list(error_key), totals.errors[error_key])
    families: list[Metric] = [runs, actionable, cost, hops, errored, by_type, latency]
    last = GaugeMetricFamily(
        "discovery_last_event_timestamp_seconds", "when the newest metric event was recorded (unix seconds)"
    )
    if last_event_at is not None:
        last.add_metric([], float(last_event_at))
    families.append(last)
    return families


def _le(bound: float) -> str:
    """A bucket's ``le`` label as prometheus_client writes it (30.0 -> "30.0")."""
    return repr(float(bound))


def _state_set(name: str, help_text: str, labels: list[str], rows: Iterable[tuple[list[str], str]], states) -> Metric:
    """One series per (labels, state): 1 for the current state, 0 for the others (an enum as gauges)."""
    family = GaugeMetricFamily(name, help_text, labels=[*labels, "state"])
    for values, current in rows:
        for state in states:
            family.add_metric([*values, str(state)], 1.0 if str(state) == current else 0.0)
    return family


def _alerts(conn: sqlite3.Connection) -> list[Metric]:
    rows = conn.execute(
        f"SELECT rule_id, state, value, acknowledged_at, evaluated_at FROM {STATES_TABLE} ORDER BY rule_id"
    ).fetchall()
    state = _state_set(
        "discovery_alert_state",
        "alert rule states: 1 for each rule's current state (ok, pending, firing, resolved, no_data), 0 otherwise",
        ["rule"],
        ((list(r[:1]), r[1]) for r in rows),
        list(AlertStatus),
    )
    value = GaugeMetricFamily(
        "discovery_alert_value", "the figure each rule measured at its last evaluation", labels=["rule"]
    )
    acked = GaugeMetricFamily(
        "discovery_alert_acknowledged", "1 when the rule's current alert was acknowledged", labels=["rule"]
    )
    evaluated = GaugeMetricFamily(
        "discovery_alert_evaluated_timestamp_seconds", "when each rule was last evaluated", labels=["rule"]
    )
    for rule, _state, measured, ack_at, eval_at in rows:
        if measured is not None:
            value.add_metric([rule], float(measured))
        acked.add_metric([rule], 1.0 if ack_at is not None else 0.0)
        evaluated.add_metric([rule], float(eval_at))
    return [state, value, acked, evaluated]


def _latest_run(conn: sqlite3.Connection) -> dict[str, Any] | None:
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute(
            "SELECT id, state, stages, stage_config, job_id, rollback_at FROM rollout_runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        run = dict(row)
        run["stage_rows"] = [
            dict(r)
            for r in conn.execute("SELECT stage, state, done, total FROM rollout_stages WHERE run_id = ?", (run["id"],))
        ]
        return run
    finally:
        conn.row_factory = None


def _run_counts(conn: sqlite3.Connection) -> list[Metric]:
    from engine.rollout.states import RunState  # lazy: with the rollout package, as in _rollout

    counts = dict(conn.execute("SELECT state, COUNT(*) FROM rollout_runs GROUP BY state").fetchall())
    family = GaugeMetricFamily("discovery_rollout_runs", "rollout runs in each stored state", labels=["state"])
    for state in RunState:
        family.add_metric([str(state)], float(counts.get(str(state), 0)))
    return [family]


def _rollout(ops: OpsDB, run: dict[str, Any] | None, now: float) -> list[Metric]:
    """The latest run: its effective state (the Rollout page's), each stage's state and entities done / total."""
    # The rollout package loads scipy.stats (~1-2 s), and every CLI command imports this module (through
    # engine.cli.exporter) to build its parser: the exporter pays it once, at its first read.
    from engine.rollout.records import stage_config_from_dict  # lazy: scipy.stats, see above
    from engine.rollout.states import (  # lazy: scipy.stats, see above
        EffectiveState,
        RunState,
        StageState,
        effective_state,
        rollback_interrupted,
    )

    state = GaugeMetricFamily(
        "discovery_rollout_state",
        "the latest rollout run's state as the Rollout page shows it: 1 for the current one, 0 otherwise",
        labels=["run", "state"],
    )
    stage_rows: list[tuple[list[str], str]] = []
    done = GaugeMetricFamily(
        "discovery_rollout_stage_entities_done", "entities of the stage run so far", labels=["run", "stage"]
    )
    total = GaugeMetricFamily(
        "discovery_rollout_stage_entities_total",
        "entities the stage exposes (its target before it starts)",
        labels=["run", "stage"],
    )
    if run is not None:
        run_id = str(run["id"])
        job_state, alive = None, False
        if run["job_id"] is not None:
            job = JobStore(ops).get(run["job_id"])
            job_state = job.state
            if job.state.has_worker():
                alive, _note = worker_liveness(job, now)
        current = effective_state(
            RunState(run["state"]), job_state, alive, rollback_stalled=rollback_interrupted(run, now)
        )
        for s in EffectiveState:
            if s is not EffectiveState.NONE:
                state.add_metric([run_id, str(s)], 1.0 if s is current else 0.0)
        policy = stage_config_from_dict(json.loads(run["stage_config"]))
        reached = {r["stage"]: r for r in run["stage_rows"]}
        for name in json.loads(run["stages"]):
            row = reached.get(name)
            stage_rows.append(([run_id, name], row["state"] if row else str(StageState.PENDING)))
            done.add_metric([run_id, name], float(row["done"]) if row else 0.0)
            target = row["total"] if row else policy.stage(name).entities
            if target is not None:
                total.add_metric([run_id, name], float(target))
    stages = _state_set(
        "discovery_rollout_stage_state",
        "each stage of the latest rollout run: 1 for its current state, 0 otherwise",
        ["run", "stage"],
        stage_rows,
        list(StageState),
    )
    return [state, stages, done, total]


def _studies(conn: sqlite3.Connection) -> list[Metric]:
    rows = conn.execute(_STUDIES_SQL, (MAX_STUDIES,)).fetchall()
    trials = GaugeMetricFamily(
        "discovery_tuning_study_trials", "finished trials of the study (complete, failed)", labels=["study", "result"]
    )
    planned = GaugeMetricFamily(
        "discovery_tuning_study_trials_planned",
        "trials the study will run (trial 0 + its iterations)",
        labels=["study"],
    )
    states: list[tuple[list[str], str]] = []
    for study_id, finished_at, job_id, iterations, job_state, complete, failed in rows:
        sid = str(study_id)
        trials.add_metric([sid, "complete"], float(complete))
        trials.add_metric([sid, "failed"], float(failed))
        if iterations is not None:
            planned.add_metric([sid], float(iterations) + 1)
        if finished_at is not None:
            current = STUDY_FINISHED
        elif job_id is None or job_state is None:
            current = STUDY_CREATED
        else:
            current = str(job_state)
        states.append(([sid], current))
    state = _state_set(
        "discovery_tuning_study_state",
        "unfinished tuning studies and the latest one: 1 for the study's state, 0 otherwise",
        ["study"],
        states,
        STUDY_STATES,
    )
    return [trials, planned, state]


def utc_day(ts: float) -> str:
    """The UTC day ``ts`` falls on as the production ledger keys it (engine.production.budget.day_of)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _production_rows(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
    """The latest production run's row, the day's spend and visits (aggregates over the day index) and all visits."""
    day = utc_day(now)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute(_PRODUCTION_RUN_SQL).fetchone()
    finally:
        conn.row_factory = None
    spent = conn.execute(_PRODUCTION_SPENT_SQL, (day,)).fetchone()[0]
    visits, entities, total = conn.execute(_PRODUCTION_VISITS_SQL, (day,)).fetchone()
    return {
        "run": dict(row) if row is not None else None,
        "spent": float(spent),
        "visits": int(visits),
        "entities": int(entities),
        "total": int(total),
    }


def production_state(job_state: JobState | None, message: str, alive: bool) -> str:
    """The scheduler's state label (PRODUCTION_STATES): the Production page's words; a running or paused job
    whose worker is gone is what the reaper will make of it (stopped unexpectedly)."""
    if job_state is None:
        return "not_started"
    if job_state.has_worker() and not alive:
        return "stopped_unexpectedly"
    if job_state is JobState.PAUSED and message.startswith(FAULT_PREFIX):
        return "paused_by_a_fault"
    return _PRODUCTION_JOB_STATES[job_state]


def _production(ops: OpsDB, figures: dict[str, Any], now: float) -> list[Metric]:
    """The production scheduler: state, fault, the day's spend and budget, visits, due / overdue / new."""
    run = figures["run"]
    job_state, message, alive = None, "", False
    if run is not None and run["job_id"] is not None:
        try:
            job = JobStore(ops).get(int(run["job_id"]))
        except DiscoveryError:
            job = None
        if job is not None:
            job_state, message = job.state, job.message or ""
            if job.state.has_worker():
                alive, _note = worker_liveness(job, now)
    current = production_state(job_state, message, alive)
    state = _state_set(
        "discovery_production_state",
        "the production scheduler's state as the Production page shows it: 1 for the current one, 0 otherwise",
        [],
        [([], current)],
        PRODUCTION_STATES,
    )
    fault = GaugeMetricFamily(
        "discovery_production_fault",
        "1 while the production scheduler is paused by a fault; reason: what went away (store, evaluator)",
        labels=["reason"],
    )
    faulted = current == "paused_by_a_fault"
    fault.add_metric([(run["fault_kind"] or "unknown") if faulted and run else NO_FAULT], 1.0 if faulted else 0.0)
    spent = GaugeMetricFamily(
        "discovery_production_spent_today_usd", "what production spent on the current UTC day (every run), USD"
    )
    spent.add_metric([], figures["spent"])
    budget = GaugeMetricFamily(
        "discovery_production_budget_usd", "the day's budget of the latest production scheduler (USD per UTC day)"
    )
    visits_today = GaugeMetricFamily(
        "discovery_production_visits_today", "production visits on the current UTC day (every run)"
    )
    visits_today.add_metric([], float(figures["visits"]))
    entities_today = GaugeMetricFamily(
        "discovery_production_entities_visited_today", "distinct entities production visited on the current UTC day"
    )
    entities_today.add_metric([], float(figures["entities"]))
    visits = CounterMetricFamily("discovery_production_visits", "production visits recorded (every run, every day)")
    visits.add_metric([], float(figures["total"]))
    due = GaugeMetricFamily(
        "discovery_production_entities_due",
        "entities due for a production visit (new and overdue included), as the scheduler last counted them",
    )
    overdue = GaugeMetricFamily(
        "discovery_production_entities_overdue", "entities past the maximum age, as the scheduler last counted them"
    )
    new = GaugeMetricFamily(
        "discovery_production_entities_new", "entities production never visited, as the scheduler last counted them"
    )
    counted = GaugeMetricFamily(
        "discovery_production_counted_timestamp_seconds", "when the scheduler last counted due, overdue and new"
    )
    if run is not None:
        budget.add_metric([], float(run["budget_usd"]))
        if run["counted_at"] is not None:
            due.add_metric([], float(run["due_count"]))
            overdue.add_metric([], float(run["overdue_count"]))
            new.add_metric([], float(run["new_count"]))
            counted.add_metric([], float(run["counted_at"]))
    return [state, fault, spent, budget, visits_today, entities_today, visits, due, overdue, new, counted]


def _cache(stats: Any) -> list[Metric]:
    """What the cache-owning process (the console) last published (engine.cache.service); nothing before that."""
    ratio = GaugeMetricFamily(
        "discovery_cache_hit_ratio", "hypothesis cache hits / requests since the console's cache started"
    )
    requests = GaugeMetricFamily(
        "discovery_cache_requests", "hypothesis cache requests since the console's cache started (hits + misses)"
    )
    entries = GaugeMetricFamily("discovery_cache_entries", "entries in the console's hypothesis cache")
    size = GaugeMetricFamily("discovery_cache_bytes", "bytes held by the console's hypothesis cache")
    published = GaugeMetricFamily(
        "discovery_cache_published_timestamp_seconds", "when the console last published its cache statistics"
    )
    cache = stats.get("cache") if isinstance(stats, dict) else None
    if isinstance(cache, dict):
        ratio.add_metric([], float(cache.get("hit_rate", 0.0)))
        requests.add_metric([], float(cache.get("requests", 0)))
        entries.add_metric([], float(cache.get("items", 0)))
        size.add_metric([], float(cache.get("bytes", 0)))
        if isinstance(stats.get("at"), (int, float)):
            published.add_metric([], float(stats["at"]))
    return [ratio, requests, entries, size, published]


# --------------------------------------------------------------------------- serving


def make_registry(collector: Collector) -> CollectorRegistry:
    """A registry holding only ``collector`` (no process metrics of the exporter itself)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def make_app(registry: CollectorRegistry):
    """The WSGI app: ``/metrics`` the exposition; ``/`` a pointer to it; anything else 404."""
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == METRICS_PATH:
            return metrics(environ, start_response)
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Discovery Ops exporter: scrape /metrics\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: scrape /metrics\n"]

    return app


class _Quiet(WSGIRequestHandler):
    """No access log line per scrape on stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class ExporterServer:
    """``/metrics`` served from a thread on host:port (port 0: a free one) until ``stop()``."""

    def __init__(self, collector: OpsCollector, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT):
        self.collector = collector
        self.registry = make_registry(collector)
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        try:
            self._httpd = make_server(host, port, make_app(self.registry), server_class, handler_class=_Quiet)
        except OSError as exc:
            raise DiscoveryError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port or --host"
            ) from exc
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{METRICS_PATH}"

    def start(self) -> ExporterServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="exporter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(10)


def serve(
    settings: Settings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, warm: bool = True
) -> ExporterServer:
    """Start serving the data dir's metrics.

    With ``warm`` one read is made at once in a background thread: it sums every event recorded so far (the
    costly part, once per process) before Prometheus's first scrape, which then reads only what came after,
    and it says at start, on stderr, when the ops DB cannot be read.
    """
    server = ExporterServer(OpsCollector.for_settings(settings), host=host, port=port).start()
    if warm:
        threading.Thread(target=lambda: list(server.collector.collect()), name="exporter-warm", daemon=True).start()
    return server


__all__ = [
    "DEFAULT_PORT",
    "LATENCY_BUCKETS_S",
    "EventTotals",
    "ExporterServer",
    "OpsCollector",
    "event_families",
    "make_app",
    "make_registry",
    "serve",
]
