"""`python -m engine production start|pause|resume|stop|status|plan` and `bench production`: thin adapters over
engine.production.control and engine.bench.production.

engine.production is imported inside the handlers: it loads the rollout package (scipy.stats, about
0.8 s), which every other command (this module is imported to build the parser) would otherwise pay.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

from engine.cli.args import ENTITIES, SEED, number, whole
from engine.cli.common import actor as cli_actor
from engine.cli.common import (
    add_evidence_options,
    add_limit_options,
    evidence_from_args,
    open_ops,
    source_limits,
    stores,
)
from engine.core.errors import ConfigError
from engine.core.settings import load_settings
from engine.monitoring.windows import parse_window

#: the day's budget flag's bounds and default (engine.production.budget holds the same numbers; repeated here so
#: building the parser does not import the production package)
DEFAULT_BUDGET = 100.0
MAX_BUDGET = 1_000_000.0
#: refresh ages: from 0 to a year
MAX_AGE_S = 366 * 86400.0


def _age(text: str) -> float:
    """An argparse type: an age like ``12h`` or ``7d`` (``0`` allowed), at most a year, in seconds."""
    t = str(text).strip()
    if t in ("0", "0s"):
        return 0.0
    try:
        seconds = parse_window(t)
    except ConfigError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_AGE_S:
        raise argparse.ArgumentTypeError(f"got {t!r} (allowed: 0 or a duration like 30m, 12h or 7d, up to 366d)")
    return seconds


def _when(ts: float | None) -> str:
    return "—" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_status(st) -> str:
    """The status as lines an operator reads."""
    from engine.production.control import run_settings  # lazy: the production package loads scipy (see above)

    s = st.summary
    lines = [f"production: {st.state}" + (f" ({st.message})" if st.message else "")]
    if st.budget_usd is not None:
        lines.append(
            f"  today {st.day} (UTC): spent ${s.spent_usd:,.2f} of ${st.budget_usd:,.2f} "
            f"(${st.remaining_usd:,.2f} left)"
        )
    else:
        lines.append(f"  today {st.day} (UTC): spent ${s.spent_usd:,.2f}; no scheduler was ever started")
    lines.append(
        f"  visits today {s.visits:,} ({s.entities:,} entities, {s.became_actionable:,} became actionable); "
        f"batches {s.batches:,} ({s.abandoned:,} abandoned by a stopped worker)"
    )
    lines.append(
        f"  entities {st.entities:,}: {st.due:,} due ({st.new:,} new, {st.overdue:,} overdue), "
        f"{st.entities - st.due:,} visited recently"
    )
    info = run_settings(st.run)
    if info:
        lines.append(f"  evidence {info['evidence']}; {info['in_flight']}; batches of {info['batch_size']}")
        lines.append(f"  refresh: {info['policy']}")
        lines.append(f"  started by {info['started_by']} at {_when(info['started_at'])}")
    return "\n".join(lines)


def cmd_production(args: argparse.Namespace) -> int:
    from engine.production import control  # lazy: the production package loads scipy (see the module docstring)
    from engine.production.policy import RefreshPolicy  # lazy: as above

    settings = load_settings().ensure_dirs()
    action = args.action
    actor = cli_actor()
    if action == "start":
        ops = open_ops(settings)
        policy = RefreshPolicy(args.min_age, args.max_age)
        run_id = control.start_production(
            settings,
            ops,
            budget_usd=args.budget_usd,
            policy=policy,
            evidence=evidence_from_args(args),
            concurrency=args.concurrency or 1,
            limits=source_limits(args, args.concurrency or 1),
            batch_size=args.batch_size,
            actor=actor,
        )
        print(
            f"production scheduler {run_id} started: ${args.budget_usd:,.2f} a day; {policy.describe()}; "
            f"worker log {settings.log_dir}/"
        )
        return 0
    if action == "pause":
        job = control.pause_production(open_ops(settings), actor)
        print(f"pause requested (job {job.id}): the scheduler stops between batches")
        return 0
    if action == "resume":
        job, note = control.resume_production(open_ops(settings), actor, settings=settings)
        print(f"production resumed (job {job.id}): {note}")
        return 0
    if action == "stop":
        job = control.stop_production(open_ops(settings), actor)
        print(f"stop requested (job {job.id}): the batch in flight finishes or is abandoned, nothing half-written")
        return 0
    with stores(settings) as (graph, ops):
        if action == "status":
            st = control.production_status(ops, graph)
            print(json.dumps(st.to_dict(), indent=2, default=str) if args.json else format_status(st))
            return 0
        # plan
        plan_policy: RefreshPolicy | None = None
        if args.min_age is not None or args.max_age is not None:
            plan_policy = RefreshPolicy(
                args.min_age if args.min_age is not None else 86400.0,
                args.max_age if args.max_age is not None else 7 * 86400.0,
            )
        t0 = time.perf_counter()
        plan = control.production_plan(ops, graph, limit=args.top, policy=plan_policy)
        if args.json:
            print(json.dumps([d.to_dict() for d in plan], indent=2))
            return 0
        if not plan:
            print(
                "nothing is due: every entity was visited within the refresh policy's minimum age"
                if graph.count_entities()
                else "the graph holds no entities: seed it first (python -m engine seed --entities 3400)"
            )
            return 0
        print(f"the next {len(plan)} visits (planned in {time.perf_counter() - t0:.1f} s):")
        print(f"{'#':>4}  {'entity':<36} {'EIG':>6} {'exp. $':>7} {'EIG/$':>7}  why")
        for d in plan:
            print(
                f"{d.rank:>4}  {d.entity_id:<36} {d.eig:>6.3f} {d.expected_cost_usd:>7.3f} {d.eig_per_usd:>7.2f}  "
                f"{d.reason.split(';')[0]}"
            )
        return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "production",
        help="the production scheduler: keep discovery running over the catalogue within a day's budget",
        description="Start, pause, resume or stop the production scheduler, show the day's spend and what is due, "
        "or the next visits and why each is due.",
    )
    p.add_argument(
        "action",
        nargs="?",
        default="status",
        choices=["start", "pause", "resume", "stop", "status", "plan"],
        help="what to do (default: status)",
    )
    p.add_argument(
        "--budget-usd",
        type=number(0.0, MAX_BUDGET, low_open=True),
        default=DEFAULT_BUDGET,
        metavar="USD",
        help=f"start: the day's budget (UTC day), never exceeded; above 0, at most {MAX_BUDGET:,.0f} "
        f"(default {DEFAULT_BUDGET:g})",
    )
    p.add_argument(
        "--min-age",
        type=_age,
        default=None,
        metavar="AGE",
        help="start, plan: revisit an entity no sooner than this (e.g. 12h; default 1d)",
    )
    p.add_argument(
        "--max-age",
        type=_age,
        default=None,
        metavar="AGE",
        help="start, plan: an entity not visited for this long is overdue (e.g. 7d; default 7d)",
    )
    p.add_argument(
        "--batch-size",
        type=whole(1, 1000),
        default=50,
        metavar="N",
        help="start: entities reserved, run and settled together (1 to 1000, default 50)",
    )
    add_evidence_options(p, who="visits")
    p.add_argument("--world-seed", type=SEED, help="start: simulated world seed (default 1)")
    add_limit_options(p, concurrency_default="1")
    p.add_argument("--top", type=whole(1, 10_000), default=20, metavar="N", help="plan: how many (default 20)")
    p.add_argument("--json", action="store_true", help="status, plan: print JSON")
    p.set_defaults(func=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    if args.action == "start":
        args.min_age = 86400.0 if args.min_age is None else args.min_age
        args.max_age = 7 * 86400.0 if args.max_age is None else args.max_age
    return cmd_production(args)


def cmd_bench_production(args: argparse.Namespace) -> int:
    from engine.bench.production import run_production_bench  # lazy: the production package loads scipy

    ok = run_production_bench(
        entities=args.entities,
        seed=args.seed,
        budget_share=args.budget_share,
        batch_size=args.batch_size,
        warm_days=args.warm_days,
        keep=args.keep,
    )
    return 0 if ok else 1


def register_bench(bench_subparsers) -> None:
    p = bench_subparsers.add_parser(
        "production",
        help="a simulated production day: EIG-per-dollar scheduling vs round robin on the same budget",
        description="Seeds a throwaway catalogue, lets production run for --warm-days, then runs one simulated "
        "day (virtual time) twice from the same state, once with the EIG-per-dollar scheduler and once round "
        "robin, on a budget that covers about --budget-share of the catalogue; prints budget vs spend to the cent, "
        "actionable entities found per dollar and the scheduler's overhead per visit.",
    )
    p.add_argument("--entities", type=ENTITIES, default=3400, help="entities to seed (default 3400)")
    p.add_argument("--seed", type=SEED, default=7, help="catalogue seed (default 7)")
    p.add_argument(
        "--budget-share",
        type=number(0.0, 1.0, low_open=True),
        default=1 / 3,
        help="the day's budget as a share of what visiting every entity once costs (default 1/3)",
    )
    p.add_argument("--batch-size", type=whole(1, 1000), default=50, help="entities per batch (default 50)")
    p.add_argument(
        "--warm-days", type=whole(0, 30), default=1, help="days of production before the measured one (default 1)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    p.set_defaults(func=cmd_bench_production)
