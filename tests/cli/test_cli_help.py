"""Every command and subcommand of `python -m engine` answers ``--help`` and is described in its parent's help.

The argparse tree is walked from ``build_parser()``, so a command added later is covered without editing
this file; each ``--help`` runs in-process (argparse prints and exits 0).
"""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from engine.cli.main import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str | None]]:
    """(command path, help string given to its parent) of every command under ``parser``, depth first."""
    action = _subparsers(parser)
    if action is None:
        return []
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    found: list[tuple[tuple[str, ...], str | None]] = []
    for name, child in action.choices.items():
        found.append((path + (name,), helps.get(name)))
        found.extend(_walk(child, path + (name,)))
    return found


COMMANDS = [pytest.param((), None, id="(root)")] + [
    pytest.param(path, help_text, id=" ".join(path)) for path, help_text in _walk(build_parser())
]


def test_the_tree_has_commands_and_subcommands():
    paths = [p for p, _ in _walk(build_parser())]
    assert ("bench", "discovery") in paths and ("discover",) in paths
    assert ("store", "start") in paths and ("tune", "list") in paths  # subcommands outside bench


@pytest.mark.parametrize("path, help_text", COMMANDS)
def test_help(path, help_text):
    if path:
        assert help_text and help_text.strip(), f"`{' '.join(path)}` has no help string in its parent's list"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*path, "--help"])
    assert exit_.value.code == 0
    text = out.getvalue()
    assert text.startswith("usage: python -m engine" + "".join(f" {p}" for p in path)), text[:200]
