"""Frames, tiles and charts of the Overview's live monitoring: cost per entity, actionable rate,
p95 latency and error rate over time, old against new, over a selectable window.

Pure pandas/altair over what engine.monitoring.windows aggregates (``summarize_events``,
``series_from_events``), tested without Streamlit; console/live_panel.py draws them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import altair as alt
import pandas as pd

from engine.monitoring.alerts import AlertStatus
from engine.monitoring.reports import SYSTEM_COLOURS
from engine.monitoring.windows import (
    PERCENTILE_METHOD,
    SeriesPoint,
    WindowSummary,
    format_window,
)

#: seconds between two refreshes of the live fragment, by window: a long window reads many
#: events (about 1 s per 10,000 on a small machine), and its 30-odd buckets move slowly anyway
REFRESH_S = {"15m": 5, "1h": 5, "6h": 10, "24h": 10, "7d": 30}
WINDOWS = ("15m", "1h", "6h", "24h", "7d")
DEFAULT_WINDOW = "24h"


@dataclass(frozen=True)
class LiveMetric:
    field: str  # attribute of SeriesPoint
    title: str
    axis_format: str
    tooltip_format: str


LIVE_METRICS: tuple[LiveMetric, ...] = (
    LiveMetric("cost_per_entity", "Cost per entity (USD)", "$.2f", "$.4f"),
    LiveMetric("actionable_rate", "Actionable rate", ".0%", ".1%"),
    LiveMetric("latency_p95_s", "p95 run latency (s)", ".1f", ".2f"),
    LiveMetric("error_rate", "Evidence error rate (errored hops / hops)", ".1%", ".2%"),
)


# --------------------------------------------------------------------------- pure frames


def series_frame(points: Sequence[SeriesPoint]) -> pd.DataFrame:
    """Long frame of the chart series: one row per (bucket, system, metric) with a value.

    Buckets without a figure (no hops for the error rate) are left out, so the
    line shows a gap rather than a made-up zero. ``time`` is the bucket start (UTC).
    """
    rows = []
    for p in points:
        at = datetime.fromtimestamp(p.bucket_start, tz=UTC)
        for m in LIVE_METRICS:
            value = getattr(p, m.field)
            if value is None:
                continue
            rows.append({"time": at, "system": p.system, "metric": m.field, "value": float(value), "runs": p.runs})
    frame = pd.DataFrame(rows, columns=["time", "system", "metric", "value", "runs"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def refresh_s(window_label: str) -> int:
    return REFRESH_S.get(window_label, 10)


def runs_caption(summary: WindowSummary, window_label: str, bucket_s: float, now: float) -> str:
    """One line under the charts: volume per system, bucket width and when it was read."""
    new, old = summary.by_system["new"].runs, summary.by_system["old"].runs
    stamp = time.strftime("%H:%M:%S", time.gmtime(now))
    return (
        f"{summary.overall.runs:,} runs in the last {window_label} (new {new:,}, old {old:,}) · "
        f"buckets of {format_window(bucket_s)} · read {stamp} UTC · refreshes every {refresh_s(window_label)}s"
    )


#: how st.metric colours a tile's delta: "normal": up is good (green); "inverse": down is good
DeltaColor = Literal["normal", "inverse"]


@dataclass(frozen=True)
class Tile:
    label: str
    value: str
    delta: str | None  # the new system against the old one; None when it cannot be computed
    delta_color: DeltaColor
    help: str


def _fmt(x: float | None, kind: str) -> str:
    if x is None:
        return "n/a"
    return {"usd": f"${x:.3f}", "rate": f"{x * 100:.1f}%", "s": f"{x:.1f} s"}[kind]


def comparison_tiles(summary: WindowSummary) -> list[Tile]:
    """One tile per chart: the new system's figure over the window, with its change against the old one.

    Cost and actionable rate carry the monitor's old-vs-new figures (cost reduction %, actionable
    increase in points and %); a missing side says why instead of showing a made-up delta.
    """
    c = summary.comparison
    new, old = summary.by_system["new"], summary.by_system["old"]
    sizes = f"old n={c.old_runs:,}, new n={c.new_runs:,}"
    why = f" — {c.reason}" if c.reason else ""

    def diff(a: float | None, b: float | None, kind: str) -> str | None:
        if a is None or b is None:
            return None
        if kind == "rate":
            return f"{(a - b) * 100:+.1f} pp vs old {_fmt(b, kind)}"
        return f"{a - b:+.3f} vs old {_fmt(b, kind)}" if kind == "usd" else f"{a - b:+.1f} s vs old {_fmt(b, kind)}"

    cost_help = (
        f"cost per entity of the new system; cost reduction vs old "
        f"{'n/a' if c.cost_reduction_pct is None else f'{c.cost_reduction_pct:+.1f}%'}; {sizes}{why}"
    )
    act_help = (
        f"actionable runs / runs of the new system; actionable increase vs old "
        f"{'n/a' if c.actionable_increase_pct is None else f'{c.actionable_increase_pct:+.1f}%'}; "
        f"{sizes}{why}"
    )
    return [
        Tile(
            "Cost / entity (new)",
            _fmt(c.new_cost_per_entity, "usd"),
            diff(c.new_cost_per_entity, c.old_cost_per_entity, "usd"),
            "inverse",
            cost_help,
        ),
        Tile(
            "Actionable rate (new)",
            _fmt(c.new_actionable_rate, "rate"),
            diff(c.new_actionable_rate, c.old_actionable_rate, "rate"),
            "normal",
            act_help,
        ),
        Tile(
            "p95 latency (new)",
            _fmt(new.latency_s.p95, "s"),
            diff(new.latency_s.p95, old.latency_s.p95, "s"),
            "inverse",
            f"95th percentile of run latency (evidence + engine), {PERCENTILE_METHOD}; {sizes}",
        ),
        Tile(
            "Error rate (new)",
            _fmt(new.error_rate, "rate"),
            diff(new.error_rate, old.error_rate, "rate"),
            "inverse",
            f"errored hops / hops of the new system; {sizes}",
        ),
    ]


# --------------------------------------------------------------------------- charts


def metric_chart(frame: pd.DataFrame, metric: LiveMetric, window_label: str) -> alt.Chart:
    """Old vs new line chart of one metric (frame from series_frame)."""
    data = frame[frame["metric"] == metric.field]
    colours = alt.Scale(domain=list(SYSTEM_COLOURS), range=list(SYSTEM_COLOURS.values()))
    base = alt.Chart(data, title=metric.title).encode(
        x=alt.X("time:T", title=f"time (UTC), last {window_label}"),
        y=alt.Y("value:Q", title=None, axis=alt.Axis(format=metric.axis_format)),
        color=alt.Color("system:N", scale=colours, title="system"),
        tooltip=[
            alt.Tooltip("time:T", title="bucket start (UTC)", format="%Y-%m-%d %H:%M"),
            alt.Tooltip("system:N"),
            alt.Tooltip("value:Q", title=metric.title, format=metric.tooltip_format),
            alt.Tooltip("runs:Q", title="runs in bucket", format=","),
        ],
    )
    return (base.mark_line() + base.mark_point(filled=True, size=30)).properties(height=220)


def alert_banner(states) -> str | None:
    """One line when alerts need attention (firing or pending), naming them; None when none does."""
    firing = sorted(r.rule_id for r in states.values() if r.state is AlertStatus.FIRING)
    pending = sorted(r.rule_id for r in states.values() if r.state is AlertStatus.PENDING)
    if not firing and not pending:
        return None
    groups = (("firing", firing), ("pending", pending))
    parts = [f"{len(ids)} {label} ({', '.join(ids)})" for label, ids in groups if ids]
    return "Alerts: " + "; ".join(parts) + " — see the Alerts page."
