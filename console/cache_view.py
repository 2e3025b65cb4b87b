"""Tiles, frames and charts of the Cache page: the cache's statistics, its most accessed entries,
warm runs and the store benchmark's figures.

Pure pandas/altair, no Streamlit; the console's own CacheService comes from
``console.services.get_cache_service``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import altair as alt
import pandas as pd

from console.naming import download_name
from engine.cache.lru import CacheStats

#: the benchmark's timed figures as the chart names them: short, distinct, and whole (never cut to "…")
BENCH_FIGURE_LABELS = {
    "batch read: chunked parallel": "read all: chunked parallel",
    "batch read: one query": "read all: one query",
    "batch read: one query per entity": "read all: query per entity",
    "update: batch": "update: one batch",
    "update: row by row": "update: row by row",
}
#: below this many milliseconds the chart's scale is linear, above it logarithmic (symlog: zero is drawn)
SYMLOG_CONSTANT_MS = 1.0
KIB = 1024
MIB = 1024 * 1024


def size_text(n_bytes: float) -> str:
    """A short size for a tile: "4.5 MiB", "312 KiB", "0 B" (the exact figure goes in the tile's help)."""
    if n_bytes >= MIB:
        return f"{n_bytes / MIB:,.1f} MiB"
    if n_bytes >= KIB:
        return f"{n_bytes / KIB:,.0f} KiB"
    return f"{n_bytes:,.0f} B"


def stat_tiles(st_: CacheStats) -> list[tuple[str, str, str]]:
    """(label, value, help) for the page's metrics: values short enough for a tile, details in the help."""
    return [
        ("Hit rate", f"{st_.hit_rate:.1%}", f"{st_.hits:,} hits of {st_.requests:,} requests"),
        ("Entries", f"{st_.items:,}", "cached entities, hypothesis lists, single hypotheses and templates"),
        (
            "Size",
            size_text(st_.bytes),
            f"{st_.bytes:,} bytes of {size_text(st_.max_bytes)} ({st_.fill_ratio:.1%} of the memory limit)",
        ),
        ("Evictions", f"{st_.evictions:,}", "removed to make room (least recently used first)"),
        ("Expirations", f"{st_.expirations:,}", f"removed after their TTL of {st_.ttl_s:g} s"),
        ("Invalidations", f"{st_.invalidations:,}", "removed by writes or by Clear cache"),
    ]


def most_accessed_frame(items: Iterable[Any]) -> pd.DataFrame:
    """The entries read from the cache at least once, most hits first (an entry never hit is not "accessed")."""
    rows = [
        {"key": "/".join(map(str, a.key)) if isinstance(a.key, tuple) else str(a.key), "entity": a.entity_id or "",
         "hits": a.hits, "bytes": a.bytes}
        for a in items
        if a.hits > 0
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["key", "entity", "hits", "bytes"])


def most_accessed_empty(cached_entries: int) -> str:
    """What the Most accessed panel says when no entry has a hit."""
    if cached_entries == 0:
        return "Nothing cached yet: open the Hypotheses page, or Warm now."
    return (
        f"No hits yet: {cached_entries:,} cache entries are loaded but none has been read from the cache "
        "(an entry counts once a page reads it again)."
    )


def warm_message(report: Any) -> str:
    """One warming round in words, one unit per clause: entities planned and already cached, then the cache
    entries loading the rest added (an entity's record and its hypothesis list are one entry each)."""
    entities = f"{report.planned:,} entit{'y' if report.planned == 1 else 'ies'}"
    rest = f"{report.already_cached:,} of them already cached" if report.already_cached else "none of them cached yet"
    return (
        f"Warm now: {entities} planned, {rest}; loading the rest added {report.loaded:,} cache "
        f"entr{'y' if report.loaded == 1 else 'ies'} in {report.elapsed_s * 1000:,.0f} ms"
    )


def warm_runs_frame(runs: list[dict]) -> pd.DataFrame:
    rows = [
        {"when (UTC)": pd.Timestamp(r["at"], unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S"),
         "trigger": r["trigger"], "entities planned": r["planned"], "entities already cached": r["already_cached"],
         "entries loaded": r["loaded"], "seconds": round(r["elapsed_s"], 3), "error": r.get("error") or "—"}
        for r in runs
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=WARM_RUN_COLUMNS)


WARM_RUN_COLUMNS = [
    "when (UTC)",
    "trigger",
    "entities planned",
    "entities already cached",
    "entries loaded",
    "seconds",
    "error",
]


def bench_chart(rows: list[dict]) -> alt.Chart:
    """Timed benchmark figures per size, in milliseconds: grouped horizontal bars on a symlog scale.

    They span three orders of magnitude, so the scale is logarithmic above SYMLOG_CONSTANT_MS, but linear
    near zero: a plain log scale cannot place a bar's zero baseline (or a figure of 0) and drew nothing.
    Labels are short and distinct, never truncated.
    """
    frame = pd.DataFrame(rows, columns=["entities", "figure", "seconds"])
    frame = frame.assign(
        figure=frame["figure"].map(lambda f: BENCH_FIGURE_LABELS.get(f, f)),
        ms=frame["seconds"] * 1000.0,
        size=frame["entities"].map(lambda n: f"{n:,} entities"),
    )
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("figure:N", title=None, sort=None, axis=alt.Axis(labelLimit=0)),
            yOffset=alt.YOffset("size:N"),
            x=alt.X(
                "ms:Q",
                scale=alt.Scale(type="symlog", constant=SYMLOG_CONSTANT_MS),
                title="milliseconds (log scale above 1 ms)",
            ),
            color=alt.Color("size:N", title="graph size"),
            tooltip=["figure", "size", alt.Tooltip("ms:Q", title="milliseconds", format=",.2f")],
        )
        .properties(height=36 * max(1, frame["figure"].nunique()) * max(1, frame["size"].nunique()))
    )


def bench_figures_frame(results: list[dict]) -> pd.DataFrame:
    """One row per size with the headline figures (for a table and the JSON download)."""
    rows = []
    for r in results:
        rows.append({
            "entities": r["entities"], "hypotheses": r["hypotheses"],
            "batch read chunked (ms)": r["read_chunked_s"] * 1000, "one query (ms)": r["read_one_query_s"] * 1000,
            "per entity (ms)": r["read_per_entity_s"] * 1000, "hot get p50 (µs)": r["hot_cache_p50_us"],
            "hot get p99 (µs)": r["hot_cache_p99_us"], "cachetools p99 (µs)": r["hot_cachetools_p99_us"],
            "point read p50 (µs)": r["point_read_p50_us"], "batch update (s)": r["update_batch_s"],
            "row by row (s)": r["update_row_by_row_s"], "Zipf cold": r["zipf_cold_hit_rate"],
            "Zipf warmed": r["zipf_warm_hit_rate"], "process RSS (MiB)": r["process_peak_rss_mb"],
            "server RSS (MiB)": r["server_peak_rss_mb"],
        })  # fmt: skip
    return pd.DataFrame(rows)


def bench_file_name(now: float | None = None, ext: str = "json") -> str:
    """``discovery-store-bench-<YYYYmmdd-HHMM>.<ext>`` (UTC)."""
    return download_name("store-bench", ext, now=now)
