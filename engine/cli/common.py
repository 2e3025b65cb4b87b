"""What every command module shares: the stores of the data dir and who is acting.

Each command opens its stores through these helpers, so the data dir always comes
from the environment (``load_settings``) and every audit row a command writes
names the same actor.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager

from engine.core.settings import Settings, load_settings
from engine.jobs.queue import freeing_frozen_workers
from engine.store.graph import GraphStore
from engine.store.opsdb import OpsDB, open_ops_db


def actor() -> str:
    """Who runs this command, as audit rows and decision records name them: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"


def open_ops(settings: Settings | None = None) -> OpsDB:
    """The OpsDB of ``settings`` (default: the environment's data dir), its folders created.

    A database that a stopped worker keeps locked is freed (the worker killed) and opened once more, so
    `worker --reap` and `rollout rollback` work whatever point a worker was frozen at.
    """
    settings = (settings or load_settings()).ensure_dirs()
    return freeing_frozen_workers(settings.ops_db_path, lambda: open_ops_db(settings))


@contextmanager
def open_graph(settings: Settings) -> Iterator[GraphStore]:
    """The GraphStore of ``settings``, closed when the block ends."""
    store = GraphStore.open(settings)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def stores(settings: Settings) -> Iterator[tuple[GraphStore, OpsDB]]:
    """(graph, ops) of ``settings``; the graph is closed when the block ends."""
    ops = open_ops(settings)
    with open_graph(settings) as graph:
        yield graph, ops
