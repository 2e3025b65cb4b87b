"""Numbers and files that come from people, checked before anything uses them.

Stage tables, alert rules, parameter files and command-line flags all hand the
engine numbers typed by an operator. Each must be refused with one line naming
the field, the bad value and the allowed range, never passed on: a NaN compares
false with everything, so a NaN threshold silently switches its check off; an
infinity or an integer of hundreds of digits overflows a float, a SQLite
INTEGER or the memory of a bootstrap. ``number_problem`` is that one rule;
``read_json_file`` reads a JSON config file so that a directory, a file that is
not UTF-8, a number too long to parse or nesting too deep is a one-line
ConfigError rather than a traceback.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any, cast

from engine.core.errors import ConfigError

#: the largest value a SQLite INTEGER (and so a stored seed or id) can hold
MAX_INT64 = 2**63 - 1
#: integers longer than this are shown by their length in messages, not spelled out
MAX_SHOWN_DIGITS = 24
#: text values longer than this are cut in messages
MAX_SHOWN_CHARS = 60
#: a config file larger than this is refused before parsing (the shipped ones are a few KB)
MAX_CONFIG_BYTES = 10 * 1024 * 1024


def shown(value: Any) -> str:
    """``value`` as a message shows it: its repr, with a huge integer given by its length and long text cut."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            digits = str(len(str(abs(value))))
        except ValueError:  # str() of an integer past Python's 4,300-digit conversion limit refuses
            digits = f"about {math.floor(abs(value).bit_length() * math.log10(2)) + 1}"
        if digits.startswith("about") or int(digits) > MAX_SHOWN_DIGITS:
            return f"{'a negative' if value < 0 else 'an'} integer of {digits} digits"
        return str(value)
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def shown_name(name: Any) -> str:
    """A name or key as a message shows it: as is when it is short printable text, else ``shown``."""
    if isinstance(name, str) and name.isprintable() and 0 < len(name) <= MAX_SHOWN_CHARS:
        return name
    return shown(name)


def _fmt(bound: float) -> str:
    """A bound as people read it: 1,000,000 for whole numbers, 0.999 or 1e-06 otherwise."""
    if isinstance(bound, int) or (float(bound).is_integer() and abs(bound) < 1e16):
        return f"{int(bound):,}"
    return f"{bound:g}"


def allowed_range(
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    low_open: bool = False,
    high_open: bool = False,
) -> str:
    """What ``number_problem`` accepts, in words: "a whole number from 1 to 1,000,000", "a number > 0 and <= 1e+09"."""
    kind = "a whole number" if integer else "a finite number" if low is None or high is None else "a number"
    if low is not None and high is not None:
        if not low_open and not high_open:
            return f"{kind} from {_fmt(low)} to {_fmt(high)}"
        if low_open and high_open:
            return f"{kind} between {_fmt(low)} and {_fmt(high)} exclusive"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {_fmt(low)}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {_fmt(high)}")
    return f"{kind} {' and '.join(parts)}".rstrip()


def number_problem(
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    low_open: bool = False,
    high_open: bool = False,
) -> str | None:
    """Why ``value`` is not an acceptable number (``"got nan (allowed: ...)"``), or None when it is.

    Acceptable: a real number that is not a bool, finite, whole when ``integer``
    (a float with a whole value such as 5.0 counts; 1e12 for a count is refused
    by the bounds), within the bounds. Comparisons never convert to float, so an
    integer of any length is judged exactly instead of overflowing.
    """
    rng = allowed_range(low, high, integer=integer, low_open=low_open, high_open=high_open)
    bad = f"got {shown(value)} (allowed: {rng})"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return bad
    if isinstance(value, float) and not math.isfinite(value):
        return bad
    if integer and not isinstance(value, numbers.Integral) and not float(value).is_integer():
        return bad
    real = cast(float, value)  # any Real compares with the bounds exactly, an int of any length included
    if low is not None and (real <= low if low_open else real < low):
        return bad
    if high is not None and (real >= high if high_open else real > high):
        return bad
    return None


def checked_number(value: Any, where: str, low: float | None = None, high: float | None = None, **kw: bool) -> Any:
    """``value`` when ``number_problem`` finds nothing wrong, else ConfigError ``"<where>: got ... (allowed: ...)"``."""
    problem = number_problem(value, low, high, **kw)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return value


def read_json_file(path: str | Path, what: str, *, missing: str = "") -> Any:
    """The decoded JSON of the file at ``path``; every way it can fail is a one-line ConfigError.

    ``what`` names the file in messages ("stage table", "alert rules file");
    ``missing`` is the hint given when it does not exist. The file must be a
    regular UTF-8 file of at most MAX_CONFIG_BYTES.
    """
    p = Path(path)
    label = f"{what} {p}"
    if p.is_dir():
        raise ConfigError(f"{label} is a directory, not a file: give the path of a JSON file")
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{label} does not exist" + (f": {missing}" if missing else "")) from None
    except OSError as exc:
        raise ConfigError(f"{label} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{label} is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MB: it cannot be a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{label} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): save it as UTF-8"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{label} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError:  # an integer literal past Python's 4,300-digit conversion limit
        raise ConfigError(
            f"{label} holds a number with thousands of digits: no field takes a value that large"
        ) from None
    except RecursionError:
        raise ConfigError(f"{label} is nested too deeply to be a config file") from None
