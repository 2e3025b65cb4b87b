"""Frames for the Alerts page: states of every rule, the rule editor, history. Pure (no Streamlit)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from engine.monitoring.alerts import AlertRecord, AlertRule, AlertStatus, Metric

#: order of the state tiles and of the states table (worst first)
STATE_ORDER = (AlertStatus.FIRING, AlertStatus.PENDING, AlertStatus.NO_DATA, AlertStatus.RESOLVED, AlertStatus.OK)
NOT_EVALUATED = "not evaluated"
#: Material icons of the state tiles (emoji need a font that headless browsers and some desktops lack)
STATE_ICONS = {
    AlertStatus.FIRING.value: ":material/notifications_active:",
    AlertStatus.PENDING.value: ":material/hourglass_top:",
    AlertStatus.NO_DATA.value: ":material/help:",
    AlertStatus.RESOLVED.value: ":material/task_alt:",
    AlertStatus.OK.value: ":material/check_circle:",
    NOT_EVALUATED: ":material/radio_button_unchecked:",
}
#: background of the state cell in the states table
STATE_COLOURS = {
    AlertStatus.FIRING.value: "#f8d0d0",
    AlertStatus.PENDING.value: "#fde4c4",
    AlertStatus.NO_DATA.value: "#e8e8e8",
    AlertStatus.RESOLVED.value: "#d4e4f7",
    AlertStatus.OK.value: "#d6efd6",
}


def state_style(state: str) -> str:
    """CSS for a state cell (pandas Styler.map)."""
    colour = STATE_COLOURS.get(state)
    return f"background-color: {colour}" if colour else ""


#: columns of the rule editor an operator may change
EDITABLE = ("op", "threshold", "hold", "window", "min_sample", "severity", "system", "runbook")


def _utc(ts: float | None):
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


def state_counts(rules: Sequence[AlertRule], states: Mapping[str, AlertRecord]) -> dict[str, int]:
    """Rules per state (every state listed, 0 where none), plus the rules never evaluated."""
    counts = Counter(states[r.id].state.value if r.id in states else NOT_EVALUATED for r in rules)
    out = {s.value: counts.get(s.value, 0) for s in STATE_ORDER}
    out[NOT_EVALUATED] = counts.get(NOT_EVALUATED, 0)
    return out


def states_frame(rules: Sequence[AlertRule], states: Mapping[str, AlertRecord]) -> pd.DataFrame:
    """One row per rule: its current state and why, the condition, and the runbook line. Worst state first."""
    rank = {s.value: i for i, s in enumerate(STATE_ORDER)}
    rows = []
    for r in rules:
        rec = states.get(r.id)
        state = rec.state.value if rec else NOT_EVALUATED
        rows.append(
            {
                "state": state,
                "rule": r.id,
                "name": r.name,
                "severity": r.severity.value,
                "value": r.metric.format_value(rec.value) if rec else "",
                "condition": r.condition(),
                "sample": rec.sample if rec else None,
                "since": _utc(rec.since) if rec else None,
                "evaluated": _utc(rec.evaluated_at) if rec else None,
                "acknowledged by": (rec.acknowledged_by or "") if rec else "",
                "reason": rec.reason if rec else "never evaluated: press Evaluate now or start periodic evaluation",
                "runbook": r.runbook,
                "_rank": rank.get(state, len(rank)),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
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
                "at": _utc(h["at"]),
                "rule": h["rule_id"],
                "from": h["from_state"] or "",
                "to": h["to_state"],
                "value": m.format_value(h["value"]) if m else ("" if h["value"] is None else f"{h['value']:g}"),
                "sample": h["sample"],
                "reason": h["reason"],
            }
        )
    return pd.DataFrame(out, columns=["at", "rule", "from", "to", "value", "sample", "reason"])


def rules_frame(rules: Sequence[AlertRule]) -> pd.DataFrame:
    """The rules as the editor shows them (thresholds in the rule's own unit, durations as text)."""
    rows = []
    for r in rules:
        j = r.to_json()
        rows.append(
            {
                "id": r.id,
                "name": r.name,
                "metric": r.metric.value,
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
        ms = doc.get("min_sample")
        if isinstance(ms, float) and ms.is_integer():
            doc["min_sample"] = int(ms)
        docs.append({k: v for k, v in doc.items() if v is not None or k in ("threshold", "runbook")})
    return docs


def changed_rules(before: Sequence[AlertRule], after: Sequence[AlertRule]) -> list[str]:
    """Ids of rules whose definition differs (for the save confirmation)."""
    old = {r.id: r for r in before}
    return [r.id for r in after if old.get(r.id) != r]


METRIC_HELP = {
    Metric.ERROR_RATE.value: "fraction of hops that errored (0.10 = 10%)",
    Metric.COST_PER_ENTITY.value: "USD per run",
    Metric.ACTIONABLE_RATE.value: "fraction of runs that ended actionable (0.30 = 30%)",
    Metric.LATENCY_P95_S.value: "seconds, 95th percentile of run latency",
    Metric.COST_INCREASE_PCT.value: "percent: new cost per entity vs old",
}
