"""`python -m engine config show|history|diff A B`: the Configs page on the command line.

``show`` prints the live config (where it came from, the parameters that differ from the defaults, or
all of them with ``--all``), the handed-over candidate and its diff against live, and the config files
saved in the data dir. ``history`` lists every config that became live, newest first. ``diff A B``
prints the parameters that differ from A to B, where each is a ParameterConfig file or one of
``live``, ``candidate``, ``defaults``. Everything reads engine.core.configs; a bad file is one line
(``error: ...``, exit 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.cli.args import whole
from engine.cli.common import open_ops
from engine.core.configs import (
    HISTORY_LIMIT,
    ParamChange,
    candidate_config,
    candidate_info,
    candidate_origin,
    config_diff,
    config_label,
    configs_dir,
    describe_vs_live,
    live_config,
    live_config_history,
    live_config_info,
    live_origin,
    saved_configs,
    value_text,
    when,
)
from engine.core.errors import ConfigError
from engine.core.params import PARAMETER_SPECS, ParameterConfig
from engine.core.settings import load_settings
from engine.store.opsdb import OpsDB

#: names ``config diff`` accepts besides a file path (a name wins over a file of that name)
NAMED_CONFIGS = ("live", "candidate", "defaults")
#: bounds of ``config history --limit``
HISTORY_ROWS = whole(1, HISTORY_LIMIT)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "config",
        help="the live config, the handed-over candidate, past live configs and saved config files",
        description=(
            "What production runs (the live config), what the next rollout would try (the candidate), "
            "what was live before, and the ParameterConfig files saved in <data dir>/configs."
        ),
    )
    sub = p.add_subparsers(dest="config_command", metavar="ACTION")
    sub.required = True

    s = sub.add_parser("show", help="the live config, the candidate with its diff against live, saved files")
    s.add_argument("--all", action="store_true", help="print every parameter of the live config, not only changed")
    s.add_argument("--json", action="store_true", help="print the same as JSON")
    s.set_defaults(func=cmd_show)

    h = sub.add_parser("history", help="every config that became live, newest first (when, run, who)")
    h.add_argument("--limit", type=HISTORY_ROWS, default=50, metavar="N", help="list at most N (1..500, default 50)")
    h.add_argument("--json", action="store_true", help="print the entries as JSON")
    h.set_defaults(func=cmd_history)

    d = sub.add_parser("diff", help="the parameters that differ from config A to config B")
    d.add_argument("a", metavar="A", help="a ParameterConfig file, or live, candidate or defaults")
    d.add_argument("b", metavar="B", help="a ParameterConfig file, or live, candidate or defaults")
    d.add_argument("--json", action="store_true", help="print the changes as JSON")
    d.set_defaults(func=cmd_diff)


# --------------------------------------------------------------------------- text


def diff_lines(changes: list[ParamChange]) -> list[str]:
    """One aligned line per changed parameter: name, group, from -> to, default and bounds."""
    if not changes:
        return ["  no parameter differs"]
    width = max(len(c.name) for c in changes)
    return [
        f"  {c.name:<{width}}  {c.group:<10}  {value_text(c.old)} -> {value_text(c.new)}"
        f"  (default {value_text(c.default)}, bounds {value_text(c.low)} to {value_text(c.high)})"
        for c in changes
    ]


def param_lines(config: ParameterConfig, *, every: bool) -> list[str]:
    """The parameters of ``config`` by group (only those off their default unless ``every``)."""
    specs = [s for s in PARAMETER_SPECS if every or getattr(config, s.name) != s.default]
    if not specs:
        return ["  every parameter at its default"]
    width = max(len(s.name) for s in specs)
    return [
        f"  {s.group:<10}  {s.name:<{width}}  {value_text(getattr(config, s.name))}"
        f"  (default {value_text(s.default)}, bounds {value_text(s.low)} to {value_text(s.high)})"
        for s in specs
    ]


def _changes_json(changes: list[ParamChange]) -> list[dict[str, Any]]:
    return [c.to_dict() for c in changes]


# --------------------------------------------------------------------------- commands


def cmd_show(args: argparse.Namespace) -> int:
    settings = load_settings()
    ops = open_ops(settings)
    live, info = live_config(ops), live_config_info(ops)
    cand, cand_info = candidate_config(ops), candidate_info(ops)
    saved = saved_configs(settings)
    if args.json:
        out = {
            "live": {"hash": live.hash(), "origin": info, "params": live.to_dict()},
            "candidate": None
            if cand is None or not cand_info
            else {
                "hash": cand.hash(),
                "origin": {k: v for k, v in cand_info.items() if k != "params"},
                "params": cand.to_dict(),
                "diff_vs_live": _changes_json(config_diff(live, cand)),
            },
            "saved": [
                {"file": str(s.path), "hash": s.hash, "problem": s.problem, "vs_live": _relation(s.config, live)}
                for s in saved
            ],
        }
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    print(f"live config {live.hash()}: {live_origin(info)}")
    print(*param_lines(live, every=args.all), sep="\n")
    print()
    if cand is None or not cand_info:
        print("candidate: none handed over (a rollout without --config-file runs the live config)")
    else:
        print(f"candidate {cand.hash()}: {candidate_origin(cand_info)}")
        print(f"  {describe_vs_live(cand, live)}")
        if cand == live:
            print("  a rollout of it would compare the live config with itself: hand over another config")
        print(*diff_lines(config_diff(live, cand)), sep="\n")
    print()
    print(f"saved config files in {configs_dir(settings)}: {len(saved)}")
    for s in saved:
        print(f"  {s.name}  {s.hash or 'not a valid config'}  {_relation(s.config, live) or s.problem}")
    return 0


def _relation(config: ParameterConfig | None, live: ParameterConfig) -> str | None:
    return describe_vs_live(config, live) if config is not None else None


def cmd_history(args: argparse.Namespace) -> int:
    ops = open_ops()
    live = live_config(ops)
    entries = live_config_history(ops, int(args.limit))
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, sort_keys=True))
        return 0
    if not entries:
        print("no config has become live yet: production runs the defaults")
        return 0
    for e in entries:
        run = f"run {e.run_id}" if e.run_id is not None else "run —"
        relation = describe_vs_live(e.config, live) if e.config is not None else "values not recorded"
        print(
            f"{when(e.at)}  {e.hash}{' (live now)' if e.current else ''}  {run}  by {e.actor or '—'}"
            f"  replaced {config_label(e.replaced)}  · {relation}"
        )
    return 0


def resolve(name: str, ops: OpsDB | None) -> ParameterConfig:
    """A config named on the command line: live, candidate, defaults or a ParameterConfig file."""
    if name == "defaults":
        return ParameterConfig()
    if name in ("live", "candidate") and ops is not None:
        if name == "live":
            return live_config(ops)
        cand = candidate_config(ops)
        if cand is None:
            raise ConfigError("no candidate handed over: name a config file, live or defaults instead")
        return cand
    return ParameterConfig.load(Path(name))


def cmd_diff(args: argparse.Namespace) -> int:
    needs_ops = any(n in ("live", "candidate") for n in (args.a, args.b))
    ops = open_ops() if needs_ops else None
    a, b = resolve(args.a, ops), resolve(args.b, ops)
    changes = config_diff(a, b)
    if args.json:
        print(json.dumps({"a": a.hash(), "b": b.hash(), "changes": _changes_json(changes)}, indent=2))
        return 0
    print(f"{args.a} ({a.hash()}) -> {args.b} ({b.hash()}): {len(changes)} parameter(s) differ")
    print(*diff_lines(changes), sep="\n")
    return 0
