"""The fixed hold-out split of a tuning study.

An entity's side of the split is a pure function of its id and the study's
salt: ``sha256(salt + ":" + id)`` read as a number in [0, 1); below the
training fraction it trains, otherwise it is held out. Each entity's side is
independent of which other entities are in the set, so adding entities to a
catalogue never moves an existing one across the split, and the same salt
always gives the same hold-out set. The salt is chosen once, when the study
is created, and stored with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from engine.core.errors import ConfigError


def hash_unit(salt: str, entity_id: str) -> float:
    """A stable number in [0, 1) for (salt, entity id)."""
    digest = hashlib.sha256(f"{salt}:{entity_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Split:
    """Training and hold-out entity ids, each in the order they were given."""

    train: tuple[str, ...]
    holdout: tuple[str, ...]
    salt: str
    train_fraction: float


def split_entities(entity_ids: Iterable[str], train_fraction: float, salt: str) -> Split:
    """Split ids by hash: an id trains when ``hash_unit(salt, id) < train_fraction``.

    Raises ConfigError when the fraction is outside (0, 1) or either side ends empty
    (too few entities for that fraction).
    """
    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(
            f"validation split {train_fraction} must be between 0 and 1 exclusive (e.g. 0.8 = 80% training)"
        )
    ids = list(dict.fromkeys(entity_ids))  # de-duplicate, keep order
    train: list[str] = []
    holdout: list[str] = []
    for entity_id in ids:
        (train if hash_unit(salt, entity_id) < train_fraction else holdout).append(entity_id)
    if not train or not holdout:
        side = "training" if not train else "hold-out"
        raise ConfigError(
            f"the {side} set is empty ({len(ids)} entities, split {train_fraction}): use more entities "
            f"or a split nearer 0.5"
        )
    return Split(tuple(train), tuple(holdout), salt, train_fraction)
