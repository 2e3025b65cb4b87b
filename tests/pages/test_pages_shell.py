"""AppTest of the console shell: Overview and Hypotheses on a small seeded graph.

The graph (60 entities of the demo catalogue) is seeded once for the module in
a temp data dir; the pages run in-process against it through
console.services.get_services(), exactly as under `streamlit run`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console.format import HYPOTHESIS_COLUMNS
from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.model import Status
from engine.core.settings import load_settings
from engine.store import falkor
from engine.store.graph import GraphStore
from tests.support.console_env import as_shown, seeded_console_env

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
N_ENTITIES = 60
TIMEOUT = 60  # seconds per script run: the first one imports altair/pandas and connects


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Env pointing at a data dir holding 60 seeded entities; yields that dir's GraphStore."""
    with seeded_console_env(tmp_path_factory, "pages-shell", N_ENTITIES, 7) as (settings, store):
        yield store


def run_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> int:
    values = [m.value for m in at.metric if m.label == label]
    assert len(values) == 1, f"one {label!r} metric expected, got {values}"
    return int(values[0].replace(",", ""))


def _tables_with_columns(at: AppTest, columns) -> list:
    return [d.value for d in at.dataframe if list(d.value.columns) == list(columns)]


def entity_table(at: AppTest):
    """The selected entity's hypotheses: the one table with every hypothesis column but the entity's name.

    Found by its columns, not its position, because the entity-view slot adds tables of its own.
    """
    found = _tables_with_columns(at, [c for c in HYPOTHESIS_COLUMNS if c != "entity"])
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def matching_table(at: AppTest):
    """The hypotheses of every matching entity (in the expander): the table with the entity column too."""
    found = _tables_with_columns(at, HYPOTHESIS_COLUMNS)
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def test_overview_tiles_show_the_stores_counts(seeded):
    stats = seeded.stats()
    at = run_app()
    assert at.title[0].value == "Overview"
    assert metric(at, "Entities") == N_ENTITIES == stats.entities
    assert metric(at, "Hypotheses") == stats.hypotheses > N_ENTITIES
    assert metric(at, "Active") == stats.by_status.get(Status.ACTIVE, 0)
    assert metric(at, "Promoted") == stats.by_status.get(Status.PROMOTED, 0)
    assert metric(at, "Templates") == len(stats.by_template)
    assert metric(at, "Clusters") == len(stats.by_cluster)


def test_overview_cluster_table_lists_every_cluster(seeded):
    stats = seeded.stats()
    at = run_app()
    (table,) = _tables_with_columns(at, ["cluster", "entities"])  # by columns: the live-charts slot may add tables
    assert dict(zip(table["cluster"], table["entities"])) == stats.by_cluster
    assert table["entities"].is_monotonic_decreasing


def test_hypotheses_page_asks_for_a_search_first(seeded):
    at = run_app("pages/hypotheses.py")
    assert at.title[0].value == "Hypotheses"
    assert not at.selectbox and not at.dataframe


def test_search_by_name_finds_the_entity_and_shows_its_hypotheses(seeded):
    entity = seeded.list_entities(limit=1)[0]
    at = run_app("pages/hypotheses.py")
    at.text_input(key="entity_query").input(entity.name.upper()).run()
    assert not at.exception
    picker = at.selectbox(key="entity_id")
    assert picker.value == entity.id
    assert f"{entity.name} · {entity.id}" in picker.options
    assert at.header[0].value == entity.name
    table = entity_table(at)
    expected = seeded.get_hypotheses(entity.id)
    assert sorted(table["id"]) == sorted(h.id for h in expected)
    assert set(table["category"]) == {h.category for h in expected}


def test_search_by_id_fragment_and_pick_another_match(seeded):
    ids = seeded.list_entity_ids()
    needle = ids[0].split("-")[0]
    matching = [e for e in seeded.search_entities(needle)]
    assert len(matching) >= 1
    at = run_app("pages/hypotheses.py")
    at.text_input(key="entity_query").input(needle).run()
    picker = at.selectbox(key="entity_id")
    assert list(picker.options) and len(picker.options) == len(matching)
    target = matching[-1]
    picker.select(target.id).run()
    assert not at.exception
    assert at.header[0].value == target.name


def test_unknown_search_says_no_match(seeded):
    at = run_app("pages/hypotheses.py")
    at.text_input(key="entity_query").input("zz-no-such-entity-zz").run()
    assert not at.exception
    assert any("No entity matches" in w.value for w in at.warning)
    assert not at.selectbox


def test_category_and_status_filters_filter(seeded):
    entity = seeded.list_entities(limit=1)[0]
    hyps = seeded.get_hypotheses(entity.id)
    category = sorted({h.category for h in hyps})[0]
    at = run_app("pages/hypotheses.py")
    at.text_input(key="entity_query").input(entity.id).run()
    at.multiselect(key="category_filter").select(category).run()
    assert not at.exception
    table = entity_table(at)
    assert set(table["category"]) == {category}
    assert len(table) == sum(1 for h in hyps if h.category == category)
    # every fresh hypothesis is ACTIVE: choosing ACTIVE keeps them, and the filter options follow the data
    status_filter = at.multiselect(key="status_filter")
    assert list(status_filter.options) == [Status.ACTIVE.value]
    status_filter.select(Status.ACTIVE.value).run()
    assert len(entity_table(at)) == len(table)


def test_table_across_matches_filters_by_status_and_category(seeded):
    needle = seeded.list_entity_ids()[0][:2]
    matches = seeded.search_entities(needle)
    every = [h for hs in seeded.get_hypotheses_many([e.id for e in matches]).values() for h in hs]
    category = sorted({h.category for h in every})[-1]
    at = run_app("pages/hypotheses.py")
    at.text_input(key="entity_query").input(needle).run()
    assert len(matching_table(at)) == len(every)
    at.multiselect(key="all_category_filter").select(category).run()
    table = matching_table(at)
    assert set(table["category"]) == {category}
    assert len(table) == sum(1 for h in every if h.category == category)
    assert set(table["entity"]) <= {e.name for e in matches}
    at.multiselect(key="all_status_filter").select(Status.ACTIVE.value).run()
    assert len(matching_table(at)) == len(table)


def test_unreachable_store_is_a_one_line_error_not_a_traceback(monkeypatch, tmp_path):
    # port 1 on loopback: nothing listens, the connection is refused at once
    monkeypatch.setenv("FALKORDB_URL", "redis://127.0.0.1:1")
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert len(at.error) == 1 and "127.0.0.1:1" in as_shown(at.error[0].value)
    assert not at.metric


def test_console_reconnects_after_the_embedded_store_was_stopped(monkeypatch, tmp_path):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    settings = load_settings().ensure_dirs()
    try:
        with GraphStore.open(settings) as store:
            seed_catalogue(store, 5, seed=3, templates=load_templates())
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
        assert metric(at, "Entities") == 5
        assert falkor.stop_embedded_server(settings)  # what `python -m engine store stop` does
        at.run()
        assert not at.exception and not at.error
        assert metric(at, "Entities") == 5  # the data survived and the console found its store again
    finally:
        from console.services import _shared_services

        _shared_services.clear()
        falkor.stop_embedded_server(settings)
