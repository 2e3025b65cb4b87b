"""What every command module shares: the stores of the data dir and who is acting.

Each command opens its stores through these helpers, so the data dir always comes
from the environment (``load_settings``) and every audit row a command writes
names the same actor.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.cli.args import TIMEOUT_S, number, whole
from engine.core.access import Actor
from engine.core.errors import ConfigError
from engine.core.settings import Settings, load_settings
from engine.discovery.limits import MAX_CONCURRENCY, MAX_IN_FLIGHT, RunLimits
from engine.discovery.runs import DEFAULT_WORLD_SEED, SOURCE_KINDS, EvidenceSpec
from engine.jobs.executor import MAX_WORKERS, SCHEDULER_ENV, ExecutorSpec, executor_spec
from engine.jobs.queue import freeing_frozen_workers
from engine.store.access import cli_actor
from engine.store.graph import GraphStore
from engine.store.opsdb import OpsDB, open_ops_db

#: the highest --max-hops-per-s accepted (a million hops a second is no limit at all)
MAX_HOPS_PER_S = 1_000_000.0


def os_user() -> str:
    """The OS user running this command (``unknown`` in containers that have none)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


def actor(ops: OpsDB | None = None) -> Actor:
    """Who runs this command: ``cli:<os user>``, with its role from the data dir's role map.

    While the map is empty (a fresh data dir) the command line is admin, so the first admin can be
    named. Whoever has shell access to the data dir can bypass this: roles bind scripts, not root.
    """
    return cli_actor(ops if ops is not None else open_ops(), os_user())


def open_ops(settings: Settings | None = None) -> OpsDB:
    """The OpsDB of ``settings`` (default: the environment's data dir), its folders created.

    A database that a stopped worker keeps locked is freed (the worker killed) and opened once more, so
    `worker --reap` and `rollout rollback` work whatever point a worker was frozen at.
    """
    settings = (settings or load_settings()).ensure_dirs()
    return freeing_frozen_workers(settings.ops_db_path, lambda: open_ops_db(settings))


@contextmanager
def open_graph(settings: Settings) -> Iterator[GraphStore]:
    """The GraphStore of ``settings``, closed when the block ends."""
    store = GraphStore.open(settings)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def stores(settings: Settings) -> Iterator[tuple[GraphStore, OpsDB]]:
    """(graph, ops) of ``settings``; the graph is closed when the block ends."""
    ops = open_ops(settings)
    with open_graph(settings) as graph:
        yield graph, ops


# --------------------------------------------------------------------------- entities in flight and evaluator limits


def add_evaluator_timeout(p: argparse.ArgumentParser, *, when: str = "") -> None:
    """``--evaluator-timeout S``: the wall-clock deadline of one whole hop (``when``: a help prefix)."""
    p.add_argument(
        "--evaluator-timeout",
        type=TIMEOUT_S,
        default=30.0,
        metavar="S",
        help=f"{when}seconds the whole hop may take, answer included; above 0 and at most 3600 (default 30)",
    )


def add_evidence_options(p: argparse.ArgumentParser, *, who: str) -> None:
    """``--evidence``, ``--evaluator-url``, ``--evaluator-timeout`` and ``--replay`` of a command that starts
    work on an evidence source (``who``: what meets the evidence, for the help); ``evidence_from_args`` reads them."""
    p.add_argument(
        "--evidence",
        choices=SOURCE_KINDS,
        default=None,
        help=f"start: the evidence {who} meet: world (default), replay (--replay FILE) or http (--evaluator-url URL)",
    )
    p.add_argument("--evaluator-url", metavar="URL", help="start: your HTTP evaluator (implies --evidence http)")
    add_evaluator_timeout(p, when="start: ")
    p.add_argument(
        "--replay", type=Path, metavar="FILE", help="start: recorded evidence (JSONL; implies --evidence replay)"
    )


def evidence_from_args(args: argparse.Namespace) -> EvidenceSpec:
    """The evidence source the flags ask for (--evaluator-url implies http, --replay implies replay)."""
    kind = args.evidence or ("http" if args.evaluator_url else "replay" if args.replay else "world")
    if kind != "http" and args.evaluator_url:
        raise ConfigError(f"--evaluator-url is for --evidence http, not {kind}: drop one of them")
    if kind != "replay" and args.replay:
        raise ConfigError(f"--replay is for --evidence replay, not {kind}: drop one of them")
    if kind == "http":
        return EvidenceSpec(kind="http", url=args.evaluator_url, timeout_s=args.evaluator_timeout)
    if kind == "replay":
        return EvidenceSpec(kind="replay", replay_path=args.replay)
    return EvidenceSpec(world_seed=DEFAULT_WORLD_SEED if args.world_seed is None else args.world_seed)


def add_limit_options(p: argparse.ArgumentParser, *, concurrency_default: str) -> None:
    """``--concurrency``, ``--max-hops-per-s`` and ``--max-in-flight`` (engine.discovery.limits)."""
    p.add_argument(
        "--concurrency",
        type=whole(1, MAX_CONCURRENCY),
        default=None,
        metavar="N",
        help=f"entities in flight at once, each entity's hops in order; 1 to {MAX_CONCURRENCY} "
        f"(default {concurrency_default}); answers are the same at any value",
    )
    p.add_argument(
        "--max-hops-per-s",
        type=number(0.0, MAX_HOPS_PER_S, low_open=True),
        default=None,
        metavar="R",
        help="at most R hops start per second against the evaluator (default: no limit)",
    )
    p.add_argument(
        "--max-in-flight",
        type=whole(1, MAX_IN_FLIGHT),
        default=None,
        metavar="N",
        help="at most N evaluator requests open at once (default: no limit beyond --concurrency)",
    )


def source_limits(args: argparse.Namespace, concurrency: int = 1) -> RunLimits | None:
    """The evaluator limits the flags ask for (None: neither --max-hops-per-s nor --max-in-flight given)."""
    if args.max_hops_per_s is None and args.max_in_flight is None:
        return None
    return RunLimits(concurrency=concurrency, max_hops_per_s=args.max_hops_per_s, max_in_flight=args.max_in_flight)


def add_executor_options(p: argparse.ArgumentParser, *, units: str) -> None:
    """``--workers N`` and ``--scheduler tcp://host:8786`` (engine.jobs.executor): where ``units`` run."""
    p.add_argument(
        "--workers",
        type=whole(1, MAX_WORKERS),
        default=None,
        metavar="N",
        help=f"{units} at once: N > 1 starts a local Dask cluster of N processes on this machine "
        "(default 1: in this process)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help=f"run the {units} on a running Dask cluster (tcp://host:8786; default ${SCHEDULER_ENV} if set)",
    )


def executor_from_args(args: argparse.Namespace) -> ExecutorSpec:
    """The ExecutorSpec of ``--workers``/``--scheduler`` (and $DISCOVERY_DASK_SCHEDULER); one-line ConfigError."""
    return executor_spec(args.workers, args.scheduler)
