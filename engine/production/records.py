"""The production scheduler's SQLite records: schema, the day's ledger and the readers over them.

Three tables (migration component ``production``):

* ``production_runs``: one row per scheduler started (its budget, refresh policy, evidence source,
  entities in flight, limits, batch size, who started it, its job), with what the scheduler last
  counted at a batch checkpoint (entities due, overdue, new: the exporter serves them without reading
  the graph) and its faults (the kind of the current one, how many it had: each is told once);
* ``production_batches``: one row per batch, written *before* it runs (state ``reserved``: its
  entities, the reservation, the snapshot of their hypotheses) and settled after it ran (state
  ``settled``: what it really cost) or abandoned when a worker died or a fault stopped it (state
  ``abandoned``: restored from its snapshot; it counts what it charged when that is known, else its
  whole reservation);
* ``production_visits``: one row per entity visit of a settled batch (primary key run + batch +
  entity: a scheduled visit counts once), with the system, config and stage id it ran with, its cost
  and whether the entity became actionable.

The day's spend is over every run (a scheduler stopped and started again the same day continues
from the same ledger): ``day_spent``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.core.errors import DiscoveryError
from engine.store.opsdb import Migration

#: the job kind that runs the production scheduler (engine.jobs.queue.JOB_KINDS)
JOB_KIND = "production"
#: the ``stage_id`` of a production visit's metric event (an exposed entity's carries its rollout's stage key)
STAGE_ID = "production"

MIGRATIONS: list[Migration] = [
    Migration(
        component="production",
        version=1,
        name="production scheduler runs, batches (the day's ledger) and visits",
        statements=(
            """
            CREATE TABLE IF NOT EXISTS production_runs (
                id INTEGER PRIMARY KEY,
                job_id INTEGER,
                budget_usd REAL NOT NULL,
                min_age_s REAL NOT NULL,
                max_age_s REAL NOT NULL,
                evidence TEXT NOT NULL,
                concurrency INTEGER NOT NULL,
                limits TEXT,
                batch_size INTEGER NOT NULL,
                actor TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                message TEXT NOT NULL DEFAULT ''
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS production_batches (
                run_id INTEGER NOT NULL,
                batch INTEGER NOT NULL,
                day TEXT NOT NULL,
                state TEXT NOT NULL,
                entities TEXT NOT NULL,
                reserved_usd REAL NOT NULL,
                spent_usd REAL,
                snapshot TEXT,
                attempt INTEGER NOT NULL,
                created_at REAL NOT NULL,
                settled_at REAL,
                PRIMARY KEY (run_id, batch)
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_production_batches_day ON production_batches (day)",
            """
            CREATE TABLE IF NOT EXISTS production_visits (
                run_id INTEGER NOT NULL,
                batch INTEGER NOT NULL,
                entity_id TEXT NOT NULL,
                at REAL NOT NULL,
                day TEXT NOT NULL,
                system TEXT NOT NULL,
                config_hash TEXT NOT NULL,
                stage_id TEXT NOT NULL,
                cost_usd REAL NOT NULL,
                actionable INTEGER NOT NULL,
                became_actionable INTEGER NOT NULL,
                was_new INTEGER NOT NULL,
                reason TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (run_id, batch, entity_id)
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_production_visits_entity ON production_visits (entity_id, at)",
            "CREATE INDEX IF NOT EXISTS idx_production_visits_day ON production_visits (day, at)",
        ),
    ),
    Migration(
        component="production",
        version=2,
        name="the scheduler's last due / overdue / new counts, its fault kind and fault count",
        statements=(
            "ALTER TABLE production_runs ADD COLUMN due_count INTEGER",
            "ALTER TABLE production_runs ADD COLUMN overdue_count INTEGER",
            "ALTER TABLE production_runs ADD COLUMN new_count INTEGER",
            "ALTER TABLE production_runs ADD COLUMN counted_at REAL",
            "ALTER TABLE production_runs ADD COLUMN fault_kind TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE production_runs ADD COLUMN faults INTEGER NOT NULL DEFAULT 0",
        ),
    ),
]

RESERVED = "reserved"
SETTLED = "settled"
ABANDONED = "abandoned"


class ProductionError(DiscoveryError):
    """A production request that cannot be done as asked (one line, says what to do)."""


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def day_spent(db, day: str) -> float:
    """The day's spend over every run: settled batches at their real cost, open ones at their reservation,
    abandoned ones at what they charged (their reservation when that was never known)."""
    row = next(
        iter(
            db.query(
                "SELECT COALESCE(SUM(CASE WHEN state = ? THEN reserved_usd "
                "ELSE COALESCE(spent_usd, reserved_usd) END), 0)"
                " AS s FROM production_batches WHERE day = ?",
                [RESERVED, day],
            )
        )
    )
    return float(row["s"])


def read_run(db, run_id: int | None = None) -> dict | None:
    """The run's row (the latest when ``run_id`` is None), or None when there is none."""
    if run_id is None:
        rows = list(db.query("SELECT * FROM production_runs ORDER BY id DESC LIMIT 1"))
    else:
        rows = list(db.query("SELECT * FROM production_runs WHERE id = ?", [int(run_id)]))
    return rows[0] if rows else None


def last_visits(db, entity_ids: Iterable[str] | None = None) -> dict[str, float]:
    """entity id -> when production last visited it (any run)."""
    if entity_ids is None:
        rows = db.query("SELECT entity_id, MAX(at) AS at FROM production_visits GROUP BY entity_id")
    else:
        ids = list(dict.fromkeys(entity_ids))
        if not ids:
            return {}
        rows = db.query(
            f"SELECT entity_id, MAX(at) AS at FROM production_visits WHERE entity_id IN ({','.join('?' * len(ids))}) "
            "GROUP BY entity_id",
            ids,
        )
    return {r["entity_id"]: float(r["at"]) for r in rows}


def visit_costs(db, history: int, entity_ids: Iterable[str] | None = None) -> dict[str, list[float]]:
    """entity id -> the costs of its latest ``history`` production visits, newest first."""
    args: list[Any] = []
    where = ""
    if entity_ids is not None:
        ids = list(dict.fromkeys(entity_ids))
        if not ids:
            return {}
        where = f"WHERE entity_id IN ({','.join('?' * len(ids))})"
        args = ids
    rows = db.query(
        f"SELECT entity_id, cost_usd FROM (SELECT entity_id, cost_usd, ROW_NUMBER() OVER "
        f"(PARTITION BY entity_id ORDER BY at DESC, batch DESC) AS k FROM production_visits {where}) WHERE k <= ? "
        "ORDER BY entity_id, k",
        [*args, int(history)],
    )
    out: dict[str, list[float]] = {}
    for r in rows:
        out.setdefault(r["entity_id"], []).append(float(r["cost_usd"]))
    return out


def typical_cost(db, config_hash: str, limit: int = 500) -> float | None:
    """The mean cost of the latest ``limit`` production visits on one config (None: none yet)."""
    row = next(
        iter(
            db.query(
                "SELECT AVG(cost_usd) AS c, COUNT(*) AS n FROM (SELECT cost_usd FROM production_visits "
                "WHERE config_hash = ? ORDER BY at DESC LIMIT ?)",
                [config_hash, int(limit)],
            )
        )
    )
    return float(row["c"]) if row["n"] else None


@dataclass(frozen=True)
class DaySummary:
    """One UTC day of production: spend against budget, visits, entities that became actionable."""

    day: str
    spent_usd: float
    reserved_open_usd: float
    visits: int
    entities: int
    became_actionable: int
    batches: int
    abandoned: int


def day_summary(db, day: str) -> DaySummary:
    b = next(
        iter(
            db.query(
                "SELECT COUNT(*) AS n, COALESCE(SUM(state = ?), 0) AS ab, "
                "COALESCE(SUM(CASE WHEN state = ? THEN reserved_usd ELSE 0 END), 0) AS open "
                "FROM production_batches WHERE day = ?",
                [ABANDONED, RESERVED, day],
            )
        )
    )
    v = next(
        iter(
            db.query(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT entity_id) AS e, COALESCE(SUM(became_actionable), 0) AS a "
                "FROM production_visits WHERE day = ?",
                [day],
            )
        )
    )
    return DaySummary(
        day=day,
        spent_usd=day_spent(db, day),
        reserved_open_usd=float(b["open"]),
        visits=int(v["n"]),
        entities=int(v["e"]),
        became_actionable=int(v["a"]),
        batches=int(b["n"]),
        abandoned=int(b["ab"]),
    )


def day_timeline(db, day: str) -> list[dict]:
    """The day's settled and abandoned batches in order: when, visits, spend and the running totals
    (what the Production page's spend-and-visits chart draws)."""
    rows = list(
        db.query(
            "SELECT b.run_id, b.batch, b.state, COALESCE(b.settled_at, b.created_at) AS at, "
            "CASE WHEN b.state = ? THEN b.reserved_usd ELSE COALESCE(b.spent_usd, b.reserved_usd) END AS usd, "
            "(SELECT COUNT(*) FROM production_visits v WHERE v.run_id = b.run_id AND v.batch = b.batch) AS visits "
            "FROM production_batches b WHERE b.day = ? ORDER BY at, b.run_id, b.batch",
            [RESERVED, day],
        )
    )
    out = []
    spent = 0.0
    visits = 0
    for r in rows:
        spent += float(r["usd"])
        visits += int(r["visits"])
        out.append({"at": float(r["at"]), "spent_usd": spent, "visits": visits, "state": r["state"]})
    return out
