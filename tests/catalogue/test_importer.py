"""Import of a user's entities: every problem with its row (and CSV line); nothing written when any row is bad."""

from __future__ import annotations

import json

import pytest

from engine.catalogue.generator import seed_catalogue
from engine.catalogue.importer import (
    ImportProblem,
    ImportRejected,
    check_file,
    import_file,
    parse_csv,
    parse_json,
)
from engine.catalogue.templates import load_templates
from engine.core.errors import DiscoveryError
from engine.core.model import Entity

TEMPLATES = load_templates()
HEADER = "name,id,sport,country,type,tier,cluster,template\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rejected(path, existing=None, replace=False) -> ImportRejected:
    with pytest.raises(ImportRejected) as info:
        check_file(path, TEMPLATES, existing, replace=replace)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, DiscoveryError)
    return info.value


def messages(exc: ImportRejected) -> list[str]:
    return [str(p) for p in exc.problems]


# --------------------------------------------------------------------------- good files


def test_csv_rows_become_entities_with_defaults(tmp_path):
    path = write(
        tmp_path,
        "mine.csv",
        HEADER
        + "Porto Alegre Basketball Club,,Basketball,Brazil,club,1,,\n"
        + "Norwegian Handball Federation,nhf,Handball,Norway,federation,1,nordic-handball,federation\n"
        + "Elite Sports Management Group,,,,agency,3,,\n"
        + "Tiny Town FC,,,,,,,\n",
    )
    entities = check_file(path, TEMPLATES)
    assert entities[0] == Entity(
        id="porto-alegre-basketball-club",
        name="Porto Alegre Basketball Club",
        sport="Basketball",
        country="Brazil",
        type="club",
        tier=1,
        cluster="brazil-basketball",
        template_id="tier1_club",
    )
    assert (entities[1].id, entities[1].cluster, entities[1].template_id) == ("nhf", "nordic-handball", "federation")
    assert (entities[2].template_id, entities[2].cluster) == ("agency", "unclustered")
    assert (entities[3].type, entities[3].tier, entities[3].template_id) == ("club", 2, "tier2_club")


def test_json_list_of_objects(tmp_path):
    rows = [
        {"name": "Porto Alegre Basketball Club", "sport": "Basketball", "country": "Brazil", "tier": 1},
        {"name": "Atlético Paranaense", "type": "Club", "tier": "3", "template": "tier2_club"},
    ]
    entities = check_file(write(tmp_path, "mine.json", json.dumps(rows)), TEMPLATES)
    assert [e.id for e in entities] == ["porto-alegre-basketball-club", "atletico-paranaense"]
    assert entities[1].type == "club" and entities[1].tier == 3


def test_format_is_sniffed_without_a_known_suffix(tmp_path):
    assert check_file(write(tmp_path, "a.txt", '[{"name": "Acme FC"}]'), TEMPLATES)[0].id == "acme-fc"
    assert check_file(write(tmp_path, "b.txt", "name\nAcme FC\n"), TEMPLATES)[0].id == "acme-fc"


def test_csv_header_is_case_insensitive_and_bom_tolerated(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffName, Sport ,COUNTRY\nAcme FC,Football,England\n".encode("utf-8"))
    (entity,) = check_file(path, TEMPLATES)
    assert (entity.name, entity.sport, entity.cluster) == ("Acme FC", "Football", "england-football")


def test_blank_lines_are_skipped_and_lines_still_counted(tmp_path):
    path = write(tmp_path, "gaps.csv", "name,tier\n\nAcme FC,1\n\n,2\n")
    exc = rejected(path)
    assert messages(exc) == ["row 2 (line 5): missing name"]


def test_whitespace_in_text_is_normalised(tmp_path):
    path = write(tmp_path, "ws.csv", 'name\n"  Acme \n  Football   Club "\n')
    assert check_file(path, TEMPLATES)[0].name == "Acme Football Club"


# --------------------------------------------------------------------------- every problem, with its row


def test_all_row_problems_are_collected_with_rows_and_lines(tmp_path):
    path = write(
        tmp_path,
        "bad.csv",
        HEADER
        + "Good One FC,,,,,,,\n"  # row 1, line 2
        + ",x,,,club,1,,\n"  # row 2: missing name
        + "Foo,Foo Bar,,,club,4,,nope\n"  # row 3: bad id, bad tier, unknown template
        + "Bar,bar,,,team,2,,\n"  # row 4: unknown type
        + "Good One FC,,,,,,,\n"  # row 5: duplicate id
        + "short,row\n",  # row 6: wrong field count
    )
    exc = rejected(path)
    assert messages(exc) == [
        "row 2 (line 3): missing name",
        "row 3 (line 4): id 'Foo Bar' is not a normalised slug (try 'foo-bar' or leave id empty)",
        "row 3 (line 4): bad tier '4': must be 1, 2 or 3",
        "row 3 (line 4): unknown template 'nope' (loaded: agency, federation, league, tier1_club, tier2_club)",
        "row 4 (line 5): unknown type 'team' (one of club, federation, league, agency)",
        "row 5 (line 6): duplicate id 'good-one-fc' (first on row 1)",
        "row 6 (line 7): has 2 fields but the header has 8",
    ]
    assert (exc.rejected_rows, exc.total_rows) == (5, 6)
    assert str(exc).startswith("5 of 6 rows rejected, nothing written: row 2 (line 3): missing name; row 3")


def test_line_numbers_follow_multiline_quoted_fields(tmp_path):
    path = write(tmp_path, "ml.csv", 'name,tier\n"Acme\nFC",1\nBeta FC,9\n')
    assert messages(rejected(path)) == ["row 2 (line 4): bad tier '9': must be 1, 2 or 3"]


@pytest.mark.parametrize("tier", ["0", "4", "two", "1.5", "-1"])
def test_bad_tier(tmp_path, tier):
    path = write(tmp_path, "t.csv", f"name,tier\nAcme FC,{tier}\n")
    assert messages(rejected(path)) == [f"row 1 (line 2): bad tier {tier!r}: must be 1, 2 or 3"]


@pytest.mark.parametrize("tier", [True, 2.5, [1], "x"])
def test_bad_tier_in_json(tmp_path, tier):
    path = write(tmp_path, "t.json", json.dumps([{"name": "Acme FC", "tier": tier}]))
    assert messages(rejected(path)) == [f"row 1: bad tier {tier!r}: must be 1, 2 or 3"]


def test_json_rows_are_numbered_from_one(tmp_path):
    rows = [{"name": "A FC"}, {"name": ""}, "oops", {"name": "B FC", "colour": "red"}, {"name": ["x"]}]
    exc = rejected(write(tmp_path, "x.json", json.dumps(rows)))
    assert messages(exc) == [
        "row 2: missing name",
        "row 3: expected an object, got a string",
        "row 4: unknown field 'colour' (allowed: id, name, sport, country, type, tier, cluster, template)",
        'row 5: name must be text, got ["x"]',
        "row 5: missing name",
    ]
    assert (exc.rejected_rows, exc.total_rows) == (4, 5)


def test_name_without_letters_needs_an_id(tmp_path):
    path = write(tmp_path, "n.csv", "name,id\n!!!,\n???,qmarks\n")
    assert messages(rejected(path)) == [
        "row 1 (line 2): name '!!!' has no letters or digits to make an id from: give an id"
    ]


def test_duplicate_given_and_derived_id(tmp_path):
    path = write(tmp_path, "d.csv", "name,id\nAcme FC,\nSomething Else,acme-fc\n")
    assert messages(rejected(path)) == ["row 2 (line 3): duplicate id 'acme-fc' (first on row 1)"]


def test_id_already_in_the_graph_unless_replace(tmp_path):
    path = write(tmp_path, "e.csv", "name\nAcme FC\nBeta FC\n")
    existing = lambda ids: {"beta-fc"} & set(ids)  # noqa: E731
    exc = rejected(path, existing)
    assert messages(exc) == ["row 2 (line 3): id 'beta-fc' is already in the graph (use --replace to overwrite it)"]
    assert [e.id for e in check_file(path, TEMPLATES, existing, replace=True)] == ["acme-fc", "beta-fc"]


def test_message_is_capped_but_problems_are_all_kept(tmp_path):
    path = write(tmp_path, "many.csv", "name,tier\n" + "".join(f"Club {i},7\n" for i in range(25)))
    exc = rejected(path)
    assert len(exc.problems) == 25
    assert str(exc).startswith("25 of 25 rows rejected, nothing written: row 1 (line 2): bad tier")
    assert str(exc).endswith("; and 15 more problems")


# --------------------------------------------------------------------------- malformed files


def test_unknown_and_repeated_columns(tmp_path):
    path = write(tmp_path, "h.csv", "name,templte,name\nAcme FC,x,y\n")
    exc = rejected(path)
    assert messages(exc) == [
        "line 1: unknown column 'templte' (allowed: id, name, sport, country, type, tier, cluster, template)",
        "line 1: column 'name' appears twice",
    ]
    assert str(exc).startswith("h.csv rejected, nothing written: line 1: unknown column 'templte'")


def test_missing_name_column(tmp_path):
    assert "line 1: no 'name' column: it is required" in messages(rejected(write(tmp_path, "n.csv", "id\nacme\n")))


def test_empty_csv(tmp_path):
    assert messages(rejected(write(tmp_path, "e.csv", "\n\n"))) == [
        "file: is empty: expected a header line with columns id, name, sport, country, type, tier, cluster, template"
    ]


def test_header_only(tmp_path):
    assert messages(rejected(write(tmp_path, "h.csv", "name,tier\n"))) == ["file: has a header but no data rows"]


def test_unterminated_quote(tmp_path):
    exc = rejected(write(tmp_path, "q.csv", 'name\n"Acme FC\n'))
    assert len(exc.problems) == 1 and "malformed CSV" in str(exc.problems[0])


def test_malformed_json_names_the_line(tmp_path):
    exc = rejected(write(tmp_path, "m.json", '[\n  {"name": "A"},\n  {"name": "B",}\n]'))
    (msg,) = messages(exc)
    assert msg.startswith("line 3: malformed JSON: Expecting property name") and "(column 16)" in msg


@pytest.mark.parametrize("text", ['{"name": "A"}', "[]", '"x"'])
def test_json_must_be_a_non_empty_list(tmp_path, text):
    exc = rejected(write(tmp_path, "x.json", text))
    assert exc.problems[0].row is None


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("name\nMönchengladbach\n".encode("latin-1"))
    assert "is not UTF-8 text" in str(rejected(path))


def test_missing_file(tmp_path):
    assert "no such file" in str(rejected(tmp_path / "nope.csv"))


def test_problem_str():
    assert str(ImportProblem("x", 3, 7)) == "row 3 (line 7): x"
    assert str(ImportProblem("x", 3)) == "row 3: x"
    assert str(ImportProblem("x", None, 2)) == "line 2: x"
    assert str(ImportProblem("x")) == "file: x"


def test_parsers_return_rows_and_problems_without_raising():
    rows, problems = parse_csv("name\nA\n")
    assert [r.fields for r in rows] == [{"name": "A"}] and problems == []
    rows, problems = parse_json('[{"name": "A"}, 1]')
    assert len(rows) == 2 and [str(p) for p in problems] == ["row 2: expected an object, got a number"]


# --------------------------------------------------------------------------- against the real graph


def test_import_writes_entities_and_hypotheses(graph, tmp_path):
    path = write(
        tmp_path,
        "ok.csv",
        HEADER
        + "Porto Alegre Basketball Club,,Basketball,Brazil,club,1,,\n"
        + "Elite Sports Management Group,,,,agency,2,,\n",
    )
    report = import_file(graph, path, TEMPLATES, clock=lambda: 5.0)
    expected = len(TEMPLATES["tier1_club"].patterns) + len(TEMPLATES["agency"].patterns)
    assert (report.entities, report.created, report.replaced, report.hypotheses) == (2, 2, 0, expected)
    assert graph.get_entity("porto-alegre-basketball-club").cluster == "brazil-basketball"
    assert graph.stats().hypotheses == expected
    assert {h.created_at for h in graph.get_hypotheses("elite-sports-management-group")} == {5.0}


def test_rejected_import_writes_nothing(graph, tmp_path):
    seed_catalogue(graph, 20, 1, TEMPLATES)
    before = graph.stats()
    path = write(tmp_path, "bad.csv", HEADER + "New Club FC,,,,,,,\n" + "Other FC,,,,,9,,\n")
    with pytest.raises(ImportRejected, match=r"^1 of 2 rows rejected, nothing written: row 2 \(line 3\): bad tier"):
        import_file(graph, path, TEMPLATES)
    assert graph.stats() == before
    assert "new-club-fc" not in graph.get_entities(["new-club-fc"])


def test_import_over_existing_ids_needs_replace(graph, tmp_path):
    seed_catalogue(graph, 5, 1, TEMPLATES)
    some = graph.list_entities(limit=1)[0]
    path = write(
        tmp_path,
        "r.json",
        json.dumps(
            [
                {"id": some.id, "name": "Renamed Club", "type": "club", "tier": 1},
                {"name": "Brand New FC"},
            ]
        ),
    )
    with pytest.raises(ImportRejected, match="already in the graph"):
        import_file(graph, path, TEMPLATES)
    assert graph.count_entities() == 5
    report = import_file(graph, path, TEMPLATES, replace=True)
    assert (report.created, report.replaced) == (1, 1)
    assert graph.get_entity(some.id).name == "Renamed Club"
    assert graph.count_entities() == 6
