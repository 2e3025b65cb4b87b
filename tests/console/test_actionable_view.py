"""console.actionable_view without Streamlit: table frames that say nothing raw, links only for real URLs,
the CSV (the CLI's) and its file name, the window of two picked dates."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from console import actionable_view as av
from engine.production.feed import FEED_COLUMNS, Departure, EvidenceItem, Feed, FeedFilter, FeedRow

T = 1_796_119_200.0  # 2026-12-01 10:00 UTC
MARKDOWN = "Evil ![pixel](http://127.0.0.1:9/t.png) FC"


def item(url: str, excerpt: str = "found it") -> EvidenceItem:
    return EvidenceItem(T, "r1", "New CRM", "CRM Implementation", "press_release", "ACCEPT", url, excerpt, 0.6)


def row(eid: str = "evil-fc", url: str = "https://x.example/a", best: float | None = 0.72) -> FeedRow:
    return FeedRow(
        entity_id=eid, entity_name=MARKDOWN, template="tier1_club", country="England", became_at=T, run_id="r1",
        system="new", stage_id="production", config_hash="abc123", config_origin="", categories=("CRM Implementation",
        "Ticketing"), accepts=2, best_pattern="New CRM", best_category="CRM Implementation", best_confidence=best,
        evidence=(item("https://x.example/old"), item(url, '=HYPERLINK("http://evil")')),
    )  # fmt: skip


def feed() -> Feed:
    gone = Departure("b", "B FC", "tier1_club", "England", T, None, "state_restored", "its hypotheses ...", "", "abc")
    return Feed((row(), row("other", url="javascript:alert(1)", best=None)), (gone,), FeedFilter(), 3)


def test_the_feed_table_reads_as_words_and_links_only_real_urls():
    frame = av.feed_frame(feed())
    assert tuple(frame.columns) == av.TABLE_COLUMNS
    assert list(frame["link"]) == ["https://x.example/a", ""]
    assert list(frame["entity"]) == [MARKDOWN, MARKDOWN]  # data stays text in a text cell
    assert list(frame["confidence"]) == ["0.72", "—"] and list(frame["config_origin"]) == ["—", "—"]
    assert frame["when"].iloc[0] == dt.datetime(2026, 12, 1, 10, 0)
    for column in frame.columns:
        assert not frame[column].map(lambda v: str(v) in ("None", "nan", "NaT")).any(), column


def test_evidence_and_departures():
    ev = av.evidence_frame(row())
    assert tuple(ev.columns) == av.EVIDENCE_TABLE_COLUMNS and list(ev["hop"]) == ["press release"] * 2
    left = av.left_frame(feed())
    assert list(left["left"]) == ["time unknown"] and list(left["why"]) == ["graph state no longer actionable"]
    assert list(left["joined"]) == ["2026-12-01 10:00 UTC"]


@pytest.mark.parametrize(
    ("url", "ok"),
    [("https://a.example/x?y=1", True), ("http://a", True), ("javascript:alert(1)", False), ("a.example", False),
     ("https://a b", False), ("", False)],
)  # fmt: skip
def test_is_url(url, ok):
    assert av.is_url(url) is ok


def test_the_csv_is_the_clis_and_neutralises_formulas():
    rows = list(csv.DictReader(io.StringIO(av.csv_bytes(feed()).decode("utf-8"))))
    assert tuple(rows[0]) == FEED_COLUMNS and len(rows) == 2
    assert rows[0]["became_actionable"] == "2026-12-01T10:00:00Z" and rows[0]["entity"] == MARKDOWN
    assert rows[0]["evidence_excerpt"].startswith("'=HYPERLINK")
    assert rows[1]["best_confidence"] == "" and rows[0]["categories"] == "CRM Implementation; Ticketing"


def test_file_names_say_what_they_hold_then_when():
    assert av.csv_name(FeedFilter(), now=T) == "discovery-actionable-20261201-1000.csv"
    f = FeedFilter(since=T, until=T + 86_400, template="tier1_club", category="CRM Implementation", country="Côte")
    assert av.csv_name(f, now=T, left=True) == (
        "discovery-actionable-left-since-20261201-until-20261202-tier1-club-crm-implementation-c-te-20261201-1000.csv"
    )


def test_the_window_of_two_dates_keeps_both_days():
    assert av.window(None, None) == (None, None)
    start, end = av.window(dt.date(2026, 12, 1), dt.date(2026, 12, 1))
    assert (start, end) == (T - 10 * 3600, T + 14 * 3600)
