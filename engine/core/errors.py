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
