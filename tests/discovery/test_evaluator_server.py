"""The local HTTP evaluator: the world's answers over the HTTP evidence contract, keep-alive, stop/start, counters."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from urllib.parse import urlsplit

import pytest

from engine.catalogue.generator import build_hypotheses, generate_catalogue, templates_for
from engine.catalogue.templates import load_templates
from engine.core.model import Decision, Depth, HopType
from engine.core.settings import REPO_ROOT
from engine.discovery.evaluator_server import EvaluatorServer, parse_request
from engine.discovery.evidence import EvidenceUnavailable, HTTPEvidenceSource
from engine.discovery.world import SimulatedWorld

ENTITIES = generate_catalogue(4, 7)
TEMPLATES = templates_for(ENTITIES, load_templates())


@pytest.fixture
def server():
    with EvaluatorServer(world_seed=1, latency_factor=0.0) as srv:
        yield srv


def _body(entity, hypothesis, hop_type, depth, **extra) -> bytes:
    return json.dumps({**HTTPEvidenceSource.request_body(entity, hypothesis, hop_type, depth), **extra}).encode()


def _post(url: str, body: bytes, path: str | None = None) -> tuple[int, dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", path or parts.path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_answers_equal_the_world_in_process_hop_by_hop(server):
    """Decision, cost, url and excerpt of every hop equal SimulatedWorld.evaluate's for the same
    entity, hypothesis, hop type, depth and attempt; a hop the world failed is an errored hop at the same cost."""
    world = SimulatedWorld(1, TEMPLATES)
    source = HTTPEvidenceSource(server.url)
    compared = failed = 0
    for entity in ENTITIES:
        for hypothesis in build_hypotheses(entity, TEMPLATES[entity.template_id], 0.0)[:4]:
            for hop_type in (HopType.OFFICIAL_SITE, HopType.LINKEDIN_JOB, HopType.RFP_PORTAL):
                for attempt in range(3):  # the server's own counter: 0, 1, 2 for one (entity, hypothesis, hop)
                    depth = max(Depth.OPERATIONAL, hop_type.min_depth)
                    got = source.evaluate(entity, hypothesis, hop_type, depth, attempt)
                    want = world.evaluate(entity, hypothesis, hop_type, depth, attempt)
                    assert (got.decision, got.cost_usd) == (want.decision, want.cost_usd)
                    if want.error:
                        failed += 1
                        assert got.error == "http_5xx" and got.decision is Decision.NO_PROGRESS
                    else:
                        assert (got.url, got.excerpt, got.error) == (want.url, want.excerpt, None)
                    compared += 1
    assert compared == 4 * 4 * 3 * 3 and server.requests == compared
    assert failed < compared  # the world fails a few percent of hops, not all


def test_attempt_in_the_body_wins_and_reset_restarts_the_counter(server):
    entity = ENTITIES[1]
    hypothesis = build_hypotheses(entity, TEMPLATES[entity.template_id], 0.0)[0]
    world = SimulatedWorld(1, TEMPLATES)
    hop, depth = HopType.CAREERS_PAGE, Depth.OPERATIONAL
    answers = [world.evaluate(entity, hypothesis, hop, depth, a).excerpt for a in range(6)]
    # attempts are told: answered for exactly that attempt, and the counter is not moved
    assert _post(server.url, _body(entity, hypothesis, hop, depth, attempt=5))[1]["excerpt"] == answers[5]
    counted = [_post(server.url, _body(entity, hypothesis, hop, depth))[1]["excerpt"] for _ in range(2)]
    assert counted == answers[:2]
    status, stats = _post(server.url, b"{}", path="/reset")
    assert status == 200 and stats["status"] == "reset"
    assert _post(server.url, _body(entity, hypothesis, hop, depth))[1]["excerpt"] == answers[0]


def test_keep_alive_serves_many_hops_on_one_connection(server):
    entity = ENTITIES[0]
    hypothesis = build_hypotheses(entity, TEMPLATES[entity.template_id], 0.0)[0]
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        socks = []
        for _ in range(5):
            conn.request("POST", parts.path, body=_body(entity, hypothesis, HopType.OFFICIAL_SITE, Depth.SURFACE))
            resp = conn.getresponse()
            assert resp.status == 200 and resp.getheader("Content-Length") is not None
            assert resp.version == 11 and not resp.will_close
            json.loads(resp.read())
            socks.append(conn.sock)
        assert len({id(s) for s in socks}) == 1 and socks[0] is not None  # never reconnected
        assert server.connections == 1 and server.requests == 5
    finally:
        conn.close()


def test_stop_closes_open_connections_and_start_binds_the_same_port_again():
    entity = ENTITIES[0]
    hypothesis = build_hypotheses(entity, TEMPLATES[entity.template_id], 0.0)[0]
    body = _body(entity, hypothesis, HopType.OFFICIAL_SITE, Depth.SURFACE)
    srv = EvaluatorServer(world_seed=1, latency_factor=0.0).start()
    try:
        url, port = srv.url, srv.port
        parts = urlsplit(url)
        kept = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        kept.request("POST", parts.path, body=body)
        assert kept.getresponse().read()
        srv.stop()
        assert not srv.running
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):  # the kept one is closed too
            kept.request("POST", parts.path, body=body)
            kept.getresponse().read()
        kept.close()
        with pytest.raises(EvidenceUnavailable):
            HTTPEvidenceSource(url, max_retries=0, timeout_s=2).evaluate(
                entity, hypothesis, HopType.OFFICIAL_SITE, Depth.SURFACE, 0
            )
        srv.start()
        assert srv.port == port and srv.url == url
        assert _post(url, body)[0] == 200
        srv.stop()
        srv.start()  # and once more: stop/start is repeatable
        assert _post(url, body)[0] == 200
    finally:
        srv.stop()


class _GatedServer(EvaluatorServer):
    """Answers only once ``gate`` hops are being answered at the same time (a barrier inside the hop)."""

    def __init__(self, gate: int):
        super().__init__(world_seed=1, latency_factor=0.0)
        self.barrier = threading.Barrier(gate, timeout=20)

    def answer(self, body: bytes):
        self.barrier.wait()
        return super().answer(body)


def test_peak_in_flight_counts_concurrent_hops():
    n = 6
    entity = ENTITIES[2]
    hyps = build_hypotheses(entity, TEMPLATES[entity.template_id], 0.0)
    with _GatedServer(n) as srv:
        statuses: list[int] = []
        threads = [
            threading.Thread(
                target=lambda h=h: statuses.append(
                    _post(srv.url, _body(entity, h, HopType.OFFICIAL_SITE, Depth.SURFACE))[0]
                )
            )
            for h in hyps[:n]
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert statuses == [200] * n
        assert srv.peak_in_flight == n and srv.in_flight == 0 and srv.requests == n
        srv.reset()
        assert srv.peak_in_flight == 0
        with urllib.request.urlopen(srv.url.replace("/evaluate", "/health"), timeout=10) as resp:
            health = json.loads(resp.read())
        assert resp.status == 200 and health["requests"] == n and health["in_flight"] == 0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"entity": 1, "hypothesis": {}}', "entity and hypothesis"),
        ("bad_hop", "hop_type must be one of"),
        ("bad_depth", "depth must be one of"),
        ("too_shallow", "needs depth"),
        ("bad_id", "not a normalised slug"),
        ("no_confidence", "hypothesis.confidence must be a number"),
        ("bad_attempt", "attempt must be a whole number"),
    ],
)
def test_a_body_that_is_not_a_hop_request_is_400_with_one_line(server, body, says):
    entity = ENTITIES[0]
    hypothesis = build_hypotheses(entity, TEMPLATES[entity.template_id], 0.0)[0]
    good = HTTPEvidenceSource.request_body(entity, hypothesis, HopType.OFFICIAL_SITE, Depth.SURFACE)
    broken = {
        "bad_hop": {**good, "hop_type": "carrier_pigeon"},
        "bad_depth": {**good, "depth": "DEEPEST"},
        "too_shallow": {**good, "hop_type": "annual_report", "depth": "SURFACE"},
        "bad_id": {**good, "entity": {**good["entity"], "id": "Not A Slug"}},
        "no_confidence": {**good, "hypothesis": {k: v for k, v in good["hypothesis"].items() if k != "confidence"}},
        "bad_attempt": {**good, "attempt": -1},
    }
    raw = json.dumps(broken[body]).encode() if isinstance(body, str) else body
    status, answer = _post(server.url, raw)
    assert status == 400 and says in answer["error"] and "\n" not in answer["error"]
    assert server.bad_requests == 1
    # and the evaluator still answers a good hop afterwards; the HTTP source counts a 400 as http_4xx
    assert _post(server.url, json.dumps(good).encode())[0] == 200
    src = HTTPEvidenceSource(server.url)
    src.request_body = lambda *a: broken.get(body, {"garbage": True})  # type: ignore[method-assign]
    assert src.evaluate(entity, hypothesis, HopType.OFFICIAL_SITE, Depth.SURFACE, 0).error == "http_4xx"


def test_template_comes_from_the_body_or_the_catalogue_rule():
    entity = ENTITIES[0]
    hypothesis = build_hypotheses(entity, TEMPLATES[entity.template_id], 0.0)[0]
    body = HTTPEvidenceSource.request_body(entity, hypothesis, HopType.OFFICIAL_SITE, Depth.SURFACE)
    parsed, hyp, *_ = parse_request(json.dumps(body).encode(), load_templates())
    assert parsed == entity and hyp.prior == hypothesis.prior and hyp.id == hypothesis.id
    body["entity"]["template_id"] = "league"
    assert parse_request(json.dumps(body).encode(), load_templates())[0].template_id == "league"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a non-interactive shell's background job inherits


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "inherited"),
    [(signal.SIGINT, None), (signal.SIGINT, _ignore_sigint), (signal.SIGTERM, None)],
    ids=["ctrl-c", "ctrl-c-with-sigint-ignored-by-the-parent", "sigterm"],
)
def test_cli_serves_until_ctrl_c(sig, inherited):
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "evaluator", "--port", "0", "--latency-factor", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        preexec_fn=inherited,  # noqa: PLW1509 - a signal disposition, nothing that could deadlock
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/evaluate)", first)
        assert match, first
        with urllib.request.urlopen(match[1].replace("/evaluate", "/health"), timeout=10) as resp:
            assert json.loads(resp.read())["status"] == "ok"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=90)  # interpreter exit on a loaded machine
        assert proc.returncode == 0, err
        assert "evaluator stopped after 0 hops" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
