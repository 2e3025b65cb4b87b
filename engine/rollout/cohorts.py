"""Stage cohorts: seeded samples stratified by tier and template, with cumulative exposure.

Exposure is cumulative: a stage that exposes 100 entities after a pilot of 10
adds 90 entities that were not yet exposed. Each addition is a stratified
sample of the not-yet-exposed pool: every (tier, template) stratum gets a
share proportional to its size (largest remainder), drawn with a seeded
generator, and the chosen entities are shuffled so every batch is a mix.
Same seed, same pool -> same cohort.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CohortMember:
    entity_id: str
    tier: int
    template_id: str

    @property
    def stratum(self) -> tuple[int, str]:
        return (self.tier, self.template_id)


def derive_seed(seed: int, *parts: object) -> int:
    """A stable sub-seed (e.g. per stage) that does not depend on PYTHONHASHSEED."""
    text = "|".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def allocate(sizes: dict[tuple[int, str], int], k: int) -> dict[tuple[int, str], int]:
    """Split k draws over strata proportionally to their sizes (largest remainder; ties by stratum key)."""
    total = sum(sizes.values())
    if k >= total:
        return dict(sizes)
    quotas = {s: k * n / total for s, n in sizes.items()}
    alloc = {s: int(q) for s, q in quotas.items()}
    left = k - sum(alloc.values())
    by_remainder = sorted(sizes, key=lambda s: (-(quotas[s] - alloc[s]), -sizes[s], s))
    for s in by_remainder:
        if left == 0:
            break
        if alloc[s] < sizes[s]:
            alloc[s] += 1
            left -= 1
    return alloc


def stratified_sample(pool: Sequence[CohortMember], k: int, seed: int) -> list[str]:
    """k entity ids from ``pool``, stratified by (tier, template), in a seeded mixed order."""
    rng = random.Random(seed)
    strata: dict[tuple[int, str], list[str]] = defaultdict(list)
    for m in sorted(pool, key=lambda m: m.entity_id):
        strata[m.stratum].append(m.entity_id)
    alloc = allocate({s: len(ids) for s, ids in strata.items()}, k)
    chosen: list[str] = []
    for s in sorted(strata):
        chosen.extend(rng.sample(strata[s], alloc[s]))
    rng.shuffle(chosen)
    return chosen


def next_cohort(population: Iterable[CohortMember], exposed: Iterable[str], target: int | None, seed: int) -> list[str]:
    """The entities a stage adds so that ``target`` entities are exposed in all (None = everyone)."""
    exposed_set = set(exposed)
    pool = [m for m in population if m.entity_id not in exposed_set]
    want = len(pool) if target is None else max(0, target - len(exposed_set))
    return stratified_sample(pool, min(want, len(pool)), seed)


def shadow_subset(entity_ids: Sequence[str], fraction: float, seed: int) -> frozenset[str]:
    """Which stage entities also run the baseline in shadow (all of them at fraction 1.0)."""
    if fraction >= 1.0:
        return frozenset(entity_ids)
    k = round(len(entity_ids) * fraction)
    return frozenset(random.Random(seed).sample(sorted(entity_ids), k))
