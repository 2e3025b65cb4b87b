"""Errors an operator can act on. Each message is one line: what was wrong and how to fix it.

The CLI and the console catch ``DiscoveryError`` at the edge and show the
message; anything else is a bug and keeps its traceback.
"""


class DiscoveryError(Exception):
    """Base of every user-facing error."""


class ConfigError(DiscoveryError):
    """An invalid config file or parameter value."""


class StoreUnavailable(DiscoveryError):
    """FalkorDB or SQLite cannot be reached; the message names where and what to try."""


class LeaseLost(DiscoveryError):
    """A worker's write was refused: its job's lease (or the graph fence of its run) has passed to another
    attempt, a rollback or a cancel. The worker stops without changing anything."""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of ``exc``'s message, or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(exc: BaseException) -> str:
    """``Type: first line`` of an unexpected exception, for a one-line report of what failed."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
