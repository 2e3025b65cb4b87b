"""Issue 11, cases 5 and 9: every bad input is refused with one line, exit code 2, and nothing written.

The table-driven test runs the real CLI (a process per bad value) on a seeded data
dir and checks the exit code, that stderr is exactly one ``error: ...`` line naming
what was wrong and what is allowed, and that nothing was written: the graph keeps
its entities, no rollout run, job, alert state or audit row appears, no file or
directory is created. The parser sweep feeds non-finite and huge values to every
numeric flag of `python -m engine` in-process (pure: no store is opened), and the
message scan checks that every flag a message of engine/ names really exists.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.cli.args import UsageError
from engine.cli.main import build_parser
from engine.core.settings import REPO_ROOT, Settings
from engine.store import falkor
from engine.store.graph import GraphStore
from tests.support.cli import cli_env, one_line_error, run_cli

SEEDED = 6
TEN_TO_THE_20 = str(10**20)
STAGES = json.loads((REPO_ROOT / "data" / "stages.json").read_text())
ALERT_RULES = json.loads((REPO_ROOT / "data" / "alert_rules.json").read_text())


def _stages(change) -> str:
    data = json.loads(json.dumps(STAGES))
    change(data)
    return json.dumps(data, ensure_ascii=False)  # NaN is written as the bare NaN Python's json reads back


#: bad input files, by name: text, bytes, or None for a directory
FILES: dict[str, str | bytes | None] = {
    "threshold-nan.json": _stages(lambda d: d["stages"][0]["rollback"][0].update(threshold=float("nan"))),
    "confidence-nan.json": _stages(lambda d: d["stages"][1].update(confidence=float("nan"))),
    "resamples-1e12.json": _stages(lambda d: d["stages"][0].update(bootstrap_resamples=1e12)),
    "time-scale-nan.json": _stages(lambda d: d.update(time_scale=float("nan"))),
    "stages-300-digits.json": _stages(lambda d: d["stages"][1].update(min_sample=10**299)),
    "stages-latin1.json": _stages(lambda d: d["stages"][0].update(name="pil\u00f6t")).encode("latin-1"),
    "stages-dir": None,
    "params-400-digits.json": '{"max_cost_usd": ' + "9" * 400 + "}",  # too long for a float
    "rules-latin1.json": json.dumps(
        {"rules": [dict(ALERT_RULES["rules"][0], runbook="caf\u00e9")]}, ensure_ascii=False
    ).encode("latin-1"),
    "rules-nan.json": json.dumps({"rules": [dict(ALERT_RULES["rules"][0], threshold=float("nan"))]}),
}


@dataclass(frozen=True)
class Case:
    """One bad value: the command line (``{f}`` is the folder of FILES, ``{w}`` the work dir), what stderr
    must say, and the alert rules file placed in the data dir for it (a FILES name, "dir", or None)."""

    id: str
    argv: tuple[str, ...]
    says: str
    rules: str | None = None


CASES = [
    # case 5: stage-table values that disable safety, refused before the run starts
    Case(
        "threshold-nan",
        ("rollout", "--stage", "pilot", "--stages-file", "{f}/threshold-nan.json"),
        "stages[0] (pilot).rollback[0].threshold: got nan (allowed: a number from -1,000,000 to 1,000,000)",
    ),
    Case(
        "confidence-nan",
        ("rollout", "--stage", "all", "--stages-file", "{f}/confidence-nan.json"),
        "stages[1] (limited).confidence: got nan (allowed: a number from 0.5 to 0.999)",
    ),
    Case(
        "resamples-1e12",
        ("rollout", "--stage", "pilot", "--stages-file", "{f}/resamples-1e12.json"),
        "stages[0] (pilot).bootstrap_resamples: got 1000000000000.0 (allowed: a whole number from 100 to 100,000)",
    ),
    Case(
        "time-scale-nan",
        ("rollout", "--stage", "pilot", "--stages-file", "{f}/time-scale-nan.json"),
        "time_scale: got nan (allowed: a number > 0 and <= 1,000,000,000)",
    ),
    # case 9: files that are not UTF-8, directories, integers of hundreds of digits
    Case(
        "stages-latin1",
        ("rollout", "--stage", "pilot", "--stages-file", "{f}/stages-latin1.json"),
        "stages-latin1.json is not UTF-8 text (byte 0xf6",
    ),
    Case(
        "stages-dir",
        ("rollout", "--stage", "pilot", "--stages-file", "{f}/stages-dir"),
        "stages-dir is a directory, not a file",
    ),
    Case(
        "stages-300-digits",
        ("rollout", "--stage", "pilot", "--stages-file", "{f}/stages-300-digits.json"),
        "stages[1] (limited).min_sample: got an integer of 300 digits (allowed: a whole number from 1 to 10,000,000)",
    ),
    Case(
        "params-400-digits",
        ("rollout", "--stage", "pilot", "--config-file", "{f}/params-400-digits.json"),
        "max_cost_usd = an integer of 400 digits is out of range: allowed number in [0.05, 5.0]",
    ),
    Case("rules-latin1", ("alerts", "--evaluate"), "alert_rules.json is not UTF-8 text", rules="rules-latin1.json"),
    Case("rules-dir", ("alerts", "--evaluate"), "alert_rules.json is a directory, not a file", rules="dir"),
    Case(
        "rules-nan",
        ("alerts", "--evaluate"),
        "rule 1 (error-rate): threshold: got nan (allowed: a number from 0 to 1)",
        rules="rules-nan.json",
    ),
    # case 9: command-line numbers
    Case(
        "seed-seed-1e20",
        ("seed", "--entities", "3", "--seed", TEN_TO_THE_20),
        f"argument --seed: got {TEN_TO_THE_20} (allowed: a whole number from 0 to 9,223,372,036,854,775,807)",
    ),
    Case(
        "rollout-world-seed-1e20",
        ("rollout", "--stage", "pilot", "--world-seed", TEN_TO_THE_20),
        f"argument --world-seed: got {TEN_TO_THE_20} (allowed: a whole number from 0 to",
    ),
    Case(
        "seed-entities-1e20",
        ("seed", "--entities", TEN_TO_THE_20),
        f"argument --entities: got {TEN_TO_THE_20} (allowed: a whole number from 1 to 1,000,000)",
    ),
    Case(
        "seed-entities-1e9",
        ("seed", "--entities", "1000000000"),
        "argument --entities: got 1000000000 (allowed: a whole number from 1 to 1,000,000)",
    ),
    Case("seed-entities-0", ("seed", "--entities", "0"), "argument --entities: got 0 (allowed: a whole number from 1"),
    Case(
        "report-output-missing-dir",
        ("rollout", "report", "--output", "{w}/missing/x.md"),
        "argument --output: directory {w}/missing does not exist: create it or choose another --output",
    ),
    Case(
        "time-scale-inf",
        ("rollout", "--stage", "pilot", "--time-scale", "inf"),
        "argument --time-scale: got inf (allowed: a number > 0 and <= 1,000,000,000)",
    ),
]


@dataclass(frozen=True)
class World:
    root: Path
    work: Path  # the CLI's working directory, where outputs would land
    files: Path
    settings: Settings
    env: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A data dir seeded with SEEDED entities by the CLI, and the bad files of FILES."""
    root = tmp_path_factory.mktemp("inputs")
    settings = Settings(data_dir=root / "data")
    w = World(root, root / "work", root / "files", settings, cli_env(settings))
    w.work.mkdir()
    w.files.mkdir()
    for name, content in FILES.items():
        path = w.files / name
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    try:
        seeded = run_cli(w.env, w.work, "seed", "--entities", str(SEEDED), "--seed", "3")
        assert seeded.returncode == 0, seeded.stderr
        yield w
    finally:
        falkor.stop_embedded_server(settings)


def _rows(db: Path, table: str) -> int:
    with sqlite3.connect(db) as con:
        try:
            return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError:  # a table no command has created yet holds nothing
            return 0


def written(w: World) -> dict[str, object]:
    """What a command could have written: graph entities, operations rows, files in the work and files dirs."""
    with GraphStore.open(w.settings) as graph:
        entities = graph.count_entities()
    db = w.settings.ops_db_path
    rows = {t: _rows(db, t) for t in ("rollout_runs", "rollout_stages", "jobs", "alert_states", "audit")}
    files = sorted(str(p.relative_to(w.root)) for d in (w.work, w.files) for p in d.rglob("*"))
    return {"entities": entities, **rows, "files": files}


@pytest.mark.slow  # starts a process per bad value
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_bad_input_is_one_line_exit_2_and_nothing_written(world: World, case: Case):
    """case 5: NaN thresholds and confidence, 1e12 resamples, a NaN time scale; case 9: files that are not UTF-8 or
    are directories, integers of hundreds of digits, seeds and counts >= 10^20, `seed --entities 0` and 10^9, an
    --output in a missing directory, `--time-scale inf`: exit 2, one line saying what is allowed, nothing written."""
    rules = world.settings.data_dir / "alert_rules.json"
    if case.rules == "dir":
        rules.mkdir()
    elif case.rules is not None:
        rules.write_bytes((world.files / case.rules).read_bytes())
    try:
        before = written(world)
        argv = [a.format(f=world.files, w=world.work) for a in case.argv]
        error = one_line_error(run_cli(world.env, world.work, *argv))
        assert case.says.format(w=world.work) in error, error
        assert written(world) == before
        assert before["entities"] == SEEDED and before["rollout_runs"] == before["jobs"] == 0
    finally:
        if rules.is_dir():
            rules.rmdir()
        rules.unlink(missing_ok=True)


# --------------------------------------------------------------------------- every numeric flag


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    sub = _subparsers(parser)
    if sub is not None:
        for name, child in sub.choices.items():
            yield from _commands(child, (*path, name))


#: `bench graph` lives in engine/cli/store.py, which another change of this issue owns; its flags still take
#: plain int and are listed here so this test names them until they get engine.cli.args types
PLAIN_TYPES_ELSEWHERE: set[tuple[str, ...]] = set()

PARSER = build_parser()
NUMERIC_FLAGS = [
    pytest.param(path, action, id=" ".join((*path, action.option_strings[0] if action.option_strings else action.dest)))
    for path, parser in _commands(PARSER)
    for action in parser._actions
    if getattr(action.type, "__name__", "") in ("whole number", "number")
]


def test_every_numeric_flag_has_a_bounded_type():
    """case 9: a flag typed plain int or float takes 10^20, nan and inf; each must use an engine.cli.args type."""
    plain = [
        (" ".join(path), action.option_strings or action.dest)
        for path, parser in _commands(build_parser())
        for action in parser._actions
        if action.type in (int, float) and path not in PLAIN_TYPES_ELSEWHERE
    ]
    assert plain == []
    assert len(NUMERIC_FLAGS) > 40  # the sweep below really covers the command tree


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "1" + "0" * 400, "-" + "9" * 30])
@pytest.mark.parametrize("path, action", NUMERIC_FLAGS)
def test_every_numeric_flag_refuses_non_finite_and_huge_values_while_parsing(path, action, value):
    """case 9: `--seed`, `--world-seed`, `--entities` >= 10^20, `--time-scale inf`, ... on every command: a one-line
    usage error naming the flag and what is allowed, raised while parsing (before any store is opened)."""
    # "--flag=value": a value starting with "-" is no flag; "-- value": a positional after the end of options
    argv = [*path, f"{action.option_strings[0]}={value}"] if action.option_strings else [*path, "--", value]
    with pytest.raises(UsageError) as refused:
        PARSER.parse_args(argv)
    message = str(refused.value)
    assert "\n" not in message and "(allowed: " in message, message
    assert (action.option_strings[0] if action.option_strings else action.dest) in message


OUTPUT_FLAGS = [
    (("report",), "--output"),
    (("rollout", "report"), "--output"),
    (("tune",), "--output-file"),
    (("tune",), "--report-file"),
    (("tune", "export", "1"), "--output-file"),
    (("tune", "export", "1"), "--report-file"),
]


@pytest.mark.parametrize("argv, flag", OUTPUT_FLAGS, ids=[" ".join((*a, f)) for a, f in OUTPUT_FLAGS])
def test_every_output_flag_refuses_a_missing_directory_while_parsing(tmp_path, argv, flag):
    """case 9: `rollout report --output MISSINGDIR/x.md` (and every other output flag): one line, nothing created."""
    target = tmp_path / "missing" / "x.md"
    with pytest.raises(UsageError) as refused:
        build_parser().parse_args([*argv, flag, str(target)])
    assert f"directory {target.parent} does not exist: create it or choose another {flag}" in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def test_a_usage_error_is_one_line_with_exit_code_2_from_main(capsys):
    """case 9: argparse's usage block becomes one `error:` line (what `python -m engine` prints)."""
    from engine.cli.main import main

    assert main(["seed", "--entities", "0"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "error: python -m engine seed: argument --entities: got 0 (allowed: a whole number from 1 to 1,000,000)\n"
    )
    assert main(["rollout", "--bogus"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# --------------------------------------------------------------------------- flags named in messages

ENGINE = REPO_ROOT / "engine"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND = re.compile(r"python -m engine([^`'\"\n);]*)")
#: flags of other programs that messages name on purpose
FOREIGN_FLAGS = {"--force-reinstall"}  # pip's, in the hint for a broken falkordblite install
#: engine/discovery/evidence.py belongs to another change of this issue: its strict-replay message names a
#: `--strict` flag no command has (strict replay is EvidenceSpec(strict=True)); drop this when it is reworded
KNOWN_ELSEWHERE: set[tuple[str, str]] = set()


def _texts(path: Path) -> Iterator[tuple[int, str]]:
    """Every string literal of a module (f-strings with their placeholders as ``X``), with its line."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def flag_mentions_that_do_not_exist(root: Path = ENGINE) -> list[str]:
    """``file:line: flag`` for each flag a string under ``root`` names that `python -m engine` does not have: anywhere
    in the command tree for a bare mention, on that very command for a mention inside `python -m engine CMD ...`."""
    parser = build_parser()
    anywhere = set().union(*(_options(p) for _, p in _commands(parser)))
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else path.name
        for line, text in _texts(path):
            for flag in FLAG.findall(text):
                if flag not in anywhere | FOREIGN_FLAGS and (rel, flag) not in KNOWN_ELSEWHERE:
                    bad.append(f"{rel}:{line}: {flag}")
            for command in COMMAND.finditer(text):
                words, target = command.group(1).split(), parser
                while words and (sub := _subparsers(target)) is not None and words[0] in sub.choices:
                    target = sub.choices[words.pop(0)]
                for word in words:
                    if word.startswith("--") and word.split("=")[0] not in _options(target):
                        bad.append(f"{rel}:{line}: {word} (not a flag of `{target.prog}`)")
    return sorted(set(bad))


def test_every_flag_a_message_names_exists():
    """case 9: messages named `--config-file` for the stage table and `rollout status --all`; every flag named in
    engine/ must be one `python -m engine` has (on the command the message shows, where it shows one)."""
    assert flag_mentions_that_do_not_exist() == []


def test_the_flag_scan_finds_a_flag_that_does_not_exist(tmp_path):
    """The scan can fail: the old `rollout status --all` hint and a bare unknown flag are both reported."""
    (tmp_path / "m.py").write_text(
        'A = "no rollout run 3: list runs with `python -m engine rollout status --all`"\n'
        'B = f"pass --bogus-flag {1}"\nC = "python -m engine rollout runs --limit 5"\n'
    )
    found = flag_mentions_that_do_not_exist(tmp_path)
    assert any(f.endswith("--all (not a flag of `python -m engine rollout`)") for f in found), found
    assert any(f.endswith(": --bogus-flag") for f in found), found
    assert not any("--limit" in f for f in found)
