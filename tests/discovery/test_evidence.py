"""Evidence sources: the HTTP evaluator against a real local server, replay and recording, from many threads."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.catalogue.generator import build_hypotheses, generate_catalogue, templates_for
from engine.catalogue.templates import load_templates
from engine.core.errors import ConfigError
from engine.core.model import Decision, Depth, HopType
from engine.discovery.evidence import (
    DEFAULT_MAX_CONNECTIONS,
    EvidenceUnavailable,
    HTTPEvidenceSource,
    RecordingSource,
    ReplayRow,
    ReplaySource,
    rows_from_run,
    write_replay,
)
from engine.discovery.limits import MAX_CONCURRENCY
from engine.discovery.systems import run_discovery
from engine.discovery.world import SimulatedWorld
from tests.support.evaluator import Evaluator

NOW = 1_700_000_000.0
ENTITIES = generate_catalogue(12, 7)
TEMPLATES = templates_for(ENTITIES, load_templates())
E = ENTITIES[0]
H = build_hypotheses(E, TEMPLATES[E.template_id], NOW)[0]


# --------------------------------------------------------------------------- a scripted evaluator


@pytest.fixture
def evaluator():
    ev = Evaluator()
    yield ev
    ev.close()


def _source(url, **kw):
    kw.setdefault("timeout_s", 2.0)
    kw.setdefault("sleeper", lambda s: None)
    return HTTPEvidenceSource(url, **kw)


def test_a_good_answer_is_read_and_the_request_follows_the_contract(evaluator):
    src = _source(evaluator.url)
    r = src.evaluate(E, H, HopType.PRESS_RELEASE, Depth.SURFACE, 0)
    assert (r.decision, r.cost_usd, r.url, r.excerpt, r.error) == (
        Decision.ACCEPT,
        0.021,
        "https://x.example/a",
        "found it",
        None,
    )
    assert r.latency_s >= 0
    (req,) = evaluator.requests
    assert req["path"] == "/evaluate" and req["ctype"] == "application/json"
    body = req["body"]
    assert body["hop_type"] == "press_release" and body["depth"] == "SURFACE"
    assert body["entity"]["id"] == E.id and body["entity"]["name"] == E.name
    assert body["hypothesis"] == {"id": H.id, "pattern": H.pattern, "category": H.category, "confidence": H.confidence}
    assert src.errors == {}


def test_timeout_is_an_errored_hop_booked_at_the_quote_and_never_retried(evaluator):
    evaluator.delay_s = 1.0
    src = _source(evaluator.url, timeout_s=0.2, max_hop_cost_usd=0.05)
    r = src.evaluate(E, H, HopType.DOCUMENT, Depth.AUTHORITY, 0)
    assert r.error == "timeout" and r.decision is Decision.NO_PROGRESS
    assert r.cost_usd == pytest.approx(0.05)  # may have been charged: budget errs on the safe side
    time.sleep(1.2)
    assert len(evaluator.requests) == 1  # no retry that could charge twice
    assert src.errors == {"timeout": 1} and src.retries == 0


@pytest.mark.parametrize(
    "status,text,error,cost",
    [
        (503, "", "http_5xx", 0.0),
        (500, json.dumps({"cost_usd": 0.01}), "http_5xx", 0.01),
        (404, "not found", "http_4xx", 0.0),
        (200, "this is not json", "bad_response", 0.05),
        (200, json.dumps({"decision": "MAYBE", "cost_usd": 0.02}), "bad_response", 0.02),
        (200, json.dumps({"decision": "ACCEPT"}), "bad_response", 0.05),
        (200, json.dumps({"decision": "ACCEPT", "cost_usd": -1}), "bad_response", 0.05),
        (200, json.dumps(["ACCEPT", 0.02]), "bad_response", 0.05),
    ],
)
def test_server_errors_and_malformed_answers_are_counted_by_type(evaluator, status, text, error, cost):
    evaluator.reply = lambda body: (status, text)
    src = _source(evaluator.url, max_hop_cost_usd=0.05)
    r = src.evaluate(E, H, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)
    assert (r.error, r.decision) == (error, Decision.NO_PROGRESS)
    assert r.cost_usd == pytest.approx(cost)
    assert len(evaluator.requests) == 1
    assert src.errors == {error: 1}


def test_errors_accumulate_per_type_over_a_run(evaluator):
    answers = iter([(200, json.dumps({"decision": "REJECT", "cost_usd": 0.01})), (503, ""), (503, ""), (200, "x")] * 10)
    evaluator.reply = lambda body: next(answers)
    src = _source(evaluator.url)
    t = TEMPLATES[E.template_id]
    result = run_discovery(E, t, build_hypotheses(E, t, NOW), src, system="old", clock=lambda: NOW)
    assert sum(src.errors.values()) == result.error_count == len(result.errors) > 0
    assert set(src.errors) == {"http_5xx", "bad_response"}
    assert src.errors["http_5xx"] >= src.errors["bad_response"] > 0
    assert result.cost_usd <= 0.50


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_evaluator_is_one_line_error_after_bounded_connect_retries():
    naps = []
    src = _source(f"http://127.0.0.1:{_closed_port()}/evaluate", max_retries=2, sleeper=naps.append)
    with pytest.raises(EvidenceUnavailable) as err:
        src.evaluate(E, H, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)
    msg = str(err.value)
    assert "unreachable" in msg and "\n" not in msg and "3 tries" in msg
    assert src.retries == 2 and len(naps) == 2 and naps[1] > naps[0]  # backoff


def test_unreachable_evaluator_abandons_the_run_and_writes_nothing():
    class Store:
        applied = []

        def cluster_confirmations(self, cluster):
            return {}

        def apply_run(self, *a, **kw):
            self.applied.append(a)

    store = Store()
    t = TEMPLATES[E.template_id]
    src = _source(f"http://127.0.0.1:{_closed_port()}/x", max_retries=0)
    with pytest.raises(EvidenceUnavailable):
        run_discovery(E, t, build_hypotheses(E, t, NOW), src, store=store, clock=lambda: NOW)
    assert store.applied == []


def test_bad_url_is_a_config_error():
    with pytest.raises(ConfigError, match="not an http"):
        HTTPEvidenceSource("ftp://example.org/x")
    with pytest.raises(ConfigError):
        HTTPEvidenceSource("localhost:8000")


def test_quote_grows_to_the_dearest_cost_seen(evaluator):
    evaluator.reply = lambda body: (200, json.dumps({"decision": "ACCEPT", "cost_usd": 0.09}))
    src = _source(evaluator.url, max_hop_cost_usd=0.05)
    assert src.max_cost(HopType.DOCUMENT, Depth.AUTHORITY) == 0.05
    src.evaluate(E, H, HopType.DOCUMENT, Depth.AUTHORITY, 0)
    assert src.max_cost(HopType.DOCUMENT, Depth.AUTHORITY) == 0.09


# --------------------------------------------------------------------------- recording and replay


def test_replay_round_trip_gives_the_same_run(tmp_path):
    world = SimulatedWorld(4, TEMPLATES, ENTITIES)
    rec = RecordingSource(world)
    originals = []
    for e in ENTITIES[:6]:
        t = TEMPLATES[e.template_id]
        originals.append(
            run_discovery(e, t, build_hypotheses(e, t, NOW), rec, clock=lambda: NOW, cluster_confirmations={})
        )
    path = rec.save(tmp_path / "evidence.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    hop_lines = [d for d in lines if d.get("kind") != "quote"]
    quote_lines = [d for d in lines if d.get("kind") == "quote"]
    assert len(hop_lines) == sum(r.iterations for r in originals)
    # quotes of channels considered but never bought are kept too (the new system scores them)
    assert {(q["hop_type"], q["depth"]) for q in quote_lines} > {(d["hop_type"], d["depth"]) for d in hop_lines}
    replay = ReplaySource.load(path, strict=True)
    for e, original in zip(ENTITIES[:6], originals):
        t = TEMPLATES[e.template_id]
        again = run_discovery(e, t, build_hypotheses(e, t, NOW), replay, clock=lambda: NOW, cluster_confirmations={})
        assert again.hops == original.hops
        assert again.stop_reason == original.stop_reason and again.actionable == original.actionable
    assert replay.misses == 0


def test_rows_from_a_finished_run_replay_it(tmp_path):
    world = SimulatedWorld(4, TEMPLATES, ENTITIES)
    e = ENTITIES[1]
    t = TEMPLATES[e.template_id]
    original = run_discovery(e, t, build_hypotheses(e, t, NOW), world, system="old", clock=lambda: NOW)
    path = write_replay(rows_from_run(original), tmp_path / "r.jsonl")
    replay = ReplaySource.load(path, default_quote_usd=world.profile.quote(HopType.DOCUMENT))
    again = run_discovery(e, t, build_hypotheses(e, t, NOW), replay, system="old", clock=lambda: NOW)
    assert [(h.hypothesis_id, h.hop_type, h.decision) for h in again.hops] == [
        (h.hypothesis_id, h.hop_type, h.decision) for h in original.hops
    ]


def test_replay_miss_is_counted_or_strict(tmp_path):
    path = write_replay([], tmp_path / "empty.jsonl")
    loose = ReplaySource.load(path)
    r = loose.evaluate(E, H, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)
    assert (r.error, r.decision, r.cost_usd) == ("replay_miss", Decision.NO_PROGRESS, 0.0)
    assert loose.misses == 1
    with pytest.raises(EvidenceUnavailable, match="no record"):
        ReplaySource.load(path, strict=True).evaluate(E, H, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)


def test_replay_matches_by_pattern_when_the_id_is_absent():
    row = ReplayRow(
        entity=E.id,
        hypothesis="",
        pattern=H.pattern,
        hop_type="official_site",
        depth=1,
        attempt=0,
        decision="WEAK_ACCEPT",
        cost_usd=0.012,
        latency_s=1.1,
    )
    r = ReplaySource([row]).evaluate(E, H, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)
    assert (r.decision, r.cost_usd) == (Decision.WEAK_ACCEPT, 0.012)


def test_bad_replay_file_names_the_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    good = json.dumps(
        {
            "entity": "a",
            "hypothesis": "a::b",
            "pattern": "b",
            "hop_type": "official_site",
            "depth": 1,
            "attempt": 0,
            "decision": "ACCEPT",
            "cost_usd": 0.01,
            "latency_s": 1.0,
        }
    )
    p.write_text(good + "\n" + good.replace("ACCEPT", "PERHAPS") + "\n")
    with pytest.raises(ConfigError, match="line 2"):
        ReplaySource.load(p)
    with pytest.raises(ConfigError, match="does not exist"):
        ReplaySource.load(tmp_path / "missing.jsonl")


# --------------------------------------------------------------------------- pooled connections


def test_sequential_hops_share_one_kept_alive_connection(evaluator):
    with _source(evaluator.url) as src:
        for attempt in range(20):
            assert src.evaluate(E, H, HopType.OFFICIAL_SITE, Depth.SURFACE, attempt).error is None
    assert len(evaluator.requests) == 20
    assert evaluator.connections == 1  # one TCP (and TLS) handshake for the whole run, not one per hop


def test_a_stopped_evaluator_is_unreachable_even_through_a_kept_connection(evaluator):
    src = _source(evaluator.url, max_retries=1)
    assert src.evaluate(E, H, HopType.OFFICIAL_SITE, Depth.SURFACE, 0).error is None
    evaluator.close()
    with pytest.raises(EvidenceUnavailable, match="unreachable"):
        src.evaluate(E, H, HopType.OFFICIAL_SITE, Depth.SURFACE, 1)
    assert src.errors == {}  # the kept connection was not mistaken for a sent request
    src.close()


def test_a_closed_source_refuses_hops_in_one_line(evaluator):
    src = _source(evaluator.url)
    src.close()
    with pytest.raises(EvidenceUnavailable, match="closed") as err:
        src.evaluate(E, H, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)
    assert "\n" not in str(err.value) and evaluator.requests == []


def test_the_pool_holds_as_many_connections_as_a_run_keeps_entities_in_flight():
    assert DEFAULT_MAX_CONNECTIONS == MAX_CONCURRENCY
    with pytest.raises(ConfigError, match="max_connections"):
        HTTPEvidenceSource("http://127.0.0.1:9/x", max_connections=0)


# --------------------------------------------------------------------------- many threads at once

THREADS = 32
PEOPLE = ENTITIES[:8]


def _hops(attempts: int = 2) -> list[tuple]:
    """(entity, hypothesis, hop type, depth, attempt) of a few hundred hops over several entities."""
    out = []
    for e in PEOPLE:
        for h in build_hypotheses(e, TEMPLATES[e.template_id], NOW)[:4]:
            for hop in (HopType.OFFICIAL_SITE, HopType.CAREERS_PAGE, HopType.PRESS_RELEASE, HopType.DOCUMENT):
                for a in range(attempts):
                    out.append((e, h, hop, Depth.AUTHORITY, a))
    return out


def _answer(r) -> tuple:
    return (r.decision, r.cost_usd, r.error, r.url, r.excerpt)


def _run(source, hops, threads: int) -> list[tuple]:
    """The answers to ``hops`` in their order, asked from ``threads`` threads at once (1: in this thread)."""
    if threads == 1:
        return [_answer(source.evaluate(*hop)) for hop in hops]
    with ThreadPoolExecutor(threads) as pool:
        return [_answer(r) for r in pool.map(lambda hop: source.evaluate(*hop), hops)]


def _scripted(body: dict) -> tuple[int, str]:
    """An answer that is a pure function of the hop: decisions at costs under the quote (so the quote, and
    the errored hops booked at it, do not depend on the order hops finish in), some 503s, some junk."""
    key = f"{body['entity']['id']}|{body['hypothesis']['id']}|{body['hop_type']}"
    k = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 7
    if k == 0:
        return 503, ""
    if k == 1:
        return 200, "not json"
    decision = ("ACCEPT", "REJECT", "WEAK_ACCEPT", "NO_PROGRESS")[k % 4]
    return 200, json.dumps({"decision": decision, "cost_usd": round(0.005 * k, 4), "url": f"https://x.example/{key}"})


def test_the_http_source_gives_the_same_answers_and_counts_from_32_threads(evaluator):
    evaluator.reply = _scripted
    hops = _hops()
    with _source(evaluator.url, timeout_s=30.0) as one:
        sequential = _run(one, hops, 1)
        seq_quotes = {h: one.max_cost(h, Depth.AUTHORITY) for h in HopType}
        seq_errors = one.errors
    assert evaluator.connections == 1
    with _source(evaluator.url, timeout_s=30.0) as many:
        concurrent = _run(many, hops, THREADS)
        assert concurrent == sequential
        assert many.errors == seq_errors and set(seq_errors) == {"http_5xx", "bad_response"}
        assert {h: many.max_cost(h, Depth.AUTHORITY) for h in HopType} == seq_quotes
        assert many.retries == 0
    assert len(evaluator.requests) == 2 * len(hops)  # each hop asked exactly once, from any thread
    assert 1 < evaluator.connections <= 1 + THREADS  # the threads shared a pool of kept connections


def test_the_world_gives_the_same_answers_and_truth_from_32_threads():
    hops = _hops(attempts=3)
    sequential = _run(SimulatedWorld(4, TEMPLATES), hops, 1)
    world = SimulatedWorld(4, TEMPLATES)
    with ThreadPoolExecutor(THREADS) as pool:  # registering while others evaluate
        pool.map(lambda e: world.register([e]), ENTITIES)
        concurrent = _run(world, hops, THREADS)
    assert concurrent == sequential
    reference = SimulatedWorld(4, TEMPLATES, ENTITIES)
    assert [world.truth(e.id) for e in ENTITIES] == [reference.truth(e.id) for e in ENTITIES]


def test_replay_gives_the_same_answers_and_miss_count_from_32_threads():
    world = SimulatedWorld(4, TEMPLATES, ENTITIES)
    hops = _hops()
    recorded = RecordingSource(world)
    _run(recorded, hops[::2], 1)  # every other hop recorded: the rest are misses
    one, many = ReplaySource(recorded.rows), ReplaySource(recorded.rows)
    sequential = _run(one, hops, 1)
    assert _run(many, hops, THREADS) == sequential
    assert many.misses == one.misses == len(hops) - len(hops[::2])


def test_recording_from_32_threads_keeps_every_hop_as_a_whole_line(tmp_path):
    hops = _hops()
    alone = RecordingSource(SimulatedWorld(4, TEMPLATES, ENTITIES))
    sequential = _run(alone, hops, 1)
    shared = RecordingSource(SimulatedWorld(4, TEMPLATES, ENTITIES))
    with ThreadPoolExecutor(THREADS) as pool:  # quotes asked and files saved while hops are recorded
        quotes = [pool.submit(shared.max_cost, h, Depth.AUTHORITY) for h in HopType]
        concurrent = _run(shared, hops, THREADS)
        saves = [pool.submit(shared.save, tmp_path / f"part-{i}.jsonl") for i in range(4)]
        assert all(q.result() > 0 for q in quotes) and all(s.result() for s in saves)
    assert concurrent == sequential
    for h in HopType:
        alone.max_cost(h, Depth.AUTHORITY)
    a = alone.save(tmp_path / "alone.jsonl").read_text().splitlines()
    b = shared.save(tmp_path / "shared.jsonl").read_text().splitlines()
    assert len(b) == len(hops) + len(HopType)
    assert sorted(json.loads(line)["entity"] for line in b if "entity" in line) == sorted(e.id for e, *_ in hops)
    assert sorted(a) == sorted(b)  # the same whole lines, in the order the hops finished
