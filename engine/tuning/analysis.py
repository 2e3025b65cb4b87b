"""Reading a study's trials: which parameters mattered, how sure the hold-out improvement is, which trials
to look at. Pure functions over recorded trials (nothing runs the engine here).

**Parameter importance** (``param_importance``) is a functional-ANOVA main-effect decomposition, as
fANOVA and optuna-dashboard report it, over a random-forest surrogate of the finished trials: the forest
is fitted to (parameter values -> training score); for each parameter, its *marginal* prediction (the
forest's prediction with that parameter set to one value, averaged over the other parameters as the
trials sampled them) is computed on a grid of its observed values; the variance of that marginal is the
parameter's main effect. Effects are normalised to sum to 1. A parameter that does not move the score
has a flat marginal, so its importance is near zero whatever noise the forest fits. The forest and its
bootstrap are seeded, so the same trials give the same importances.

**Hold-out improvement interval** (``holdout_interval``): the winner and the current config are scored
on the same hold-out entities, so their difference is paired. The interval is a percentile bootstrap of
the mean per-entity difference: entities are resampled with replacement (seeded), each resample's mean
difference is taken, and the central ``confidence`` share of those means is the interval. With few
hold-out entities it is wide, which is what ``SMALL_HOLDOUT`` warns about.

**Trial filters** (``filter_trials``): by state, training-score range and one parameter's range.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.tuning.objective import Rewards, entity_score
from engine.tuning.store import Trial

#: below this many hold-out entities the improvement's interval is too wide to act on: say so
SMALL_HOLDOUT = 200
#: bootstrap resamples for the hold-out interval (the percentile ends settle well before this)
BOOTSTRAP_RESAMPLES = 4000
DEFAULT_CONFIDENCE = 0.95
#: trees of the importance surrogate and the most grid values per parameter for its marginals
FOREST_TREES = 64
MARGINAL_GRID = 24
#: fewer finished trials than this and importance means nothing
MIN_TRIALS_FOR_IMPORTANCE = 4


# --------------------------------------------------------------------------- importance


def param_importance(
    points: Sequence[Mapping[str, float]],
    scores: Sequence[float],
    params: Sequence[str],
    *,
    seed: int = 0,
) -> dict[str, float]:
    """Each parameter's share (0..1, summing to 1) of the variance of the score explained by its main effect.

    ``points[i]`` holds the parameter values of the trial scored ``scores[i]``. Empty when there are fewer than
    ``MIN_TRIALS_FOR_IMPORTANCE`` points or the scores do not vary (nothing to explain); a parameter whose value
    never varies gets 0.
    """
    if len(points) != len(scores):
        raise ValueError(f"{len(points)} points but {len(scores)} scores")
    if not params or len(points) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}
    x = np.array([[float(p[name]) for name in params] for p in points], dtype=float)
    y = np.array(scores, dtype=float)
    if float(np.ptp(y)) == 0.0:
        return {name: 0.0 for name in params}
    # lazy: scikit-learn takes a second to import and only this reading of a study needs it
    from sklearn.ensemble import RandomForestRegressor  # type: ignore[import-untyped]

    forest = RandomForestRegressor(n_estimators=FOREST_TREES, min_samples_leaf=1, random_state=seed)
    forest.fit(x, y)
    effects = []
    for j in range(len(params)):
        values = np.unique(x[:, j])
        if len(values) < 2:
            effects.append(0.0)
            continue
        if len(values) > MARGINAL_GRID:
            values = np.quantile(values, np.linspace(0.0, 1.0, MARGINAL_GRID))
        background = np.repeat(x, len(values), axis=0)
        background[:, j] = np.tile(values, len(x))
        marginal = forest.predict(background).reshape(len(x), len(values)).mean(axis=0)
        effects.append(float(np.var(marginal)))
    total = sum(effects)
    if total <= 0.0:
        return {name: 0.0 for name in params}
    return {name: e / total for name, e in zip(params, effects)}


def trial_importance(trials: Iterable[Trial], params: Sequence[str], *, seed: int = 0) -> dict[str, float]:
    """``param_importance`` over the study's complete trials (their training scores), largest first."""
    done = [t for t in trials if t.complete and t.score is not None and all(p in t.point for p in params)]
    got = param_importance([t.point for t in done], [t.training_score for t in done], params, seed=seed)
    return dict(sorted(got.items(), key=lambda kv: (-kv[1], kv[0])))


# --------------------------------------------------------------------------- hold-out interval


@dataclass(frozen=True)
class Interval:
    """The mean paired difference over ``n`` entities and its bootstrap interval (same unit: score per entity)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def width(self) -> float:
        return self.high - self.low

    @property
    def small_sample(self) -> bool:
        """Fewer hold-out entities than ``SMALL_HOLDOUT``: the interval is wide; re-score on more."""
        return self.n < SMALL_HOLDOUT

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


def paired_bootstrap(
    differences: Sequence[float],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of the mean of per-entity differences (resampling entities, seeded)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} must be between 0 and 1")
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        raise ValueError("no paired entities: nothing to bootstrap")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(d.mean()), float(low), float(high), int(d.size), confidence)


def holdout_interval(
    base: Mapping[str, float],
    winner: Mapping[str, float],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval | None:
    """Winner minus current config on the hold-out entities both were scored on (paired by entity id), with
    its bootstrap interval; None when they share no entity."""
    common = [e for e in base if e in winner]
    if not common:
        return None
    diffs = [float(winner[e]) - float(base[e]) for e in common]
    return paired_bootstrap(diffs, confidence=confidence, resamples=resamples, seed=seed)


def scores_from_events(events: Iterable[Any], rewards: Rewards) -> dict[str, float]:
    """Each entity's own score rebuilt from its recorded metric events (actionable, correct, cost, errors): the
    same terms as engine.tuning.objective.entity_scores, for trials re-scored before those were kept."""
    out: dict[str, float] = {}
    for e in events:
        # correct: the call matched the truth, so the entity truly is actionable when call and correctness agree
        actual = None if e.correct is None else bool(e.actionable) == bool(e.correct)
        out[e.entity_id] = entity_score(e.cost_usd, e.error_count, bool(e.actionable), actual, rewards)
    return out


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class TrialFilter:
    """Which trials the table shows. None on a bound means unbounded; ``states`` None means every state.

    A score bound keeps only trials that have a training score (a failed trial has none); a parameter
    bound keeps only trials whose point holds that parameter.
    """

    states: Collection[str] | None = None
    score_min: float | None = None
    score_max: float | None = None
    param: str | None = None
    param_min: float | None = None
    param_max: float | None = None

    def keeps(self, trial: Trial) -> bool:
        if self.states is not None and trial.state not in self.states:
            return False
        if self.score_min is not None or self.score_max is not None:
            if trial.score is None or (isinstance(trial.score, float) and math.isnan(trial.score)):
                return False
            if self.score_min is not None and trial.score < self.score_min:
                return False
            if self.score_max is not None and trial.score > self.score_max:
                return False
        if self.param is not None and (self.param_min is not None or self.param_max is not None):
            value = trial.point.get(self.param)
            if value is None:
                return False
            if self.param_min is not None and value < self.param_min:
                return False
            if self.param_max is not None and value > self.param_max:
                return False
        return True


def filter_trials(trials: Iterable[Trial], flt: TrialFilter) -> list[Trial]:
    """The trials ``flt`` keeps, in their order."""
    return [t for t in trials if flt.keeps(t)]


__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "DEFAULT_CONFIDENCE",
    "Interval",
    "SMALL_HOLDOUT",
    "TrialFilter",
    "filter_trials",
    "holdout_interval",
    "paired_bootstrap",
    "param_importance",
    "scores_from_events",
    "trial_importance",
]
