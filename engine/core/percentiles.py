"""The one percentile rule: nearest rank.

Every percentile the product shows or judges by — monitoring windows, run
scorecards, rollout criteria and their bootstrap, the Rollout page's running
p95, benchmarks — comes from here, so a p95 means the same number wherever it
is read. Nearest rank returns a value that was actually measured and stays
exact with ±inf (a crashed run's latency), which interpolation does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILE_METHOD = "nearest rank: the value at 1-based rank ceil(q/100 * n) of the sorted values"


def nearest_rank_index(n: int, q: float) -> int:
    """0-based index of the q-th percentile (0..100) among ``n`` sorted values (n >= 1)."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    # q * n first: exact for whole q, so 95 of 20 is rank 19, not 20 by a rounding error
    return min(n - 1, max(0, math.ceil(q * n / 100.0) - 1))


def percentile_sorted(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile of values already in ascending order; None if there are none."""
    if not len(sorted_values):
        return None
    return float(sorted_values[nearest_rank_index(len(sorted_values), q)])


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank (``PERCENTILE_METHOD``); None if empty."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    return percentile_sorted(sorted(values), q)
