"""The console's pure modules (frames, charts, formatting, names) never import Streamlit, so they run and
are tested without a page; the modules that draw are listed apart (console/__init__.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import console

CONSOLE = Path(console.__file__).resolve().parent
PURE = (
    "actionable_view",
    "admin_view",
    "alerts_view",
    "audit_view",
    "cache_view",
    "charts",
    "cluster_view",
    "configs_view",
    "entity_view",
    "format",
    "launch",
    "live",
    "naming",
    "notify_view",
    "production_view",
    "rollout_start",
    "rollout_view",
    "signin",
    "text",
    "tuning_view",
    "vocab",
)
DRAWING = ("services", "feedback", "identity", "tables", "entity_panel", "live_panel")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # from console import live
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def test_every_console_module_is_classified():
    modules = {p.stem for p in CONSOLE.glob("*.py") if p.stem != "__init__"}
    assert modules == set(PURE) | set(DRAWING), modules ^ (set(PURE) | set(DRAWING))
    for name in modules:
        assert f"    {name} " in console.__doc__, f"console/__init__.py does not list {name}"


@pytest.mark.parametrize("name", PURE)
def test_pure_module_does_not_import_streamlit(name):
    streamlit = {m for m in imported_modules(CONSOLE / f"{name}.py") if m.split(".")[0] == "streamlit"}
    assert not streamlit, f"console/{name}.py is pure but imports {sorted(streamlit)}"


@pytest.mark.parametrize("name", PURE)
def test_pure_module_imports_only_pure_console_modules(name):
    console_imports = {m.split(".")[1] for m in imported_modules(CONSOLE / f"{name}.py") if m.startswith("console.")}
    assert console_imports <= set(PURE), f"console/{name}.py imports drawing modules {console_imports - set(PURE)}"
