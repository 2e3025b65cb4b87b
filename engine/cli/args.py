"""What every command's flags share: bounded argparse types, one-line usage errors, output paths checked early.

Every numeric flag gets a type from here, so a seed of 10^20, an entity count
of a billion, ``--time-scale inf`` or ``--evaluator-timeout nan`` is refused
while the command line is parsed, before a store is opened or a job submitted,
with one line naming the flag, the value and what is allowed (the rule and its
wording are ``engine.core.inputs.number_problem``). ``OneLineParser`` turns
argparse's usage-plus-message into that same one line, raised as a
``UsageError`` that ``engine.cli.main`` prints with exit code 2 like any other
operator error. ``output_path`` refuses an ``--output`` whose directory does
not exist before any work is done.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from engine.core.errors import ConfigError
from engine.core.inputs import MAX_INT64, number_problem, shown
from engine.monitoring.windows import format_window, parse_window

#: the most entities a command generates, samples or limits a run to
MAX_ENTITIES = 1_000_000
#: rows a listing prints at most (--limit, --history, --top)
MAX_ROWS = 100_000
#: the longest an evaluator answer may be waited for (--evaluator-timeout), in seconds
MAX_TIMEOUT_S = 3600.0
#: the longest a command waits or idles (--wait, --idle-exit, --stale-after): a week, in seconds
MAX_WAIT_S = 7 * 86_400.0


class UsageError(ConfigError):
    """A command line argparse refused (unknown flag, missing argument, out-of-range value)."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one ``UsageError`` line instead of a usage block and SystemExit.

    Subparsers inherit the class (``add_subparsers`` uses the parent's type), so
    every command of the tree answers alike; ``--help`` still prints and exits 0.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {' '.join(message.split())}")


def _refuse(problem: str | None) -> None:
    if problem:
        raise argparse.ArgumentTypeError(problem)


def whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (``1e3``, ``2.5`` and 10^20 are refused)."""

    def parse(text: str) -> int:
        try:
            value: object = int(text)
        except ValueError:  # not an integer, or one past Python's 4,300-digit conversion limit
            value = text
        _refuse(number_problem(value, low, high, integer=True))
        return int(text)

    parse.__name__ = "whole number"
    return parse


def number(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number within the bounds (``nan``, ``inf`` and ``1e400`` are refused)."""

    def parse(text: str) -> float:
        try:
            value: object = float(text)
        except ValueError:
            value = text
        _refuse(number_problem(value, low, high, low_open=low_open, high_open=high_open))
        return float(text)

    parse.__name__ = "number"
    return parse


def duration(low_s: float, high_s: float) -> Callable[[str], str]:
    """An argparse type: a duration like ``30s``, ``5m`` or ``1h``, from ``low_s`` to ``high_s`` seconds (text kept)."""

    def parse(text: str) -> str:
        try:
            seconds: float | None = parse_window(text)
        except ConfigError:
            seconds = None
        if seconds is None or not low_s <= seconds <= high_s:
            raise argparse.ArgumentTypeError(
                f"got {shown(text)} (allowed: a duration like 30s, 5m or 1h, from {format_window(low_s)} "
                f"to {format_window(high_s)})"
            )
        return text

    parse.__name__ = "duration"
    return parse


#: seeds are stored as SQLite INTEGERs and fed to seeded generators: 0 .. 2^63 - 1
SEED = whole(0, MAX_INT64)
#: ids of stored rows (runs, jobs, studies): 1 .. 2^63 - 1
ROW_ID = whole(1, MAX_INT64)
#: entity counts and limits
ENTITIES = whole(1, MAX_ENTITIES)
#: how many rows a listing prints (0 prints none where that makes sense)
ROWS = whole(0, MAX_ROWS)
LIMIT = whole(1, MAX_ROWS)
#: seconds to wait for an evaluator's answer
TIMEOUT_S = number(0, MAX_TIMEOUT_S, low_open=True)
#: seconds to wait for something (0 = do not wait)
WAIT_S = number(0, MAX_WAIT_S)


def output_path(flag: str, *, directory_ok: bool = False, stdout_ok: bool = False) -> Callable[[str], str]:
    """An argparse type for a file to write: its directory must exist (nothing is created on a typo).

    ``directory_ok``: an existing directory is accepted (the command picks a file
    name in it); ``stdout_ok``: ``-`` means standard output. A path that ends in
    ``/`` names a directory and must exist as one.
    """

    def parse(text: str) -> str:
        if stdout_ok and text == "-":
            return text
        if not text.strip():
            raise argparse.ArgumentTypeError(f"an empty path: give a file name for {flag}")
        path = Path(text).expanduser()
        if path.is_dir():
            if directory_ok:
                return text
            raise argparse.ArgumentTypeError(f"{text} is a directory: give a file name for {flag}")
        if text.endswith("/"):  # meant as a directory, which does not exist
            raise argparse.ArgumentTypeError(f"directory {text} does not exist: create it or choose another {flag}")
        parent = path.parent
        if not parent.is_dir():
            what = "is not a directory" if parent.exists() else "does not exist"
            raise argparse.ArgumentTypeError(f"directory {parent} {what}: create it or choose another {flag}")
        return text

    parse.__name__ = "output path"
    return parse
