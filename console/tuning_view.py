"""Tuning page helpers: pure frames and altair charts over a tuning study's trials (no Streamlit here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import altair as alt
import pandas as pd

from console.naming import download_name
from engine.tuning import Study, Trial

TRIAL_COLUMNS = (
    "trial",
    "state",
    "score",
    "holdout_score",
    "gap",
    "precision",
    "recall",
    "cost_per_entity",
    "true_actionable",
    "false_actionable",
    "seconds",
    "config_hash",
    "error",
)


def trials_frame(trials: Iterable[Trial], params: Sequence[str]) -> pd.DataFrame:
    """One row per trial: scores, quality figures, the tuned parameter values, the error of a failed one."""
    rows = [t.row_summary() for t in trials]
    columns = [*TRIAL_COLUMNS, *params]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    for c in columns:
        if c not in frame:
            frame[c] = None
    return frame[columns]


def best_so_far_frame(trials: Iterable[Trial]) -> pd.DataFrame:
    """Per trial number: its training score (None when it failed) and the best training score up to it."""
    rows, best = [], None
    for t in sorted(trials, key=lambda t: t.number):
        if t.complete and t.score is not None and (best is None or t.score > best):
            best = t.score
        rows.append({"trial": t.number, "score": t.score if t.complete else None, "best so far": best})
    return pd.DataFrame(rows, columns=["trial", "score", "best so far"])


def best_so_far_chart(frame: pd.DataFrame, base_score: float | None = None) -> alt.Chart:
    long = frame.melt("trial", value_vars=["score", "best so far"], var_name="series", value_name="training score")
    long = long.dropna(subset=["training score"])
    enc = dict(
        x=alt.X("trial:Q", title="trial", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("training score:Q", title="training score (per entity)", scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", title=None, sort=["score", "best so far"]),
        tooltip=["trial", "series", alt.Tooltip("training score:Q", format=".4f")],
    )
    points = alt.Chart(long[long["series"] == "score"]).mark_circle(size=50).encode(**enc)
    line = alt.Chart(long[long["series"] == "best so far"]).mark_line(interpolate="step-after").encode(**enc)
    chart = points + line
    if base_score is not None:
        rule = (
            alt.Chart(pd.DataFrame({"y": [base_score], "label": ["trial 0 (current config)"]}))
            .mark_rule(strokeDash=[4, 4], color="gray")
            .encode(y="y:Q", tooltip=["label"])
        )
        chart = chart + rule
    return chart.properties(height=280)


def param_chart(frame: pd.DataFrame, param: str) -> alt.Chart:
    """Training score of every finished trial against one tuned parameter (trial 0 highlighted)."""
    data = frame.dropna(subset=["score"])[["trial", "score", param]].copy()
    data["kind"] = ["trial 0 (current config)" if n == 0 else "search trial" for n in data["trial"]]
    return (
        alt.Chart(data)
        .mark_circle(size=70, opacity=0.8)
        .encode(
            x=alt.X(f"{param}:Q", title=param, scale=alt.Scale(zero=False)),
            y=alt.Y("score:Q", title="training score (per entity)", scale=alt.Scale(zero=False)),
            color=alt.Color("kind:N", title=None),
            tooltip=["trial", alt.Tooltip("score:Q", format=".4f"), param],
        )
        .properties(height=260)
    )


def holdout_frame(trials: Iterable[Trial], winner: int | None = None) -> pd.DataFrame:
    """The re-scored trials: training vs hold-out score and the optimism gap."""
    rows = [
        {
            "trial": t.number,
            "training": t.score,
            "hold-out": t.holdout_score,
            "gap": t.gap,
            "role": "winner" if t.number == winner else ("current config" if t.number == 0 else "top trial"),
        }
        for t in sorted(trials, key=lambda t: t.number)
        if t.holdout_score is not None
    ]
    return pd.DataFrame(rows, columns=["trial", "training", "hold-out", "gap", "role"])


def holdout_chart(frame: pd.DataFrame) -> alt.Chart:
    long = frame.melt(["trial", "role"], value_vars=["training", "hold-out"], var_name="set", value_name="score")
    long["label"] = [f"trial {n} ({r})" for n, r in zip(long["trial"], long["role"])]
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("label:N", title=None, sort=None),
            xOffset=alt.XOffset("set:N", sort=["training", "hold-out"]),
            y=alt.Y("score:Q", title="score (per entity)"),
            color=alt.Color("set:N", title=None, sort=["training", "hold-out"]),
            tooltip=["label", "set", alt.Tooltip("score:Q", format=".4f")],
        )
        .properties(height=280)
    )


def study_label(study: Study, state: str) -> str:
    return f"#{study.id} · {study.name} · {state}"


def result_tiles(result: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(label, value, help) tiles of a finished study."""
    base, win = result["base"], result["winner"]

    def f(x):
        return "—" if x is None else f"{x:.4f}"

    return [
        ("Current config, hold-out", f(base["holdout_score"]), "trial 0 re-scored on the hold-out entities"),
        ("Winner, hold-out", f(win["holdout_score"]), f"trial {win['trial']}"),
        ("Hold-out improvement", f(result["improvement_holdout"]), "winner minus current config, per entity"),
        ("Optimism gap", f(win["gap"]), "winner's training minus hold-out score"),
    ]


def file_name(what: str, study_id: int, ext: str, now: float | None = None) -> str:
    """``discovery-tuning-study-<id>-<what>-<YYYYmmdd-HHMM>.<ext>`` (UTC)."""
    return download_name("tuning-study", ext, study_id, what, now=now)


def progress_of(done: int, total: int) -> float:
    return 0.0 if not total else max(0.0, min(1.0, done / total))
