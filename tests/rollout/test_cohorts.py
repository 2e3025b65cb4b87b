"""Cohorts: cumulative, stratified by tier and template, seeded."""

from __future__ import annotations

from collections import Counter

from engine.rollout.cohorts import CohortMember, allocate, derive_seed, next_cohort, shadow_subset, stratified_sample


def _population(n=400):
    # tier 1..3 with 50/30/20 %, templates a/b with 3:1
    out = []
    for i in range(n):
        tier = 1 if i % 10 < 5 else 2 if i % 10 < 8 else 3
        out.append(CohortMember(f"e{i:04d}", tier, "a" if i % 4 else "b"))
    return out


def test_allocation_is_proportional_and_exact():
    alloc = allocate({(1, "a"): 50, (2, "a"): 30, (3, "a"): 20}, 10)
    assert alloc == {(1, "a"): 5, (2, "a"): 3, (3, "a"): 2}
    assert sum(allocate({(1, "a"): 7, (2, "a"): 7, (3, "a"): 7}, 10).values()) == 10


def test_sample_is_stratified_by_tier_and_template():
    pop = _population()
    ids = stratified_sample(pop, 40, seed=1)
    by_id = {m.entity_id: m for m in pop}
    strata = Counter(by_id[i].stratum for i in ids)
    full = Counter(m.stratum for m in pop)
    for s, n in full.items():
        assert abs(strata[s] - 40 * n / len(pop)) < 1.0


def test_same_seed_same_cohort_other_seed_other_cohort():
    pop = _population()
    assert stratified_sample(pop, 20, 5) == stratified_sample(pop, 20, 5)
    assert stratified_sample(pop, 20, 5) != stratified_sample(pop, 20, 6)


def test_exposure_is_cumulative_and_never_repeats():
    pop = _population()
    exposed: list[str] = []
    sizes = []
    for i, target in enumerate([10, 100, None]):
        add = next_cohort(pop, exposed, target, derive_seed(3, "stage", i))
        assert not set(add) & set(exposed)
        exposed += add
        sizes.append(len(add))
    assert sizes == [10, 90, 300]
    assert sorted(exposed) == sorted(m.entity_id for m in pop)


def test_target_below_exposure_adds_nothing():
    pop = _population(20)
    assert next_cohort(pop, [m.entity_id for m in pop[:10]], 5, 1) == []


def test_shadow_subset_fraction():
    ids = [f"e{i}" for i in range(40)]
    assert shadow_subset(ids, 1.0, 1) == frozenset(ids)
    half = shadow_subset(ids, 0.5, 1)
    assert len(half) == 20 and half == shadow_subset(ids, 0.5, 1)


def test_derive_seed_is_stable():
    assert derive_seed(1, "pilot") == derive_seed(1, "pilot") != derive_seed(1, "limited")
