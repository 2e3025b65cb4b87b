"""OpsDB: the operations state in SQLite (through sqlite-utils), with per-component migrations.

One SQLite file per data dir (``settings.ops_db_path``), WAL mode, a busy
timeout, and short-lived connections: every operation opens a connection,
does its work and closes it, so the console, CLIs and workers can share the
file.

No process can hold the file hostage by stopping at the wrong moment:

* **A fresh file is born in WAL mode.** Switching a file to WAL takes an
  exclusive lock that SQLite refuses at once (no busy handler) while another
  process is creating the same file. So the file is never created in place:
  it is built under a private temporary name (WAL switched, nobody else can
  see it) and linked into place with ``os.link``, which fails when another
  process won the race; the loser opens the winner's file, already in WAL.
  Connections open with ``mode=rw``, so no one creates an empty file by
  accident.
* **Opening takes no lock.** Applied migrations are read first; the write
  lock is taken only for a migration that is missing.
* **A stopped process that holds a lock can be found without the database.**
  SQLite's locks are POSIX record locks, which the kernel lists with their
  owner's pid (``/proc/locks``): ``lock_holders`` names the processes that
  hold one on this file, its ``-wal`` or its ``-shm``. A process stopped
  inside a write transaction, or while its last connection checkpoints on
  close, keeps everyone else out; the job layer kills such a process when it
  is one of our stopped workers (engine.jobs.queue.kill_frozen_workers), and
  the database is free again.

``transaction()`` is the one helper for multi-statement writes
(``BEGIN IMMEDIATE`` .. ``COMMIT``, ``ROLLBACK`` on error); sqlite-utils
calls made inside it nest as savepoints.

Migrations belong to the component that owns the tables: a module listed in
COMPONENT_MODULES defines ``MIGRATIONS: list[Migration]``. Each migration is
applied in its own transaction together with its row in
``schema_migrations``, so it runs exactly once even when several processes
open a fresh file at the same moment.
"""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from engine.core.errors import ConfigError, StoreUnavailable
from engine.core.model import DomainError
from engine.core.settings import Settings

#: modules that may own tables; one that does not exist (yet) is skipped
COMPONENT_MODULES: tuple[str, ...] = (
    "engine.store.opsdb",
    "engine.monitoring.events",
    "engine.monitoring.alerts",
    "engine.jobs.queue",
    "engine.rollout.records",
    "engine.tuning.store",
    "engine.cache.stats",
    "engine.store.outbox",
    "engine.notify.store",
    "engine.production.records",
    "engine.store.access",
)

BUSY_TIMEOUT_S = 10.0
#: pause between two attempts to switch a fresh file to WAL while another process holds it
WAL_RETRY_S = 0.02

_SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL,
    PRIMARY KEY (component, version)
)
"""


@dataclass(frozen=True)
class Migration:
    """One schema step of one component; ``statements`` run in order inside one transaction."""

    component: str
    version: int
    name: str
    statements: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.component or not isinstance(self.version, int) or self.version < 1:
            raise ConfigError(
                f"migration {self.component!r} v{self.version!r} is invalid: give a component name and a version >= 1"
            )
        if isinstance(self.statements, str):
            raise ConfigError(
                f"migration {self.component} v{self.version}: statements must be a tuple of SQL strings, not one string"
            )


#: the "core" component: the audit log and a small key/value store for config
MIGRATIONS: list[Migration] = [
    Migration(
        "core",
        1,
        "audit log and settings_kv",
        (
            """
            CREATE TABLE audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at REAL NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                target TEXT NOT NULL DEFAULT '',
                details TEXT NOT NULL DEFAULT '{}'
            )
            """,
            "CREATE INDEX audit_at ON audit (at)",
            "CREATE INDEX audit_action ON audit (action)",
            """
            CREATE TABLE settings_kv (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at REAL NOT NULL
            )
            """,
        ),
    ),
    Migration(
        "core",
        2,
        "the verified identity of every audit row",
        (
            "ALTER TABLE audit ADD COLUMN actor_role TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE audit ADD COLUMN actor_verified_by TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE audit ADD COLUMN actor_email TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE audit ADD COLUMN actor_issuer TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE audit ADD COLUMN actor_subject TEXT NOT NULL DEFAULT ''",
            "CREATE INDEX audit_actor ON audit (actor, at)",
        ),
    ),
]

#: the identity columns of an audit row (engine.core.access.Actor.audit_fields)
AUDIT_IDENTITY_COLUMNS = ("actor_role", "actor_verified_by", "actor_email", "actor_issuer", "actor_subject")


def collect_migrations(modules: Iterable[str] = COMPONENT_MODULES) -> list[Migration]:
    """MIGRATIONS of every listed module, checked and sorted by (component, version).

    The modules are named, not imported, here: each area owns its tables, and the store
    below them must not import the areas above it (the layering rule).
    """
    found: list[Migration] = []
    for name in modules:
        found.extend(getattr(importlib.import_module(name), "MIGRATIONS", ()))
    seen: dict[tuple[str, int], str] = {}
    for m in found:
        if not isinstance(m, Migration):
            raise ConfigError(f"MIGRATIONS must hold engine.store.opsdb.Migration values, got {m!r}")
        key = (m.component, m.version)
        if key in seen:
            raise ConfigError(
                f"two migrations claim {m.component} v{m.version} ({seen[key]!r} and {m.name!r}): "
                "give each a new version"
            )
        seen[key] = m.name
    return sorted(found, key=lambda m: (m.component, m.version))


class OpsDB:
    """The operations database. Cheap to construct after the first time (migrations are recorded)."""

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        modules: Iterable[str] = COMPONENT_MODULES,
        migrations: Iterable[Migration] | None = None,
    ):
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the directory of {self.path} ({exc}): check DISCOVERY_DATA_DIR"
            ) from exc
        self._enable_wal()
        self.migrate(collect_migrations(modules) if migrations is None else list(migrations))

    # ------------------------------------------------------------------ connections

    def _open(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: no implicit BEGIN, we say when a transaction starts;
            # sqlite-utils' atomic() issues its own BEGIN/SAVEPOINT. mode=rw: never create the file here
            # (a fresh file is made by _create_in_wal_mode, already in WAL mode).
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=rw",
                uri=True,
                timeout=self._busy_timeout_s,
                isolation_level=None,
            )
            _configure(conn, self._busy_timeout_s)
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"cannot open the operations database {self.path} ({exc}): check the path and its permissions"
            ) from exc
        return conn

    def _create_in_wal_mode(self) -> None:
        """Make the file if it does not exist: built privately in WAL mode, then linked into place at once."""
        if self.path.exists():
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            finally:
                conn.close()
            if str(mode).lower() != "wal":
                raise StoreUnavailable(
                    f"{self.path.parent} refused WAL mode (got {mode!r}): put DISCOVERY_DATA_DIR on a local disk"
                )
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process created it first: use theirs
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"cannot create the operations database {self.path} ({exc}): check the directory's permissions"
            ) from exc
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the operations database {self.path} ({exc}): "
                "check the directory's permissions (the file system must support hard links)"
            ) from exc
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                leftover.unlink(missing_ok=True)

    def _enable_wal(self) -> None:
        # A file made by this code is in WAL mode from birth; one made by an older version may not be yet.
        # Switching takes an exclusive lock, and SQLite answers "database is locked" at once, without its
        # busy handler, when another process holds the file: retry within the busy timeout.
        self._create_in_wal_mode()
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            conn = self._open()
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"cannot switch {self.path} to WAL mode ({exc}): is the file on a local disk?"
                    ) from exc
            except sqlite3.Error as exc:
                raise StoreUnavailable(
                    f"cannot switch {self.path} to WAL mode ({exc}): is the file on a local disk?"
                ) from exc
            finally:
                conn.close()
            time.sleep(WAL_RETRY_S)
        if str(mode).lower() != "wal":
            raise StoreUnavailable(
                f"{self.path} refused WAL mode (got {mode!r}): put DISCOVERY_DATA_DIR on a local disk"
            )

    @contextmanager
    def connect(self) -> Iterator[sqlite_utils.Database]:
        """A short-lived connection (WAL, busy timeout). Each statement commits on its own
        unless you open a transaction (use ``transaction()``; ``db.atomic()`` also works)."""
        conn = self._open()
        db = sqlite_utils.Database(conn)
        try:
            yield db
        except sqlite3.OperationalError as exc:
            if not is_outage(exc):
                raise  # a bug (no such column, a syntax error): keep its traceback
            raise StoreUnavailable(
                f"operations database {self.path} failed ({exc}): check the disk and its permissions, then retry"
            ) from exc
        finally:
            if conn.in_transaction:  # a transaction left open by the caller is abandoned, never half-kept
                conn.rollback()
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """``BEGIN IMMEDIATE`` .. ``COMMIT``; ``ROLLBACK`` when the block raises.

        IMMEDIATE takes the write lock up front (waiting up to the busy
        timeout), so two writers never deadlock upgrading read locks.
        """
        with self.connect() as db:
            try:
                db.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(
                    f"operations database {self.path} stayed locked for {self._busy_timeout_s:g}s ({exc}): "
                    "another process holds a long write; retry"
                ) from exc
            try:
                yield db
            except BaseException:
                if db.conn.in_transaction:
                    db.conn.execute("ROLLBACK")
                raise
            else:
                db.conn.execute("COMMIT")

    # ------------------------------------------------------------------ migrations

    def migrate(self, migrations: Iterable[Migration]) -> list[Migration]:
        """Apply the migrations not recorded yet, each in its own transaction with its record.

        Returns the ones applied by this call (others may have been applied
        concurrently by another process; they are skipped).
        """
        # Read first, without a lock: opening a migrated file must never wait for the write lock, which a
        # stopped process may hold (reap and rollback open the database to break exactly that).
        with self.connect() as db:
            has_table = db.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            ).fetchone()
            done = (
                {(c, v) for c, v in db.conn.execute("SELECT component, version FROM schema_migrations")}
                if has_table
                else set()
            )
            if not has_table:
                db.conn.execute(_SCHEMA_MIGRATIONS_DDL)
        applied: list[Migration] = []
        for m in sorted(migrations, key=lambda m: (m.component, m.version)):
            if (m.component, m.version) in done:
                continue
            with self.transaction() as db:
                row = db.conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE component = ? AND version = ?", (m.component, m.version)
                ).fetchone()
                if row:
                    continue
                for statement in m.statements:
                    try:
                        db.conn.execute(statement)
                    except sqlite3.Error as exc:
                        raise ConfigError(
                            f"migration {m.component} v{m.version} ({m.name}) failed: {exc}; "
                            "nothing of it was applied, fix the statement"
                        ) from exc
                db.conn.execute(
                    "INSERT INTO schema_migrations (component, version, name, applied_at) VALUES (?, ?, ?, ?)",
                    (m.component, m.version, m.name, self._clock()),
                )
                applied.append(m)
        return applied

    def schema_versions(self) -> dict[str, int]:
        """Highest applied migration version per component."""
        with self.connect() as db:
            rows = db.conn.execute(
                "SELECT component, MAX(version) FROM schema_migrations GROUP BY component ORDER BY component"
            ).fetchall()
        return {component: version for component, version in rows}

    # ------------------------------------------------------------------ audit

    def audit(
        self,
        actor: Any,
        action: str,
        target: str = "",
        details: dict[str, Any] | None = None,
        *,
        db: sqlite_utils.Database | None = None,
    ) -> int:
        """Record an operator or system action; returns its id.

        ``actor`` is an ``engine.core.access.Actor`` (its verified identity goes into the identity
        columns) or, for the engine's own rows, a name such as ``worker``. Pass ``db`` (from your own
        ``transaction()``) to write the audit row atomically with your change.
        """
        fields_of = getattr(actor, "audit_fields", None)
        identity = fields_of() if callable(fields_of) else {}
        name = str(actor) if actor is not None else ""
        if not name.strip():
            raise DomainError("audit needs an actor (who acted, e.g. 'alice@example.com' or 'worker')")
        if not isinstance(action, str) or not action.strip():
            raise DomainError("audit needs an action (what was done, e.g. 'rollout.rollback')")
        try:
            details_json = json.dumps(details or {}, sort_keys=True, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DomainError(f"audit details for {action!r} are not JSON-able ({exc})") from None
        row = (
            self._clock(),
            name,
            action,
            str(target),
            details_json,
            *(str(identity.get(c) or "") for c in AUDIT_IDENTITY_COLUMNS),
        )
        sql = (
            "INSERT INTO audit (at, actor, action, target, details, "
            + ", ".join(AUDIT_IDENTITY_COLUMNS)
            + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if db is not None:
            return inserted_rowid(db.conn.execute(sql, row))
        with self.transaction() as tx:
            return inserted_rowid(tx.conn.execute(sql, row))

    def list_audit(
        self,
        limit: int = 100,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        action_prefix: str | None = None,
        person: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; ``details`` decoded.

        Exact filters on actor, action, target; ``since``/``until`` bound the time (epoch seconds);
        ``action_prefix`` keeps actions starting with it (``rollout.``); ``person`` matches the actor
        or the verified e-mail, case-insensitively, as a substring.
        """
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("actor", actor), ("action", action), ("target", target)):
            if value is not None:
                where.append(f"{column} = ?")  # column names come from this fixed tuple
                params.append(value)
        if since is not None:
            where.append("at >= ?")
            params.append(float(since))
        if until is not None:
            where.append("at < ?")
            params.append(float(until))
        if action_prefix:
            where.append("substr(action, 1, ?) = ?")
            params.extend([len(action_prefix), action_prefix])
        if person:
            where.append("(instr(lower(actor), ?) > 0 OR instr(lower(actor_email), ?) > 0)")
            params.extend([person.lower(), person.lower()])
        cols = "id, at, actor, action, target, details, " + ", ".join(AUDIT_IDENTITY_COLUMNS)
        sql = f"SELECT {cols} FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(int(limit))
        with self.connect() as db:
            rows = db.conn.execute(sql, params).fetchall()
        out = []
        for i, at, ac, an, t, d, *identity in rows:
            rec = {"id": i, "at": at, "actor": ac, "action": an, "target": t, "details": json.loads(d)}
            rec.update(zip(AUDIT_IDENTITY_COLUMNS, identity, strict=True))
            out.append(rec)
        return out

    # ------------------------------------------------------------------ small config

    def get_setting(self, key: str, default: Any = None) -> Any:
        """A JSON value from settings_kv, or ``default``."""
        with self.connect() as db:
            row = db.conn.execute("SELECT value FROM settings_kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: Any, *, db: sqlite_utils.Database | None = None) -> None:
        """Store a JSON-able value under ``key`` (replacing any previous one)."""
        try:
            text = json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DomainError(f"setting {key!r} is not JSON-able ({exc})") from None
        sql = (
            "INSERT INTO settings_kv (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
        )
        if db is not None:
            db.conn.execute(sql, (key, text, self._clock()))
            return
        with self.transaction() as tx:
            tx.conn.execute(sql, (key, text, self._clock()))

    def list_settings(self) -> dict[str, Any]:
        with self.connect() as db:
            rows = db.conn.execute("SELECT key, value FROM settings_kv ORDER BY key").fetchall()
        return {k: json.loads(v) for k, v in rows}


#: what an error says when another process holds the lock (as opposed to a broken disk)
_LOCK_MARKERS = ("locked", "locking protocol", "busy")
#: what an sqlite3.OperationalError says when the machinery failed, not the statement
_OUTAGE_MARKERS = (*_LOCK_MARKERS, "disk i/o", "disk is full", "unable to open", "readonly database")


def is_lock_error(exc: BaseException) -> bool:
    """Another process holds the database's lock (the message of a sqlite3 error or of our StoreUnavailable)."""
    text = str(exc).lower()
    return any(marker in text for marker in _LOCK_MARKERS)


def lock_holders(path: Path | str) -> set[int]:
    """Pids of the other processes that hold a POSIX lock on the database file, its -wal or its -shm.

    Read from the kernel (``/proc/locks``), not from the database, so it works while the database is
    locked. Empty where the kernel does not list locks (not Linux).
    """
    base = Path(path)
    inodes: set[tuple[int, int, int]] = set()
    for name in (base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm")):
        try:
            st = name.stat()
        except OSError:
            continue
        inodes.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return set()
    holders: set[int] = set()
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] == "->":  # "->" lines are processes waiting for a lock, not holding it
            continue
        try:
            pid = int(parts[4])
            major, minor, inode = parts[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if key in inodes and pid != os.getpid():
            holders.add(pid)
    return holders


def is_outage(exc: sqlite3.Error) -> bool:
    """The database (its file, disk or lock) failed, as opposed to a wrong statement."""
    text = str(exc).lower()
    return any(marker in text for marker in _OUTAGE_MARKERS)


def _configure(conn: sqlite3.Connection, busy_timeout_s: float) -> None:
    """The settings of every connection."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode, much faster


def inserted_rowid(cursor: sqlite3.Cursor) -> int:
    """The rowid of the row the INSERT just run on ``cursor`` wrote.

    sqlite3 types ``lastrowid`` as optional because it is None before any INSERT; after one it is always set, so
    None here means the statement was not an INSERT, which is a bug in the caller.
    """
    rowid = cursor.lastrowid
    if rowid is None:
        raise RuntimeError("inserted_rowid: the statement run on this cursor was not an INSERT")
    return rowid


def open_ops_db(settings: Settings) -> OpsDB:
    """The OpsDB of a data dir (creates and migrates it on first use)."""
    return OpsDB(settings.ops_db_path)
