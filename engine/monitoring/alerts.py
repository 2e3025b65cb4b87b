"""Alert rules, their state machine, evaluation against the metric store, history and acknowledgement.

A rule compares one measured figure of a window (error rate, cost per entity,
actionable rate, p95 latency, cost increase vs old) with a threshold. The
state transition is a pure function, ``step(rule, previous, measurement, now)``:

- too few runs (below ``min_sample``) or no figure -> ``no_data`` (neither ok nor firing)
- breaching: ok/no_data/resolved -> ``pending`` (or straight to ``firing`` when hold is 0);
  pending -> ``firing`` once it has breached for ``hold_s`` without a break; firing stays firing
- clear: pending -> ``ok`` (it never fired); firing -> ``resolved``;
  resolved -> ``ok`` once clear for ``hold_s`` (so a flapping figure does not re-fire at once:
  a new breach from resolved starts a fresh hold)

``evaluate_alerts(ops, rules, now)`` measures every rule from SQLite, steps it,
and persists the current states and every transition (history) in one
transaction. Acknowledging a firing alert is recorded on its state and audited.

Rules ship in ``data/alert_rules.json``; edits from the console or CLI are
validated and saved to ``<data dir>/alert_rules.json``, which then overrides
the shipped file (left untouched). Validation refuses every number that is not
finite or out of its range (THRESHOLD_RANGE, MAX_WINDOW_S, MAX_HOLD_S,
MAX_MIN_SAMPLE): a NaN threshold would compare false forever, a rule that can
never fire. All problems of a document are reported in one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.core.access import Actor
from engine.core.errors import ConfigError
from engine.core.inputs import number_problem, read_json_file, shown, shown_name
from engine.core.settings import SHIPPED_DATA_DIR
from engine.monitoring.windows import WindowSummary, format_window, parse_window, summarize
from engine.store.access import authorize
from engine.store.opsdb import Migration
from engine.store.outbox import DEFAULT_REPEAT_S, REPEAT_SETTING, enqueue

RULES_FILE = "alert_rules.json"
SHIPPED_RULES = SHIPPED_DATA_DIR / RULES_FILE

STATES_TABLE = "alert_states"
HISTORY_TABLE = "alert_history"

MIGRATIONS: list[Migration] = [
    Migration(
        component="alerts",
        version=1,
        name="alert states and history",
        statements=(
            f"""
            CREATE TABLE IF NOT EXISTS {STATES_TABLE} (
                rule_id TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                since REAL NOT NULL,
                reason TEXT NOT NULL,
                value REAL,
                sample INTEGER NOT NULL DEFAULT 0,
                evaluated_at REAL NOT NULL,
                acknowledged_by TEXT,
                acknowledged_at REAL,
                ack_note TEXT
            )
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
                id INTEGER PRIMARY KEY,
                rule_id TEXT NOT NULL,
                at REAL NOT NULL,
                from_state TEXT,
                to_state TEXT NOT NULL,
                reason TEXT NOT NULL,
                value REAL,
                sample INTEGER NOT NULL DEFAULT 0
            )
            """,
            f"CREATE INDEX IF NOT EXISTS idx_{HISTORY_TABLE}_rule_at ON {HISTORY_TABLE} (rule_id, at)",
            f"CREATE INDEX IF NOT EXISTS idx_{HISTORY_TABLE}_at ON {HISTORY_TABLE} (at)",
        ),
    ),
    Migration(
        component="alerts",
        version=2,
        name="how many reminders of its firing episode a rule has had",
        statements=(f"ALTER TABLE {STATES_TABLE} ADD COLUMN reminded INTEGER NOT NULL DEFAULT 0",),
    ),
]


# --------------------------------------------------------------------------- vocabulary


class AlertStatus(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    NO_DATA = "no_data"

    def is_firing(self) -> bool:
        return self is AlertStatus.FIRING

    def needs_attention(self) -> bool:
        return self in (AlertStatus.PENDING, AlertStatus.FIRING)


class Metric(StrEnum):
    """The figures a rule can watch, each read from a WindowSummary."""

    ERROR_RATE = "error_rate"  # errored hops / hops, a fraction
    COST_PER_ENTITY = "cost_per_entity"  # USD per run
    ACTIONABLE_RATE = "actionable_rate"  # actionable runs / runs, a fraction
    LATENCY_P95_S = "latency_p95_s"  # seconds
    COST_INCREASE_PCT = "cost_increase_pct"  # new cost/entity vs old, percent

    @property
    def label(self) -> str:
        """What an operator reads for this figure (the console's vocabulary: the latency is the run's,
        evidence + engine, never just "p95 latency")."""
        return METRIC_LABELS[self]

    @property
    def unit(self) -> str:
        return {
            Metric.ERROR_RATE: "fraction",
            Metric.COST_PER_ENTITY: "USD",
            Metric.ACTIONABLE_RATE: "fraction",
            Metric.LATENCY_P95_S: "s",
            Metric.COST_INCREASE_PCT: "%",
        }[self]

    def format_value(self, value: float | None) -> str:
        """``value`` in this metric's unit for people ("n/a" when there is none).

        Not named ``format``: that would override ``str.format`` of the enum's values.
        """
        if value is None:
            return "n/a"
        if self.unit == "fraction":
            return f"{value * 100:.1f}%"
        if self.unit == "USD":
            return f"${value:.3f}"
        if self.unit == "s":
            return f"{value:.2f}s"
        return f"{value:+.1f}%"


#: the figures' names for people (console.vocab.RUN_LATENCY names the run latency the same way)
METRIC_LABELS: dict[Metric, str] = {
    Metric.ERROR_RATE: "error rate",
    Metric.COST_PER_ENTITY: "cost per entity",
    Metric.ACTIONABLE_RATE: "actionable rate",
    Metric.LATENCY_P95_S: "p95 run latency (evidence + engine)",
    Metric.COST_INCREASE_PCT: "cost increase vs old",
}

#: windows said in words ("over the last hour"), by their length in seconds
_WINDOW_UNITS = ((86_400.0, "day"), (3_600.0, "hour"), (60.0, "minute"), (1.0, "second"))


def window_words(seconds: float) -> str:
    """``3600`` -> "the last hour", ``21600`` -> "the last 6 hours", ``90`` -> "the last 90 seconds"."""
    for size, unit in _WINDOW_UNITS:
        n = seconds / size
        if n >= 1 and float(n).is_integer():
            return f"the last {unit}" if n == 1 else f"the last {n:,.0f} {unit}s"
    return f"the last {format_window(seconds)}"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


OPS = (">", ">=", "<", "<=")
SCOPES = ("all", "new", "old")

# Bounds of a rule's numbers (README, Monitoring): generous, but a typo can neither switch a rule
# off (NaN, infinity) nor overflow what is stored.
#: the thresholds a rule on each metric may have, in the metric's unit
THRESHOLD_RANGE: dict[Metric, tuple[float, float]] = {
    Metric.ERROR_RATE: (0.0, 1.0),
    Metric.ACTIONABLE_RATE: (0.0, 1.0),
    Metric.COST_PER_ENTITY: (0.0, 1_000_000.0),
    Metric.LATENCY_P95_S: (0.0, 86_400.0),
    Metric.COST_INCREASE_PCT: (-100.0, 1_000_000.0),
}
#: the longest window a rule measures over, and the longest hold before it fires: a year
MAX_WINDOW_S = 366 * 86_400.0
MAX_HOLD_S = 366 * 86_400.0
#: the largest minimum sample a rule may ask for
MAX_MIN_SAMPLE = 1_000_000
#: ids and names longer than this are refused (they are table cells and history keys)
MAX_LABEL_CHARS = 200


@dataclass(frozen=True)
class AlertRule:
    id: str
    name: str
    metric: Metric
    op: str
    threshold: float
    hold_s: float
    min_sample: int
    severity: Severity
    window_s: float
    runbook: str
    system: str = "all"  # which runs the figure is computed on; cost_increase_pct always compares both

    def breached(self, value: float) -> bool:
        return {
            ">": value > self.threshold,
            ">=": value >= self.threshold,
            "<": value < self.threshold,
            "<=": value <= self.threshold,
        }[self.op]

    def condition(self) -> str:
        """The rule in words: "p95 run latency (evidence + engine) > 30.00s over the last hour"."""
        return (
            f"{self.metric.label} {self.op} {self.metric.format_value(self.threshold)} "
            f"over {window_words(self.window_s)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "metric": self.metric.value,
            "op": self.op,
            "threshold": self.threshold,
            "hold": format_window(self.hold_s) if self.hold_s else "0s",
            "min_sample": self.min_sample,
            "severity": self.severity.value,
            "window": format_window(self.window_s),
            "system": self.system,
            "runbook": self.runbook,
        }


@dataclass(frozen=True)
class Measurement:
    """The figure a rule watches, over its window; ``value`` None when it cannot be computed."""

    value: float | None
    sample: int
    detail: str = ""


@dataclass(frozen=True)
class AlertState:
    state: AlertStatus
    since: float  # when the rule entered this state
    reason: str
    value: float | None = None
    sample: int = 0


# --------------------------------------------------------------------------- the pure transition


def step(rule: AlertRule, previous: AlertState | None, m: Measurement, now: float) -> AlertState:
    """The next state of ``rule`` given its previous state and a new measurement."""
    prev = previous.state if previous else None

    def stay_or(state: AlertStatus, reason: str) -> AlertState:
        since = previous.since if previous is not None and prev is state else now
        return AlertState(state, since, reason, m.value, m.sample)

    if m.value is None:
        return stay_or(AlertStatus.NO_DATA, f"no data: {m.detail or 'no figure'} (n={m.sample})")
    if m.sample < rule.min_sample:
        return stay_or(AlertStatus.NO_DATA, f"no data: sample {m.sample} < minimum {rule.min_sample}")

    shown = f"{rule.metric.label} {rule.metric.format_value(m.value)}"
    if rule.breached(m.value):
        cond = f"{shown} {rule.op} {rule.metric.format_value(rule.threshold)} (n={m.sample})"
        if prev is AlertStatus.FIRING:
            return stay_or(AlertStatus.FIRING, f"firing: {cond}")
        if previous is not None and previous.state is AlertStatus.PENDING:
            held = now - previous.since
            if held >= rule.hold_s:
                return AlertState(
                    AlertStatus.FIRING,
                    now,
                    f"firing: {cond} for {held:.0f}s >= hold {rule.hold_s:.0f}s",
                    m.value,
                    m.sample,
                )
            return stay_or(AlertStatus.PENDING, f"pending: {cond} for {held:.0f}s < hold {rule.hold_s:.0f}s")
        if rule.hold_s <= 0:
            return AlertState(AlertStatus.FIRING, now, f"firing: {cond} (no hold time)", m.value, m.sample)
        return AlertState(
            AlertStatus.PENDING, now, f"pending: {cond}; fires after {rule.hold_s:.0f}s", m.value, m.sample
        )

    clear = f"{shown} not {rule.op} {rule.metric.format_value(rule.threshold)} (n={m.sample})"
    if prev is AlertStatus.FIRING:
        return AlertState(AlertStatus.RESOLVED, now, f"resolved: {clear}", m.value, m.sample)
    if previous is not None and previous.state is AlertStatus.RESOLVED:
        clear_for = now - previous.since
        if clear_for >= rule.hold_s:
            return AlertState(
                AlertStatus.OK,
                now,
                f"ok: {clear} for {clear_for:.0f}s >= hold {rule.hold_s:.0f}s",
                m.value,
                m.sample,
            )
        return stay_or(AlertStatus.RESOLVED, f"resolved: {clear} for {clear_for:.0f}s < hold {rule.hold_s:.0f}s")
    return stay_or(AlertStatus.OK, f"ok: {clear}")


# --------------------------------------------------------------------------- measuring


def measure(rule: AlertRule, summary: WindowSummary) -> Measurement:
    """Read the rule's figure from a summary of the rule's window."""
    if rule.metric is Metric.COST_INCREASE_PCT:
        c = summary.comparison
        return Measurement(c.cost_increase_pct, c.sample, c.reason or f"old n={c.old_runs}, new n={c.new_runs}")
    g = summary.overall if rule.system == "all" else summary.by_system.get(rule.system)
    if g is None or g.runs == 0:
        return Measurement(None, 0, f"no {'' if rule.system == 'all' else rule.system + ' '}runs in the window")
    value = {
        Metric.ERROR_RATE: g.error_rate,
        Metric.COST_PER_ENTITY: g.cost_per_entity,
        Metric.ACTIONABLE_RATE: g.actionable_rate,
        Metric.LATENCY_P95_S: g.latency_s.p95,
    }[rule.metric]
    detail = "no hops in the window" if value is None else ""
    return Measurement(value, g.runs, detail)


# --------------------------------------------------------------------------- rules: load, validate, save


def rules_path(settings) -> Path:
    """Where operator edits live (overrides the shipped defaults)."""
    return Path(settings.data_dir) / RULES_FILE


def parse_rules(raw: Any, source: str = "alert rules") -> list[AlertRule]:
    """Validate a rules document; ConfigError lists one line per bad field."""
    items = raw.get("rules") if isinstance(raw, Mapping) else raw
    if not isinstance(items, list):
        raise ConfigError(f'{source}: expected {{"rules": [...]}} or a list of rules')
    problems: list[str] = []
    rules: list[AlertRule] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        rule, errs = _parse_rule(item, f"rule {i + 1}")
        problems.extend(errs)
        if rule is not None:
            if rule.id in seen:
                problems.append(f"rule {i + 1} ({rule.id}): id: duplicate id {rule.id!r}: ids must be unique")
            seen.add(rule.id)
            rules.append(rule)
    if problems:
        raise ConfigError(f"{source}: {len(problems)} invalid field(s): " + "; ".join(problems))
    return rules


def _parse_rule(item: Any, where: str) -> tuple[AlertRule | None, list[str]]:
    if not isinstance(item, Mapping):
        return None, [f"{where}: expected an object with id, metric, op, threshold, ..."]
    rid = item.get("id")
    label = f"{where} ({rid})" if _one_line(rid) else where
    errs: list[str] = []

    def bad(fieldname: str, msg: str) -> None:
        errs.append(f"{label}: {fieldname}: {msg}")

    known = {"id", "name", "metric", "op", "threshold", "hold", "min_sample", "severity", "window", "system", "runbook"}
    for extra in sorted(set(item) - known):
        bad(shown_name(extra), f"unknown field (allowed: {', '.join(sorted(known))})")
    if not _one_line(rid):
        bad("id", f"required, a non-empty line of at most {MAX_LABEL_CHARS} characters")
    name = item.get("name", rid)
    if not _one_line(name):
        bad("name", f"must be a non-empty line of at most {MAX_LABEL_CHARS} characters")
    try:
        metric = Metric(item.get("metric", ""))  # a missing metric reads as "", which no Metric has
    except ValueError:
        metric = None
        bad("metric", f"{shown(item.get('metric'))} is not one of {', '.join(m.value for m in Metric)}")
    op = item.get("op")
    if op not in OPS:
        bad("op", f"{shown(op)} is not one of {' '.join(OPS)}")
    threshold = item.get("threshold")
    low, high = THRESHOLD_RANGE[metric] if metric is not None else (None, None)
    problem = number_problem(threshold, low, high)
    if problem:
        unit = f": {metric.value} is a fraction (0.10 is 10%)" if metric and metric.unit == "fraction" else ""
        bad("threshold", problem + unit)
    hold_s = _duration(item.get("hold", "0s"), "hold", bad, allow_zero=True, longest=MAX_HOLD_S)
    window_s = _duration(item.get("window"), "window", bad, allow_zero=False, longest=MAX_WINDOW_S)
    min_sample = item.get("min_sample", 1)
    problem = number_problem(min_sample, 1, MAX_MIN_SAMPLE, integer=True)
    if problem:
        bad("min_sample", problem)
    try:
        severity = Severity(item.get("severity", "warning"))
    except ValueError:
        severity = None
        bad("severity", f"{shown(item.get('severity'))} is not one of {', '.join(s.value for s in Severity)}")
    system = item.get("system", "all")
    if system not in SCOPES:
        bad("system", f"{shown(system)} is not one of {', '.join(SCOPES)}")
    runbook = item.get("runbook", "")
    if not isinstance(runbook, str) or not runbook.strip():
        bad("runbook", "required: one line telling the operator what to check first")
    elif "\n" in runbook.strip():
        bad("runbook", "must be one line")
    if errs:
        return None, errs
    # every check above records a problem when a field is missing or malformed; this narrows their types
    if not isinstance(rid, str) or metric is None or not isinstance(op, str) or threshold is None or severity is None:
        raise ConfigError(f"{label}: rule fields failed validation without a recorded problem")
    return (
        AlertRule(
            id=rid.strip(),
            name=name.strip(),
            metric=metric,
            op=op,
            threshold=float(threshold),
            hold_s=hold_s,
            min_sample=int(min_sample),
            severity=severity,
            window_s=window_s,
            runbook=runbook.strip(),
            system=system,
        ),
        [],
    )


def _one_line(text: Any) -> bool:
    """A usable id or name: non-empty printable text on one line, at most MAX_LABEL_CHARS long."""
    return isinstance(text, str) and bool(text.strip()) and text.isprintable() and len(text) <= MAX_LABEL_CHARS


def _duration(value: Any, fieldname: str, bad, *, allow_zero: bool, longest: float) -> float:
    """Seconds of a duration field (``"5m"``, or a number of seconds), at most ``longest``; 0.0 after a problem."""
    allowed = (
        f"allowed: a duration like 5m, 1h or 24h{', or 0s' if allow_zero else ''}, at most {format_window(longest)}"
    )
    if value is None:
        bad(fieldname, f"required ({allowed})")
        return 0.0
    if allow_zero and isinstance(value, (int, float, str)) and not isinstance(value, bool) and value in (0, "0", "0s"):
        return 0.0
    if isinstance(value, str):
        try:
            seconds = parse_window(value)
        except ConfigError:
            seconds = None
    elif number_problem(value, 0, longest, low_open=True) is None:  # a number of seconds
        seconds = float(value)
    else:
        seconds = None
    if seconds is None or seconds > longest:
        bad(fieldname, f"got {shown(value)} ({allowed})")
        return 0.0
    return seconds


def load_rules_file(path: Path) -> list[AlertRule]:
    """The rules of one file; a missing, unreadable or invalid file is a one-line ConfigError naming it."""
    raw = read_json_file(path, "alert rules file", missing="restore it from git or save rules from the Alerts page")
    return parse_rules(raw, str(path))


def load_rules(settings) -> list[AlertRule]:
    """The operator's saved rules if any, else the shipped defaults."""
    own = rules_path(settings)
    return load_rules_file(own if own.exists() else SHIPPED_RULES)


def rules_source(settings) -> Path:
    own = rules_path(settings)
    return own if own.exists() else SHIPPED_RULES


def save_rules(settings, rules: Sequence[AlertRule] | list[dict], *, ops, actor: Actor) -> list[AlertRule]:
    """Validate and save rules to the data dir (atomic replace); approver; audited."""
    who = authorize(ops, actor, "alerts.rules")
    return _write_rules(settings, rules, ops=ops, who=who)


def _write_rules(settings, rules: Sequence[AlertRule] | list[dict], *, ops, who: Actor) -> list[AlertRule]:
    """Validate, write and audit rules for an actor already authorized."""
    raw = [r.to_json() if isinstance(r, AlertRule) else r for r in rules]
    parsed = parse_rules(raw, "alert rules")
    path = rules_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": 1, "rules": [r.to_json() for r in parsed]}
    fd, tmp = tempfile.mkstemp(prefix=".alert_rules-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    ops.audit(who, "alert_rules.save", str(path), {"rules": doc["rules"]})
    return parsed


def reset_rules(settings, *, ops, actor: Actor) -> bool:
    """Drop the operator's rules so the shipped defaults apply again (approver). True if there were any."""
    who = authorize(ops, actor, "alerts.rules")
    path = rules_path(settings)
    existed = path.exists()
    path.unlink(missing_ok=True)
    if existed:
        ops.audit(who, "alert_rules.reset", str(path))
    return existed


# --------------------------------------------------------------------------- persistence


@dataclass(frozen=True)
class AlertRecord:
    """A rule's stored current state, as pages and the CLI show it."""

    rule_id: str
    state: AlertStatus
    since: float
    reason: str
    value: float | None
    sample: int
    evaluated_at: float
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    ack_note: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_by is not None


@dataclass(frozen=True)
class Evaluation:
    rule: AlertRule
    previous: AlertState | None
    current: AlertState
    measurement: Measurement

    @property
    def changed(self) -> bool:
        return self.previous is None or self.previous.state is not self.current.state


def _record(row: Mapping[str, Any]) -> AlertRecord:
    return AlertRecord(
        rule_id=row["rule_id"],
        state=AlertStatus(row["state"]),
        since=row["since"],
        reason=row["reason"],
        value=row["value"],
        sample=row["sample"],
        evaluated_at=row["evaluated_at"],
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=row["acknowledged_at"],
        ack_note=row["ack_note"],
    )


def current_states(ops) -> dict[str, AlertRecord]:
    with ops.connect() as db:
        return {r["rule_id"]: _record(r) for r in db.query(f"SELECT * FROM {STATES_TABLE} ORDER BY rule_id")}


def history(ops, *, rule_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """State transitions, newest first."""
    sql = f"SELECT * FROM {HISTORY_TABLE}"
    params: list[Any] = []
    if rule_id is not None:
        sql += " WHERE rule_id = ?"
        params.append(rule_id)
    sql += " ORDER BY at DESC, id DESC LIMIT ?"
    params.append(int(limit))
    with ops.connect() as db:
        return list(db.query(sql, params))


def evaluate_alerts(ops, rules: Iterable[AlertRule], now: float) -> list[Evaluation]:
    """Measure each rule over its window ending ``now``, step it, persist states and transitions.

    Summaries are read once per distinct window. The step and the writes
    happen in one ``BEGIN IMMEDIATE`` transaction that re-reads the previous
    states, so the worker and a console evaluating at the same moment cannot
    lose a transition.
    """
    rules = list(rules)
    repeat_s = float(ops.get_setting(REPEAT_SETTING, DEFAULT_REPEAT_S) or 0)
    summaries: dict[float, WindowSummary] = {}
    measurements = {}
    for rule in rules:
        if rule.window_s not in summaries:
            summaries[rule.window_s] = summarize(ops, rule.window_s, now=now)
        measurements[rule.id] = measure(rule, summaries[rule.window_s])
    results: list[Evaluation] = []
    due: list[Evaluation] = []
    with ops.transaction() as db:
        prev_rows = {r["rule_id"]: r for r in db.query(f"SELECT * FROM {STATES_TABLE}")}
        for rule in rules:
            row = prev_rows.get(rule.id)
            previous = (
                AlertState(AlertStatus(row["state"]), row["since"], row["reason"], row["value"], row["sample"])
                if row
                else None
            )
            m = measurements[rule.id]
            current = step(rule, previous, m, now)
            ev = Evaluation(rule, previous, current, m)
            kept = row if row is not None and not ev.changed else None
            db[STATES_TABLE].upsert(
                {
                    "rule_id": rule.id,
                    "state": current.state.value,
                    "since": current.since,
                    "reason": current.reason,
                    "value": current.value,
                    "sample": current.sample,
                    "evaluated_at": now,
                    # an acknowledgement covers one episode: a new state needs a new one
                    "acknowledged_by": kept["acknowledged_by"] if kept is not None else None,
                    "acknowledged_at": kept["acknowledged_at"] if kept is not None else None,
                    "ack_note": kept["ack_note"] if kept is not None else None,
                    "reminded": kept["reminded"] if kept is not None else 0,
                },
                pk="rule_id",
            )
            if ev.changed:
                db[HISTORY_TABLE].insert(
                    {
                        "rule_id": rule.id,
                        "at": now,
                        "from_state": previous.state.value if previous else None,
                        "to_state": current.state.value,
                        "reason": current.reason,
                        "value": current.value,
                        "sample": current.sample,
                    }
                )
            notify_alert(db, ev, now)
            if reminder_due(ev, now, repeat_s, kept["reminded"] if kept is not None else 0):
                due.append(ev)
            results.append(ev)
        if due:
            notify_still_firing(db, due, now, repeat_s)
    return results


#: the states whose entry is told to people (ok is not news; no data only when the rule had data before)
NOTIFIED_STATES = (AlertStatus.PENDING, AlertStatus.FIRING, AlertStatus.RESOLVED, AlertStatus.NO_DATA)


def notify_alert(db, ev: Evaluation, now: float) -> None:
    """Enqueue the message of a transition (engine.store.outbox) in the evaluation's transaction.

    One message per entry into pending, firing, resolved or no data, keyed by rule, state and since, so a
    concurrent evaluation of the same transition adds nothing.
    """
    rule, cur = ev.rule, ev.current
    if not ev.changed or cur.state not in NOTIFIED_STATES:
        return
    if cur.state is AlertStatus.NO_DATA and ev.previous is None:
        return  # a rule never measured is not news
    words = {
        AlertStatus.PENDING: "is pending",
        AlertStatus.FIRING: "is firing",
        AlertStatus.RESOLVED: "is resolved",
        AlertStatus.NO_DATA: "has no data",
    }[cur.state]
    facts: dict[str, Any] = {
        "rule": rule.name,
        "rule id": rule.id,
        "severity": rule.severity.value,
        "condition": rule.condition(),
        "value": rule.metric.format_value(cur.value),
        "sample": cur.sample,
        "state": cur.reason,
        "since": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(cur.since)),
    }
    if ev.previous is not None:
        facts["was"] = ev.previous.state.value.replace("_", " ")
    facts["runbook"] = rule.runbook
    enqueue(
        db,
        topic=f"alert.{cur.state.value}",
        key=f"alert:{rule.id}:{cur.state.value}:{cur.since!r}",
        subject=f"[{rule.severity.value}] alert {rule.name} {words}: {rule.metric.label} "
        f"{rule.metric.format_value(cur.value)} (threshold {rule.op} {rule.metric.format_value(rule.threshold)})",
        facts=facts,
        link="alerts",
        at=now,
    )


def reminders(ev: Evaluation, now: float, repeat_s: float) -> int:
    """How many repeat intervals a rule has been firing for in its current episode (0: none, or no repeats)."""
    if ev.changed or ev.current.state is not AlertStatus.FIRING or repeat_s <= 0:
        return 0
    return int((now - ev.current.since) // repeat_s)


def reminder_due(ev: Evaluation, now: float, repeat_s: float, reminded: int) -> bool:
    return reminders(ev, now, repeat_s) > reminded


def notify_still_firing(db, due: Sequence[Evaluation], now: float, repeat_s: float) -> None:
    """One grouped reminder for every rule still firing whose repeat interval has come round (the evaluation's
    transaction); each rule's count of reminders is kept on its state, so none is repeated early or twice."""
    lines: dict[str, Any] = {}
    for ev in due:
        rule, cur = ev.rule, ev.current
        lines[f"{rule.name} ({rule.severity.value})"] = (
            f"{rule.metric.label} {rule.metric.format_value(cur.value)}, threshold {rule.op} "
            f"{rule.metric.format_value(rule.threshold)}, firing for {format_window(max(1.0, round(now - cur.since)))}"
        )
        db.execute(f"UPDATE {STATES_TABLE} SET reminded = ? WHERE rule_id = ?", [reminders(ev, now, repeat_s), rule.id])
    ids = [ev.rule.id for ev in due]
    episodes = ",".join(f"{ev.rule.id}@{ev.current.since!r}#{reminders(ev, now, repeat_s)}" for ev in due)
    worst = max((ev.rule.severity for ev in due), key=list(Severity).index)
    subject = (
        f"[{worst.value}] alert {due[0].rule.name} is still firing"
        if len(due) == 1
        else f"[{worst.value}] {len(due)} alerts are still firing: {', '.join(ev.rule.name for ev in due)}"
    )
    enqueue(
        db,
        topic="alert.firing",
        key="alert:reminder:" + hashlib.sha256(episodes.encode()).hexdigest()[:32],
        subject=subject,
        facts={
            "rule ids": ", ".join(ids),
            **({"rule id": ids[0]} if len(ids) == 1 else {}),
            **lines,
            "repeated every": format_window(repeat_s),
        },
        link="alerts",
        at=now,
    )


def acknowledge(ops, rule_id: str, *, actor: Actor, now: float, note: str = "") -> AlertRecord:
    """Mark the rule's current episode acknowledged (operator) and audit it. Only pending or firing alerts."""
    who = authorize(ops, actor, "alerts.acknowledge")
    with ops.transaction() as db:
        rows = list(db.query(f"SELECT * FROM {STATES_TABLE} WHERE rule_id = ?", [rule_id]))
        if not rows:
            raise ConfigError(
                f"alert {rule_id!r} has no state yet: evaluate first (`python -m engine alerts --evaluate`)"
            )
        record = _record(rows[0])
        if not record.state.needs_attention():
            raise ConfigError(
                f"alert {rule_id!r} is {record.state.value}: only pending or firing alerts are acknowledged"
            )
        db.execute(
            f"UPDATE {STATES_TABLE} SET acknowledged_by = ?, acknowledged_at = ?, ack_note = ? WHERE rule_id = ?",
            [str(who), now, note, rule_id],
        )
        ops.audit(
            who,
            "alert.acknowledge",
            rule_id,
            {"state": record.state.value, "since": record.since, "reason": record.reason, "note": note},
            db=db,
        )
    return replace(record, acknowledged_by=str(who), acknowledged_at=now, ack_note=note)


@dataclass(frozen=True)
class RulesUpdate:
    """What saving the rule editor did: the rules now in force, the ids that changed, and their new states."""

    rules: list[AlertRule]
    changed: list[str]
    evaluations: list[Evaluation]

    @property
    def written(self) -> bool:
        return bool(self.changed)


def changed_rule_ids(before: Sequence[AlertRule], after: Sequence[AlertRule]) -> list[str]:
    """Ids of rules in ``after`` whose definition differs from (or is missing in) ``before``."""
    old = {r.id: r for r in before}
    return [r.id for r in after if old.get(r.id) != r]


def update_rules(settings, rules: Sequence[AlertRule] | list[dict], *, ops, actor: Actor, now: float) -> RulesUpdate:
    """Save edited rules and re-evaluate the changed ones at once, so their state shown is the new rule's.

    Approver. An unchanged document writes nothing: no copy of the shipped defaults in the data dir, no
    audit row (ConfigError, as save_rules, when a rule is invalid).
    """
    who = authorize(ops, actor, "alerts.rules")
    raw = [r.to_json() if isinstance(r, AlertRule) else r for r in rules]
    parsed = parse_rules(raw, "alert rules")
    current = load_rules(settings)
    changed = changed_rule_ids(current, parsed)
    if not changed and len(parsed) == len(current):
        return RulesUpdate(current, [], [])
    saved = _write_rules(settings, parsed, ops=ops, who=who)
    evaluations = evaluate_alerts(ops, [r for r in saved if r.id in changed], now)
    return RulesUpdate(saved, changed, evaluations)


def evaluate(ops, rules: Sequence[AlertRule], *, actor: Actor, now: float) -> list[Evaluation]:
    """Evaluate ``rules`` now on a person's request (operator): the page's and the CLI's "evaluate now".

    The periodic evaluator and the engine's own callers use ``evaluate_alerts`` directly: their work
    was authorized when the evaluator was started.
    """
    authorize(ops, actor, "alerts.evaluate")
    return evaluate_alerts(ops, rules, now)
