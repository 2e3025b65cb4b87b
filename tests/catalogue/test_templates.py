"""Templates: the shipped files are valid and plausible; every kind of mistake is named with file and field."""

from __future__ import annotations

import copy
import json

import pytest

from engine.catalogue.templates import DEFAULT_TEMPLATE_DIR, TemplateInvalid, load_templates, parse_template
from engine.core.errors import ConfigError
from engine.core.model import KNOWN_CATEGORIES, HopType, Template

GOOD = {
    "id": "test_club",
    "name": "Test club",
    "description": "for tests",
    "patterns": [
        {"name": "CRM platform procurement", "category": "CRM Implementation", "weight": 0.4, "keywords": ["CRM"]},
        {"name": "Chief Digital Officer hire", "category": "C-Suite Hiring", "weight": 0.3},
    ],
    "channels": [{"hop_type": "press_release", "priority": 1}, {"hop_type": "careers_page", "priority": 2}],
}


def write(directory, name, data):
    path = directory / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def problems_of(data, source="t.json"):
    with pytest.raises(TemplateInvalid) as info:
        parse_template(data, source=source)
    assert "\n" not in str(info.value)
    return info.value.problems


def variant(**changes):
    data = copy.deepcopy(GOOD)
    data.update(changes)
    return data


# --------------------------------------------------------------------------- shipped data


def test_shipped_templates_load():
    templates = load_templates()
    assert {"tier1_club", "tier2_club", "federation", "agency", "league"} <= set(templates)
    assert all(isinstance(t, Template) for t in templates.values())


@pytest.mark.parametrize("template_id", ["tier1_club", "tier2_club", "federation", "agency", "league"])
def test_shipped_template_is_plausible(template_id):
    t = load_templates()[template_id]
    assert t.name and t.description
    assert 6 <= len(t.patterns) <= 10
    for p in t.patterns:
        assert p.category in KNOWN_CATEGORIES
        assert 0.2 <= p.weight <= 0.6
        assert len(p.keywords) >= 3
    # a template covers several categories, otherwise an entity can never be actionable
    assert len({p.category for p in t.patterns}) >= 5
    assert len(t.channels) >= 4
    assert t.channel_order()[0].min_depth == 1  # the first channel works at SURFACE depth


def test_shipped_file_name_matches_template_id():
    for path in DEFAULT_TEMPLATE_DIR.glob("*.json"):
        assert json.loads(path.read_text())["id"] == path.stem


def test_load_templates_from_a_directory(tmp_path):
    write(tmp_path, "a.json", GOOD)
    write(tmp_path, "b.json", variant(id="other"))
    (tmp_path / "notes.txt").write_text("ignored")
    templates = load_templates(tmp_path)
    assert set(templates) == {"test_club", "other"}
    t = templates["test_club"]
    assert t.patterns[0].keywords == ("CRM",)
    assert t.patterns[1].keywords == ()
    assert t.channel_order() == (HopType.PRESS_RELEASE, HopType.CAREERS_PAGE)
    assert isinstance(t.patterns[0].weight, float)


# --------------------------------------------------------------------------- one message per problem


def test_unknown_category_names_file_and_field():
    data = variant()
    data["patterns"][1]["category"] = "CRM"
    (msg,) = problems_of(data)
    assert msg.startswith("t.json: patterns[1].category: unknown category 'CRM'")
    assert "CRM Implementation" in msg  # says what is allowed


def test_category_is_case_sensitive():
    data = variant()
    data["patterns"][0]["category"] = "crm implementation"
    assert "unknown category" in problems_of(data)[0]


@pytest.mark.parametrize("weight", [1.5, -0.1])
def test_weight_out_of_range(weight):
    data = variant()
    data["patterns"][0]["weight"] = weight
    (msg,) = problems_of(data)
    assert msg == f"t.json: patterns[0].weight: {weight!r} is outside [0, 1]"


@pytest.mark.parametrize("weight", ["0.4", True, None, float("nan")])
def test_weight_not_a_number(weight):
    data = variant()
    data["patterns"][0]["weight"] = weight
    (msg,) = problems_of(data)
    assert msg.startswith("t.json: patterns[0].weight:")


def test_weight_bounds_are_inclusive():
    data = variant()
    data["patterns"][0]["weight"] = 0
    data["patterns"][1]["weight"] = 1
    t = parse_template(data)
    assert [p.weight for p in t.patterns] == [0.0, 1.0]


def test_duplicate_pattern_by_normalised_name():
    data = variant()
    data["patterns"][1]["name"] = "crm Platform  procurement!"  # same slug, same hypothesis id
    (msg,) = problems_of(data)
    assert "patterns[1].name: duplicate pattern" in msg and "patterns[0]" in msg


def test_unknown_hop_type():
    data = variant()
    data["channels"][0]["hop_type"] = "twitter"
    (msg,) = problems_of(data)
    assert msg.startswith("t.json: channels[0].hop_type: unknown hop type 'twitter'")
    assert "careers_page" in msg


def test_duplicate_channel():
    data = variant()
    data["channels"][1]["hop_type"] = "press_release"
    assert "channels[1].hop_type: duplicate channel" in problems_of(data)[0]


@pytest.mark.parametrize("priority", [0, -1, 1.5, "1", True])
def test_bad_priority(priority):
    data = variant()
    data["channels"][0]["priority"] = priority
    assert problems_of(data)[0].startswith("t.json: channels[0].priority: must be an integer >= 1")


@pytest.mark.parametrize("field", ["id", "name", "patterns", "channels"])
def test_missing_top_level_field(field):
    data = variant()
    del data[field]
    (msg,) = problems_of(data)
    assert msg.startswith(f"t.json: {field}: missing field")


@pytest.mark.parametrize("field", ["name", "category", "weight"])
def test_missing_pattern_field(field):
    data = variant()
    del data["patterns"][0][field]
    (msg,) = problems_of(data)
    assert msg.startswith(f"t.json: patterns[0].{field}: missing field")


def test_empty_pattern_list():
    assert "patterns: must be a non-empty list" in problems_of(variant(patterns=[]))[0]


def test_unknown_field_is_reported_so_typos_do_not_vanish():
    data = variant(descripton="typo")
    data["patterns"][0]["wieght"] = 0.5
    msgs = problems_of(data)
    assert any(m.startswith("t.json: descripton: unknown field") for m in msgs)
    assert any(m.startswith("t.json: patterns[0].wieght: unknown field") for m in msgs)


def test_bad_template_id():
    assert "id: 'Tier 1'" in problems_of(variant(id="Tier 1"))[0]


def test_bad_keywords():
    data = variant()
    data["patterns"][0]["keywords"] = "CRM"
    assert "patterns[0].keywords: must be a list of non-empty strings" in problems_of(data)[0]


def test_not_an_object():
    assert problems_of([1, 2]) == ["t.json: expected a JSON object, got a list"]


def test_all_problems_are_collected():
    data = variant(id=None)
    data["patterns"][0]["category"] = "Nope"
    data["patterns"][1]["weight"] = 3
    data["channels"][1]["hop_type"] = "fax"
    msgs = problems_of(data)
    assert len(msgs) == 4
    fields = [m.split(": ")[1] for m in msgs]
    assert fields == ["id", "patterns[0].category", "patterns[1].weight", "channels[1].hop_type"]


# --------------------------------------------------------------------------- files and directories


def test_invalid_json_names_file_and_line(tmp_path):
    write(tmp_path, "broken.json", '{\n  "id": "x",\n  "name": "X"\n  "patterns": []\n}')
    with pytest.raises(TemplateInvalid) as info:
        load_templates(tmp_path)
    assert "broken.json: invalid JSON at line 4" in str(info.value)


def test_problems_from_several_files_are_reported_together(tmp_path):
    write(tmp_path, "a.json", variant(id="a", channels=[{"hop_type": "fax", "priority": 1}]))
    b = variant(id="b")
    b["patterns"][0]["weight"] = 2
    write(tmp_path, "b.json", b)
    write(tmp_path, "c.json", variant(id="c"))
    with pytest.raises(ConfigError) as info:
        load_templates(tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"invalid templates in {tmp_path}: ")
    assert "a.json: channels[0].hop_type" in msg and "b.json: patterns[0].weight" in msg
    assert "\n" not in msg
    assert len(info.value.problems) == 2


def test_duplicate_template_id_across_files(tmp_path):
    write(tmp_path, "a.json", GOOD)
    write(tmp_path, "b.json", GOOD)
    with pytest.raises(TemplateInvalid) as info:
        load_templates(tmp_path)
    assert info.value.problems == ["b.json: id: duplicate template id 'test_club' (also in a.json)"]


def test_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_templates(tmp_path / "nope")


def test_empty_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"no template files \(\*\.json\)"):
        load_templates(tmp_path)
