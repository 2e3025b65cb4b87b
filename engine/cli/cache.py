"""`python -m engine cache stats|warm|clear` and `python -m engine bench store`.

The hypothesis cache lives in the console process. `cache stats` prints what
that process last published (engine.cache.service), `cache warm` / `cache
clear` leave it a request it carries out within a couple of seconds (and,
with ``--wait``, wait for it), `cache warm --interval S` sets how often it
warms by itself. `cache warm --plan` prints what a warming round would load
right now, from this process (recent discovery activity and templates; the
access log is the console's own).

`bench store` runs the store benchmark in temporary data dirs of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from engine.bench.store import format_report, run_store_bench
from engine.cache import service as cache_service
from engine.cache.cached_graph import CachedGraph
from engine.cache.lru import HypothesisCache
from engine.cache.warmer import CacheWarmer
from engine.cli.args import ENTITIES, ROWS, WAIT_S, number, whole
from engine.cli.common import actor, open_ops
from engine.core.settings import load_settings
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db

#: published statistics older than this are reported as from a process that is gone
STALE_AFTER_S = 30.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cache",
        help="statistics of the console's hypothesis cache; warm or clear it",
        description=(
            "The hypothesis cache lives in the console process. 'stats' prints what it last published, "
            "'warm' and 'clear' ask it to act (it checks every 2 s), 'warm --interval S' sets periodic warming."
        ),
    )
    sub = p.add_subparsers(dest="cache_command", metavar="ACTION")
    sub.required = True

    s = sub.add_parser("stats", help="hit rate, size, evictions, most accessed entries, warming")
    s.add_argument("--json", action="store_true", help="print the published statistics as JSON")
    s.set_defaults(func=cmd_stats)

    w = sub.add_parser("warm", help="ask the console to warm its cache now (or set the interval, or show the plan)")
    w.add_argument(
        "--interval",
        type=number(0, 86_400),
        default=None,
        metavar="S",
        help="set periodic warming to every S seconds (0 = off; 5..86400) instead of warming now",
    )
    w.add_argument("--plan", action="store_true", help="only print which entities a round would warm, and why")
    w.add_argument("--top", type=ROWS, default=20, metavar="K", help="entities to list with --plan (default 20)")
    w.add_argument(
        "--wait",
        type=WAIT_S,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for the console to confirm it handled the request",
    )
    w.set_defaults(func=cmd_warm)

    c = sub.add_parser("clear", help="ask the console to drop every cached entry")
    c.add_argument(
        "--wait",
        type=WAIT_S,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for the console to confirm it handled the request",
    )
    c.set_defaults(func=cmd_clear)


def register_bench(bench: argparse._SubParsersAction) -> None:
    b = bench.add_parser(
        "store",
        help="batch read, hot get, batch update, Zipf hit rate, memory; at N and 10xN entities",
        description=(
            "Seeds N catalogue entities into a temporary data dir with its own embedded FalkorDB (never yours) "
            "and prints, from this one run, every figure of the store-speed issue with its ratios, then the same "
            "at --growth x N entities and how each figure grew."
        ),
    )
    b.add_argument("--entities", type=ENTITIES, default=3400, metavar="N", help="entities (default 3400)")
    b.add_argument(
        "--growth",
        type=whole(1, 100),
        default=10,
        metavar="K",
        help="also run at K x N entities and print the growth (default 10; 1 = off)",
    )
    b.add_argument(
        "--repeats", type=whole(1, 1000), default=3, metavar="R", help="repeats of each batch read (median; default 3)"
    )
    b.add_argument(
        "--row-sample",
        type=whole(1, 1_000_000),
        default=1000,
        metavar="M",
        help="rows timed for the row-by-row update (default 1000)",
    )
    b.add_argument("--json", action="store_true", help="print the figures as JSON instead of the report")
    b.set_defaults(func=cmd_bench_store)


# --------------------------------------------------------------------------- commands


def _age(at: float | None) -> str:
    if not at:
        return "never"
    s = max(0.0, time.time() - at)
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago"


def format_stats(snap: dict | None) -> str:
    if snap is None:
        return "no cache has published statistics yet: start the console (make run) and open a page"
    c, w = snap["cache"], snap["warmer"]
    stale = time.time() - snap["at"] > STALE_AFTER_S
    lines = [
        f"cache of console process {snap['pid']} (published {_age(snap['at'])}"
        + ("; the process looks gone" if stale else "")
        + ")",
        f"  hit rate   {c['hit_rate']:.1%}  ({c['hits']:,} hits / {c['requests']:,} requests)",
        f"  size       {c['items']:,} entries, {c['bytes'] / 1048576:,.1f} MiB of {c['max_bytes'] / 1048576:,.0f} MiB"
        + (f", at most {c['max_items']:,} entries" if c.get("max_items") else "")
        + f", TTL {c['ttl_s']:g} s",
        f"  removed    {c['evictions']:,} evictions, {c['expirations']:,} expirations, "
        f"{c['invalidations']:,} invalidations",
        f"  loads      {c['loads']:,} ({c['load_failures']:,} failed, {c['coalesced']:,} coalesced misses)",
        f"  warming    {w['rounds']:,} rounds ({w['failed_rounds']:,} failed), {w['entries_loaded']:,} entries loaded, "
        f"every {w['interval_s']:g} s"
        if w["interval_s"]
        else f"  warming    {w['rounds']:,} rounds, periodic warming off",
    ]
    if w.get("last"):
        last = w["last"]
        lines.append(
            f"  last warm  {_age(last['at'])} ({last['trigger']}): {last['planned']:,} planned, "
            f"{last['loaded']:,} entries loaded" + (f", error: {last['error']}" if last.get("error") else "")
        )
    if snap.get("error"):
        lines.append(f"  last error {snap['error']}")
    if snap.get("most_accessed"):
        lines.append("  most accessed:")
        for a in snap["most_accessed"]:
            lines.append(f"    {a['hits']:>8,} hits  {a['key']}")
    return "\n".join(lines)


def cmd_stats(args: argparse.Namespace) -> int:
    snap = cache_service.published_stats(open_ops())
    if args.json:
        print(json.dumps(snap, indent=2, sort_keys=True))
    else:
        print(format_stats(snap))
    return 0


def _wait_handled(ops, rid: str, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        snap = cache_service.published_stats(ops)
        if snap and snap.get("handled_request") == rid:
            return True
        time.sleep(0.2)
    return False


def _send(action: str, wait_s: float) -> int:
    ops = open_ops()
    snap = cache_service.published_stats(ops)
    rid = cache_service.request(ops, action, actor=actor())
    alive = snap is not None and time.time() - snap["at"] <= STALE_AFTER_S
    if not wait_s:
        where = f"console process {snap['pid']}" if alive and snap is not None else "the console when it next runs"
        print(f"asked {where} to {action} its cache (request {rid})")
        return 0
    if _wait_handled(ops, rid, wait_s):
        print(f"the console {'warmed' if action == 'warm' else 'cleared'} its cache (request {rid})")
        print(format_stats(cache_service.published_stats(ops)))
        return 0
    print(f"error: no console handled request {rid} within {wait_s:g} s: is the console running (make run)?",
          file=sys.stderr)  # fmt: skip
    return 2


def cmd_warm(args: argparse.Namespace) -> int:
    if args.interval is not None:
        ops = open_ops()
        seconds = cache_service.set_warm_interval(ops, args.interval, actor=actor())
        print("periodic warming off" if seconds == 0 else f"the console warms its cache every {seconds:g} s")
        return 0
    if args.plan:
        return _print_plan(args.top)
    return _send("warm", args.wait)


def cmd_clear(args: argparse.Namespace) -> int:
    return _send("clear", args.wait)


def _print_plan(top: int) -> int:
    settings = load_settings().ensure_dirs()
    graph = GraphStore.open(settings)
    try:
        warmer = CacheWarmer(CachedGraph(graph, HypothesisCache()), ops=open_ops_db(settings))
        plan = warmer.plan()
    finally:
        graph.close()
    print(f"a warming round now would load {len(plan.entity_ids):,} of {plan.candidates:,} candidate entities "
          f"(signals: {', '.join(f'{k} {v:,}' for k, v in plan.signal_counts.items())}; this process has no "
          "access log of its own, the console's adds its recent reads)")  # fmt: skip
    for eid in plan.entity_ids[: max(0, top)]:
        print(f"  {plan.scores[eid]:7.3f}  {eid}")
    return 0


def cmd_bench_store(args: argparse.Namespace) -> int:
    def progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)

    results = run_store_bench(args.entities, growth=args.growth, repeats=args.repeats, row_sample=args.row_sample,
                              progress=progress)  # fmt: skip
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_report(results))
    return 0
