"""`python -m engine report ...`, `python -m engine alerts ...` and `python -m engine bench monitor`.

Thin adapters over engine.monitoring.reports and engine.monitoring.alerts: read arguments, call one
library function, print the result.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from engine.monitoring import alert_jobs
from engine.monitoring import alerts as alerts_mod
from engine.core.errors import ConfigError
from engine.monitoring.jsonlog import JsonlLog
from engine.monitoring.events import query_events_light, record_runs
from engine.core.model import Decision, Depth, HopRecord, HopType, HypothesisOutcome, RunResult, Status
from engine.monitoring.windows import (
    default_bucket,
    format_window,
    parse_window,
    series_from_events,
    summarize,
    summarize_events,
    time_series,
)
from engine.store.opsdb import OpsDB, open_ops_db
from engine.monitoring.reports import FORMATS, build_report, iso, render, report_filename
from engine.core.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a monitoring report (Markdown, JSON or self-contained HTML) over a time window",
        description=(
            "Aggregates the metric events of the window ending now (per system and per stage: volume, cost, "
            "actionable and promotion rates, latency percentiles, errors by type, old vs new), with the current "
            "alert states. The HTML opens offline (inline SVG charts, nothing fetched)."
        ),
    )
    p.add_argument("--format", choices=FORMATS, default="md", help="md (default), json or html")
    p.add_argument("--window", default="24h", help="how far back from now: 15m, 24h, 7d, ... (default 24h)")
    p.add_argument("--stage", default=None, help="only the runs of this rollout stage id")
    p.add_argument(
        "-o", "--output", default="-",
        help="file to write; '-' (default) prints to stdout; a directory gets a dated file name",
    )
    p.set_defaults(func=cmd_report)

    p = subparsers.add_parser(
        "alerts",
        help="show alert states (--evaluate to evaluate the rules now; --ack RULE to acknowledge)",
        description=(
            "Prints each rule's stored state (ok, pending, firing, resolved, no_data) as last evaluated by the "
            "worker or the console. --evaluate measures every rule over its window now, steps its state and "
            "records transitions. Rules come from <data dir>/alert_rules.json if saved there, else the shipped "
            "data/alert_rules.json. --start-evaluator starts a worker that evaluates every --interval until "
            "--stop-evaluator (one per data dir). Exit status 1 when an alert is firing, else 0."
        ),
    )
    p.add_argument("--evaluate", action="store_true", help="evaluate every rule now before printing")
    p.add_argument("--rules", action="store_true", help="print the rules (thresholds, hold, window) and their file")
    p.add_argument("--history", type=int, metavar="N", default=0, help="also print the last N state transitions")
    p.add_argument("--ack", metavar="RULE_ID", help="acknowledge this pending or firing alert (audited)")
    p.add_argument("--actor", default="cli", help="who acknowledges (recorded in the audit log; default 'cli')")
    p.add_argument("--note", default="", help="a note kept with the acknowledgement")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--start-evaluator", action="store_true",
                   help="start periodic evaluation in a detached worker (one per data dir; see --interval)")
    p.add_argument("--interval", default="1m", help="time between two periodic evaluations (default 1m, minimum 5s)")
    p.add_argument("--stop-evaluator", action="store_true", help="stop the periodic evaluation worker")
    p.set_defaults(func=cmd_alerts)


def register_bench(bench_subparsers: argparse._SubParsersAction) -> None:
    p = bench_subparsers.add_parser(
        "monitor",
        help="record synthetic metric events in a throwaway data dir and time recording, aggregation and reports",
        description=(
            "In a temporary data dir (yours is not touched): records N run results with record_runs in batches "
            "(SQLite + JSONL), then times summarize over the whole window, the chart time series, alert "
            "evaluation and each report format. Prints the figures measured in this one run."
        ),
    )
    p.add_argument("--events", type=int, default=20000, help="how many events to record (default 20000)")
    p.add_argument("--batch", type=int, default=50, help="results per record_runs call (default 50)")
    p.add_argument("--seed", type=int, default=11, help="seed of the synthetic figures (default 11)")
    p.set_defaults(func=cmd_bench_monitor)


# --------------------------------------------------------------------------- report


def cmd_report(args: argparse.Namespace) -> int:
    settings = load_settings()
    window_s = parse_window(args.window)  # fails early with a one-line hint
    ops = open_ops_db(settings)
    rules = alerts_mod.load_rules(settings)
    now = time.time()
    report = build_report(ops, args.window, now=now, stage_id=args.stage, rules=rules)
    text = render(report, args.format)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    if out.is_dir():
        out = out / report_filename(now, report.window_label, args.format)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    s = report.summary
    print(
        f"wrote {out} ({len(text.encode('utf-8')):,} bytes): {s.overall.runs} runs in the last "
        f"{report.window_label} ({window_s:.0f}s), new {s.by_system['new'].runs}, old {s.by_system['old'].runs}"
    )
    return 0


# --------------------------------------------------------------------------- alerts


def cmd_alerts(args: argparse.Namespace) -> int:
    settings = load_settings()
    ops = open_ops_db(settings)
    rules = alerts_mod.load_rules(settings)
    if args.start_evaluator and args.stop_evaluator:
        raise ConfigError("--start-evaluator and --stop-evaluator contradict each other: pass one of them")
    if args.start_evaluator:
        job, started = alert_jobs.start_evaluator(settings, ops, interval=args.interval, actor=args.actor)
        print(f"{'started' if started else 'already running:'} periodic alert evaluation, job {job.id} "
              f"(every {format_window(job.params['interval_s'])}); "
              "stop it with `python -m engine alerts --stop-evaluator`")
    if args.stop_evaluator:
        job = alert_jobs.stop_evaluator(ops, actor=args.actor)
        print(f"stop requested for periodic alert evaluation, job {job.id}" if job else
              "periodic alert evaluation was not running")
    if args.evaluate:
        alerts_mod.evaluate_alerts(ops, rules, time.time())
    if args.ack:
        rec = alerts_mod.acknowledge(ops, args.ack, actor=args.actor, now=time.time(), note=args.note)
        print(f"acknowledged {rec.rule_id} ({rec.state.value} since {iso(rec.since)}) as {rec.acknowledged_by}")
    states = alerts_mod.current_states(ops)
    trail = alerts_mod.history(ops, limit=args.history) if args.history else []
    # Exit status 1 while any alert fires, in every output mode (scripts and cron check it).
    status = 1 if any(r.state.is_firing() for r in states.values()) else 0
    if args.json:
        print(json.dumps({
            "rules_file": str(alerts_mod.rules_source(settings)),
            "rules": [r.to_json() for r in rules] if args.rules else None,
            "states": {k: {**v.__dict__, "state": v.state.value} for k, v in states.items()},
            "history": trail,
        }, indent=2))
        return status
    if args.rules:
        print(f"rules from {alerts_mod.rules_source(settings)}")
        _print_table(
            ("rule", "condition", "hold", "window", "min sample", "severity", "system", "runbook"),
            [(r.id, r.condition(), r.to_json()["hold"], r.to_json()["window"], str(r.min_sample), r.severity.value,
              r.system, r.runbook) for r in rules],
        )
        print()
    by_id = {r.id: r for r in rules}
    rows = []
    for rule in rules:
        rec = states.get(rule.id)
        if rec is None:
            rows.append((rule.id, "not evaluated", "", "", rule.condition(), rule.severity.value, "", ""))
            continue
        rows.append((
            rule.id, rec.state.value, iso(rec.since), rule.metric.format(rec.value), rule.condition(),
            rule.severity.value, rec.acknowledged_by or "", rec.reason,
        ))
    for rid, rec in states.items():  # states of rules since removed from the file
        if rid not in by_id:
            rows.append((rid, rec.state.value, iso(rec.since), str(rec.value), "(rule removed)", "", "", rec.reason))
    last = max((r.evaluated_at for r in states.values()), default=None)
    print(f"alert states, last evaluated {iso(last)}" if states else
          "no alert evaluated yet: run `python -m engine alerts --evaluate`")
    alert_jobs.reap_evaluators(ops)
    print(alert_jobs.evaluator_status(ops, time.time()))
    _print_table(("rule", "state", "since", "value", "condition", "severity", "ack", "reason"), rows)
    if trail:
        print()
        _print_table(("at", "rule", "from", "to", "reason"),
                     [(iso(h["at"]), h["rule_id"], h["from_state"] or "", h["to_state"], h["reason"]) for h in trail])
    return status


def _print_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


# --------------------------------------------------------------------------- bench


def _synthetic_result(i: int, rng) -> RunResult:
    """A run result with random but plausible figures (the benchmark times the plumbing, not the engine)."""
    system = "new" if i % 2 else "old"
    hops = rng.randint(2, 12)
    errors = tuple(rng.choice(("timeout", "http_503")) for _ in range(hops) if rng.random() < 0.05)
    patterns = rng.randint(3, 8)
    records = tuple(
        HopRecord(
            iteration=h + 1, hypothesis_id=f"e{i}::p{h % patterns}", pattern=f"p{h % patterns}", category="Ticketing",
            eig=0.1, hop_type=HopType.PRESS_RELEASE, depth=Depth.SURFACE,
            decision=Decision.NO_PROGRESS if h < len(errors) else rng.choice(list(Decision)), delta=0.0,
            confidence_after=0.5, cost_usd=0.05, latency_s=rng.uniform(0.2, 4.0),
            error=errors[h] if h < len(errors) else None,
        )
        for h in range(hops)
    )
    outcomes = tuple(
        HypothesisOutcome(f"e{i}::p{k}", f"p{k}", "Ticketing", rng.random(),
                          Status.PROMOTED if rng.random() < 0.1 else Status.ACTIVE, 0)
        for k in range(patterns)
    )
    return RunResult(
        entity_id=f"e{i % 3400}", system=system, config_hash=f"cfg-{system}", iterations=hops,
        cost_usd=sum(r.cost_usd for r in records), hops=records, outcomes=outcomes,
        actionable=rng.random() < (0.4 if system == "new" else 0.2), stop_reason="bench",
        engine_time_s=rng.uniform(0.0005, 0.01), evidence_latency_s=sum(r.latency_s for r in records),
        errors=errors,
    )


def cmd_bench_monitor(args: argparse.Namespace) -> int:
    import random

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    try:
        ops = OpsDB(tmp / "ops.sqlite")
        log = JsonlLog(tmp / "logs" / "metrics.jsonl", max_bytes=5 * 1024 * 1024, backups=3)
        results = [_synthetic_result(i, rng) for i in range(args.events)]
        end = 1_800_000_000.0
        span = 7 * 86400.0
        step = span / max(1, len(results) // args.batch)
        t_clock = [end - span]

        def clock() -> float:
            t_clock[0] += step
            return t_clock[0]

        t = time.perf_counter()
        for k in range(0, len(results), args.batch):
            record_runs(ops, results[k:k + args.batch], run_id="bench", clock=clock, log=log)
        record_s = time.perf_counter() - t
        now = t_clock[0] + 1
        print(f"recorded {len(results):,} events in {record_s:.2f}s "
              f"({len(results) / record_s:,.0f} events/s, batches of {args.batch}; SQLite + JSONL, "
              f"{sum(p.stat().st_size for p in log.files()) / 1e6:.1f} MB kept in {len(log.files())} log files)")
        for label, window in (("1h", 3600.0), ("24h", 86400.0), ("7d", span + 1)):
            t = time.perf_counter()
            s = summarize(ops, window, now=now)
            dt = time.perf_counter() - t
            print(f"summarize {label:>3}: {s.overall.runs:>7,} events in {dt * 1000:8.1f} ms"
                  f" ({s.overall.runs / dt if dt else 0:,.0f} events/s)")
        t = time.perf_counter()
        points = time_series(ops, span + 1, now=now)
        print(f"time series 7d: {len(points)} points in {(time.perf_counter() - t) * 1000:.1f} ms")
        # what one refresh of the Overview's live charts does (console.live): one light read, both aggregations;
        # against the two full reads of summarize + time_series it replaced
        t = time.perf_counter()
        summarize(ops, span + 1, now=now)
        time_series(ops, span + 1, now=now)
        two_reads_s = time.perf_counter() - t
        t = time.perf_counter()
        light = query_events_light(ops, now - span - 1, now)
        summarize_events(light, start=now - span - 1, end=now, now=now)
        series_from_events(light, default_bucket(span + 1))
        live_s = time.perf_counter() - t
        print(f"live charts refresh 7d: {live_s * 1000:.1f} ms for {len(light):,} events "
              f"(summarize + time_series: {two_reads_s * 1000:.1f} ms; {two_reads_s / live_s if live_s else 0:.2f}x)")
        rules = alerts_mod.load_rules_file(alerts_mod.SHIPPED_RULES)
        t = time.perf_counter()
        alerts_mod.evaluate_alerts(ops, rules, now)
        print(f"evaluate {len(rules)} alert rules: {(time.perf_counter() - t) * 1000:.1f} ms")
        t = time.perf_counter()
        report = build_report(ops, "7d", now=now, rules=rules)
        build_s = time.perf_counter() - t
        print(f"build 7d report: {build_s * 1000:.1f} ms")
        for fmt in FORMATS:
            t = time.perf_counter()
            text = render(report, fmt)
            print(f"render {fmt:>4}: {(time.perf_counter() - t) * 1000:7.1f} ms, {len(text.encode()):>9,} bytes")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0
