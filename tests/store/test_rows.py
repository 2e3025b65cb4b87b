"""The row codec (engine.store.rows): one encoding, and two decoders that agree to the last bit.

Random hypotheses with awkward values are written through a real embedded
GraphStore and read back through the canonical decoder (GraphStore) and the
batch read's fast row decoder (engine.store.batch)."""

from __future__ import annotations

import json
import random
from dataclasses import fields, replace

import pytest

from engine.core.model import Channel, Decision, Entity, HopType, Hypothesis, Pattern, Status, Template
from engine.store.batch import _update_row, run_batch
from engine.store.rows import (
    EXACT_FLOATS,
    HYPOTHESIS_FIELDS,
    HYPOTHESIS_FLOATS,
    ROW_COLUMNS,
    ROW_INDEX,
    hypothesis_from_props,
    hypothesis_from_row,
    hypothesis_props,
    with_exact_floats,
)

NOW = 1_700_000_000.0
SEED = 20261201

#: floats that do not survive a 15-significant-digit round trip, or sit at the edges
AWKWARD = (
    0.1 + 0.2, 1e-300, -1e-300, 1 / 3, 2 / 3, 1e300, 0.0, -0.0, 3.0, 1e-17, NOW + 0.123456789,
    0.30000000000000004, 123456789.12345678, 5e-324, -0.02,
)  # fmt: skip
#: killed reasons: empty, non-ASCII, and text that looks like a verbose list or Cypher
REASONS = (
    "", "Düsseldorf — zurückgezogen ✓", "東京のクラブ", 'said "stop", then left', "[ACCEPT, REJECT]",
    "x'}) DETACH DELETE n //", "back\\slash", "line\nbreak\ttab",
)  # fmt: skip
PATTERNS = (
    Pattern("CRM", "CRM Implementation", 0.4),
    Pattern("Ticketing ✓", "Ticketing", 0.64),
    Pattern("Données", "Data Analytics", 0.5),
    Pattern("Hiring", "C-Suite Hiring", 0.01),
    Pattern("General", "General", 0.31),
)
TEMPLATE = Template(id="rows-test", name="Rows test", patterns=PATTERNS, channels=(Channel(HopType.OFFICIAL_SITE, 1),))


def awkward_float(rng: random.Random) -> float:
    kind = rng.randrange(3)
    if kind == 0:
        return rng.choice(AWKWARD)
    if kind == 1:
        return rng.random()  # 17 significant digits: the 15-digit text is another double
    return rng.uniform(-1, 1) * 10.0 ** rng.randint(-30, 30)


def random_state(h: Hypothesis, rng: random.Random, status: Status) -> Hypothesis:
    return replace(
        h,
        prior=awkward_float(rng),
        confidence=awkward_float(rng),
        status=status,
        accepts=rng.randint(0, 50),
        weak_accepts=rng.randint(0, 50),
        rejects=rng.randint(0, 50),
        no_progress=rng.randint(0, 50),
        last_delta=awkward_float(rng),
        recent=tuple(rng.choice(list(Decision)) for _ in range(rng.randint(0, 5))),
        created_at=awkward_float(rng),
        updated_at=awkward_float(rng),
        killed_reason=rng.choice(REASONS),
    )


def seeded_random_hypotheses(graph, n_entities: int = 8) -> list[Hypothesis]:
    """Entities with random hypothesis states saved through ``graph``; the states as written."""
    rng = random.Random(SEED)
    graph.upsert_templates([TEMPLATE])
    ents = [
        Entity(
            id=f"club-{i}",
            name=f"Club {i} ü",
            sport="football",
            country="DE",
            type="club",
            tier=1,
            cluster="de",
            template_id=TEMPLATE.id,
        )  # fmt: skip
        for i in range(n_entities)
    ]
    fresh = [Hypothesis.new(e.id, p, NOW) for e in ents for p in PATTERNS]
    graph.upsert_entities(ents, fresh)
    statuses = list(Status)
    written = [random_state(h, rng, statuses[i % len(statuses)]) for i, h in enumerate(fresh)]
    graph.save_hypotheses(written)
    return written


def assert_same(got: Hypothesis, want: Hypothesis, how: str) -> None:
    for name in HYPOTHESIS_FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        if isinstance(b, float):
            assert type(a) is float and a.hex() == b.hex(), f"{how}: {want.id} {name}: {a!r} != {b!r}"
        else:
            assert a == b and type(a) is type(b), f"{how}: {want.id} {name}: {a!r} != {b!r}"
    assert got == want


# --------------------------------------------------------------------------- the codec's shape


def test_columns_are_the_hypothesis_fields_in_dataclass_order_then_the_sidecar():
    assert tuple(f.name for f in fields(Hypothesis)) == HYPOTHESIS_FIELDS
    assert ROW_COLUMNS == HYPOTHESIS_FIELDS + (EXACT_FLOATS,)
    assert all(ROW_COLUMNS[i] == name for name, i in ROW_INDEX.items())
    assert tuple(f.name for f in fields(Hypothesis) if f.type == "float") == HYPOTHESIS_FLOATS


def test_props_hold_every_field_and_the_batch_update_writes_the_same_sidecar():
    h = random_state(Hypothesis.new("e", PATTERNS[0], NOW), random.Random(SEED), Status.KILLED)
    props = hypothesis_props(h)
    assert tuple(props) == HYPOTHESIS_FIELDS
    assert hypothesis_from_props(with_exact_floats(props)) == h
    # the batch update's hand-built row carries the sidecar GraphStore writes, byte for byte
    assert _update_row(h)[EXACT_FLOATS] == with_exact_floats(props)[EXACT_FLOATS]


def verbose_row(props: dict, sidecar: str | None) -> list:
    """A row as the server's verbose reply has it: doubles as 15-digit text, a list as ``[A, B]``."""
    row = []
    for name in HYPOTHESIS_FIELDS:
        v = props[name]
        row.append(f"{v:.15g}" if isinstance(v, float) else "[" + ", ".join(v) + "]" if isinstance(v, list) else v)
    return row + [sidecar]


@pytest.mark.parametrize("with_sidecar", [True, False])
def test_row_decoder_equals_props_decoder_on_the_same_reply(with_sidecar):
    rng = random.Random(SEED)
    for i in range(200):
        h = random_state(Hypothesis.new(f"e{i}", PATTERNS[i % len(PATTERNS)], NOW), rng, list(Status)[i % len(Status)])
        stored = with_exact_floats(hypothesis_props(h))
        sidecar = stored.pop(EXACT_FLOATS)
        if not with_sidecar:
            sidecar = None  # a node written by hand, without one: both decoders use the 15-digit values
        reply = {k: float(f"{v:.15g}") if isinstance(v, float) else v for k, v in stored.items()}
        if sidecar is not None:
            reply[EXACT_FLOATS] = sidecar
        assert_same(hypothesis_from_row(verbose_row(stored, sidecar)), hypothesis_from_props(reply), "row vs props")
        if with_sidecar:
            assert_same(hypothesis_from_props(reply), h, "props vs written")


def test_a_stale_sidecar_loses_to_the_stored_value_in_both_decoders():
    h = replace(Hypothesis.new("e", PATTERNS[0], NOW), confidence=0.1 + 0.2)
    stored = with_exact_floats(hypothesis_props(h))
    sidecar = stored.pop(EXACT_FLOATS)
    stored["confidence"] = 0.25  # changed by hand after the write
    reply = {**stored, EXACT_FLOATS: sidecar}
    assert hypothesis_from_props(reply).confidence == 0.25
    assert hypothesis_from_row(verbose_row(stored, sidecar)).confidence == 0.25
    assert json.loads(sidecar)["confidence"] == 0.1 + 0.2


# --------------------------------------------------------------------------- round trip through the store


def test_random_hypotheses_round_trip_through_both_decoders(graph, settings):
    written = seeded_random_hypotheses(graph)
    floats = [getattr(h, f) for h in written for f in HYPOTHESIS_FLOATS]
    assert any(float(f"{x:.15g}") != x for x in floats)  # the data really exercises the sidecar
    assert {h.status for h in written} == set(Status)
    assert {len(h.recent) for h in written} == set(range(6))
    assert "" in {h.killed_reason for h in written} and any(not h.killed_reason.isascii() for h in written)

    ids = sorted({h.entity_id for h in written})
    canonical = {eid: graph.get_hypotheses(eid) for eid in ids}
    many = graph.get_hypotheses_many(ids)
    res = run_batch(settings, lambda b: b.read_hypotheses(ids, chunk_size=3))
    assert res.ok
    by_id = {h.id: h for h in written}
    for eid in ids:
        assert (
            [h.id for h in canonical[eid]]
            == [h.id for h in res.values[eid]]
            == sorted(h.id for h in written if h.entity_id == eid)
        )
        for got, fast, other in zip(canonical[eid], res.values[eid], many[eid]):
            want = by_id[got.id]
            assert_same(got, want, "GraphStore.get_hypotheses")
            assert_same(fast, want, "batch read_hypotheses")
            assert_same(other, want, "GraphStore.get_hypotheses_many")
            assert_same(graph.get_hypothesis(got.id), want, "GraphStore.get_hypothesis")


def test_an_id_the_graph_could_not_find_again_is_refused_before_any_write():
    """Reliability issue, case 7: a 10 MB id was written, then not found by the id index (> 4,096 bytes)."""
    import pytest

    from engine.core.model import DomainError
    from engine.store.rows import MAX_ID_CHARS, check_id

    assert check_id("a" * MAX_ID_CHARS, "entity id") == "a" * MAX_ID_CHARS
    for bad in ("", "a" * (MAX_ID_CHARS + 1), "x" * 10_485_760):
        with pytest.raises(DomainError, match="ids must have 1 to 1,024 characters"):
            check_id(bad, "entity id")
