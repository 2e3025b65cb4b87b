"""A seeded data dir that AppTest consoles open through the environment, for page tests.

``seeded_console_env(tmp_path_factory, name, entities, seed)`` points
DISCOVERY_DATA_DIR at a fresh data dir holding a seeded catalogue and yields
``(settings, store)``. On exit it releases what the console opened in this
process (its shared Services and the cache service's thread), closes the
store and stops that dir's embedded FalkorDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.settings import Settings, load_settings
from engine.store import falkor
from engine.store.graph import GraphStore


@contextmanager
def seeded_console_env(tmp_path_factory, name: str, entities: int, seed: int) -> Iterator[tuple[Settings, GraphStore]]:
    data_dir = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISCOVERY_DATA_DIR", str(data_dir))
        mp.delenv("FALKORDB_URL", raising=False)
        mp.delenv("DISCOVERY_GRAPH", raising=False)
        settings = load_settings().ensure_dirs()
        store = GraphStore.open(settings)
        try:
            seed_catalogue(store, entities, seed=seed, templates=load_templates())
            yield settings, store
        finally:
            from console.services import _shared_service, _shared_services

            _shared_service.clear()  # stops the console's cache service thread
            _shared_services.clear()  # releases (closes) the console's own connection
            store.close()
            falkor.stop_embedded_server(settings)
