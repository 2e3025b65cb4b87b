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

from engine.catalogue.generator import DEMO_ENTITIES, DEMO_SEED, seed_catalogue
from engine.catalogue.importer import import_file
from engine.catalogue.templates import load_templates
from engine.cli.args import ENTITIES, ROWS, SEED
from engine.cli.common import actor, open_graph, open_ops
from engine.core.settings import Settings, load_settings
from engine.discovery.demo import seed_demo_metrics
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


def audit(settings: Settings, action: str, target: str, details: dict) -> None:
    """Record the change in the OpsDB of the data dir."""
    open_ops(settings).audit(actor(), action, target, details)


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
    with open_graph(settings) as graph:
        report = seed_catalogue(graph, args.entities, args.seed, templates)
    print(report.summary())
    audit(settings, "seed", f"catalogue:{args.seed}", {**asdict(report), "seed": args.seed})
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    settings = load_settings().ensure_dirs()
    templates = load_templates(args.templates)
    with open_graph(settings) as graph:
        report = import_file(graph, args.file, templates, replace=args.replace)
    print(report.summary(args.file.name))
    audit(settings, "import", str(args.file.resolve()), {**asdict(report), "replace": args.replace})
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
    with demo_lock(settings), open_graph(settings) as graph:
        present = graph.count_entities()
        if args.ensure and present:
            print(seed_demo_metrics(settings, graph, catalogue_only=True).summary())  # monitoring demo data
            print(f"the graph already holds {present:,} entities: demo catalogue not loaded again")
            return 0
        report = seed_catalogue(graph, DEMO_ENTITIES, DEMO_SEED, templates)
        print(seed_demo_metrics(settings, graph).summary())  # monitoring: a day of real runs if none yet
    print(f"demo catalogue: {report.summary()}")
    audit(settings, "seed", f"catalogue:{DEMO_SEED}", {**asdict(report), "seed": DEMO_SEED, "demo": True})
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
