"""Case 7 of issue 11: import half-write.

`python -m engine import FILE.json` with a 10 MB entity name said "nothing was written", yet the graph
gained an entity with a 10,485,760-character id and no hypotheses (the graph's id index cannot find
an id over 4,096 bytes, so the hypotheses' write refused after the entity's had landed). JSON imports
now obey the same limits as CSV (file size, rows, field length), checked before anything is written,
and a write that fails part-way says truthfully what is in the graph and how to complete it.
"""

from __future__ import annotations

import json

import pytest

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.importer import (
    MAX_FIELD_CHARS,
    MAX_FILE_BYTES,
    MAX_ROWS,
    ImportInterrupted,
    ImportRejected,
    check_file,
    import_file,
)
from engine.catalogue.templates import load_templates
from engine.core.errors import StoreUnavailable
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.cli.test_cli_catalogue import cli as catalogue_cli  # noqa: F401  (a fixture, found by this name)
from tests.cli.test_cli_catalogue import one_line_error

TEMPLATES = load_templates()
TEN_MB = 10 * 1024 * 1024
#: a one-line message about any of these files stays short (it used to quote whole values)
MESSAGE_CHARS = 1000


@pytest.fixture
def cli(request):
    """The catalogue CLI runner of tests/cli: real subprocesses on a fresh data dir."""
    return request.getfixturevalue("catalogue_cli")


def _graph_state(settings) -> tuple[int, int, list[str]]:
    with GraphStore.open(settings) as g:
        stats = g.stats()
        return stats.entities, stats.hypotheses, sorted(g.list_entity_ids())


@pytest.mark.slow  # starts real processes
@pytest.mark.parametrize("suffix", ["json", "csv"])
def test_a_10_mb_name_is_refused_in_one_line_and_the_graph_is_unchanged(cli, tmp_path, suffix):
    """case 7: `import FILE.json` with a 10 MB name: exit 2, one line, no entity gained (CSV the same)."""
    cli("seed", "--entities", "12", "--seed", "3")
    before = _graph_state(cli.settings)
    path = tmp_path / f"big.{suffix}"
    if suffix == "json":
        path.write_text(json.dumps([{"name": "Good FC"}, {"name": "A" * TEN_MB, "sport": "football"}]))
    else:
        path.write_text("name,sport\nGood FC,football\n" + "A" * TEN_MB + ",football\n")
    error = one_line_error(cli("import", str(path), check=False))
    assert "nothing written" in error and f"{MAX_FIELD_CHARS}-character limit" in error
    assert len(error) < MESSAGE_CHARS
    assert _graph_state(cli.settings) == before  # not even the good row
    assert [a for a in open_ops_db(cli.settings).list_audit() if a["action"] == "import"] == []


@pytest.mark.slow  # starts real processes
def test_a_file_over_the_size_limit_is_refused_before_it_is_read(cli, tmp_path):
    """case 7: a file larger than the limit is refused from its size (a sparse 1 GiB file: nothing is read)."""
    cli("seed", "--entities", "5", "--seed", "3")
    before = _graph_state(cli.settings)
    path = tmp_path / "huge.json"
    with path.open("wb") as fh:
        fh.truncate(64 * MAX_FILE_BYTES)
    error = one_line_error(cli("import", str(path), check=False))
    assert "MiB import limit" in error
    assert _graph_state(cli.settings) == before


# --------------------------------------------------------------------------- the limits, table-driven


def _json(tmp_path, rows) -> object:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(rows))
    return path


LONG = "x" * (MAX_FIELD_CHARS + 1)
BAD_JSON_ROWS = {
    "name too long": ([{"name": LONG}], "name is 201 characters"),
    "id too long": ([{"name": "A FC", "id": LONG}], "id is 201 characters"),
    "sport too long": ([{"name": "A FC", "sport": LONG}], "sport is 201 characters"),
    "country too long": ([{"name": "A FC", "country": LONG}], "country is 201 characters"),
    "cluster too long": ([{"name": "A FC", "cluster": LONG}], "cluster is 201 characters"),
    "template too long": ([{"name": "A FC", "template": LONG}], "template is 201 characters"),
    "type too long": ([{"name": "A FC", "type": LONG}], "type is 201 characters"),
    "tier of 300 digits": ([{"name": "A FC", "tier": 10**300}], "tier is longer than"),
    "name folding to a long id": ([{"name": "\u3389" * 60}], "id made from the name is 240 characters"),
    "a long unknown key": ([{"name": "A FC", "k" * TEN_MB: 1}], "unknown field 'kkkk"),
    "a long list as a name": ([{"name": ["x" * 1000] * 1000}], "name must be text"),
}


@pytest.mark.parametrize("rows, expected", BAD_JSON_ROWS.values(), ids=BAD_JSON_ROWS.keys())
def test_every_field_of_a_json_import_is_bounded_and_the_message_stays_short(tmp_path, rows, expected):
    """case 7: the CSV limits hold for JSON, row by row, with one short line naming the row and the field."""
    with pytest.raises(ImportRejected) as err:
        check_file(_json(tmp_path, rows), TEMPLATES)
    msg = str(err.value)
    assert expected in msg and "row 1" in msg and "\n" not in msg and len(msg) < MESSAGE_CHARS


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[" + "1" * 5000 + "]", "too many digits"),
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
    ],
    ids=["a number of 5,000 digits", "nesting 200,000 deep"],
)
def test_json_python_cannot_hold_is_a_file_problem_not_a_traceback(tmp_path, text, expected):
    """case 7: what json.loads refuses with ValueError or RecursionError is a one-line problem."""
    path = tmp_path / "odd.json"
    path.write_text(text)
    with pytest.raises(ImportRejected, match=expected):
        check_file(path, TEMPLATES)


@pytest.mark.parametrize("suffix", ["json", "csv"])
def test_more_rows_than_the_limit_are_refused_for_json_and_csv_alike(tmp_path, suffix):
    """case 7: the row limit is the same for both formats."""
    path = tmp_path / f"many.{suffix}"
    names = [f"Club {i}" for i in range(MAX_ROWS + 1)]
    if suffix == "json":
        path.write_text(json.dumps([{"name": n} for n in names]))
    else:
        path.write_text("name\n" + "\n".join(names) + "\n")
    with pytest.raises(ImportRejected, match=f"more than {MAX_ROWS:,} rows"):
        check_file(path, TEMPLATES)


def test_a_file_at_the_limits_still_imports(tmp_path):
    """case 7: the limits refuse what is absurd, not what is long: a name of exactly the limit is fine."""
    (entity,) = check_file(_json(tmp_path, [{"name": "A" * MAX_FIELD_CHARS}]), TEMPLATES)
    assert len(entity.id) == MAX_FIELD_CHARS


# --------------------------------------------------------------------------- a write that fails part-way


class _FailsBetweenEntitiesAndHypotheses:
    """The real graph, except that the store goes away after the entities' write and before the hypotheses'."""

    def __init__(self, graph: GraphStore):
        self.graph = graph

    def __getattr__(self, name):
        return getattr(self.graph, name)

    def upsert_entities(self, entities, hypotheses=()):
        self.graph.upsert_entities(entities, [])
        raise StoreUnavailable("cannot reach the embedded FalkorDB (simulated outage)")


def test_a_write_that_fails_part_way_says_what_is_in_the_graph_and_replace_completes_it(graph, tmp_path):
    """case 7: the import no longer claims "nothing was written" after part of it was; it counts what
    landed, and the same import again with --replace gives every entity its hypotheses."""
    seed_catalogue(graph, 5, 1, TEMPLATES)
    path = _json(tmp_path, [{"name": "Northside Rovers"}, {"name": "Harbour United"}])
    with pytest.raises(ImportInterrupted) as err:
        import_file(_FailsBetweenEntitiesAndHypotheses(graph), path, TEMPLATES)
    msg = str(err.value)
    assert "nothing written" not in msg and "\n" not in msg
    assert "2 of its 2 new entities are in the graph" in msg and "--replace" in msg
    assert graph.get_hypotheses("northside-rovers") == []  # what the message warns about
    report = import_file(graph, path, TEMPLATES, replace=True)
    assert (report.entities, report.replaced) == (2, 2)
    for eid in ("northside-rovers", "harbour-united"):
        assert len(graph.get_hypotheses(eid)) == len(TEMPLATES[graph.get_entity(eid).template_id].patterns)
