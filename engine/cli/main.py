"""`python -m engine ...`: a thin adapter over the library.

Each area of the product contributes its subcommands from its own module
(listed in COMMAND_MODULES), each exposing ``register(subparsers)``; a
registered parser sets ``func=handler`` where ``handler(args) -> int``.
A module may also expose ``register_bench(bench_subparsers)`` to add a
benchmark under ``python -m engine bench NAME``.
Errors an operator can fix (``DiscoveryError``) become one line on stderr
and exit code 2, with any credential in it masked; so does a command line argparse refuses
(engine.cli.args: every numeric flag has a bounded type, and the parser's errors are one line).

``process_main`` is the entry of a ``python -m engine`` process (the CLI and
the worker) and holds what belongs to the process rather than to one command:
umask 077 first (the data dir is private: engine.core.settings), and on the
way out, stopping an embedded FalkorDB server this command had to start when
no one else uses it (engine.store.falkor, "No orphan servers"). ``main`` stays
free of process-wide effects so tests can call it in-process.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from engine.cli.args import OneLineParser
from engine.core.errors import DiscoveryError
from engine.core.secrets import redact
from engine.core.settings import load_settings, make_process_private
from engine.store import falkor

COMMAND_MODULES = (
    "engine.cli.catalogue",  # seed, import, stats, demo
    "engine.cli.store",  # store start|stop|status
    "engine.cli.discovery",  # discover, compare, bench discovery
    "engine.cli.monitoring",  # report, alerts
    "engine.cli.cache",  # cache stats|warm|clear, bench store
    "engine.cli.rollout",  # rollout ..., worker
    "engine.cli.tuning",  # tune ...
    "engine.cli.configs",  # config show|history|diff
    "engine.cli.evaluator",  # evaluator, bench scale
    "engine.cli.exporter",  # exporter (Prometheus /metrics), bench exporter
    "engine.cli.actionable",  # actionable (the actionable feed)
    "engine.cli.notify",  # notify channel|deliveries|silence|send|sender|settings|topics
    "engine.cli.production",  # production start|pause|resume|stop|status|plan, bench production
    "engine.cli.access",  # access list|grant|remove|revoke-sessions|seed
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree: every module of COMMAND_MODULES registers its commands and benchmarks."""
    parser = OneLineParser(
        prog="python -m engine",
        description="Discovery Ops: run, measure and change the hypothesis-driven discovery system.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    bench = sub.add_parser(
        "bench", help="benchmarks that print measured figures and ratios from one run"
    ).add_subparsers(dest="bench", metavar="BENCHMARK")
    bench.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
        if hasattr(module, "register_bench"):
            module.register_bench(bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code (0 ok, 2 an operator-fixable error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # a bad flag or value is a UsageError (one line, exit 2)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try, so a reader that went away is handled below
        return code
    except DiscoveryError as exc:
        print(f"error: {redact(str(exc), load_settings().falkordb_url)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`python -m engine stats | head`): not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE


def process_main(argv: list[str] | None = None) -> int:
    """``main`` as a whole process: private umask before anything is created, unused servers stopped after."""
    make_process_private()
    falkor.autostop_started_servers()
    try:
        return main(argv)
    finally:
        try:
            falkor.release_embedded_servers()
        except KeyboardInterrupt:
            pass  # a second Ctrl-C while stopping: the server finishes its SHUTDOWN SAVE on its own
