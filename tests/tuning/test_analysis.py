"""Reading a study (engine.tuning.analysis): parameter importance, the hold-out improvement's interval, trial
filters, and each entity's own hold-out score."""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine.core.model import RunResult
from engine.tuning.analysis import (
    SMALL_HOLDOUT,
    TrialFilter,
    filter_trials,
    holdout_interval,
    paired_bootstrap,
    param_importance,
    trial_importance,
)
from engine.tuning.objective import Rewards, entity_scores, score_results
from engine.tuning.store import Trial


def _synthetic_study(n: int = 60, seed: int = 0) -> tuple[list[dict], list[float]]:
    """``drives`` moves the score strongly, ``weak`` a little, ``noise`` not at all (plus a little noise)."""
    rng = random.Random(seed)
    points, scores = [], []
    for _ in range(n):
        p = {"drives": rng.uniform(0, 1), "weak": rng.uniform(0, 1), "noise": rng.uniform(0, 1)}
        points.append(p)
        scores.append(5.0 * (p["drives"] - 0.5) ** 2 * 4 + 0.5 * p["weak"] + rng.gauss(0, 0.05))
    return points, scores


def test_the_parameter_that_drives_the_score_ranks_first_and_an_irrelevant_one_is_near_zero():
    points, scores = _synthetic_study()
    got = param_importance(points, scores, ["noise", "weak", "drives"], seed=0)
    assert max(got, key=got.__getitem__) == "drives"
    assert got["drives"] > 0.8
    assert got["noise"] < 0.05
    assert got["weak"] > got["noise"]
    assert sum(got.values()) == pytest.approx(1.0)


def test_importance_is_deterministic_given_a_seed_and_empty_on_too_few_trials():
    points, scores = _synthetic_study()
    params = ["drives", "weak", "noise"]
    assert param_importance(points, scores, params, seed=3) == param_importance(points, scores, params, seed=3)
    assert param_importance(points[:3], scores[:3], params) == {}
    assert param_importance(points, [1.0] * len(points), params) == {p: 0.0 for p in params}
    constant = [dict(p, noise=0.5) for p in points]
    assert param_importance(constant, scores, params)["noise"] == 0.0


def _trial(n: int, score: float | None, point: dict, state: str | None = None) -> Trial:
    state = state or ("complete" if score is not None else "failed")
    return Trial(1, n, state, point, None, "", score, None, None if score is not None else "bad", 0.0, 1.0, None, None)


def test_trial_importance_reads_complete_trials_only_and_sorts_largest_first():
    points, scores = _synthetic_study()
    trials = [_trial(i, s, p) for i, (p, s) in enumerate(zip(points, scores))]
    trials.append(_trial(len(trials), None, {"drives": 0.1, "weak": 0.1, "noise": 0.1}))
    got = trial_importance(trials, ["noise", "weak", "drives"])
    assert list(got) == ["drives", "weak", "noise"]


def test_the_holdout_interval_covers_the_true_mean_and_narrows_with_more_entities():
    rng = np.random.default_rng(3)
    true_mean = 0.3
    wide = narrow = None
    for n in (15, 600):
        base = {f"e{i}": float(v) for i, v in enumerate(rng.normal(1.0, 1.0, n))}
        winner = {e: v + true_mean + float(rng.normal(0.0, 1.0)) for e, v in base.items()}
        iv = holdout_interval(base, winner, seed=1)
        assert iv is not None and iv.n == n
        assert iv.low <= true_mean <= iv.high
        assert iv.low <= iv.mean <= iv.high
        if n == 15:
            wide = iv
        else:
            narrow = iv
    assert wide is not None and narrow is not None
    assert wide.width > 3 * narrow.width
    assert wide.small_sample and not narrow.small_sample and SMALL_HOLDOUT == 200
    assert narrow.excludes_zero


def test_the_holdout_interval_pairs_by_entity_is_seeded_and_covers_at_the_stated_rate():
    assert holdout_interval({"a": 1.0}, {"b": 2.0}) is None
    # pairing: a constant improvement on very different entities has a zero-width interval
    iv = holdout_interval({"a": 0.0, "b": 10.0, "c": -5.0}, {"a": 1.0, "b": 11.0, "c": -4.0, "d": 99.0})
    assert iv is not None and iv.n == 3 and iv.low == iv.high == pytest.approx(1.0)
    diffs = list(np.random.default_rng(0).normal(0.2, 1.0, 80))
    assert paired_bootstrap(diffs, seed=5) == paired_bootstrap(diffs, seed=5)
    # over many seeded samples a 90% interval covers the true mean about 90% of the time
    rng = np.random.default_rng(11)
    covered = sum(
        iv.low <= 0.2 <= iv.high
        for iv in (
            paired_bootstrap(rng.normal(0.2, 1.0, 100), confidence=0.9, resamples=1000, seed=s) for s in range(200)
        )
    )
    assert 0.8 <= covered / 200 <= 0.97
    with pytest.raises(ValueError):
        paired_bootstrap([])


def test_trial_filters_by_state_score_range_and_parameter():
    trials = [
        _trial(0, 1.0, {"x": 1, "y": 0.1}),
        _trial(1, 2.0, {"x": 5, "y": 0.2}),
        _trial(2, None, {"x": 9, "y": 0.3}),
        _trial(3, 3.0, {"x": 9, "y": 0.4}),
    ]

    def numbers(flt):
        return [t.number for t in filter_trials(trials, flt)]

    assert numbers(TrialFilter()) == [0, 1, 2, 3]
    assert numbers(TrialFilter(states={"failed"})) == [2]
    assert numbers(TrialFilter(states={"complete"})) == [0, 1, 3]
    assert numbers(TrialFilter(score_min=1.5)) == [1, 3]
    assert numbers(TrialFilter(score_min=1.0, score_max=2.0)) == [0, 1]
    assert numbers(TrialFilter(param="x", param_min=5)) == [1, 2, 3]
    assert numbers(TrialFilter(param="x", param_min=5, param_max=8)) == [1]
    assert numbers(TrialFilter(param="z", param_min=0)) == []
    assert numbers(TrialFilter(states={"complete"}, param="x", param_min=9)) == [3]


def test_entity_scores_are_the_terms_of_the_score_entity_by_entity():
    def run(entity_id: str, actionable: bool, cost: float) -> RunResult:
        return RunResult(entity_id, "new", "h", 3, cost, (), (), actionable, "max_iterations", 0.0, 0.0)

    results = [run("tp", True, 0.2), run("fp", True, 0.1), run("fn", False, 0.3), run("tn", False, 0.0),
               run("unknown", True, 0.5)]  # fmt: skip
    truth = {"tp": True, "fp": False, "fn": True, "tn": False, "unknown": None}.get
    rewards = Rewards(true_actionable=10, false_actionable=5, missed_actionable=2, per_usd=1)
    per = entity_scores(results, truth, rewards)
    assert per == pytest.approx({"tp": 9.8, "fp": -5.1, "fn": -2.3, "tn": 0.0, "unknown": -0.5})
    assert sum(per.values()) / len(per) == pytest.approx(score_results(results, truth, rewards).score)
