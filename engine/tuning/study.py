"""Tuning studies: creation, persistence, the resumable runner, hold-out re-scoring and outputs.

A **study** fixes everything at creation and stores it in SQLite (tables in
``engine.tuning.space.MIGRATIONS``): the method (grid, random, bayesian), the tuned
parameters (default ``engine.tuning.space.DEFAULT_TUNED``), the number of search
trials (``iterations``), the entity set and the world seed, the sampler seed,
the rewards, the base config (the current live config) and the training /
hold-out split (entity ids chosen by hash, ``engine.tuning.holdout``).

**Evidence and truth.** Trials run against the simulated world by default and
are scored by its ground truth. A replay file of recorded evidence or the
user's HTTP evaluator can be used instead; those know no truth, so such a
study needs a labels file (entity id -> truly actionable). Files a study
depends on (entity file, replay, labels) are fingerprinted (sha256) at
creation and a resume refuses a file that changed.

**Trials.** Trial 0 is the base config (the current config). Trials 1..N are
proposed by the sampler, one at a time; each is evaluated with
``engine.tuning.objective`` on the training entities and persisted the moment it
finishes (a failed trial is kept with its error; the sampler is told it
failed). The runner checkpoints between trials (heartbeat, pause, cancel).

**Resume.** A study is a job of kind ``tuning`` (``engine.jobs.queue``). A worker
that is killed loses at most the trial it was evaluating: on resume the
runner reads the finished trials, rebuilds the sampler and *tells* it every
finished trial (Bayesian: a fresh scikit-optimize Optimizer re-told all
points; random: the i-th draw is a function of (seed, i); grid: told points
are skipped), and continues with the next trial number. Trial numbers are
unique per study in the table, so no finished trial is run twice.

**Hold-out.** When the search is done, trial 0 and the ``top_k`` best search
trials by training score are re-scored on the hold-out entities. The
**winner** is, among trial 0 and the re-scored trials whose training score
beats trial 0's, the one with the best hold-out score (ties go to the lower
trial number, so the base config wins a tie). A trial must therefore beat the
current config on training *and* hold up on entities it was not tuned on;
a trial that is poor on training cannot win on hold-out noise. Because trial
0 is always eligible, the winner's hold-out score is never below the base
config's; the price is a small selection effect on the hold-out set (one
pick among at most ``top_k + 1``), which is why the **optimism gap**
(training minus hold-out score of the winner) is reported next to it.

**Every run is recorded.** Each trial's runs (shadow runs of the new system)
go through ``engine.monitoring.events.record_runs`` with ``stage_id = "tuning-<study>"``
and ``run_id = "tuning-<study>-t<trial>[-holdout]"`` (skipped when that run id
is already recorded, so a resumed trial is not counted twice). The events go to
the metric_events table like every run's; their JSONL lines go to
``logs/tuning-metrics.jsonl``, so a study's tens of thousands of lines do not
rotate the live system's ``metrics.jsonl`` away.

**Outputs** (``<data_dir>/tuning/study-<id>/``): ``best-config.json``,
``report.md``; ``handoff`` copies the winner to ``<data_dir>/configs/<name>.json``
and makes it the rollout candidate (``engine.rollout.runner.set_candidate``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from engine.core.errors import ConfigError, DiscoveryError
from engine.tuning.holdout import split_entities
from engine.monitoring.events import EXPERIMENT_STAGE_PREFIX
from engine.tuning.objective import (
    ObjectiveResult,
    Rewards,
    Workload,
    catalogue_workload,
    run_entities,
    score_results,
    simulated_workload,
)
from engine.core.configs import live_config, set_candidate
from engine.core.params import ParameterConfig
from engine.tuning.space import DEFAULT_TUNED, HOLDOUT_TOP_K, METHODS, GridSampler, make_sampler, search_space

Clock = Callable[[], float]

JOB_KIND = "tuning"
#: a study writes one metric event per entity per trial (tens of thousands): its JSONL lines go to their
#: own rotating log so they never rotate the live system's metrics.jsonl away (SQLite keeps all events)
METRICS_LOG_NAME = "tuning-metrics.jsonl"
STAGE_PREFIX = EXPERIMENT_STAGE_PREFIX  # "tuning-": monitoring leaves these stages out of its windows
#: catalogue seed used when the operator does not give one
DEFAULT_CATALOGUE_SEED = 7
DEFAULT_WORLD_SEED = 11
MAX_ITERATIONS = 10_000
MAX_ENTITIES = 100_000


class UnknownStudy(DiscoveryError):
    def __init__(self, study_id: int):
        super().__init__(f"no tuning study with id {study_id}: list them with `python -m engine tune list`")


# --------------------------------------------------------------------------- specification


@dataclass(frozen=True)
class EntitySpec:
    """Which entities a study runs on.

    ``catalogue``: the first ``n`` entities of the generated catalogue of ``catalogue_seed``
    (the same generator ``python -m engine seed`` writes to the graph).
    ``file``: a CSV or JSON entity file in the import format (engine.catalogue.importer); its
    sha256 is stored, so a resume refuses a file that changed.
    """

    kind: str = "catalogue"
    n: int = 200
    catalogue_seed: int = DEFAULT_CATALOGUE_SEED
    path: str | None = None
    sha256: str | None = None
    offset: int = 0  # catalogue: skip this many entities first (fresh entities for a validation)

    def describe(self) -> str:
        if self.kind == "file":
            return f"entity file {self.path} ({self.n} entities)"
        if self.offset:
            return (f"generated catalogue: entities {self.offset}..{self.offset + self.n - 1} "
                    f"(seed {self.catalogue_seed})")
        return f"generated catalogue: first {self.n} entities (seed {self.catalogue_seed})"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_entity_spec(path: str | Path) -> EntitySpec:
    """An EntitySpec for a CSV/JSON entity file, validated now (every row; one-line error)."""
    from engine.catalogue.importer import check_file
    from engine.catalogue.templates import load_templates

    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ConfigError(f"validation data {p} does not exist: give a CSV or JSON entity file (import format)")
    entities = check_file(p, load_templates())
    if not entities:
        raise ConfigError(f"validation data {p} holds no entities")
    return EntitySpec(kind="file", n=len(entities), path=str(p), sha256=_sha256(p))


def build_workload(spec: EntitySpec, world_seed: int) -> Workload:
    """The entities of ``spec`` against the simulated world of ``world_seed``."""
    if spec.kind == "catalogue":
        return catalogue_workload(spec.n, spec.catalogue_seed, world_seed, spec.offset)
    if spec.kind == "file":
        from engine.catalogue.importer import check_file
        from engine.catalogue.templates import load_templates

        p = Path(spec.path or "")
        if not p.is_file():
            raise ConfigError(f"the study's entity file {p} is gone: restore it to resume or validate")
        if spec.sha256 and _sha256(p) != spec.sha256:
            raise ConfigError(
                f"the study's entity file {p} changed since the study was created (sha256 differs): "
                "restore it or create a new study"
            )
        entities = check_file(p, load_templates())
        return simulated_workload(entities, world_seed, description=f"entity file {p}, simulated world seed {world_seed}")
    raise ConfigError(f"unknown entity source {spec.kind!r}: use catalogue or file")


def _unchanged(path: str, sha256: str | None, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"the study's {what} {p} is gone: restore it to resume or validate")
    if sha256 and _sha256(p) != sha256:
        raise ConfigError(f"the study's {what} {p} changed since the study was created (sha256 differs): "
                          "restore it or create a new study")
    return p


def workload_for(spec: "StudySpec") -> Workload:
    """The study's entities against its evidence source, scored by its truth (the world's, or the labels)."""
    from dataclasses import replace as _replace

    workload = build_workload(spec.entities, spec.world_seed)
    truth = workload.truth
    source = workload.source
    if spec.labels is not None:
        labels = read_labels(_unchanged(spec.labels.path, spec.labels.sha256, "labels file"))
        if not any(e in labels for e in workload.entity_ids):
            raise ConfigError(f"labels file {spec.labels.path} labels none of the study's entities: "
                              "its entity_id values must be the entities' ids")
        truth = labels.get
    if spec.evidence.kind == "replay":
        from engine.discovery.evidence import ReplaySource

        source = ReplaySource.load(_unchanged(spec.evidence.path or "", spec.evidence.sha256, "replay file"))
    elif spec.evidence.kind == "http":
        from engine.discovery.evidence import HTTPEvidenceSource

        source = HTTPEvidenceSource(spec.evidence.url or "", timeout_s=spec.evidence.timeout_s)
    if source is workload.source and truth is workload.truth:
        return workload
    desc = f"{spec.entities.describe()}, {spec.evidence.describe(spec.world_seed)}" + (
        f", truth from {spec.labels.path}" if spec.labels else "")
    return _replace(workload, source=source, truth=truth, description=desc)


@dataclass(frozen=True)
class EvidenceRef:
    """Which evidence source trials run against: the simulated world (default, seed = the study's
    world seed), a replay file of recorded evidence (sha256 stored), or the user's HTTP evaluator."""

    kind: str = "world"
    path: str | None = None
    sha256: str | None = None
    url: str | None = None
    timeout_s: float = 30.0

    def describe(self, world_seed: int) -> str:
        if self.kind == "replay":
            return f"replay of {self.path}"
        if self.kind == "http":
            return f"HTTP evaluator {self.url}"
        return f"simulated world seed {world_seed}"


@dataclass(frozen=True)
class LabelsRef:
    """A file of known outcomes (entity id -> truly actionable), the truth a replay or HTTP study is scored by."""

    path: str
    sha256: str


def evidence_ref(kind: str = "world", *, replay: str | Path | None = None, url: str | None = None,
                 timeout_s: float = 30.0) -> EvidenceRef:
    """Validate the evidence options now (one-line ConfigError)."""
    from engine.discovery.runs import EvidenceSpec

    EvidenceSpec(kind=kind, url=url, replay_path=replay, timeout_s=timeout_s)  # checks kind, url, file given
    if kind == "replay":
        p = Path(replay).expanduser().resolve()
        if not p.is_file():
            raise ConfigError(f"replay file {p} does not exist: record one with `python -m engine discover --record FILE`")
        return EvidenceRef(kind="replay", path=str(p), sha256=_sha256(p))
    if kind == "http":
        return EvidenceRef(kind="http", url=url, timeout_s=timeout_s)
    return EvidenceRef()


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def _label_value(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where}: actionable = {value!r} is not true/false (use true, false, 1, 0, yes or no)")


def read_labels(path: str | Path) -> dict[str, bool]:
    """Known outcomes: CSV with columns ``entity_id,actionable``, or JSON (an object id -> bool, or a
    list of objects with ``entity_id`` (or ``id``) and ``actionable``). Every problem names its line/row."""
    import csv
    import io

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"labels file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"labels file {p} cannot be read: {exc}") from None
    out: dict[str, bool] = {}
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"labels file {p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(data, dict):
            for k, v in data.items():
                out[str(k)] = _label_value(v, f"labels file {p}, id {k!r}")
        elif isinstance(data, list):
            for i, row in enumerate(data, start=1):
                if not isinstance(row, dict) or not (row.get("entity_id") or row.get("id")) or "actionable" not in row:
                    raise ConfigError(f"labels file {p}, row {i}: give entity_id (or id) and actionable")
                out[str(row.get("entity_id") or row.get("id"))] = _label_value(row["actionable"], f"labels file {p}, row {i}")
        else:
            raise ConfigError(f"labels file {p}: expected an object or a list of objects")
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or not {"entity_id", "actionable"} <= set(reader.fieldnames):
            raise ConfigError(f"labels file {p}: the CSV header must have entity_id and actionable")
        for row in reader:
            where = f"labels file {p}, line {reader.line_num}"
            if not (row.get("entity_id") or "").strip():
                raise ConfigError(f"{where}: entity_id is empty")
            out[row["entity_id"].strip()] = _label_value(row.get("actionable"), where)
    if not out:
        raise ConfigError(f"labels file {p} holds no labels")
    return out


def labels_ref(path: str | Path) -> LabelsRef:
    p = Path(path).expanduser().resolve()
    read_labels(p)
    return LabelsRef(path=str(p), sha256=_sha256(p))


@dataclass(frozen=True)
class StudySpec:
    """Everything a study fixes at creation."""

    method: str = "bayesian"
    params: tuple[str, ...] = DEFAULT_TUNED
    iterations: int = 30
    entities: EntitySpec = field(default_factory=EntitySpec)
    seed: int = 0
    world_seed: int = DEFAULT_WORLD_SEED
    rewards: Rewards = field(default_factory=Rewards)
    train_fraction: float = 0.8
    top_k: int = HOLDOUT_TOP_K
    name: str = ""
    evidence: EvidenceRef = field(default_factory=EvidenceRef)
    labels: LabelsRef | None = None

    @property
    def salt(self) -> str:
        """The hold-out salt: fixed by the seed, so the same command gives the same hold-out set."""
        return f"holdout-{self.seed}"

    def check(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown tuning method {self.method!r}: use one of {', '.join(METHODS)}")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or not 1 <= self.iterations <= MAX_ITERATIONS:
            raise ConfigError(f"iterations {self.iterations!r} must be a whole number from 1 to {MAX_ITERATIONS}")
        if not isinstance(self.entities.n, int) or not 2 <= self.entities.n <= MAX_ENTITIES:
            raise ConfigError(f"entity count {self.entities.n!r} must be a whole number from 2 to {MAX_ENTITIES}")
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"top_k {self.top_k!r} must be at least 1 (best trials re-scored on the hold-out set)")
        search_space(self.params)  # unknown names -> ConfigError
        if self.evidence.kind != "world" and self.labels is None:
            raise ConfigError(
                f"{self.evidence.kind} evidence carries no ground truth to score trials by: give --labels FILE "
                "(entity_id,actionable) with the known outcomes of the entities"
            )


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Study:
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
    def from_row(cls, row: Mapping[str, Any]) -> "Study":
        spec_d = json.loads(row["spec"])
        spec = StudySpec(
            method=spec_d["method"],
            params=tuple(spec_d["params"]),
            iterations=spec_d["iterations"],
            entities=EntitySpec(**spec_d["entities"]),
            seed=spec_d["seed"],
            world_seed=spec_d["world_seed"],
            rewards=Rewards.from_dict(spec_d["rewards"]),
            train_fraction=spec_d["train_fraction"],
            top_k=spec_d["top_k"],
            name=spec_d.get("name", ""),
            evidence=EvidenceRef(**spec_d.get("evidence", {})),
            labels=LabelsRef(**spec_d["labels"]) if spec_d.get("labels") else None,
        )
        return cls(
            id=row["id"], name=row["name"], created_at=row["created_at"], actor=row["actor"], spec=spec,
            base_config=ParameterConfig.from_json(row["base_config"], source=f"study {row['id']} base config"),
            train_ids=tuple(json.loads(row["train_ids"])), holdout_ids=tuple(json.loads(row["holdout_ids"])),
            sampler=row["sampler"], grid_full_size=row["grid_full_size"], job_id=row["job_id"],
            finished_at=row["finished_at"], result=json.loads(row["result"]) if row["result"] else None,
        )


def spec_to_json(spec: StudySpec) -> str:
    d = asdict(spec)
    d["params"] = list(spec.params)
    d["rewards"] = spec.rewards.to_dict()
    return json.dumps(d, sort_keys=True)


@dataclass(frozen=True)
class Trial:
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

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    @property
    def gap(self) -> float | None:
        """Optimism gap: training minus hold-out score."""
        if self.score is None or self.holdout_score is None:
            return None
        return self.score - self.holdout_score

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Trial":
        cfg = json.loads(row["config"]) if row["config"] else None
        return cls(
            study_id=row["study_id"], number=row["number"], state=row["state"], point=json.loads(row["point"]),
            config=ParameterConfig.from_dict(cfg) if cfg else None, config_hash=row["config_hash"] or "",
            score=row["score"],
            result=ObjectiveResult.from_components(json.loads(row["result"])) if row["result"] else None,
            error=row["error"], started_at=row["started_at"], finished_at=row["finished_at"],
            holdout_score=row["holdout_score"],
            holdout_result=(ObjectiveResult.from_components(json.loads(row["holdout_result"]))
                            if row["holdout_result"] else None),
        )

    def row_summary(self) -> dict[str, Any]:
        """A flat dict for tables and JSON output."""
        r = self.result
        d: dict[str, Any] = {
            "trial": self.number, "state": self.state, "score": self.score,
            "holdout_score": self.holdout_score, "gap": self.gap,
            "precision": r.precision if r else None, "recall": r.recall if r else None,
            "cost_per_entity": r.cost_per_entity if r else None,
            "true_actionable": r.true_actionable if r else None,
            "false_actionable": r.false_actionable if r else None,
            "seconds": round(self.finished_at - self.started_at, 3),
            "config_hash": self.config_hash, "error": self.error or "",
        }
        d.update(self.point)
        return d


# --------------------------------------------------------------------------- store


def current_config(ops) -> ParameterConfig:
    """The live config (what trial 0 runs): engine.core.configs.live_config."""
    return live_config(ops)


def create_study(ops, spec: StudySpec, *, actor: str, base_config: ParameterConfig | None = None,
                 clock: Clock = time.time) -> Study:
    """Validate ``spec``, fix the split and the base config, store the study (audited). Nothing is
    written when anything is wrong."""
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
            [name, clock(), actor, spec_to_json(spec), base.to_json(indent=None), base.hash(),
             json.dumps(list(split.train)), json.dumps(list(split.holdout)), sampler.description(), grid_full],
        )
        study_id = cur.lastrowid
        ops.audit(actor, "tuning.create", f"study:{study_id}",
                  {"method": spec.method, "iterations": spec.iterations, "params": list(spec.params),
                   "train": len(split.train), "holdout": len(split.holdout), "base_hash": base.hash()}, db=db)
    return get_study(ops, study_id)


def get_study(ops, study_id: int) -> Study:
    with ops.connect() as db:
        rows = list(db.query("SELECT * FROM tuning_studies WHERE id = ?", [int(study_id)]))
    if not rows:
        raise UnknownStudy(study_id)
    return Study.from_row(rows[0])


def list_studies(ops, limit: int = 50) -> list[Study]:
    with ops.connect() as db:
        rows = list(db.query("SELECT * FROM tuning_studies ORDER BY id DESC LIMIT ?", [limit]))
    return [Study.from_row(r) for r in rows]


def latest_study(ops) -> Study | None:
    studies = list_studies(ops, limit=1)
    return studies[0] if studies else None


def list_trials(ops, study_id: int) -> list[Trial]:
    with ops.connect() as db:
        rows = list(db.query("SELECT * FROM tuning_trials WHERE study_id = ? ORDER BY number", [int(study_id)]))
    return [Trial.from_row(r) for r in rows]


def attach_job(ops, study_id: int, job_id: int) -> None:
    with ops.transaction() as db:
        db.execute("UPDATE tuning_studies SET job_id = ? WHERE id = ?", [job_id, study_id])


def _insert_trial(ops, study: Study, number: int, *, point: Mapping, config: ParameterConfig | None,
                  result: ObjectiveResult | None, error: str | None, started: float, finished: float,
                  fence: Callable[[Any], None] | None) -> None:
    with ops.transaction() as db:
        if fence is not None:
            fence(db)
        db.execute(
            """INSERT INTO tuning_trials (study_id, number, state, point, config, config_hash, score, result,
               error, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [study.id, number, "complete" if error is None else "failed", json.dumps(dict(point), sort_keys=True),
             config.to_json(indent=None) if config else None, config.hash() if config else "",
             result.score if result else None, json.dumps(result.components()) if result else None,
             error, started, finished],
        )


def _set_holdout(ops, study: Study, number: int, result: ObjectiveResult, fence) -> None:
    with ops.transaction() as db:
        if fence is not None:
            fence(db)
        db.execute(
            "UPDATE tuning_trials SET holdout_score = ?, holdout_result = ? WHERE study_id = ? AND number = ?",
            [result.score, json.dumps(result.components()), study.id, number],
        )


# --------------------------------------------------------------------------- the runner


@dataclass
class Progress:
    """What the runner reports at each checkpoint (done/total counts every evaluation:
    the trials, then the hold-out re-scorings)."""

    done: int
    total: int
    message: str


class StudyRunner:
    """Runs (or resumes) one study to the end. ``checkpoint(Progress)`` is called between
    evaluations (the job context's checkpoint: heartbeat, pause, cancel); ``fence(db)`` is
    called inside every trial write (the job lease)."""

    def __init__(self, ops, study: Study, *, settings=None, checkpoint: Callable[[Progress], None] | None = None,
                 fence: Callable[[Any], None] | None = None, clock: Clock = time.time, log=None,
                 record_metrics: bool = True, timer: Callable[[], float] = time.perf_counter):
        self.ops = ops
        self.study = study
        self.settings = settings
        self.checkpoint = checkpoint or (lambda p: None)
        self.fence = fence
        self.clock = clock
        self.timer = timer
        self.record_metrics = record_metrics
        self._log = log
        self._workload: Workload | None = None

    # -- pieces
    @property
    def workload(self) -> Workload:
        if self._workload is None:
            w = workload_for(self.study.spec)
            missing = [e for e in (*self.study.train_ids, *self.study.holdout_ids) if e not in w.entities]
            if missing:
                raise ConfigError(
                    f"study {self.study.id}: {len(missing)} of its entities (e.g. {missing[0]!r}) are not in "
                    f"{w.description}; the entity set changed since the study was created"
                )
            self._workload = w
        return self._workload

    def _metrics_log(self):
        if self._log is None and self.settings is not None:
            from engine.monitoring.jsonlog import JsonlLog

            self._log = JsonlLog.for_settings(self.settings, name=METRICS_LOG_NAME)
        return self._log

    def _record(self, results, run_id: str) -> None:
        if not self.record_metrics:
            return
        from engine.monitoring.events import count_events, record_runs

        log = self._metrics_log()
        if log is None or count_events(self.ops, run_id=run_id) > 0:
            return
        names = {e: self.workload.entities[e].name for e in (r.entity_id for r in results)}
        record_runs(self.ops, results, run_id=run_id, stage_id=self.study.stage_id, truth=self.workload.truth,
                    clock=self.clock, log=log, names=names)

    def evaluate(self, config: ParameterConfig, entity_ids: Sequence[str], run_id: str) -> ObjectiveResult:
        results = run_entities(config, self.workload, entity_ids)
        self._record(results, run_id)
        return score_results(results, self.workload.truth, self.study.spec.rewards)

    def _total_evaluations(self) -> int:
        return self.study.total_trials + self.study.spec.top_k + 1

    # -- the run
    def run(self) -> dict:
        study = self.study
        spec = study.spec
        base = study.base_config
        space = search_space(spec.params, base)
        trials = list_trials(self.ops, study.id)
        total = self._total_evaluations()
        done = len(trials)
        self.checkpoint(Progress(done, total, f"resuming after {done} finished trial(s)" if done else "starting"))

        if not any(t.number == 0 for t in trials):
            self._run_trial(0, {n: getattr(base, n) for n in spec.params}, base)
            trials = list_trials(self.ops, study.id)
            self.checkpoint(Progress(len(trials), total, "trial 0 (current config) done"))

        sampler = make_sampler(spec.method, space, budget=spec.iterations, seed=spec.seed)
        # every finished trial, trial 0 included (it tells the model where the current config stands)
        sampler.replay((t.point, -t.score if t.complete else None) for t in trials)
        number = max(t.number for t in trials) + 1
        if isinstance(sampler, GridSampler):  # a grid smaller than the budget ends early: say so in the total
            left = sampler.remaining()
            total = len(trials) + min(spec.iterations - number + 1, left) + spec.top_k + 1
        exhausted = False
        while number <= spec.iterations:
            point = sampler.ask()
            if point is None:
                exhausted = True
                break
            loss = self._run_trial(number, point, None)
            sampler.tell(point, loss)
            best = max((t.score for t in list_trials(self.ops, study.id) if t.complete), default=None)
            self.checkpoint(Progress(number + 1, total,
                                     f"trial {number}/{spec.iterations} done; best training score {best:.4f}"
                                     if best is not None else f"trial {number}/{spec.iterations} done"))
            number += 1
        return self._finish(exhausted)

    def _run_trial(self, number: int, point: Mapping[str, Any], config: ParameterConfig | None) -> float | None:
        started = self.clock()
        result = None
        error = None
        try:
            if config is None:
                config = self.study.base_config.with_changes(**point)
            result = self.evaluate(config, self.study.train_ids, f"tuning-{self.study.id}-t{number}")
        except ConfigError as exc:  # an invalid combination (cross-field rule): a failed trial, kept
            error = str(exc)
        except DiscoveryError as exc:  # the evidence source failed: kept with its error
            error = f"{type(exc).__name__}: {exc}"
        _insert_trial(self.ops, self.study, number, point=point, config=config,
                      result=result, error=error, started=started, finished=self.clock(), fence=self.fence)
        return -result.score if result is not None else None

    def _finish(self, grid_exhausted: bool) -> dict:
        study = self.study
        trials = list_trials(self.ops, study.id)
        complete = [t for t in trials if t.complete]
        if not any(t.number == 0 and t.complete for t in trials):
            raise ConfigError(f"study {study.id}: trial 0 (the current config) failed: {trials[0].error}")
        ranked = sorted((t for t in complete if t.number > 0), key=lambda t: (-t.score, t.number))
        chosen = [t for t in complete if t.number == 0] + ranked[: study.spec.top_k]
        base_done = len(trials)
        total = base_done + len(chosen)
        for i, t in enumerate(chosen):
            if t.holdout_score is None:
                res = self.evaluate(t.config, study.holdout_ids, f"tuning-{study.id}-t{t.number}-holdout")
                _set_holdout(self.ops, study, t.number, res, self.fence)
            self.checkpoint(Progress(base_done + i + 1, total,
                                     f"hold-out re-scoring {i + 1}/{len(chosen)} (trial {t.number})"))
        summary = summarize(study, list_trials(self.ops, study.id), grid_exhausted=grid_exhausted)
        write_outputs(self.ops, study, summary, self.settings)
        with self.ops.transaction() as db:
            if self.fence is not None:
                self.fence(db)
            db.execute("UPDATE tuning_studies SET result = ?, finished_at = ? WHERE id = ?",
                       [json.dumps(summary, default=str), self.clock(), study.id])
            self.ops.audit("worker", "tuning.finish", f"study:{study.id}",
                           {"winner": summary["winner"]["trial"], "winner_hash": summary["winner"]["config_hash"],
                            "holdout_winner": summary["winner"]["holdout_score"],
                            "holdout_base": summary["base"]["holdout_score"]}, db=db)
        return summary


def summarize(study: Study, trials: Sequence[Trial], *, grid_exhausted: bool = False) -> dict:
    """The study's outcome, from its trials (pure)."""
    complete = [t for t in trials if t.complete]
    base = next(t for t in trials if t.number == 0)
    rescored = [t for t in complete if t.holdout_score is not None]
    # eligible: the base, and re-scored trials that beat it on training; of those the best hold-out wins
    eligible = [t for t in rescored if t.number == 0 or t.score > base.score]
    winner = sorted(eligible, key=lambda t: (-t.holdout_score, t.number))[0]
    best_train = sorted(complete, key=lambda t: (-t.score, t.number))[0]

    def brief(t: Trial) -> dict:
        return {"trial": t.number, "score": t.score, "holdout_score": t.holdout_score, "gap": t.gap,
                "config_hash": t.config_hash, "point": t.point}

    changes = {
        name: {"from": getattr(study.base_config, name), "to": getattr(winner.config, name)}
        for name in study.spec.params
        if getattr(study.base_config, name) != getattr(winner.config, name)
    }
    return {
        "study": study.id,
        "trials": len(trials),
        "failed": sum(1 for t in trials if not t.complete),
        "grid_exhausted": grid_exhausted,
        "base": brief(base),
        "best_training": brief(best_train),
        "winner": brief(winner),
        "winner_is_base": winner.number == 0,
        "improvement_holdout": winner.holdout_score - base.holdout_score,
        "rescored": [brief(t) for t in sorted(rescored, key=lambda t: t.number)],
        "changes": changes,
        "winner_config": winner.config.to_dict(),
    }


# --------------------------------------------------------------------------- outputs


def study_dir(settings, study: Study) -> Path:
    return Path(settings.data_dir) / "tuning" / study.out_dir_name


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def render_report(study: Study, trials: Sequence[Trial], summary: Mapping[str, Any]) -> str:
    """The study as Markdown (pure)."""
    spec = study.spec
    rw = spec.rewards
    base, winner = summary["base"], summary["winner"]
    lines = [
        f"# Tuning study {study.id}: {study.name}",
        "",
        f"- Method: {study.sampler}",
        f"- Search trials: {spec.iterations} (plus trial 0 = the config current at creation, hash {study.base_config.hash()})",
        f"- Tuned parameters: {', '.join(spec.params)}",
        f"- Entities: {spec.entities.describe()}; evidence: {spec.evidence.describe(spec.world_seed)}"
        + (f"; truth from {spec.labels.path}" if spec.labels else "; truth: the simulated world's"),
        f"- Split: {len(study.train_ids)} training / {len(study.holdout_ids)} hold-out "
        f"(hash split, training fraction {spec.train_fraction}, salt {spec.salt!r})",
        f"- Sampler seed: {spec.seed}",
        f"- Rewards per entity: +{rw.true_actionable:g} per true actionable call, −{rw.false_actionable:g} per false one, "
        f"−{rw.missed_actionable:g} per missed one, −{rw.per_usd:g} per USD spent, −{rw.per_error:g} per errored hop",
        f"- Trials finished: {summary['trials']} ({summary['failed']} failed)",
        "",
        "## Result",
        "",
        "| | trial | training score | hold-out score | gap (training − hold-out) | config hash |",
        "|---|---:|---:|---:|---:|---|",
        f"| current config | 0 | {_fmt(base['score'])} | {_fmt(base['holdout_score'])} | {_fmt(base['gap'])} | {base['config_hash']} |",
        f"| **winner** | {winner['trial']} | {_fmt(winner['score'])} | {_fmt(winner['holdout_score'])} | {_fmt(winner['gap'])} | {winner['config_hash']} |",
        "",
        f"Hold-out improvement over the current config: {_fmt(summary['improvement_holdout'])} per entity.",
        f"Optimism gap of the winner (training − hold-out): {_fmt(winner['gap'])} per entity.",
        "",
        ("The current config won on the hold-out set: no tuned trial held up better, so nothing should be rolled out."
         if summary["winner_is_base"] else
         "The winner is, among trial 0 and the re-scored trials that beat it on training, the one with the best "
         "hold-out score; trial 0 is always a candidate, so the winner never scores below the current config on "
         f"the hold-out set (a pick among at most {len(summary['rescored'])} re-scored trials, hence the gap is "
         "worth reading)."),
        "",
        "## Parameter changes of the winner",
        "",
    ]
    if summary["changes"]:
        lines += ["| parameter | current | winner |", "|---|---:|---:|"]
        lines += [f"| {k} | {v['from']} | {v['to']} |" for k, v in summary["changes"].items()]
    else:
        lines.append("None: the winner is the current config.")
    lines += ["", "## Hold-out re-scoring", "",
              "| trial | training | hold-out | gap | precision (hold-out) | recall (hold-out) | USD / entity (hold-out) |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for t in trials:
        if t.holdout_result is None:
            continue
        h = t.holdout_result
        lines.append(f"| {t.number} | {_fmt(t.score)} | {_fmt(t.holdout_score)} | {_fmt(t.gap)} | "
                     f"{_fmt(h.precision, 3)} | {_fmt(h.recall, 3)} | {_fmt(h.cost_per_entity, 4)} |")
    lines += ["", "## Trials (best 15 by training score)", "",
              "| trial | state | training score | precision | recall | USD / entity | " + " | ".join(spec.params) + " |",
              "|---:|---|---:|---:|---:|---:|" + "---:|" * len(spec.params)]
    ranked = sorted(trials, key=lambda t: (t.score is None, -(t.score or 0.0), t.number))[:15]
    for t in ranked:
        r = t.result
        vals = " | ".join(_fmt(t.point.get(p)) for p in spec.params)
        lines.append(f"| {t.number} | {t.state} | {_fmt(t.score)} | {_fmt(r.precision if r else None, 3)} | "
                     f"{_fmt(r.recall if r else None, 3)} | {_fmt(r.cost_per_entity if r else None)} | {vals} |")
    failed = [t for t in trials if not t.complete]
    if failed:
        lines += ["", "## Failed trials", ""] + [f"- trial {t.number}: {t.error}" for t in failed]
    lines += ["", "## How the score is computed", "",
              "Each trial runs the new discovery system in shadow over every training entity with fresh "
              "hypotheses, against the simulated world, and scores the runs against the world's ground truth "
              "(engine/objective.py): score per entity = (rewards for true actionable calls − penalties for "
              "false and missed ones − dollars spent × per_usd − errored hops × per_error) / entities.", ""]
    return "\n".join(lines)


def write_outputs(ops, study: Study, summary: Mapping[str, Any], settings) -> dict[str, Path]:
    """best-config.json and report.md under <data_dir>/tuning/study-<id>/ (when settings are given)."""
    if settings is None:
        return {}
    out = study_dir(settings, study)
    out.mkdir(parents=True, exist_ok=True)
    cfg = ParameterConfig.from_dict(summary["winner_config"])
    paths = {"config": cfg.save(out / "best-config.json"), "report": out / "report.md"}
    paths["report"].write_text(render_report(study, list_trials(ops, study.id), summary), encoding="utf-8")
    return paths


def winner_config(study: Study) -> ParameterConfig:
    if not study.result:
        raise ConfigError(f"study {study.id} has not finished: no best config yet (see `python -m engine tune status {study.id}`)")
    return ParameterConfig.from_dict(study.result["winner_config"], source=f"study {study.id} winner")


def handoff(ops, settings, study_id: int, *, actor: str, name: str | None = None) -> Path:
    """Write the winner to <data_dir>/configs/<name>.json and make it the rollout candidate (audited)."""
    study = get_study(ops, study_id)
    cfg = winner_config(study)
    name = name or f"tuning-study-{study.id}-{cfg.hash()}"
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"config name {name!r}: use letters, digits, '-' and '_' only")
    path = cfg.save(Path(settings.data_dir) / "configs" / f"{name}.json")
    source = f"tuning study {study.id} (trial {study.result['winner']['trial']})"
    set_candidate(ops, path, actor, source=source)
    ops.audit(actor, "tuning.handoff", f"study:{study.id}", {"path": str(path), "config_hash": cfg.hash()})
    return path


# --------------------------------------------------------------------------- validate mode


@dataclass(frozen=True)
class Validation:
    holdout_ids: tuple[str, ...]
    description: str
    candidate: ObjectiveResult
    base: ObjectiveResult
    candidate_hash: str
    base_hash: str

    @property
    def difference(self) -> float:
        return self.candidate.score - self.base.score


def validate_config(config: ParameterConfig, *, study: Study | None = None, spec: StudySpec | None = None,
                    base: ParameterConfig | None = None) -> Validation:
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
        desc = (f"hold-out set of {spec.entities.describe()}, split {spec.train_fraction}, salt {spec.salt!r} "
                f"({len(holdout)} entities)")
    else:
        raise ConfigError("validate needs a study or an entity specification")
    workload = workload_for(spec)
    from engine.tuning.objective import evaluate

    return Validation(
        holdout_ids=tuple(holdout), description=desc,
        candidate=evaluate(config, workload, holdout, spec.rewards),
        base=evaluate(base, workload, holdout, spec.rewards),
        candidate_hash=config.hash(), base_hash=base.hash(),
    )


# --------------------------------------------------------------------------- jobs


def submit_study(ops, study: Study, *, actor: str):
    """Queue the study's job and link it to the study. Returns the Job."""
    from engine.jobs.queue import JobStore

    job = JobStore(ops).submit(JOB_KIND, {"study_id": study.id}, actor=actor)
    attach_job(ops, study.id, job.id)
    return job


def run_tuning_job(ctx) -> dict:
    """Job handler (kind ``tuning``): run or resume the study in ``ctx.params['study_id']``."""
    study = get_study(ctx.ops, int(ctx.params["study_id"]))

    def checkpoint(p: Progress) -> None:
        ctx.checkpoint(done=p.done, total=p.total, message=p.message)

    runner = StudyRunner(ctx.ops, study, settings=ctx.settings, checkpoint=checkpoint, fence=ctx.assert_lease,
                         clock=ctx.clock)
    summary = runner.run()
    return {"study_id": study.id, "winner": summary["winner"], "base": summary["base"],
            "improvement_holdout": summary["improvement_holdout"]}


def study_state(ops, study: Study) -> str:
    """finished, or the state of its job (queued, running, paused, failed, cancelled, dead), or 'created'."""
    if study.finished_at is not None:
        return "finished"
    if study.job_id is None:
        return "created"
    from engine.jobs.queue import JobStore

    return str(JobStore(ops).get(study.job_id).state)


def cancel_study(ops, study_id: int, *, actor: str):
    """Ask the study's worker to stop at its next checkpoint (a queued study is cancelled at once)."""
    from engine.jobs.queue import Control, JobStore

    study = get_study(ops, study_id)
    if study.job_id is None:
        raise ConfigError(f"study {study_id} was never started: nothing to cancel")
    if study.finished_at is not None:
        raise ConfigError(f"study {study_id} already finished: nothing to cancel")
    job = JobStore(ops).request(study.job_id, Control.CANCEL, actor=actor)
    ops.audit(actor, "tuning.cancel", f"study:{study_id}", {"job": study.job_id})
    return job


def resume_study(ops, settings, study_id: int, *, actor: str, launch: bool = True):
    """Resume a dead, failed, paused or cancelled study from its finished trials."""
    from engine.jobs.queue import JobState, JobStore, launch_worker, resume_job

    study = get_study(ops, study_id)
    if study.finished_at is not None:
        raise ConfigError(f"study {study_id} already finished: nothing to resume")
    store = JobStore(ops)
    if study.job_id is not None and store.get(study.job_id).state is not JobState.CANCELLED:
        job, how = resume_job(store, settings, study.job_id, actor=actor, launch=launch)
    else:  # never started or cancelled: a new job continues from the finished trials
        job = submit_study(ops, study, actor=actor)
        how = "queued"
        if launch:
            how = f"worker started (pid {launch_worker(settings, job.id)})"
    ops.audit(actor, "tuning.resume", f"study:{study_id}", {"job": job.id})
    return job, how


def start_study(ops, settings, spec: StudySpec, *, actor: str, launch: bool = True,
                base_config: ParameterConfig | None = None):
    """Create the study, queue its job and (``launch``) start a detached worker. Returns (study, job, pid)."""
    from engine.jobs.queue import launch_worker

    study = create_study(ops, spec, actor=actor, base_config=base_config)
    job = submit_study(ops, study, actor=actor)
    pid = launch_worker(settings, job.id) if launch else None
    return get_study(ops, study.id), job, pid
