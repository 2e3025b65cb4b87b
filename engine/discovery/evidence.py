"""Evidence sources: one interface, three implementations.

``EvidenceSource`` is the contract every source keeps:

* ``evaluate(entity, hypothesis, hop_type, depth, attempt) -> EvidenceResult``
  runs one hop and says what it found: a decision, the cost in USD, the
  latency in seconds, the url and an excerpt. A hop that failed (timeout,
  server error, unusable answer) is *returned*, not raised, with
  ``decision=NO_PROGRESS`` and ``error`` set to its type, so it is counted and
  never hidden. Only a source that cannot be reached at all raises
  ``EvidenceUnavailable`` (the run is abandoned and nothing is written).
  ``attempt`` is how many times this hop type was already used on this
  hypothesis in this run (0 for the first).
* ``max_cost(hop_type, depth) -> float`` quotes the most the hop can cost; the
  engine checks the budget against it *before* buying a hop.

Implementations: ``engine.discovery.world.SimulatedWorld`` (default), ``HTTPEvidenceSource``
(a user's evaluator service), ``ReplaySource`` (recorded evidence, JSONL), and
``RecordingSource`` (wraps any source and records what it answered, in the
format ``ReplaySource`` reads).
"""

from __future__ import annotations

import json
import math
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpcore
import httpx

from engine.core.errors import ConfigError, DiscoveryError
from engine.core.model import Decision, Depth, Entity, EvidenceResult, HopType, Hypothesis, RunResult

#: the most one hop may cost by default: an answer above it is corrupt, not expensive. The simulated
#: world's hops cost $0.0125-0.05, real scrape + LLM hops cents; $5 leaves two orders of magnitude.
DEFAULT_HOP_COST_CEILING_USD = 5.00
#: the quote of a hop before the evaluator has said anything (raised to the dearest cost seen)
DEFAULT_HOP_QUOTE_USD = 0.05
#: an answer longer than this is not an answer (the contract's is a few hundred bytes)
MAX_RESPONSE_BYTES = 1024 * 1024
#: connections one HTTP source keeps open at most: the most entities a run keeps in flight
#: (``engine.discovery.limits.MAX_CONCURRENCY``), so no hop of a run queues for a connection
DEFAULT_MAX_CONNECTIONS = 256
#: an idle kept-alive connection is closed after this long (an evaluator may drop it sooner)
KEEPALIVE_EXPIRY_S = 5.0
#: the longest a replayed hop may have taken (a recorded latency above it is corrupt)
MAX_REPLAY_LATENCY_S = 24 * 3600.0
#: url and excerpt kept of an answer (the evidence trail stores them)
MAX_URL_CHARS = 2000
MAX_EXCERPT_CHARS = 2000


class EvidenceUnavailable(DiscoveryError):
    """The evidence source cannot be reached at all; no hop was bought."""


class _DeadlinePassed(TimeoutError):
    """The hop's wall-clock deadline passed before the evaluator's answer was complete."""


class _AnswerTooLarge(Exception):
    """The evaluator's answer is longer than MAX_RESPONSE_BYTES."""


def finite_number(value: Any) -> bool:
    """True for an int or float that is a finite float (booleans, NaN, inf and ints past 1e308 are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def check_usd(value: Any, what: str, ceiling: float) -> float:
    """``value`` as a finite number of USD in [0, ceiling]; ValueError saying what is wrong otherwise.

    Booleans are not numbers here, and an integer too large for a float is out of range, not a crash.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number of USD, got {_short(value)}")
    if not finite_number(value):
        raise ValueError(f"{what} {_short(value)} is not a finite number")
    usd = float(value)
    if usd < 0:
        raise ValueError(f"{what} {usd:g} is negative")
    if usd > ceiling:
        raise ValueError(f"{what} ${usd:,.4g} is above the ${ceiling:,.2f} per-hop ceiling")
    return usd


def _short(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@runtime_checkable
class EvidenceSource(Protocol):
    def evaluate(
        self, entity: Entity, hypothesis: Hypothesis, hop_type: HopType, depth: Depth, attempt: int
    ) -> EvidenceResult: ...

    def max_cost(self, hop_type: HopType, depth: Depth) -> float: ...


# --------------------------------------------------------------------------- HTTP


class HTTPEvidenceSource:
    """POSTs each hop to a user's evaluator service (their scraper + LLM judge).

    Request body: ``{"entity": {...}, "hypothesis": {...}, "hop_type": "...", "depth": "SURFACE"}``;
    reply: ``{"decision": "ACCEPT|WEAK_ACCEPT|REJECT|NO_PROGRESS", "cost_usd": 0.02,
    "url": "...", "excerpt": "..."}``. See README, "Plugging in a real evidence source".

    One ``httpx.Client`` per source keeps up to ``max_connections`` connections open
    (keep-alive), so many entities can be in flight at once without a TCP (and TLS)
    handshake per hop; ``close()`` (or leaving a ``with`` block) closes them. Every
    method may be called from many threads at once.

    Retries only when no charge can have happened: the TCP connection could not
    be opened (refused, DNS failure, connect timeout), so the request was never
    sent. Once the request may have reached the evaluator, nothing is retried:
    a timeout, a dropped connection, an HTTP error status or an unusable
    body is an errored hop, counted by type (``timeout``, ``connection_dropped``,
    ``http_5xx``, ``http_4xx``, ``bad_response``). If it never connects after
    the retries, ``EvidenceUnavailable`` is raised.

    ``timeout_s`` is a wall-clock deadline for the whole hop (connect, send, the
    whole answer), not a bound on each socket read: an evaluator that drips its
    answer byte by byte is cut off at the deadline (``timeout``). An answer over
    ``max_response_bytes`` is a ``bad_response``.

    Costs: a reply's ``cost_usd`` is used whenever it can be read and is a finite
    number in [0, ``hop_cost_ceiling_usd``]. A figure outside that (NaN, inf,
    negative, 1e300, above the ceiling) is corrupt, not dear: the hop is a
    ``bad_response`` booked at its quote, and the quote is left alone. When the
    evaluator may have charged but said nothing usable (timeout, dropped
    connection, unreadable body) the hop is booked at its quote too, so budgets
    err on the safe side. The quote is ``max_hop_cost_usd`` (or the dearest hop
    seen, if higher; never above the ceiling). A hop whose deadline passed while
    it waited for a free pooled connection is a ``timeout`` booked at 0: its
    request was never sent.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 2,
        backoff_s: float = 0.25,
        max_hop_cost_usd: float = DEFAULT_HOP_QUOTE_USD,
        hop_cost_ceiling_usd: float = DEFAULT_HOP_COST_CEILING_USD,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        headers: Mapping[str, str] | None = None,
        sleeper: Callable[[float], None] = time.sleep,
        timer: Callable[[], float] = time.perf_counter,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"evaluator URL {url!r} is not an http(s) URL: use e.g. http://127.0.0.1:8000/evaluate")
        for name, seconds in (("timeout", timeout_s), ("connect timeout", connect_timeout_s)):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < math.inf:
                raise ConfigError(f"evaluator {name} must be a finite number of seconds > 0, got {seconds!r}")
        try:
            ceiling = check_usd(hop_cost_ceiling_usd, "per-hop cost ceiling", math.inf)
            check_usd(max_hop_cost_usd, "hop quote max_hop_cost_usd", ceiling)
        except ValueError as exc:
            raise ConfigError(f"{exc}: the quote must lie between 0 and the ceiling (e.g. 0.05 and 5.00)") from None
        if ceiling <= 0:
            raise ConfigError("per-hop cost ceiling must be > 0 USD (e.g. 5.00)")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigError(f"evaluator max_connections must be a whole number >= 1, got {max_connections!r}")
        self.url = url
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_hop_cost_usd = float(max_hop_cost_usd)
        self.hop_cost_ceiling_usd = ceiling
        self.max_response_bytes = max_response_bytes
        self.max_connections = max_connections
        # identity: an answer is counted against max_response_bytes as it arrives, never inflated from gzip
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            **(headers or {}),
        }
        self._sleep = sleeper
        self._timer = timer
        self._lock = threading.Lock()
        self._dearest: dict[str, float] = {}
        self._errors: Counter[str] = Counter()
        self._retries = 0
        self._closed = False
        self._backend = _DeadlineBackend(timer)
        self._client = httpx.Client(
            transport=_DeadlineTransport(self._backend, max_connections, https=parts.scheme == "https"),
            follow_redirects=False,
            trust_env=False,  # the evaluator is reached directly, as it always was: no proxy from the environment
        )

    @property
    def errors(self) -> Counter[str]:
        """Errored hops so far by type (a copy: other threads keep counting)."""
        with self._lock:
            return Counter(self._errors)

    @property
    def retries(self) -> int:
        """Connect attempts repeated so far (only ever when nothing was sent)."""
        with self._lock:
            return self._retries

    def close(self) -> None:
        """Close the pooled connections; a hop asked for afterwards raises EvidenceUnavailable."""
        with self._lock:
            self._closed = True
        self._client.close()

    def __enter__(self) -> HTTPEvidenceSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def max_cost(self, hop_type: HopType, depth: Depth) -> float:
        with self._lock:
            dearest = self._dearest.get(HopType(hop_type).value, 0.0)
        return max(self.max_hop_cost_usd, dearest)

    @staticmethod
    def request_body(
        entity: Entity, hypothesis: Hypothesis, hop_type: HopType, depth: Depth, attempt: int = 0
    ) -> dict[str, Any]:
        """The JSON of one hop (README, "Request"); ``attempt``: how many times this hop type was already used on
        this hypothesis in this run (an evaluator may look further on a repeat; the local one answers by it)."""
        return {
            "entity": {
                "id": entity.id,
                "name": entity.name,
                "sport": entity.sport,
                "country": entity.country,
                "type": entity.type,
                "tier": entity.tier,
                "cluster": entity.cluster,
            },
            "hypothesis": {
                "id": hypothesis.id,
                "pattern": hypothesis.pattern,
                "category": hypothesis.category,
                "confidence": hypothesis.confidence,
            },
            "hop_type": HopType(hop_type).value,
            "depth": Depth(depth).name,
            "attempt": int(attempt),
        }

    def _post(self, body: bytes, deadline: float) -> tuple[int, bytes]:
        """The evaluator's answer (status, body bytes), retried only while the connection could not be opened
        (nothing was sent, so nothing can have been charged), and never past ``deadline``."""
        last_exc: BaseException | None = None
        tries = 0
        for attempt_no in range(self.max_retries + 1):
            left = deadline - self._timer()
            if left <= 0:
                break
            tries += 1
            try:
                return self._exchange(body, deadline, left)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # refused, DNS, connect timeout, TLS handshake
                last_exc = exc
                if attempt_no < self.max_retries:
                    with self._lock:
                        self._retries += 1
                    self._sleep(min(self.backoff_s * 2**attempt_no, max(0.0, deadline - self._timer())))
        reason = _reason(last_exc) if last_exc else f"no connection within the {self.timeout_s:g} s deadline"
        raise EvidenceUnavailable(
            f"evidence evaluator at {self.url} is unreachable ({reason} after {tries} "
            f"{'try' if tries == 1 else 'tries'}): start it, or check the URL"
        )

    def _exchange(self, body: bytes, deadline: float, left: float) -> tuple[int, bytes]:
        """Send the request and read the whole answer before ``deadline`` (status, body bytes).

        httpx's timeouts bound each operation, not the hop: every socket read and write of this hop
        gets the time left until the deadline as its timeout (``_DeadlineBackend``), so an answer
        dripping in byte by byte (status line and headers included) cannot hold the hop open past it.
        """
        timeout = httpx.Timeout(connect=min(self.connect_timeout_s, left), read=left, write=left, pool=left)
        request = self._client.stream("POST", self.url, content=body, headers=self.headers, timeout=timeout)
        with self._backend.deadline(deadline), request as resp:
            length = resp.headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_response_bytes:
                raise _AnswerTooLarge
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise _AnswerTooLarge
                chunks.append(chunk)
                if self._timer() > deadline:
                    raise _DeadlinePassed("the hop's deadline passed while its answer was arriving")
            return resp.status_code, b"".join(chunks)

    def evaluate(
        self, entity: Entity, hypothesis: Hypothesis, hop_type: HopType, depth: Depth, attempt: int
    ) -> EvidenceResult:
        hop_type = HopType(hop_type)
        quote = self.max_cost(hop_type, depth)
        body = json.dumps(self.request_body(entity, hypothesis, hop_type, depth, attempt)).encode("utf-8")
        with self._lock:
            if self._closed:
                raise EvidenceUnavailable(
                    f"evidence evaluator client for {self.url} was closed: build a new source for a new run"
                )
        started = self._timer()
        deadline = started + self.timeout_s
        try:
            status, raw = self._post(body, deadline)
        except httpx.PoolTimeout:  # the deadline passed waiting for a free connection: nothing was sent
            return self._failed("timeout", 0.0, self._timer() - started, hop_type, "no free connection in time")
        except (httpx.TimeoutException, _DeadlinePassed):  # the answer did not come in time
            return self._failed("timeout", quote, self._timer() - started, hop_type)
        except _AnswerTooLarge:
            return self._failed(
                "bad_response",
                quote,
                self._timer() - started,
                hop_type,
                f"answer over {self.max_response_bytes:,} bytes",
            )
        except httpx.TransportError:  # reset, closed mid-answer, a garbled status line or headers
            return self._failed("connection_dropped", quote, self._timer() - started, hop_type)
        latency = self._timer() - started
        data: Any = None
        try:
            data = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: bad JSON, or ints of 4,300+ digits
            data = None
        cost = data.get("cost_usd") if isinstance(data, dict) else None
        reported: float | None = None
        if cost is not None:
            try:
                reported = check_usd(cost, "cost_usd", self.hop_cost_ceiling_usd)
            except ValueError as exc:  # corrupt, not dear: book the quote, never the figure
                return self._failed("bad_response", quote, latency, hop_type, str(exc))
        if status >= 400 or status < 200:
            error = "http_5xx" if status >= 500 else f"http_{status // 100}xx"
            return self._failed(error, reported if reported is not None else 0.0, latency, hop_type)
        if not isinstance(data, dict) or reported is None:
            return self._failed("bad_response", quote, latency, hop_type)
        try:
            decision = Decision(str(data.get("decision", "")).upper())
        except ValueError:
            return self._failed("bad_response", reported, latency, hop_type, "unknown decision")
        self._note_cost(hop_type, reported)
        return EvidenceResult(
            decision=decision,
            cost_usd=reported,
            latency_s=latency,
            url=_text(data.get("url"), MAX_URL_CHARS),
            excerpt=_text(data.get("excerpt"), MAX_EXCERPT_CHARS),
        )

    def _note_cost(self, hop_type: HopType, cost: float) -> None:
        """Raise the hop type's quote to ``cost``; only costs checked against the ceiling come here."""
        with self._lock:
            if cost > self._dearest.get(hop_type.value, 0.0):
                self._dearest[hop_type.value] = cost

    def _failed(self, error: str, cost: float, latency: float, hop_type: HopType, detail: str = "") -> EvidenceResult:
        with self._lock:
            self._errors[error] += 1
        self._note_cost(hop_type, cost)
        return EvidenceResult(
            decision=Decision.NO_PROGRESS,
            cost_usd=cost,
            latency_s=latency,
            excerpt=f"evaluator error: {error}" + (f" ({detail})" if detail else ""),
            error=error,
        )


def _text(value: Any, limit: int) -> str:
    """An optional text field of an answer, cut at ``limit`` characters (a non-string is shown as JSON)."""
    if value is None or value == "":
        return ""
    return (value if isinstance(value, str) else _short(value))[:limit]


def _reason(exc: BaseException) -> str:
    """Why a connection could not be opened, by the name of its root cause (e.g. ConnectionRefusedError)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError):
            return type(cause).__name__
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend with a per-thread hop deadline: while ``deadline(t)`` is open in a thread,
    each connect, read and write that thread makes is given at most the time left until ``t`` (and fails
    as a timeout once it has passed). A hop runs wholly in its caller's thread, so the deadline a socket
    operation sees is always its own hop's, whichever pooled connection it uses."""

    def __init__(self, timer: Callable[[], float]):
        self._inner = httpcore.SyncBackend()
        self._timer = timer
        self._local = threading.local()

    @contextmanager
    def deadline(self, deadline: float) -> Iterator[None]:
        previous = getattr(self._local, "deadline", None)
        self._local.deadline = deadline
        try:
            yield
        finally:
            self._local.deadline = previous

    def left(self, timeout: float | None, expired: type[Exception]) -> float | None:
        """``timeout`` cut to the time left until this thread's deadline; ``expired`` once it has passed."""
        deadline = getattr(self._local, "deadline", None)
        if deadline is None:
            return timeout
        left = deadline - self._timer()
        if left <= 0:
            raise expired("the hop's deadline passed")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, self.left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream, self)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, self.left(timeout, httpcore.ConnectTimeout), socket_options)
        return _DeadlineStream(stream, self)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """One pooled connection's socket stream; every operation is bounded by the calling hop's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, backend: _DeadlineBackend):
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._backend.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._backend.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.start_tls(
            ssl_context, server_hostname, self._backend.left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(stream, self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport (its error mapping and response streaming) over a pool whose sockets keep
    the hop deadline. Only the pool is rebuilt: ``httpx.HTTPTransport`` has no way to pass a backend."""

    def __init__(self, backend: _DeadlineBackend, max_connections: int, *, https: bool):
        super().__init__(trust_env=False, retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl.create_default_context() if https else None,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
            retries=0,  # connect retries are the source's own: counted, with backoff, bounded by the deadline
            network_backend=backend,
        )


# --------------------------------------------------------------------------- recording and replay

#: Fields of one replay line (JSONL). ``quote_usd`` is what max_cost answered for that hop,
#: so a replay makes the same budget decisions as the recorded run.
REPLAY_FIELDS = (
    "entity",
    "hypothesis",
    "pattern",
    "hop_type",
    "depth",
    "attempt",
    "decision",
    "cost_usd",
    "latency_s",
    "url",
    "excerpt",
    "error",
    "quote_usd",
)


@dataclass(frozen=True)
class ReplayRow:
    entity: str
    hypothesis: str
    pattern: str
    hop_type: str
    depth: int
    attempt: int
    decision: str
    cost_usd: float
    latency_s: float
    url: str = ""
    excerpt: str = ""
    error: str | None = None
    quote_usd: float | None = None

    def result(self) -> EvidenceResult:
        return EvidenceResult(
            decision=Decision(self.decision),
            cost_usd=self.cost_usd,
            latency_s=self.latency_s,
            url=self.url,
            excerpt=self.excerpt,
            error=self.error,
        )


class RecordingSource:
    """Wraps a source and keeps every answer as a ReplayRow; ``save(path)`` writes JSONL.

    Safe to call from many threads at once: rows and quotes are kept under one lock, and ``save``
    writes whole lines under it, so a concurrent run's file is never torn (its lines are in the
    order the hops finished; a replay matches hops by key, not by position).
    """

    def __init__(self, inner: EvidenceSource):
        self.inner = inner
        self.rows: list[ReplayRow] = []
        #: every quote the engine asked for, (hop type, depth) -> USD: a replay needs the quotes of the
        #: channels that were considered but not bought too, or it would choose channels differently
        self.quotes: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def max_cost(self, hop_type: HopType, depth: Depth) -> float:
        quote = self.inner.max_cost(hop_type, depth)
        key = (HopType(hop_type).value, int(depth))
        with self._lock:
            self.quotes[key] = max(self.quotes.get(key, 0.0), float(quote))
        return quote

    def evaluate(self, entity, hypothesis, hop_type, depth, attempt) -> EvidenceResult:
        result = self.inner.evaluate(entity, hypothesis, hop_type, depth, attempt)
        row = ReplayRow(
            entity=entity.id,
            hypothesis=hypothesis.id,
            pattern=hypothesis.pattern,
            hop_type=HopType(hop_type).value,
            depth=int(depth),
            attempt=attempt,
            decision=result.decision.value,
            cost_usd=result.cost_usd,
            latency_s=result.latency_s,
            url=result.url,
            excerpt=result.excerpt,
            error=result.error,
            quote_usd=self.inner.max_cost(hop_type, depth),
        )
        with self._lock:
            self.rows.append(row)
        return result

    def save(self, path: str | Path, append: bool = False) -> Path:
        """Write the hop rows, then one quote line per (hop type, depth) the engine asked about."""
        with self._lock:
            return write_replay(self.rows, path, append=append, quotes=self.quotes)

    def close(self) -> None:
        """Close the wrapped source, if it holds anything open (an HTTP evaluator's connections)."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


def rows_from_run(result: RunResult) -> list[ReplayRow]:
    """Replay rows from a finished run's hops (attempt = earlier uses of that hop type on that hypothesis)."""
    seen: Counter[tuple[str, str]] = Counter()
    rows = []
    for hop in result.hops:
        key = (hop.hypothesis_id, hop.hop_type.value)
        rows.append(
            ReplayRow(
                entity=result.entity_id,
                hypothesis=hop.hypothesis_id,
                pattern=hop.pattern,
                hop_type=hop.hop_type.value,
                depth=int(hop.depth),
                attempt=seen[key],
                decision=hop.decision.value,
                cost_usd=hop.cost_usd,
                latency_s=hop.latency_s,
                url=hop.url,
                excerpt=hop.excerpt,
                error=hop.error,
            )
        )
        seen[key] += 1
    return rows


def write_replay(
    rows: Iterable[ReplayRow],
    path: str | Path,
    append: bool = False,
    quotes: Mapping[tuple[str, int], float] | None = None,
) -> Path:
    """JSONL: one line per hop (REPLAY_FIELDS), then ``{"kind": "quote", "hop_type", "depth", "quote_usd"}``
    lines for the quotes the recorded source gave (so a replay makes the same budget and channel choices)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a" if append else "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(asdict(row), sort_keys=True) + "\n")
        for (hop, depth), usd in sorted((quotes or {}).items()):
            fh.write(
                json.dumps({"kind": "quote", "hop_type": hop, "depth": depth, "quote_usd": usd}, sort_keys=True) + "\n"
            )
    return p


def _replay_row(data: Any, ceiling: float) -> ReplayRow:
    """One hop line of a replay file, every field checked (ValueError/KeyError/TypeError say what is wrong)."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    row = ReplayRow(**{k: data[k] for k in REPLAY_FIELDS if k in data})
    for name in ("entity", "hypothesis", "pattern", "hop_type", "decision", "url", "excerpt"):
        if not isinstance(getattr(row, name), str):
            raise ValueError(f"{name} must be text, got {_short(getattr(row, name))}")
    if row.error is not None and not isinstance(row.error, str):
        raise ValueError(f"error must be text or null, got {_short(row.error)}")
    Decision(row.decision)
    HopType(row.hop_type)
    _depth(row.depth)
    if isinstance(row.attempt, bool) or not isinstance(row.attempt, int) or row.attempt < 0:
        raise ValueError(f"attempt must be a whole number >= 0, got {_short(row.attempt)}")
    check_usd(row.cost_usd, "cost_usd", ceiling)
    if row.quote_usd is not None:
        check_usd(row.quote_usd, "quote_usd", ceiling)
    latency = row.latency_s
    if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not 0 <= latency <= MAX_REPLAY_LATENCY_S:
        raise ValueError(
            f"latency_s must be a number of seconds in [0, {MAX_REPLAY_LATENCY_S:g}], got {_short(latency)}"
        )
    return row


def _depth(value: Any) -> Depth:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"depth must be 1, 2 or 3, got {_short(value)}")
    return Depth(value)


class ReplaySource:
    """Answers hops from recorded evidence (JSONL of ReplayRow), keyed by
    (entity, hypothesis id, hop type, attempt); a line without a hypothesis id
    matches by pattern name. A hop that was never recorded is an errored hop
    ``replay_miss`` (counted, cost 0), or raises with ``strict=True``.

    Safe to call from many threads at once: the recorded answers are read-only once loaded and
    the miss count is kept under a lock.
    """

    def __init__(
        self,
        rows: Iterable[ReplayRow],
        *,
        strict: bool = False,
        default_quote_usd: float = DEFAULT_HOP_QUOTE_USD,
        quotes: Mapping[tuple[str, int], float] | None = None,
    ):
        self.strict = strict
        self._by_id: dict[tuple[str, str, str, int], ReplayRow] = {}
        self._by_pattern: dict[tuple[str, str, str, int], ReplayRow] = {}
        self._quote: dict[tuple[str, int], float] = dict(quotes or {})
        self._dearest: dict[str, float] = {}
        for r in rows:
            if r.hypothesis:
                self._by_id[(r.entity, r.hypothesis, r.hop_type, r.attempt)] = r
            if r.pattern:
                self._by_pattern.setdefault((r.entity, r.pattern, r.hop_type, r.attempt), r)
            if r.quote_usd is not None:
                k = (r.hop_type, r.depth)
                self._quote[k] = max(self._quote.get(k, 0.0), r.quote_usd)
            self._dearest[r.hop_type] = max(self._dearest.get(r.hop_type, 0.0), r.cost_usd)
        self.default_quote_usd = default_quote_usd
        self._lock = threading.Lock()
        self._misses = 0

    @property
    def misses(self) -> int:
        """Hops asked for that were never recorded (each answered as a ``replay_miss``)."""
        with self._lock:
            return self._misses

    @classmethod
    def load(
        cls, path: str | Path, *, hop_cost_ceiling_usd: float = DEFAULT_HOP_COST_CEILING_USD, **kw: Any
    ) -> ReplaySource:
        """Read a replay file; a line that is not a sound record (unknown decision, a cost or latency that
        is not a finite number in range, a cost above ``hop_cost_ceiling_usd``) is a one-line ConfigError
        naming the file and the line, before any hop is answered."""
        p = Path(path)
        rows: list[ReplayRow] = []
        quotes: dict[tuple[str, int], float] = {}
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ConfigError(f"replay file {p} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"replay file {p} cannot be read: {exc}") from None
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if isinstance(data, dict) and data.get("kind") == "quote":
                    key = (HopType(data["hop_type"]).value, int(_depth(data["depth"])))
                    usd = check_usd(data["quote_usd"], "quote_usd", hop_cost_ceiling_usd)
                    quotes[key] = max(quotes.get(key, 0.0), usd)
                    continue
                rows.append(_replay_row(data, hop_cost_ceiling_usd))
            except (TypeError, ValueError, KeyError, RecursionError) as exc:
                raise ConfigError(f"replay file {p} line {n}: not a replay record ({exc})") from None
        return cls(rows, quotes={**quotes, **kw.pop("quotes", {})}, **kw)

    def max_cost(self, hop_type: HopType, depth: Depth) -> float:
        hop = HopType(hop_type).value
        recorded = self._quote.get((hop, int(depth)))
        if recorded is not None:
            return recorded
        return max(self.default_quote_usd, self._dearest.get(hop, 0.0))

    def evaluate(self, entity, hypothesis, hop_type, depth, attempt) -> EvidenceResult:
        hop = HopType(hop_type).value
        row = self._by_id.get((entity.id, hypothesis.id, hop, attempt)) or self._by_pattern.get(
            (entity.id, hypothesis.pattern, hop, attempt)
        )
        if row is None:
            if self.strict:
                raise EvidenceUnavailable(
                    f"replay has no record of {entity.id} / {hypothesis.pattern} / {hop} attempt {attempt}: "
                    "record the run first, or replay non-strictly (strict=False counts it as a replay_miss)"
                )
            with self._lock:
                self._misses += 1
            return EvidenceResult(
                decision=Decision.NO_PROGRESS,
                cost_usd=0.0,
                latency_s=0.0,
                excerpt="no recorded evidence for this hop",
                error="replay_miss",
            )
        return row.result()
