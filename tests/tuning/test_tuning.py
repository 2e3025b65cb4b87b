"""Tuning: search space, samplers (grid with budget, random, Bayesian on Branin), hold-out split, the sampler
benchmark."""

from __future__ import annotations

import math
import random

import pytest

from engine.bench.tuning import OPTIMUM, SeedResult, branin, format_seed, format_summary
from engine.core.errors import ConfigError
from engine.tuning.holdout import hash_unit, split_entities
from engine.tuning.samplers import BayesianSampler, GridSampler, RandomSampler, grid_plan, make_sampler
from engine.tuning.space import Dimension, SearchSpace

# --------------------------------------------------------------------------- search space


def test_stepped_float_dimension_lists_values_on_the_step_without_float_noise():
    d = Dimension("accept_delta", low=0.02, high=0.1, default=0.06, step=0.02)
    assert d.values() == (0.02, 0.04, 0.06, 0.08, 0.1)


def test_integer_dimension_defaults_to_step_one():
    d = Dimension("max_iterations", low=5, high=9, default=6, integer=True)
    assert d.values() == (5, 6, 7, 8, 9)
    assert all(isinstance(v, int) for v in d.values())


def test_snap_clips_into_bounds_and_onto_the_step():
    d = Dimension("x", low=0.0, high=1.0, default=0.5, step=0.25)
    assert d.snap(0.3) == 0.25
    assert d.snap(0.9) == 1.0
    assert d.snap(7) == 1.0
    assert d.snap(-3) == 0.0


def test_continuous_dimension_grids_at_evenly_spaced_values():
    d = Dimension("x", low=0.0, high=2.0, default=1.0)
    assert d.values() == (0.0, 0.5, 1.0, 1.5, 2.0)
    assert d.snap(0.123) == 0.123  # continuous: only clipped


def test_empty_bounds_are_a_config_error():
    with pytest.raises(ConfigError, match="low must be < high"):
        Dimension("x", low=1.0, high=1.0, default=1.0)


def test_space_rejects_a_parameter_named_twice():
    d = Dimension("x", 0, 1, 0.5, step=0.5)
    with pytest.raises(ConfigError, match="named twice"):
        SearchSpace((d, d))


def test_grid_point_decodes_row_major_with_last_parameter_fastest():
    space = SearchSpace((Dimension("a", 0, 2, 0, integer=True), Dimension("b", 0, 1, 0, integer=True)))
    assert space.grid_size() == 6
    assert [space.grid_point(i) for i in range(6)] == [
        {"a": 0, "b": 0},
        {"a": 0, "b": 1},
        {"a": 1, "b": 0},
        {"a": 1, "b": 1},
        {"a": 2, "b": 0},
        {"a": 2, "b": 1},
    ]


def test_skopt_round_trip_keeps_stepped_values_on_their_step():
    space = SearchSpace((Dimension("a", 0.1, 0.5, 0.3, step=0.1), Dimension("b", 0.0, 1.0, 0.5)))
    x = space.to_skopt({"a": 0.34, "b": 0.77})
    assert x == [2, 0.77]
    assert space.from_skopt(x) == {"a": 0.3, "b": 0.77}


# --------------------------------------------------------------------------- grid


def _big_space(n_params: int = 8, values: int = 9) -> SearchSpace:
    return SearchSpace(tuple(Dimension(f"p{i}", 0, values - 1, 0, integer=True) for i in range(n_params)))


def test_grid_within_budget_visits_every_point_once_then_stops():
    space = SearchSpace((Dimension("a", 0, 2, 0, integer=True), Dimension("b", 0, 1, 0, integer=True)))
    sampler = GridSampler(space, budget=10, seed=0)
    assert not sampler.plan.sampled and sampler.plan.full_size == 6
    seen = []
    while (p := sampler.ask()) is not None:
        seen.append(tuple(p.values()))
        sampler.tell(p, 0.0)
    assert len(seen) == 6 == len(set(seen))


def test_grid_larger_than_budget_reports_full_size_and_samples_distinct_points():
    space = _big_space()  # 9**8 = 43 million points: must never be materialised
    plan = grid_plan(space, budget=50, seed=3)
    assert plan.full_size == 9**8
    assert plan.sampled
    assert len(plan.points) == 50
    assert len({tuple(p.values()) for p in plan.points}) == 50
    assert "43,046,721" in plan.describe()


def test_grid_sample_is_seeded():
    space = _big_space()
    assert grid_plan(space, 20, seed=1).points == grid_plan(space, 20, seed=1).points
    assert grid_plan(space, 20, seed=1).points != grid_plan(space, 20, seed=2).points


def test_grid_sample_covers_each_parameter_range():
    """A uniform sample of grid indexes reaches both ends of every parameter, not only the last one."""
    plan = grid_plan(_big_space(4, 5), budget=200, seed=0)
    for name in ("p0", "p1", "p2", "p3"):
        assert {p[name] for p in plan.points} == {0, 1, 2, 3, 4}


def test_resumed_grid_sampler_skips_points_already_told():
    space = _big_space(3, 4)
    first = GridSampler(space, budget=10, seed=0)
    done = []
    for _ in range(4):
        p = first.ask()
        first.tell(p, 1.0)
        done.append(p)
    resumed = GridSampler(space, budget=10, seed=0)
    resumed.replay((p, 1.0) for p in done)
    assert resumed.ask() == first.ask()
    assert resumed.ask() not in done


# --------------------------------------------------------------------------- random


def test_random_sampler_resumes_with_the_draws_it_would_have_made():
    space = _big_space(3, 10)
    a = RandomSampler(space, seed=5)
    seq = []
    for _ in range(6):
        p = a.ask()
        a.tell(p, 0.0)
        seq.append(p)
    b = RandomSampler(space, seed=5)
    b.replay((p, 0.0) for p in seq[:3])
    assert [b.ask()] == seq[3:4]


# --------------------------------------------------------------------------- bayesian on Branin

BRANIN_MIN = 0.397887


BRANIN_SPACE = SearchSpace((Dimension("x1", -5.0, 10.0, 2.5), Dimension("x2", 0.0, 15.0, 7.5)))


def _best_curve(sampler, n: int) -> list[float]:
    best, curve = math.inf, []
    for _ in range(n):
        p = sampler.ask()
        y = branin(p)
        sampler.tell(p, y)
        best = min(best, y)
        curve.append(best)
    return curve


def _evals_to_reach(curve: list[float], threshold: float) -> int | None:
    return next((i + 1 for i, v in enumerate(curve) if v < threshold), None)


@pytest.mark.slow
def test_bayesian_reaches_branin_optimum_in_fewer_evaluations_than_random():
    budget, threshold, seeds = 25, BRANIN_MIN + 0.1, (0, 1, 2)
    bayes = [_best_curve(BayesianSampler(BRANIN_SPACE, seed=s, n_initial_points=8), budget) for s in seeds]
    rand = [_best_curve(RandomSampler(BRANIN_SPACE, seed=s), 400) for s in seeds]

    bayes_best = sum(c[-1] for c in bayes) / len(seeds)
    rand_best_same_budget = sum(c[budget - 1] for c in rand) / len(seeds)
    assert bayes_best < threshold, f"bayesian mean best {bayes_best:.4f} after {budget} evaluations"
    assert rand_best_same_budget > 2 * bayes_best

    bayes_evals = [_evals_to_reach(c, threshold) for c in bayes]
    rand_evals = [_evals_to_reach(c, threshold) or 401 for c in rand]
    assert all(e is not None and e <= budget for e in bayes_evals)
    assert sum(bayes_evals) / len(seeds) < sum(rand_evals) / len(seeds) / 3, (bayes_evals, rand_evals)


def test_resumed_bayesian_sampler_does_not_repeat_finished_points():
    space = SearchSpace((Dimension("x1", -5, 10, 2.5, step=0.5), Dimension("x2", 0, 15, 7.5, step=0.5)))
    a = BayesianSampler(space, seed=0, n_initial_points=4)
    done = []
    for _ in range(7):
        p = a.ask()
        a.tell(p, branin(p))
        done.append(p)
    b = BayesianSampler(space, seed=0, n_initial_points=4)
    b.replay((p, branin(p)) for p in done)
    assert len(b.optimizer.yi) == 7
    nxt = b.ask()
    assert space.key(nxt) not in {space.key(p) for p in done}


def test_bayesian_failed_trial_is_told_as_the_worst_loss_seen():
    s = BayesianSampler(BRANIN_SPACE, seed=0, n_initial_points=3)
    s.tell({"x1": 0.0, "x2": 0.0}, None)  # failure before any success: remembered
    assert s.optimizer.yi == []
    s.tell({"x1": 1.0, "x2": 1.0}, 5.0)
    s.tell({"x1": 2.0, "x2": 2.0}, 9.0)
    s.tell({"x1": 3.0, "x2": 3.0}, None)
    assert s.optimizer.yi == [5.0, 5.0, 9.0, 9.0]


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown tuning method"):
        make_sampler("anneal", BRANIN_SPACE, budget=5, seed=0)


# --------------------------------------------------------------------------- hold-out


def test_holdout_split_is_a_pure_function_of_id_and_salt():
    ids = [f"e{i}" for i in range(500)]
    a = split_entities(ids, 0.8, salt="s1")
    b = split_entities(list(reversed(ids)) + ["extra-1", "extra-2"], 0.8, salt="s1")
    assert set(a.holdout) <= set(b.holdout)  # more entities never move an existing one
    assert set(a.train) <= set(b.train)
    assert set(a.train).isdisjoint(a.holdout) and len(a.train) + len(a.holdout) == 500
    assert 0.74 < len(a.train) / 500 < 0.86


def test_holdout_changes_with_the_salt():
    ids = [f"e{i}" for i in range(200)]
    assert split_entities(ids, 0.8, "s1").holdout != split_entities(ids, 0.8, "s2").holdout


def test_hash_unit_is_in_unit_interval():
    rng = random.Random(0)
    for _ in range(100):
        assert 0.0 <= hash_unit("salt", str(rng.random())) < 1.0


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_split_fraction_outside_unit_interval_is_rejected(fraction):
    with pytest.raises(ConfigError, match="between 0 and 1"):
        split_entities(["a", "b"], fraction, "s")


def test_split_with_an_empty_side_is_rejected():
    with pytest.raises(ConfigError, match="empty"):
        split_entities(["only-one"], 0.5, "s")


# --------------------------------------------------------------------------- the sampler benchmark


def test_bench_branin_has_its_documented_optimum_and_a_missed_run_counts_as_budget_plus_one():
    for x1, x2 in ((-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)):
        assert branin({"x1": x1, "x2": x2}) == pytest.approx(OPTIMUM, abs=1e-5)
    rows = [SeedResult(0, 10, 0.4, None, 0.5, 1.0), SeedResult(1, None, 0.9, 30, 0.45, 1.0)]
    summary = format_summary(rows, budget=20, random_budget=100, tolerance=0.1)
    assert "bayesian 15.5, random 65.5" in summary and "ratio random/bayesian 4.2x" in summary
    assert format_seed(rows[1], budget=20, random_budget=100).startswith("seed 1: bayesian >20 evaluations")
