"""Periodic alert evaluation as a job in a worker process.

Design (the simplest real one): a recurring job of kind ``alerts.evaluate``
runs in its own worker (``python -m engine worker --job ID``, started detached
by the console's Alerts page or ``python -m engine alerts --start-evaluator --interval 1m``). Each
round it re-reads the rules (so edits apply at the next round), evaluates them
against the metric store (``engine.monitoring.alerts.evaluate_alerts``: states and
transitions persisted in one transaction) and then waits the interval through
``ctx.wait``, which heartbeats and honours pause and cancel. It runs until an
operator stops it (cancel), or for ``rounds`` rounds when given.

At most one evaluator is active per data dir: ``start_evaluator`` reaps dead
workers first, then returns the live one instead of starting a second. A
worker that died is found by the reaper (no heartbeat) and a new start
replaces it. On-demand evaluation (the page's button, ``alerts --evaluate``)
uses the same ``evaluate_alerts`` and can run while the evaluator runs: the
transaction re-reads previous states, so no transition is lost.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from engine.core.access import Actor
from engine.core.errors import ConfigError
from engine.jobs.queue import Control, Job, JobContext, JobState, JobStore, launch_worker
from engine.monitoring.alerts import evaluate_alerts, load_rules
from engine.monitoring.windows import format_window, parse_window
from engine.store.access import authorize

KIND = "alerts.evaluate"
DEFAULT_INTERVAL_S = 60.0
MIN_INTERVAL_S = 5.0
#: job states in which an evaluator may still run (for the jobs table's state filter)
ACTIVE_STATES = tuple(s for s in JobState if s.is_active())


def parse_interval(value: str | float) -> float:
    """Seconds between two rounds, e.g. ``30s``, ``1m``; at least MIN_INTERVAL_S."""
    seconds = parse_window(value)
    if seconds < MIN_INTERVAL_S:
        raise ConfigError(
            f"evaluation interval {value!r} is shorter than {MIN_INTERVAL_S:.0f}s: use e.g. 30s, 1m or 5m"
        )
    return seconds


def round_summary(evaluations) -> str:
    counts = Counter(ev.current.state.value for ev in evaluations)
    # states in words ("no data"): this line is shown to operators as it is
    return ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in sorted(counts.items())) or "no rules"


def run_alert_evaluation_job(ctx: JobContext) -> dict:
    """Handler of ``alerts.evaluate``: evaluate, wait the interval, repeat until cancelled (or ``rounds``)."""
    interval_s = parse_interval(ctx.params.get("interval_s", DEFAULT_INTERVAL_S))
    rounds = ctx.params.get("rounds")
    if ctx.settings is None:
        raise ConfigError("the alert evaluator needs the data dir settings (start it with a worker, not inline)")
    # a heartbeat at most every 2 s while waiting (pause/cancel still act within that)
    ctx.poll_s = max(ctx.poll_s, min(2.0, interval_s / 2))
    done = 0
    transitions = 0
    last = ""
    while rounds is None or done < int(rounds):
        rules = load_rules(ctx.settings)  # re-read: edits saved from the console apply at the next round
        evaluations = evaluate_alerts(ctx.ops, rules, ctx.clock())
        done += 1
        transitions += sum(1 for ev in evaluations if ev.changed)
        last = round_summary(evaluations)
        stamp = time.strftime("%H:%M:%SZ", time.gmtime(ctx.clock()))
        message = f"round {done} at {stamp}: {last}; next in {format_window(interval_s)}"
        ctx.checkpoint(done=done, total=int(rounds) if rounds is not None else 0, message=message)
        if rounds is not None and done >= int(rounds):
            break
        ctx.wait(interval_s, message=message)
    return {"rounds": done, "transitions": transitions, "last": last}


# --------------------------------------------------------------------------- control


def reap_evaluators(ops, *, clock: Callable[[], float] = time.time) -> list[Job]:
    """Mark evaluator jobs whose worker is gone or silent DEAD (so pages do not show a dead one as running)."""
    return JobStore(ops, clock=clock).reap(kind=KIND)


def active_evaluator(store: JobStore) -> Job | None:
    """The queued, running or paused evaluator job, if any (newest first)."""
    jobs = store.list(kind=KIND, states=ACTIVE_STATES, limit=1)
    return jobs[0] if jobs else None


def latest_evaluator(store: JobStore) -> Job | None:
    jobs = store.list(kind=KIND, limit=1)
    return jobs[0] if jobs else None


def running_evaluator(ops) -> Job | None:
    """The active evaluator after marking dead the ones whose worker is gone (a dead worker shows as off)."""
    reap_evaluators(ops)
    return active_evaluator(JobStore(ops))


def start_evaluator(
    settings,
    ops,
    *,
    interval: str | float = DEFAULT_INTERVAL_S,
    actor: Actor,
    launch: Callable[..., int] = launch_worker,
    clock: Callable[[], float] = time.time,
) -> tuple[Job, bool]:
    """Start the periodic evaluator in a worker unless one is active (operator). Returns (job, started_now).
    Audited; the evaluator's rounds then act as the worker on this authorization."""
    who = authorize(ops, actor, "alerts.evaluator")
    interval_s = parse_interval(interval)
    store = JobStore(ops, clock=clock)
    store.reap(kind=KIND)
    current = active_evaluator(store)
    if current is not None:
        return current, False
    job = store.submit(KIND, {"interval_s": interval_s}, actor=str(who))
    ops.audit(who, "alerts.evaluator.start", f"job:{job.id}", {"interval_s": interval_s})
    launch(settings, job.id)
    return store.get(job.id), True


def stop_evaluator(ops, *, actor: Actor, clock: Callable[[], float] = time.time) -> Job | None:
    """Ask the active evaluator to stop (operator; it cancels at its next heartbeat). None if none is active.
    Audited."""
    who = authorize(ops, actor, "alerts.evaluator")
    store = JobStore(ops, clock=clock)
    current = active_evaluator(store)
    if current is None:
        return None
    job = store.request(current.id, Control.CANCEL, actor=str(who))
    ops.audit(who, "alerts.evaluator.stop", f"job:{job.id}", {"state": str(current.state)})
    return job


def describe_evaluator(job: Job | None, now: float) -> str:
    """One line for the page and the CLI."""
    if job is None:
        return "periodic evaluation is off: start it to evaluate every rule at an interval in a worker process"
    interval = format_window(float(job.params.get("interval_s", DEFAULT_INTERVAL_S)))
    if job.state.is_active():
        beat = f", heartbeat {max(0.0, now - job.heartbeat_at):.0f}s ago" if job.heartbeat_at else ""
        if job.control is Control.CANCEL:
            return f"periodic evaluation is stopping (job {job.id}, every {interval}{beat}): stop requested"
        return f"periodic evaluation {job.state} (job {job.id}, every {interval}{beat}): {job.message or 'starting'}"
    why = f": {job.error}" if job.error else ""
    return f"periodic evaluation is off (last job {job.id}, every {interval}, {job.state}{why})"


@dataclass(frozen=True)
class EvaluatorView:
    """The evaluator as a page shows it: the status line and which button goes beside it, from one read.

    ``running``: an evaluator is active (offer Stop); otherwise offer Start. ``stopping``: a stop was
    requested and the worker has not honoured it yet (Stop is pressed already). The line and the button
    can never disagree: both come from the same job.
    """

    job: Job | None
    running: bool
    stopping: bool
    line: str


def evaluator_view(ops, now: float, *, clock: Callable[[], float] = time.time) -> EvaluatorView:
    """Reap dead evaluators, then the active one (else the newest): its line, and whether it runs."""
    store = JobStore(ops, clock=clock)
    store.reap(kind=KIND)
    active = active_evaluator(store)
    job = active if active is not None else latest_evaluator(store)
    stopping = active is not None and active.control is Control.CANCEL
    return EvaluatorView(job, active is not None, stopping, describe_evaluator(job, now))


def evaluator_status(ops, now: float) -> str:
    """The line of ``evaluator_view``: one line for the page and the CLI."""
    return evaluator_view(ops, now).line
