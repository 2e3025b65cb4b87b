"""Actionable page frames: the feed table, one entity's accepting evidence, the departures, the CSV download.

Pure: pandas over engine.production.feed results, no Streamlit. Stored text (names, excerpts, reasons) stays
text in text cells; only a real http(s) URL goes into a link column (anything else there is left empty, and
the text column beside it still shows it). Missing values read "—" and internal names read as words
(console.vocab), so the page says nothing an operator cannot read.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

import pandas as pd

from console.naming import download_name, slug
from console.vocab import MISSING, display_frame, human
from engine.production.feed import (
    FEED_COLUMNS,
    LEFT_BY_RUN,
    LEFT_BY_STATE,
    LEFT_COLUMNS,
    Feed,
    FeedFilter,
    FeedRow,
    feed_rows,
    left_rows,
    to_csv,
)

#: the feed table's columns, in order (the CSV carries FEED_COLUMNS, all of them)
TABLE_COLUMNS = (
    "when", "entity", "template", "categories", "country", "system", "stage", "config", "config_origin",
    "best_hypothesis", "confidence", "evidence", "excerpt", "link",
)  # fmt: skip
EVIDENCE_TABLE_COLUMNS = ("found", "pattern", "category", "hop", "excerpt", "link", "url", "run")
LEFT_TABLE_COLUMNS = ("left", "entity", "template", "country", "joined", "why", "reason")
#: how a departure's cause reads
CAUSES = {LEFT_BY_RUN: "a later run was not actionable", LEFT_BY_STATE: "graph state no longer actionable"}
#: what an unknown departure time reads as
UNKNOWN_TIME = "time unknown"

_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def is_url(text: object) -> bool:
    """A real http(s) URL (no spaces, a host): only these are drawn as links."""
    return isinstance(text, str) and bool(_URL.match(text))


def _when(at: float) -> pd.Timestamp:
    """A UTC time (naive, in UTC) for a datetime column: it sorts as a time and reads YYYY-MM-DD HH:MM:SS."""
    return pd.Timestamp(at, unit="s")


def _text_time(at: float | None) -> str:
    return UNKNOWN_TIME if at is None else f"{_when(at):%Y-%m-%d %H:%M} UTC"


def window(since: dt.date | None, until: dt.date | None) -> tuple[float | None, float | None]:
    """The UTC window of two picked dates: from the start of ``since`` to the end of ``until`` (both kept)."""

    def midnight(d: dt.date) -> float:
        return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()

    return (
        None if since is None else midnight(since),
        None if until is None else midnight(until) + 86_400.0,
    )


def feed_frame(feed: Feed) -> pd.DataFrame:
    """The feed table (TABLE_COLUMNS), newest first: one row per entity that became actionable."""
    rows = [
        {
            "when": _when(r.became_at),
            "entity": r.entity_name,
            "template": r.template,
            "categories": ", ".join(r.categories),
            "country": r.country,
            "system": r.system,
            "stage": r.stage_id,
            "config": r.config_hash,
            "config_origin": r.config_origin or None,
            "best_hypothesis": r.best_pattern or None,
            "confidence": r.best_confidence,
            "evidence": len(r.evidence),
            "excerpt": r.excerpt or None,
            "link": r.link if is_url(r.link) else "",
        }
        for r in feed.rows
    ]
    frame = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return display_frame(frame, names=("system", "stage"))


def evidence_frame(row: FeedRow) -> pd.DataFrame:
    """One entity's accepting evidence (EVIDENCE_TABLE_COLUMNS), oldest first; ``url`` is the text as stored."""
    rows = [
        {
            "found": _when(e.at),
            "pattern": e.pattern,
            "category": e.category,
            "hop": e.hop_type,
            "excerpt": e.excerpt or None,
            "link": e.url if is_url(e.url) else "",
            "url": e.url or None,
            "run": e.run_id,
        }
        for e in row.evidence
    ]
    return display_frame(pd.DataFrame(rows, columns=list(EVIDENCE_TABLE_COLUMNS)), names=("hop",))


def left_frame(feed: Feed) -> pd.DataFrame:
    """The departures (LEFT_TABLE_COLUMNS), newest first, each with its cause in words and its reason."""
    rows = [
        {
            "left": _text_time(d.left_at),
            "entity": d.entity_name,
            "template": d.template,
            "country": d.country,
            "joined": _text_time(d.joined_at),
            "why": CAUSES.get(d.cause, human(d.cause)),
            "reason": d.reason,
        }
        for d in feed.departures
    ]
    return display_frame(pd.DataFrame(rows, columns=list(LEFT_TABLE_COLUMNS)))


def entity_label(row: FeedRow) -> str:
    """How an entity reads in the evidence picker: name, country and when it became actionable."""
    return f"{row.entity_name} · {row.country or MISSING} · {_text_time(row.became_at)}"


def csv_bytes(feed: Feed) -> bytes:
    """The feed as the CLI's CSV (``python -m engine actionable --format csv``), UTF-8."""
    return to_csv(feed_rows(feed), FEED_COLUMNS).encode("utf-8")


def left_csv_bytes(feed: Feed) -> bytes:
    """The departures as the CLI's ``--left --format csv``, UTF-8."""
    return to_csv(left_rows(feed), LEFT_COLUMNS).encode("utf-8")


def csv_name(f: FeedFilter, *, now: float | None = None, left: bool = False) -> str:
    """``discovery-actionable[-left][-since-YYYYmmdd][-until-YYYYmmdd][-<template>...]-<stamp>.csv``: what the
    file holds, then when it was made."""
    parts: list[str] = ["left"] if left else []
    for word, at in (("since", f.since), ("until", f.until)):
        if at is not None:
            parts.append(f"{word}-{dt.datetime.fromtimestamp(at, dt.UTC):%Y%m%d}")
    parts += [slug(v) for v in (f.template, f.category, f.country) if v]
    return download_name("actionable", "csv", *[p for p in parts if p], now=now)


def summary(feed: Feed) -> str:
    """One plain line: how many entities are in the feed and left it in the window (escape it for Markdown)."""
    n, gone = len(feed.rows), len(feed.departures)
    return (
        f"{n:,} entit{'y' if n == 1 else 'ies'} became actionable in this window and are still actionable; "
        f"{gone:,} left the feed; {feed.live_runs:,} live runs read."
    )


def choices_with_any(values: Sequence[str]) -> list[str | None]:
    """Filter options: None (any) first, then the catalogue's values."""
    return [None, *values]


__all__ = [
    "CAUSES",
    "EVIDENCE_TABLE_COLUMNS",
    "LEFT_TABLE_COLUMNS",
    "TABLE_COLUMNS",
    "choices_with_any",
    "csv_bytes",
    "csv_name",
    "entity_label",
    "evidence_frame",
    "feed_frame",
    "is_url",
    "left_csv_bytes",
    "left_frame",
    "summary",
    "window",
]
