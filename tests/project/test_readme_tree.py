"""The README's Architecture section is the tree: every module is listed where it lives, nothing listed is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("engine", "console", "pages")


def readme_tree(text: str) -> set[str]:
    """Paths of the .py files and folders the Architecture section's tree lists (``engine/core/model.py``, ...)."""
    section = text.split("## Architecture", 1)[1]
    block = section.split("```", 2)[1]
    listed: set[str] = set()
    stack: list[tuple[int, str]] = []  # (indent, folder path)
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0].split()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        for name in names:
            if name.endswith("/"):
                path = parent + name
                listed.add(path.rstrip("/"))
                stack.append((indent, path))
            elif name.endswith(".py"):
                listed.add(parent + name)
    return listed


def tree_on_disk() -> set[str]:
    found = {"streamlit_app.py"}
    for top in CHECKED:
        found.add(top)
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if "__pycache__" in rel.parts:
                continue
            if path.name != "__init__.py":
                found.add(rel.as_posix())
            found.update(parent.as_posix() for parent in rel.parents if parent.as_posix() not in (".", ""))
    return found


def test_the_tree_parser_reads_nesting_and_several_names_a_line():
    text = "## Architecture\n```\nengine/   x\n  core/   y\n    a.py b.py   z\n  c.py   w\npages/\n  p.py\n```\n"
    assert readme_tree(text) == {"engine", "engine/core", "engine/core/a.py", "engine/core/b.py", "engine/c.py",
                                 "pages", "pages/p.py"}  # fmt: skip


def test_readme_architecture_lists_every_module_and_nothing_that_is_gone():
    listed = {
        p for p in readme_tree((ROOT / "README.md").read_text()) if p.split("/")[0] in (*CHECKED, "streamlit_app.py")
    }
    on_disk = tree_on_disk()
    assert sorted(on_disk - listed) == [], "in the code but not in the README's Architecture tree"
    assert sorted(listed - on_disk) == [], "in the README's Architecture tree but not in the code"
