"""The entity catalogue: a deterministic generator of plausible sports organisations, and seeding.

``generate_catalogue(n, seed)`` builds clubs (most), federations, leagues and
agencies in clusters of one country and sport ("spain-basketball"). The
result depends only on ``(n, seed)`` and is prefix-stable: the first 100 of
``n=3400`` are exactly ``n=100``. That holds because entities come from an
endless stream built in blocks of ``BLOCK_SIZE`` (3,400, the demo size):

* each block has a plan, drawn from ``seed`` and the block number only:
  clusters with realistic sizes (5-80) summing to the block size, and in each
  cluster the members (a federation, a league or two, an agency or three,
  clubs of tiers 1-3);
* the block's members are shuffled, so any prefix mixes countries and sports;
* names are drawn in stream order from word lists (cities, naming customs of
  each country and sport, nicknames; data/catalogue_words.json), and a name whose slug is taken draws
  again, so de-duplication is deterministic and ids are unique.

With ``n == BLOCK_SIZE`` cluster sizes are exactly the plan. A catalogue
larger than one block adds further clusters per country and sport
("spain-basketball-2") made of clubs and agencies, so no cluster outgrows 80.
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from engine.core.access import Actor
from engine.core.errors import ConfigError
from engine.core.model import DomainError, Entity, Hypothesis, Template, slugify
from engine.core.settings import SHIPPED_DATA_DIR
from engine.store.access import authorize

#: Entities per block of the stream; also the demo catalogue's size.
BLOCK_SIZE = 3400
MIN_CLUSTER = 5
MAX_CLUSTER = 80
DEMO_ENTITIES = 3400
DEMO_SEED = 7


# --------------------------------------------------------------------------- word lists

#: The generator's word lists: countries (cities, naming custom, sports), club naming customs, nicknames,
#: federation, league and agency name patterns. Their order is part of the output: entries are drawn by index.
WORDS_FILE = SHIPPED_DATA_DIR / "catalogue_words.json"


@dataclass(frozen=True)
class Country:
    """A country of the catalogue: its sports market and how its organisations are named."""

    name: str
    adjective: str  # "Norwegian Handball Federation"
    style: str  # naming custom of its clubs
    weight: float  # relative size of its sports market
    sports: Mapping[str, float]  # sport -> popularity in [0, 1]
    cities: tuple[str, ...]
    short: str = ""  # "USA Basketball"
    royal: bool = False  # "Royal Spanish Football Federation"

    @property
    def slug(self) -> str:
        return slugify(self.name)


@dataclass(frozen=True)
class CatalogueWords:
    """The word lists names are drawn from (``WORDS_FILE``).

    ``club_names`` maps (sport, style) to patterns, style "*" being any style: "{c}" is a city,
    "{n}" a nickname, "{a}" an Arabic club word.
    """

    sports: tuple[str, ...]
    countries: tuple[Country, ...]
    nicknames: tuple[str, ...]
    arab_club_words: tuple[str, ...]
    club_names: Mapping[tuple[str, str], tuple[str, ...]]
    federation_names: tuple[str, ...]
    federation_names_en: tuple[str, ...]
    league_names_top: tuple[str, ...]
    league_names_second: tuple[str, ...]
    agency_prefixes: tuple[str, ...]
    agency_surnames: tuple[str, ...]
    agency_names: tuple[str, ...]


_WORD_LISTS = (
    "sports", "nicknames", "arab_club_words", "federation_names", "federation_names_en", "league_names_top",
    "league_names_second", "agency_prefixes", "agency_surnames", "agency_names",
)  # fmt: skip


def _strings(path: Path, where: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and s.strip() for s in value):
        raise ConfigError(f"{path}: {where}: expected a non-empty list of non-empty strings")
    return tuple(value)


def _country(path: Path, where: str, raw: object, sports: tuple[str, ...]) -> Country:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {where}: expected an object")
    for key in ("name", "adjective", "style"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{path}: {where}.{key}: expected a non-empty string")
    weight = raw.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
        raise ConfigError(f"{path}: {where}.weight: expected a number > 0")
    popularity = raw.get("sports")
    if not isinstance(popularity, dict) or not popularity:
        raise ConfigError(f"{path}: {where}.sports: expected an object of sport -> popularity")
    for sport, p in popularity.items():
        if sport not in sports:
            raise ConfigError(f'{path}: {where}.sports: {sport!r} is not one of "sports"')
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise ConfigError(f"{path}: {where}.sports.{sport}: expected a popularity in (0, 1]")
    short, royal = raw.get("short", ""), raw.get("royal", False)
    if not isinstance(short, str) or not isinstance(royal, bool):
        raise ConfigError(f"{path}: {where}: short must be a string and royal true or false")
    unknown = set(raw) - {"name", "adjective", "style", "weight", "sports", "cities", "short", "royal"}
    if unknown:
        raise ConfigError(f"{path}: {where}: unknown keys {sorted(unknown)}")
    return Country(
        raw["name"],
        raw["adjective"],
        raw["style"],
        weight,
        dict(popularity),
        _strings(path, f"{where}.cities", raw.get("cities")),
        short=short,
        royal=royal,
    )


def load_words(path: Path = WORDS_FILE) -> CatalogueWords:
    """Read and check the word lists; a malformed file raises a one-line ``ConfigError`` naming it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the catalogue word lists ({exc.strerror or exc})") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected an object of word lists")
    lists = {key: _strings(path, key, raw.get(key)) for key in _WORD_LISTS}
    countries = raw.get("countries")
    if not isinstance(countries, list) or not countries:
        raise ConfigError(f"{path}: countries: expected a non-empty list of countries")
    parsed = tuple(_country(path, f"countries[{i}]", c, lists["sports"]) for i, c in enumerate(countries))
    club_raw = raw.get("club_names")
    if not isinstance(club_raw, dict):
        raise ConfigError(f"{path}: club_names: expected an object of sport -> style -> patterns")
    club_names: dict[tuple[str, str], tuple[str, ...]] = {}
    for sport, styles in club_raw.items():
        if sport not in lists["sports"] or not isinstance(styles, dict):
            raise ConfigError(f'{path}: club_names.{sport}: expected one of "sports" mapping style -> patterns')
        for style, patterns in styles.items():
            club_names[(sport, style)] = _strings(path, f"club_names.{sport}.{style}", patterns)
    for sport in {s for c in parsed for s in c.sports}:
        if (sport, "*") not in club_names:  # the fallback of every style
            raise ConfigError(f'{path}: club_names.{sport}: a country plays {sport}, so it needs a "*" style')
    return CatalogueWords(
        sports=lists["sports"],
        countries=parsed,
        nicknames=lists["nicknames"],
        arab_club_words=lists["arab_club_words"],
        club_names=club_names,
        federation_names=lists["federation_names"],
        federation_names_en=lists["federation_names_en"],
        league_names_top=lists["league_names_top"],
        league_names_second=lists["league_names_second"],
        agency_prefixes=lists["agency_prefixes"],
        agency_surnames=lists["agency_surnames"],
        agency_names=lists["agency_names"],
    )


@functools.cache
def catalogue_words() -> CatalogueWords:
    """The shipped word lists, read once."""
    return load_words()


def _sport_label(sport: str, country: Country) -> str:
    """How the sport is called in names: association football is 'Soccer' in North America and Oceania."""
    if sport == "Football" and country.name in ("United States", "Canada", "Australia", "New Zealand"):
        return "Soccer"
    return sport


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class _Slot:
    """One planned entity: what it is, not yet what it is called."""

    country: Country
    sport: str
    cluster: str
    type: str
    tier: int
    rank: int = 0  # league: 0 top division, 1 second


def default_template_id(entity_type: str, tier: int) -> str:
    """The shipped template for an organisation of this type and tier."""
    if entity_type == "club":
        return "tier1_club" if tier == 1 else "tier2_club"
    return entity_type  # "federation", "league", "agency"


def _cluster_sizes(rng: random.Random, total: int) -> list[tuple[Country, str, int]]:
    """Clusters (country, sport, size) with MIN..MAX members summing to ``total``."""
    pairs = []
    for country in catalogue_words().countries:
        for sport, popularity in country.sports.items():
            # market size x popularity, with a seeded spread so seeds differ
            pairs.append((country, sport, country.weight * popularity * rng.lognormvariate(0.0, 0.25)))
    weights = [w for _, _, w in pairs]
    # proportional sizes, clamped; rescale until the clamped sizes sum to total
    scale = total / sum(weights)
    for _ in range(60):
        sizes = [min(MAX_CLUSTER, max(MIN_CLUSTER, w * scale)) for w in weights]
        s = sum(sizes)
        if abs(s - total) < 0.5:
            break
        scale *= total / s
    ints = [int(x) for x in sizes]
    # largest remainder first, then whatever room the bounds leave
    order = sorted(range(len(sizes)), key=lambda i: (-(sizes[i] - ints[i]), i))
    short = total - sum(ints)
    i = 0
    while short != 0 and i < 10 * len(order):
        j = order[i % len(order)]
        step = 1 if short > 0 else -1
        if MIN_CLUSTER <= ints[j] + step <= MAX_CLUSTER:
            ints[j] += step
            short -= step
        i += 1
    if short != 0:  # only if the word lists cannot hold `total` (a programming error)
        raise ConfigError(f"cannot plan {total} entities in clusters of {MIN_CLUSTER}-{MAX_CLUSTER}")
    return [(c, sport, size) for (c, sport, _), size in zip(pairs, ints)]


def _block_plan(seed: int, block: int) -> list[_Slot]:
    """The shuffled members of one block of the stream; depends on (seed, block) only."""
    rng = random.Random(f"catalogue:{seed}:{block}")
    slots: list[_Slot] = []
    for country, sport, size in _cluster_sizes(rng, BLOCK_SIZE):
        cluster = f"{country.slug}-{slugify(sport)}" + (f"-{block + 1}" if block else "")
        popularity = country.sports[sport]
        members: list[_Slot] = []
        if block == 0:
            members.append(_Slot(country, sport, cluster, "federation", 1 if popularity >= 0.6 else 2))
            if size >= 12:
                members.append(_Slot(country, sport, cluster, "league", 1, rank=0))
            if size >= 40:
                members.append(_Slot(country, sport, cluster, "league", 2, rank=1))
        agencies = int(size * 0.045 + rng.random())
        for _ in range(agencies):
            members.append(_Slot(country, sport, cluster, "agency", rng.choices((1, 2, 3), (2, 4, 4))[0]))
        clubs = size - len(members)
        tier1 = min(20, round(clubs * 0.3))
        tier2 = round(clubs * 0.35)
        for k in range(clubs):
            tier = 1 if k < tier1 else 2 if k < tier1 + tier2 else 3
            members.append(_Slot(country, sport, cluster, "club", tier))
        slots.extend(members[:size])
    rng.shuffle(slots)
    return slots


# --------------------------------------------------------------------------- names


def _candidate_name(slot: _Slot, rng: random.Random) -> str:
    words = catalogue_words()
    c = slot.country
    label = _sport_label(slot.sport, c)
    adj = c.adjective
    if slot.type == "club":
        patterns = words.club_names.get((slot.sport, c.style)) or words.club_names[(slot.sport, "*")]
        pattern = rng.choice(patterns)
        city = rng.choice(c.cities)
        if pattern.startswith("{c}spor"):
            city = city.replace(" ", "")
        return pattern.format(c=city, n=rng.choice(words.nicknames), a=rng.choice(words.arab_club_words))
    if slot.type == "federation":
        if c.style in ("en", "us", "anz"):
            pattern = rng.choice(words.federation_names_en)
        else:
            pattern = rng.choice(words.federation_names)
            if c.royal and rng.random() < 0.6:
                pattern = "Royal " + pattern
        if slot.sport == "Rugby" and c.style in ("en", "anz") and rng.random() < 0.6:
            pattern = "{adj} Rugby Union"
        if slot.sport == "Cricket" and rng.random() < 0.6:
            pattern = "{short} Cricket Board"
        return pattern.format(adj=adj, sport=label, short=c.short or c.name)
    if slot.type == "league":
        pattern = rng.choice(words.league_names_top if slot.rank == 0 else words.league_names_second)
        return pattern.format(adj=adj, sport=label)
    pattern = rng.choice(words.agency_names)
    s, s2 = rng.sample(words.agency_surnames, 2)
    return pattern.format(p=rng.choice(words.agency_prefixes), c=rng.choice(c.cities), sport=label, s=s, s2=s2)


def _unique_name(slot: _Slot, rng: random.Random, taken: set[str]) -> str:
    for _ in range(40):
        name = _candidate_name(slot, rng)
        if slugify(name) not in taken:
            return name
    # a crowded pool (huge catalogues): number the last candidate deterministically
    k = 2
    while slugify(f"{name} {k}") in taken:
        k += 1
    return f"{name} {k}"


def iter_catalogue(seed: int) -> Iterator[Entity]:
    """The endless, deterministic stream of entities behind ``generate_catalogue``."""
    names = random.Random(f"names:{seed}")
    taken: set[str] = set()
    block = 0
    while True:
        for slot in _block_plan(seed, block):
            name = _unique_name(slot, names, taken)
            entity_id = slugify(name)
            taken.add(entity_id)
            yield Entity(
                id=entity_id,
                name=name,
                sport=slot.sport,
                country=slot.country.name,
                type=slot.type,
                tier=slot.tier,
                cluster=slot.cluster,
                template_id=default_template_id(slot.type, slot.tier),
            )
        block += 1


def generate_catalogue(n: int, seed: int) -> list[Entity]:
    """``n`` plausible sports organisations, deterministic for (n, seed) and prefix-stable in n."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"catalogue size must be a whole number >= 0, got {n!r}")
    stream = iter_catalogue(seed)
    return [next(stream) for _ in range(n)]


# --------------------------------------------------------------------------- hypotheses and seeding


def build_hypotheses(entity: Entity, template: Template, now: float) -> list[Hypothesis]:
    """One fresh hypothesis per pattern of the entity's template; prior = pattern weight."""
    if template.id != entity.template_id:
        raise DomainError(f"entity {entity.id!r} uses template {entity.template_id!r}, not {template.id!r}")
    return [Hypothesis.new(entity.id, pattern, now) for pattern in template.patterns]


class CatalogueStore(Protocol):
    """The part of GraphStore that seeding and import need."""

    def upsert_templates(self, templates) -> int: ...
    def upsert_entities(self, entities: Sequence[Entity], hypotheses: Sequence[Hypothesis]) -> int: ...
    def count_entities(self) -> int: ...


@dataclass(frozen=True)
class SeedReport:
    entities: int  # written (created or refreshed)
    hypotheses: int  # built; existing ones kept their state
    seconds: float
    new_entities: int = 0  # how many the graph did not hold before
    graph_entities: int = 0  # entities in the graph afterwards

    def summary(self) -> str:
        return (
            f"seeded {self.entities:,} entities and {self.hypotheses:,} hypotheses in {self.seconds:.1f} s "
            f"({self.new_entities:,} new; the graph holds {self.graph_entities:,} entities)"
        )


def templates_for(entities: Sequence[Entity], templates: Mapping[str, Template]) -> dict[str, Template]:
    """The templates ``entities`` use; ConfigError naming any that is missing."""
    used = sorted({e.template_id for e in entities})
    missing = [t for t in used if t not in templates]
    if missing:
        raise ConfigError(
            f"template(s) {', '.join(map(repr, missing))} not loaded (have: {', '.join(sorted(templates))}): "
            "add the JSON file under data/templates"
        )
    return {t: templates[t] for t in used}


def write_entities(
    graph: CatalogueStore, entities: Sequence[Entity], templates: Mapping[str, Template], now: float
) -> int:
    """Upsert the templates used, then the entities with one hypothesis per pattern. Returns hypotheses built."""
    used = templates_for(entities, templates)
    graph.upsert_templates(used.values())
    hypotheses = [h for e in entities for h in build_hypotheses(e, used[e.template_id], now)]
    graph.upsert_entities(entities, hypotheses)
    return len(hypotheses)


def seed_entities(
    ops,
    graph: CatalogueStore,
    n: int,
    seed: int,
    templates: Mapping[str, Template],
    *,
    actor: Actor,
    details: Mapping[str, object] | None = None,
) -> SeedReport:
    """``seed_catalogue`` on a person's behalf (operator: it writes entities): authorized first, then
    audited as ``seed`` (what the demo's metrics check for) with the report and ``details``."""
    who = authorize(ops, actor, "catalogue.import")
    report = seed_catalogue(graph, n, seed, templates)
    ops.audit(who, "seed", f"catalogue:{seed}", {**asdict(report), "seed": seed, **dict(details or {})})
    return report


def seed_catalogue(
    graph: CatalogueStore,
    n: int,
    seed: int,
    templates: Mapping[str, Template],
    clock: Callable[[], float] = time.time,
    timer: Callable[[], float] = time.perf_counter,
) -> SeedReport:
    """Generate ``n`` entities from ``seed`` and upsert them with their hypotheses (idempotent).

    ``clock`` stamps the new hypotheses; ``timer`` measures how long it took.
    Re-seeding refreshes entity fields and leaves existing hypotheses' state alone.
    """
    started = timer()
    entities = generate_catalogue(n, seed)
    before = graph.count_entities()
    hypotheses = write_entities(graph, entities, templates, clock())
    after = graph.count_entities()
    return SeedReport(
        entities=len(entities),
        hypotheses=hypotheses,
        seconds=timer() - started,
        new_entities=after - before,
        graph_entities=after,
    )
