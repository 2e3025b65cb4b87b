"""`python -m engine rollout ...` and `python -m engine worker ...`: thin adapters over engine.rollout and
engine.jobs.queue.

engine.rollout is imported inside the rollout handlers: it loads scipy.stats
(about 0.8 s), which every other command (this module is imported to build the
parser) would otherwise pay.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from engine.cli.args import ENTITIES, LIMIT, ROW_ID, SEED, WAIT_S, number, output_path
from engine.cli.common import actor as cli_actor
from engine.cli.common import (
    add_evidence_options,
    add_executor_options,
    add_limit_options,
    evidence_from_args,
    executor_from_args,
    open_ops,
    source_limits,
)
from engine.core.access import Actor
from engine.core.errors import DiscoveryError
from engine.core.settings import load_settings
from engine.discovery.limits import DEFAULT_BUDGET_USD, MAX_BUDGET_USD
from engine.jobs.queue import (
    DEFAULT_STALE_AFTER_S,
    JobState,
    JobStore,
    run_claimed,
    worker_liveness,
    worker_loop,
)

#: a worker silent for longer than this is dead at the latest (--stale-after): a day
MAX_STALE_AFTER_S = 86_400.0


def _time_scale(text: str) -> float:
    """The --time-scale type: the stage table's own bound (engine.rollout.stages.MAX_TIME_SCALE)."""
    # lazy: engine.rollout loads scipy.stats (~1 s); only a command line that gives --time-scale pays it here
    from engine.rollout.stages import MAX_TIME_SCALE

    return number(0, MAX_TIME_SCALE, low_open=True)(text)


# --------------------------------------------------------------------------- worker


def cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = JobStore(open_ops(settings))
    if args.list:
        store.reap(stale_after_s=args.stale_after)
        now = time.time()
        jobs = store.list(kind=args.kind, limit=args.limit)
        if args.json:
            print(json.dumps([j.to_dict() for j in jobs], indent=2, default=str))
            return 0
        if not jobs:
            print("no jobs")
        for j in jobs:
            live = worker_liveness(j, now, args.stale_after)[1] if j.state.has_worker() else ""
            print(
                f"{j.id:>5}  {j.kind:<10} {j.state:<10} {j.progress_done}/{j.progress_total}  "
                f"attempts {j.attempts}  {j.message or j.error or ''}  {live}".rstrip()
            )
        return 0
    if args.reap:
        dead = store.reap(stale_after_s=args.stale_after)
        print(f"{len(dead)} dead job(s) found" + "".join(f"\n  job {j.id} ({j.kind})" for j in dead))
        return 0
    if args.job is not None:
        job = run_claimed(store, args.job, settings)
        print(f"job {job.id} ({job.kind}) {job.state}" + (f": {job.error}" if job.error else ""))
        return 0 if job.state is JobState.SUCCEEDED else 1
    kinds = args.kind.split(",") if args.kind else None
    ran = worker_loop(store, settings, kinds=kinds, idle_exit_s=args.idle_exit)
    print(f"worker ran {ran} job(s)")
    return 0


# --------------------------------------------------------------------------- rollout

ACTIONS = ("start", "status", "pause", "resume", "promote", "rollback", "cancel", "runs", "report", "guardrail")
#: `rollout guardrail WHAT`: the bake window after a production promotion (engine.rollout.guardrails)
GUARDRAIL_ACTIONS = ("status", "evaluate", "start", "revert", "end")


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and not math.isfinite(x):
        return "+inf" if x > 0 else "-inf"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _who(identity: dict) -> str:
    """An identity of a record as one line (``alice@example.com``, or ``cli:alice``)."""
    email, key = str(identity.get("email") or ""), str(identity.get("key") or "")
    return email if email and email == key else (f"{key} ({email})" if email else key)


def format_status(st) -> str:
    """Human text of a RolloutStatus (what `rollout status` prints)."""
    if st.run is None:
        return "no rollout yet: start one with `python -m engine rollout --stage pilot`"
    r = st.run
    done, total = st.progress
    lines = [
        f"rollout {r.id}: {st.state}{' (dry run)' if r.dry_run else ''} — {st.message}",
        f"  stages {' -> '.join(r.stages)}; current {st.current_stage}; entities {done}/{total}",
        f"  candidate {r.candidate_hash} ({r.candidate_source}); baseline {r.baseline_hash}; "
        f"time scale {r.time_scale:g}; worker: {st.worker_note}",
        f"  evidence {r.evidence or 'simulated world'}; {_in_flight(r)}",
        f"  batches run {r.executor or 'in this process'}",
        f"  started by {_who(r.started_by) or r.actor}",
    ]
    if r.cost_estimate:
        lines.append(f"  {_estimate_line(r.cost_estimate)} (at the start)")
    for s in st.stages:
        width = 20
        fill = int(round(s.progress * width))
        v = f" verdict {s.verdict.phase}" if s.verdict else ""
        lines.append(
            f"  {s.name:<11} {s.state:<12} [{'#' * fill}{'.' * (width - fill)}] {s.done}/{s.total}"
            f"  {s.elapsed_days:.2f}/{s.min_duration_days:g} d{v}"
        )
    if st.paired:
        p = st.paired
        lines.append(
            f"  paired ({p.paired} entities): cost old ${p.old_cost_usd:.3f} new ${p.new_cost_usd:.3f}; "
            f"actionable old {p.old_actionable} new {p.new_actionable}; errors {p.new_errors}/{p.new_hops} hops; "
            f"engine p95 {_fmt(p.new_engine_ms_p95)} ms"
        )
    if st.criteria:
        lines.append(f"  criteria ({st.verdict.phase}: {st.verdict.reason}):")
        for c in st.criteria:
            lines.append(
                f"    {c.kind:<8} {c.metric:<24} {c.op} {c.threshold:<6g} value {_fmt(c.value):>8} "
                f"[{_fmt(c.low)}, {_fmt(c.high)}] ({c.test})  {c.phase}"
            )
    if st.decisions:
        lines.append("  decisions (newest first):")
        for d in st.decisions[:8]:
            when = time.strftime("%H:%M:%S", time.gmtime(d.at))
            lines.append(
                f"    #{d.id} {when} {d.stage:<10} {d.gate:<9} {d.action:<14} {d.phase:<12} {d.actor}"
                f"{' FORCED' if d.forced else ''}: {d.reason[:90]}"
            )
            if d.approved_by:
                lines.append(
                    f"        started by {d.started_by}; approved by {d.approved_by}; four-eyes {d.four_eyes_outcome}"
                )
    return "\n".join(lines)


def _wait(ops, run_id: int, poll_s: float = 1.0) -> int:
    """Print the run's progress until it is over or waits for a person; 0 when it completed."""
    from engine import rollout  # lazy: scipy.stats (~1 s); every CLI command imports this module for its parser

    last = None
    while True:
        st = rollout.rollout_status(ops, run_id, decisions=1)
        done, total = st.progress
        line = f"{st.state} {st.current_stage} {done}/{total}: {st.message}"
        if line != last:
            print(line, flush=True)
            last = line
        if st.state.is_terminal() or st.state.awaits_operator():
            return 0 if st.state is rollout.EffectiveState.COMPLETED else 1
        time.sleep(poll_s)


def _in_flight(run) -> str:
    """Entities in flight and evaluator limits of a run, one phrase."""
    text = f"{run.concurrency} entities in flight" if run.concurrency else "entities in flight: each stage's setting"
    limits = run.limits or {}
    if limits.get("max_hops_per_s") is not None:
        text += f", at most {limits['max_hops_per_s']:g} hops/s"
    if limits.get("max_in_flight") is not None:
        text += f", at most {limits['max_in_flight']} requests at once"
    return text


def _estimate_line(est: dict) -> str:
    stages = ", ".join(f"{s['stage']} {s['entities']:,} entities ${s['usd']:,.2f}" for s in est.get("stages", []))
    paid = "" if est.get("paid") else " (this source costs nothing real; the figure is what the evaluator would)"
    return f"estimated cost: ${est.get('total_usd', 0.0):,.2f} ({stages}){paid}"


def format_guardrail(st) -> str:
    """Human text of a GuardrailStatus (what `rollout guardrail status` prints)."""
    if st is None:
        return "no bake window: no promotion into production has baked yet (set bake_days on the last stage)"
    lines = [st.describe()]
    lines.append(
        f"  window {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(st.promoted_at))} -> "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(st.ends_at))} UTC "
        f"({st.elapsed_days:.2f} of {st.bake_days:g} days); min sample {st.policy.min_sample}"
    )
    baseline = st.record.get("baseline") or {}
    if baseline:
        lines.append(f"  compared with: {baseline.get('describe', '')}")
    if st.verdict is not None:
        for row in st.verdict.rows:
            lines.append(
                f"    {row.metric:<24} {row.op} {row.threshold:<6g} value {_fmt(row.value):>8} "
                f"[{_fmt(row.low)}, {_fmt(row.high)}] ({row.test})  {row.phase}"
            )
    job = st.job
    if job is not None:
        lines.append(f"  evaluator: job {job.id} {job.state}" + (f" ({job.message[:100]})" if job.message else ""))
    elif st.state.is_open():
        lines.append("  evaluator: none; start it with `python -m engine rollout guardrail start`")
    return "\n".join(lines)


def cmd_guardrail(args: argparse.Namespace, settings, ops, actor: Actor) -> int:
    """`rollout guardrail [status|evaluate|start|revert|end]`."""
    from engine.rollout import guardrails as gr  # lazy: with the rollout package (scipy.stats)

    what = args.what or "status"
    if what == "status":
        st = gr.guardrail_status(ops, run_id=args.run)
        if args.json:
            print(json.dumps(st.to_dict() if st else None, indent=2, default=str))
        else:
            print(format_guardrail(st))
        return 0
    if what == "evaluate":
        st = gr.evaluate_guardrail(settings, ops, run_id=args.run, actor=actor)
        print(format_guardrail(st))
        return 1 if st is not None and st.state is gr.GuardrailState.REVERTED else 0
    if what == "start":
        job, started = gr.start_evaluator(ops, args.run, settings=settings, actor=actor)
        if job is None:
            print("the bake window is closed: nothing to evaluate")
        else:
            print(f"evaluator job {job.id} {'started' if started else 'already ' + str(job.state)}")
        return 0
    if what == "end":
        st = gr.end_bake(ops, run_id=args.run, actor=actor, reason=args.reason or "")
        print(format_guardrail(st))
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise DiscoveryError("revert puts the previous config live again: confirm with --yes")
        answer = input("revert the live config to the previous one? type yes: ")
        if answer.strip().lower() != "yes":
            print("not reverted")
            return 1
    res = gr.revert_guardrail(
        settings,
        ops,
        run_id=args.run,
        actor=actor,
        reason=args.reason or "operator request",
        restore_graph=args.restore_graph,
    )
    print(res.message)
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    from engine import rollout as ro  # lazy: scipy.stats (~1 s); every CLI command imports this module

    settings = load_settings().ensure_dirs()
    ops = open_ops(settings)
    actor = cli_actor(ops)
    action = args.action
    if action != "guardrail" and args.what:
        raise DiscoveryError(f"`rollout {action}` takes no second word ({args.what!r}): it is for `rollout guardrail`")
    if action == "guardrail":
        return cmd_guardrail(args, settings, ops, actor)
    if action == "start" and args.resume:
        st = ro.resume(ops, args.run, actor, settings=settings)
        if st.run is None:  # resume found the run: it cannot have vanished since, short of a deleted OpsDB
            raise ro.UnknownRollout(args.run)
        print(f"rollout {st.run.id}: {st.state} ({st.worker_note})")
        return _wait(ops, st.run.id) if args.wait else 0
    if action == "start":
        if not args.stage:
            raise DiscoveryError("say which stage to run: --stage pilot|limited|production|all (or --resume)")
        executor = executor_from_args(args)  # --scheduler, else $DISCOVERY_DASK_SCHEDULER, else --workers N
        run_id = ro.start_rollout(
            settings,
            ops,
            stage=args.stage,
            entities=args.entities,
            config_file=args.config_file,
            stages_file=args.stages_file,
            dry_run=args.dry_run,
            time_scale=args.time_scale,
            seed=args.seed,
            world_seed=args.world_seed,
            actor=actor,
            evidence=evidence_from_args(args),
            concurrency=args.concurrency,
            limits=source_limits(args, args.concurrency or 1),
            budget_usd=args.budget_usd,
            confirm_cost=args.yes,
            workers=args.workers,
            scheduler=executor.scheduler,
        )
        st = ro.rollout_status(ops, run_id)
        if st.run is None:  # just created: only a deleted OpsDB could lose it
            raise ro.UnknownRollout(run_id)
        print(
            f"rollout {run_id} started: stages {' -> '.join(st.run.stages)}"
            f"{' (dry run: nothing live is touched)' if args.dry_run else ''}; job {st.run.job_id}, worker log "
            f"{settings.log_dir}/worker-job-{st.run.job_id}.log"
        )
        print(f"evidence: {st.run.evidence}; {_in_flight(st.run)}; batches run {st.run.executor}")
        from engine.rollout.stages import load_stage_config  # lazy: with the rollout package, above

        table = load_stage_config(args.stages_file)
        capped = [n for n in st.run.stages if args.concurrency and table.stage(n).batch_size < args.concurrency]
        if capped:
            print(f"note: in flight is capped by the batch size of {', '.join(capped)} (a batch ends before the next)")
        if st.run.cost_estimate:
            print(_estimate_line(st.run.cost_estimate))
        skipped = ro.skipped_stages(list(st.run.stages_of_table), args.stage)
        if skipped:
            print(
                f"skipped stages: {', '.join(skipped)} (not run before {st.run.stages[0]}; kept in the start "
                "decision record)"
            )
        print("follow it with `python -m engine rollout status`")
        return _wait(ops, run_id) if args.wait else 0
    if action == "status":
        from engine.rollout.guardrails import guardrail_status  # lazy: with the rollout package, above

        st = ro.rollout_status(ops, args.run)
        bake = guardrail_status(ops, run_id=st.run.id) if st.run is not None else None
        if args.json:
            print(json.dumps({**st.to_dict(), "guardrail": bake.to_dict() if bake else None}, indent=2, default=str))
        else:
            print(format_status(st))
            if bake is not None:
                print(f"  {bake.describe()}")
        return 0
    if action == "runs":
        runs = ro.list_runs(ops, limit=args.limit)
        if args.json:
            print(json.dumps([r.to_dict() for r in runs], indent=2, default=str))
            return 0
        if not runs:
            print("no rollout yet")
        for r in runs:
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created_at))
            print(
                f"{r.id:>4}  {when}  {r.state:<13} {r.target:<10} {'dry ' if r.dry_run else ''}"
                f"candidate {r.candidate_hash} by {r.actor}: {r.message}"
            )
        return 0
    if action == "report":
        st = ro.rollout_status(ops, args.run)
        if st.run is None:
            raise ro.UnknownRollout(None)
        stage = args.stage or st.current_stage
        if stage is None:  # a queued run has no current stage yet: the error stage_report gives for no such stage
            raise ro.RolloutError(
                f"rollout {st.run.id} has no stage {stage!r}: its stages are {', '.join(st.run.stages)}"
            )
        text = ro.stage_report(ops, st.run.id, stage)
        if args.output:  # its directory exists: checked while parsing (engine.cli.args.output_path)
            try:
                Path(args.output).expanduser().write_text(text, encoding="utf-8")
            except OSError as exc:
                raise DiscoveryError(
                    f"cannot write {args.output} ({exc.strerror or type(exc).__name__}): choose another --output"
                ) from None
            print(f"wrote {args.output}")
        else:
            print(text)
        return 0
    if action == "pause":
        st = ro.pause(ops, args.run, actor)
    elif action == "resume":
        st = ro.resume(ops, args.run, actor, settings=settings)
    elif action == "cancel":
        st = ro.cancel(ops, args.run, actor)
    elif action == "promote":
        st = ro.promote(ops, args.run, actor, force=args.force)
    elif action == "rollback":
        st = ro.rollout_status(ops, args.run)
        if st.run is None:
            raise ro.UnknownRollout(None)
        if not args.yes:
            if not sys.stdin.isatty():
                raise DiscoveryError("rollback restores the graph of every exposed entity: confirm with --yes")
            answer = input(f"roll back rollout {st.run.id} ({st.state}, {st.progress[0]} entities)? type yes: ")
            if answer.strip().lower() != "yes":
                print("not rolled back")
                return 1
        res = ro.rollback(settings, ops, st.run.id, actor, args.reason or "operator request")
        print(res.message)
        return 0
    else:  # pragma: no cover - argparse restricts the choices
        raise DiscoveryError(f"unknown rollout action {action!r}")
    print(format_status(st))
    return 0


def register(subparsers) -> None:
    r = subparsers.add_parser(
        "rollout",
        help="staged rollout of the new system: start, status, pause, resume, promote, rollback",
        description="Roll the new discovery system (with a candidate config) out pilot -> limited -> production, "
        "paired against the old system with the live config on the same entities. `rollout --stage S` starts a run "
        "in a detached worker; `rollout status` shows progress, criteria and decisions; pause/resume/cancel act "
        "between batches; promote moves a passed (or, by a person, an inconclusive) stage on; rollback restores "
        "every exposed entity from its stage's snapshot; `rollout guardrail` shows, evaluates, reverts or ends the "
        "bake after the promotion that made a config live.",
    )
    r.add_argument(
        "action",
        nargs="?",
        default="start",
        choices=ACTIONS,
        help="start (default), status, pause, resume, promote, rollback, cancel, runs, report, guardrail",
    )
    r.add_argument(
        "what",
        nargs="?",
        choices=GUARDRAIL_ACTIONS,
        help="guardrail: status (default), evaluate (one round now), start (its periodic evaluator), "
        "revert (the live config back to the previous one), end (end the bake early)",
    )
    r.add_argument(
        "--stage",
        help="start: pilot|limited|production|all (stage names of the stage table); "
        "report: which stage (default: the current one)",
    )
    r.add_argument(
        "--entities",
        type=ENTITIES,
        metavar="N",
        help="limit the population to a seeded stratified sample of N entities (stage sizes capped at N)",
    )
    r.add_argument("--dry-run", action="store_true", help="both systems in shadow: no graph writes, nothing live")
    r.add_argument(
        "--resume", action="store_true", help="resume the latest (or --run) rollout whose worker died or paused"
    )
    r.add_argument(
        "--config-file",
        metavar="FILE",
        help="candidate ParameterConfig JSON (default: the handed-over candidate, else the live config)",
    )
    r.add_argument("--stages-file", metavar="FILE", help="stage table (default data/stages.json)")
    r.add_argument(
        "--time-scale",
        type=_time_scale,
        metavar="X",
        help="scaled seconds per real second for minimum durations (86400: one day per second); above 0, at most 1e9",
    )
    r.add_argument("--seed", type=SEED, help="cohort seed (default: the stage table's)")
    r.add_argument("--world-seed", type=SEED, help="simulated world seed (default 1)")
    r.add_argument("--wait", action="store_true", help="stay and print progress until the run completes or stops")
    r.add_argument("--run", type=ROW_ID, metavar="ID", help="which run (default: the latest)")
    r.add_argument("--json", action="store_true", help="status/runs/guardrail status: print JSON")
    r.add_argument("--force", action="store_true", help="promote before the stage's minimum duration (audited)")
    r.add_argument(
        "--yes",
        action="store_true",
        help="rollback, guardrail revert: do not ask for confirmation; start: confirm an estimated cost above "
        "--budget-usd",
    )
    add_evidence_options(r, who="both systems")
    r.add_argument(
        "--budget-usd",
        type=number(0.0, MAX_BUDGET_USD),
        default=DEFAULT_BUDGET_USD,
        metavar="USD",
        help="start: on a paid source (http), an estimated cost above this needs --yes "
        f"(default {DEFAULT_BUDGET_USD:g})",
    )
    add_limit_options(r, concurrency_default="each stage's setting in the stage table")
    add_executor_options(r, units="entity runs of each batch (start)")
    r.add_argument(
        "--reason", help="rollback, guardrail revert/end: why (kept in the decision record and the audit log)"
    )
    r.add_argument(
        "--restore-graph",
        action="store_true",
        help="guardrail revert: also restore the exposed entities' graph state from the stage snapshots "
        "(default: kept)",
    )
    r.add_argument(
        "--output",
        metavar="FILE",
        type=output_path("--output"),
        help="report: write the Markdown here (its directory must exist)",
    )
    r.add_argument("--limit", type=LIMIT, default=20, help="runs: how many (default 20)")
    r.set_defaults(func=cmd_rollout)

    w = subparsers.add_parser(
        "worker",
        help="run queued jobs (rollouts, rollbacks, tuning studies) in this process",
        description="Run long jobs outside the console: `--job ID` runs one queued job (this is what the console "
        "and `rollout` start, detached); without it, loop over queued jobs. Heartbeats go to SQLite; a worker "
        "that dies is detected (stale heartbeat or pid gone) and its job can be resumed from its checkpoint.",
    )
    w.add_argument("--job", type=ROW_ID, help="run this queued job and exit")
    w.add_argument("--kind", help="loop: only jobs of these kinds (comma separated); --list: only this kind")
    w.add_argument(
        "--idle-exit",
        type=WAIT_S,
        default=None,
        metavar="S",
        help="loop: exit after S seconds without queued jobs (default: run forever)",
    )
    w.add_argument("--list", action="store_true", help="list recent jobs with state, progress and liveness")
    w.add_argument("--reap", action="store_true", help="mark jobs whose worker died as dead (resumable)")
    w.add_argument(
        "--stale-after",
        type=number(0, MAX_STALE_AFTER_S, low_open=True),
        default=DEFAULT_STALE_AFTER_S,
        metavar="S",
        help=f"a worker silent for S seconds is dead (default {DEFAULT_STALE_AFTER_S:g})",
    )
    w.add_argument("--limit", type=LIMIT, default=20, help="--list: how many jobs (default 20)")
    w.add_argument("--json", action="store_true", help="--list: print JSON")
    w.set_defaults(func=cmd_worker)


# --------------------------------------------------------------------------- bench


def cmd_bench_rollout(args: argparse.Namespace) -> int:
    # lazy: the benchmark loads the whole rollout package (scipy.stats), which other commands need not pay
    from engine.bench.rollout import run_rollout_bench

    return 0 if run_rollout_bench(args.entities, args.seed, keep=args.keep) else 1


def register_bench(bench_subparsers) -> None:
    p = bench_subparsers.add_parser(
        "rollout",
        help="a full pilot -> limited -> production rollout and its rollback in a throwaway data dir, timed",
        description="Seeds N entities in a temporary data dir (yours is not touched), runs every stage of the shipped "
        "stage table in this process (durations 0; criteria replaced so every stage passes: it measures the runner), "
        "then rolls everything back and checks the graph equals the snapshots. Prints per-stage throughput and the "
        "rollback time measured in this one run.",
    )
    p.add_argument("--entities", type=ENTITIES, default=3400, help="entities to seed (default 3400)")
    p.add_argument("--seed", type=SEED, default=7, help="catalogue seed (default 7)")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    p.set_defaults(func=cmd_bench_rollout)
