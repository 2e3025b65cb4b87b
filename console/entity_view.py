"""Frames and charts of the entity view (Hypotheses page): EIG ranking, confidence before/after and hop by hop.

Pure pandas/altair over the rows engine.discovery.entity_view computes; no Streamlit
(console/entity_panel.py draws them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import pandas as pd

from console.format import STATUS_COLOURS
from engine.discovery.entity_view import EVIDENCE_COLUMNS, RANKING_COLUMNS, confidence_chart_rows


def rows_frame(rows: Sequence[Mapping[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    """``rows`` as a frame with exactly ``columns``, in that order (empty rows: an empty frame with them)."""
    return pd.DataFrame(rows, columns=list(columns))


def evidence_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Evidence trail rows as a frame, ``at`` as UTC datetimes."""
    frame = rows_frame(rows, EVIDENCE_COLUMNS)
    frame["at"] = pd.to_datetime(frame["at"], unit="s", utc=True)
    return frame


def confidence_chart(rows: list[dict]) -> alt.Chart:
    """Before/after confidence per hypothesis: grouped horizontal bars, most moved on top."""
    order = list(dict.fromkeys(r["pattern"] for r in rows))
    frame = pd.DataFrame(confidence_chart_rows(rows), columns=["pattern", "when", "confidence"])
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("pattern:N", sort=order, title=None),
            yOffset=alt.YOffset("when:N", sort=["before", "after"]),
            x=alt.X("confidence:Q", scale=alt.Scale(domain=[0, 1]), title="confidence"),
            color=alt.Color(
                "when:N",
                sort=["before", "after"],
                scale=alt.Scale(domain=["before", "after"], range=["#bab0ac", "#4c78a8"]),
                title=None,
            ),
            tooltip=["pattern:N", "when:N", alt.Tooltip("confidence:Q", format=".2f")],
        )
    )


def trajectory_chart(rows: list[dict]) -> alt.Chart:
    """Confidence of each probed hypothesis over the run's hops (iteration 0 = before the run)."""
    frame = pd.DataFrame(rows, columns=["iteration", "pattern", "confidence", "decision"])
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("iteration:Q", title="hop", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("confidence:Q", title="confidence", scale=alt.Scale(zero=False)),
            color=alt.Color("pattern:N", title="hypothesis"),
            tooltip=["iteration:Q", "pattern:N", "decision:N", alt.Tooltip("confidence:Q", format=".2f")],
        )
    )


def eig_chart(rows: list[dict]) -> alt.Chart:
    """EIG per hypothesis, coloured by status (the ranking at a glance)."""
    frame = pd.DataFrame(rows, columns=list(RANKING_COLUMNS))
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("pattern:N", sort=list(frame["pattern"]), title=None),
            x=alt.X("eig:Q", title="expected information gain"),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=list(STATUS_COLOURS), range=list(STATUS_COLOURS.values())),
                title="status",
            ),
            tooltip=[
                "pattern:N",
                "category:N",
                "status:N",
                alt.Tooltip("eig:Q", format=".3f"),
                alt.Tooltip("uncertainty:Q", format=".2f"),
                alt.Tooltip("novelty:Q", format=".3f"),
                alt.Tooltip("value:Q", format=".2f"),
                alt.Tooltip("recency:Q", format=".3f"),
            ],
        )
    )
