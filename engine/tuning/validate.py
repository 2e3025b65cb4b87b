"""Validate mode: score a config, next to the base config, on a hold-out set.

The hold-out set is a study's (its stored split and base config) or the one a
StudySpec would fix (same hash split and salt), so a config from anywhere (a
hand edit, another study) can be compared on entities no search was tuned
on. Shadow runs only; nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.errors import ConfigError
from engine.core.params import ParameterConfig
from engine.tuning.holdout import split_entities
from engine.tuning.objective import ObjectiveResult, evaluate
from engine.tuning.spec import StudySpec, workload_for
from engine.tuning.store import Study


@dataclass(frozen=True)
class Validation:
    """A config and the base config scored on the same hold-out entities."""

    holdout_ids: tuple[str, ...]
    description: str
    candidate: ObjectiveResult
    base: ObjectiveResult
    candidate_hash: str
    base_hash: str

    @property
    def difference(self) -> float:
        """Candidate minus base score, per entity."""
        return self.candidate.score - self.base.score


def validate_config(
    config: ParameterConfig,
    *,
    study: Study | None = None,
    spec: StudySpec | None = None,
    base: ParameterConfig | None = None,
) -> Validation:
    """Score ``config`` (and the base config, for comparison) on a hold-out set: a study's, or the one
    ``spec`` would fix. Shadow runs only; nothing is written."""
    if study is not None:
        spec = study.spec
        holdout = study.holdout_ids
        base = base if base is not None else study.base_config
        desc = f"hold-out set of study {study.id} ({len(holdout)} entities; {spec.entities.describe()})"
    elif spec is not None:
        spec.check()
        w = workload_for(spec)
        holdout = split_entities(w.entity_ids, spec.train_fraction, spec.salt).holdout
        base = base if base is not None else ParameterConfig()
        desc = (
            f"hold-out set of {spec.entities.describe()}, split {spec.train_fraction}, salt {spec.salt!r} "
            f"({len(holdout)} entities)"
        )
    else:
        raise ConfigError("validate needs a study or an entity specification")
    workload = workload_for(spec)
    return Validation(
        holdout_ids=tuple(holdout),
        description=desc,
        candidate=evaluate(config, workload, holdout, spec.rewards),
        base=evaluate(base, workload, holdout, spec.rewards),
        candidate_hash=config.hash(),
        base_hash=base.hash(),
    )
