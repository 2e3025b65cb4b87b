"""Parameter tuning: search space, samplers, studies and trials, the study runner.

Vocabulary (after Optuna): a *study* searches a *space* of parameters with a
*sampler*; each evaluated point is a *trial*. Samplers minimise a *loss*; a
study maximises the objective's score and tells the sampler ``-score``.

Search space
    One ``Dimension`` per tuned parameter, built from ParameterConfig's bounds
    and steps. A stepped parameter (integer or float with a step) is a finite,
    ordered list of values; a continuous one (no step) is a real interval,
    gridded at ``GRID_POINTS_CONTINUOUS`` evenly spaced values when a grid is
    needed.

Samplers (``BaseSampler``)
    ``GridSampler``: every point of the grid, in row-major order, when the
    full grid fits the budget; otherwise a uniform sample *without
    replacement* of ``budget`` grid points drawn by index with
    ``random.Random(seed).sample(range(full_size), budget)`` (so a grid of
    millions of points is never materialised), visited in index order. The
    full size is always reported.
    ``RandomSampler``: independent uniform draws; point *i* comes from its own
    generator seeded with (seed, i), so a resumed study draws what it would
    have drawn.
    ``BayesianSampler``: scikit-optimize's ``Optimizer`` (Gaussian process,
    expected improvement, Latin-hypercube initial points) in ask/tell form.
    Stepped parameters are skopt ``Integer`` indexes into their value list
    (order kept, always on the step); continuous ones are ``Real``.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from engine.core.errors import ConfigError
from engine.store.opsdb import Migration

#: How many evenly spaced values a continuous parameter contributes to a grid.
GRID_POINTS_CONTINUOUS = 5

Point = dict[str, float | int]


# --------------------------------------------------------------------------- search space


def _clean(x: float, integer: bool) -> float | int:
    """Strip float noise (0.1 + 0.2) so values print and compare as written."""
    return int(round(x)) if integer else round(float(x), 10)


@dataclass(frozen=True)
class Dimension:
    """One tuned parameter: bounds, step (None = continuous) and its current default."""

    name: str
    low: float
    high: float
    default: float
    step: float | None = None
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ConfigError(f"parameter {self.name!r}: bounds [{self.low}, {self.high}] are empty; low must be < high")
        if self.step is not None and self.step <= 0:
            raise ConfigError(f"parameter {self.name!r}: step {self.step} must be positive")
        if self.integer and self.step is None:
            object.__setattr__(self, "step", 1)

    @property
    def stepped(self) -> bool:
        return self.step is not None

    def values(self) -> tuple[float | int, ...]:
        """The grid values: low..high by step (inclusive), or evenly spaced for a continuous one."""
        if self.step is None:
            n = GRID_POINTS_CONTINUOUS
            return tuple(_clean(self.low + (self.high - self.low) * i / (n - 1), False) for i in range(n))
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return tuple(_clean(self.low + i * self.step, self.integer) for i in range(n))

    def snap(self, value: float) -> float | int:
        """The nearest allowed value (clipped into bounds, on the step)."""
        v = min(max(float(value), self.low), self.high)
        if self.step is None:
            return _clean(v, False)
        values = self.values()
        return values[self.index_of(v)]

    def index_of(self, value: float) -> int:
        """Index of the grid value nearest ``value`` (stepped dimensions)."""
        assert self.step is not None
        i = round((min(max(float(value), self.low), self.high) - self.low) / self.step)
        return int(min(max(i, 0), len(self.values()) - 1))

    def sample(self, rng: random.Random) -> float | int:
        if self.step is None:
            return _clean(rng.uniform(self.low, self.high), False)
        return rng.choice(self.values())

    # skopt mapping ---------------------------------------------------------
    def skopt_dimension(self):
        from skopt.space import Integer, Real

        if self.step is None:
            return Real(self.low, self.high, name=self.name)
        return Integer(0, len(self.values()) - 1, name=self.name)

    def to_skopt(self, value: float) -> float | int:
        if self.step is None:
            return float(min(max(float(value), self.low), self.high))
        return self.index_of(value)

    def from_skopt(self, x: Any) -> float | int:
        if self.step is None:
            return _clean(float(x), False)
        return self.values()[int(x)]


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]

    def __post_init__(self) -> None:
        if not self.dimensions:
            raise ConfigError("the search space is empty: name at least one parameter to tune")
        names = [d.name for d in self.dimensions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"parameter(s) named twice in the search space: {', '.join(dupes)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def grid_size(self) -> int:
        return math.prod(len(d.values()) for d in self.dimensions)

    def grid_point(self, index: int) -> Point:
        """The ``index``-th point of the full grid in row-major order (last parameter fastest)."""
        if not 0 <= index < self.grid_size():
            raise IndexError(f"grid index {index} outside 0..{self.grid_size() - 1}")
        point: Point = {}
        for d in reversed(self.dimensions):
            values = d.values()
            index, i = divmod(index, len(values))
            point[d.name] = values[i]
        return {d.name: point[d.name] for d in self.dimensions}

    def defaults(self) -> Point:
        return {d.name: d.default for d in self.dimensions}

    def snap(self, point: Mapping[str, float]) -> Point:
        return {d.name: d.snap(point[d.name]) for d in self.dimensions}

    def key(self, point: Mapping[str, float]) -> tuple:
        """Hashable identity of a point after snapping (for duplicate checks)."""
        return tuple(self.snap(point).values())

    def sample(self, rng: random.Random) -> Point:
        return {d.name: d.sample(rng) for d in self.dimensions}

    def skopt_dimensions(self) -> list:
        return [d.skopt_dimension() for d in self.dimensions]

    def to_skopt(self, point: Mapping[str, float]) -> list:
        return [d.to_skopt(point[d.name]) for d in self.dimensions]

    def from_skopt(self, x: Sequence[Any]) -> Point:
        return {d.name: d.from_skopt(v) for d, v in zip(self.dimensions, x)}

    def describe(self) -> list[dict]:
        return [
            {
                "name": d.name,
                "low": d.low,
                "high": d.high,
                "step": d.step,
                "default": d.default,
                "values": len(d.values()) if d.stepped else None,
            }
            for d in self.dimensions
        ]


# --------------------------------------------------------------------------- samplers


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

    def description(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class GridPlan:
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
            from threadpoolctl import threadpool_limits

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
        import warnings

        with warnings.catch_warnings():
            # skopt warns when its model proposes a known point and it falls back to a random one
            warnings.simplefilter("ignore", UserWarning)
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1):
                x = self.optimizer.ask()
        return self.space.from_skopt(x)

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


# --------------------------------------------------------------------------- the tuned parameters

#: The default tuned subset: the ten parameters whose best value in a one-at-a-time sweep
#: beat the default config by most (gain = best score of the sweep minus the default's),
#: measured with ``python -m engine tune sensitivity --points 5`` (250 catalogue entities,
#: seed 7, world seed 11, the 207 training entities of split 0.8). A large *spread* alone
#: is not a reason to tune: max_cost_usd, max_iterations and depth_patience have large
#: spreads only because their extremes are bad, and their defaults are already the best
#: values of the sweep. saturation_count gained too but most of its range is invalid with
#: the default saturation_window (count > window), so it is left to an explicit --params.
#: Temporal decay, cluster dampening and the cache parameters cannot move the objective at
#: all (see engine.tuning.objective), so they are never defaults.
DEFAULT_TUNED: tuple[str, ...] = (
    "value_csuite",
    "value_default",
    "value_strategic",
    "delta_weak_accept",
    "delta_accept",
    "exploration_bonus",
    "flat_window",
    "flat_epsilon",
    "channel_w_depth",
    "actionable_min_categories",
)

#: how many of the best training trials are re-scored on the hold-out set (besides trial 0)
HOLDOUT_TOP_K = 3


def search_space(names: Sequence[str], base=None) -> SearchSpace:
    """A SearchSpace over ParameterConfig fields ``names``: PARAMETER_SPECS' bounds and steps,
    with ``base`` (default: the shipped defaults) as each dimension's current value."""
    from engine.core.params import DEFAULT_PARAMS, SPEC_BY_NAME

    base = base if base is not None else DEFAULT_PARAMS
    unknown = [n for n in names if n not in SPEC_BY_NAME]
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)} to tune: pick from {', '.join(SPEC_BY_NAME)}"
        )
    dims = []
    for name in names:
        spec = SPEC_BY_NAME[name]
        dims.append(
            Dimension(name, spec.low, spec.high, default=getattr(base, name), step=spec.step, integer=spec.integer)
        )
    return SearchSpace(tuple(dims))


def parse_param_names(text: str | None) -> tuple[str, ...]:
    """``"a,b,c"`` -> ("a", "b", "c"); None or empty -> DEFAULT_TUNED."""
    if not text:
        return DEFAULT_TUNED
    return tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))


# --------------------------------------------------------------------------- persistence (studies live in engine.tuning.study)

MIGRATIONS: list[Migration] = [
    Migration(
        component="tuning",
        version=1,
        name="tuning studies and trials",
        statements=(
            """
            CREATE TABLE IF NOT EXISTS tuning_studies (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                created_at REAL NOT NULL,
                actor TEXT NOT NULL,
                spec TEXT NOT NULL,
                base_config TEXT NOT NULL,
                base_hash TEXT NOT NULL,
                train_ids TEXT NOT NULL,
                holdout_ids TEXT NOT NULL,
                sampler TEXT NOT NULL,
                grid_full_size INTEGER,
                job_id INTEGER,
                finished_at REAL,
                result TEXT
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS tuning_trials (
                id INTEGER PRIMARY KEY,
                study_id INTEGER NOT NULL REFERENCES tuning_studies (id),
                number INTEGER NOT NULL,
                state TEXT NOT NULL,
                point TEXT NOT NULL,
                config TEXT,
                config_hash TEXT NOT NULL DEFAULT '',
                score REAL,
                result TEXT,
                error TEXT,
                started_at REAL NOT NULL,
                finished_at REAL NOT NULL,
                holdout_score REAL,
                holdout_result TEXT,
                UNIQUE (study_id, number)
            )
            """,
        ),
    ),
]

