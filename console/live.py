"""Frames, tiles and the alert banner of the Overview's live monitoring: cost per entity, actionable
rate, p95 run latency and evidence error rate over time, old against new, over a selectable window.

The charts themselves are engine.monitoring.charts' (the HTML report draws the very same ones);
this module re-exports them for the console and adds what only the page shows. Pure pandas/altair
over what engine.monitoring.windows aggregates (``summarize_events``, ``series_from_events``),
tested without Streamlit; console/live_panel.py draws them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Literal

from console.vocab import RUN_LATENCY, fmt_num, fmt_pct, fmt_pp
from engine.monitoring.alerts import AlertStatus
from engine.monitoring.charts import (
    LIVE_METRICS,
    SYSTEM_COLOURS,
    LiveMetric,
    metric_chart,
    series_frame,
    window_words,
)
from engine.monitoring.windows import PERCENTILE_METHOD, WindowSummary, format_window

#: seconds between two refreshes of the live fragment, by window: a long window reads many
#: events (about 1 s per 10,000 on a small machine), and its 30-odd buckets move slowly anyway
REFRESH_S = {"15m": 5, "1h": 5, "6h": 10, "24h": 10, "7d": 30}
WINDOWS = ("15m", "1h", "6h", "24h", "7d")
DEFAULT_WINDOW = "24h"
#: the tile of the run latency: the full name, never "p95 latency" (Rollout's latency is engine time only)
LATENCY_LABEL = f"p95 {RUN_LATENCY}"


def refresh_s(window_label: str) -> int:
    return REFRESH_S.get(window_label, 10)


def runs_caption(summary: WindowSummary, window_label: str, bucket_s: float, now: float) -> str:
    """One line under the charts: volume per system, bucket width and when it was read."""
    new, old = summary.by_system["new"].runs, summary.by_system["old"].runs
    stamp = time.strftime("%H:%M:%S", time.gmtime(now))
    return (
        f"{summary.overall.runs:,} runs in the {window_words(window_label)} (new {new:,}, old {old:,}) · "
        f"buckets of {format_window(bucket_s)} · read {stamp} UTC · refreshes every {refresh_s(window_label)} s"
    )


def tiles_caption(window_label: str) -> str:
    """The line above the tiles: whose figures they are, over which window, and what the deltas compare."""
    return f"New system, {window_words(window_label)}; each change is against the old system over the same window."


#: how st.metric colours a tile's delta: "normal": up is good (green); "inverse": down is good; "off": grey
DeltaColor = Literal["normal", "inverse", "off"]
#: a delta of exactly nothing: st.metric would draw "+0.0" as a green rise
NO_CHANGE = "no change"


@dataclass(frozen=True)
class Tile:
    label: str
    value: str
    delta: str | None  # the new system against the old one; None when it cannot be computed
    delta_color: DeltaColor
    help: str


def _fmt(x: float | None, kind: str) -> str:
    """A figure with its unit; a missing one reads console.vocab's "—", a non-finite one its words."""
    if kind == "rate":
        return fmt_pct(x)
    if x is None or not math.isfinite(x):
        return fmt_num(x)
    return f"${x:.3f}" if kind == "usd" else f"{x:.1f} s"


def _usd(x: float) -> str:
    return f"-${-x:.3f}" if x < 0 else f"+${x:.3f}"


def comparison_tiles(summary: WindowSummary, window_label: str = DEFAULT_WINDOW) -> list[Tile]:
    """One tile per chart: the new system's figure over the window, with its change against the old one.

    Labels are short (a tile must stay readable at 900 px); the help says whose figure, which window
    and how it is measured. Cost and actionable rate carry the monitor's old-vs-new figures (cost
    reduction %, actionable increase in points and %); a missing side says why instead of showing a
    made-up delta.
    """
    c = summary.comparison
    new, old = summary.by_system["new"], summary.by_system["old"]
    window = window_words(window_label)
    sizes = f"old n={c.old_runs:,}, new n={c.new_runs:,}"
    why = f" — {c.reason}" if c.reason else ""

    def diff(a: float | None, b: float | None, kind: str) -> str | None:
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            return None
        if round(a - b, 6) == 0:
            return f"{NO_CHANGE} vs old {_fmt(b, kind)}"
        if kind == "rate":
            return f"{fmt_pp(a - b)} vs old {_fmt(b, kind)}"
        if kind == "usd":
            return f"{_usd(a - b)} vs old {_fmt(b, kind)}"
        return f"{a - b:+.1f} s vs old {_fmt(b, kind)}"

    cost_help = (
        f"cost per entity of the new system, {window}; cost reduction vs old "
        f"{fmt_num(c.cost_reduction_pct, '+.1f', unit='%')}; {sizes}{why}"
    )
    act_help = (
        f"actionable runs / runs of the new system, {window}; actionable increase vs old "
        f"{fmt_num(c.actionable_increase_pct, '+.1f', unit='%')}; {sizes}{why}"
    )
    tiles = [
        Tile(
            "Cost per entity",
            _fmt(c.new_cost_per_entity, "usd"),
            diff(c.new_cost_per_entity, c.old_cost_per_entity, "usd"),
            "inverse",
            cost_help,
        ),
        Tile(
            "Actionable rate",
            _fmt(c.new_actionable_rate, "rate"),
            diff(c.new_actionable_rate, c.old_actionable_rate, "rate"),
            "normal",
            act_help,
        ),
        Tile(
            LATENCY_LABEL,
            _fmt(new.latency_s.p95, "s"),
            diff(new.latency_s.p95, old.latency_s.p95, "s"),
            "inverse",
            f"95th percentile of the {RUN_LATENCY} of the new system's runs, {window} ({PERCENTILE_METHOD}); "
            f"not the engine time per entity of the Rollout page; {sizes}",
        ),
        Tile(
            "Evidence error rate",
            _fmt(new.error_rate, "rate"),
            diff(new.error_rate, old.error_rate, "rate"),
            "inverse",
            f"errored hops / hops of the new system, {window}; {sizes}",
        ),
    ]
    return [replace(t, delta_color="off") if (t.delta or "").startswith(NO_CHANGE) else t for t in tiles]


# --------------------------------------------------------------------------- the alert banner


@dataclass(frozen=True)
class AlertBanner:
    """Alerts that need attention (firing or pending) and nobody has acknowledged yet, by rule id."""

    firing: tuple[str, ...]
    pending: tuple[str, ...]
    acknowledged: int  # firing or pending, already acknowledged: counted, not listed

    @property
    def open(self) -> int:
        return len(self.firing) + len(self.pending)

    @property
    def text(self) -> str:
        """The banner's link: short enough to stay on one line at 900 px; it says where it leads."""
        counts = [f"{len(ids)} {label}" for label, ids in (("firing", self.firing), ("pending", self.pending)) if ids]
        if not counts:
            return f"Alerts: {self.acknowledged} acknowledged — open the Alerts page"
        return f"Alerts: {', '.join(counts)} — open the Alerts page"

    @property
    def detail(self) -> str:
        """The line under the link: which rules (by id) nobody acknowledged yet, and how many others are."""
        groups = (("firing", self.firing), ("pending", self.pending))
        parts = [f"{label}: {', '.join(ids)}" for label, ids in groups if ids]
        if self.acknowledged:
            parts.append(
                f"{self.acknowledged} acknowledged, still firing or pending" + (" (not listed)" if parts else "")
            )
        return " · ".join(parts)


def alert_banner(states) -> AlertBanner | None:
    """The Overview's banner from the alert states: None when no alert fires or is pending."""
    attention = [r for r in states.values() if r.state.needs_attention()]
    if not attention:
        return None
    open_ = [r for r in attention if not r.acknowledged]
    return AlertBanner(
        firing=tuple(sorted(r.rule_id for r in open_ if r.state is AlertStatus.FIRING)),
        pending=tuple(sorted(r.rule_id for r in open_ if r.state is AlertStatus.PENDING)),
        acknowledged=len(attention) - len(open_),
    )


__all__ = [
    "DEFAULT_WINDOW",
    "LATENCY_LABEL",
    "LIVE_METRICS",
    "REFRESH_S",
    "SYSTEM_COLOURS",
    "WINDOWS",
    "AlertBanner",
    "LiveMetric",
    "Tile",
    "alert_banner",
    "comparison_tiles",
    "metric_chart",
    "refresh_s",
    "runs_caption",
    "series_frame",
    "tiles_caption",
    "window_words",
]
