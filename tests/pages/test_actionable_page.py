"""AppTest of the Actionable page after real production runs: the feed table, the filters, one entity's
accepting evidence with links, the departures with their reasons, and the CSV download's name and rows."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console.actionable_view import EVIDENCE_TABLE_COLUMNS, LEFT_TABLE_COLUMNS, TABLE_COLUMNS
from console.text import md_code, md_escape
from engine.store.opsdb import open_ops_db
from tests.support.console_env import as_shown, seeded_console_env
from tests.support.feed import feed_with_departure

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
TIMEOUT = 90
HOSTILE = "Evil ![pixel](http://127.0.0.1:9/track.png) FC"
RAW = ("None", "nan", "NaN", "inf", "Infinity", "NaT")


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    with seeded_console_env(tmp_path_factory, "actionable-page", 40, 7) as (settings, graph):
        ops = open_ops_db(settings)
        in_feed, gone = feed_with_departure(graph, ops, 30)
        # the entity shown first in the evidence detail gets a name that is Markdown: it must show as text
        first = graph.get_entity(sorted(in_feed)[0])
        graph.upsert_entities([replace(first, name=HOSTILE)])
        entities = graph.get_entities([*in_feed, gone])
        yield in_feed, gone, entities


def run_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/actionable.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def frame(at: AppTest, columns):
    (found,) = [d.value for d in at.dataframe if tuple(d.value.columns) == tuple(columns)]
    return found


def test_the_feed_its_evidence_and_its_departures(fed):
    in_feed, gone, entities = fed
    at = run_page()
    assert at.title[0].value == "Actionable"
    table = frame(at, TABLE_COLUMNS)
    assert sorted(table["entity"]) == sorted(entities[e].name for e in in_feed)
    assert set(table["stage"]) == {"production"} and set(table["config_origin"]) == {"the defaults"}
    assert all(str(v).startswith("https://") for v in table["link"])
    assert table["excerpt"].map(len).min() > 0
    for column in table.columns:
        assert not any(str(v) in RAW for v in table[column]), column

    evidence = frame(at, EVIDENCE_TABLE_COLUMNS)
    assert len(evidence) >= 2 and evidence["category"].nunique() >= 2
    detail = [m.value for m in at.markdown if "· run " in m.value]
    assert len(detail) == 1 and detail[0].startswith(md_escape(HOSTILE) + " `" + sorted(in_feed)[0] + "`")
    assert not any("![pixel]" in m.value for m in at.markdown)
    assert all(link == url for link, url in zip(evidence["link"], evidence["url"]))

    left = frame(at, LEFT_TABLE_COLUMNS)
    assert list(left["entity"]) == [entities[gone].name]
    assert left["why"].iloc[0] == "a later run was not actionable"
    assert left["left"].iloc[0] == "2026-12-03 10:00 UTC"
    assert "was not actionable" in left["reason"].iloc[0] and "REJECT" in left["reason"].iloc[0]


def test_choosing_another_entity_shows_its_evidence(fed):
    in_feed, gone, entities = fed
    at = run_page()
    first = at.selectbox(key="actionable_entity").value
    at.selectbox(key="actionable_entity").select_index(len(in_feed) - 1).run()
    assert not at.exception
    chosen = at.selectbox(key="actionable_entity").value
    assert chosen != first and chosen in in_feed
    assert any(md_code(chosen) in m.value and "· run " in m.value for m in at.markdown)
    evidence = frame(at, EVIDENCE_TABLE_COLUMNS)
    assert len(evidence) >= 2 and all(chosen in url for url in evidence["url"])  # the world's links name it


def test_filters_narrow_the_feed_and_name_the_download(fed):
    in_feed, gone, entities = fed
    at = run_page()
    country = entities[sorted(in_feed)[-1]].country
    at.selectbox(key="actionable_country").set_value(country).run()
    table = frame(at, TABLE_COLUMNS)
    assert sorted(table["entity"]) == sorted(entities[e].name for e in in_feed if entities[e].country == country)
    at.date_input(key="actionable_since").set_value(dt.date(2026, 12, 2)).run()
    assert not [d for d in at.dataframe if tuple(d.value.columns) == TABLE_COLUMNS]
    assert any("No entity became actionable in this window" in i.value for i in at.info)


def test_the_csv_downloads_are_named_by_what_they_hold(fed):
    in_feed, gone, entities = fed
    at = run_page()
    at.date_input(key="actionable_since").set_value(dt.date(2026, 12, 1)).run()
    buttons = {b.proto.label: as_shown(b.proto.help) for b in at.get("download_button")}
    assert set(buttons) == {"Download the feed (CSV)", "Download the departures (CSV)"}
    assert re.match(
        rf"discovery-actionable-since-20261201-\d{{8}}-\d{{4}}\.csv · {len(in_feed)} rows, the columns",
        buttons["Download the feed (CSV)"],
    ), buttons
    assert re.match(
        r"discovery-actionable-left-since-20261201-\d{8}-\d{4}\.csv · 1 row$", buttons["Download the departures (CSV)"]
    )
