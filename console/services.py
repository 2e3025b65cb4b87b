"""The stores a console session talks to, opened once per process and shared.

``get_services()`` is what a page calls first. It reads the settings from the
environment, and opens the GraphStore and the OpsDB through
``st.cache_resource``, keyed on those settings, so every page and every
browser tab of one console share one connection, while a test that points
``DISCOVERY_DATA_DIR`` somewhere else gets its own. Nothing connects at import.

``get_cache_service(services)`` opens one engine.cache.service.CacheService
per console process and store (``st.cache_resource``), started: its daemon
thread publishes the statistics, carries out CLI requests and warms
periodically. Pages read hypotheses through ``cached_graph(services)`` (its
CachedGraph) so the cache sees their traffic; the Cache page shows this cache's
own statistics.

``stop_on_error()`` is the console's error edge: a ``DiscoveryError`` (store
unreachable, unknown entity, bad config) becomes ``st.error(message)`` and
the page stops there (as plain text: a message often names what a store holds,
console.text.md_escape); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import streamlit as st
from redis.exceptions import RedisError

from console.text import md_escape
from engine.cache.service import CacheService
from engine.core.errors import DiscoveryError
from engine.core.settings import Settings, load_settings
from engine.store.graph import GraphStore
from engine.store.opsdb import OpsDB, open_ops_db

T = TypeVar("T")


@dataclass(frozen=True)
class Services:
    """What pages call: settings, the domain graph and the operations database."""

    settings: Settings
    graph: GraphStore
    ops: OpsDB

    def close(self) -> None:
        self.graph.close()


def open_services(settings: Settings) -> Services:
    """Open both stores for ``settings`` (plain function: no Streamlit involved)."""
    settings.ensure_dirs()
    ops = open_ops_db(settings)
    graph = GraphStore.open(settings)
    return Services(settings=settings, graph=graph, ops=ops)


def _release(services: Services) -> None:
    with suppress(RedisError, OSError):
        services.close()


def _reachable(services: Services) -> bool:
    """One PING per page run: a graph server that was stopped or restarted (`engine store stop`,
    `make run` exiting in another terminal) makes the cache open a fresh client, which starts the
    embedded server again, instead of serving a dead connection until the console restarts."""
    try:
        return bool(services.graph.db.connection.ping())
    except (RedisError, OSError):
        return False


@st.cache_resource(show_spinner="Connecting to the stores…", on_release=_release, validate=_reachable)
def _shared_services(data_dir: str, falkordb_url: str | None, graph_name: str) -> Services:
    # Keyed on plain strings: one Services per distinct store location.
    return open_services(Settings(data_dir=Path(data_dir), falkordb_url=falkordb_url, graph_name=graph_name))


def _stop_cache(service: CacheService) -> None:
    service.stop()


@st.cache_resource(show_spinner=False, on_release=_stop_cache)
def _shared_service(data_dir: str, graph_name: str, services_id: int, _services: Services) -> CacheService:
    # keyed on the Services object too: when services reconnect, the cache starts over with them
    return CacheService(_services.graph, _services.ops).start()


def get_cache_service(services: Services) -> CacheService:
    """This console process's CacheService for ``services``' store, started on first use."""
    return _shared_service(str(services.settings.data_dir), services.settings.graph_name, id(services), services)


_ROUTE_CHECKED = "_console_route_checked"


def _route_through_navigation() -> None:
    """Make sure a page runs inside streamlit_app.py's st.navigation, never on its own.

    Streamlit decides once per server process, from the folder name alone, that an
    app with a ``pages/`` directory is an old-style (v1) multipage app, and changes
    its mind only when st.navigation is first called. So a browser whose first
    request after a server start is a page URL (``/hypotheses``) got that page run
    bare: file-name sidebar, no page config. Flip the flag and rerun, so the entry
    script runs and routes the URL to the same page through st.navigation.

    Checked on a session's first run only: that run never carries a click, so the
    rerun loses nothing (AppTest resets the flag before each of its runs; checking
    again there would swallow the clicks it simulates).
    """
    from streamlit.runtime.pages_manager import PagesManager

    if st.session_state.get(_ROUTE_CHECKED):
        return
    st.session_state[_ROUTE_CHECKED] = True
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def get_services() -> Services:
    """The shared Services for the current environment; on a store error the page shows it and stops."""
    _route_through_navigation()
    settings = load_settings()
    with stop_on_error():
        return _shared_services(str(settings.data_dir), settings.falkordb_url, settings.graph_name)


def cached_graph(services: Services):
    """The console's CachedGraph (get_cache_service), synced first with what other processes wrote
    (rollout worker, CLI, batch updates): one point read of the graph's write feed when nothing
    changed. Read hypotheses through it, and write through it, so the cache stays right."""
    with stop_on_error():
        return get_cache_service(services).reader()
    raise AssertionError("unreachable: st.stop() raises")  # pragma: no cover


@contextmanager
def stop_on_error() -> Iterator[None]:
    """Turn a DiscoveryError raised inside the block into st.error + st.stop."""
    try:
        yield
    except DiscoveryError as exc:
        st.error(md_escape(exc), icon=":material/error:")
        st.stop()


def call[T](fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)``, with a DiscoveryError shown on the page instead of a traceback."""
    with stop_on_error():
        return fn(*args, **kwargs)
    raise AssertionError("unreachable: st.stop() raises")  # pragma: no cover
