"""Case 10 of issue 11: files any local user could read.

The data dir and every folder in it are 0700, every file 0600: ``ops.sqlite`` and its WAL, the
logs, the embedded graph's AOF/RDB, its config and log. Entry points set umask 077; the embedded
server is started with it whoever starts it; a data dir created before that is tightened.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine.catalogue.generator import generate_catalogue
from engine.core.settings import REPO_ROOT, Settings
from engine.store import falkor
from engine.store.graph import GraphStore

PY = sys.executable


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FALKORDB_URL", "DISCOVERY_GRAPH")}
    env.update(DISCOVERY_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO_ROOT))
    return env


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([PY, "-m", "engine", *args], env=_env(data_dir), cwd=data_dir.parent,
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def _modes(data_dir: Path) -> dict[str, int]:
    """Permission bits of the data dir and of everything under it (sockets excluded), by relative path."""
    found = {".": stat.S_IMODE(data_dir.stat().st_mode)}
    for path in data_dir.rglob("*"):
        st = path.lstat()
        if stat.S_ISSOCK(st.st_mode):
            continue
        found[path.relative_to(data_dir).as_posix()] = stat.S_IMODE(st.st_mode)
    return found


def _assert_private(data_dir: Path) -> dict[str, int]:
    modes = _modes(data_dir)
    wrong = {}
    for rel, mode in modes.items():
        expected = 0o700 if (data_dir / rel).is_dir() else 0o600
        if mode != expected:
            wrong[rel] = oct(mode)
    assert wrong == {}, f"not private: {wrong}"
    return modes


@pytest.fixture
def open_umask():
    """The most common umask (022), as a shell gives it, for the duration of a test."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.slow  # starts or kills real processes
def test_a_data_dir_created_by_the_cli_is_private(tmp_path, open_umask):
    """case 10: `seed --entities 5` and a discovery run on a new data dir leave nothing readable by others."""
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir)
    try:
        _cli(data_dir, "seed", "--entities", "5", "--seed", "7")
        _cli(data_dir, "discover", "--entity", generate_catalogue(5, 7)[0].id)
        _cli(data_dir, "store", "start")  # a server that keeps running: its socket and pidfile are there too
        modes = _assert_private(data_dir)
        for rel in ("ops.sqlite", "logs", "falkordb", "falkordb/falkordb.conf", "falkordb/falkordb.log",
                    "falkordb/falkordb.pid", "falkordb/appendonlydir"):  # fmt: skip
            assert rel in modes, sorted(modes)
        assert any(rel.startswith("logs/") for rel in modes), sorted(modes)
        assert any(rel.startswith("falkordb/appendonlydir/") for rel in modes), sorted(modes)
        sock = falkor.socket_path(settings)
        assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0
    finally:
        falkor.stop_embedded_server(settings)
    assert "falkordb/graph.rdb" in _assert_private(data_dir)  # SHUTDOWN SAVE wrote it


def test_wal_and_shm_of_the_operations_database_follow_its_mode(tmp_path, open_umask):
    """case 10: SQLite creates -wal and -shm with the database file's mode, whatever the umask of the opener."""
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir).ensure_dirs()
    db = settings.ops_db_path
    os.umask(0o077)
    sqlite3.connect(db).close()
    os.umask(0o022)
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        for name in ("ops.sqlite", "ops.sqlite-wal", "ops.sqlite-shm"):
            assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
    finally:
        conn.close()


@pytest.mark.slow  # starts or kills real processes
def test_the_embedded_server_writes_private_files_whoever_starts_it(tmp_path, open_umask):
    """case 10: a library caller with umask 022 (no entry point ran) still gets a 0600 AOF/RDB and config."""
    settings = Settings(data_dir=tmp_path / "data", graph_name="priv").ensure_dirs()
    try:
        with GraphStore.open(settings) as store:
            store.graph.query("CREATE (:P {v: 1})")
    finally:
        falkor.stop_embedded_server(settings)
    graph_files = {rel: mode for rel, mode in _modes(settings.data_dir).items() if rel.startswith("falkordb/")}
    assert "falkordb/graph.rdb" in graph_files and "falkordb/appendonlydir" in graph_files
    assert {rel: oct(m) for rel, m in graph_files.items() if m & 0o077} == {}


@pytest.mark.slow  # starts or kills real processes
def test_a_data_dir_created_before_is_tightened(tmp_path, open_umask):
    """case 10: a 0755 data dir with 0644 files from an older version is made private by the next command."""
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir)
    for folder in (data_dir, settings.log_dir, settings.graph_dir, data_dir / "configs", data_dir / "notes"):
        folder.mkdir(parents=True)
        folder.chmod(0o755)
    sqlite3.connect(settings.ops_db_path).close()
    (settings.log_dir / "metrics.jsonl").write_text("{}\n")
    (settings.graph_dir / "falkordb.log").write_text("old log\n")
    (data_dir / "configs" / "saved.json").write_text("{}")
    (data_dir / "notes" / "mine.txt").write_text("an operator's own file")
    assert stat.S_IMODE(settings.ops_db_path.stat().st_mode) == 0o644  # what an old version left
    try:
        _cli(data_dir, "stats")
    finally:
        falkor.stop_embedded_server(settings)
    modes = _modes(data_dir)
    assert modes["."] == 0o700
    for rel in ("logs", "falkordb", "configs"):
        assert modes[rel] == 0o700, rel
    for rel in ("ops.sqlite", "logs/metrics.jsonl", "falkordb/falkordb.log", "configs/saved.json"):
        assert modes[rel] == 0o600, rel
    # a folder of someone else's making is left as it was: the 0700 data dir already closes it
    assert modes["notes"] == 0o755 and modes["notes/mine.txt"] == 0o644
