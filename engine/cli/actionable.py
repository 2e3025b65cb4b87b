"""`python -m engine actionable --since DATE`: the actionable feed on the command line.

Lists the entities that became actionable in the window (when, entity, template, country, system, config,
best hypothesis, the newest accepting evidence's link and excerpt), or with ``--left`` the ones that left the
feed and why. ``--format table`` (default, aligned text), ``csv`` (the same file the console's download gives)
or ``json`` (everything, the accepting evidence included); ``--output FILE`` writes it instead of printing.
Everything is engine.production.feed; an unknown template, category or country, or a time that is not one,
is one line naming what is valid (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.cli.args import output_path
from engine.cli.common import stores
from engine.core.errors import ConfigError
from engine.core.settings import load_settings
from engine.production.feed import (
    FEED_COLUMNS,
    LEFT_COLUMNS,
    Feed,
    FeedFilter,
    feed_rows,
    left_rows,
    load_feed,
    parse_time,
    to_csv,
)

FORMATS = ("table", "csv", "json")
#: the columns the table prints (the CSV and JSON carry all)
TABLE_COLUMNS = (
    "became_actionable", "entity", "template", "country", "system", "config", "best_hypothesis", "evidence_excerpt",
)  # fmt: skip
LEFT_TABLE_COLUMNS = ("left", "entity", "template", "country", "reason")
#: widest a table cell prints (the rest is cut with "…"; csv and json keep everything)
CELL_CHARS = 60


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "actionable",
        help="entities that became actionable (when, where, on what evidence), or that left the feed (--left)",
        description=(
            "The actionable feed: entities whose live runs made them actionable in the window, on which system "
            "and config, with the accepting evidence; --left lists those that stopped being actionable (a later "
            "live run that was not, or a restored graph) with the reason. Times are UTC unless they carry an "
            "offset; a bare --until date includes that day."
        ),
    )
    p.add_argument("--since", required=True, help="from this date or ISO time, e.g. 2026-12-01 or 2026-12-01T09:30")
    p.add_argument("--until", default=None, help="up to this date (included) or ISO time (excluded); default now")
    p.add_argument("--template", default=None, help="only entities of this template id")
    p.add_argument("--category", default=None, help="only entities with an ACCEPT in this pattern category")
    p.add_argument("--country", default=None, help="only entities of this country")
    p.add_argument("--left", action="store_true", help="list the entities that left the feed, with the reason")
    p.add_argument("--format", choices=FORMATS, default="table", help="table (default), csv or json")
    p.add_argument(
        "-o",
        "--output",
        default="-",
        type=output_path("--output", stdout_ok=True),
        help="file to write (its directory must exist); '-' (default) prints to stdout",
    )
    p.set_defaults(func=cmd_actionable)


def feed_filter(args: argparse.Namespace) -> FeedFilter:
    """The filter of the command line; a time that is not one fails before any store is opened."""
    return FeedFilter(
        since=parse_time(args.since, "--since"),
        until=None if args.until is None else parse_time(args.until, "--until", end=True),
        template=args.template,
        category=args.category,
        country=args.country,
    )


def _short(value: Any, limit: int | None = CELL_CHARS) -> str:
    text = "—" if value is None or value == "" else " ".join(str(value).split())
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Aligned text: a header, then one line per row (line breaks as spaces; cells cut to CELL_CHARS but the
    last, which holds what the listing is for: the excerpt, or the reason an entity left)."""
    last = len(columns) - 1
    cells = [[_short(r.get(c), None if i == last else CELL_CHARS) for i, c in enumerate(columns)] for r in rows]
    heads = [c.replace("_", " ") for c in columns]
    widths = [max([len(h)] + [len(line[i]) for line in cells]) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines) + "\n"


def render(feed: Feed, fmt: str, *, left: bool) -> str:
    """The feed (or its departures) in ``fmt``: table, csv or json."""
    if fmt == "json":
        items = [d.to_dict() for d in feed.departures] if left else [r.to_dict() for r in feed.rows]
        return json.dumps(items, indent=2, ensure_ascii=False) + "\n"
    rows = left_rows(feed) if left else feed_rows(feed)
    if fmt == "csv":
        return to_csv(rows, LEFT_COLUMNS if left else FEED_COLUMNS)
    return table(rows, LEFT_TABLE_COLUMNS if left else TABLE_COLUMNS)


def summary(feed: Feed, *, left: bool) -> str:
    n = len(feed.departures) if left else len(feed.rows)
    what = "left the feed" if left else "became actionable"
    return f"{n:,} entit{'y' if n == 1 else 'ies'} {what} in the window ({feed.live_runs:,} live runs read)"


def cmd_actionable(args: argparse.Namespace) -> int:
    f = feed_filter(args)
    settings = load_settings()
    with stores(settings) as (graph, ops):
        feed = load_feed(graph, ops, f)
    text = render(feed, args.format, left=args.left)
    if args.output == "-":
        sys.stdout.write(text)
        if args.format == "table":
            print(summary(feed, left=args.left))
        return 0
    out = Path(args.output).expanduser()  # its directory exists: checked while parsing
    try:
        out.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot write {out} ({problem}): choose another --output") from None
    print(f"wrote {out}: {summary(feed, left=args.left)}")
    return 0
