"""Optional page sections that other parts of the console plug in.

A page names a slot as (module, function). While that module does not exist
yet the slot is empty and the page simply skips it, the same way engine.cli.main
skips command modules not built yet. Any other import error is a bug and is
raised.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def optional(module: str, name: str) -> Callable[..., Any] | None:
    """``module.name`` if that module exists, else None."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None
    return getattr(mod, name)
