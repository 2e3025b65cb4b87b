"""The sampler benchmark: `python -m engine bench tuning`, Bayesian vs random search on the Branin function.

Branin (two parameters, x1 in [-5, 10], x2 in [0, 15]) has three global
minima of 0.397887. For each seed, each sampler asks and is told Branin's
value until its best value is within ``tolerance`` of that optimum or its
budget is spent; the figure is how many evaluations that took. A run that
never gets there counts as budget + 1 in the means. Nothing is asserted: the
figures are printed, with the ratio random / Bayesian next to them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.tuning.samplers import BaseSampler, BayesianSampler, RandomSampler
from engine.tuning.space import Dimension, Point, SearchSpace

#: Branin's global minimum
OPTIMUM = 0.397887
BRANIN_SPACE = SearchSpace((Dimension("x1", -5.0, 10.0, 2.5), Dimension("x2", 0.0, 15.0, 7.5)))


def branin(p: Point) -> float:
    """The Branin-Hoo function at ``p`` (keys x1, x2)."""
    x1, x2 = p["x1"], p["x2"]
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


def evals_to_reach(sampler: BaseSampler, budget: int, tolerance: float) -> tuple[int | None, float]:
    """(evaluations until the best value is within ``tolerance`` of the optimum or None, best value seen)."""
    best = math.inf
    for i in range(budget):
        p = sampler.ask()
        if p is None:  # a sampler with a finite plan ran out of points: the optimum was not reached
            break
        y = branin(p)
        sampler.tell(p, y)
        best = min(best, y)
        if best <= OPTIMUM + tolerance:
            return i + 1, best
    return None, best


@dataclass(frozen=True)
class SeedResult:
    """One seed: evaluations to the optimum (None = not reached) and best value, per sampler."""

    seed: int
    bayesian_evals: int | None
    bayesian_best: float
    random_evals: int | None
    random_best: float
    bayesian_seconds: float


def run_seed(seed: int, *, budget: int, random_budget: int, tolerance: float) -> SeedResult:
    """Both samplers from ``seed``: Bayesian (8 initial points) with ``budget``, random with ``random_budget``."""
    t0 = time.perf_counter()
    b_n, b_best = evals_to_reach(BayesianSampler(BRANIN_SPACE, seed=seed, n_initial_points=8), budget, tolerance)
    t1 = time.perf_counter()
    r_n, r_best = evals_to_reach(RandomSampler(BRANIN_SPACE, seed=seed), random_budget, tolerance)
    return SeedResult(seed, b_n, b_best, r_n, r_best, t1 - t0)


def run_tuning_bench(
    seeds: int,
    *,
    budget: int,
    random_budget: int,
    tolerance: float,
    on_seed: Callable[[SeedResult], None] | None = None,
) -> list[SeedResult]:
    """Seeds 0 .. ``seeds - 1``; ``on_seed`` is called as each finishes (the Bayesian runs take seconds)."""
    rows = []
    for seed in range(seeds):
        row = run_seed(seed, budget=budget, random_budget=random_budget, tolerance=tolerance)
        rows.append(row)
        if on_seed is not None:
            on_seed(row)
    return rows


def format_seed(row: SeedResult, *, budget: int, random_budget: int) -> str:
    """One line per seed."""
    return (
        f"seed {row.seed}: bayesian {row.bayesian_evals or f'>{budget}'} evaluations "
        f"(best {row.bayesian_best:.4f}, {row.bayesian_seconds:.1f} s); "
        f"random {row.random_evals or f'>{random_budget}'} evaluations (best {row.random_best:.4f})"
    )


def format_summary(rows: Sequence[SeedResult], *, budget: int, random_budget: int, tolerance: float) -> str:
    """The mean evaluations of each sampler and their ratio (a run that failed counts as budget + 1)."""
    b_mean = sum((r.bayesian_evals or budget + 1) for r in rows) / len(rows)
    r_mean = sum((r.random_evals or random_budget + 1) for r in rows) / len(rows)
    return (
        f"mean evaluations to reach optimum + {tolerance}: bayesian {b_mean:.1f}, random {r_mean:.1f}, "
        f"ratio random/bayesian {r_mean / b_mean:.1f}x (a failed run counts as budget + 1)"
    )
