"""`python -m engine seed | import | stats | demo`: the catalogue from the command line.

A thin adapter over engine.catalogue.generator and engine.catalogue.importer: open the store of
the data dir (``DISCOVERY_DATA_DIR`` / ``FALKORDB_URL``), call one function,
print what happened and how long it took, audit the change in the OpsDB.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from engine.catalogue.generator import DEMO_ENTITIES, DEMO_SEED, seed_entities
from engine.catalogue.importer import import_catalogue
from engine.catalogue.templates import load_templates
from engine.cli.args import ENTITIES, ROWS, SEED
from engine.cli.common import actor, open_graph, open_ops
from engine.core.access import PermissionDenied
from engine.core.settings import Settings, load_settings
from engine.discovery.demo import load_demo
from engine.store.graph import GraphStats

#: held while `demo --ensure` checks and seeds, so two simultaneous starts seed once
DEMO_LOCK_NAME = "demo-seed.lock"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "seed",
        help="generate N plausible sports organisations from a seed and upsert them with their hypotheses",
        description=(
            "Generates a deterministic catalogue (same --entities and --seed, same entities; the first 100 of "
            "3,400 are the 100 of --entities 100) and upserts it with one hypothesis per template pattern. "
            "Re-seeding does not duplicate anything and keeps the state of existing hypotheses. "
            "Prints how many were written and how long it took."
        ),
    )
    p.add_argument(
        "--entities",
        type=ENTITIES,
        default=DEMO_ENTITIES,
        metavar="N",
        help=f"how many entities, 1 to 1,000,000 (default {DEMO_ENTITIES})",
    )
    p.add_argument("--seed", type=SEED, default=DEMO_SEED, metavar="S", help=f"catalogue seed (default {DEMO_SEED})")
    _templates_option(p)
    p.set_defaults(func=cmd_seed)

    p = subparsers.add_parser(
        "import",
        help="import your own entities from a CSV or JSON file (nothing is written if any row is bad)",
        description=(
            "Columns (CSV header, or keys of the objects of a JSON list): name (required), id (a slug; default "
            "the slug of the name), sport, country, type (club, federation, league, agency; default club), "
            "tier (1-3; default 2), cluster (default <country>-<sport>), template (default from type and tier). "
            "Every row is validated first; any problem rejects the whole file and names each row."
        ),
    )
    p.add_argument("file", type=Path, metavar="FILE", help="a .csv or .json file")
    p.add_argument(
        "--replace",
        action="store_true",
        help="overwrite entities whose id is already in the graph (their hypotheses keep their state)",
    )
    _templates_option(p)
    p.set_defaults(func=cmd_import)

    p = subparsers.add_parser(
        "stats",
        help="entity and hypothesis counts by status, template, category and top clusters",
        description="Counts of the whole graph of the data dir.",
    )
    p.add_argument("--top", type=ROWS, default=10, metavar="K", help="how many clusters to list (default 10)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(func=cmd_stats)

    p = subparsers.add_parser(
        "demo",
        help="load the demo catalogue (3,400 entities, seed 7); --ensure only if the graph is empty",
        description=(
            f"Seeds the demo catalogue ({DEMO_ENTITIES:,} entities, seed {DEMO_SEED}). With --ensure it does so "
            "only when the graph holds no entities, so `make run` can call it on every start. A file lock in the "
            "data dir makes simultaneous starts seed once."
        ),
    )
    p.add_argument("--ensure", action="store_true", help="seed only if the graph has no entities")
    _templates_option(p)
    p.set_defaults(func=cmd_demo)


def _templates_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--templates",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory of template JSON files (default: the shipped data/templates)",
    )


# --------------------------------------------------------------------------- helpers


@contextmanager
def demo_lock(settings: Settings) -> Iterator[None]:
    """Exclusive flock on a file in the data dir; blocks until the holder is done."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.data_dir / DEMO_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# --------------------------------------------------------------------------- commands


def cmd_seed(args: argparse.Namespace) -> int:
    settings = load_settings().ensure_dirs()
    templates = load_templates(args.templates)
    ops = open_ops(settings)
    with open_graph(settings) as graph:
        report = seed_entities(ops, graph, args.entities, args.seed, templates, actor=actor(ops))
    print(report.summary())
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    settings = load_settings().ensure_dirs()
    templates = load_templates(args.templates)
    ops = open_ops(settings)
    with open_graph(settings) as graph:
        report = import_catalogue(ops, graph, args.file, templates, actor=actor(ops), replace=args.replace)
    print(report.summary(args.file.name))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    settings = load_settings().ensure_dirs()
    with open_graph(settings) as graph:
        stats = graph.stats()
    if args.json:
        print(json.dumps(asdict(stats), indent=2, sort_keys=True))
    else:
        print(format_stats(stats, top=args.top, where=settings.store_label))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    settings = load_settings().ensure_dirs()
    templates = load_templates(args.templates)
    ops = open_ops(settings)
    with demo_lock(settings), open_graph(settings) as graph:
        try:
            done = load_demo(settings, graph, ops, templates, actor=actor(ops), ensure=args.ensure)
        except PermissionDenied as exc:
            present = graph.count_entities()
            if not (args.ensure and present):
                raise
            # `make run` must open the console on a data dir that has data, whoever runs it
            print(f"the graph already holds {present:,} entities: demo not loaded ({exc})")
            return 0
    print(done.metrics.summary())  # monitoring: a day of real runs if none yet
    if done.catalogue is None:
        print(f"the graph already holds {done.present:,} entities: demo catalogue not loaded again")
    else:
        print(f"demo catalogue: {done.catalogue.summary()}")
    return 0


# --------------------------------------------------------------------------- formatting


def format_stats(stats: GraphStats, top: int = 10, where: str = "") -> str:
    lines = [f"graph: {where}"] if where else []
    lines += [f"entities    {stats.entities:>9,}", f"hypotheses  {stats.hypotheses:>9,}"]

    def section(title: str, counts: dict[str, int], limit: int | None = None) -> None:
        items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = items[:limit] if limit is not None else items
        lines.append("")
        lines.append(title + (f" (top {len(shown)} of {len(items)})" if limit is not None and items else ""))
        if not items:
            lines.append("  (none)")
        width = max((len(k) for k, _ in shown), default=0)
        for key, count in shown:
            lines.append(f"  {key:<{width}}  {count:>7,}")

    section("hypotheses by status", stats.by_status)
    section("entities by template", stats.by_template)
    section("hypotheses by category", stats.by_category)
    section("entities by cluster", stats.by_cluster, limit=max(top, 0))
    return "\n".join(lines)
