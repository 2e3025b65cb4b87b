"""A local HTTP evaluator that answers from the simulated world: the HTTP evidence contract, end to end.

``EvaluatorServer`` speaks exactly what ``HTTPEvidenceSource`` sends and reads
(README, "Plugging in a real evidence source"): a POST of
``{"entity": {...}, "hypothesis": {...}, "hop_type": "...", "depth": "SURFACE"}`` answered by
``{"decision", "cost_usd", "url", "excerpt"}``. Each answer is what
``SimulatedWorld.evaluate`` gives in process for the same entity, hypothesis,
hop type, depth and attempt, so a run over HTTP meets the same world as a run
in memory, and the server really sleeps each hop's drawn latency times
``latency_factor``: it behaves like a latency-bound evaluator (a scraper and an
LLM judge) whose speed can be dialled down for benchmarks and tests.

Why it exists: ``python -m engine bench scale`` measures many entities in
flight against it, operators try the HTTP path without writing an evaluator
(``python -m engine evaluator``), and browser tests stop and restart it
mid-stage to see a rollout pause and resume.

What the request does not carry is filled in the way the catalogue does it:
the entity's template is the body's ``template_id`` if given, else the shipped
template of its type and tier (``default_template_id``); the hypothesis's prior
is the template pattern's weight (the world judges by that anyway). The
attempt (how many times this hop type was already used on this hypothesis in
this run) is the body's ``attempt`` if given, else a server-side counter per
(entity id, hypothesis id, hop type), cleared by ``POST /reset`` (or
``reset()``): one entity's hops arrive in order, so the counter equals the
engine's own count for one run of one system at any concurrency.

A hop the world says failed is answered ``503`` with the world's ``cost_usd``
and its error type, so the client counts an errored hop (``http_5xx``) booked
at the same cost as in process. A body that is not a request is ``400`` with a
one-line ``{"error": ...}``. ``GET /health`` answers the counters. Answers use
HTTP/1.1 keep-alive with a Content-Length on every one, so a pooled client
reuses its connections; ``stop()`` closes the open ones too, so a stopped
evaluator is really unreachable, and ``start()`` again binds the same port.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from engine.catalogue.generator import default_template_id
from engine.catalogue.templates import load_templates
from engine.core.errors import ConfigError
from engine.core.model import Depth, DomainError, Entity, EvidenceResult, HopType, Hypothesis, Template
from engine.discovery.world import SimulatedWorld, WorldProfile

#: the path hops are posted to (any path but /reset and /health is taken as a hop too)
EVALUATE_PATH = "/evaluate"
RESET_PATH = "/reset"
HEALTH_PATH = "/health"
#: pending connections the listening socket queues: enough for 128+ entities in flight opening at once
REQUEST_QUEUE_SIZE = 1024
#: the largest request body read (the contract's is a few hundred bytes)
MAX_BODY_BYTES = 64 * 1024
#: an idle keep-alive connection is closed after this many seconds
IDLE_TIMEOUT_S = 120.0
#: how often the serving loop looks for a stop (stop() waits up to this long)
SERVE_POLL_S = 0.05
#: how long stop() waits for the serving thread
STOP_JOIN_S = 5.0
#: the status of an answer to a hop the world says failed
FAILED_HOP_STATUS = 503


class BadRequest(ValueError):
    """A request body that is not a hop request; its message is the one-line 400 answer."""


def _field(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"{where}.{key} must be a number, got {json.dumps(value)[:40]}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise BadRequest(f"{where}.{key} must be {'a whole number' if kind is int else 'text'}")
    return value


def parse_request(
    body: bytes, templates: Mapping[str, Template]
) -> tuple[Entity, Hypothesis, HopType, Depth, int | None]:
    """(entity, hypothesis, hop type, depth, attempt or None) of one request body; BadRequest saying what is wrong."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("the body is not JSON: send the request HTTPEvidenceSource.request_body builds") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object with entity, hypothesis, hop_type and depth")
    e, h = data.get("entity"), data.get("hypothesis")
    if not isinstance(e, dict) or not isinstance(h, dict):
        raise BadRequest("entity and hypothesis must be JSON objects")
    tier = _field(e, "tier", int, "entity")
    etype = _field(e, "type", str, "entity")
    template_id = e.get("template_id") or default_template_id(etype, tier)
    if not isinstance(template_id, str) or template_id not in templates:
        raise BadRequest(f"entity template {template_id!r} is unknown (have: {', '.join(sorted(templates))})")
    try:
        entity = Entity(
            id=_field(e, "id", str, "entity"),
            name=_field(e, "name", str, "entity"),
            sport=_field(e, "sport", str, "entity"),
            country=_field(e, "country", str, "entity"),
            type=etype,
            tier=tier,
            cluster=_field(e, "cluster", str, "entity"),
            template_id=template_id,
        )
    except DomainError as exc:
        raise BadRequest(str(exc)) from None
    pattern = _field(h, "pattern", str, "hypothesis")
    confidence = _field(h, "confidence", float, "hypothesis")
    weights = {p.name: p.weight for p in templates[template_id].patterns}
    prior = h.get("prior", weights.get(pattern, confidence))
    if isinstance(prior, bool) or not isinstance(prior, (int, float)):
        raise BadRequest("hypothesis.prior must be a number")
    hypothesis = Hypothesis(
        id=_field(h, "id", str, "hypothesis"),
        entity_id=entity.id,
        pattern=pattern,
        category=_field(h, "category", str, "hypothesis"),
        prior=float(prior),
        confidence=confidence,
    )
    try:
        hop_type = HopType(str(data.get("hop_type")))
    except ValueError:
        raise BadRequest(f"hop_type must be one of {', '.join(t.value for t in HopType)}") from None
    depth_name = data.get("depth")
    if not isinstance(depth_name, str) or depth_name not in Depth.__members__:
        raise BadRequest(f"depth must be one of {', '.join(Depth.__members__)}")
    depth = Depth[depth_name]
    if depth < hop_type.min_depth:
        raise BadRequest(f"hop type {hop_type.value} needs depth {hop_type.min_depth.name} or deeper")
    attempt = data.get("attempt")
    if attempt is not None and (isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0):
        raise BadRequest("attempt must be a whole number >= 0")
    return entity, hypothesis, hop_type, depth, attempt


def answer_of(result: EvidenceResult) -> tuple[int, dict[str, Any]]:
    """(status, JSON answer) for the world's result: 200 with the contract's fields, or 503 for a failed hop."""
    answer: dict[str, Any] = {
        "decision": result.decision.value,
        "cost_usd": result.cost_usd,
        "url": result.url,
        "excerpt": result.excerpt,
    }
    if result.error:
        answer["error"] = result.error
        return FAILED_HOP_STATUS, answer
    return 200, answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes the keep-alive connections itself; joining them would wait on idle ones
    allow_reuse_address = True
    request_queue_size = REQUEST_QUEUE_SIZE


class EvaluatorServer:
    """The simulated world behind the HTTP evidence contract, started and stopped in process.

    ``requests`` counts hop requests answered (any status), ``in_flight`` the hops
    being answered now, ``peak_in_flight`` the most at once since the last reset and
    ``connections`` the connections accepted.
    """

    def __init__(
        self,
        world_seed: int = 1,
        latency_factor: float = 0.01,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        templates: Mapping[str, Template] | None = None,
        profile: WorldProfile | None = None,
    ):
        if isinstance(latency_factor, bool) or not isinstance(latency_factor, (int, float)):
            raise ConfigError(f"latency factor must be a number >= 0 (e.g. 0.01), got {latency_factor!r}")
        if not 0 <= latency_factor < float("inf"):
            raise ConfigError(f"latency factor must be a finite number >= 0 (e.g. 0.01), got {latency_factor!r}")
        self.world_seed = int(world_seed)
        self.latency_factor = float(latency_factor)
        self.host = host
        self.port = int(port)
        self.templates = dict(templates if templates is not None else load_templates())
        self.world = SimulatedWorld(self.world_seed, self.templates, profile=profile)
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.bad_requests = 0
        self.connections = 0  # connections accepted: with keep-alive, far fewer than requests
        self._attempts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Where to post hops (``--evaluator-url``); the port is the bound one once started."""
        return f"http://{self.host}:{self.port}{EVALUATE_PATH}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> EvaluatorServer:
        """Listen and serve in a daemon thread; the same port again after a stop (port 0: a free one, kept)."""
        if self._server is not None:
            return self
        self._stopping.clear()
        try:
            server = _Server((self.host, self.port), self._handler())
        except OSError as exc:
            raise ConfigError(
                f"the evaluator cannot listen on {self.host}:{self.port} ({exc.strerror or exc}): "
                "choose another --port, or stop what uses it"
            ) from None
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(SERVE_POLL_S,), name="evaluator-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every open connection (hops being answered get no answer)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            open_now = list(self._connections)
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its client
        if self._thread is not None:
            self._thread.join(STOP_JOIN_S)
            self._thread = None

    def __enter__(self) -> EvaluatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget attempt counters and the peak in flight (a new run starts): ``POST /reset`` does the same."""
        with self._lock:
            self._attempts.clear()
            self.peak_in_flight = self.in_flight

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
                "bad_requests": self.bad_requests,
                "connections": self.connections,
                "world_seed": self.world_seed,
                "latency_factor": self.latency_factor,
            }

    def answer(self, body: bytes) -> tuple[int, dict[str, Any], float]:
        """(status, JSON answer, seconds to sleep first) for one hop request body; no sleeping here."""
        try:
            entity, hypothesis, hop_type, depth, attempt = parse_request(body, self.templates)
        except BadRequest as exc:
            with self._lock:
                self.bad_requests += 1
            return 400, {"error": str(exc)}, 0.0
        if attempt is None:
            key = (entity.id, hypothesis.id, hop_type.value)
            with self._lock:
                attempt = self._attempts[key]
                self._attempts[key] += 1
        result = self.world.evaluate(entity, hypothesis, hop_type, depth, attempt)
        status, answer = answer_of(result)
        return status, answer, result.latency_s * self.latency_factor

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.requests += 1

    def _track(self, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(conn)
                self.connections += 1
            else:
                self._connections.discard(conn)

    # ------------------------------------------------------------------ HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # header and body go out at once, no delayed-ACK stall on keep-alive
            timeout = IDLE_TIMEOUT_S

            def setup(self) -> None:
                super().setup()
                outer._track(self.connection, True)

            def finish(self) -> None:
                outer._track(self.connection, False)
                try:
                    super().finish()
                except OSError:
                    pass  # the client hung up mid-answer

            def _send(self, status: int, payload: Mapping[str, Any]) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.split("?", 1)[0] == HEALTH_PATH:
                    self._send(200, {"status": "ok", **outer.stats()})
                else:
                    self._send(404, {"error": f"no such path {self.path[:80]}: GET {HEALTH_PATH} or POST hops"})

            def do_POST(self) -> None:  # noqa: N802
                length = self.headers.get("Content-Length")
                if length is None or not length.isdigit() or int(length) > MAX_BODY_BYTES:
                    self.close_connection = True  # the body's end is unknown: the connection cannot be reused
                    self._send(400, {"error": f"send a Content-Length of at most {MAX_BODY_BYTES} bytes"})
                    return
                body = self.rfile.read(int(length))
                if self.path.split("?", 1)[0] == RESET_PATH:
                    outer.reset()
                    self._send(200, {"status": "reset", **outer.stats()})
                    return
                # in flight from the body read to the answer ready: a client's next hop may arrive before this
                # thread has written its last byte, and must not count as a second hop in flight
                outer._enter()
                try:
                    status, answer, delay = outer.answer(body)
                    stopped = delay > 0 and outer._stopping.wait(delay)
                finally:
                    outer._leave()
                if stopped:
                    self.close_connection = True  # stopped mid-hop: no answer, like an evaluator that died
                    return
                self._send(status, answer)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # one line per hop would drown the operator's terminal

        return Handler
