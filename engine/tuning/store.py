"""Where tuning studies and their trials are kept: the ``tuning_studies`` and ``tuning_trials`` tables.

A study row fixes everything at creation (``create_study``): the spec, the
base config (the live config at creation; trial 0 runs it), the training /
hold-out split (entity ids chosen by hash, ``engine.tuning.holdout``), the
sampler's description and, for a grid, the full grid size. A trial row is
written the moment the trial finishes (``insert_trial``; a failed trial is
kept with its error) and trial numbers are unique per study, so a resumed
study never runs a finished trial twice. The hold-out score of a re-scored
trial is added to its row later (``set_holdout``). Writes take an optional
``fence(db)``, called inside the transaction (the job lease), so a worker
that lost its lease writes nothing.

``MIGRATIONS`` (component ``tuning``) creates the two tables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.core.access import Actor
from engine.core.configs import live_config
from engine.core.errors import DiscoveryError
from engine.core.params import ParameterConfig
from engine.monitoring.events import EXPERIMENT_STAGE_PREFIX
from engine.store.access import authorize
from engine.store.opsdb import Migration
from engine.store.outbox import enqueue, figure
from engine.tuning.holdout import split_entities
from engine.tuning.objective import ObjectiveResult
from engine.tuning.samplers import make_sampler
from engine.tuning.space import search_space
from engine.tuning.spec import StudySpec, spec_from_dict, spec_to_json, workload_for

Clock = Callable[[], float]

#: the key of the per-entity hold-out scores inside a trial's stored hold-out result
ENTITY_SCORES_KEY = "entity_scores"

STAGE_PREFIX = EXPERIMENT_STAGE_PREFIX  # "tuning-": monitoring leaves these stages out of its windows


class UnknownStudy(DiscoveryError):
    """No study with that id."""

    def __init__(self, study_id: int):
        super().__init__(f"no tuning study with id {study_id}: list them with `python -m engine tune list`")


@dataclass(frozen=True)
class Study:
    """One row of ``tuning_studies``: what the study fixed at creation, its job and, once finished, its result."""

    id: int
    name: str
    created_at: float
    actor: str
    spec: StudySpec
    base_config: ParameterConfig
    train_ids: tuple[str, ...]
    holdout_ids: tuple[str, ...]
    sampler: str
    grid_full_size: int | None
    job_id: int | None
    finished_at: float | None
    result: dict | None

    @property
    def total_trials(self) -> int:
        """Trial 0 plus the search trials."""
        return self.spec.iterations + 1

    @property
    def stage_id(self) -> str:
        return f"{STAGE_PREFIX}{self.id}"

    @property
    def out_dir_name(self) -> str:
        return f"study-{self.id}"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Study:
        spec = spec_from_dict(json.loads(row["spec"]))
        return cls(
            id=row["id"],
            name=row["name"],
            created_at=row["created_at"],
            actor=row["actor"],
            spec=spec,
            base_config=ParameterConfig.from_json(row["base_config"], source=f"study {row['id']} base config"),
            train_ids=tuple(json.loads(row["train_ids"])),
            holdout_ids=tuple(json.loads(row["holdout_ids"])),
            sampler=row["sampler"],
            grid_full_size=row["grid_full_size"],
            job_id=row["job_id"],
            finished_at=row["finished_at"],
            result=json.loads(row["result"]) if row["result"] else None,
        )


@dataclass(frozen=True)
class Trial:
    """One row of ``tuning_trials``: a finished evaluation on the training entities (and, if re-scored, on the
    hold-out entities)."""

    study_id: int
    number: int
    state: str  # "complete" | "failed"
    point: dict
    config: ParameterConfig | None
    config_hash: str
    score: float | None
    result: ObjectiveResult | None
    error: str | None
    started_at: float
    finished_at: float
    holdout_score: float | None
    holdout_result: ObjectiveResult | None
    #: each hold-out entity's own score (engine.tuning.objective.entity_scores); None for a trial re-scored
    #: before they were kept
    holdout_entity_scores: Mapping[str, float] | None = None

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    @property
    def training_score(self) -> float:
        """The training score of a complete trial (a failed trial has none: asking for it is a bug)."""
        if self.score is None:
            raise ValueError(f"trial {self.number} of study {self.study_id} has no training score: it failed")
        return self.score

    @property
    def trial_config(self) -> ParameterConfig:
        """The config a complete trial ran (a failed trial may have none: asking for it is a bug)."""
        if self.config is None:
            raise ValueError(f"trial {self.number} of study {self.study_id} has no config: it failed")
        return self.config

    @property
    def rescored_holdout_score(self) -> float:
        """The hold-out score of a re-scored trial (asking for it before the re-scoring is a bug)."""
        if self.holdout_score is None:
            raise ValueError(f"trial {self.number} of study {self.study_id} has not been re-scored on hold-out")
        return self.holdout_score

    @property
    def gap(self) -> float | None:
        """Optimism gap: training minus hold-out score."""
        if self.score is None or self.holdout_score is None:
            return None
        return self.score - self.holdout_score

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Trial:
        cfg = json.loads(row["config"]) if row["config"] else None
        holdout = json.loads(row["holdout_result"]) if row["holdout_result"] else None
        return cls(
            study_id=row["study_id"],
            number=row["number"],
            state=row["state"],
            point=json.loads(row["point"]),
            config=ParameterConfig.from_dict(cfg) if cfg else None,
            config_hash=row["config_hash"] or "",
            score=row["score"],
            result=ObjectiveResult.from_components(json.loads(row["result"])) if row["result"] else None,
            error=row["error"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            holdout_score=row["holdout_score"],
            holdout_result=ObjectiveResult.from_components(holdout) if holdout else None,
            holdout_entity_scores=holdout.get(ENTITY_SCORES_KEY) if holdout else None,
        )

    def row_summary(self) -> dict[str, Any]:
        """A flat dict for tables and JSON output."""
        r = self.result
        d: dict[str, Any] = {
            "trial": self.number,
            "state": self.state,
            "score": self.score,
            "holdout_score": self.holdout_score,
            "gap": self.gap,
            "precision": r.precision if r else None,
            "recall": r.recall if r else None,
            "cost_per_entity": r.cost_per_entity if r else None,
            "true_actionable": r.true_actionable if r else None,
            "false_actionable": r.false_actionable if r else None,
            "seconds": round(self.finished_at - self.started_at, 3),
            "config_hash": self.config_hash,
            "error": self.error or "",
        }
        d.update(self.point)
        return d


# --------------------------------------------------------------------------- store


def current_config(ops) -> ParameterConfig:
    """The live config (what trial 0 runs): engine.core.configs.live_config."""
    return live_config(ops)


def create_study(
    ops, spec: StudySpec, *, actor: Actor, base_config: ParameterConfig | None = None, clock: Clock = time.time
) -> Study:
    """Validate ``spec``, fix the split and the base config, store the study (operator; audited). Nothing is
    written when anything is wrong."""
    who = authorize(ops, actor, "tuning.start")
    spec.check()
    workload = workload_for(spec)
    split = split_entities(workload.entity_ids, spec.train_fraction, spec.salt)
    base = base_config if base_config is not None else current_config(ops)
    space = search_space(spec.params, base)
    sampler = make_sampler(spec.method, space, budget=spec.iterations, seed=spec.seed)
    grid_full = space.grid_size() if spec.method == "grid" else None
    name = spec.name or f"{spec.method} x{spec.iterations} on {len(split.train)}+{len(split.holdout)} entities"
    with ops.transaction() as db:
        cur = db.execute(
            """INSERT INTO tuning_studies (name, created_at, actor, spec, base_config, base_hash,
               train_ids, holdout_ids, sampler, grid_full_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                name,
                clock(),
                str(who),
                spec_to_json(spec),
                base.to_json(indent=None),
                base.hash(),
                json.dumps(list(split.train)),
                json.dumps(list(split.holdout)),
                sampler.description(),
                grid_full,
            ],
        )
        study_id = cur.lastrowid
        ops.audit(
            who,
            "tuning.create",
            f"study:{study_id}",
            {
                "method": spec.method,
                "iterations": spec.iterations,
                "params": list(spec.params),
                "train": len(split.train),
                "holdout": len(split.holdout),
                "base_hash": base.hash(),
            },
            db=db,
        )
    return get_study(ops, study_id)


def get_study(ops, study_id: int) -> Study:
    """The study ``study_id``; UnknownStudy when there is none."""
    with ops.connect() as db:
        rows = list(db.query("SELECT * FROM tuning_studies WHERE id = ?", [int(study_id)]))
    if not rows:
        raise UnknownStudy(study_id)
    return Study.from_row(rows[0])


def list_studies(ops, limit: int = 50) -> list[Study]:
    """The newest ``limit`` studies, newest first."""
    with ops.connect() as db:
        rows = list(db.query("SELECT * FROM tuning_studies ORDER BY id DESC LIMIT ?", [limit]))
    return [Study.from_row(r) for r in rows]


def latest_study(ops) -> Study | None:
    """The newest study, or None when there is none."""
    studies = list_studies(ops, limit=1)
    return studies[0] if studies else None


def list_trials(ops, study_id: int) -> list[Trial]:
    """The study's finished trials (complete and failed) by trial number."""
    with ops.connect() as db:
        rows = list(db.query("SELECT * FROM tuning_trials WHERE study_id = ? ORDER BY number", [int(study_id)]))
    return [Trial.from_row(r) for r in rows]


def attach_job(ops, study_id: int, job_id: int) -> None:
    """Record the job that runs the study."""
    with ops.transaction() as db:
        db.execute("UPDATE tuning_studies SET job_id = ? WHERE id = ?", [job_id, study_id])


def insert_trial(
    ops,
    study: Study,
    number: int,
    *,
    point: Mapping,
    config: ParameterConfig | None,
    result: ObjectiveResult | None,
    error: str | None,
    started: float,
    finished: float,
    fence: Callable[[Any], None] | None,
) -> None:
    """Store a finished trial: complete with its result, or failed with its ``error``."""
    with ops.transaction() as db:
        if fence is not None:
            fence(db)
        db.execute(
            """INSERT INTO tuning_trials (study_id, number, state, point, config, config_hash, score, result,
               error, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                study.id,
                number,
                "complete" if error is None else "failed",
                json.dumps(dict(point), sort_keys=True),
                config.to_json(indent=None) if config else None,
                config.hash() if config else "",
                result.score if result else None,
                json.dumps(result.components()) if result else None,
                error,
                started,
                finished,
            ],
        )


def set_holdout(
    ops,
    study: Study,
    number: int,
    result: ObjectiveResult,
    fence: Callable[[Any], None] | None,
    entity_scores: Mapping[str, float] | None = None,
) -> None:
    """Add the hold-out re-scoring of trial ``number`` to its row (with each entity's own score, kept beside
    the result's components so the improvement over the current config can be bootstrapped)."""
    components = result.components()
    if entity_scores is not None:
        components[ENTITY_SCORES_KEY] = dict(entity_scores)
    with ops.transaction() as db:
        if fence is not None:
            fence(db)
        db.execute(
            "UPDATE tuning_trials SET holdout_score = ?, holdout_result = ? WHERE study_id = ? AND number = ?",
            [result.score, json.dumps(components), study.id, number],
        )


def finish_study(
    ops, study: Study, summary: Mapping[str, Any], *, finished_at: float, fence: Callable[[Any], None] | None
) -> None:
    """Store the study's result and mark it finished (audited in the same transaction)."""
    with ops.transaction() as db:
        if fence is not None:
            fence(db)
        db.execute(
            "UPDATE tuning_studies SET result = ?, finished_at = ? WHERE id = ?",
            [json.dumps(summary, default=str), finished_at, study.id],
        )
        ops.audit(
            "worker",
            "tuning.finish",
            f"study:{study.id}",
            {
                "winner": summary["winner"]["trial"],
                "winner_hash": summary["winner"]["config_hash"],
                "holdout_winner": summary["winner"]["holdout_score"],
                "holdout_base": summary["base"]["holdout_score"],
            },
            db=db,
        )
        winner, base = summary["winner"], summary["base"]
        enqueue(
            db,
            topic="tuning.finished",
            key=f"tuning:{study.id}:finished",
            subject=(
                f"Tuning study {study.id} ({study.name}) finished: "
                + (
                    "the current config stays best"
                    if summary.get("winner_is_base")
                    else f"trial {winner['trial']} wins, hold-out {figure(summary.get('improvement_holdout'))} "
                    "better than the current config"
                )
            ),
            facts={
                "study": f"{study.id} ({study.name})",
                "trials": summary.get("trials"),
                "failed trials": summary.get("failed"),
                "winner": f"trial {winner['trial']} (config {winner['config_hash']})",
                "winner hold-out score": winner.get("holdout_score"),
                "current config hold-out score": base.get("holdout_score"),
                "hold-out improvement": summary.get("improvement_holdout"),
                "parameters changed": len(summary.get("changes") or {}),
                "next": "hand the winner to a rollout from the Tuning page",
            },
            link="tuning",
            at=finished_at,
        )


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
