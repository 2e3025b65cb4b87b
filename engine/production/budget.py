"""A day's production budget: the ledger rule, and the source wrapper that checks it before each hop.

The rule: **the day's spend never exceeds the day's budget** (USD per UTC day). How it holds:

1. *Reserve before spending.* Before a batch runs, the scheduler reserves the sum of its entities'
   per-entity cost caps (the most each visit can spend: the engine checks each hop's quote against
   that cap before buying it) and writes the reservation in the ops database, fenced by its lease.
   A batch is admitted only if the reservation fits in what is left of the day
   (engine.production.policy.admit).
2. *Checked before each hop.* The batch's evidence source is wrapped in ``BudgetedSource``, which
   checks every hop's quote against what is left of the batch's reservation before the hop is bought,
   exactly as the per-entity cap is checked (a source that keeps its quotes can never make it fire;
   it is the guard against one that does not). A refused hop raises ``BudgetExhausted``: that entity's
   run is abandoned, nothing of it is written, and what its earlier hops cost stays in the ledger.
3. *Settled in one step.* When the batch is done its real spend replaces the reservation in the same
   transaction as its visits and metric events.
4. *A batch killed in flight* (a worker killed, a fault) was never settled: whatever it bought is
   unknown, so its whole reservation stays in the day's spend (``day_spent``): the ledger errs on the
   safe side and a restart continues from it, never above the budget.

``BudgetedSource`` passes everything else through to the wrapped source (``truth``, ``register``,
``waits``, ``close``, ...), as engine.discovery.limits.LimitedSource does.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.core.errors import ConfigError, DiscoveryError
from engine.core.model import Depth, Entity, EvidenceResult, HopType, Hypothesis
from engine.discovery.evidence import EvidenceSource, EvidenceUnavailable

#: the default day's budget (USD): about a third of the demo catalogue's visits on the simulated world
DEFAULT_DAILY_BUDGET_USD = 100.0
#: the largest day's budget one can set (USD); above it a typo is likelier than a plan
MAX_DAILY_BUDGET_USD = 1_000_000.0
#: sums of money are compared with this slack (float sums of cents)
USD_EPS = 1e-9


class BudgetExhausted(DiscoveryError):
    """A hop's quote does not fit in what is left of the batch's reservation: the hop is not bought."""


def check_budget(value: Any, what: str = "--budget-usd") -> float:
    """``value`` as a day's budget: a finite number of USD above 0 and at most MAX_DAILY_BUDGET_USD."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number of USD, got {value!r}")
    if not 0 < value <= MAX_DAILY_BUDGET_USD:
        raise ConfigError(f"{what} must be above 0 and at most {MAX_DAILY_BUDGET_USD:,.0f} USD, got {value!r}")
    return float(value)


def day_of(ts: float) -> str:
    """The UTC day a timestamp falls on, as the ledger keys it: ``2026-12-02``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def day_start(ts: float) -> float:
    """00:00 UTC of the day ``ts`` falls on."""
    d = datetime.fromtimestamp(ts, UTC)
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def next_day_start(ts: float) -> float:
    """00:00 UTC of the day after the one ``ts`` falls on (when the next day's budget opens)."""
    return (datetime.fromtimestamp(day_start(ts), UTC) + timedelta(days=1)).timestamp()


class BatchBudget:
    """What one batch may spend (its reservation) and what it has charged so far; thread-safe.

    ``charged`` counts every hop the source answered (its reported cost) and, for a hop that raised
    anything but EvidenceUnavailable (which means nothing was bought), its quote: money that may have
    gone is never dropped from the ledger.
    """

    def __init__(self, limit_usd: float):
        self.limit_usd = float(limit_usd)
        self._lock = threading.Lock()
        self._charged = 0.0
        self._in_flight = 0.0
        self.refused = 0

    @property
    def charged(self) -> float:
        with self._lock:
            return self._charged

    def reserve(self, quote: float) -> bool:
        """Hold ``quote`` for a hop about to be bought; False (nothing held) when it does not fit."""
        with self._lock:
            if self._charged + self._in_flight + quote > self.limit_usd + USD_EPS:
                self.refused += 1
                return False
            self._in_flight += quote
            return True

    def settle(self, quote: float, cost: float) -> None:
        """The hop held with ``quote`` is done and cost ``cost``."""
        with self._lock:
            self._in_flight -= quote
            self._charged += cost


class BudgetedSource:
    """An evidence source whose hops are bought only while they fit in a ``BatchBudget``."""

    def __init__(self, inner: EvidenceSource, budget: BatchBudget):
        self.inner = inner
        self.budget = budget

    def max_cost(self, hop_type: HopType, depth: Depth) -> float:
        return self.inner.max_cost(hop_type, depth)

    def evaluate(
        self, entity: Entity, hypothesis: Hypothesis, hop_type: HopType, depth: Depth, attempt: int
    ) -> EvidenceResult:
        quote = float(self.inner.max_cost(hop_type, depth))
        if not self.budget.reserve(quote):
            raise BudgetExhausted(
                f"entity {entity.id!r}: a {hop_type.value} hop (quote ${quote:.4f}) does not fit in what is left "
                f"of the batch's ${self.budget.limit_usd:.2f} reservation: not bought"
            )
        cost = quote  # what the hop may have cost if it fails half way
        try:
            result = self.inner.evaluate(entity, hypothesis, hop_type, depth, attempt)
            cost = float(result.cost_usd)
            return result
        except EvidenceUnavailable:
            cost = 0.0  # never reached: nothing was bought
            raise
        finally:
            self.budget.settle(quote, cost)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy being built): never look for it on itself
            raise AttributeError(name)
        return getattr(self.inner, name)


def remaining(budget_usd: float, spent_usd: float) -> float:
    """What is left of the day (never below 0)."""
    return max(0.0, budget_usd - spent_usd)


def cents(usd: float) -> str:
    """A sum of money to the cent, as the status and the benchmark print it."""
    return f"${usd:,.2f}"
