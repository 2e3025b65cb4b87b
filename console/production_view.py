"""Production page, pure: the state line, the day's spend against its budget, the spend-and-visits chart, the plan
table (the next visits and why each is due), and the start form's refresh policy. No Streamlit here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import altair as alt
import pandas as pd

from console.vocab import display_frame, fmt_num
from engine.core.errors import ConfigError
from engine.production.policy import GROUP_WORDS, DueEntity, RefreshPolicy, fmt_age
from engine.rollout.guardrails import GuardrailState, GuardrailStatus

HOUR = 3600.0
#: the start form's defaults: revisit after a day, overdue after a week
DEFAULT_MIN_AGE_H = 24.0
DEFAULT_MAX_AGE_H = 7 * 24.0

#: how each state reads, and the colour of its badge (st.badge colours)
STATE_COLOURS = {
    "running": "green",
    "starting": "blue",
    "paused": "orange",
    "paused by a fault": "red",
    "stopped": "gray",
    "stopped unexpectedly": "red",
    "failed": "red",
    "not started": "gray",
}


@dataclass(frozen=True)
class Controls:
    """Which buttons make sense in a state."""

    start: bool
    pause: bool
    resume: bool
    stop: bool


def controls_for(state: str) -> Controls:
    """Start when nothing runs; Pause while running; Resume while paused (or after the worker died); Stop while
    anything is in play."""
    active = state in ("running", "starting", "paused", "paused by a fault", "stopped unexpectedly")
    return Controls(
        start=not active,
        pause=state in ("running", "starting"),
        resume=state in ("paused", "paused by a fault", "stopped unexpectedly"),
        stop=active,
    )


def state_colour(state: str) -> str:
    return STATE_COLOURS.get(state, "gray")


def guardrail_line(status: GuardrailStatus | None) -> tuple[str, str] | None:
    """How the Production page tells the guardrail after the last promotion: (``info``, ``warning`` or
    ``caption``, the line), or None before any promotion baked. A bake watches this scheduler's traffic, so
    it is said here as well as on the Rollout page; a revert is a warning (the live config changed under it)."""
    if status is None:
        return None
    if status.state is GuardrailState.BAKING:
        return "info", status.describe()
    if status.state is GuardrailState.REVERTED:
        return "warning", status.describe()
    return "caption", status.describe()


def spend_progress(spent_usd: float, budget_usd: float | None) -> tuple[float, str]:
    """The progress bar's fraction and its text: the day's spend against its budget, to the cent."""
    if budget_usd is None or budget_usd <= 0:
        return 0.0, f"Spent today: ${spent_usd:,.2f} (no budget set: production was never started)"
    fraction = min(1.0, max(0.0, spent_usd / budget_usd))
    left = max(0.0, budget_usd - spent_usd)
    return fraction, f"Spent today: ${spent_usd:,.2f} of ${budget_usd:,.2f} ({fraction:.0%}; ${left:,.2f} left)"


def policy_from_hours(min_age_h: float, max_age_h: float) -> RefreshPolicy:
    """The start form's two ages (hours) as a refresh policy; a one-line ConfigError when they do not make one."""
    for name, v in (("Revisit after", min_age_h), ("Overdue after", max_age_h)):
        if v is None or not math.isfinite(float(v)):
            raise ConfigError(f"{name} must be a number of hours")
    return RefreshPolicy(float(min_age_h) * HOUR, float(max_age_h) * HOUR)


def timeline_frame(timeline: Sequence[dict]) -> pd.DataFrame:
    """The day's running totals as a long frame (time, series, value) for the chart: spend in USD and visits."""
    rows = []
    for p in timeline:
        at = datetime.fromtimestamp(float(p["at"]), UTC).replace(tzinfo=None)
        rows.append({"time": at, "series": "spend (USD)", "value": float(p["spent_usd"])})
        rows.append({"time": at, "series": "visits", "value": float(p["visits"])})
    return pd.DataFrame(rows, columns=["time", "series", "value"])


def spend_chart(frame: pd.DataFrame) -> alt.FacetChart:
    """Spend and visits over the day, one panel each (their scales differ), time in UTC."""
    return (
        alt.Chart(frame)
        .mark_line(point=True, interpolate="step-after")
        .encode(
            x=alt.X("time:T", title="time (UTC)"),
            y=alt.Y("value:Q", title=None),
            color=alt.Color("series:N", legend=None),
            tooltip=[alt.Tooltip("time:T", format="%H:%M"), "series:N", alt.Tooltip("value:Q", format=",.2f")],
        )
        .properties(height=160)
        .facet(row=alt.Row("series:N", title=None))
        .resolve_scale(y="independent")
    )


def plan_frame(plan: Sequence[DueEntity], names: dict[str, str] | None = None) -> pd.DataFrame:
    """The next visits: rank, entity, why due, best EIG, expected cost, EIG per dollar, age, the reason in words."""
    names = names or {}
    rows = [
        {
            "#": d.rank,
            "entity": names.get(d.entity_id, d.entity_id),
            "why": GROUP_WORDS[d.group] + (" (already actionable)" if d.actionable else ""),
            "best EIG": round(d.eig, 3),
            "expected cost (USD)": round(d.expected_cost_usd, 3),
            "EIG per $": round(d.eig_per_usd, 2),
            "last visit": "never" if d.age_s is None else f"{fmt_age(d.age_s)} ago",
            "best hypothesis": d.pattern or "nothing active",
            "reason": d.reason,
        }
        for d in plan
    ]
    columns = ["#", "entity", "why", "best EIG", "expected cost (USD)", "EIG per $", "last visit", "best hypothesis"]
    return display_frame(pd.DataFrame(rows, columns=[*columns, "reason"]))


def tiles(status) -> list[tuple[str, str, str]]:
    """(label, value, help) of the page's tiles from a ProductionStatus."""
    s = status.summary
    return [
        (
            "Spent today",
            f"${s.spent_usd:,.2f}",
            "settled batches at their real cost; a batch in flight at its reservation",
        ),
        ("Budget today", "—" if status.budget_usd is None else f"${fmt_num(status.budget_usd)}", "per UTC day"),
        ("Visits today", f"{s.visits:,}", f"{s.entities:,} entities"),
        ("Became actionable", f"{s.became_actionable:,}", "entities a visit today made actionable"),
        ("Due", f"{status.due:,}", f"{status.new:,} new (never visited)"),
        ("Overdue", f"{status.overdue:,}", "not visited for longer than the maximum age"),
    ]
