"""Frames for the Alerts page: states of every rule, the rule editor, history. Pure (no Streamlit)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from console.vocab import MISSING, human
from engine.monitoring.alerts import AlertRecord, AlertRule, AlertStatus, Metric, changed_rule_ids

#: order of the state tiles and of the states table (worst first)
STATE_ORDER = (AlertStatus.FIRING, AlertStatus.PENDING, AlertStatus.NO_DATA, AlertStatus.RESOLVED, AlertStatus.OK)
NOT_EVALUATED = "not evaluated"
#: UTC times in the tables, as text (a missing time reads MISSING, never "None")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: Material icons of the state tiles (emoji need a font that headless browsers and some desktops lack)
STATE_ICONS = {
    AlertStatus.FIRING.value: ":material/notifications_active:",
    AlertStatus.PENDING.value: ":material/hourglass_top:",
    AlertStatus.NO_DATA.value: ":material/help:",
    AlertStatus.RESOLVED.value: ":material/task_alt:",
    AlertStatus.OK.value: ":material/check_circle:",
    NOT_EVALUATED: ":material/radio_button_unchecked:",
}
#: background of the state cell in the states table, by the state as shown (console.vocab.human)
STATE_COLOURS = {
    human(AlertStatus.FIRING): "#f8d0d0",
    human(AlertStatus.PENDING): "#fde4c4",
    human(AlertStatus.NO_DATA): "#e8e8e8",
    human(AlertStatus.RESOLVED): "#d4e4f7",
    human(AlertStatus.OK): "#d6efd6",
}
#: the states table's columns, in order: what an operator acts on (state, what, acknowledged by, runbook)
#: first, so they fit a 1400 px screen without scrolling; the when and the rule id last
STATES_COLUMNS = (
    "state",
    "name",
    "value",
    "acknowledged by",
    "runbook",
    "condition",
    "reason",
    "severity",
    "since (UTC)",
    "evaluated (UTC)",
    "sample (runs)",
    "rule",
)


def state_style(state: str) -> str:
    """CSS for a state cell (pandas Styler.map), ``state`` as the table shows it."""
    colour = STATE_COLOURS.get(state)
    return f"background-color: {colour}" if colour else ""


#: columns of the rule editor an operator may change
EDITABLE = ("op", "threshold", "hold", "window", "min_sample", "severity", "system", "runbook")


def _utc(ts: float | None) -> str:
    """A UTC time as table text; MISSING when there is none."""
    return MISSING if ts is None else datetime.fromtimestamp(ts, tz=UTC).strftime(TIME_FORMAT)


def state_counts(rules: Sequence[AlertRule], states: Mapping[str, AlertRecord]) -> dict[str, int]:
    """Rules per state (every state listed, 0 where none), plus the rules never evaluated."""
    counts = Counter(states[r.id].state.value if r.id in states else NOT_EVALUATED for r in rules)
    out = {s.value: counts.get(s.value, 0) for s in STATE_ORDER}
    out[NOT_EVALUATED] = counts.get(NOT_EVALUATED, 0)
    return out


def states_frame(rules: Sequence[AlertRule], states: Mapping[str, AlertRecord]) -> pd.DataFrame:
    """One row per rule: its current state and why, the condition, and the runbook line. Worst state first.

    Every cell is text an operator reads: states in words, MISSING where there is nothing (never "None").
    """
    rank = {s.value: i for i, s in enumerate(STATE_ORDER)}
    rows = []
    for r in rules:
        rec = states.get(r.id)
        state = rec.state.value if rec else NOT_EVALUATED
        rows.append(
            {
                "state": human(state),
                "name": r.name,
                "value": r.metric.format_value(rec.value) if rec else MISSING,
                "acknowledged by": (rec.acknowledged_by or MISSING) if rec else MISSING,
                "runbook": r.runbook,
                "condition": r.condition(),
                "reason": rec.reason if rec else "never evaluated: press Evaluate now or start periodic evaluation",
                "severity": r.severity.value,
                "since (UTC)": _utc(rec.since) if rec else MISSING,
                "evaluated (UTC)": _utc(rec.evaluated_at) if rec else MISSING,
                "sample (runs)": f"{rec.sample:,}" if rec else MISSING,
                "rule": r.id,
                "_rank": rank.get(state, len(rank)),
            }
        )
    frame = pd.DataFrame(rows, columns=[*STATES_COLUMNS, "_rank"])
    return frame.sort_values(["_rank", "rule"], kind="stable").drop(columns="_rank").reset_index(drop=True)


def acknowledgeable(states: Mapping[str, AlertRecord]) -> list[str]:
    """Rules an operator can acknowledge now: pending or firing and not yet acknowledged."""
    return sorted(rid for rid, rec in states.items() if rec.state.needs_attention() and not rec.acknowledged)


def history_frame(rows: Sequence[Mapping[str, Any]], rules: Sequence[AlertRule] = ()) -> pd.DataFrame:
    """State transitions (newest first) as a table; values formatted in their rule's unit."""
    metric = {r.id: r.metric for r in rules}
    out = []
    for h in rows:
        m = metric.get(h["rule_id"])
        out.append(
            {
                "at (UTC)": _utc(h["at"]),
                "rule": h["rule_id"],
                "from": human(h["from_state"]) if h["from_state"] else "first evaluation",
                "to": human(h["to_state"]),
                "value": m.format_value(h["value"]) if m else (MISSING if h["value"] is None else f"{h['value']:g}"),
                "sample": h["sample"],
                "reason": h["reason"],
            }
        )
    return pd.DataFrame(out, columns=["at (UTC)", "rule", "from", "to", "value", "sample", "reason"])


def rules_frame(rules: Sequence[AlertRule]) -> pd.DataFrame:
    """The rules as the editor shows them (thresholds in the rule's own unit, durations as text)."""
    rows = []
    for r in rules:
        j = r.to_json()
        rows.append(
            {
                "id": r.id,
                "name": r.name,
                "metric": r.metric.label,
                "op": r.op,
                "threshold": r.threshold,
                "unit": r.metric.unit,
                "hold": j["hold"],
                "window": j["window"],
                "min_sample": r.min_sample,
                "severity": r.severity.value,
                "system": r.system,
                "runbook": r.runbook,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "id",
            "name",
            "metric",
            "op",
            "threshold",
            "unit",
            "hold",
            "window",
            "min_sample",
            "severity",
            "system",
            "runbook",
        ],
    )


def _plain(value: Any) -> Any:
    """Editor cells back to JSON values: NaN/None -> None, whole floats for counts -> int, numpy -> python."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        return value.strip()
    return value


def rules_from_editor(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rule documents from the edited frame, for engine.monitoring.alerts.save_rules (which validates them)."""
    docs = []
    for row in frame.to_dict("records"):
        doc = {k: _plain(row.get(k)) for k in ("id", "name", "metric", *EDITABLE)}
        doc["metric"] = METRIC_BY_LABEL.get(doc["metric"], doc["metric"])  # the editor shows the label
        ms = doc.get("min_sample")
        if isinstance(ms, float) and ms.is_integer():
            doc["min_sample"] = int(ms)
        docs.append({k: v for k, v in doc.items() if v is not None or k in ("threshold", "runbook")})
    return docs


def changed_rules(before: Sequence[AlertRule], after: Sequence[AlertRule]) -> list[str]:
    """Ids of rules whose definition differs (for the save confirmation)."""
    return changed_rule_ids(before, after)


#: the editor's metric column shows the label; saving reads it back as the metric
METRIC_BY_LABEL = {m.label: m.value for m in Metric}

METRIC_HELP = {
    Metric.ERROR_RATE.label: "fraction of hops that errored (0.10 = 10%)",
    Metric.COST_PER_ENTITY.label: "USD per run",
    Metric.ACTIONABLE_RATE.label: "fraction of runs that ended actionable (0.30 = 30%)",
    Metric.LATENCY_P95_S.label: "seconds, 95th percentile of a run's latency: evidence (hops) plus engine time",
    Metric.COST_INCREASE_PCT.label: "percent: new cost per entity vs old",
}


def evaluated_line(evaluations) -> str:
    """What re-evaluating some rules found, rule by rule: "error-rate is now firing (…)"."""
    return "; ".join(f"{ev.rule.id} is now {human(ev.current.state)}" for ev in evaluations)
