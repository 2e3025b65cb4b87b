"""Paired old-vs-new measurements with intervals.

Every stage entity yields one ``PairedOutcome``: the candidate's run and, when
the entity was in the shadow sample, the baseline's run on the same entity.
``measure`` turns a list of them into one ``Measurement`` per metric:

* ``cost_reduction_pct``      (Σ old cost − Σ new cost) / Σ old cost × 100 over paired entities;
                              interval: paired bootstrap over entities (resampling pairs).
* ``cost_increase_pct``       the negation of the above (and its interval mirrored).
* ``actionable_increase_pct`` (Σ new actionable − Σ old actionable) / Σ old actionable × 100 over
                              paired entities; paired bootstrap. +inf when the baseline made no
                              actionable call and the candidate did.
* ``error_rate_pct``          errored hops plus crashed runs over hops plus crashed runs of the
                              candidate; exact Clopper–Pearson interval (treats hops as independent).
* ``p95_latency_ms``          95th percentile (nearest rank) of the candidate's own per-entity
                              decision time (engine time, evidence latency excluded); bootstrap.

The random generator is passed in; the same seed gives the same intervals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta

from engine.core.percentiles import nearest_rank_index
from engine.rollout.stages import Metric


@dataclass(frozen=True)
class PairedOutcome:
    """One stage entity: the candidate's run and (if shadowed) the baseline's on the same entity."""

    entity_id: str
    new_cost: float
    new_actionable: bool
    new_hops: int
    new_errors: int
    new_engine_ms: float
    new_crashed: bool = False  # the candidate's run raised: counted as an error, nothing written
    old_cost: float | None = None  # None: not in the shadow sample (or the baseline crashed)
    old_actionable: bool | None = None

    @property
    def paired(self) -> bool:
        return self.old_cost is not None and not self.new_crashed

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> PairedOutcome:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class Measurement:
    metric: str
    value: float | None  # None: no data
    low: float | None
    high: float | None
    n: int  # entities (or hops for error rate) behind the value
    method: str  # how the interval was made
    level: float

    def to_dict(self) -> dict:
        return {k: (_finite(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> Measurement:
        vals = {k: d[k] for k in cls.__dataclass_fields__}
        for k in ("value", "low", "high"):
            if isinstance(vals[k], str):
                vals[k] = float(vals[k])  # "inf" / "-inf"
        return cls(**vals)


def _finite(v: float) -> float | str:
    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")


# --------------------------------------------------------------------------- primitives


def quantile(sorted_values: np.ndarray, q: float) -> float:
    """Nearest-rank quantile (q a fraction, 0..1) of an ascending array (engine.core.percentiles' rule)."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    return float(sorted_values[nearest_rank_index(n, q * 100.0)])


def p95(values: Sequence[float] | np.ndarray) -> float:
    """Nearest-rank 95th percentile of unsorted values (nan when there are none)."""
    return quantile(np.sort(np.asarray(values, dtype=float)), 0.95)


def relative_change_pct(base: float, other: float) -> float:
    """(other − base) / base × 100; +inf / 0 / −inf when base is 0."""
    if base == 0:
        return math.inf if other > 0 else (-math.inf if other < 0 else 0.0)
    return (other - base) / base * 100.0


#: the most bootstrap indices drawn at once (rows x entities): about 8 MB of int64
BOOTSTRAP_BLOCK_CELLS = 1_000_000


def bootstrap_rows(
    statistic: Callable[[np.ndarray], np.ndarray], n: int, rng: np.random.Generator, *, resamples: int = 2000
) -> np.ndarray:
    """``resamples`` values of ``statistic``, unsorted: each gets one row of ``n`` indices drawn with replacement.

    ``statistic(idx)`` gets an int array of shape (rows, n), one resample per row, and returns one value per
    row (vectorised). The resamples are drawn in blocks of at most ``BOOTSTRAP_BLOCK_CELLS`` indices: the same
    stream of draws as one (resamples, n) array (the same values, to the last bit), without holding 2,000 x
    the stage's entities of them at once (54 MB at 3,400 entities, times every array a statistic builds).
    """
    rows = max(1, min(resamples, BOOTSTRAP_BLOCK_CELLS // n))
    parts = []
    for start in range(0, resamples, rows):
        idx = rng.integers(0, n, size=(min(rows, resamples - start), n))
        parts.append(np.asarray(statistic(idx), dtype=float))
    return np.concatenate(parts)


def percentile_interval(values: np.ndarray, level: float = 0.9) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap ``values`` (percentile method)."""
    ordered = np.sort(values)
    alpha = (1.0 - level) / 2.0
    return quantile(ordered, alpha), quantile(ordered, 1.0 - alpha)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    rng: np.random.Generator,
    *,
    resamples: int = 2000,
    level: float = 0.9,
) -> tuple[float, float]:
    """Percentile bootstrap: resample ``n`` indices with replacement, ``resamples`` times (``bootstrap_rows``).
    Pairs are resampled together, which is what makes the interval paired."""
    if n == 0:
        return math.nan, math.nan
    return percentile_interval(bootstrap_rows(statistic, n, rng, resamples=resamples), level)


def clopper_pearson(k: int, n: int, level: float = 0.9) -> tuple[float, float]:
    """Exact binomial interval for k successes in n trials, as proportions."""
    if n == 0:
        return math.nan, math.nan
    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


# --------------------------------------------------------------------------- the stage metrics


def relative_change_rows(base: np.ndarray | float, other: np.ndarray | float) -> np.ndarray:
    """Vectorised relative_change_pct: +inf / 0 / -inf where base is 0."""
    base = np.asarray(base, dtype=float)
    other = np.asarray(other, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (other - base) / base * 100.0
    zero = base == 0
    out = np.where(zero & (other > 0), math.inf, out)
    out = np.where(zero & (other < 0), -math.inf, out)
    return np.where(zero & (other == 0), 0.0, out)


def p95_rows(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The bootstrap statistic "nearest-rank p95 of the resampled ``values``" (for ``bootstrap_rows``)."""

    def stat(idx: np.ndarray) -> np.ndarray:
        n = idx.shape[-1]
        k = nearest_rank_index(n, 95.0)
        return np.partition(values[idx], k, axis=-1)[..., k]

    return stat


def measure(
    outcomes: Sequence[PairedOutcome],
    rng: np.random.Generator,
    *,
    level: float = 0.9,
    resamples: int = 2000,
) -> dict[str, Measurement]:
    """One Measurement per Metric from a stage's paired outcomes (see module doc)."""
    out: dict[str, Measurement] = {}
    paired = [o for o in outcomes if o.paired]
    n_p = len(paired)
    old_cost = np.array([o.old_cost for o in paired], dtype=float)
    new_cost = np.array([o.new_cost for o in paired], dtype=float)
    old_act = np.array([1.0 if o.old_actionable else 0.0 for o in paired])
    new_act = np.array([1.0 if o.new_actionable else 0.0 for o in paired])

    def reduction(idx: np.ndarray) -> np.ndarray:
        return -relative_change_rows(old_cost[idx].sum(axis=-1), new_cost[idx].sum(axis=-1))

    def act_increase(idx: np.ndarray) -> np.ndarray:
        return relative_change_rows(old_act[idx].sum(axis=-1), new_act[idx].sum(axis=-1))

    boot = f"paired bootstrap over entities ({resamples} resamples)"
    if n_p:
        all_idx = np.arange(n_p)
        red = float(reduction(all_idx))
        lo, hi = bootstrap_interval(reduction, n_p, rng, resamples=resamples, level=level)
        out[Metric.COST_REDUCTION_PCT] = Measurement(Metric.COST_REDUCTION_PCT, red, lo, hi, n_p, boot, level)
        out[Metric.COST_INCREASE_PCT] = Measurement(Metric.COST_INCREASE_PCT, -red, -hi, -lo, n_p, boot, level)
        inc = float(act_increase(all_idx))
        lo, hi = bootstrap_interval(act_increase, n_p, rng, resamples=resamples, level=level)
        out[Metric.ACTIONABLE_INCREASE_PCT] = Measurement(Metric.ACTIONABLE_INCREASE_PCT, inc, lo, hi, n_p, boot, level)
    else:
        for m in (Metric.COST_REDUCTION_PCT, Metric.COST_INCREASE_PCT, Metric.ACTIONABLE_INCREASE_PCT):
            out[m] = Measurement(m, None, None, None, 0, "no paired entities yet", level)

    trials = sum(o.new_hops + (1 if o.new_crashed else 0) for o in outcomes)
    errors = sum(o.new_errors + (1 if o.new_crashed else 0) for o in outcomes)
    if trials:
        lo, hi = clopper_pearson(errors, trials, level)
        out[Metric.ERROR_RATE_PCT] = Measurement(
            Metric.ERROR_RATE_PCT,
            errors / trials * 100.0,
            lo * 100.0,
            hi * 100.0,
            trials,
            f"exact Clopper-Pearson ({errors} errors in {trials} hops and runs)",
            level,
        )
    else:
        out[Metric.ERROR_RATE_PCT] = Measurement(Metric.ERROR_RATE_PCT, None, None, None, 0, "no hops yet", level)

    lat = np.array([o.new_engine_ms for o in outcomes if not o.new_crashed], dtype=float)
    if len(lat):
        lo, hi = bootstrap_interval(p95_rows(lat), len(lat), rng, resamples=resamples, level=level)
        out[Metric.P95_LATENCY_MS] = Measurement(
            Metric.P95_LATENCY_MS, p95(lat), lo, hi, len(lat), f"bootstrap over entities ({resamples} resamples)", level
        )
    else:
        out[Metric.P95_LATENCY_MS] = Measurement(Metric.P95_LATENCY_MS, None, None, None, 0, "no runs yet", level)
    return {str(k): v for k, v in out.items()}
