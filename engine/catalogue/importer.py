"""Import a user's own entities from CSV or JSON; every row is checked before anything is written.

Columns (CSV header or JSON object keys; a JSON file is a list of objects):

``name``      required
``id``        optional; defaults to the slug of the name; if given it must already be a slug
``sport``     optional text
``country``   optional text
``type``      one of model.ENTITY_TYPES (default ``club``)
``tier``      1, 2 or 3 (default 2)
``cluster``   optional; defaults to ``<country>-<sport>`` as slugs, like the catalogue
``template``  a loaded template id; defaults to the catalogue's choice for type and tier

Limits, the same for CSV and JSON and checked before anything is written: a
file of at most MAX_FILE_BYTES (its size is checked before it is read, and no
more is ever read), at most MAX_ROWS data rows, at most MAX_FIELD_CHARS
characters per field. (The graph's id index cannot find an id of more than
4,096 bytes: an entity with such an id could be created but never given its
hypotheses, which is how a 10 MB name once left an entity without any.)

Validation collects every problem with its 1-based data row (and the file line
for CSV): malformed or oversized file, unknown column, missing name, a field
over the length limit, bad id, duplicate id in the file, id already in the
graph (unless ``replace``), unknown type, bad tier, unknown template. If there
is any problem nothing is written and ``ImportRejected`` carries them all.

A write that fails part-way (the store went away) raises ``ImportInterrupted``,
which says how many of the file's entities are in the graph and that running
the same import again with ``--replace`` completes it (the write is idempotent
and adds what is missing).
"""

from __future__ import annotations

import csv
import io
import json
import reprlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.catalogue.generator import CatalogueStore, default_template_id, write_entities
from engine.core.access import Actor
from engine.core.errors import DiscoveryError, first_line
from engine.core.model import ENTITY_TYPES, Entity, Template, slugify
from engine.store.access import authorize

COLUMNS = ("id", "name", "sport", "country", "type", "tier", "cluster", "template")
DEFAULT_TYPE = "club"
DEFAULT_TIER = 2
#: problems spelled out in the one-line message; ``ImportRejected.problems`` has them all
MESSAGE_PROBLEMS = 10
#: the largest file imported (a 3,400-entity catalogue is ~400 KB as CSV, ~700 KB as JSON)
MAX_FILE_BYTES = 16 * 1024 * 1024
#: the most data rows of one file: import a bigger catalogue in several files
MAX_ROWS = 50_000
#: the longest field (names of sports organisations are well under 100 characters; ids and hypothesis
#: ids must stay far below the graph index's 4,096-byte key limit)
MAX_FIELD_CHARS = 200
#: a bad value or column name is quoted in a message cut to about this many characters
QUOTE_CHARS = 40
_SHORT_REPR = reprlib.Repr(maxstring=QUOTE_CHARS, maxlong=QUOTE_CHARS, maxother=QUOTE_CHARS, maxlist=4, maxdict=4)


@dataclass(frozen=True)
class ImportProblem:
    """One thing wrong with the file (``row is None``) or with one data row."""

    message: str
    row: int | None = None  # 1-based data row
    line: int | None = None  # line of the file where it starts (CSV)

    def __str__(self) -> str:
        if self.row is None:
            where = f"line {self.line}" if self.line else "file"
        else:
            where = f"row {self.row}" + (f" (line {self.line})" if self.line else "")
        return f"{where}: {self.message}"


class ImportRejected(DiscoveryError):
    """The file has problems; nothing was written. ``problems`` lists every one."""

    def __init__(self, source: str, problems: Sequence[ImportProblem], total_rows: int):
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.row is not None, p.row or 0, p.line or 0))
        self.total_rows = total_rows
        self.rejected_rows = len({p.row for p in self.problems if p.row is not None})
        shown = "; ".join(str(p) for p in self.problems[:MESSAGE_PROBLEMS])
        more = len(self.problems) - MESSAGE_PROBLEMS
        if more > 0:
            shown += f"; and {more} more problem{'s' if more > 1 else ''}"
        if any(p.row is None for p in self.problems):
            head = f"{source} rejected, nothing written"
        else:
            head = f"{self.rejected_rows} of {total_rows} rows rejected, nothing written"
        super().__init__(f"{head}: {shown}")


class ImportInterrupted(DiscoveryError):
    """The file was valid but writing it failed part-way; the message says what is in the graph."""


@dataclass(frozen=True)
class RawRow:
    row: int  # 1-based data row
    line: int | None  # CSV line where the record starts
    fields: dict[str, Any]
    readable: bool = True  # False: its shape is wrong and already reported


@dataclass(frozen=True)
class ImportReport:
    entities: int
    created: int
    replaced: int
    hypotheses: int
    seconds: float

    def summary(self, source: str) -> str:
        return (
            f"imported {self.entities:,} entities from {source} ({self.created:,} new, {self.replaced:,} replaced) "
            f"with {self.hypotheses:,} hypotheses in {self.seconds:.1f} s"
        )


# --------------------------------------------------------------------------- reading

Parsed = tuple[list["RawRow"], list[ImportProblem]]


def read_rows(path: Path | str) -> Parsed:
    """Rows of a ``.csv`` or ``.json`` file (other names: sniffed), and the problems of its shape.

    A file that cannot be read at all gives no rows and one file-level problem.
    """
    path = Path(path)
    too_big = ImportProblem(
        f"is larger than the {MAX_FILE_BYTES // (1024 * 1024)} MiB import limit: split it into smaller files"
    )
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return [], [too_big]
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)  # never more than the limit, whatever stat said
        if len(data) > MAX_FILE_BYTES:
            return [], [too_big]
        text = data.decode("utf-8-sig")
    except FileNotFoundError:
        return [], [ImportProblem(f"no such file {str(path)!r}")]
    except OSError as exc:
        return [], [ImportProblem(f"cannot be read ({exc.strerror or exc})")]
    except UnicodeDecodeError as exc:
        return [], [ImportProblem(f"is not UTF-8 text (bad byte at offset {exc.start}): save it as UTF-8")]
    suffix = path.suffix.lower()
    is_json = suffix == ".json" or (suffix != ".csv" and text.lstrip().startswith(("[", "{")))
    return parse_json(text) if is_json else parse_csv(text)


def parse_csv(text: str) -> Parsed:
    """CSV with a header line; blank lines are skipped, data rows numbered from 1 after the header."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems: list[ImportProblem] = []
    rows: list[RawRow] = []
    header: list[str] | None = None
    previous_end = 0
    try:
        for record in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = [c.strip().lower() for c in record]
                problems.extend(_header_problems(header, start))
                continue
            number = len(rows) + 1
            if number > MAX_ROWS:
                return rows, [*problems, _too_many_rows()]
            if len(record) != len(header):
                # a shifted row would only produce confusing follow-up problems: report its shape alone
                problems.append(
                    ImportProblem(f"has {len(record)} fields but the header has {len(header)}", number, start)
                )
                rows.append(RawRow(number, start, {}, readable=False))
                continue
            fields = {key: value for key, value in zip(header, record) if key in COLUMNS}
            rows.append(RawRow(number, start, fields))
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):  # the csv module's own bound, far above ours
            problems.append(ImportProblem(_too_long_field("a field"), None, reader.line_num or 1))
        else:
            problems.append(ImportProblem(f"malformed CSV: {exc}", None, reader.line_num or 1))
    if header is None and not problems:
        problems.append(ImportProblem(f"is empty: expected a header line with columns {', '.join(COLUMNS)}"))
    elif header is not None and not rows and not problems:
        problems.append(ImportProblem("has a header but no data rows"))
    return rows, problems


def _header_problems(header: list[str], line: int) -> list[ImportProblem]:
    problems = []
    seen: set[str] = set()
    for name in header:
        if name in seen:
            problems.append(ImportProblem(f"column {_quote(name)} appears twice", None, line))
        elif name not in COLUMNS:
            problems.append(ImportProblem(f"unknown column {_quote(name)} (allowed: {', '.join(COLUMNS)})", None, line))
        seen.add(name)
    if "name" not in seen:
        problems.append(ImportProblem("no 'name' column: it is required", None, line))
    return problems


def parse_json(text: str) -> Parsed:
    """A JSON list of objects, one per entity."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [ImportProblem(f"malformed JSON: {exc.msg} (column {exc.colno})", None, exc.lineno)]
    except ValueError:  # an integer of thousands of digits: Python refuses to convert it
        return [], [ImportProblem("malformed JSON: a number has too many digits")]
    except RecursionError:
        return [], [ImportProblem("malformed JSON: nested too deeply (expected a list of flat objects)")]
    if not isinstance(data, list):
        return [], [ImportProblem("expected a JSON list of objects (one per entity)")]
    if not data:
        return [], [ImportProblem("is an empty list: nothing to import")]
    if len(data) > MAX_ROWS:
        return [], [_too_many_rows()]
    problems: list[ImportProblem] = []
    rows: list[RawRow] = []
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            problems.append(ImportProblem(f"expected an object, got {_json_kind(item)}", number))
            rows.append(RawRow(number, None, {}, readable=False))
            continue
        for key in sorted(set(item) - set(COLUMNS)):
            problems.append(ImportProblem(f"unknown field {_quote(key)} (allowed: {', '.join(COLUMNS)})", number))
        rows.append(RawRow(number, None, {k: v for k, v in item.items() if k in COLUMNS}))
    return rows, problems


def _too_many_rows() -> ImportProblem:
    return ImportProblem(f"has more than {MAX_ROWS:,} rows, the import limit: split it into smaller files")


def _too_long_field(what: str, length: int | None = None) -> str:
    size = f" is {length:,} characters," if length is not None else " is"
    return f"{what}{size} longer than the {MAX_FIELD_CHARS}-character limit"


def _quote(value: Any) -> str:
    """A value from the file as a message shows it: a ``repr`` cut short (strings, numbers and lists alike),
    so the message stays one short line whatever the file holds."""
    return _SHORT_REPR.repr(value)


def _json_kind(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


# --------------------------------------------------------------------------- validation


def validate_rows(
    rows: Sequence[RawRow], templates: Mapping[str, Template]
) -> tuple[list[tuple[RawRow, Entity]], list[ImportProblem]]:
    """Entities of the good rows and every problem of the bad ones (pure; the graph is not consulted)."""
    good: list[tuple[RawRow, Entity]] = []
    problems: list[ImportProblem] = []
    first_row_of: dict[str, int] = {}
    for raw in rows:
        if not raw.readable:
            continue
        found: list[str] = []
        entity = _row_entity(raw, templates, found)
        if entity is not None:
            if entity.id in first_row_of:
                found.append(f"duplicate id {entity.id!r} (first on row {first_row_of[entity.id]})")
            else:
                first_row_of[entity.id] = raw.row
        problems.extend(ImportProblem(msg, raw.row, raw.line) for msg in found)
        if entity is not None and not found:
            good.append((raw, entity))
    return good, problems


def _text(raw: RawRow, key: str, found: list[str]) -> str:
    value = raw.fields.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        shown = json.dumps(value)  # JSON as the file wrote it (bounded by MAX_FILE_BYTES), cut short
        found.append(
            f"{key} must be text, got {shown if len(shown) <= QUOTE_CHARS else shown[: QUOTE_CHARS - 3] + '...'}"
        )
        return ""
    return " ".join(str(value).split())  # one line, single spaces


def _too_long(raw: RawRow) -> list[str]:
    """The row's fields over MAX_FIELD_CHARS (checked first: nothing else is worth saying about such a row)."""
    found = []
    for key in COLUMNS:
        value = raw.fields.get(key)
        if isinstance(value, str):
            length = len(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            length = MAX_FIELD_CHARS + 1 if value.bit_length() > 3 * MAX_FIELD_CHARS else len(str(value))
        else:
            continue
        if length > MAX_FIELD_CHARS:
            found.append(_too_long_field(key, length if isinstance(value, str) else None))
    return found


def _row_entity(raw: RawRow, templates: Mapping[str, Template], found: list[str]) -> Entity | None:
    too_long = _too_long(raw)
    if too_long:
        found.extend(too_long)
        return None
    name = _text(raw, "name", found)
    given_id = _text(raw, "id", found)
    sport = _text(raw, "sport", found)
    country = _text(raw, "country", found)
    entity_type = _text(raw, "type", found).lower() or DEFAULT_TYPE
    cluster = _text(raw, "cluster", found)
    template_id = _text(raw, "template", found)

    if not name:
        found.append("missing name")
    if given_id:
        if slugify(given_id) != given_id:
            found.append(f"id {given_id!r} is not a normalised slug (try {slugify(given_id)!r} or leave id empty)")
        entity_id = given_id
    else:
        entity_id = slugify(name)
        if name and not entity_id:
            found.append(f"name {name!r} has no letters or digits to make an id from: give an id")
        elif len(entity_id) > MAX_FIELD_CHARS:  # folding can lengthen a name ("㎉" -> "kcal")
            found.append(f"the id made from the name{_too_long_field('', len(entity_id))}: give an id")
    if entity_type not in ENTITY_TYPES:
        found.append(f"unknown type {entity_type!r} (one of {', '.join(ENTITY_TYPES)})")

    tier = _tier(raw.fields.get("tier"), found)

    if not template_id:
        template_id = default_template_id(entity_type, tier or DEFAULT_TIER)
        if entity_type in ENTITY_TYPES and template_id not in templates:
            found.append(f"no template given and the default {template_id!r} is not loaded: add a template column")
    elif template_id not in templates:
        found.append(f"unknown template {template_id!r} (loaded: {', '.join(sorted(templates))})")

    cluster = slugify(cluster) if cluster else "-".join(p for p in (slugify(country), slugify(sport)) if p)
    if found:
        return None
    return Entity(
        id=entity_id,
        name=name,
        sport=sport,
        country=country,
        type=entity_type,
        tier=tier,
        cluster=cluster or "unclustered",
        template_id=template_id,
    )


def _tier(value: Any, found: list[str]) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_TIER
    if isinstance(value, bool):
        tier = None
    elif isinstance(value, int):
        tier = value
    elif isinstance(value, float) and value.is_integer():
        tier = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        tier = int(value.strip())
    else:
        tier = None
    if tier not in (1, 2, 3):
        found.append(f"bad tier {_quote(value)}: must be 1, 2 or 3")
        return DEFAULT_TIER
    return tier


# --------------------------------------------------------------------------- import


def check_file(
    path: Path | str,
    templates: Mapping[str, Template],
    existing_ids: Callable[[list[str]], set[str]] | None = None,
    *,
    replace: bool = False,
) -> list[Entity]:
    """Read and validate a file; the entities to write, or ImportRejected with every problem.

    ``existing_ids(ids)`` says which of ``ids`` the graph already holds; they
    are problems unless ``replace``.
    """
    path = Path(path)
    rows, problems = read_rows(path)
    good, row_problems = validate_rows(rows, templates)
    problems.extend(row_problems)
    if existing_ids is not None and not replace and good:
        taken = existing_ids([e.id for _, e in good])
        for raw, entity in good:
            if entity.id in taken:
                problems.append(
                    ImportProblem(
                        f"id {entity.id!r} is already in the graph (use --replace to overwrite it)", raw.row, raw.line
                    )
                )
    if problems:
        raise ImportRejected(path.name, problems, len(rows))
    return [entity for _, entity in good]


class ImportStore(CatalogueStore, Protocol):
    def get_entities(self, ids: Iterable[str]) -> dict[str, Entity]: ...


def import_catalogue(
    ops,
    graph: ImportStore,
    path: Path | str,
    templates: Mapping[str, Template],
    *,
    actor: Actor,
    replace: bool = False,
) -> ImportReport:
    """``import_file`` on a person's behalf (operator): authorized before the file is read, then audited
    as ``import`` with the report (what the demo's metrics check for)."""
    who = authorize(ops, actor, "catalogue.import")
    report = import_file(graph, path, templates, replace=replace)
    ops.audit(who, "import", str(Path(path).resolve()), {**asdict(report), "replace": replace})
    return report


def import_file(
    graph: ImportStore,
    path: Path | str,
    templates: Mapping[str, Template],
    *,
    replace: bool = False,
    clock: Callable[[], float] = time.time,
    timer: Callable[[], float] = time.perf_counter,
) -> ImportReport:
    """Validate every row, then upsert the entities with their templates and fresh hypotheses.

    With ``replace`` an entity already in the graph gets the file's fields;
    its existing hypotheses keep their state and missing ones are added.
    """
    started = timer()

    def existing(ids: list[str]) -> set[str]:
        return set(graph.get_entities(ids))

    entities = check_file(path, templates, existing, replace=replace)
    ids = [e.id for e in entities]
    already = existing(ids) if replace else set()
    try:
        hypotheses = write_entities(graph, entities, templates, clock())
    except DiscoveryError as exc:
        raise _interrupted(Path(path).name, ids, already, existing, exc) from exc
    return ImportReport(
        entities=len(entities),
        created=len(entities) - len(already),
        replaced=len(already),
        hypotheses=hypotheses,
        seconds=timer() - started,
    )


def _interrupted(
    source: str, ids: list[str], already: set[str], existing: Callable[[list[str]], set[str]], exc: DiscoveryError
) -> ImportInterrupted:
    """Say truthfully what a write that failed part-way left behind, and how to finish it.

    The store writes entities before their hypotheses, in separate queries, so a failure in between
    can leave new entities without hypotheses; running the same import again with ``--replace`` adds
    exactly what is missing (existing hypotheses keep their state).
    """
    try:
        landed = len(existing(ids) - already)
        written = (
            f"{landed:,} of its {len(ids) - len(already):,} new entities are in the graph, maybe without hypotheses"
        )
    except DiscoveryError:  # the store is still away: say what may have happened
        written = f"some of its {len(ids):,} entities may be in the graph without hypotheses"
    return ImportInterrupted(
        f"import of {source} stopped while writing ({first_line(exc)}): {written}; "
        "run the same import again with --replace to complete it"
    )
