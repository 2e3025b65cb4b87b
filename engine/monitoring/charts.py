"""The monitoring charts, one vocabulary for the console and the reports.

The Overview's live charts (console.live_panel draws them in the browser) and the HTML report
(engine.monitoring.reports) are built by the same functions here, so a chart reads the same title,
axes, colours and units wherever an operator meets it. The report cannot run JavaScript (it is one
offline file), so ``to_svg`` renders a chart to inline SVG with vl-convert's embedded Vega-Lite:
no network, no script in the file.

Pure pandas/altair over what engine.monitoring.windows aggregates; tested without Streamlit.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import altair as alt
import pandas as pd
import vl_convert

from engine.monitoring.windows import HISTOGRAM_BUCKETS, SeriesPoint, WindowSummary

SYSTEM_COLOURS = {"new": "#4c78a8", "old": "#f58518"}
#: the latency a run takes end to end; the same words as console.vocab.RUN_LATENCY (a test keeps them equal),
#: never "p95 latency" alone: the Rollout page's latency is the engine's own time per entity
RUN_LATENCY = "run latency (evidence + engine)"
#: the engine's own decision time (console.vocab.ENGINE_TIME): what the Rollout page's latency criterion measures
ENGINE_TIME = "engine time per entity"
CHART_HEIGHT = 220
#: a chart's plot width in a report (px): two charts and their legends side by side on a 1100 px page
REPORT_CHART_WIDTH = 400
BUCKET_FORMAT = "%Y-%m-%d %H:%M"
#: the Vega-Lite version altair writes its specs for ("v6.4.1" -> "6.4"), which vl-convert must render with
VEGA_LITE_VERSION = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
#: SVGs rendered per process are kept by spec: the Reports page renders on every rerun, the data rarely changes
SVG_CACHE_SIZE = 64

_WINDOW_UNITS = {"s": ("s", "s"), "m": ("min", "min"), "h": ("h", "h"), "d": ("day", "days"), "w": ("week", "weeks")}
_WINDOW_LABEL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def window_words(label: str) -> str:
    """How a window label reads in a sentence: ``24h`` -> "last 24 h", ``7d`` -> "last 7 days"."""
    m = _WINDOW_LABEL.match(label)
    if not m:
        return f"last {label}"
    number, unit = m.group(1), m.group(2).lower()
    one, many = _WINDOW_UNITS[unit]
    return f"last {number} {one if float(number) == 1 else many}"


@dataclass(frozen=True)
class LiveMetric:
    field: str  # attribute of SeriesPoint
    title: str
    axis_format: str
    tooltip_format: str


LIVE_METRICS: tuple[LiveMetric, ...] = (
    LiveMetric("cost_per_entity", "Cost per entity (USD)", "$.2f", "$.4f"),
    LiveMetric("actionable_rate", "Actionable rate (%)", ".0%", ".1%"),
    LiveMetric("latency_p95_s", f"p95 {RUN_LATENCY}, s", ".1f", ".2f"),
    LiveMetric("error_rate", "Evidence error rate (% of hops)", ".1%", ".2%"),
)


# --------------------------------------------------------------------------- frames


def series_frame(points: Sequence[SeriesPoint]) -> pd.DataFrame:
    """Long frame of the chart series: one row per (bucket, system, metric) with a value.

    Buckets without a figure (no hops for the error rate) are left out, so the
    line shows a gap rather than a made-up zero. ``time`` is the bucket start (UTC), ``bucket`` the same
    as text for tooltips (a browser would show ``time`` in its own zone).
    """
    rows = []
    for p in points:
        at = datetime.fromtimestamp(p.bucket_start, tz=UTC)
        for m in LIVE_METRICS:
            value = getattr(p, m.field)
            if value is None:
                continue
            rows.append(
                {
                    "time": at,
                    "bucket": at.strftime(BUCKET_FORMAT),
                    "system": p.system,
                    "metric": m.field,
                    "value": float(value),
                    "runs": p.runs,
                }
            )
    frame = pd.DataFrame(rows, columns=["time", "bucket", "system", "metric", "value", "runs"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def histogram_frame(summary: WindowSummary) -> pd.DataFrame:
    """Final confidence of the window's hypotheses: one row per (bucket, system) of a system that ran."""
    rows = []
    for system in SYSTEM_COLOURS:
        group = summary.by_system[system]
        if not group.runs:
            continue
        for i, count in enumerate(group.confidence_histogram):
            closing = "]" if i == HISTOGRAM_BUCKETS - 1 else ")"
            bucket = f"[{i / HISTOGRAM_BUCKETS:.1f}, {(i + 1) / HISTOGRAM_BUCKETS:.1f}{closing}"
            rows.append({"bucket": bucket, "system": system, "hypotheses": int(count)})
    return pd.DataFrame(rows, columns=["bucket", "system", "hypotheses"])


# --------------------------------------------------------------------------- charts


def _system_colour() -> alt.Scale:
    return alt.Scale(domain=list(SYSTEM_COLOURS), range=list(SYSTEM_COLOURS.values()))


def metric_chart(frame: pd.DataFrame, metric: LiveMetric, window_label: str) -> alt.LayerChart:
    """Old vs new line chart of one metric (frame from series_frame), times in UTC whatever the reader's zone."""
    data = frame[frame["metric"] == metric.field]
    base = alt.Chart(data, title=metric.title).encode(
        x=alt.X(
            "time:T",
            title=f"time (UTC), {window_words(window_label)}",
            scale=alt.Scale(type="utc"),
        ),
        y=alt.Y("value:Q", title=None, axis=alt.Axis(format=metric.axis_format)),
        color=alt.Color("system:N", scale=_system_colour(), title="system"),
        tooltip=[
            alt.Tooltip("bucket:N", title="bucket start (UTC)"),
            alt.Tooltip("system:N"),
            alt.Tooltip("value:Q", title=metric.title, format=metric.tooltip_format),
            alt.Tooltip("runs:Q", title="runs in bucket", format=","),
        ],
    )
    return (base.mark_line() + base.mark_point(filled=True, size=30)).properties(height=CHART_HEIGHT)


def confidence_chart(summary: WindowSummary) -> alt.Chart:
    """Final confidence of hypotheses by bucket, old and new side by side (frame from histogram_frame)."""
    frame = histogram_frame(summary)
    return (
        alt.Chart(frame, title="Final confidence of hypotheses")
        .mark_bar()
        .encode(
            x=alt.X("bucket:N", title="final confidence", sort=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("system:N"),
            y=alt.Y("hypotheses:Q", title="hypotheses"),
            color=alt.Color("system:N", scale=_system_colour(), title="system"),
            tooltip=["bucket:N", "system:N", alt.Tooltip("hypotheses:Q", format=",")],
        )
        .properties(height=CHART_HEIGHT)
    )


# --------------------------------------------------------------------------- offline SVG

#: namespace declarations: names, not resources, and not needed by SVG inside HTML; left out so a
#: report holds no "http" text of its own (its tests look for any)
_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_ID = re.compile(r'\bid="([^"]+)"')


def to_svg(chart: alt.TopLevelMixin, *, width: int = REPORT_CHART_WIDTH, prefix: str = "") -> str:
    """``chart`` rendered to an SVG element for an HTML page, by vl-convert, offline.

    ``width`` is the plot's width in pixels (a browser's "stretch" has no meaning in a file);
    ``prefix`` makes the SVG's element ids (clip paths, gradients) unique among several SVGs
    of one page.
    """
    spec = chart.properties(width=width).to_json(indent=None)
    svg = _XMLNS.sub("", _render(spec), count=2)
    if prefix:
        for ident in set(_ID.findall(svg)):
            svg = svg.replace(f'id="{ident}"', f'id="{prefix}-{ident}"').replace(
                f"url(#{ident})", f"url(#{prefix}-{ident})"
            )
    return svg


@functools.lru_cache(maxsize=SVG_CACHE_SIZE)
def _render(spec: str) -> str:
    # no base URL is allowed: the spec carries its data inline, so nothing is ever fetched
    return vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE_VERSION, allowed_base_urls=[])
