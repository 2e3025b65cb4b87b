"""Metric events: one row per discovery run, in SQLite and in the JSONL log.

Every run (old or new system, live or shadow, any evidence source) becomes a
``MetricEvent``. ``record_runs`` stores a batch in one SQLite transaction and
appends the same events to the rotating JSONL log; ``query_events`` reads them
back for aggregation (engine.monitoring.windows), alerts and reports.

Definitions (what each field counts):

- ``hops``               hops made in the run (errored hops included)
- ``hypotheses_tested``  distinct hypotheses at least one hop looked at
- ``promotions``         tested hypotheses whose status after the run is PROMOTED
- ``correct``            ``actionable == truth(entity_id)`` when the truth is known, else None
- ``engine_latency_ms``  our own compute time; ``evidence_latency_s`` the summed hop latency
- ``error_types``        one entry per errored hop (so ``len(error_types) == error_count``)
- ``confidences``        final confidence of every hypothesis of the entity (for the histogram)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.core.model import RunResult, Status
from engine.monitoring.jsonlog import JsonlLog
from engine.store.opsdb import Migration

TABLE = "metric_events"

#: stage ids of experiments (tuning trials); left out of window reads unless asked for
EXPERIMENT_STAGE_PREFIX = "tuning-"

MIGRATIONS: list[Migration] = [
    Migration(
        component="metrics",
        version=1,
        name="metric events",
        statements=(
            f"""
            CREATE TABLE IF NOT EXISTS {TABLE} (
                id INTEGER PRIMARY KEY,
                at REAL NOT NULL,
                run_id TEXT NOT NULL,
                stage_id TEXT,
                system TEXT NOT NULL,
                shadow INTEGER NOT NULL,
                config_hash TEXT NOT NULL,
                entity_id TEXT NOT NULL,
                entity_name TEXT NOT NULL DEFAULT '',
                cost_usd REAL NOT NULL,
                iterations INTEGER NOT NULL,
                hops INTEGER NOT NULL,
                hypotheses_tested INTEGER NOT NULL,
                promotions INTEGER NOT NULL,
                actionable INTEGER NOT NULL,
                correct INTEGER,
                engine_latency_ms REAL NOT NULL,
                evidence_latency_s REAL NOT NULL,
                error_count INTEGER NOT NULL,
                error_types TEXT NOT NULL DEFAULT '[]',
                confidences TEXT NOT NULL DEFAULT '[]',
                stop_reason TEXT NOT NULL DEFAULT ''
            )
            """,
            f"CREATE INDEX IF NOT EXISTS idx_{TABLE}_at ON {TABLE} (at)",
            f"CREATE INDEX IF NOT EXISTS idx_{TABLE}_stage_at ON {TABLE} (stage_id, at)",
            f"CREATE INDEX IF NOT EXISTS idx_{TABLE}_run ON {TABLE} (run_id)",
        ),
    ),
]

SYSTEMS = ("new", "old")

Truth = Callable[[str], "bool | None"]


@dataclass(frozen=True)
class MetricEvent:
    """What one discovery run cost, found and suffered. Times are unix seconds."""

    at: float
    run_id: str
    stage_id: str | None
    system: str
    shadow: bool
    config_hash: str
    entity_id: str
    cost_usd: float
    iterations: int
    hops: int
    hypotheses_tested: int
    promotions: int
    actionable: bool
    correct: bool | None
    engine_latency_ms: float
    evidence_latency_s: float
    error_count: int
    error_types: tuple[str, ...] = ()
    confidences: tuple[float, ...] = ()
    entity_name: str = ""
    stop_reason: str = ""
    id: int | None = field(default=None, compare=False)  # row id once stored

    @property
    def latency_s(self) -> float:
        """Wall latency of the run as an operator feels it: evidence plus engine time."""
        return self.evidence_latency_s + self.engine_latency_ms / 1000.0

    @classmethod
    def from_run(
        cls,
        result: RunResult,
        *,
        at: float,
        run_id: str,
        stage_id: str | None = None,
        truth: Truth | None = None,
        entity_name: str = "",
    ) -> MetricEvent:
        tested = {h.hypothesis_id for h in result.hops}
        promotions = sum(1 for o in result.outcomes if o.id in tested and o.status is Status.PROMOTED)
        known = truth(result.entity_id) if truth is not None else None
        return cls(
            at=float(at),
            run_id=run_id,
            stage_id=stage_id,
            system=result.system,
            shadow=bool(result.shadow),
            config_hash=result.config_hash,
            entity_id=result.entity_id,
            entity_name=entity_name,
            cost_usd=float(result.cost_usd),
            iterations=int(result.iterations),
            hops=len(result.hops),
            hypotheses_tested=len(tested),
            promotions=promotions,
            actionable=bool(result.actionable),
            correct=None if known is None else bool(result.actionable) == bool(known),
            engine_latency_ms=float(result.engine_time_s) * 1000.0,
            evidence_latency_s=float(result.evidence_latency_s),
            error_count=result.error_count,
            error_types=tuple(result.errors),
            confidences=tuple(float(o.confidence) for o in result.outcomes),
            stop_reason=result.stop_reason,
        )

    # ------------------------------------------------------------------ (de)serialisation

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("id")
        row["shadow"] = int(self.shadow)
        row["actionable"] = int(self.actionable)
        row["correct"] = None if self.correct is None else int(self.correct)
        row["error_types"] = json.dumps(list(self.error_types))
        row["confidences"] = json.dumps(list(self.confidences))
        return row

    def to_json(self) -> dict[str, Any]:
        """The JSONL record: plain JSON types, plus the derived wall latency."""
        data = asdict(self)
        data.pop("id")
        data["error_types"] = list(self.error_types)
        data["confidences"] = list(self.confidences)
        data["latency_s"] = self.latency_s
        return data

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> MetricEvent:
        return cls(
            id=row.get("id"),
            at=row["at"],
            run_id=row["run_id"],
            stage_id=row["stage_id"],
            system=row["system"],
            shadow=bool(row["shadow"]),
            config_hash=row["config_hash"],
            entity_id=row["entity_id"],
            entity_name=row["entity_name"] or "",
            cost_usd=row["cost_usd"],
            iterations=row["iterations"],
            hops=row["hops"],
            hypotheses_tested=row["hypotheses_tested"],
            promotions=row["promotions"],
            actionable=bool(row["actionable"]),
            correct=None if row["correct"] is None else bool(row["correct"]),
            engine_latency_ms=row["engine_latency_ms"],
            evidence_latency_s=row["evidence_latency_s"],
            error_count=row["error_count"],
            error_types=tuple(json.loads(row["error_types"] or "[]")),
            confidences=tuple(json.loads(row["confidences"] or "[]")),
            stop_reason=row["stop_reason"] or "",
        )


# --------------------------------------------------------------------------- writing


def record_events(ops, events: Sequence[MetricEvent], *, log: JsonlLog, db: Any = None) -> int:
    """Store events in one SQLite transaction and append them to the JSONL log.

    The log is appended inside the transaction, after the inserts: if the log
    cannot be written the rows roll back, so the two never disagree by more
    than a failed commit. Pass ``db`` (from your own ``ops.transaction()``) to
    write the events atomically with your change: a rollout worker writes them
    with its checkpoint, fenced by its lease, so a worker that lost its job
    records nothing.
    """
    if not events:
        return 0
    if db is not None:
        db[TABLE].insert_all([e.to_row() for e in events])
        log.append(e.to_json() for e in events)
        return len(events)
    with ops.transaction() as tx:
        tx[TABLE].insert_all([e.to_row() for e in events])
        log.append(e.to_json() for e in events)
    return len(events)


def events_of_runs(
    results: Sequence[RunResult],
    *,
    run_id: str,
    stage_id: str | None = None,
    truth: Truth | None = None,
    at: float,
    names: Mapping[str, str] | None = None,
) -> list[MetricEvent]:
    """One metric event per run result, all stamped ``at`` (pure; ``record_events`` stores them).

    ``truth(entity_id)`` says whether the entity really is actionable (None if
    unknown); ``names`` maps entity ids to display names for reports.
    """
    names = names or {}
    return [
        MetricEvent.from_run(
            r, at=at, run_id=run_id, stage_id=stage_id, truth=truth, entity_name=names.get(r.entity_id, "")
        )
        for r in results
    ]


def record_runs(
    ops,
    results: Sequence[RunResult],
    *,
    run_id: str,
    stage_id: str | None = None,
    truth: Truth | None = None,
    clock: Callable[[], float],
    log: JsonlLog,
    names: Mapping[str, str] | None = None,
) -> list[MetricEvent]:
    """Record one metric event per run result (one transaction, one log append), all stamped ``clock()``."""
    events = events_of_runs(results, run_id=run_id, stage_id=stage_id, truth=truth, at=clock(), names=names)
    record_events(ops, events, log=log)
    return events


# --------------------------------------------------------------------------- reading


def query_events(
    ops,
    start: float | None = None,
    end: float | None = None,
    *,
    stage_id: str | None = None,
    run_id: str | None = None,
    system: str | None = None,
    shadow: bool | None = None,
    limit: int | None = None,
    experiments: bool = False,
) -> list[MetricEvent]:
    """Events with ``start <= at < end`` matching the filters, oldest first.

    Tuning trials (stage ids ``tuning-*``) are left out unless ``experiments=True``
    or their stage or run is named.
    """
    where, params = _where(
        start, end, stage_id=stage_id, run_id=run_id, system=system, shadow=shadow, experiments=experiments
    )
    sql = f"SELECT * FROM {TABLE}{where} ORDER BY at, id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    with ops.connect() as db:
        return [MetricEvent.from_row(row) for row in db.query(sql, params)]


#: the columns ``query_events(..., light=True)`` reads: every figure but the two JSON lists
_LIGHT_COLUMNS = (
    "id",
    "at",
    "run_id",
    "stage_id",
    "system",
    "shadow",
    "config_hash",
    "entity_id",
    "cost_usd",
    "iterations",
    "hops",
    "hypotheses_tested",
    "promotions",
    "actionable",
    "correct",
    "engine_latency_ms",
    "evidence_latency_s",
    "error_count",
)


def query_events_light(
    ops,
    start: float | None = None,
    end: float | None = None,
    **filters,
) -> list[MetricEvent]:
    """Like ``query_events`` but without ``error_types``, ``confidences``, names and stop reasons (left empty).

    About twice as fast on big windows (no JSON decoding, plain tuples); enough
    for volume, cost, actionable, latency and error *rates* (``error_count``),
    not for errors by type or the confidence histogram. The live charts use it.
    """
    where, params = _where(start, end, **filters)
    sql = f"SELECT {', '.join(_LIGHT_COLUMNS)} FROM {TABLE}{where} ORDER BY at, id"
    with ops.connect() as db:
        rows = db.conn.execute(sql, params).fetchall()
    return [
        MetricEvent(
            id=r[0],
            at=r[1],
            run_id=r[2],
            stage_id=r[3],
            system=r[4],
            shadow=bool(r[5]),
            config_hash=r[6],
            entity_id=r[7],
            cost_usd=r[8],
            iterations=r[9],
            hops=r[10],
            hypotheses_tested=r[11],
            promotions=r[12],
            actionable=bool(r[13]),
            correct=None if r[14] is None else bool(r[14]),
            engine_latency_ms=r[15],
            evidence_latency_s=r[16],
            error_count=r[17],
        )
        for r in rows
    ]


def count_events(ops, start: float | None = None, end: float | None = None, **filters) -> int:
    where, params = _where(start, end, **filters)
    with ops.connect() as db:
        return next(db.query(f"SELECT COUNT(*) AS n FROM {TABLE}{where}", params))["n"]


def stage_ids(ops, start: float | None = None, end: float | None = None) -> list[str]:
    """Distinct non-null stage ids seen in the window, sorted."""
    where, params = _where(start, end)
    where += (" AND" if where else " WHERE") + " stage_id IS NOT NULL"
    with ops.connect() as db:
        return [
            r["stage_id"] for r in db.query(f"SELECT DISTINCT stage_id FROM {TABLE}{where} ORDER BY stage_id", params)
        ]


def last_event_at(ops) -> float | None:
    with ops.connect() as db:
        return next(db.query(f"SELECT MAX(at) AS at FROM {TABLE}"))["at"]


def _where(
    start: float | None,
    end: float | None,
    *,
    stage_id: str | None = None,
    run_id: str | None = None,
    system: str | None = None,
    shadow: bool | None = None,
    experiments: bool = False,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if stage_id is None and run_id is None and not experiments:
        # tuning trials are experiments, not operations: a 40-trial study records ~40,000
        # shadow runs that would otherwise swamp the Overview, the alerts and the reports.
        # They stay in the table (read by naming their stage or run, or experiments=True).
        clauses.append(f"(stage_id IS NULL OR stage_id NOT LIKE '{EXPERIMENT_STAGE_PREFIX}%')")
    for clause, value in (
        ("at >= ?", start),
        ("at < ?", end),
        ("stage_id = ?", stage_id),
        ("run_id = ?", run_id),
        ("system = ?", system),
        ("shadow = ?", None if shadow is None else int(shadow)),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
