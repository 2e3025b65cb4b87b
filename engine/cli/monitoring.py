"""`python -m engine report ...`, `python -m engine alerts ...` and `python -m engine bench monitor`.

Thin adapters over engine.monitoring.reports, engine.monitoring.alerts and engine.bench.monitor: read arguments, call
one library function, print the result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from engine.bench.monitor import bench_monitor
from engine.cli.args import ROWS, SEED, duration, output_path, whole
from engine.cli.common import actor
from engine.core.errors import ConfigError
from engine.core.settings import load_settings
from engine.monitoring import alert_jobs
from engine.monitoring import alerts as alerts_mod
from engine.monitoring.reports import FORMATS, build_report, iso, render, report_filename
from engine.monitoring.windows import format_window, parse_window
from engine.store.opsdb import open_ops_db

#: the most synthetic events `bench monitor` records (each is kept in memory first)
MAX_BENCH_EVENTS = 10_000_000
#: the longest time between two periodic alert evaluations
MAX_EVALUATION_INTERVAL_S = 86_400.0


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
        "-o",
        "--output",
        default="-",
        type=output_path("--output", directory_ok=True, stdout_ok=True),
        help="file to write (its directory must exist); '-' (default) prints to stdout; a directory gets a dated "
        "file name",
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
    p.add_argument("--history", type=ROWS, metavar="N", default=0, help="also print the last N state transitions")
    p.add_argument("--ack", metavar="RULE_ID", help="acknowledge this pending or firing alert (audited)")
    p.add_argument("--note", default="", help="a note kept with the acknowledgement")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--start-evaluator",
        action="store_true",
        help="start periodic evaluation in a detached worker (one per data dir; see --interval)",
    )
    p.add_argument(
        "--interval",
        default="1m",
        type=duration(alert_jobs.MIN_INTERVAL_S, MAX_EVALUATION_INTERVAL_S),
        help="time between two periodic evaluations, 5s to 1d (default 1m)",
    )
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
    p.add_argument(
        "--events", type=whole(1, MAX_BENCH_EVENTS), default=20000, help="how many events to record (default 20000)"
    )
    p.add_argument(
        "--batch", type=whole(1, MAX_BENCH_EVENTS), default=50, help="results per record_runs call (default 50)"
    )
    p.add_argument("--seed", type=SEED, default=11, help="seed of the synthetic figures (default 11)")
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
    out = Path(args.output).expanduser()  # its directory exists: checked while parsing (engine.cli.args.output_path)
    if out.is_dir():
        out = out / report_filename(now, report.window_label, args.format)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {out} ({exc.strerror or type(exc).__name__}): choose another --output"
        ) from None
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
    who = actor(ops)
    if args.start_evaluator:
        job, started = alert_jobs.start_evaluator(settings, ops, interval=args.interval, actor=who)
        print(
            f"{'started' if started else 'already running:'} periodic alert evaluation, job {job.id} "
            f"(every {format_window(job.params['interval_s'])}); "
            "stop it with `python -m engine alerts --stop-evaluator`"
        )
    if args.stop_evaluator:
        stopped = alert_jobs.stop_evaluator(ops, actor=who)
        print(
            f"stop requested for periodic alert evaluation, job {stopped.id}"
            if stopped
            else "periodic alert evaluation was not running"
        )
    if args.evaluate:
        alerts_mod.evaluate(ops, rules, actor=who, now=time.time())
    if args.ack:
        acked = alerts_mod.acknowledge(ops, args.ack, actor=who, now=time.time(), note=args.note)
        print(f"acknowledged {acked.rule_id} ({acked.state.value} since {iso(acked.since)}) as {acked.acknowledged_by}")
    states = alerts_mod.current_states(ops)
    trail = alerts_mod.history(ops, limit=args.history) if args.history else []
    # Exit status 1 while any alert fires, in every output mode (scripts and cron check it).
    status = 1 if any(r.state.is_firing() for r in states.values()) else 0
    if args.json:
        print(
            json.dumps(
                {
                    "rules_file": str(alerts_mod.rules_source(settings)),
                    "rules": [r.to_json() for r in rules] if args.rules else None,
                    "states": {k: {**v.__dict__, "state": v.state.value} for k, v in states.items()},
                    "history": trail,
                },
                indent=2,
            )
        )
        return status
    if args.rules:
        print(f"rules from {alerts_mod.rules_source(settings)}")
        _print_table(
            ("rule", "condition", "hold", "window", "min sample", "severity", "system", "runbook"),
            [
                (
                    r.id,
                    r.condition(),
                    r.to_json()["hold"],
                    r.to_json()["window"],
                    str(r.min_sample),
                    r.severity.value,
                    r.system,
                    r.runbook,
                )
                for r in rules
            ],
        )
        print()
    by_id = {r.id: r for r in rules}
    rows = []
    for rule in rules:
        rec = states.get(rule.id)
        if rec is None:
            rows.append((rule.id, "not evaluated", "", "", rule.condition(), rule.severity.value, "", ""))
            continue
        rows.append(
            (
                rule.id,
                rec.state.value,
                iso(rec.since),
                rule.metric.format_value(rec.value),
                rule.condition(),
                rule.severity.value,
                rec.acknowledged_by or "",
                rec.reason,
            )
        )
    for rid, rec in states.items():  # states of rules since removed from the file
        if rid not in by_id:
            rows.append((rid, rec.state.value, iso(rec.since), str(rec.value), "(rule removed)", "", "", rec.reason))
    last = max((r.evaluated_at for r in states.values()), default=None)
    print(
        f"alert states, last evaluated {iso(last)}"
        if states
        else "no alert evaluated yet: run `python -m engine alerts --evaluate`"
    )
    alert_jobs.reap_evaluators(ops)
    print(alert_jobs.evaluator_status(ops, time.time()))
    _print_table(("rule", "state", "since", "value", "condition", "severity", "ack", "reason"), rows)
    if trail:
        print()
        _print_table(
            ("at", "rule", "from", "to", "reason"),
            [(iso(h["at"]), h["rule_id"], h["from_state"] or "", h["to_state"], h["reason"]) for h in trail],
        )
    return status


def _print_table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


# --------------------------------------------------------------------------- bench


def cmd_bench_monitor(args: argparse.Namespace) -> int:
    bench_monitor(args.events, args.batch, args.seed)
    return 0
