"""OpsDB against real SQLite files in tmp dirs: WAL, migrations, transactions, audit, settings."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from engine.core.errors import ConfigError, StoreUnavailable
from engine.core.model import DomainError
from engine.core.settings import REPO_ROOT, Settings
from engine.store.opsdb import COMPONENT_MODULES, MIGRATIONS, Migration, OpsDB, collect_migrations, open_ops_db

PY = sys.executable

WIDGETS_V1 = Migration("widgets", 1, "widgets table", ("CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT)",))
WIDGETS_V2 = Migration("widgets", 2, "widget colour", ("ALTER TABLE widgets ADD COLUMN colour TEXT",))


class Ticks:
    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def tables(db: OpsDB) -> set[str]:
    with db.connect() as conn:
        return set(conn.table_names())


# --------------------------------------------------------------------------- file and migrations


def test_fresh_file_is_in_wal_mode_with_the_core_tables(tmp_path):
    db = OpsDB(tmp_path / "ops.sqlite")
    with db.connect() as conn:
        assert conn.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"schema_migrations", "audit", "settings_kv"} <= tables(db)
    assert db.schema_versions()["core"] == MIGRATIONS[-1].version


def test_open_ops_db_uses_the_data_dirs_file(tmp_path):
    settings = Settings(data_dir=tmp_path / "nested" / "data")
    db = open_ops_db(settings)
    assert db.path == settings.ops_db_path and settings.ops_db_path.exists()


def test_migrations_run_once_and_later_versions_apply_on_reopen(tmp_path):
    path = tmp_path / "ops.sqlite"
    first = OpsDB(path, migrations=[*MIGRATIONS, WIDGETS_V1])
    assert first.schema_versions()["widgets"] == 1
    # reopening with the same list applies nothing; with a new version, only that one
    assert OpsDB(path, migrations=[*MIGRATIONS, WIDGETS_V1]).migrate([*MIGRATIONS, WIDGETS_V1]) == []
    again = OpsDB(path, migrations=[*MIGRATIONS, WIDGETS_V1, WIDGETS_V2])
    assert again.schema_versions()["widgets"] == 2
    with again.connect() as conn:
        assert [c.name for c in conn["widgets"].columns] == ["id", "name", "colour"]
        assert conn.conn.execute("SELECT COUNT(*) FROM schema_migrations WHERE component='widgets'").fetchone()[0] == 2


def test_a_failing_migration_applies_nothing_of_itself_and_names_itself(tmp_path):
    broken = Migration("widgets", 2, "half good", (
        "CREATE TABLE gadgets (id INTEGER PRIMARY KEY)",
        "ALTER TABLE no_such_table ADD COLUMN x TEXT",
    ))  # fmt: skip
    path = tmp_path / "ops.sqlite"
    OpsDB(path, migrations=[*MIGRATIONS, WIDGETS_V1])
    with pytest.raises(ConfigError, match=r"migration widgets v2 \(half good\) failed.*no_such_table"):
        OpsDB(path, migrations=[*MIGRATIONS, WIDGETS_V1, broken])
    db = OpsDB(path, migrations=[*MIGRATIONS, WIDGETS_V1])
    assert "gadgets" not in tables(db)  # the first statement was rolled back with the second
    assert db.schema_versions()["widgets"] == 1


def test_two_migrations_claiming_one_version_are_refused():
    with pytest.raises(ConfigError, match="two migrations claim widgets v1"):
        collect_migrations_from([WIDGETS_V1, Migration("widgets", 1, "other", ("SELECT 1",))])


def collect_migrations_from(migrations):
    """collect_migrations over a throwaway module holding ``migrations``."""
    import types

    module = types.ModuleType("engine._test_migrations_module")
    module.MIGRATIONS = migrations
    sys.modules[module.__name__] = module
    try:
        return collect_migrations([module.__name__])
    finally:
        del sys.modules[module.__name__]


def test_a_misspelt_component_module_fails_instead_of_being_skipped():
    assert [m.component for m in collect_migrations(["engine.store.opsdb"])] == ["core"] * len(MIGRATIONS)
    with pytest.raises(ModuleNotFoundError, match="engine.no_such_component"):
        collect_migrations(["engine.store.opsdb", "engine.no_such_component"])


def test_every_component_module_exists_and_holds_migrations():
    for name in COMPONENT_MODULES:
        assert collect_migrations([name]), name


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(component="", version=1, name="x", statements=("SELECT 1",)), "give a component name"),
        (dict(component="w", version=0, name="x", statements=("SELECT 1",)), "version >= 1"),
        (dict(component="w", version=1, name="x", statements="SELECT 1"), "tuple of SQL strings"),
    ],
)
def test_malformed_migration_is_a_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Migration(**kwargs)


_OPENER = textwrap.dedent(
    """
    import sys
    from engine.store.opsdb import MIGRATIONS, Migration, OpsDB
    print("ready", flush=True)
    sys.stdin.readline()
    extra = [Migration("widgets", v, f"v{v}", (f"ALTER TABLE widgets ADD COLUMN c{v} TEXT",) if v > 1 else
                       ("CREATE TABLE widgets (id INTEGER PRIMARY KEY)",)) for v in range(1, 6)]
    db = OpsDB(sys.argv[1], migrations=[*MIGRATIONS, *extra])
    for i in range(20):
        db.audit("racer", "race.write", sys.argv[2], {"i": i})
    print("done", flush=True)
    """
)


@pytest.mark.slow  # starts or kills real processes
def test_processes_opening_a_fresh_file_at_once_migrate_once_and_lose_no_write(tmp_path):
    path = tmp_path / "ops.sqlite"
    procs = [
        subprocess.Popen([PY, "-c", _OPENER, str(path), f"p{n}"], cwd=REPO_ROOT, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for n in range(4)
    ]  # fmt: skip
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0 and out.strip() == "done", err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    db = OpsDB(path, migrations=[])
    with db.connect() as conn:
        rows = conn.conn.execute("SELECT component, version, COUNT(*) FROM schema_migrations GROUP BY 1, 2").fetchall()
        columns = [c.name for c in conn["widgets"].columns]
    assert {(c, v) for c, v, _ in rows} >= {("widgets", v) for v in range(1, 6)}
    assert all(n == 1 for _, _, n in rows)
    assert columns == ["id", "c2", "c3", "c4", "c5"]
    audit = db.list_audit(limit=1000, action="race.write")
    assert sorted((a["target"], a["details"]["i"]) for a in audit) == sorted(
        (f"p{n}", i) for n in range(4) for i in range(20)
    )


# --------------------------------------------------------------------------- transactions


def test_transaction_commits_on_success_and_rolls_back_everything_on_error(tmp_path):
    db = OpsDB(tmp_path / "ops.sqlite", migrations=[*MIGRATIONS, WIDGETS_V1])
    with db.transaction() as tx:
        tx["widgets"].insert({"id": 1, "name": "kept"})
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx["widgets"].insert({"id": 2, "name": "lost"})
        db.audit("test", "widget.add", "2", db=tx)
        raise RuntimeError("boom")
    with db.connect() as conn:
        assert [r["name"] for r in conn["widgets"].rows] == ["kept"]
    assert db.list_audit(action="widget.add") == []


def test_a_transaction_left_open_on_a_plain_connection_is_not_half_kept(tmp_path):
    db = OpsDB(tmp_path / "ops.sqlite", migrations=[*MIGRATIONS, WIDGETS_V1])
    with db.connect() as conn:
        conn.conn.execute("BEGIN")
        conn.conn.execute("INSERT INTO widgets (id, name) VALUES (1, 'abandoned')")
    with db.connect() as conn:
        assert conn["widgets"].count == 0


def test_a_writer_holding_the_lock_past_the_busy_timeout_gives_a_one_line_error(tmp_path):
    path = tmp_path / "ops.sqlite"
    db = OpsDB(path, busy_timeout_s=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable) as info, db.transaction():
            pass
        assert "stayed locked" in str(info.value) and "\n" not in str(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    db.audit("test", "after.lock")  # the lock is gone: writes go through again
    assert db.list_audit(action="after.lock")


def test_unusable_path_is_a_store_unavailable_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="a-file"):
        OpsDB(blocker / "ops.sqlite")


# --------------------------------------------------------------------------- audit and settings


def test_audit_rows_come_back_newest_first_with_details_and_filters(tmp_path):
    db = OpsDB(tmp_path / "ops.sqlite", clock=Ticks())
    first = db.audit("console:alice", "rollout.pause", "run-1", {"reason": "looks odd", "n": 3})
    second = db.audit("worker", "rollout.promote", "run-1", {"stage": "pilot"})
    db.audit("cli", "seed", "catalogue:7")
    assert second > first
    rows = db.list_audit()
    assert [r["action"] for r in rows] == ["seed", "rollout.promote", "rollout.pause"]
    assert rows[2]["details"] == {"reason": "looks odd", "n": 3} and rows[2]["actor"] == "console:alice"
    assert rows[0]["at"] > rows[1]["at"] > rows[2]["at"]
    assert [r["action"] for r in db.list_audit(target="run-1")] == ["rollout.promote", "rollout.pause"]
    assert [r["id"] for r in db.list_audit(actor="worker")] == [second]
    assert len(db.list_audit(limit=1)) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (("", "x"), "needs an actor"),
        (("me", " "), "needs an action"),
        (("me", "x", "", {"f": object()}), "not JSON-able"),
    ],
)
def test_bad_audit_is_refused_and_writes_nothing(tmp_path, args, message):
    db = OpsDB(tmp_path / "ops.sqlite")
    with pytest.raises(DomainError, match=message):
        db.audit(*args)
    assert db.list_audit() == []


def test_settings_round_trip_and_replace(tmp_path):
    db = OpsDB(tmp_path / "ops.sqlite")
    assert db.get_setting("rollout.candidate", "none") == "none"
    db.set_setting("rollout.candidate", {"path": "configs/a.json", "score": 0.5})
    db.set_setting("rollout.candidate", {"path": "configs/b.json", "score": 0.75})
    db.set_setting("alerts.interval_s", 60)
    assert db.get_setting("rollout.candidate") == {"path": "configs/b.json", "score": 0.75}
    assert db.list_settings() == {
        "alerts.interval_s": 60,
        "rollout.candidate": {"path": "configs/b.json", "score": 0.75},
    }
    with pytest.raises(DomainError, match="not JSON-able"):
        db.set_setting("bad", float("nan"))
    assert db.get_setting("bad") is None


def test_a_failing_disk_is_an_outage_and_a_wrong_statement_is_a_bug(tmp_path):
    """An outage of the database pauses work (StoreUnavailable, one line); a bad statement keeps its traceback."""
    import sqlite3

    from engine.core.errors import StoreUnavailable

    ops = OpsDB(tmp_path / "ops.sqlite")
    with pytest.raises(StoreUnavailable, match="disk I/O error"), ops.transaction():
        raise sqlite3.OperationalError("disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="no such column"), ops.connect() as db:
        db.conn.execute("SELECT nope FROM audit")
