"""`python -m engine rollout ...` and `python -m engine worker ...`: thin adapters over engine.rollout and engine.jobs."""

from __future__ import annotations

import argparse
import json
import sys
import time

from engine.jobs import (
    DEFAULT_STALE_AFTER_S,
    JobState,
    JobStore,
    run_claimed,
    worker_liveness,
    worker_loop,
)
from engine.settings import load_settings


def _ops(settings):
    from engine.opsdb import open_ops_db

    return open_ops_db(settings.ensure_dirs())


# --------------------------------------------------------------------------- worker


def cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = JobStore(_ops(settings))
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
            print(f"{j.id:>5}  {j.kind:<10} {j.state:<10} {j.progress_done}/{j.progress_total}  "
                  f"attempts {j.attempts}  {j.message or j.error or ''}  {live}".rstrip())
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


def register(subparsers) -> None:
    w = subparsers.add_parser(
        "worker",
        help="run queued jobs (rollouts, rollbacks, tuning studies) in this process",
        description="Run long jobs outside the console: `--job ID` runs one queued job (this is what the console "
        "and `rollout` start, detached); without it, loop over queued jobs. Heartbeats go to SQLite; a worker "
        "that dies is detected (stale heartbeat or pid gone) and its job can be resumed from its checkpoint.",
    )
    w.add_argument("--job", type=int, help="run this queued job and exit")
    w.add_argument("--kind", help="loop: only jobs of these kinds (comma separated); --list: only this kind")
    w.add_argument("--idle-exit", type=float, default=None, metavar="S",
                   help="loop: exit after S seconds without queued jobs (default: run forever)")
    w.add_argument("--list", action="store_true", help="list recent jobs with state, progress and liveness")
    w.add_argument("--reap", action="store_true", help="mark jobs whose worker died as dead (resumable)")
    w.add_argument("--stale-after", type=float, default=DEFAULT_STALE_AFTER_S, metavar="S",
                   help=f"a worker silent for S seconds is dead (default {DEFAULT_STALE_AFTER_S:g})")
    w.add_argument("--limit", type=int, default=20, help="--list: how many jobs (default 20)")
    w.add_argument("--json", action="store_true", help="--list: print JSON")
    w.set_defaults(func=cmd_worker)
