"""`python -m engine evaluator` and `bench scale`: the local HTTP evaluator and the benchmark that runs against it.

A thin adapter over engine.discovery.evaluator_server (serve the simulated world
behind the HTTP evidence contract until Ctrl-C) and engine.bench.scale (many
entities in flight against it).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading

from engine.bench.scale import DEFAULT_CONCURRENCY, DEFAULT_ENTITIES, DEFAULT_ROLLOUT_ENTITIES, run_scale_bench
from engine.cli.args import ENTITIES, MAX_ENTITIES, SEED, number, whole
from engine.discovery.evaluator_server import EvaluatorServer
from engine.discovery.limits import MAX_CONCURRENCY

DEFAULT_PORT = 8765
#: how often the serving command looks whether it was asked to stop (Ctrl-C, SIGTERM)
STOP_POLL_S = 0.5
DEFAULT_WORLD_SEED = 1
DEFAULT_CATALOGUE_SEED = 7
#: the largest latency factor the flags take (1 = the world's real latencies; above slows it further)
MAX_LATENCY_FACTOR = 100.0

PORT = whole(0, 65535)
CONCURRENCY = whole(1, MAX_CONCURRENCY)


def concurrency_list(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated concurrencies from 1 to MAX_CONCURRENCY, kept in the order given."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"got {text!r} (allowed: concurrencies like 1,8,32,128)")
    values = tuple(CONCURRENCY(p) for p in parts)
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"got {text!r}: each concurrency once (e.g. 1,8,32,128)")
    return values


concurrency_list.__name__ = "concurrency list"


def _world_flags(p: argparse.ArgumentParser, latency_help: str, *, zero_ok: bool) -> None:
    p.add_argument(
        "--world-seed",
        type=SEED,
        default=DEFAULT_WORLD_SEED,
        metavar="W",
        help=f"simulated world seed (default {DEFAULT_WORLD_SEED})",
    )
    p.add_argument(
        "--latency-factor",
        type=number(0.0, MAX_LATENCY_FACTOR, low_open=not zero_ok),
        default=0.01,
        metavar="F",
        help=latency_help,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluator",
        help="serve the simulated world as a local HTTP evaluator (the evidence contract) until Ctrl-C",
        description=(
            "Answers hops posted by the HTTP evidence source (--evaluator-url) from the simulated world, as a real "
            "evaluator would: the same decisions and costs as the world in process, each answer after the hop's "
            "latency times --latency-factor. GET /health shows requests and peak in flight."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", metavar="HOST", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=PORT, default=DEFAULT_PORT, metavar="PORT", help=f"port (default {DEFAULT_PORT}; 0: a free one)"
    )
    _world_flags(
        p,
        "sleep each hop's drawn latency times F before answering (default 0.01; 1 = real time, 0 = none)",
        zero_ok=True,
    )
    p.set_defaults(func=cmd_evaluator)


def register_bench(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser(
        "scale",
        help="many entities in flight against a local HTTP evaluator: speed-up per concurrency, projected full pass",
        description=(
            "Starts a local HTTP evaluator on 127.0.0.1 that answers from the simulated world and sleeps each hop's "
            "latency times --latency-factor, runs the same N catalogue entities (new system, shadow, nothing stored) "
            "through the HTTP evidence source at each concurrency, and prints wall time, hops/s, speed-up, the "
            "evaluator's peak in flight, whether every entity's result is the same as at the first concurrency, and "
            "the projected time of one 3,400-entity pass at the world's real latencies. Then the rollout runner's "
            "paired entities/s in virtual time (a throwaway data dir; yours is not touched) and the peak RSS."
        ),
    )
    p.add_argument(
        "--entities",
        type=ENTITIES,
        default=DEFAULT_ENTITIES,
        metavar="N",
        help=f"entities per concurrency (default {DEFAULT_ENTITIES})",
    )
    p.add_argument(
        "--concurrency",
        type=concurrency_list,
        default=DEFAULT_CONCURRENCY,
        metavar="C,C,...",
        help="concurrencies to run, the first is the baseline (default 1,8,32,128)",
    )
    _world_flags(p, "sleep each hop's latency times F (default 0.01)", zero_ok=False)
    p.add_argument("--seed", type=SEED, default=DEFAULT_CATALOGUE_SEED, metavar="S", help="catalogue seed (default 7)")
    p.add_argument(
        "--rollout-entities",
        type=whole(0, MAX_ENTITIES),
        default=DEFAULT_ROLLOUT_ENTITIES,
        metavar="N",
        help=f"entities of the rollout runner measurement (default {DEFAULT_ROLLOUT_ENTITIES}; 0 skips it)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_bench_scale)


def cmd_evaluator(args: argparse.Namespace) -> int:
    server = EvaluatorServer(
        world_seed=args.world_seed, latency_factor=args.latency_factor, host=args.host, port=args.port
    ).start()
    print(f"evaluator listening on {server.url}", flush=True)
    print(
        f"simulated world seed {args.world_seed}, latencies x {args.latency_factor:g}; use it with "
        f"--evaluator-url {server.url}; Ctrl-C stops it",
        flush=True,
    )
    # Ctrl-C and a plain kill both stop it cleanly. Explicit handlers, not KeyboardInterrupt: a process started
    # in the background by a non-interactive shell inherits SIGINT ignored, and would never see Ctrl-C's signal
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        while not stopping.wait(STOP_POLL_S):
            pass
    finally:
        server.stop()
    stats = server.stats()
    print(f"evaluator stopped after {stats['requests']:,} hops (peak {stats['peak_in_flight']} in flight)")
    return 0


def cmd_bench_scale(args: argparse.Namespace) -> int:
    figures = run_scale_bench(
        args.entities,
        args.concurrency,
        latency_factor=args.latency_factor,
        world_seed=args.world_seed,
        seed=args.seed,
        rollout_entities=args.rollout_entities,
        echo=(lambda line: None) if args.json else print,
    )
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0 if figures["ok"] else 1
