"""How hard a run may push its evidence source: entities in flight, hops per second, requests at once.

``RunLimits`` is the setting (``--concurrency``, ``--max-hops-per-s``, ``--max-in-flight``), stored
with a run as ``to_dict()``. ``concurrency`` is how many entities a run keeps in flight (each
entity's hops stay in order); the other two protect a real evaluator, which has its own rate
limits and capacity, and are enforced by wrapping the source: ``limit_source(source, limits)``.

The wrapper only makes callers wait. It calls the source exactly once per hop (it never retries,
so it never charges twice), the engine still checks each hop's quote against the budget before
it asks, and a slow or failing source slows its callers and shows up in the source's own error
counts, which the wrapper passes through with everything else the source offers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.core.errors import ConfigError
from engine.core.model import Depth, Entity, EvidenceResult, HopType, Hypothesis
from engine.discovery.evidence import EvidenceSource

#: the most entities one run keeps in flight (each is a thread waiting on its evaluator)
MAX_CONCURRENCY = 256
#: the most evaluator requests one source may have open at once
MAX_IN_FLIGHT = 1024
#: what a run on a paid source (an HTTP evaluator) may be estimated to cost before an operator must confirm it (USD)
DEFAULT_BUDGET_USD = 25.0
#: the largest budget one can set (USD); above it a typo is likelier than a plan
MAX_BUDGET_USD = 1_000_000.0
#: the fields of a stored RunLimits, in order
FIELDS = ("concurrency", "max_hops_per_s", "max_in_flight")


def check_whole(value: Any, flag: str, top: int) -> int:
    """``value`` as a whole number in 1..top; a one-line ConfigError naming ``flag`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise ConfigError(f"{flag} must be a whole number from 1 to {top}, got {value!r}")
    return value


@dataclass(frozen=True)
class RunLimits:
    """Entities in flight, and the optional limits a real evaluator needs (None: no limit)."""

    concurrency: int = 1
    max_hops_per_s: float | None = None
    max_in_flight: int | None = None

    def __post_init__(self) -> None:
        check_whole(self.concurrency, "--concurrency", MAX_CONCURRENCY)
        rate = self.max_hops_per_s
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < math.inf:
                raise ConfigError(f"--max-hops-per-s must be a finite number of hops per second > 0, got {rate!r}")
            object.__setattr__(self, "max_hops_per_s", float(rate))
        if self.max_in_flight is not None:
            check_whole(self.max_in_flight, "--max-in-flight", MAX_IN_FLIGHT)

    @property
    def limits_source(self) -> bool:
        """True when the source must be wrapped (a rate or an in-flight limit is set)."""
        return self.max_hops_per_s is not None or self.max_in_flight is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "max_hops_per_s": self.max_hops_per_s,
            "max_in_flight": self.max_in_flight,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RunLimits:
        """The limits ``to_dict`` stored (None or {}: the defaults); an unknown field is a ConfigError."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"run limits must be an object with {', '.join(FIELDS)}, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in FIELDS)
        if unknown:
            raise ConfigError(f"run limits: unknown field {', '.join(unknown)} (known: {', '.join(FIELDS)})")
        values = {k: data[k] for k in FIELDS if k in data}
        if values.get("concurrency") is None:  # not stored: one entity at a time
            values.pop("concurrency", None)
        return cls(**values)

    def describe(self) -> str:
        """One short line for an operator, e.g. "32 in flight, at most 20 hops/s, 16 requests at once"."""
        parts = [f"{self.concurrency} in flight"]
        if self.max_hops_per_s is not None:
            parts.append(f"at most {self.max_hops_per_s:g} hops/s")
        if self.max_in_flight is not None:
            parts.append(f"{self.max_in_flight} requests at once")
        return ", ".join(parts)


class _TokenBucket:
    """Hop starts spaced at least ``1 / rate`` seconds apart (a bucket of one token, refilled at ``rate``).

    The caller whose turn it is sleeps holding the lock, so starts are spaced on the clock they really
    happen at, however many threads wait; an idle bucket lets the next hop start at once.
    """

    def __init__(self, rate: float, clock: Callable[[], float], sleeper: Callable[[float], None]):
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleeper
        self._lock = threading.Lock()
        self._next = -math.inf

    def take(self) -> None:
        with self._lock:
            wait = self._next - self._clock()
            if wait > 0:
                self._sleep(wait)
            self._next = self._clock() + self.interval


class LimitedSource:
    """An evidence source behind an in-flight bound and a hop rate; everything else is the source's own.

    ``evaluate`` first takes one of ``max_in_flight`` slots, then waits for its turn in the rate, then
    asks the source once. ``max_cost``, ``truth``, ``register``, ``errors``, ``retries``, ``close`` and
    any other attribute are the wrapped source's (``inner``). ``peak_in_flight`` is the most hops this
    wrapper has had running at once.
    """

    def __init__(
        self,
        inner: EvidenceSource,
        *,
        max_in_flight: int | None = None,
        max_hops_per_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleeper: Callable[[float], None] = time.sleep,
    ):
        self.inner = inner
        self.max_in_flight = max_in_flight
        self.max_hops_per_s = max_hops_per_s
        self._slots = threading.BoundedSemaphore(max_in_flight) if max_in_flight is not None else None
        self._bucket = _TokenBucket(max_hops_per_s, clock, sleeper) if max_hops_per_s is not None else None
        self._lock = threading.Lock()
        self._in_flight = 0
        self._peak = 0

    @property
    def peak_in_flight(self) -> int:
        with self._lock:
            return self._peak

    def max_cost(self, hop_type: HopType, depth: Depth) -> float:
        return self.inner.max_cost(hop_type, depth)

    def evaluate(
        self, entity: Entity, hypothesis: Hypothesis, hop_type: HopType, depth: Depth, attempt: int
    ) -> EvidenceResult:
        # a slot first, then the rate: a hop that got its turn starts at once, so the evaluator sees
        # the spacing the rate promises (a turn taken before waiting for a slot could arrive in a burst)
        if self._slots is not None:
            self._slots.acquire()
        try:
            if self._bucket is not None:
                self._bucket.take()
            with self._lock:
                self._in_flight += 1
                self._peak = max(self._peak, self._in_flight)
            try:
                return self.inner.evaluate(entity, hypothesis, hop_type, depth, attempt)
            finally:
                with self._lock:
                    self._in_flight -= 1
        finally:
            if self._slots is not None:
                self._slots.release()

    def __enter__(self) -> LimitedSource:
        return self

    def __exit__(self, *exc: object) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy being built): never look for it on itself
            raise AttributeError(name)
        return getattr(self.inner, name)


def limit_source(
    source: EvidenceSource,
    limits: RunLimits | None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleeper: Callable[[float], None] = time.sleep,
) -> EvidenceSource:
    """``source`` behind the limits' in-flight bound and hop rate; the source itself when neither is set."""
    if limits is None or not limits.limits_source:
        return source
    return LimitedSource(
        source,
        max_in_flight=limits.max_in_flight,
        max_hops_per_s=limits.max_hops_per_s,
        clock=clock,
        sleeper=sleeper,
    )
