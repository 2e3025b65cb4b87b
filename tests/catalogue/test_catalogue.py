"""The catalogue generator (pure) and seeding (in memory, then the real embedded FalkorDB)."""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
from dataclasses import replace

import pytest

from engine.catalogue.generator import (
    BLOCK_SIZE,
    DEMO_ENTITIES,
    DEMO_SEED,
    MAX_CLUSTER,
    MIN_CLUSTER,
    WORDS_FILE,
    SeedReport,
    build_hypotheses,
    catalogue_words,
    default_template_id,
    generate_catalogue,
    iter_catalogue,
    load_words,
    seed_catalogue,
)
from engine.catalogue.templates import load_templates
from engine.core.errors import ConfigError
from engine.core.model import ENTITY_TYPES, DomainError, Status, slugify

TEMPLATES = load_templates()


@pytest.fixture(scope="module")
def demo():
    return generate_catalogue(DEMO_ENTITIES, DEMO_SEED)


# --------------------------------------------------------------------------- generator


def test_deterministic_for_n_and_seed(demo):
    assert generate_catalogue(DEMO_ENTITIES, DEMO_SEED) == demo


def test_different_seeds_give_different_catalogues(demo):
    other = generate_catalogue(DEMO_ENTITIES, DEMO_SEED + 1)
    assert [e.id for e in other] != [e.id for e in demo]
    assert collections.Counter(e.cluster for e in other) != collections.Counter(e.cluster for e in demo)


def test_prefix_stable(demo):
    assert generate_catalogue(100, DEMO_SEED) == demo[:100]
    assert generate_catalogue(1, DEMO_SEED) == demo[:1]
    assert list(itertools.islice(iter_catalogue(DEMO_SEED), 500)) == demo[:500]


def test_prefix_stable_beyond_one_block(demo):
    bigger = generate_catalogue(BLOCK_SIZE + 300, DEMO_SEED)
    assert bigger[:DEMO_ENTITIES] == demo
    assert len({e.id for e in bigger}) == len(bigger)


def test_zero_and_negative_sizes():
    assert generate_catalogue(0, 1) == []
    with pytest.raises(ConfigError, match="whole number >= 0"):
        generate_catalogue(-1, 1)


def test_ids_are_unique_normalised_slugs_of_the_name(demo):
    ids = [e.id for e in demo]
    assert len(set(ids)) == len(ids) == DEMO_ENTITIES
    for e in demo:
        assert e.id == slugify(e.name)


def test_cluster_sizes_are_realistic(demo):
    sizes = collections.Counter(e.cluster for e in demo)
    assert min(sizes.values()) >= MIN_CLUSTER == 5
    assert max(sizes.values()) <= MAX_CLUSTER == 80
    assert len(sizes) >= 60  # many markets, not a handful of giant ones


def test_cluster_is_country_and_sport(demo):
    for e in demo:
        assert e.cluster == f"{slugify(e.country)}-{slugify(e.sport)}"
    # one cluster is one country and one sport
    by_cluster = collections.defaultdict(set)
    for e in demo:
        by_cluster[e.cluster].add((e.country, e.sport))
    assert all(len(v) == 1 for v in by_cluster.values())


def test_mostly_clubs_and_every_type_present(demo):
    types = collections.Counter(e.type for e in demo)
    assert set(types) == set(ENTITY_TYPES)
    assert types["club"] / len(demo) > 0.8
    assert 50 <= types["federation"] <= 200
    assert types["league"] >= 50 and types["agency"] >= 50


def test_one_federation_per_country_and_sport(demo):
    feds = collections.Counter(e.cluster for e in demo if e.type == "federation")
    assert set(feds.values()) == {1}
    assert set(feds) == {e.cluster for e in demo}


def test_tiers_and_templates_follow_type(demo):
    assert {e.tier for e in demo} == {1, 2, 3}
    for e in demo:
        assert e.template_id == default_template_id(e.type, e.tier)
        assert e.template_id in TEMPLATES
    tiers = collections.Counter(e.tier for e in demo if e.type == "club")
    assert tiers[1] < tiers[2] + tiers[3]  # most clubs are below the top division


def test_default_template_id():
    assert default_template_id("club", 1) == "tier1_club"
    assert default_template_id("club", 2) == "tier2_club"
    assert default_template_id("club", 3) == "tier2_club"
    assert default_template_id("federation", 1) == "federation"
    assert default_template_id("league", 2) == "league"
    assert default_template_id("agency", 3) == "agency"


def test_names_come_from_real_places_and_customs(demo):
    countries = {c.name: c for c in catalogue_words().countries}
    for e in demo:
        country = countries[e.country]
        if e.type == "club":
            # a club is named after a city of its own country (or a nickname for franchises)
            squashed = e.name.replace(" ", "")
            assert any(city.replace(" ", "") in squashed for city in country.cities), e.name
        elif e.type in ("federation", "league"):
            assert country.adjective in e.name or (country.short or country.name) in e.name, e.name
        assert not any(ch.isdigit() for ch in e.name if e.type != "club"), e.name
        assert "lorem" not in e.name.lower()
    # no fallback numbering is needed at demo size
    assert not [e.name for e in demo if e.name.rsplit(" ", 1)[-1].isdigit()]


def test_names_known_examples_shape(demo):
    names = {e.name for e in demo}
    assert any(n.endswith(" Federation") or n.endswith(" Association") for n in names)
    assert any(n.endswith(" League") for n in names)
    assert any(n.split(" ", 1)[-1] in catalogue_words().nicknames for n in names)  # "Denver Falcons"


def test_the_demo_catalogue_is_pinned(demo):
    # the ids and names of the demo catalogue, fixed: a change to the word lists (data/catalogue_words.json, whose
    # order matters) or to the draws shows up here, not as a silently different catalogue
    lines = "\n".join(f"{e.id}\t{e.name}" for e in demo)
    assert hashlib.sha256(lines.encode()).hexdigest() == (
        "583049ae542771977f5683014831dddcc2b7b21b51597d1e01b441c5ee4807a3"
    )
    assert [e.id for e in demo[:3]] == ["niigata-basketball-club", "swindon-hockey-club", "tours-basket"]


# --------------------------------------------------------------------------- word lists


def test_the_shipped_word_lists_load_once():
    words = catalogue_words()
    assert words is catalogue_words()
    assert load_words() == words
    assert "England" in {c.name for c in words.countries} and ("Football", "*") in words.club_names


def _write_words(tmp_path, change):
    raw = json.loads(WORDS_FILE.read_text(encoding="utf-8"))
    change(raw)
    path = tmp_path / "words.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda raw: raw.pop("nicknames"), "nicknames: expected a non-empty list of non-empty strings"),
        (lambda raw: raw["agency_names"].append(3), "agency_names: expected a non-empty list"),
        (lambda raw: raw["countries"][1].pop("cities"), "countries[1].cities: expected a non-empty list"),
        (lambda raw: raw["countries"][0].update(weight=0), "countries[0].weight: expected a number > 0"),
        (lambda raw: raw["countries"][0]["sports"].update(Curling=0.5), "'Curling' is not one of \"sports\""),
        (lambda raw: raw["countries"][0].update(colour="red"), "countries[0]: unknown keys ['colour']"),
        (lambda raw: raw["club_names"]["Rugby"].pop("*"), "club_names.Rugby: a country plays Rugby"),
        (lambda raw: raw.update(countries=[]), "countries: expected a non-empty list"),
    ],
)
def test_malformed_word_lists_fail_with_one_line_naming_the_file(tmp_path, change, problem):
    path = _write_words(tmp_path, change)
    with pytest.raises(ConfigError) as err:
        load_words(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_word_lists_that_are_not_json_or_missing_fail_naming_the_file(tmp_path):
    bad = tmp_path / "words.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"words\.json: not valid JSON"):
        load_words(bad)
    with pytest.raises(ConfigError, match=r"missing\.json: cannot read the catalogue word lists"):
        load_words(tmp_path / "missing.json")


def test_mixed_prefix(demo):
    # the stream is shuffled: the first 100 already span several countries, sports and types
    first = demo[:100]
    assert len({e.country for e in first}) >= 10
    assert len({e.sport for e in first}) >= 4


# --------------------------------------------------------------------------- hypotheses


def test_build_hypotheses_one_per_pattern_at_its_prior(demo):
    entity = next(e for e in demo if e.template_id == "tier1_club")
    template = TEMPLATES["tier1_club"]
    hyps = build_hypotheses(entity, template, now=123.0)
    assert [h.pattern for h in hyps] == [p.name for p in template.patterns]
    assert [h.prior for h in hyps] == [h.confidence for h in hyps] == [p.weight for p in template.patterns]
    assert [h.category for h in hyps] == [p.category for p in template.patterns]
    assert all(h.entity_id == entity.id and h.status is Status.ACTIVE for h in hyps)
    assert all(h.created_at == h.updated_at == 123.0 for h in hyps)
    assert len({h.id for h in hyps}) == len(hyps)


def test_build_hypotheses_refuses_another_template(demo):
    entity = next(e for e in demo if e.template_id == "federation")
    with pytest.raises(DomainError, match="uses template 'federation', not 'agency'"):
        build_hypotheses(entity, TEMPLATES["agency"], now=0.0)


# --------------------------------------------------------------------------- seeding, in memory


class MemoryStore:
    """Just enough of GraphStore's upsert semantics to test seeding without a server."""

    def __init__(self):
        self.templates = {}
        self.entities = {}
        self.hypotheses = {}
        self.calls = []

    def upsert_templates(self, templates):
        templates = list(templates)
        self.calls.append(("templates", len(templates)))
        self.templates.update({t.id: t for t in templates})
        return len(templates)

    def upsert_entities(self, entities, hypotheses):
        self.calls.append(("entities", len(entities), len(hypotheses)))
        assert all(e.template_id in self.templates for e in entities)
        self.entities.update({e.id: e for e in entities})
        for h in hypotheses:
            self.hypotheses.setdefault(h.id, h)
        return len(entities)

    def count_entities(self):
        return len(self.entities)


class Ticks:
    def __init__(self, start=0.0, step=0.5):
        self.t, self.step = start, step

    def __call__(self):
        self.t += self.step
        return self.t


def test_seed_catalogue_writes_templates_then_entities_with_hypotheses():
    store = MemoryStore()
    report = seed_catalogue(store, 50, 3, TEMPLATES, clock=lambda: 1000.0, timer=Ticks(step=0.75))
    expected = sum(len(TEMPLATES[e.template_id].patterns) for e in generate_catalogue(50, 3))
    assert report == SeedReport(entities=50, hypotheses=expected, seconds=0.75, new_entities=50, graph_entities=50)
    assert store.calls[0][0] == "templates" and store.calls[1] == ("entities", 50, expected)
    assert len(store.hypotheses) == expected
    assert all(h.created_at == 1000.0 for h in store.hypotheses.values())


def test_seed_catalogue_twice_reports_nothing_new():
    store = MemoryStore()
    seed_catalogue(store, 40, 3, TEMPLATES)
    again = seed_catalogue(store, 40, 3, TEMPLATES)
    assert (again.entities, again.new_entities, again.graph_entities) == (40, 0, 40)


def test_seed_catalogue_missing_template_writes_nothing():
    store = MemoryStore()
    partial = {k: v for k, v in TEMPLATES.items() if k != "league"}
    with pytest.raises(ConfigError, match="template\\(s\\) 'league' not loaded"):
        seed_catalogue(store, 400, 3, partial)
    assert store.calls == []


def test_seed_report_summary():
    r = SeedReport(entities=3400, hypotheses=27000, seconds=2.94, new_entities=3400, graph_entities=3400)
    assert r.summary().startswith("seeded 3,400 entities and 27,000 hypotheses in 2.9 s")


# --------------------------------------------------------------------------- seeding, real FalkorDB


def test_seed_3400_into_falkordb_and_count(graph, demo):
    report = seed_catalogue(graph, DEMO_ENTITIES, DEMO_SEED, TEMPLATES, clock=lambda: 1_700_000_000.0)
    expected_hyps = sum(len(TEMPLATES[e.template_id].patterns) for e in demo)
    assert report.entities == report.new_entities == report.graph_entities == 3400
    assert report.hypotheses == expected_hyps
    assert graph.count_entities() == 3400
    stats = graph.stats()
    assert (stats.entities, stats.hypotheses) == (3400, expected_hyps)
    assert stats.by_status == {"ACTIVE": expected_hyps}
    assert stats.by_template == dict(collections.Counter(e.template_id for e in demo))
    assert stats.by_cluster == dict(collections.Counter(e.cluster for e in demo))
    # a sample reads back exactly
    for e in demo[::401]:
        assert graph.get_entity(e.id) == e
        assert {h.pattern for h in graph.get_hypotheses(e.id)} == {p.name for p in TEMPLATES[e.template_id].patterns}


def test_seeding_twice_does_not_duplicate_or_reset_state(graph):
    seed_catalogue(graph, 300, 11, TEMPLATES, clock=lambda: 1.0)
    first = graph.stats()
    some = generate_catalogue(1, 11)[0]
    h = graph.get_hypotheses(some.id)[0]
    worked = replace(h, confidence=0.9, accepts=3, status=Status.PROMOTED, updated_at=2.0)
    graph.save_hypotheses([worked])

    again = seed_catalogue(graph, 300, 11, TEMPLATES, clock=lambda: 3.0)
    assert (again.new_entities, again.graph_entities) == (0, 300)
    second = graph.stats()
    assert (second.entities, second.hypotheses) == (first.entities, first.hypotheses)
    assert graph.get_hypothesis(h.id) == worked  # progress survives a re-seed


def test_seeding_more_extends_the_same_catalogue(graph):
    seed_catalogue(graph, 100, 5, TEMPLATES)
    report = seed_catalogue(graph, 250, 5, TEMPLATES)
    assert (report.new_entities, report.graph_entities) == (150, 250)
    assert sorted(graph.list_entity_ids()) == sorted(e.id for e in generate_catalogue(250, 5))
