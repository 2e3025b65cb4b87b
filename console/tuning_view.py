"""Tuning page helpers: pure frames, texts and altair charts over a tuning study's trials (no Streamlit here).

The page reads a study as optuna-dashboard's readers expect: best so far, parameter importance, a slice
plot per parameter, parallel coordinates over the most important parameters, a filtered trials table;
the winner as a parameter diff against the live config; the hold-out improvement with its interval. Every
number goes through console.vocab (no "None", "nan" or "inf" on the page) and internal names read as words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import altair as alt
import pandas as pd

from console.configs_view import diff_frame
from console.naming import download_name
from console.vocab import MISSING, display_frame, fmt_num, human
from engine.core.configs import ParamChange
from engine.core.params import SPEC_BY_NAME
from engine.tuning import Study, Trial
from engine.tuning.analysis import SMALL_HOLDOUT, Interval

SCORE_UNIT = "per entity"
#: how many parameters the slice plot and the parallel coordinates show by default (most important first)
TOP_PARAMS = 5

#: trial and study states as an operator reads them
STATE_LABELS: dict[str, str] = {
    "complete": "finished",
    "failed": "failed",
    "finished": "finished",
    "created": "not started",
    "queued": "queued",
    "running": "running",
    "paused": "paused",
    "cancelled": "cancelled",
    "dead": "worker stopped",
    "succeeded": "finished",
}

#: ParameterConfig's parameter groups (engine.core.params) as an operator reads them
PARAM_GROUP_LABELS: dict[str, str] = {
    "value": "EIG category values",
    "deltas": "confidence changes per decision",
    "eig": "EIG decays",
    "search": "search and stop rules",
    "lifecycle": "hypothesis lifecycle",
    "cluster": "cluster dampening",
    "cache": "hypothesis cache",
    "cost": "cost cap",
    "actionable": "actionable gate",
    "bonus": "selection bonuses",
    "channel": "channel score weights",
}

#: the trials table: internal column -> what the operator reads (units in the name)
TRIAL_COLUMNS: dict[str, str] = {
    "trial": "trial",
    "state": "state",
    "score": f"training score ({SCORE_UNIT})",
    "holdout_score": f"hold-out score ({SCORE_UNIT})",
    "gap": "optimism gap (training − hold-out)",
    "precision": "precision",
    "recall": "recall",
    "cost_per_entity": "cost per entity (USD)",
    "true_actionable": "true actionable calls",
    "false_actionable": "false actionable calls",
    "seconds": "duration (s)",
    "config_hash": "config hash",
    "error": "error",
}
TRIAL_SPECS = {
    "score": ".4f",
    "holdout_score": ".4f",
    "gap": "+.4f",
    "precision": ".3f",
    "recall": ".3f",
    "cost_per_entity": ".4f",
    "true_actionable": ",.0f",
    "false_actionable": ",.0f",
    "seconds": ",.2f",
}


def state_label(state: str) -> str:
    return STATE_LABELS.get(str(state), human(state))


def group_label(group: str) -> str:
    return PARAM_GROUP_LABELS.get(group, human(group))


def param_label(name: str) -> str:
    """A tuned parameter as a column or axis title: its name (the name the config file and CLI use)."""
    return name


# --------------------------------------------------------------------------- trials table


def trials_frame(trials: Iterable[Trial], params: Sequence[str]) -> pd.DataFrame:
    """One row per trial (internal column names, raw values): scores, quality figures, the tuned parameter
    values, the error of a failed one. The charts read this; the table shows ``trials_table``."""
    rows = [t.row_summary() for t in trials]
    columns = [*TRIAL_COLUMNS, *params]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    for c in columns:
        if c not in frame:
            frame[c] = None
    return frame[columns]


def trials_table(trials: Iterable[Trial], params: Sequence[str]) -> pd.DataFrame:
    """The trials table as shown: states in words, missing figures as "—", units in the column names."""
    frame = trials_frame(trials, params)
    frame["state"] = frame["state"].map(state_label)
    frame["error"] = frame["error"].map(lambda e: e if isinstance(e, str) and e else MISSING)
    shown = display_frame(frame, specs=TRIAL_SPECS)
    return shown.rename(columns=TRIAL_COLUMNS)


#: printf formats of the table's columns that stay numbers (complete columns: display_frame keeps them numeric
#: so they sort as numbers), so one column reads with one number of decimals
NUMBER_FORMATS = {
    TRIAL_COLUMNS["score"]: "%.4f",
    TRIAL_COLUMNS["holdout_score"]: "%.4f",
    TRIAL_COLUMNS["gap"]: "%+.4f",
    TRIAL_COLUMNS["precision"]: "%.3f",
    TRIAL_COLUMNS["recall"]: "%.3f",
    TRIAL_COLUMNS["cost_per_entity"]: "%.4f",
    TRIAL_COLUMNS["seconds"]: "%.2f",
}


def number_formats(table: pd.DataFrame) -> dict[str, str]:
    """``NUMBER_FORMATS`` of the columns of ``table`` that are numeric (a column with a missing value is text)."""
    return {c: f for c, f in NUMBER_FORMATS.items() if c in table.columns and pd.api.types.is_numeric_dtype(table[c])}


def filter_bounds(trials: Sequence[Trial], param: str | None = None) -> tuple[float, float] | None:
    """(lowest, highest) training score of the complete trials, or of ``param``'s values; None when there is
    no range to filter on (no values, or all equal)."""
    if param is None:
        values = [float(t.score) for t in trials if t.complete and t.score is not None]
    else:
        values = [float(t.point[param]) for t in trials if t.point.get(param) is not None]
    if not values or min(values) == max(values):
        return None
    return min(values), max(values)


# --------------------------------------------------------------------------- best so far


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
        y=alt.Y("training score:Q", title=f"training score ({SCORE_UNIT})", scale=alt.Scale(zero=False)),
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


# --------------------------------------------------------------------------- importance, slice, parallel


def importance_frame(importance: Mapping[str, float]) -> pd.DataFrame:
    """One row per parameter: its share of the explained variance (0..1), its group, largest first."""
    rows = [
        {
            "parameter": name,
            "group": group_label(SPEC_BY_NAME[name].group) if name in SPEC_BY_NAME else MISSING,
            "importance": share,
        }
        for name, share in sorted(importance.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return pd.DataFrame(rows, columns=["parameter", "group", "importance"])


def importance_chart(frame: pd.DataFrame) -> alt.Chart:
    """Horizontal bars: each parameter's share of the score's variance explained by its main effect."""
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("importance:Q", title="share of score variance (main effect)", axis=alt.Axis(format="%")),
            y=alt.Y("parameter:N", title=None, sort="-x"),
            color=alt.Color("group:N", title="parameter group", legend=alt.Legend(orient="bottom", columns=2)),
            tooltip=["parameter", "group", alt.Tooltip("importance:Q", format=".1%")],
        )
        .properties(height=alt.Step(26))
    )


def top_params(importance: Mapping[str, float], params: Sequence[str], n: int = TOP_PARAMS) -> list[str]:
    """The ``n`` most important parameters (the study's order when importance is not known yet)."""
    ranked = [p for p, _ in sorted(importance.items(), key=lambda kv: (-kv[1], kv[0])) if p in params]
    return (ranked or list(params))[:n]


def slice_frame(frame: pd.DataFrame, params: Sequence[str]) -> pd.DataFrame:
    """Long frame for the slice plot: (trial, parameter, value, training score, kind) of every complete trial."""
    done = frame.dropna(subset=["score"])
    rows = [
        {
            "trial": int(r["trial"]),
            "parameter": p,
            "value": float(r[p]),
            "training score": float(r["score"]),
            "kind": "trial 0 (current config)" if int(r["trial"]) == 0 else "search trial",
        }
        for _, r in done.iterrows()
        for p in params
        if p in done and r[p] is not None and not pd.isna(r[p])
    ]
    return pd.DataFrame(rows, columns=["trial", "parameter", "value", "training score", "kind"])


def slice_chart(long: pd.DataFrame, columns: int = 3) -> alt.FacetChart:
    """Training score against each parameter's value, one panel per parameter (each with its own x scale)."""
    return (
        alt.Chart(long)
        .mark_circle(size=55, opacity=0.8)
        .encode(
            x=alt.X("value:Q", title=None, scale=alt.Scale(zero=False)),
            y=alt.Y("training score:Q", title=f"training score ({SCORE_UNIT})", scale=alt.Scale(zero=False)),
            color=alt.Color("kind:N", title=None),
            tooltip=["trial", "parameter", "value", alt.Tooltip("training score:Q", format=".4f")],
        )
        .properties(width=220, height=180)
        .facet(facet=alt.Facet("parameter:N", title=None), columns=columns)
        .resolve_scale(x="independent")
    )


def parallel_frame(frame: pd.DataFrame, params: Sequence[str]) -> pd.DataFrame:
    """Long frame for parallel coordinates: per complete trial, each parameter's value scaled to 0..1 over the
    trials (1 = the highest tried) and last the training score, scaled the same way."""
    done = frame.dropna(subset=["score"])
    axes = [p for p in params if p in done] + ["score"]
    rows = []
    for axis in axes:
        values = pd.to_numeric(done[axis], errors="coerce")
        lo, hi = values.min(), values.max()
        span = hi - lo
        for (_, r), v in zip(done.iterrows(), values):
            if pd.isna(v):
                continue
            rows.append(
                {
                    "trial": int(r["trial"]),
                    "axis": f"training score ({SCORE_UNIT})" if axis == "score" else axis,
                    "position": 0.5 if not span else float((v - lo) / span),
                    "value": float(v),
                    "training score": float(r["score"]),
                }
            )
    return pd.DataFrame(rows, columns=["trial", "axis", "position", "value", "training score"])


def parallel_chart(long: pd.DataFrame) -> alt.Chart:
    """One line per trial across the axes (top parameters, then the score), coloured by training score."""
    order = list(dict.fromkeys(long["axis"]))
    return (
        alt.Chart(long)
        .mark_line(opacity=0.7, point=True)
        .encode(
            x=alt.X("axis:N", title=None, sort=order, axis=alt.Axis(labelAngle=0, labelLimit=160)),
            y=alt.Y("position:Q", title="lowest tried → highest tried", axis=alt.Axis(format="%", labels=False)),
            detail="trial:N",
            color=alt.Color(
                "training score:Q", title=f"training score ({SCORE_UNIT})", scale=alt.Scale(scheme="viridis")
            ),
            tooltip=[
                "trial",
                "axis",
                alt.Tooltip("value:Q", format=",.4g"),
                alt.Tooltip("training score:Q", format=".4f"),
            ],
        )
        .properties(height=300)
    )


# --------------------------------------------------------------------------- hold-out


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


HOLDOUT_COLUMNS = {
    "training": f"training score ({SCORE_UNIT})",
    "hold-out": f"hold-out score ({SCORE_UNIT})",
    "gap": "optimism gap (training − hold-out)",
}


def holdout_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``holdout_frame`` as shown: missing figures as "—", units in the column names."""
    shown = display_frame(frame, specs={"training": ".4f", "hold-out": ".4f", "gap": "+.4f"})
    return shown.rename(columns=HOLDOUT_COLUMNS)


def holdout_chart(frame: pd.DataFrame) -> alt.Chart:
    long = frame.melt(["trial", "role"], value_vars=["training", "hold-out"], var_name="set", value_name="score")
    long["label"] = [f"trial {n} ({r})" for n, r in zip(long["trial"], long["role"])]
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("label:N", title=None, sort=None),
            xOffset=alt.XOffset("set:N", sort=["training", "hold-out"]),
            y=alt.Y("score:Q", title=f"score ({SCORE_UNIT})"),
            color=alt.Color("set:N", title=None, sort=["training", "hold-out"]),
            tooltip=["label", "set", alt.Tooltip("score:Q", format=".4f")],
        )
        .properties(height=280)
    )


def interval_text(iv: Interval | None) -> str:
    """ "+0.66 per entity (95% interval −0.12 to +1.41, 15 hold-out entities)"; without per-entity scores, a
    note that none were kept."""
    if iv is None:
        return "no interval: the per-entity hold-out scores were not kept for this study (re-scored before they were)"
    return (
        f"{fmt_num(iv.mean, '+.4f')} {SCORE_UNIT} ({iv.confidence:.0%} interval {fmt_num(iv.low, '+.4f')} to "
        f"{fmt_num(iv.high, '+.4f')}, paired bootstrap over {iv.n:,} hold-out entities)"
    )


def small_holdout_warning(n: int) -> str | None:
    """The warning shown under ``SMALL_HOLDOUT`` hold-out entities (None at or above it)."""
    if n >= SMALL_HOLDOUT:
        return None
    return (
        f"{n:,} hold-out entities: the interval is wide; re-score on more before trusting it "
        f"(at least {SMALL_HOLDOUT} is the rule of thumb)."
    )


# --------------------------------------------------------------------------- winner and status


def winner_diff_frame(changes: list[ParamChange]) -> pd.DataFrame:
    """console.configs_view.diff_frame with the parameter groups in words."""
    frame = diff_frame(changes)
    frame["group"] = frame["group"].map(group_label)
    return frame


def winner_heading(result: Mapping[str, Any]) -> str:
    """ "Winner: trial 4 · training 1.2345 · hold-out 1.1111 per entity"."""
    win = result["winner"]
    return (
        f"Winner: trial {win['trial']} · training score {fmt_num(win['score'], '.4f')} · hold-out score "
        f"{fmt_num(win['holdout_score'], '.4f')} ({SCORE_UNIT})"
    )


def handed_over_text(info: Mapping[str, Any]) -> str:
    """What the hand-over did, from the stored candidate (hash, source, file)."""
    return (
        f"Handed to rollout: config {info.get('hash', MISSING)} from {info.get('source', MISSING)} is now the "
        f"candidate of the next rollout (Rollout page); written to {info.get('path', MISSING)}."
    )


def study_label(study: Study, state: str) -> str:
    return f"#{study.id} · {study.name} · {state_label(state)}"


def status_line(
    state: str,
    *,
    trials_done: int,
    trials_total: int,
    job_message: str = "",
    cancel_requested: bool = False,
    result: Mapping[str, Any] | None = None,
) -> str:
    """The one line above the progress bar, from the study's state: a worker's progress message only while
    a worker works on it (never "starting" after the work ended, never the last re-scored trial as if it won)."""
    count = f"{trials_done}/{trials_total:,} trials"
    if state == "finished" and result is not None:
        win = result["winner"]["trial"]
        outcome = "the current config (trial 0) won" if result.get("winner_is_base") else f"trial {win} won"
        return f"finished · {count} · {outcome} on the hold-out entities"
    if state == "created":
        return f"not started · {count} · Resume starts it"
    if state == "queued":
        return f"queued · {count} · waiting for a worker process to pick it up"
    if state in ("running", "paused"):
        if cancel_requested:
            return f"{state_label(state)} · {count} · cancel requested: it stops after the trial in progress"
        return f"{state_label(state)} · {count}" + (f" · {job_message}" if job_message else "")
    # a study that stopped: the worker's last message is what it was doing then, said as such
    last = f" · last step: {job_message}" if job_message else ""
    if state == "cancelled":
        return f"cancelled · {count}{last} · Resume continues from the finished trials"
    if state == "dead":
        return f"worker stopped · {count}{last} · Resume continues from the finished trials"
    if state == "failed":
        return f"failed · {count}{last} · see the error below; Resume retries from the finished trials"
    return f"{state_label(state)} · {count}"


def result_tiles(result: Mapping[str, Any], interval: Interval | None = None) -> list[tuple[str, str, str]]:
    """(label, value, help) tiles of a finished study; the improvement carries its interval when known."""
    base, win = result["base"], result["winner"]

    def f(x, spec=".4f"):
        return fmt_num(x, spec)

    improvement = f(result["improvement_holdout"], "+.4f")
    return [
        (
            "Current config, hold-out",
            f(base["holdout_score"]),
            f"trial 0 re-scored on the hold-out entities; score {SCORE_UNIT}",
        ),
        ("Winner, hold-out", f(win["holdout_score"]), f"trial {win['trial']}; score {SCORE_UNIT}"),
        (
            "Hold-out improvement",
            improvement,
            f"winner minus current config, {SCORE_UNIT}"
            + (
                f"; below it its {interval.confidence:.0%} interval (paired bootstrap over "
                f"{interval.n:,} hold-out entities)"
                if interval is not None
                else ""
            ),
        ),
        ("Optimism gap", f(win["gap"], "+.4f"), f"winner's training minus hold-out score, {SCORE_UNIT}"),
    ]


def interval_delta(iv: Interval | None) -> str | None:
    """The line under the improvement tile: "95% interval -1.15 to +2.04" (None without an interval)."""
    if iv is None:
        return None
    return f"{iv.confidence:.0%} interval {fmt_num(iv.low, '+.2f')} to {fmt_num(iv.high, '+.2f')}"


def file_name(what: str, study_id: int, ext: str, now: float | None = None) -> str:
    """``discovery-tuning-study-<id>-<what>-<YYYYmmdd-HHMM>.<ext>`` (UTC)."""
    return download_name("tuning-study", ext, study_id, what, now=now)


def progress_of(done: int, total: int) -> float:
    return 0.0 if not total else max(0.0, min(1.0, done / total))
