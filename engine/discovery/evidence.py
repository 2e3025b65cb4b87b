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

import http.client
import json
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from engine.core.errors import ConfigError, DiscoveryError
from engine.core.model import Decision, Depth, Entity, EvidenceResult, HopType, Hypothesis, RunResult


class EvidenceUnavailable(DiscoveryError):
    """The evidence source cannot be reached at all; no hop was bought."""


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

    Retries only when no charge can have happened: the TCP connection could not
    be opened (refused, DNS failure, connect timeout), so the request was never
    sent. Once the request may have reached the evaluator, nothing is retried:
    a read timeout, a dropped connection, an HTTP error status or an unusable
    body is an errored hop, counted by type (``timeout``, ``connection_dropped``,
    ``http_5xx``, ``http_4xx``, ``bad_response``). If it never connects after
    the retries, ``EvidenceUnavailable`` is raised.

    Costs: a reply's ``cost_usd`` is used whenever it can be read. When the
    evaluator may have charged but said nothing (timeout, dropped connection,
    unreadable body) the hop is booked at its quote, so budgets err on the safe
    side. The quote is ``max_hop_cost_usd`` (or the dearest hop seen, if higher).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 2,
        backoff_s: float = 0.25,
        max_hop_cost_usd: float = 0.05,
        headers: Mapping[str, str] | None = None,
        sleeper: Callable[[float], None] = time.sleep,
        timer: Callable[[], float] = time.perf_counter,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"evaluator URL {url!r} is not an http(s) URL: use e.g. http://127.0.0.1:8000/evaluate")
        self.url = url
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_hop_cost_usd = max_hop_cost_usd
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        self._sleep = sleeper
        self._timer = timer
        self._dearest: dict[str, float] = {}
        self.errors: Counter[str] = Counter()
        self.retries = 0

    def max_cost(self, hop_type: HopType, depth: Depth) -> float:
        return max(self.max_hop_cost_usd, self._dearest.get(HopType(hop_type).value, 0.0))

    @staticmethod
    def request_body(entity: Entity, hypothesis: Hypothesis, hop_type: HopType, depth: Depth) -> dict[str, Any]:
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
        }

    def _connection(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self.connect_timeout_s, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.connect_timeout_s)

    def evaluate(
        self, entity: Entity, hypothesis: Hypothesis, hop_type: HopType, depth: Depth, attempt: int
    ) -> EvidenceResult:
        hop_type = HopType(hop_type)
        quote = self.max_cost(hop_type, depth)
        body = json.dumps(self.request_body(entity, hypothesis, hop_type, depth)).encode("utf-8")
        started = self._timer()
        conn = None
        last_exc: BaseException | None = None
        for attempt_no in range(self.max_retries + 1):
            conn = self._connection()
            try:
                conn.connect()  # nothing has been sent yet: failing here cannot have charged anyone
                break
            except OSError as exc:  # refused, DNS failure, connect timeout, TLS handshake
                conn.close()
                conn = None
                last_exc = exc
                if attempt_no < self.max_retries:
                    self.retries += 1
                    self._sleep(self.backoff_s * 2**attempt_no)
        if conn is None:
            reason = type(last_exc).__name__ if last_exc else "unknown"
            raise EvidenceUnavailable(
                f"evidence evaluator at {self.url} is unreachable ({reason} after {self.max_retries + 1} tries): "
                "start it, or check the URL"
            )
        try:
            conn.sock.settimeout(self.timeout_s)
            try:
                conn.request("POST", self._path, body=body, headers=self.headers)
                resp = conn.getresponse()
                status = resp.status
                raw = resp.read()
            except TimeoutError:
                return self._failed("timeout", quote, self._timer() - started, hop_type)
            except (ConnectionError, http.client.HTTPException, OSError):
                return self._failed("connection_dropped", quote, self._timer() - started, hop_type)
        finally:
            conn.close()
        latency = self._timer() - started
        data: Any = None
        try:
            data = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None
        reported = _cost_of(data)
        if status >= 500:
            return self._failed("http_5xx", reported if reported is not None else 0.0, latency, hop_type)
        if status >= 400 or status < 200:
            return self._failed(f"http_{status // 100}xx", reported if reported is not None else 0.0, latency, hop_type)
        if not isinstance(data, dict) or reported is None:
            return self._failed("bad_response", reported if reported is not None else quote, latency, hop_type)
        try:
            decision = Decision(str(data.get("decision", "")).upper())
        except ValueError:
            return self._failed("bad_response", reported, latency, hop_type)
        self._note_cost(hop_type, reported)
        return EvidenceResult(
            decision=decision,
            cost_usd=reported,
            latency_s=latency,
            url=str(data.get("url") or ""),
            excerpt=str(data.get("excerpt") or "")[:2000],
        )

    def _note_cost(self, hop_type: HopType, cost: float) -> None:
        if cost > self._dearest.get(hop_type.value, 0.0):
            self._dearest[hop_type.value] = cost

    def _failed(self, error: str, cost: float, latency: float, hop_type: HopType) -> EvidenceResult:
        self.errors[error] += 1
        self._note_cost(hop_type, cost)
        return EvidenceResult(
            decision=Decision.NO_PROGRESS,
            cost_usd=cost,
            latency_s=latency,
            excerpt=f"evaluator error: {error}",
            error=error,
        )


def _cost_of(data: Any) -> float | None:
    if not isinstance(data, dict):
        return None
    cost = data.get("cost_usd")
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost < 0 or cost != cost:
        return None
    return float(cost)


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
    """Wraps a source and keeps every answer as a ReplayRow; ``save(path)`` writes JSONL."""

    def __init__(self, inner: EvidenceSource):
        self.inner = inner
        self.rows: list[ReplayRow] = []
        #: every quote the engine asked for, (hop type, depth) -> USD: a replay needs the quotes of the
        #: channels that were considered but not bought too, or it would choose channels differently
        self.quotes: dict[tuple[str, int], float] = {}

    def max_cost(self, hop_type: HopType, depth: Depth) -> float:
        quote = self.inner.max_cost(hop_type, depth)
        key = (HopType(hop_type).value, int(depth))
        self.quotes[key] = max(self.quotes.get(key, 0.0), float(quote))
        return quote

    def evaluate(self, entity, hypothesis, hop_type, depth, attempt) -> EvidenceResult:
        result = self.inner.evaluate(entity, hypothesis, hop_type, depth, attempt)
        self.rows.append(
            ReplayRow(
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
        )
        return result

    def save(self, path: str | Path, append: bool = False) -> Path:
        """Write the hop rows, then one quote line per (hop type, depth) the engine asked about."""
        return write_replay(self.rows, path, append=append, quotes=self.quotes)


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


class ReplaySource:
    """Answers hops from recorded evidence (JSONL of ReplayRow), keyed by
    (entity, hypothesis id, hop type, attempt); a line without a hypothesis id
    matches by pattern name. A hop that was never recorded is an errored hop
    ``replay_miss`` (counted, cost 0), or raises with ``strict=True``.
    """

    def __init__(
        self,
        rows: Iterable[ReplayRow],
        *,
        strict: bool = False,
        default_quote_usd: float = 0.05,
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
        self.misses = 0

    @classmethod
    def load(cls, path: str | Path, **kw: Any) -> ReplaySource:
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
                    key = (HopType(data["hop_type"]).value, int(Depth(int(data["depth"]))))
                    usd = float(data["quote_usd"])
                    if not usd >= 0:
                        raise ValueError(f"quote_usd {usd} must be >= 0")
                    quotes[key] = max(quotes.get(key, 0.0), usd)
                    continue
                row = ReplayRow(**{k: data[k] for k in REPLAY_FIELDS if k in data})
                Decision(row.decision)
                HopType(row.hop_type)
            except (json.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
                raise ConfigError(f"replay file {p} line {n}: not a replay record ({exc})") from None
            rows.append(row)
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
                    "record the run first or replay without --strict"
                )
            self.misses += 1
            return EvidenceResult(
                decision=Decision.NO_PROGRESS,
                cost_usd=0.0,
                latency_s=0.0,
                excerpt="no recorded evidence for this hop",
                error="replay_miss",
            )
        return row.result()
