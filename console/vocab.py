"""One vocabulary for every page: how a missing or unbounded number reads, what internal names are
called, and the names of figures that would otherwise mean two things.

Pure: no Streamlit. Every page and view formats through here, so "None", "nan", "inf" and
snake_case state names never reach an operator (tests/pages/test_vocabulary.py walks every page).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

import pandas as pd

#: a value that is not there (no measurement yet, not applicable)
MISSING = "—"
#: a measurement that could not be computed (NaN)
NOT_AVAILABLE = "n/a"
NO_UPPER_BOUND = "no upper bound"
NO_LOWER_BOUND = "no lower bound"

#: the two latencies, named apart everywhere (never just "p95 latency")
RUN_LATENCY = "run latency (evidence + engine)"
ENGINE_TIME = "engine time per entity"

#: internal names -> what an operator reads; anything not listed reads with its underscores as spaces
LABELS: dict[str, str] = {
    "four_eyes": "four-eyes",
    "rolled_back": "rolled back",
    "rolling_back": "rolling back",
    "rollback_interrupted": "rollback interrupted",
    "depth_exhausted": "depth exhausted",
    "cost_cap": "cost cap reached",
    "min_duration_days": "minimum duration (days)",
    "no_data": "no data",
    "new_crashed": "candidate crashed",
    "old_crashed": "old system crashed",
    "actionable_change": "actionable change",
    "cost_change": "cost change",
    "error_rate": "error rate",
    "p95_latency": f"p95 {ENGINE_TIME}",
    "dry_run": "dry run",
}


def is_missing(value: Any) -> bool:
    """None, or a float NaN (pandas' NA too)."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, Real) and not isinstance(value, bool) and math.isnan(float(value))


def fmt_num(value: Any, spec: str = ",.2f", *, unit: str = "", missing: str = MISSING) -> str:
    """``value`` formatted with ``spec`` and ``unit`` (" pp", " s", "%" ...); None reads ``missing``,
    NaN "n/a", +inf "no upper bound", -inf "no lower bound"."""
    if value is None or value is pd.NA:
        return missing
    if isinstance(value, bool) or not isinstance(value, Real):
        return str(value)
    x = float(value)
    if math.isnan(x):
        return NOT_AVAILABLE
    if math.isinf(x):
        return NO_UPPER_BOUND if x > 0 else NO_LOWER_BOUND
    return f"{format(value if isinstance(value, int) else x, spec)}{unit}"


def fmt_pp(fraction_delta: Any, digits: int = 1) -> str:
    """A change of a rate, as percentage points: 0.125 -> "+12.5 pp"."""
    if is_missing(fraction_delta) or isinstance(fraction_delta, bool) or not isinstance(fraction_delta, Real):
        return fmt_num(fraction_delta)
    x = float(fraction_delta)
    return fmt_num(x) if math.isinf(x) else f"{x * 100:+.{digits}f} pp"


def fmt_pct(fraction: Any, digits: int = 1, *, signed: bool = False) -> str:
    """A fraction as a percentage: 0.125 -> "12.5%" (a relative change with ``signed``: "+12.5%")."""
    if is_missing(fraction) or isinstance(fraction, bool) or not isinstance(fraction, Real):
        return fmt_num(fraction)
    x = float(fraction)
    return fmt_num(x) if math.isinf(x) else f"{x * 100:{'+' if signed else ''}.{digits}f}%"


def human(name: Any, labels: Mapping[str, str] = LABELS) -> str:
    """What an internal name (a state, a stop reason, a field) reads as: ``rolled_back`` -> "rolled back"."""
    if is_missing(name):
        return MISSING
    text = str(getattr(name, "value", name))
    return labels.get(text) or text.replace("_", " ")


def text_cell(value: Any, spec: str = ",.2f") -> str:
    """One table cell as text: numbers through fmt_num, missing values as MISSING, names as they are."""
    if is_missing(value):
        return MISSING
    if isinstance(value, Real) and not isinstance(value, bool):
        return fmt_num(value, spec)
    return str(value)


def display_frame(
    frame: pd.DataFrame, *, names: tuple[str, ...] = (), specs: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """``frame`` ready for st.dataframe: Streamlit draws a missing cell as "None", so every column with a
    missing value becomes text (numbers formatted with ``specs[column]`` or ",.2f", missing as MISSING);
    columns in ``names`` hold internal names and read through ``human``. Complete numeric columns stay numbers
    (they sort as numbers)."""
    out = frame.copy()
    specs = specs or {}
    for column in out.columns:
        series = out[column]
        if column in names:
            out[column] = series.map(human)
        elif series.map(is_missing).any():
            spec = specs.get(column, ",.2f")
            out[column] = series.map(lambda v, s=spec: text_cell(v, s))
        elif series.dtype == object:
            out[column] = series.map(lambda v: v if isinstance(v, str) else text_cell(v))
    return out


__all__ = [
    "ENGINE_TIME",
    "LABELS",
    "MISSING",
    "NOT_AVAILABLE",
    "NO_LOWER_BOUND",
    "NO_UPPER_BOUND",
    "RUN_LATENCY",
    "display_frame",
    "fmt_num",
    "fmt_pct",
    "fmt_pp",
    "human",
    "is_missing",
    "text_cell",
]
