"""Test modules outside packages must have unique file names: pytest imports them by basename, so a second
``test_x.py`` in another folder stops the whole collection ("import file mismatch")."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def clashing_test_modules(root: Path = TESTS) -> dict[str, list[str]]:
    """Basename -> paths, for test modules (not in a package) whose basename appears more than once."""
    seen: dict[str, list[str]] = defaultdict(list)
    for path in root.rglob("test_*.py"):
        if not (path.parent / "__init__.py").exists():
            seen[path.name].append(path.relative_to(root).as_posix())
    return {name: sorted(paths) for name, paths in seen.items() if len(paths) > 1}


def test_every_test_module_outside_a_package_has_its_own_name():
    assert clashing_test_modules() == {}


def test_the_check_finds_a_clash(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "test_same.py").write_text("")
    assert clashing_test_modules(tmp_path) == {"test_same.py": ["a/test_same.py", "b/test_same.py"]}
