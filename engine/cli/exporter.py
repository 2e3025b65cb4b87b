"""`python -m engine exporter` and `bench exporter`: the Prometheus endpoint and what one scrape costs.

A thin adapter over engine.notify.exporter (serve ``/metrics`` from the data
dir's ops DB until Ctrl-C or SIGTERM) and engine.bench.exporter.
"""

from __future__ import annotations

import argparse
import signal
import threading

from engine.bench.exporter import bench_exporter
from engine.cli.args import SEED, whole
from engine.core.settings import load_settings
from engine.notify.exporter import DEFAULT_HOST, DEFAULT_PORT, serve

#: how often the serving command looks whether it was asked to stop (Ctrl-C, SIGTERM)
STOP_POLL_S = 0.5
#: the most synthetic events `bench exporter` records
MAX_BENCH_EVENTS = 5_000_000
DEFAULT_BENCH_EVENTS = 100_000

PORT = whole(0, 65535)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "exporter",
        help="serve /metrics for Prometheus from the ops DB (runs, cost, errors, latency, alerts, ...) until Ctrl-C",
        description=(
            "Serves the operations database's figures at http://HOST:PORT/metrics in the Prometheus text format, "
            "read at each scrape: metric events as counters and a latency histogram by system, stage and shadow, "
            "alert states, the latest rollout's state and progress, tuning studies' progress and the console "
            "cache's hit ratio. discovery_opsdb_up is 0 (with the reason) while the ops DB cannot be read. "
            "Listens on 127.0.0.1 unless told otherwise."
        ),
    )
    p.add_argument(
        "--host", default=DEFAULT_HOST, metavar="HOST", help=f"address to listen on (default {DEFAULT_HOST})"
    )
    p.add_argument(
        "--port", type=PORT, default=DEFAULT_PORT, metavar="PORT", help=f"port (default {DEFAULT_PORT}; 0: a free one)"
    )
    p.set_defaults(func=cmd_exporter)


def register_bench(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser(
        "exporter",
        help="the cost of one /metrics scrape at N metric events (median time, response size), in a throwaway dir",
        description=(
            "Records N synthetic metric events in a temporary data dir (yours is not touched), serves /metrics on "
            "127.0.0.1 and prints the median time of the first scrape of a fresh exporter, of a scrape with no new "
            "events and of one after 1,000 new events, with the response size and series count."
        ),
    )
    p.add_argument(
        "--events",
        type=whole(1, MAX_BENCH_EVENTS),
        default=DEFAULT_BENCH_EVENTS,
        metavar="N",
        help=f"metric events to record (default {DEFAULT_BENCH_EVENTS})",
    )
    p.add_argument("--seed", type=SEED, default=11, metavar="S", help="seed of the synthetic figures (default 11)")
    p.set_defaults(func=cmd_bench_exporter)


def cmd_exporter(args: argparse.Namespace) -> int:
    settings = load_settings()
    server = serve(settings, host=args.host, port=args.port)
    print(f"exporter listening on {server.url}", flush=True)
    print(f"operations database {settings.ops_db_path}; Ctrl-C stops it", flush=True)
    # Explicit handlers, not KeyboardInterrupt: a process started in the background by a non-interactive shell
    # inherits SIGINT ignored, and would never see Ctrl-C's signal
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        while not stopping.wait(STOP_POLL_S):
            pass
    finally:
        server.stop()
    print("exporter stopped", flush=True)
    return 0


def cmd_bench_exporter(args: argparse.Namespace) -> int:
    bench_exporter(args.events, args.seed)
    return 0
