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


def stat_tiles(st_: CacheStats) -> list[tuple[str, str, str]]:
    """(label, value, help) for the page's metrics."""
    return [
        ("Hit rate", f"{st_.hit_rate:.1%}", f"{st_.hits:,} hits of {st_.requests:,} requests"),
        ("Entries", f"{st_.items:,}", "cached entities, hypothesis lists, single hypotheses and templates"),
        ("Size", f"{st_.bytes / 1048576:,.2f} MiB", f"of {st_.max_bytes / 1048576:,.0f} MiB ({st_.fill_ratio:.1%})"),
        ("Evictions", f"{st_.evictions:,}", "removed to make room (least recently used first)"),
        ("Expirations", f"{st_.expirations:,}", f"removed after their TTL of {st_.ttl_s:g} s"),
        ("Invalidations", f"{st_.invalidations:,}", "removed by writes or by Clear cache"),
    ]


def most_accessed_frame(items: Iterable[Any]) -> pd.DataFrame:
    rows = [
        {"key": "/".join(map(str, a.key)) if isinstance(a.key, tuple) else str(a.key), "entity": a.entity_id or "",
         "hits": a.hits, "bytes": a.bytes}
        for a in items
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["key", "entity", "hits", "bytes"])


def warm_runs_frame(runs: list[dict]) -> pd.DataFrame:
    rows = [
        {"when": pd.Timestamp(r["at"], unit="s", tz="UTC"), "trigger": r["trigger"], "planned": r["planned"],
         "loaded": r["loaded"], "already cached": r["already_cached"], "seconds": round(r["elapsed_s"], 3),
         "error": r.get("error") or ""}
        for r in runs
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["when", "trigger", "planned", "loaded", "already cached", "seconds", "error"])


def bench_chart(rows: list[dict]) -> alt.Chart:
    """Timed benchmark figures per size: grouped horizontal bars, log scale (they span 3 orders of magnitude)."""
    frame = pd.DataFrame(rows, columns=["entities", "figure", "seconds"])
    frame = frame[frame["seconds"] > 0].assign(size=lambda f: f["entities"].map(lambda n: f"{n:,} entities"))
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("figure:N", title=None, sort=None),
            yOffset=alt.YOffset("size:N"),
            x=alt.X("seconds:Q", scale=alt.Scale(type="log"), title="seconds (log scale)"),
            color=alt.Color("size:N", title="graph size"),
            tooltip=["figure", "size", alt.Tooltip("seconds:Q", format=".4f")],
        )
        .properties(height=60 * max(1, frame["figure"].nunique()))
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
