"""The search space of a tuning study: which parameters are tuned and the values each may take.

One ``Dimension`` per tuned parameter, built from ParameterConfig's bounds
and steps (``search_space``). A stepped parameter (integer or float with a
step) is a finite, ordered list of values; a continuous one (no step) is a
real interval, gridded at ``GRID_POINTS_CONTINUOUS`` evenly spaced values
when a grid is needed. A dimension also maps its values to and from
scikit-optimize's dimensions (stepped: an ``Integer`` index into the value
list, so proposals stay on the step; continuous: a ``Real``), which the
Bayesian sampler (engine.tuning.samplers) searches in.

``DEFAULT_TUNED`` is the documented default subset of tuned parameters.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.core.errors import ConfigError
from engine.core.params import DEFAULT_PARAMS, SPEC_BY_NAME

#: How many evenly spaced values a continuous parameter contributes to a grid.
GRID_POINTS_CONTINUOUS = 5

Point = dict[str, float | int]


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
            raise ConfigError(
                f"parameter {self.name!r}: bounds [{self.low}, {self.high}] are empty; low must be < high"
            )
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
        # imported here, not at the top: scikit-optimize takes over a second to import and only the
        # Bayesian sampler asks for its dimensions
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
    """The tuned dimensions, in order; a point is a dict name -> value with one entry per dimension."""

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


def search_space(names: Sequence[str], base=None) -> SearchSpace:
    """A SearchSpace over ParameterConfig fields ``names``: PARAMETER_SPECS' bounds and steps,
    with ``base`` (default: the shipped defaults) as each dimension's current value."""
    base = base if base is not None else DEFAULT_PARAMS
    unknown = [n for n in names if n not in SPEC_BY_NAME]
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)} to tune: pick from {', '.join(SPEC_BY_NAME)}")
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
