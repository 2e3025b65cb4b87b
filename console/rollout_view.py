"""Plain data -> frames, labels and charts for the Rollout page.

Pure functions over engine values (stage config, verdicts, metric events,
jobs, decision records): no Streamlit and no stores, so the page stays a
description of the UI and everything it shows is unit-tested from literals.

What the page draws, and where each figure comes from:

* **timeline**  one step per stage of the stage config (pilot -> limited ->
  production), each with its state from the rollout status (pending when the
  rollout has not reached it).
* **criteria**  one row per success criterion and rollback trigger of the
  stage's verdict: measured value, interval, threshold, test, phase and pass/fail.
  Before any measurement the policy alone (thresholds, "no data yet").
* **old vs new** running (cumulative) figures over the stage's metric events
  as they arrive, per system: cost per entity, actionable rate and p95 engine
  latency -- the latency the stage criteria measure (the candidate's own
  decision time, evidence latency excluded; see engine.rollout.stats).
"""

from __future__ import annotations

import math
import time
from bisect import insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import altair as alt
import pandas as pd

from console.live import Tile
from console.naming import download_name, slug
from console.vocab import ENGINE_TIME, MISSING, display_frame, fmt_num, fmt_pp, human
from engine.core.access import Actor, four_eyes_denial, needs
from engine.core.percentiles import percentile_sorted
from engine.monitoring.events import MetricEvent
from engine.rollout.records import who_text
from engine.rollout.stages import StageConfig, StagePolicy
from engine.rollout.states import EffectiveState, StageState
from engine.rollout.verdict import CriterionRow, Phase, Verdict

# --------------------------------------------------------------------------- states and colours

#: a stage of the stage table that the shown rollout run does not go through (it ran one stage only)
NOT_IN_RUN = "not_in_run"

#: (icon, colour name understood by st.badge / markdown) per stage or effective run state (StrEnums, so a plain
#: state string finds its style) and the verdict phase PASSED; unknown states get a neutral grey.
STATE_STYLE: dict[str, tuple[str, str]] = {
    StageState.PENDING: (":material/schedule:", "gray"),
    EffectiveState.QUEUED: (":material/hourglass_empty:", "gray"),
    EffectiveState.RUNNING: (":material/play_circle:", "blue"),
    EffectiveState.PAUSED: (":material/pause_circle:", "orange"),
    EffectiveState.SOAKING: (":material/hourglass_top:", "green"),
    Phase.PASSED: (":material/check_circle:", "green"),
    EffectiveState.INCONCLUSIVE: (":material/help:", "orange"),
    StageState.PROMOTED: (":material/verified:", "green"),
    EffectiveState.COMPLETED: (":material/verified:", "green"),
    EffectiveState.FAILED: (":material/cancel:", "red"),
    EffectiveState.ROLLING_BACK: (":material/undo:", "red"),
    EffectiveState.ROLLBACK_INTERRUPTED: (":material/sync_problem:", "red"),
    EffectiveState.ROLLED_BACK: (":material/undo:", "violet"),
    EffectiveState.CANCELLED: (":material/block:", "gray"),
    EffectiveState.DEAD: (":material/heart_broken:", "red"),
    StageState.SKIPPED: (":material/skip_next:", "gray"),
    NOT_IN_RUN: (":material/remove:", "gray"),
}

PHASE_STYLE: dict[str, tuple[str, str]] = {
    Phase.PENDING.value: (":material/schedule:", "gray"),
    Phase.RUNNING.value: (":material/play_circle:", "blue"),
    Phase.PASSED.value: (":material/check_circle:", "green"),
    Phase.INCONCLUSIVE.value: (":material/help:", "orange"),
    Phase.FAILED.value: (":material/cancel:", "red"),
}

#: One colour per system on every old-vs-new chart.
SYSTEM_COLOURS: dict[str, str] = {"old": "#9d9d9d", "new": "#4c78a8"}


def state_style(state: str | None) -> tuple[str, str]:
    """Icon and colour of a stage/run state (grey for anything unknown)."""
    return STATE_STYLE.get(str(state or StageState.PENDING).lower(), (":material/radio_button_unchecked:", "gray"))


def phase_style(phase: str | Phase | None) -> tuple[str, str]:
    return PHASE_STYLE.get(str(phase or "pending").lower(), (":material/radio_button_unchecked:", "gray"))


# --------------------------------------------------------------------------- the stage table / timeline


def entities_label(count: int | None) -> str:
    return "all" if count is None else f"{count:,}"


def duration_label(days: float) -> str:
    if days == 0:
        return "none"
    if days == int(days):
        return f"{int(days)} day{'s' if days != 1 else ''}"
    return f"{days:g} days"


@dataclass(frozen=True)
class TimelineStep:
    """One stage on the timeline."""

    index: int
    name: str
    entities: str  # cumulative exposure at the end of the stage: "10", "100", "all"
    min_duration: str
    state: str
    current: bool
    icon: str
    colour: str
    detail: str = ""

    @property
    def badge(self) -> str:
        return stage_label(self.state)


def timeline_steps(
    config: StageConfig,
    states: Mapping[str, str] | None = None,
    *,
    current: str | None = None,
    details: Mapping[str, str] | None = None,
) -> list[TimelineStep]:
    """The stages in order with the state of each (``pending`` where ``states`` says nothing)."""
    states = {k: str(v).lower() for k, v in (states or {}).items()}
    details = details or {}
    steps = []
    for i, s in enumerate(config.stages):
        state = states.get(s.name, str(StageState.PENDING))
        icon, colour = state_style(state)
        steps.append(
            TimelineStep(
                index=i,
                name=s.name,
                entities=entities_label(s.entities),
                min_duration=duration_label(s.min_duration_days),
                state=state,
                current=s.name == current,
                icon=icon,
                colour=colour,
                detail=details.get(s.name, ""),
            )
        )
    return steps


STAGE_TABLE_COLUMNS = (
    "stage",
    "entities",
    "min_duration_days",
    "batch_size",
    "min_sample",
    "shadow_fraction",
    "success",
    "rollback_triggers",
    "state",
)


def stage_table_frame(config: StageConfig, states: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The stage config as a table: one row per stage, criteria as readable labels, plus its state."""
    states = states or {}
    rows = [
        {
            "stage": s.name,
            "entities": entities_label(s.entities),
            "min_duration_days": float(s.min_duration_days),
            "batch_size": s.batch_size,
            "min_sample": s.min_sample,
            "shadow_fraction": float(s.shadow_fraction),
            "success": "; ".join(_criterion_text(c) for c in s.success),
            "rollback_triggers": "; ".join(_criterion_text(c) for c in s.rollback),
            "state": str(states.get(s.name, StageState.PENDING)),
        }
        for s in config.stages
    ]
    return pd.DataFrame(rows, columns=list(STAGE_TABLE_COLUMNS))


def _criterion_text(c) -> str:
    return f"{c.label()} ({c.test})"


def stage_choices(config: StageConfig) -> list[str]:
    """What the Start form offers: every stage, then ``all`` (run them one after another)."""
    return [*config.names(), "all"]


# --------------------------------------------------------------------------- criteria and verdict


CRITERIA_COLUMNS = (
    "kind",
    "criterion",
    "metric",
    "op",
    "threshold",
    "test",
    "value",
    "low",
    "high",
    "n",
    "phase",
    "result",
    "reason",
)


def _num(v: Any) -> float | None:
    """A measurement as a float for the table: None stays None, "inf" strings become floats."""
    if v is None:
        return None
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return float(v)


def result_label(kind: str, phase: str) -> str:
    """Pass/fail of one criterion row as an operator reads it.

    success criterion: PASSED -> "pass", INCONCLUSIVE -> "not shown", PENDING -> "pending";
    rollback trigger:  FAILED -> "BREACHED", PASSED -> "ok", PENDING -> "pending".
    """
    phase = str(phase)
    if phase == Phase.PENDING:
        return "pending"
    if kind == "rollback":
        return "BREACHED" if phase == Phase.FAILED else "ok"
    return {Phase.PASSED.value: "pass", Phase.FAILED.value: "fail"}.get(phase, "not shown")


def criteria_frame(verdict: Verdict | Mapping[str, Any]) -> pd.DataFrame:
    """One row per success criterion and rollback trigger with measured value, interval, threshold and result.

    Accepts a ``Verdict`` or its ``to_dict()`` (what decision records store).
    """
    rows_in = verdict.rows if isinstance(verdict, Verdict) else verdict.get("rows", [])
    rows = []
    for r in rows_in:
        d = r.to_dict() if isinstance(r, CriterionRow) else dict(r)
        phase = str(d["phase"])
        rows.append(
            {
                "kind": "success" if d["kind"] == "success" else "rollback trigger",
                "criterion": f"{d['metric']} {d['op']} {float(d['threshold']):g}",
                "metric": d["metric"],
                "op": d["op"],
                "threshold": float(d["threshold"]),
                "test": d["test"],
                "value": _num(d.get("value")),
                "low": _num(d.get("low")),
                "high": _num(d.get("high")),
                "n": int(d.get("n") or 0),
                "phase": phase,
                "result": result_label(d["kind"], phase),
                "reason": d.get("reason", ""),
            }
        )
    return pd.DataFrame(rows, columns=list(CRITERIA_COLUMNS))


def policy_criteria_frame(policy: StagePolicy) -> pd.DataFrame:
    """The criteria of a stage before anything is measured: thresholds, tests, no values."""
    rows = []
    for kind, items in (("success", policy.success), ("rollback trigger", policy.rollback)):
        for c in items:
            rows.append(
                {
                    "kind": kind,
                    "criterion": c.label(),
                    "metric": str(c.metric),
                    "op": c.op,
                    "threshold": float(c.threshold),
                    "test": str(c.test),
                    "value": None,
                    "low": None,
                    "high": None,
                    "n": 0,
                    "phase": Phase.PENDING.value,
                    "result": "pending",
                    "reason": "no entities measured yet",
                }
            )
    return pd.DataFrame(rows, columns=list(CRITERIA_COLUMNS))


def verdict_summary(verdict: Verdict | Mapping[str, Any] | None) -> tuple[str, str, str, str]:
    """(phase, reason, icon, colour) of a verdict; a missing verdict reads as pending."""
    if verdict is None:
        phase, reason = Phase.PENDING.value, "no verdict yet: the stage has not measured any entity"
    elif isinstance(verdict, Verdict):
        phase, reason = verdict.phase.value, verdict.reason
    else:
        phase, reason = str(verdict.get("phase", "pending")), str(verdict.get("reason", ""))
    icon, colour = phase_style(phase)
    return phase, reason, icon, colour


# --------------------------------------------------------------------------- old vs new, live


#: metric key -> (chart title, axis title, number format)
SERIES_METRICS: dict[str, tuple[str, str, str]] = {
    "cost_per_entity": ("Cost per entity", "USD per entity (running mean)", "$.3f"),
    "actionable_rate": ("Actionable rate", "actionable runs / runs (running)", ".1%"),
    "p95_engine_latency_ms": (f"p95 {ENGINE_TIME}", f"p95 {ENGINE_TIME}, ms (running)", ",.1f"),
}

SERIES_COLUMNS = ("system", "entities", "at", "metric", "value")


#: at most this many points per system and metric on a chart (a production stage has thousands of runs)
MAX_POINTS = 400


def sampled_ranks(n: int, max_points: int = MAX_POINTS) -> set[int]:
    """Which of the ranks 1..n a chart shows: all when few, else about ``max_points`` evenly spread,
    always with the first and the last (so the latest figure is on the chart)."""
    if n <= max_points:
        return set(range(1, n + 1))
    step = n / (max_points - 1)
    return {1, n} | {min(n, 1 + round(i * step)) for i in range(max_points - 1)}


def old_vs_new_frame(
    events: Iterable[MetricEvent], systems: Sequence[str] = ("old", "new"), max_points: int = MAX_POINTS
) -> pd.DataFrame:
    """Running old-vs-new figures over a stage's metric events, in the order they arrived.

    For each system, after its k-th run (x = ``entities``, 1..n): cost per entity
    = Σ cost / k, actionable rate = actionable runs / k, p95 engine latency =
    95th percentile (nearest rank, engine.core.percentiles — what the criteria use) of the
    first k runs' engine time in ms. Long format: one row per (system, k, metric),
    for at most ``max_points`` values of k per system (evenly spread, always the
    last): every figure still covers all runs up to its k.
    A system without runs has no rows (a gap, never a zero).
    """
    ordered = sorted(events, key=lambda e: (e.at, e.id if e.id is not None else 0))
    rows: list[dict[str, Any]] = []
    for system in systems:
        mine = [e for e in ordered if e.system == system]
        keep = sampled_ranks(len(mine), max_points)
        cost = 0.0
        actionable = 0
        latencies: list[float] = []  # kept sorted
        for k, e in enumerate(mine, 1):
            cost += e.cost_usd
            actionable += 1 if e.actionable else 0
            insort(latencies, e.engine_latency_ms)
            if k not in keep:
                continue
            at = pd.Timestamp(e.at, unit="s", tz="UTC")
            for metric, value in (
                ("cost_per_entity", cost / k),
                ("actionable_rate", actionable / k),
                ("p95_engine_latency_ms", percentile_sorted(latencies, 95)),
            ):
                rows.append({"system": system, "entities": k, "at": at, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=list(SERIES_COLUMNS))


@dataclass(frozen=True)
class SideBySide:
    """Latest running figure of each system for one metric (None when a side has no runs)."""

    metric: str
    old: float | None
    new: float | None
    old_runs: int
    new_runs: int


def latest_figures(frame: pd.DataFrame) -> dict[str, SideBySide]:
    """The last running value per system and metric of an ``old_vs_new_frame``."""
    out = {}
    for metric in SERIES_METRICS:
        vals: dict[str, tuple[float | None, int]] = {}
        for system in ("old", "new"):
            sub = frame[(frame["metric"] == metric) & (frame["system"] == system)]
            if sub.empty:
                vals[system] = (None, 0)
            else:
                last = sub.iloc[-1]
                vals[system] = (float(last["value"]), int(last["entities"]))
        out[metric] = SideBySide(metric, vals["old"][0], vals["new"][0], vals["old"][1], vals["new"][1])
    return out


def _figure(value: float | None, fmt: str) -> str:
    if value is None:
        return "—"
    return f"{value:.1%}" if fmt == ".1%" else f"${value:.3f}" if fmt.startswith("$") else f"{value:,.1f} ms"


def _difference(new: float | None, old: float | None, fmt: str) -> str | None:
    if new is None or old is None:
        return None
    if fmt == ".1%":
        return f"{(new - old) * 100:+.1f} pp vs old"
    if fmt.startswith("$"):
        d = new - old
        return f"{'+' if d >= 0 else '-'}${abs(d):.3f} per entity vs old"
    return f"{new - old:+.1f} ms vs old"


def figure_tiles(latest: dict[str, SideBySide]) -> list[Tile]:
    """One tile per SERIES_METRICS metric: the candidate's latest running figure and its change against the
    old system's (a rate in points, cost in dollars, latency in ms; no delta when a side has no runs)."""
    tiles = []
    for metric, (title, _, fmt) in SERIES_METRICS.items():
        fig = latest[metric]
        tiles.append(
            Tile(
                label=f"{title} · new",
                value=_figure(fig.new, fmt),
                delta=_difference(fig.new, fig.old, fmt),
                delta_color="normal" if metric == "actionable_rate" else "inverse",
                help=f"old: {_figure(fig.old, fmt)} over {fig.old_runs} runs; new over {fig.new_runs} runs",
            )
        )
    return tiles


def old_vs_new_chart(frame: pd.DataFrame, metric: str) -> alt.Chart:
    """One metric of an ``old_vs_new_frame``: a line per system over entities run, fixed colours."""
    title, axis, fmt = SERIES_METRICS[metric]
    data = frame[frame["metric"] == metric].drop(columns=["at"])
    return (
        alt.Chart(data, title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X("entities:Q", title="entities run", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title=axis, axis=alt.Axis(format=fmt)),
            color=alt.Color(
                "system:N",
                scale=alt.Scale(domain=list(SYSTEM_COLOURS), range=list(SYSTEM_COLOURS.values())),
                title="system",
            ),
            tooltip=["system:N", "entities:Q", alt.Tooltip("value:Q", format=fmt, title=title)],
        )
    )


# --------------------------------------------------------------------------- progress, jobs, records


def progress_fraction(done: int | None, total: int | None) -> float:
    """done/total clamped to [0, 1]; 0 when the total is not known yet."""
    if not total:
        return 0.0
    return max(0.0, min(1.0, (done or 0) / total))


def progress_text(
    stage: str | None, done: int | None, total: int | None, state: str | None = None, message: str = ""
) -> str:
    """'pilot: 4 of 10 entities (40%) · running · batch 1 done'."""
    parts = [f"{stage or 'stage'}: {done or 0:,} of {total or 0:,} entities ({progress_fraction(done, total):.0%})"]
    if state:
        parts.append(str(state))
    if message:
        parts.append(message)
    return " · ".join(parts)


def _ts(t: float | None):
    return pd.Timestamp(t, unit="s", tz="UTC") if t else pd.NaT


JOB_COLUMNS = (
    "id",
    "kind",
    "state",
    "progress",
    "done",
    "total",
    "attempts",
    "actor",
    "created",
    "heartbeat",
    "message",
)


def jobs_frame(jobs: Iterable[Any]) -> pd.DataFrame:
    """engine.jobs.queue.Job rows (newest first as given) for the jobs table."""
    rows = [
        {
            "id": j.id,
            "kind": j.kind,
            "state": str(j.state),
            "progress": progress_fraction(j.progress_done, j.progress_total),
            "done": j.progress_done,
            "total": j.progress_total,
            "attempts": j.attempts,
            "actor": j.actor,
            "created": _ts(j.created_at),
            "heartbeat": _ts(j.heartbeat_at),
            "message": j.error or j.message or "",
        }
        for j in jobs
    ]
    return pd.DataFrame(rows, columns=list(JOB_COLUMNS))


RECORD_COLUMNS = (
    "id",
    "at",
    "stage",
    "gate",
    "action",
    "phase",
    "actor",
    "forced",
    "n",
    "candidate_hash",
    "started_by",
    "approved_by",
    "four_eyes",
    "reason",
)


def decision_records_frame(records: Iterable[Mapping[str, Any] | Any]) -> pd.DataFrame:
    """Decision records (engine.rollout.DecisionRecord or its dict) as a table, newest first.

    ``n`` (entities behind the verdict) and the candidate config hash come from
    the record's inputs; a rollback asked by an operator has neither a sample
    nor a verdict, so its ``n`` is empty.
    """
    rows = []
    for rec in records:
        d = rec.to_dict() if hasattr(rec, "to_dict") else dict(rec)
        inputs = d.get("record") or {}
        config = inputs.get("config") or {}
        n = inputs.get("n")
        rows.append(
            {
                "id": d.get("id"),
                "at": _ts(d.get("at")),
                "stage": d.get("stage", ""),
                "gate": d.get("gate", ""),
                "action": d.get("action", ""),
                "phase": str(d.get("phase", "")),
                "actor": d.get("actor", ""),
                "forced": bool(d.get("forced", False)),
                "n": int(n) if isinstance(n, (int, float)) else None,
                "candidate_hash": config.get("candidate_hash", ""),
                # a promotion's record: who started the run, who approved it, and how four-eyes was met
                "started_by": who_text(inputs.get("started_by")),
                "approved_by": who_text(inputs.get("approved_by")),
                "four_eyes": str(inputs.get("four_eyes_outcome") or ""),
                "reason": d.get("reason", ""),
            }
        )
    frame = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    if not frame.empty:
        frame = frame.sort_values("id", ascending=False, kind="stable").reset_index(drop=True)
    return frame


def run_stage_states(
    names: Sequence[str], run_stages: Sequence[str] | None, states: Mapping[str, str]
) -> dict[str, str]:
    """State per stage of the stage table for one run: its own stages' states (``pending`` until reached),
    ``skipped_at_start`` for stages before its first (it started later), ``not_in_run`` for stages after its
    last (it ends earlier); all pending without a run."""
    if run_stages is None:
        return {n: str(StageState.PENDING) for n in names}
    first = names.index(run_stages[0]) if run_stages and run_stages[0] in names else 0
    return {
        n: (
            str(states.get(n, StageState.PENDING)) if n in run_stages else SKIPPED_AT_START if i < first else NOT_IN_RUN
        )
        for i, n in enumerate(names)
    }


def stage_detail(
    done: int, total: int, elapsed_days: float, min_days: float, state: str, time_scale: float = 1.0
) -> str:
    """'7/10 entities · 1.25 of 3 stage days · …' (just the entities while nothing ran yet); a stage that
    exposed nobody says so."""
    if state in (StageState.PENDING, NOT_IN_RUN, SKIPPED_AT_START):
        return ""
    text = f"{done:,}/{total:,} entities" + (" (none exposed)" if total == 0 else "")
    clock = stage_clock(state, elapsed_days, min_days, time_scale)
    return f"{text} · {clock}" if clock else text


# --------------------------------------------------------------------------- downloads


def report_file_name(what: str, now: float, ext: str = "md") -> str:
    """``discovery-<what>-<YYYYmmdd-HHMM>.<ext>`` (UTC), ``what`` reduced to [a-z0-9-]."""
    return download_name(slug(what) or "rollout", ext, now=now)


def time_scale_help(time_scale: float) -> str:
    """What a time scale means in words: 1 -> 'real time', 36000 -> 'one stage day every 2.4 wall seconds'."""
    if not time_scale > 0 or math.isinf(time_scale):
        return "time scale must be a positive number"
    if time_scale == 1:
        return "real time"
    seconds_per_day = 86400.0 / time_scale
    for limit, unit, size in (
        (120, "second", 1),
        (7200, "minute", 60),
        (172800, "hour", 3600),
        (math.inf, "day", 86400),
    ):
        if seconds_per_day < limit:
            n = seconds_per_day / size
            count = f"{n:.3g}" if n < 1000 else f"{n:,.0f}"  # never "1e+04"
            return f"one stage day every {count} wall {unit}{'' if n == 1 else 's'}"
    return "time scale must be a positive number"  # not reached: the last limit is infinite


# --------------------------------------------------------------------------- which buttons make sense now


@dataclass(frozen=True)
class Action:
    """One operator control: whether it can be used in the run's current state, and why not."""

    name: str
    enabled: bool
    why: str


def available_actions(state: str | None, stage_state: str | None = None) -> dict[str, Action]:
    """Pause / Resume / Promote / Rollback for a run in effective ``state`` whose current stage is ``stage_state``.

    ``state`` is an engine.rollout.states.EffectiveState (or its string) and
    ``stage_state`` a StageState (or its string); the rules are their
    predicates. The engine checks again (and says why when it refuses); this
    only greys out buttons that cannot work, with the reason as the button's help.
    """
    state = EffectiveState(state or EffectiveState.NONE)
    stage_state = StageState(stage_state or StageState.PENDING)
    if state is EffectiveState.NONE:
        none = "no rollout has been started"
        return {n: Action(n, False, none) for n in ("pause", "resume", "promote", "rollback")}
    pause_ok = state.can_pause()
    resume_ok = state.can_resume()
    promote_ok = state.can_promote(stage_state)
    rollback_ok = state.can_rollback()
    return {
        "pause": Action("pause", pause_ok, "pause between batches" if pause_ok else f"the rollout is {state}"),
        "resume": Action(
            "resume",
            resume_ok,
            "continue from the last checkpoint" if resume_ok else f"the rollout is {state}: nothing to resume",
        ),
        "promote": Action(
            "promote",
            promote_ok,
            "promote the current stage"
            if promote_ok
            else f"the current stage is {stage_state.replace('_', ' ')}: only a passed (soaking) or "
            "inconclusive stage can be promoted",
        ),
        "rollback": Action(
            "rollback",
            rollback_ok,
            "restore every exposed entity from its stage snapshot"
            if rollback_ok
            else f"the rollout is {state.replace('_', ' ')}",
        ),
    }


#: the engine action (engine.core.access.ACTIONS) behind each control of the Rollout page
CONTROL_ACTIONS: dict[str, str] = {
    "start": "rollout.start",
    "pause": "rollout.pause",
    "resume": "rollout.resume",
    "cancel": "rollout.cancel",
    "promote": "rollout.promote",
    "force": "rollout.force_promote",
    "rollback": "rollout.rollback",
    "evaluate": "rollout.guardrail.evaluate",
    "end_bake": "rollout.guardrail.end",
    "revert": "rollout.guardrail.revert",
}
#: the help of Promote / Force when the actor started the run and four-eyes asks for someone else
FOUR_EYES_HELP = "four-eyes: a second approver must promote"


def role_help(who: Actor | None, control: str) -> str | None:
    """``"needs approver"`` when ``who`` may not use the page's ``control`` (a key of CONTROL_ACTIONS); None if
    they may. The engine checks again when the button fires."""
    return needs(who, CONTROL_ACTIONS[control])


def four_eyes_help(status: Any, who: Actor | None, *, force: bool = False) -> str | None:
    """FOUR_EYES_HELP when four-eyes keeps ``who`` from promoting the run's current stage (they started the
    run and the promotion needs a second person: into a four-eyes stage, making the config live from one, or
    forced); None otherwise."""
    run = getattr(status, "run", None)
    stage = getattr(status, "current_stage", None)
    if run is None or stage is None or who is None:
        return None
    if run.four_eyes_rule(stage, force=force) is None:
        return None
    return FOUR_EYES_HELP if four_eyes_denial(run.actor, who) else None


def permitted_actions(actions: Mapping[str, Action], status: Any, who: Actor | None) -> dict[str, Action]:
    """``actions`` (available_actions) with who may use them: a control the actor's role does not allow is
    disabled with "needs approver" / "needs operator"; Promote and Force are disabled with FOUR_EYES_HELP when
    the actor started the run and four-eyes asks for a second person. Adds ``force`` (the Force tick box)."""
    out = dict(actions)
    promote = actions["promote"]
    out["force"] = Action("force", promote.enabled, promote.why)
    for name, act in list(out.items()):
        if name not in CONTROL_ACTIONS or not act.enabled:
            continue
        why = role_help(who, name)
        if why is None and name in ("promote", "force"):
            why = four_eyes_help(status, who, force=name == "force")
        if why is not None:
            out[name] = Action(name, False, why)
    return out


#: how a job message of a run paused by a fault begins (engine.rollout.runner)
FAULT_PAUSE_PREFIX = "paused by a fault"


def state_hint(
    state: str | None,
    stage_name: str | None,
    elapsed_days: float = 0.0,
    min_days: float = 0.0,
    time_scale: float = 1.0,
    note: str = "",
) -> tuple[str, str] | None:
    """What the operator should know or do now, as (kind, text) with kind info|warning|error; None if nothing."""
    stage = stage_name or "the stage"
    if state == EffectiveState.SOAKING:
        left = max(0.0, min_days - elapsed_days) * 86400.0 / time_scale
        return (
            "info",
            f"{stage} passed every success criterion. It is promoted automatically once its minimum "
            f"duration of {min_days:g} stage days has passed (about {duration_text(left)} wall time from now, "
            f"{time_scale_help(time_scale)}); tick Force and Promote to go now (it asks to confirm).",
        )
    if state == EffectiveState.INCONCLUSIVE:
        return (
            "warning",
            f"{stage} ended inconclusive: no rollback trigger fired, but not every success criterion "
            "was shown. A person decides: Promote (with Force before the minimum duration) or Roll back.",
        )
    if state == EffectiveState.DEAD:
        return (
            "error",
            f"The worker stopped ({note or 'no heartbeat'}). Resume starts a new worker that continues "
            "from the last checkpoint: no entity twice, none skipped.",
        )
    if state == EffectiveState.FAILED:
        return (
            "error",
            f"The rollout job failed: {note or 'see the worker log'}. Resume retries from the last "
            "checkpoint, or Roll back.",
        )
    if state == EffectiveState.PAUSED and note.startswith(FAULT_PAUSE_PREFIX):
        return (
            "error",
            f"{note}. The worker retries by itself once the store, the evaluator or the cluster answers; "
            "Resume retries now.",
        )
    if state == EffectiveState.PAUSED:
        return ("info", "Paused between batches; the worker keeps its place. Resume continues.")
    if state == EffectiveState.ROLLBACK_INTERRUPTED:
        return (
            "error",
            "A rollback was interrupted by an outage. Resume (or Roll back again) finishes it once the store "
            "answers; nothing is half-restored for long: the rollback restores every stage from its snapshot again.",
        )
    if state == EffectiveState.QUEUED:
        return ("info", "Queued: a worker process is starting.")
    return None


# --------------------------------------------------------------------------- words for the page (issue 12)


#: stage states after which a stage's clock stands still
DECIDED_STAGE_STATES = (StageState.PROMOTED, StageState.ROLLED_BACK, StageState.SKIPPED, StageState.CANCELLED)
#: a stage of the table before the run's first stage: the run started later and did not run it
SKIPPED_AT_START = "skipped_at_start"
#: timeline badge words where the state's own name would mislead
STAGE_LABELS: dict[str, str] = {
    NOT_IN_RUN: "not in this run",
    SKIPPED_AT_START: "skipped",  # short: a badge on a narrow card; the run's note says the run started later
    StageState.SKIPPED.value: "nothing left",
}
STATE_STYLE[SKIPPED_AT_START] = (":material/skip_next:", "orange")


def stage_label(state: str) -> str:
    """A stage or run state as an operator reads it (never its snake_case name)."""
    return STAGE_LABELS.get(str(state), "") or human(state)


def wall_seconds(stage_days: float, time_scale: float) -> float:
    """How long ``stage_days`` stage days take on the wall clock under ``time_scale``."""
    return max(0.0, stage_days) * 86400.0 / time_scale if time_scale > 0 else math.inf


def stage_clock(state: str, elapsed_days: float, min_days: float, time_scale: float) -> str:
    """Elapsed and remaining time of a stage in stage days and wall time; frozen once the stage is decided.

    'promoted after 1.25 of 3 stage days (3 s wall time)' / '1.25 of 3 stage days · 1.75 left (about 4 s wall
    time)' / '3.50 of 3 stage days: minimum duration reached'. Empty for a stage not reached.
    """
    state = str(state)
    if state in (StageState.PENDING, NOT_IN_RUN, SKIPPED_AT_START, StageState.SKIPPED):
        return ""
    shown = f"{elapsed_days:.2f} of {min_days:g} stage days"
    wall = duration_text(wall_seconds(elapsed_days, time_scale))
    if state in DECIDED_STAGE_STATES:
        return f"{stage_label(state)} after {shown} ({wall} wall time)"
    left = max(0.0, min_days - elapsed_days)
    if left <= 0:
        return f"{shown} ({wall} wall time): minimum duration reached"
    return f"{shown} · {left:.2f} left (about {duration_text(wall_seconds(left, time_scale))} wall time)"


def promote_countdown(
    state: str, elapsed_days: float, min_days: float, time_scale: float, now: float, *, four_eyes: bool = False
) -> str:
    """When Promote works without Force, for a soaking or inconclusive stage ('' otherwise). ``four_eyes``: the
    promotion needs a second person, so the worker does not promote it by itself."""
    if str(state) not in (StageState.SOAKING, StageState.INCONCLUSIVE):
        return ""
    left_s = wall_seconds(min_days - elapsed_days, time_scale)
    if left_s <= 0:
        return "The minimum duration has passed: Promote works without Force."
    if math.isinf(left_s):
        return "Promote needs Force: the minimum duration cannot pass at this time scale."
    when = time.strftime("%H:%M:%S UTC", time.gmtime(now + left_s))
    auto = (
        " (a passed stage is promoted automatically then)" if str(state) == StageState.SOAKING and not four_eyes else ""
    )
    return f"Promote works without Force in about {duration_text(left_s)}, at {when}{auto}."


def duration_text(seconds: float) -> str:
    """A short wall-clock duration: '0.4 s', '45 s', '12 min', '3.5 h', '2.1 days'."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@dataclass(frozen=True)
class StartGuard:
    """Whether a start needs the operator's acknowledgement, and why (one line each)."""

    reasons: tuple[str, ...]

    @property
    def needs_ack(self) -> bool:
        return bool(self.reasons)

    def ack_label(self) -> str:
        return "I understand: " + "; ".join(self.reasons)

    def refusal(self) -> str:
        return "tick the acknowledgement first: " + "; ".join(self.reasons)


def start_guard(
    config: StageConfig, stage: str, entity_limit: int | None, dry_run: bool, passed: Sequence[str] = ()
) -> StartGuard:
    """What a start skips or risks: starting later than the first stage (except over stages that ``passed``
    in the run being continued), or going live on every entity at once (the start stage exposes all of them,
    no entity limit, not a dry run)."""
    names = config.names()
    reasons = []
    skipped = [n for n in (names[: names.index(stage)] if stage in names else []) if n not in passed]
    if skipped:
        reasons.append(f"this rollout skips {', '.join(skipped)} and starts at {stage}")
    first = names[0] if stage == "all" else stage
    if first in names and config.stage(first).entities is None and not entity_limit and not dry_run:
        reasons.append(f"{first} runs the candidate live on every entity of the graph at once")
    return StartGuard(tuple(reasons))


def candidate_offered(candidate: Mapping[str, Any] | None, live_hash: str) -> bool:
    """The handed-over candidate is offered unless there is none or it is already the live config (consumed)."""
    return bool(candidate) and str((candidate or {}).get("hash")) != live_hash


def config_label(hash_: str, source: str = "", *, defaults_hash: str = "") -> str:
    """'`abc123` (file x.json)' / 'the defaults (`abc123`)' for a config named in words."""
    if defaults_hash and hash_ == defaults_hash:
        return f"the defaults ({hash_})"
    return f"{hash_} ({source})" if source else hash_


@dataclass(frozen=True)
class RunView:
    """Everything the page says about a run's state: ONE function (``run_view``) makes every line of it."""

    label: str  # the header badge: 'completed · live config changed', 'running pilot', ...
    icon: str
    colour: str
    hint_kind: str  # info | warning | error | success | '' (nothing to say)
    hint: str
    progress_label: str  # the word the progress bar carries after the entity count
    continue_to: str | None = None  # the next stage of the table, for a run that ended before the last
    notes: tuple[str, ...] = ()  # further lines (skipped stages, no entity exposed, live config unchanged)


def _exposed(status: Any) -> int:
    return sum(s.done for s in status.stages)


def run_view(status: Any) -> RunView:
    """The run's state in words and colour, from a RolloutStatus; never two lines that contradict.

    Completed runs are told apart: live config changed, dry run, ended before the last stage of the table
    (live config unchanged, continue offered), nothing exposed ('0/0 entities'), last stage skipped.
    """
    run = status.run
    state = str(status.state)
    if run is None:
        return RunView("no rollout", *state_style(None), "", "", "")
    stage = status.stage(status.current_stage) if status.current_stage else None
    name = status.current_stage or "the stage"
    notes: list[str] = []
    if run.skipped_stages:
        notes.append(f"This run started at {run.stages[0]}: {', '.join(run.skipped_stages)} skipped.")
    exposed = _exposed(status)
    last_table_stage = run.stages_of_table[-1] if run.stages_of_table else None
    icon, colour = state_style(state)
    if state == EffectiveState.COMPLETED:
        last = status.stage(run.stages[-1]) if run.stages else None
        if exposed == 0:
            notes.append(
                "No entity was exposed (0/0 entities): every entity of its stages already ran this candidate in "
                "an earlier run, or none was left. Nothing was measured and the live config did not change."
            )
            return RunView(
                "completed · no entity exposed",
                ":material/block:",
                "orange",
                "warning",
                notes[-1],
                "nothing exposed",
                run.next_stage,
                tuple(notes[:-1]),
            )
        if run.dry_run:
            return RunView(
                "dry run completed",
                ":material/science:",
                "blue",
                "info",
                "Dry run: both systems ran in shadow; nothing live was written and the live config did not change.",
                "dry run completed",
                run.next_stage,
                tuple(notes),
            )
        if run.next_stage is not None:
            return RunView(
                f"ended after {run.stages[-1]} · live config unchanged",
                ":material/flag:",
                "blue",
                "info",
                f"This run ended after {run.stages[-1]}: the live config did NOT change. Continue to "
                f"{run.next_stage} to take the same candidate further.",
                "stage promoted",
                run.next_stage,
                tuple(notes),
            )
        if last is not None and last.state == StageState.SKIPPED and last.name == last_table_stage:
            return RunView(
                f"completed · {last.name} skipped",
                ":material/skip_next:",
                "orange",
                "warning",
                f"{last.name} was skipped (no entity left to expose): the live config did NOT change.",
                "skipped",
                None,
                tuple(notes),
            )
        return RunView(
            "completed · live config changed",
            icon,
            colour,
            "success",
            f"{run.candidate_hash} is now the live config (was {run.baseline_hash}).",
            "promoted",
            None,
            tuple(notes),
        )
    hint = state_hint(
        state,
        status.current_stage,
        stage.elapsed_days if stage else 0.0,
        stage.min_duration_days if stage else 0.0,
        run.time_scale,
        note=_job_note(status),
    )
    kind, text = hint or ("", "")
    rule = run.four_eyes_rule(status.current_stage) if status.current_stage else None
    if state == EffectiveState.SOAKING and rule is not None:
        kind, text = (
            "info",
            f"{name} passed every success criterion. Four-eyes: {rule}, so the worker does not promote it; an "
            f"approver other than {run.actor} (who started the run) promotes it once its minimum duration of "
            f"{stage.min_duration_days if stage else 0:g} stage days has passed, or rolls it back.",
        )
    labels = {
        EffectiveState.RUNNING.value: f"running {name}",
        EffectiveState.SOAKING.value: f"{name} passed · "
        + ("waiting for a second approver" if rule is not None else "soaking"),
        EffectiveState.INCONCLUSIVE.value: f"{name} inconclusive · waiting for you",
        EffectiveState.QUEUED.value: "queued · waiting for a worker",
        EffectiveState.PAUSED.value: f"paused in {name}",
        EffectiveState.DEAD.value: "worker stopped",
        EffectiveState.FAILED.value: "failed",
        EffectiveState.STOPPED.value: "worker ended · run still open",
    }
    label = labels.get(state) or human(state)
    if state == EffectiveState.STOPPED:
        kind, text = "warning", "The worker ended but the run is still open: Resume continues it, or Roll back."
    if state in (EffectiveState.ROLLED_BACK, EffectiveState.CANCELLED) and status.message:
        notes.append(str(status.message))  # who rolled back or cancelled it, and why, as typed
    if state == EffectiveState.CANCELLED:
        notes.append("The live config did not change.")  # only an active run can be cancelled
    return RunView(label, icon, colour, kind, text, label, None, tuple(notes))


def _job_note(status: Any) -> str:
    job = status.job
    if job is not None and job.error:
        return str(job.error)
    if job is not None and str(job.message).startswith(FAULT_PAUSE_PREFIX):
        return str(job.message)
    return worker_text(status)


def worker_text(status: Any) -> str:
    """The worker in words: 'alive, last heartbeat 2 s ago' / 'ended (job succeeded)' / 'waiting for a worker'."""
    job = status.job
    if job is None:
        return "no worker"
    state = str(job.state)
    if state == "queued":
        return "waiting for a worker process to start"
    if status.worker_alive:
        beat = job.heartbeat_at or job.started_at or job.created_at
        return f"alive, last heartbeat {duration_text(max(0.0, status.now - beat))} ago"
    if state in ("running", "paused"):
        return f"stopped ({status.worker_note})"
    return f"ended (job {human(state)})"


@dataclass(frozen=True)
class PromotionPlan:
    """What a Promote click would do, so the page can ask first when it matters."""

    stage: str
    next_stage: str | None  # the stage that starts next in this run
    makes_live: bool  # promoting this stage makes the candidate the live config
    forced: bool  # before the minimum duration, with Force

    @property
    def needs_confirmation(self) -> bool:
        return self.makes_live or self.forced


def promotion_plan(status: Any, force: bool) -> PromotionPlan | None:
    """The plan for promoting the run's current stage now (None without a run or stage)."""
    run = status.run
    stage = status.stage(status.current_stage) if run and status.current_stage else None
    if stage is None:
        return None
    i = run.stages.index(stage.name)
    nxt = run.stages[i + 1] if i + 1 < len(run.stages) else None
    last_of_table = bool(run.stages_of_table) and stage.name == run.stages_of_table[-1]
    return PromotionPlan(
        stage=stage.name,
        next_stage=nxt,
        makes_live=nxt is None and last_of_table and not run.dry_run,
        forced=bool(force) and stage.elapsed_days < stage.min_duration_days,
    )


def promotion_message(
    plan: PromotionPlan, candidate: str, old: str, *, dry_run: bool, next_of_table: str | None
) -> str:
    """What the page says after a promotion, in words."""
    forced = " (forced)" if plan.forced else ""
    if plan.makes_live:
        return f"{candidate} is now the live config (was {old}){forced}."
    if plan.next_stage:
        return f"{plan.stage} passed{forced}: the {plan.next_stage} stage starts now."
    tail = f"; continue to {next_of_table} to take it further" if next_of_table else ""
    return (
        f"{plan.stage} promoted{forced}: this run ends here and the live config did NOT change"
        + (" (dry run)" if dry_run else "")
        + tail
        + "."
    )


# --------------------------------------------------------------------------- tables with units and words


#: metric -> (words, unit) for criteria and thresholds
METRIC_TEXT: dict[str, tuple[str, str]] = {
    "cost_reduction_pct": ("cost reduction", "%"),
    "cost_increase_pct": ("cost increase", "%"),
    "actionable_increase_pct": ("actionable change (relative)", "%"),
    "error_rate_pct": ("error rate", "%"),
    "p95_latency_ms": (f"p95 {ENGINE_TIME}", "ms"),
}
OP_TEXT = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}


def threshold_text(metric: str, op: str, threshold: float) -> str:
    """'≥ 15 %', '< 500 ms'."""
    unit = METRIC_TEXT.get(str(metric), ("", ""))[1]
    return f"{OP_TEXT.get(op, op)} {threshold:g} {unit}".rstrip()


def criterion_text(metric: str, op: str, threshold: float) -> str:
    """'cost reduction ≥ 15 %'."""
    words = METRIC_TEXT.get(str(metric), (human(metric), ""))[0]
    return f"{words} {threshold_text(metric, op, threshold)}"


def measured_text(metric: str, value: float | None, pp: float | None = None) -> str:
    """A measured value with its unit; the actionable change also in points when known ('−60.0 % (−30.0 pp)')."""
    unit = METRIC_TEXT.get(str(metric), ("", ""))[1]
    signed = str(metric) in ("cost_reduction_pct", "cost_increase_pct", "actionable_increase_pct")
    text = fmt_num(value, "+,.1f" if signed else ",.1f", unit=f" {unit}" if unit else "")
    if str(metric) == "actionable_increase_pct" and pp is not None and value is not None:
        text += f" relative ({fmt_pp(pp)})"
    return text.replace("-", "−") if value is not None else text


def actionable_pp(paired: Any) -> float | None:
    """The candidate's actionable rate minus the old system's over the stage's paired entities (a fraction)."""
    if paired is None or not getattr(paired, "paired", 0):
        return None
    return (paired.new_actionable - paired.old_actionable) / paired.paired


CRITERIA_DISPLAY_COLUMNS = ("kind", "criterion", "threshold", "test", "measured", "interval", "n", "result", "reason")


def criteria_display(frame: pd.DataFrame, pp: float | None = None) -> pd.DataFrame:
    """A ``criteria_frame`` / ``policy_criteria_frame`` as the page shows it: thresholds and values with
    units, criteria in words, the actionable change also in pp, nothing read 'None', 'nan' or 'inf'."""
    rows = []
    for _, r in frame.iterrows():
        metric = str(r["metric"])
        low, high = r["low"], r["high"]
        unit = METRIC_TEXT.get(metric, ("", ""))[1]
        interval = (
            MISSING
            if low is None and high is None or (_is_nan(low) and _is_nan(high))
            else f"{fmt_num(_clean(low), ',.1f')} to {fmt_num(_clean(high), ',.1f')} {unit}".rstrip()
        )
        value = _clean(r["value"])
        rows.append(
            {
                "kind": r["kind"],
                "criterion": criterion_text(metric, str(r["op"]), float(r["threshold"])),
                "threshold": threshold_text(metric, str(r["op"]), float(r["threshold"])),
                "test": "interval bound" if r["test"] == "bound" else "measured value",
                "measured": measured_text(metric, value, pp),
                "interval": interval,
                "n": int(r["n"]),
                "result": r["result"],
                "reason": reason_text(r["reason"]),
            }
        )
    return pd.DataFrame(rows, columns=list(CRITERIA_DISPLAY_COLUMNS))


def reason_text(reason: Any) -> str:
    """A verdict's or gate's reason with metric names in words ('not shown: cost reduction value -12.5 < 15')."""
    text = str(reason or "")
    for metric, (words, _) in METRIC_TEXT.items():
        text = text.replace(metric, words)
    return text or MISSING


def _is_nan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _clean(v: Any) -> float | None:
    return None if _is_nan(v) else float(v)


def records_display(records: Iterable[Mapping[str, Any] | Any]) -> pd.DataFrame:
    """Decision records for the page: words for gates, actions and phases, 'yes' for forced, '—' for missing."""
    frame = decision_records_frame(records)
    frame["forced"] = frame["forced"].map(lambda f: "yes" if f else "")
    frame["phase"] = frame["phase"].map(lambda p: p or MISSING)
    frame["reason"] = frame["reason"].map(reason_text)
    for who in ("started_by", "approved_by", "four_eyes"):  # promotions only: other gates show "—"
        frame[who] = frame[who].map(lambda v: v or MISSING)
    frame["at"] = frame["at"].map(time_cell)
    frame = frame.rename(
        columns={
            "candidate_hash": "candidate",
            "at": "at (UTC)",
            "started_by": "started by",
            "approved_by": "approved by",
            "four_eyes": "four-eyes",
        }
    )
    return display_frame(frame, names=("gate", "action", "phase"), specs={"n": ",.0f"})


def time_cell(t: Any) -> str:
    """A timestamp cell as text ('2026-12-01 21:54:10'); a missing one reads '—' (Streamlit draws NaT as 'None')."""
    if t is None or t is pd.NaT or (isinstance(t, float) and math.isnan(t)):
        return MISSING
    return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def jobs_display(jobs: Iterable[Any]) -> pd.DataFrame:
    """The rollout jobs table with states in words and no empty cell read as 'None'."""
    frame = jobs_frame(jobs)
    frame["message"] = frame["message"].map(lambda m: m or MISSING)
    frame["created"] = frame["created"].map(time_cell)
    frame["heartbeat"] = frame["heartbeat"].map(time_cell)
    frame = frame.rename(columns={"created": "created (UTC)", "heartbeat": "last heartbeat (UTC)"})
    return display_frame(frame, names=("state",), specs={"done": ",.0f", "total": ",.0f"})


def stage_table_display(config: StageConfig) -> pd.DataFrame:
    """The stage table with criteria in words and units and column names in words."""
    rows = [
        {
            "stage": s.name,
            "entities": entities_label(s.entities),
            "minimum duration (days)": float(s.min_duration_days),
            "batch size": s.batch_size,
            "minimum sample": s.min_sample,
            "shadow fraction": float(s.shadow_fraction),
            "success criteria": "; ".join(criterion_text(str(c.metric), c.op, c.threshold) for c in s.success),
            "rollback triggers": "; ".join(criterion_text(str(c.metric), c.op, c.threshold) for c in s.rollback),
            "bake after promotion": duration_label(s.bake_days),
            "four-eyes": "a second approver promotes into it" if s.four_eyes else "no",
        }
        for s in config.stages
    ]
    return pd.DataFrame(rows)


def count_text(n: int, noun: str) -> str:
    """'1 parameter', '3 parameters'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


# --------------------------------------------------------------------------- guardrail after promotion

#: (icon, colour, words) per bake state (engine.rollout.guardrails.GuardrailState values)
GUARDRAIL_STYLE: dict[str, tuple[str, str, str]] = {
    "baking": (":material/local_fire_department:", "blue", "baking"),
    "passed": (":material/verified:", "green", "bake passed"),
    "unjudged": (":material/help:", "orange", "bake ended unjudged"),
    "reverted": (":material/undo:", "red", "reverted"),
    "ended": (":material/stop_circle:", "gray", "bake ended early"),
}


@dataclass(frozen=True)
class GuardrailView:
    """The guardrail panel of the Rollout page, from one GuardrailStatus (pure: no Streamlit)."""

    label: str  # the state in words
    icon: str
    colour: str
    window: str  # "7 days: 2026-12-01 21:54 UTC to 2026-12-08 21:54 UTC · day 2.4 of 7"
    progress: float  # elapsed share of the window, 0..1
    criteria: pd.DataFrame  # the triggers with their latest figures and intervals (criteria_display columns)
    compared_with: str
    outcome: str  # how it ended, or the verdict so far
    outcome_kind: str  # "success" | "warning" | "error" | "info"
    evaluator: str
    can_end: bool  # an open window: "End bake early" and "Evaluate now"
    can_revert: bool  # the promoted config is still live and not reverted yet


def _when(t: float | None) -> str:
    return MISSING if t is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) + " UTC"


def guardrail_view(status: Any) -> GuardrailView:
    """What the panel shows: bake window, criteria with their intervals, the outcome (or the verdict so far)."""
    state = str(status.state)
    icon, colour, label = GUARDRAIL_STYLE.get(state, (":material/radio_button_unchecked:", "gray", human(state)))
    days = float(status.bake_days)
    elapsed = float(status.elapsed_days)
    window = (
        f"{duration_label(days)}: {_when(status.promoted_at)} to {_when(status.ends_at)} · "
        f"day {elapsed:.1f} of {days:g}"
    )
    if status.verdict is not None:
        criteria = criteria_display(criteria_frame(status.verdict))
    else:
        from_policy = policy_criteria_frame(status.policy)
        from_policy["reason"] = "not evaluated yet"
        criteria = criteria_display(from_policy)
    criteria = criteria.drop(columns=["kind"])
    baseline = (status.record or {}).get("baseline") or {}
    compared_with = (
        f"Comparative triggers compare with the previous config's {baseline['describe']}."
        if baseline.get("describe") and baseline.get("n")
        else "Comparative triggers compare with the previous config's recorded runs (none read yet)."
    )
    if state == "baking":
        phase = str(status.verdict.phase) if status.verdict is not None else "pending"
        kind = "error" if phase == Phase.FAILED else "info"
        outcome = "So far: " + _verdict_words(status)
    elif state == "reverted":
        kind = "error"
        outcome = f"Reverted {_when(status.ended_at)} by {status.ended_by}: {reason_text(status.outcome)}"
    elif state == "passed":
        kind, outcome = "success", f"Bake passed {_when(status.ended_at)}: {status.outcome}"
    elif state == "unjudged":
        kind, outcome = "warning", f"Bake ended {_when(status.ended_at)}: {status.outcome}"
    else:
        kind, outcome = "info", f"Bake ended early {_when(status.ended_at)} by {status.ended_by}: {status.outcome}"
    job = status.job
    if job is None:
        hint = " Evaluate now, or start one from the command line." if state == "baking" else ""
        evaluator = "No evaluator job." + hint
    elif job.state.is_active():
        evaluator = f"Evaluated by job {job.id} ({human(str(job.state))}) every few moments until the window ends."
    else:
        evaluator = f"Evaluator job {job.id} {human(str(job.state))}."
    if status.evaluated_at is not None:
        evaluator += f" Last evaluated {_when(status.evaluated_at)}."
    return GuardrailView(
        label=label,
        icon=icon,
        colour=colour,
        window=window,
        progress=max(0.0, min(1.0, elapsed / days)) if days > 0 else 1.0,
        criteria=criteria,
        compared_with=compared_with,
        outcome=outcome,
        outcome_kind=kind,
        evaluator=evaluator,
        can_end=state == "baking",
        can_revert=state != "reverted" and status.live_hash == status.promoted_hash,
    )


def _verdict_words(status: Any) -> str:
    verdict = status.verdict
    if verdict is None:
        return "not evaluated yet."
    n = int(verdict.n)
    if verdict.phase == Phase.PENDING:
        return (
            f"{n:,} production runs of the promoted config, below the minimum sample of "
            f"{status.policy.min_sample:,}: no trigger can fire yet."
        )
    breached = [r for r in verdict.rows if r.phase == Phase.FAILED]
    if breached:
        return "breached: " + "; ".join(criterion_text(r.metric, r.op, r.threshold) for r in breached) + "."
    return f"no trigger breached in {n:,} production runs."


def revert_message(result: Any) -> tuple[str, str]:
    """(kind, text) of a revert's outcome for the page's feedback."""
    return ("success" if result.performed else "warning"), f"Revert: {result.message}"
