"""Shared fixtures (owned by the stores engineer; others depend on these names).

``settings``  Settings on ``tmp_path / "data"`` with its dirs created
``graph``     an open GraphStore on it; closed and its embedded server stopped at teardown
``ops``       an OpsDB on ``settings.ops_db_path`` (all components migrated)

A session finalizer stops every embedded FalkorDB server started under this
session's pytest tmp dirs (by fixtures, by tests, or by subprocesses they
spawned), so CI never hangs on a stray daemon.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.settings import Settings, load_settings
from engine.store import falkor
from engine.store.graph import GraphStore
from engine.store.opsdb import OpsDB

#: graph name used by the fixtures (one embedded server per test's data dir anyway)
TEST_GRAPH = "discovery_test"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a fresh data dir; always the embedded store, whatever the environment says."""
    return Settings(data_dir=tmp_path / "data", falkordb_url=None, graph_name=TEST_GRAPH).ensure_dirs()


@pytest.fixture
def graph(settings: Settings):
    """An open GraphStore on ``settings``; the embedded server is stopped at teardown, even on failure."""
    try:
        store = GraphStore.open(settings)
    except BaseException:
        falkor.stop_embedded_server(settings)
        raise
    try:
        yield store
    finally:
        try:
            store.close()
        finally:
            falkor.stop_embedded_server(settings)


@pytest.fixture
def ops(settings: Settings) -> OpsDB:
    return OpsDB(settings.ops_db_path)


@pytest.fixture
def seed_graph(graph: GraphStore) -> Callable[..., GraphStore]:
    """Factory: ``seed_graph(n, seed=7, clock=None)`` loads n catalogue entities (shipped templates) into
    ``graph`` and returns it."""

    def seed(n: int, seed: int = 7, *, clock: Callable[[], float] | None = None) -> GraphStore:
        seed_catalogue(graph, n, seed, load_templates(), **({} if clock is None else {"clock": clock}))
        return graph

    return seed


@pytest.fixture
def console_env(settings: Settings, monkeypatch):
    """The environment an AppTest console reads, pointed at ``settings``' data dir; yields the console's Settings.

    At teardown the console's shared Services are released and the embedded server stopped.
    """
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    monkeypatch.delenv("DISCOVERY_GRAPH", raising=False)
    env_settings = load_settings()
    yield env_settings
    from console.services import _shared_services

    _shared_services.clear()
    falkor.stop_embedded_server(env_settings)


def stop_servers_under(root: Path) -> list[int]:
    """Stop every embedded server whose data dir lies under ``root``; returns the pids found."""
    stopped: list[int] = []
    root = root.resolve()
    for pidfile in root.rglob(falkor.PID_NAME):
        graph_dir = pidfile.parent
        pid = falkor._read_pid(graph_dir)
        # graph_dir is <data_dir>/falkordb; Settings only needs the data dir to find it
        if falkor.stop_embedded_server(Settings(data_dir=graph_dir.parent)) and pid:
            stopped.append(pid)
    # belt and braces: a server whose pidfile is gone (e.g. deleted by a test) but which
    # still runs with its working dir (the graph dir) under root
    for proc in psutil.process_iter(["name", "cwd"]):
        try:
            if "redis-server" not in (proc.info["name"] or "") or not proc.info["cwd"]:
                continue
            if Path(proc.info["cwd"]).resolve().is_relative_to(root):
                proc.kill()
                proc.wait(10)
                stopped.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.TimeoutExpired):
            continue
    return stopped


@pytest.fixture(scope="session", autouse=True)
def _no_stray_falkordb(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.getbasetemp()
    yield
    stray = stop_servers_under(base)
    if stray and os.environ.get("DISCOVERY_REPORT_STRAY_SERVERS"):
        print(f"\nconftest: stopped {len(stray)} embedded FalkorDB server(s) left running: {stray}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On a failure, attach the tail of the test's embedded FalkorDB log (why a server went away)."""
    report = yield
    if report.failed:
        settings = getattr(item, "funcargs", {}).get("settings")
        log = settings.graph_dir / falkor.LOG_NAME if isinstance(settings, Settings) else None
        if log is not None and log.is_file():
            try:
                tail = log.read_text(errors="replace").splitlines()[-25:]
            except OSError:
                tail = []
            report.sections.append(("embedded FalkorDB log (last lines)", "\n".join(tail)))
    return report
