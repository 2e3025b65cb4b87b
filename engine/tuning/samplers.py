"""Samplers: propose the next point of a SearchSpace and learn from finished evaluations.

Vocabulary (after Optuna): a *study* searches a *space* of parameters with a
*sampler*; each evaluated point is a *trial*. Samplers minimise a *loss*; a
study maximises the objective's score and tells the sampler ``-score``.

``GridSampler``: every point of the grid, in row-major order, when the full
grid fits the budget; otherwise a uniform sample *without replacement* of
``budget`` grid points drawn by index with
``random.Random(seed).sample(range(full_size), budget)`` (so a grid of
millions of points is never materialised), visited in index order. The full
size is always reported.

``RandomSampler``: independent uniform draws; point *i* comes from its own
generator seeded with (seed, i), so a resumed study draws what it would have
drawn.

``BayesianSampler``: scikit-optimize's ``Optimizer`` (Gaussian process,
expected improvement, Latin-hypercube initial points) in ask/tell form, over
the space's skopt dimensions (engine.tuning.space).
"""

from __future__ import annotations

import math
import random
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from threadpoolctl import threadpool_limits

from engine.core.errors import ConfigError
from engine.tuning.space import Point, SearchSpace

#: scikit-optimize's constant-liar strategy for a batch of points (the lie: the best loss seen so far)
LIAR_STRATEGY = "cl_min"


class BaseSampler(ABC):
    """Proposes points of a SearchSpace and learns from finished evaluations.

    Contract:
    - ``ask()`` returns the next point to evaluate (a dict name -> value inside
      the space), or None when the sampler has nothing left to propose (a grid
      that is exhausted).
    - ``tell(point, loss)`` records one finished evaluation; lower loss is
      better; ``loss=None`` marks a failed evaluation.
    - Asking twice without telling may return the same point: a crashed
      evaluation is simply asked again.
    - A fresh sampler with the same arguments, told the same finished
      evaluations, continues the search without proposing those points again
      (this is how a study resumes after a crash).
    """

    def __init__(self, space: SearchSpace):
        self.space = space
        self.told: list[tuple[Point, float | None]] = []

    @abstractmethod
    def ask(self) -> Point | None: ...

    def tell(self, point: Mapping[str, float], loss: float | None) -> None:
        self.told.append((dict(point), loss))

    def replay(self, history: Iterable[tuple[Mapping[str, float], float | None]]) -> None:
        """Tell many finished evaluations at once (resume)."""
        for point, loss in history:
            self.tell(point, loss)

    def ask_batch(self, numbers: Sequence[int]) -> list[Point]:
        """Points for the trials ``numbers``, to be evaluated at once (told when they all finished); fewer
        when the sampler runs out. One trial: exactly ``ask()``, so a study with one trial in flight is the
        study it always was."""
        if not numbers:
            return []
        point = self.ask()
        return [] if point is None else [point]

    def description(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class GridPlan:
    """The grid points a grid sampler visits, the full grid's size, and whether the points are a sample of it."""

    points: tuple[Point, ...]
    full_size: int
    sampled: bool

    def describe(self) -> str:
        if not self.sampled:
            return f"full grid: {self.full_size:,} points"
        return (
            f"grid of {self.full_size:,} points is larger than the budget: a uniform sample without "
            f"replacement of {len(self.points):,} grid points (by index), visited in grid order"
        )


def grid_plan(space: SearchSpace, budget: int, seed: int) -> GridPlan:
    """All grid points when they fit ``budget``; else a seeded uniform sample of ``budget`` of them."""
    if budget < 1:
        raise ConfigError(f"grid budget {budget} must be at least 1 (use --iterations N)")
    full = space.grid_size()
    if full <= budget:
        return GridPlan(tuple(space.grid_point(i) for i in range(full)), full, sampled=False)
    # random.sample on a range draws indexes without building the range.
    indexes = sorted(random.Random(seed).sample(range(full), budget))
    return GridPlan(tuple(space.grid_point(i) for i in indexes), full, sampled=True)


class GridSampler(BaseSampler):
    """Visits the grid plan in order, skipping points already told (see ``grid_plan``)."""

    def __init__(self, space: SearchSpace, budget: int, seed: int = 0):
        super().__init__(space)
        self.plan = grid_plan(space, budget, seed)
        self._done: set[tuple] = set()

    def tell(self, point, loss) -> None:
        super().tell(point, loss)
        self._done.add(self.space.key(point))

    def remaining(self) -> int:
        """Plan points not told yet (how many more trials the grid can give)."""
        return sum(1 for p in self.plan.points if self.space.key(p) not in self._done)

    def ask(self) -> Point | None:
        for p in self.plan.points:
            if self.space.key(p) not in self._done:
                return dict(p)
        return None

    def ask_batch(self, numbers: Sequence[int]) -> list[Point]:
        """The next ``len(numbers)`` plan points not told yet, in plan order."""
        todo = [dict(p) for p in self.plan.points if self.space.key(p) not in self._done]
        return todo[: len(numbers)]

    def description(self) -> str:
        return f"grid ({self.plan.describe()})"


class RandomSampler(BaseSampler):
    """Uniform random points; the i-th proposal is drawn from Random((seed, i))."""

    def __init__(self, space: SearchSpace, seed: int = 0):
        super().__init__(space)
        self.seed = seed

    def ask(self) -> Point:
        rng = random.Random(f"{self.seed}:{len(self.told)}")
        return self.space.sample(rng)

    def ask_batch(self, numbers: Sequence[int]) -> list[Point]:
        """Trial ``n``'s point is drawn from Random((seed, n)): what a study with one trial in flight draws
        for trial n (trials 0..n-1 told), whatever the parallelism or the order trials finish in."""
        return [self.space.sample(random.Random(f"{self.seed}:{n}")) for n in numbers]

    def description(self) -> str:
        return f"random (uniform, seed {self.seed})"


class BayesianSampler(BaseSampler):
    """Gaussian-process Bayesian optimisation with scikit-optimize's Optimizer (ask/tell).

    Failed evaluations are told as the worst loss seen so far (so the model
    steers away without inventing a number); before any success they are
    only remembered and told once a real loss exists.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        n_initial_points: int = 8,
        acq_func: str = "EI",
    ):
        super().__init__(space)
        # imported here, not at the top: scikit-optimize (and scikit-learn under it) takes over a second to
        # import and only the Bayesian method needs it
        from skopt import Optimizer

        self.seed = seed
        self.n_initial_points = n_initial_points
        self.acq_func = acq_func
        self.optimizer = Optimizer(
            space.skopt_dimensions(),
            base_estimator="GP",
            n_initial_points=n_initial_points,
            initial_point_generator="lhs",
            acq_func=acq_func,
            random_state=seed,
        )
        self._failed_pending: list[list] = []

    def _tell_many(self, xs: list[list], ys: list[float]) -> None:
        if xs:
            # one batch = one model fit, however many points (resume tells dozens).
            # BLAS limited to one thread: the GP fit's many small L-BFGS steps ran ~4x
            # slower with the default thread pool on a 2-core machine (measured).
            with threadpool_limits(limits=1):
                self.optimizer.tell(xs, ys)

    def tell(self, point, loss) -> None:
        super().tell(point, loss)
        self._absorb([(point, loss)])

    def replay(self, history) -> None:
        history = [(dict(p), loss) for p, loss in history]
        self.told.extend(history)
        self._absorb(history)

    def _absorb(self, history: list[tuple[Mapping[str, float], float | None]]) -> None:
        xs: list[list] = []
        ys: list[float] = []
        worst = max(self.optimizer.yi) if self.optimizer.yi else None
        for point, loss in history:
            x = self.space.to_skopt(point)
            if loss is None or not math.isfinite(loss):
                if worst is None:
                    self._failed_pending.append(x)
                else:
                    xs.append(x)
                    ys.append(worst)
                continue
            xs.append(x)
            ys.append(float(loss))
            worst = loss if worst is None else max(worst, loss)
            if self._failed_pending:
                xs.extend(self._failed_pending)
                ys.extend([worst] * len(self._failed_pending))
                self._failed_pending = []
        self._tell_many(xs, ys)

    def ask(self) -> Point:
        with warnings.catch_warnings():
            # skopt warns when its model proposes a known point and it falls back to a random one
            warnings.simplefilter("ignore", UserWarning)
            with threadpool_limits(limits=1):
                x = self.optimizer.ask()
        return self.space.from_skopt(x)

    def ask_batch(self, numbers: Sequence[int]) -> list[Point]:
        """k points at once by scikit-optimize's constant liar (``ask(n_points=k, strategy="cl_min")``: each
        point is chosen as if the ones before it had scored the best loss seen so far), so k trials explore
        different places; told when they finish. One point: ``ask()``."""
        if len(numbers) <= 1:
            return super().ask_batch(numbers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            with threadpool_limits(limits=1):
                xs = self.optimizer.ask(n_points=len(numbers), strategy=LIAR_STRATEGY)
        return [self.space.from_skopt(x) for x in xs]

    def description(self) -> str:
        return (
            f"bayesian (scikit-optimize GP, acquisition {self.acq_func}, "
            f"{self.n_initial_points} Latin-hypercube initial points, seed {self.seed})"
        )


METHODS = ("grid", "random", "bayesian")


def make_sampler(method: str, space: SearchSpace, *, budget: int, seed: int) -> BaseSampler:
    """The sampler for a study method. ``budget`` is the number of search trials."""
    if method == "grid":
        return GridSampler(space, budget=budget, seed=seed)
    if method == "random":
        return RandomSampler(space, seed=seed)
    if method == "bayesian":
        return BayesianSampler(space, seed=seed, n_initial_points=max(1, min(8, budget // 3)))
    raise ConfigError(f"unknown tuning method {method!r}: use one of {', '.join(METHODS)}")
