"""Altair charts of the console. Each takes a frame made by console.format and only draws it."""

from __future__ import annotations

import altair as alt
import pandas as pd

from console.format import STATUS_COLOURS, STATUS_ORDER


def status_bars(frame: pd.DataFrame) -> alt.LayerChart:
    """Hypotheses by status (frame from format.status_frame), one fixed colour per status.

    Each bar carries its count: ACTIVE usually dwarfs the rest, whose bars are
    then too short to read.
    """
    base = alt.Chart(frame).encode(
        x=alt.X("status:N", sort=list(STATUS_ORDER), title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("hypotheses:Q", title="hypotheses"),
    )
    bars = base.mark_bar().encode(
        color=alt.Color(
            "status:N",
            scale=alt.Scale(domain=list(STATUS_COLOURS), range=list(STATUS_COLOURS.values())),
            legend=None,
        ),
        tooltip=["status:N", alt.Tooltip("hypotheses:Q", format=",")],
    )
    labels = base.mark_text(dy=-6, baseline="bottom").encode(text=alt.Text("hypotheses:Q", format=","))
    return bars + labels


def count_bars(frame: pd.DataFrame, key: str, value: str, *, colour: str = "#4c78a8") -> alt.Chart:
    """Horizontal bars of a two-column count frame (format.counts_frame), largest on top."""
    return (
        alt.Chart(frame)
        .mark_bar(color=colour)
        .encode(
            y=alt.Y(f"{key}:N", sort="-x", title=None),
            x=alt.X(f"{value}:Q", title=value),
            tooltip=[f"{key}:N", alt.Tooltip(f"{value}:Q", format=",")],
        )
    )
