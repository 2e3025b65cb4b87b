"""The one rule for numbers and JSON files from people (engine.core.inputs), from literals."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from engine.core import inputs
from engine.core.errors import ConfigError
from engine.core.inputs import allowed_range, checked_number, number_problem, read_json_file, shown


def test_shown_spells_short_values_and_sizes_huge_ones():
    assert shown(42) == "42" and shown(-7) == "-7" and shown(0) == "0"
    assert shown(10**23) == str(10**23)  # 24 digits: still readable
    assert shown(10**300) == "an integer of 301 digits"
    assert shown(-(10**300)) == "a negative integer of 301 digits"
    assert shown(10**5000) == "an integer of about 5001 digits"  # past the int -> str limit, no exception
    assert shown(float("nan")) == "nan" and shown(True) == "True" and shown("x") == "'x'"
    assert len(shown("a" * 1000)) == inputs.MAX_SHOWN_CHARS and shown("a\nb") == "'a\\nb'"


def test_allowed_range_in_words():
    assert allowed_range(1, 1_000_000, integer=True) == "a whole number from 1 to 1,000,000"
    assert allowed_range(0, 1e9, low_open=True) == "a number > 0 and <= 1,000,000,000"
    assert allowed_range(0, 1, low_open=True, high_open=True) == "a number between 0 and 1 exclusive"
    assert allowed_range(0.5, 0.999) == "a number from 0.5 to 0.999"
    assert allowed_range(0, inputs.MAX_INT64, integer=True).endswith("to 9,223,372,036,854,775,807")
    assert allowed_range(1, integer=True) == "a whole number >= 1"
    assert allowed_range() == "a finite number"


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), True, False, None, "5", [5], 10**400, -(10**400), 1e12, 2.5, 0],
)
def test_number_problem_refuses_what_is_not_a_finite_in_range_count(value):
    problem = number_problem(value, 1, 1_000_000, integer=True)
    assert problem == f"got {shown(value)} (allowed: a whole number from 1 to 1,000,000)"


@pytest.mark.parametrize("value", [1, 1_000_000, 5.0, Fraction(10, 2)])
def test_number_problem_accepts_whole_values_within_the_bounds(value):
    assert number_problem(value, 1, 1_000_000, integer=True) is None


def test_open_bounds_and_huge_integers_compare_exactly():
    assert number_problem(0, 0, 1, low_open=True) is not None and number_problem(1e-300, 0, 1, low_open=True) is None
    assert number_problem(1, 0, 1, high_open=True) is not None
    assert number_problem(2**63, 0, 2**63 - 1, integer=True) is not None  # no float rounding lets it through
    assert number_problem(10**400, None, None) is None  # finite, no bounds: an int of any size is a number
    assert number_problem(math.pi) is None and number_problem(float("nan")) is not None


def test_checked_number_names_the_field():
    assert checked_number(3, "batch_size", 1, 10, integer=True) == 3
    with pytest.raises(ConfigError, match=r"^batch_size: got nan \(allowed: a whole number from 1 to 10\)$"):
        checked_number(float("nan"), "batch_size", 1, 10, integer=True)


@pytest.mark.parametrize(
    "content, says",
    [
        (None, "is a directory, not a file: give the path of a JSON file"),
        (b"\xff\xfe{}", "is not UTF-8 text (byte 0xff at offset 0): save it as UTF-8"),
        (b'{"a": 1,}', "is not valid JSON (Expecting property name enclosed in double quotes at line 1 column 9)"),
        (b'{"a": ' + b"1" * 4301 + b"}", "holds a number with thousands of digits"),
        (b"[" * 50_000 + b"]" * 50_000, "is nested too deeply"),
    ],
    ids=["directory", "not-utf8", "bad-json", "4301-digits", "deep"],
)
def test_read_json_file_every_failure_is_one_line_naming_the_file(tmp_path, content, says):
    path = tmp_path / "c.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        read_json_file(path, "config file")
    assert str(err.value).startswith(f"config file {path} {says}") and "\n" not in str(err.value)


def test_read_json_file_missing_and_too_large(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"config file .*nope.json does not exist: pass --x$"):
        read_json_file(tmp_path / "nope.json", "config file", missing="pass --x")
    monkeypatch.setattr(inputs, "MAX_CONFIG_BYTES", 10)
    big = tmp_path / "big.json"
    big.write_text('{"a": "' + "x" * 20 + '"}')
    with pytest.raises(ConfigError, match="is larger than"):
        read_json_file(big, "config file")
    small = tmp_path / "small.json"
    small.write_text('{"a": 1}')
    assert read_json_file(small, "config file") == {"a": 1}
