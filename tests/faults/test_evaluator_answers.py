"""Case 6 of issue 11: evaluator answers that corrupt money figures, and answers that never end.

A local HTTP evaluator (tests.support.evaluator) answers costs of 1e300, 1e999 (inf once parsed),
NaN, negatives, numbers too long to convert, or drips its answer one byte every 0.2 s. The hop must be
an errored hop booked at its quote, the quote must stay finite, and a dripping answer is cut off at
the hop's deadline (the product's own recorded latency says so).
"""

from __future__ import annotations

import json
import math

import pytest

from engine.catalogue.generator import build_hypotheses, generate_catalogue, templates_for
from engine.catalogue.templates import load_templates
from engine.core.errors import ConfigError
from engine.core.model import Decision, Depth, HopType
from engine.discovery.evidence import (
    DEFAULT_HOP_COST_CEILING_USD,
    MAX_RESPONSE_BYTES,
    HTTPEvidenceSource,
    ReplaySource,
)
from engine.discovery.runs import EvidenceSpec, make_source
from engine.discovery.systems import run_discovery
from engine.monitoring.events import query_events
from engine.store.opsdb import open_ops_db
from tests.cli.test_cli_discovery import ENTITY, one_line_error
from tests.cli.test_cli_discovery import cli as discovery_cli  # noqa: F401  (a fixture, found by this name)
from tests.support.evaluator import Evaluator

NOW = 1_700_000_000.0
ENTITIES = generate_catalogue(6, 7)
TEMPLATES = templates_for(ENTITIES, load_templates())
E = ENTITIES[0]
H = build_hypotheses(E, TEMPLATES[E.template_id], NOW)[0]
QUOTE = 0.05
#: how much later than its deadline a hop may end: one scheduling hiccup, far below one drip interval
#: of the answers that must be cut off (their answers would take minutes)
DEADLINE_SLACK_S = 0.5

CORRUPT_COSTS = {
    "1e300": "1e300",
    "1e999 (inf)": "1e999",
    "-1e999 (-inf)": "-1e999",
    "NaN": "NaN",
    "Infinity": "Infinity",
    "negative": "-0.02",
    "above the ceiling": "5.01",
    "integer past float range": "1" + "0" * 400,
    "integer too long to parse": "9" * 5000,
    "a string": '"0.02"',
    "a boolean": "true",
}


@pytest.fixture
def cli(request):
    """The discovery CLI runner of tests/cli: in-process, on a fresh data dir seeded with 30 entities."""
    return request.getfixturevalue("discovery_cli")


@pytest.fixture
def evaluator():
    ev = Evaluator()
    yield ev
    ev.close()


def _source(url: str, **kw) -> HTTPEvidenceSource:
    kw.setdefault("timeout_s", 2.0)
    kw.setdefault("max_hop_cost_usd", QUOTE)
    kw.setdefault("sleeper", lambda s: None)
    return HTTPEvidenceSource(url, **kw)


def _all_quotes_finite(src) -> bool:
    return all(math.isfinite(src.max_cost(h, d)) and src.max_cost(h, d) <= QUOTE for h in HopType for d in Depth)


@pytest.mark.parametrize("literal", CORRUPT_COSTS.values(), ids=CORRUPT_COSTS.keys())
def test_a_corrupt_cost_is_a_bad_response_booked_at_the_quote(evaluator, literal):
    """case 6: a cost_usd that is not a finite number in [0, ceiling] is bad_response at the quote."""
    evaluator.costing(literal)
    src = _source(evaluator.url)
    r = src.evaluate(E, H, HopType.DOCUMENT, Depth.AUTHORITY, 0)
    assert (r.error, r.decision) == ("bad_response", Decision.NO_PROGRESS)
    assert r.cost_usd == QUOTE  # the quote, never the answer's figure
    assert src.errors == {"bad_response": 1} and len(evaluator.requests) == 1  # counted, not retried
    assert _all_quotes_finite(src)  # the shared quote is untouched by the corrupt figure


def test_a_server_error_with_a_corrupt_cost_is_booked_at_the_quote_too(evaluator):
    """case 6: an error status does not launder a cost of 1e300 into the books."""
    evaluator.reply = lambda body: (503, '{"cost_usd": 1e300}')
    src = _source(evaluator.url)
    r = src.evaluate(E, H, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)
    assert (r.error, r.cost_usd) == ("bad_response", QUOTE)
    assert _all_quotes_finite(src)


@pytest.mark.parametrize("system", ["new", "old"])
@pytest.mark.parametrize("literal", ["1e300", "1e999", "NaN", "-1"])
def test_whole_runs_are_booked_at_quotes_and_the_old_system_still_buys_hops(evaluator, literal, system):
    """case 6: with inf stored as the quote, the old system bought nothing; now every hop is bought and
    booked at the quote, and the run's figures stay finite."""
    evaluator.costing(literal)
    src = _source(evaluator.url)
    t = TEMPLATES[E.template_id]
    result = run_discovery(E, t, build_hypotheses(E, t, NOW), src, system=system, clock=lambda: NOW)
    assert len(result.hops) > 1
    assert {h.error for h in result.hops} == {"bad_response"} and result.error_count == len(result.hops)
    assert result.cost_usd == pytest.approx(QUOTE * len(result.hops))
    assert all(h.cost_usd == QUOTE for h in result.hops)
    assert _all_quotes_finite(src)


def test_a_dear_but_sound_cost_is_booked_and_raises_the_quote_only_up_to_the_ceiling(evaluator):
    """case 6: the ceiling separates dear from corrupt; only sound figures move the quote."""
    evaluator.costing("0.75")
    src = _source(evaluator.url, hop_cost_ceiling_usd=1.0)
    r = src.evaluate(E, H, HopType.DOCUMENT, Depth.AUTHORITY, 0)
    assert (r.error, r.cost_usd, r.decision) == (None, 0.75, Decision.ACCEPT)
    assert src.max_cost(HopType.DOCUMENT, Depth.AUTHORITY) == 0.75
    evaluator.costing("1.5")
    r = src.evaluate(E, H, HopType.DOCUMENT, Depth.AUTHORITY, 1)
    assert (r.error, r.cost_usd) == ("bad_response", 0.75)  # booked at the (raised) quote, not 1.5
    assert "ceiling" in r.excerpt
    assert src.max_cost(HopType.DOCUMENT, Depth.AUTHORITY) == 0.75


def test_an_oversized_answer_is_a_bad_response_at_the_quote(evaluator):
    """case 6: an answer over the body limit is not read to the end."""
    padding = "x" * (MAX_RESPONSE_BYTES + 1)
    evaluator.reply = lambda body: (200, json.dumps({"decision": "ACCEPT", "cost_usd": 0.01, "excerpt": padding}))
    src = _source(evaluator.url)
    r = src.evaluate(E, H, HopType.PRESS_RELEASE, Depth.SURFACE, 0)
    assert (r.error, r.cost_usd) == ("bad_response", QUOTE)


@pytest.mark.parametrize("timeout_s", [0.5, 1.0])
def test_a_dripping_answer_is_cut_off_at_the_hop_deadline(evaluator, timeout_s):
    """case 6: one byte every 0.2 s used to keep a hop open for half a minute with a 2 s timeout; the
    timeout is now a deadline for the whole hop (status line, headers and body included)."""
    evaluator.drip_s = 0.2  # each read gets a byte well within the timeout: only a deadline ends it
    src = _source(evaluator.url, timeout_s=timeout_s)
    r = src.evaluate(E, H, HopType.CAREERS_PAGE, Depth.SURFACE, 0)
    assert (r.error, r.decision, r.cost_usd) == ("timeout", Decision.NO_PROGRESS, QUOTE)
    assert timeout_s <= r.latency_s <= timeout_s + DEADLINE_SLACK_S  # the hop's own recorded latency
    assert src.errors == {"timeout": 1} and len(evaluator.requests) == 1  # a timeout is never retried


def test_an_answer_that_finishes_before_the_deadline_is_read_whole(evaluator):
    """case 6: the deadline does not cut short a slow answer that arrives in time."""
    evaluator.reply = lambda body: (200, '{"decision": "REJECT", "cost_usd": 0.02}')
    evaluator.drip_s = 0.005  # ~130 bytes in well under a second
    src = _source(evaluator.url, timeout_s=30.0)
    r = src.evaluate(E, H, HopType.CAREERS_PAGE, Depth.SURFACE, 0)
    assert (r.error, r.decision, r.cost_usd) == (None, Decision.REJECT, 0.02)


# --------------------------------------------------------------------------- the ceiling as a setting


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0.0, 0.01, True])
def test_the_ceiling_itself_must_be_a_sane_amount(bad):
    """case 6: a ceiling of NaN or inf would switch the check off; below the quote it would refuse every hop."""
    with pytest.raises(ConfigError, match="ceiling") as err:
        EvidenceSpec(kind="http", url="http://127.0.0.1:9/x", hop_cost_ceiling_usd=bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -2.0])
def test_the_deadline_must_be_a_finite_number_of_seconds(bad):
    """case 6: an infinite deadline is no deadline."""
    with pytest.raises(ConfigError, match="timeout"):
        EvidenceSpec(kind="http", url="http://127.0.0.1:9/x", timeout_s=bad)


def test_the_spec_hands_its_ceiling_to_the_http_source(evaluator):
    src = make_source(EvidenceSpec(kind="http", url=evaluator.url, hop_cost_ceiling_usd=0.5))
    assert isinstance(src, HTTPEvidenceSource) and src.hop_cost_ceiling_usd == 0.5
    default = make_source(EvidenceSpec(kind="http", url=evaluator.url))
    assert isinstance(default, HTTPEvidenceSource) and default.hop_cost_ceiling_usd == DEFAULT_HOP_COST_CEILING_USD


# --------------------------------------------------------------------------- replay files


def _replay_line(**change) -> str:
    row = {
        "entity": E.id,
        "hypothesis": H.id,
        "pattern": H.pattern,
        "hop_type": "official_site",
        "depth": 1,
        "attempt": 0,
        "decision": "ACCEPT",
        "cost_usd": 0.01,
        "latency_s": 1.0,
    }
    row.update(change)
    return json.dumps(row)


@pytest.mark.parametrize(
    "bad_line",
    [
        _replay_line().replace('"cost_usd": 0.01', '"cost_usd": 1e999'),
        _replay_line().replace('"cost_usd": 0.01', '"cost_usd": NaN'),
        _replay_line(cost_usd=1e300),
        _replay_line(cost_usd=-0.01),
        _replay_line(cost_usd="0.01"),
        _replay_line().replace('"latency_s": 1.0', '"latency_s": Infinity'),
        _replay_line(latency_s=-1),
        _replay_line(quote_usd=1e300),
        _replay_line(depth=True),
        _replay_line(attempt=-1),
        json.dumps({"kind": "quote", "hop_type": "document", "depth": 3, "quote_usd": 1e999}),
        json.dumps({"kind": "quote", "hop_type": "document", "depth": 3, "quote_usd": float("nan")}),
    ],
    ids=[
        "cost inf",
        "cost NaN",
        "cost 1e300",
        "cost negative",
        "cost text",
        "latency inf",
        "latency negative",
        "quote 1e300",
        "depth boolean",
        "attempt negative",
        "quote line inf",
        "quote line NaN",
    ],
)
def test_a_replay_file_with_a_corrupt_figure_is_refused_at_load_naming_the_line(tmp_path, bad_line):
    """case 6: replayed evidence obeys the same finiteness rules, checked when the file is loaded."""
    path = tmp_path / "evidence.jsonl"
    path.write_text(_replay_line() + "\n" + bad_line + "\n")
    with pytest.raises(ConfigError) as err:
        ReplaySource.load(path)
    msg = str(err.value)
    assert f"replay file {path} line 2:" in msg and "\n" not in msg


# --------------------------------------------------------------------------- from the command line


@pytest.mark.slow  # the CLI fixture starts the embedded graph store
def test_compare_against_an_evaluator_answering_inf_books_quotes_and_finite_metrics(cli):
    """case 6: `compare --evaluator-url` with an evaluator answering 1e999 stored inf and the old system
    bought nothing; now both systems buy hops, every hop is a bad_response at the quote."""
    ev = Evaluator()
    ev.costing("1e999")
    try:
        done = cli("compare", "--entities", "3", "--evaluator-url", ev.url, "--evaluator-timeout", "5", "--json")
    finally:
        ev.close()
    out = json.loads(done.stdout)
    events = query_events(open_ops_db(cli.settings), shadow=True)
    assert {e.system for e in events} == {"new", "old"} and len(events) == 6
    for e in events:
        assert e.hops > 0 and math.isfinite(e.cost_usd)
        assert e.cost_usd == pytest.approx(QUOTE * e.hops)
        assert set(e.error_types) == {"bad_response"} and e.error_count == e.hops
    for system in ("new", "old"):
        assert math.isfinite(out[system]["cost_total_usd"]) and out[system]["hops"] > 0


@pytest.mark.slow  # the CLI fixture starts the embedded graph store
def test_max_hop_cost_flag_sets_the_ceiling_and_bad_values_are_one_line_errors(cli):
    """case 6: `--max-hop-cost` next to `--evaluator-timeout`; a cost above it is a bad_response at the quote."""
    ev = Evaluator()
    ev.costing("0.5")
    try:
        cli("discover", "--entity", ENTITY, "--shadow", "--evaluator-url", ev.url, "--max-hop-cost", "0.25")
        for bad, says in (("nan", "--max-hop-cost"), ("inf", "--max-hop-cost"), ("0", "--max-hop-cost"),
                          ("-1", "--max-hop-cost"), ("0.01", "ceiling")):  # fmt: skip
            msg = one_line_error(
                cli("discover", "--entity", ENTITY, "--evaluator-url", ev.url, "--max-hop-cost", bad, check=False)
            )
            assert says in msg, msg
    finally:
        ev.close()
    (event,) = query_events(open_ops_db(cli.settings), shadow=True)
    assert set(event.error_types) == {"bad_response"} and event.cost_usd == pytest.approx(QUOTE * event.hops)


@pytest.mark.slow  # the CLI fixture starts the embedded graph store
def test_discover_against_a_dripping_evaluator_ends_each_hop_at_its_deadline(cli):
    """case 6: `discover --evaluator-timeout 0.5` against an answer dripping a byte every 0.2 s: every hop is
    a timeout booked at the quote, and the run's recorded evidence latency is at most a deadline per hop."""
    ev = Evaluator()
    ev.drip_s = 0.2
    try:
        done = cli(
            "discover", "--entity", ENTITY, "--shadow", "--evaluator-url", ev.url,
            "--evaluator-timeout", "0.5", "--json",
        )  # fmt: skip
    finally:
        ev.close()
    assert json.loads(done.stdout)
    (event,) = query_events(open_ops_db(cli.settings), shadow=True)
    assert event.hops > 0 and set(event.error_types) == {"timeout"} and event.error_count == event.hops
    assert event.cost_usd == pytest.approx(QUOTE * event.hops)
    assert event.evidence_latency_s <= event.hops * (0.5 + DEADLINE_SLACK_S)


@pytest.mark.slow  # the CLI fixture starts the embedded graph store
def test_discover_with_a_corrupt_replay_file_is_one_line_and_writes_nothing(cli, tmp_path):
    """case 6: a replay line with cost 1e999 is refused before any hop, naming the file and the line."""
    path = tmp_path / "evidence.jsonl"
    path.write_text(_replay_line(entity=ENTITY).replace('"cost_usd": 0.01', '"cost_usd": 1e999') + "\n")
    msg = one_line_error(cli("discover", "--entity", ENTITY, "--replay", str(path), check=False))
    assert "line 1" in msg and str(path) in msg
    assert query_events(open_ops_db(cli.settings)) == []
