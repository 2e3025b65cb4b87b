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
from console.vocab import display_frame
from engine.discovery.entity_view import EVIDENCE_COLUMNS, RANKING_COLUMNS, confidence_chart_rows

#: columns holding internal names (hop types, decisions, statuses, systems): shown in words
NAME_COLUMNS = ("hop_type", "decision", "status", "status_before", "status_after", "system", "depth")
#: how a column with a missing cell is written once it becomes text (console.vocab.display_frame)
TEXT_SPECS = {"rank": ",.0f", "iteration": ",.0f", "hops": ",.0f", "confirmations": ",.0f"}


def rows_frame(rows: Sequence[Mapping[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    """``rows`` as a frame with exactly ``columns``, in that order (empty rows: an empty frame with them)."""
    return pd.DataFrame(rows, columns=list(columns))


def shown_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as an operator reads it: internal names in words, a missing cell as "—" (never "None")."""
    return display_frame(frame, names=tuple(c for c in NAME_COLUMNS if c in frame.columns), specs=TEXT_SPECS)


def run_warning(entity_name: str, hypotheses: int, max_hops: int) -> str:
    """What a live Run discovery will write, said before it does (the page asks to confirm)."""
    return (
        f"A live run writes to the graph: the confidence, status and counters of {entity_name}'s "
        f"{hypotheses:,} hypotheses and one evidence row per hop (at most {max_hops:,} hops), "
        "and records a metric event. A shadow run computes the same and writes nothing to the graph."
    )


def hop_segments(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Trajectory rows with a ``segment`` per unbroken run of hops on the same hypothesis.

    A hypothesis probed at hops 1, 2 and 5 gets two segments (1-2 and 5; its start at 0 joins the first
    hop only when that is hop 1): a line is drawn within a segment, never across hops that did not probe it.
    """
    out: list[dict[str, Any]] = []
    last: dict[str, tuple[int, int]] = {}  # pattern -> (last iteration, its segment)
    segments = 0
    for r in sorted(rows, key=lambda r: (r["pattern"], r["iteration"])):
        prev = last.get(r["pattern"])
        if prev is None or r["iteration"] != prev[0] + 1:
            segments += 1
            segment = segments
        else:
            segment = prev[1]
        last[r["pattern"]] = (r["iteration"], segment)
        out.append({**r, "segment": segment})
    return out


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
    """Confidence of each probed hypothesis over the run's hops (iteration 0 = before the run): a point per
    hop that probed it, lines only between consecutive hops on it (hop_segments), never across a gap."""
    frame = pd.DataFrame(hop_segments(rows), columns=["iteration", "pattern", "confidence", "decision", "segment"])
    base = alt.Chart(frame).encode(
        x=alt.X("iteration:Q", title="hop", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("confidence:Q", title="confidence", scale=alt.Scale(zero=False)),
        color=alt.Color("pattern:N", title="hypothesis"),
        tooltip=["iteration:Q", "pattern:N", "decision:N", alt.Tooltip("confidence:Q", format=".2f")],
    )
    return base.mark_line().encode(detail="segment:N") + base.mark_point(filled=True, size=60)


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
