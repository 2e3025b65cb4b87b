"""What a tuning study fixes at creation, validated before anything is stored.

``StudySpec`` holds the method (grid, random, bayesian), the tuned parameters
(default ``engine.tuning.space.DEFAULT_TUNED``), the number of search trials
(``iterations``), the entities (``EntitySpec``: the generated catalogue or an
entity file), the world and sampler seeds, the rewards, the hold-out split
and how many trials are re-scored on it (``top_k``).

**Evidence and truth.** Trials run against the simulated world by default and
are scored by its ground truth. A replay file of recorded evidence or the
user's HTTP evaluator can be used instead (``EvidenceRef``); those know no
truth, so such a study needs a labels file (``LabelsRef``: entity id -> truly
actionable). Files a study depends on (entity file, replay, labels) are
fingerprinted (sha256) at creation and ``workload_for`` refuses a file that
changed, so a resume or a validation runs on what the study was created on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.catalogue.importer import check_file
from engine.catalogue.templates import load_templates
from engine.core.errors import ConfigError
from engine.discovery.evidence import HTTPEvidenceSource, ReplaySource
from engine.discovery.limits import RunLimits, limit_source
from engine.discovery.runs import EvidenceSpec
from engine.jobs.executor import check_workers
from engine.tuning.objective import Rewards, Workload, catalogue_workload, simulated_workload
from engine.tuning.samplers import METHODS
from engine.tuning.space import DEFAULT_TUNED, search_space

#: catalogue seed used when the operator does not give one
DEFAULT_CATALOGUE_SEED = 7
DEFAULT_WORLD_SEED = 11
MAX_ITERATIONS = 10_000
MAX_ENTITIES = 100_000
#: how many of the best training trials are re-scored on the hold-out set (besides trial 0)
HOLDOUT_TOP_K = 3


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
        """One line for reports and captions."""
        if self.kind == "file":
            return f"entity file {self.path} ({self.n} entities)"
        if self.offset:
            return (
                f"generated catalogue: entities {self.offset}..{self.offset + self.n - 1} (seed {self.catalogue_seed})"
            )
        return f"generated catalogue: first {self.n} entities (seed {self.catalogue_seed})"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_entity_spec(path: str | Path) -> EntitySpec:
    """An EntitySpec for a CSV/JSON entity file, validated now (every row; one-line error)."""
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
        p = Path(spec.path or "")
        if not p.is_file():
            raise ConfigError(f"the study's entity file {p} is gone: restore it to resume or validate")
        if spec.sha256 and _sha256(p) != spec.sha256:
            raise ConfigError(
                f"the study's entity file {p} changed since the study was created (sha256 differs): "
                "restore it or create a new study"
            )
        entities = check_file(p, load_templates())
        return simulated_workload(
            entities, world_seed, description=f"entity file {p}, simulated world seed {world_seed}"
        )
    raise ConfigError(f"unknown entity source {spec.kind!r}: use catalogue or file")


def _unchanged(path: str, sha256: str | None, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"the study's {what} {p} is gone: restore it to resume or validate")
    if sha256 and _sha256(p) != sha256:
        raise ConfigError(
            f"the study's {what} {p} changed since the study was created (sha256 differs): "
            "restore it or create a new study"
        )
    return p


def workload_for(spec: StudySpec) -> Workload:
    """The study's entities against its evidence source, scored by its truth (the world's, or the labels)."""
    workload = build_workload(spec.entities, spec.world_seed)
    truth = workload.truth
    source = workload.source
    if spec.labels is not None:
        labels = read_labels(_unchanged(spec.labels.path, spec.labels.sha256, "labels file"))
        if not any(e in labels for e in workload.entity_ids):
            raise ConfigError(
                f"labels file {spec.labels.path} labels none of the study's entities: "
                "its entity_id values must be the entities' ids"
            )
        truth = labels.get
    if spec.evidence.kind == "replay":
        source = ReplaySource.load(_unchanged(spec.evidence.path or "", spec.evidence.sha256, "replay file"))
    elif spec.evidence.kind == "http":
        source = HTTPEvidenceSource(spec.evidence.url or "", timeout_s=spec.evidence.timeout_s)
    limits = RunLimits(spec.concurrency, spec.max_hops_per_s, spec.max_in_flight)
    source = limit_source(source, limits)
    if source is workload.source and truth is workload.truth:
        return replace(workload, concurrency=spec.concurrency)
    desc = f"{spec.entities.describe()}, {spec.evidence.describe(spec.world_seed)}" + (
        f", truth from {spec.labels.path}" if spec.labels else ""
    )
    return replace(workload, source=source, truth=truth, description=desc, concurrency=spec.concurrency)


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
        """One line for reports and captions."""
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


def evidence_ref(
    kind: str = "world", *, replay: str | Path | None = None, url: str | None = None, timeout_s: float = 30.0
) -> EvidenceRef:
    """Validate the evidence options now (one-line ConfigError)."""
    EvidenceSpec(kind=kind, url=url, replay_path=replay, timeout_s=timeout_s)  # checks kind, url, file given
    if kind == "replay":
        if replay is None:  # EvidenceSpec above refuses this already; the check tells the type checker too
            raise ConfigError("the replay evidence source needs a file: pass --replay FILE.jsonl")
        p = Path(replay).expanduser().resolve()
        if not p.is_file():
            raise ConfigError(
                f"replay file {p} does not exist: record one with engine.discovery.evidence.RecordingSource "
                "(README: Recording and replaying real evidence)"
            )
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
                out[str(row.get("entity_id") or row.get("id"))] = _label_value(
                    row["actionable"], f"labels file {p}, row {i}"
                )
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
    """Validate a labels file now (every row; one-line ConfigError) and fingerprint it."""
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
    #: entities of a trial in flight at once (engine.discovery.pool): the same answers at any value
    concurrency: int = 1
    #: the evaluator's limits (RunLimits.to_dict() without concurrency); None: no limit
    max_hops_per_s: float | None = None
    max_in_flight: int | None = None
    #: trials evaluated at once (engine.jobs.executor): part of the study, since a Bayesian batch of k
    #: points differs from k points asked one by one; the same seed and workers give the same study
    workers: int = 1

    @property
    def salt(self) -> str:
        """The hold-out salt: fixed by the seed, so the same command gives the same hold-out set."""
        return f"holdout-{self.seed}"

    def check(self) -> None:
        """Raise a one-line ConfigError for anything a study cannot run with (nothing is stored before this)."""
        if self.method not in METHODS:
            raise ConfigError(f"unknown tuning method {self.method!r}: use one of {', '.join(METHODS)}")
        if (
            isinstance(self.iterations, bool)
            or not isinstance(self.iterations, int)
            or not 1 <= self.iterations <= MAX_ITERATIONS
        ):
            raise ConfigError(f"iterations {self.iterations!r} must be a whole number from 1 to {MAX_ITERATIONS}")
        if not isinstance(self.entities.n, int) or not 2 <= self.entities.n <= MAX_ENTITIES:
            raise ConfigError(f"entity count {self.entities.n!r} must be a whole number from 2 to {MAX_ENTITIES}")
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"top_k {self.top_k!r} must be at least 1 (best trials re-scored on the hold-out set)")
        search_space(self.params)  # unknown names -> ConfigError
        RunLimits(self.concurrency, self.max_hops_per_s, self.max_in_flight)  # one-line ConfigError naming the flag
        check_workers(self.workers)
        if self.evidence.kind != "world" and self.labels is None:
            raise ConfigError(
                f"{self.evidence.kind} evidence carries no ground truth to score trials by: give --labels FILE "
                "(entity_id,actionable) with the known outcomes of the entities"
            )


def spec_to_json(spec: StudySpec) -> str:
    """The spec as the JSON stored in ``tuning_studies.spec`` (keys sorted, so equal specs store equal text)."""
    d = asdict(spec)
    d["params"] = list(spec.params)
    d["rewards"] = spec.rewards.to_dict()
    return json.dumps(d, sort_keys=True)


def spec_from_dict(d: Mapping[str, Any]) -> StudySpec:
    """A StudySpec from the stored JSON (``spec_to_json``); keys added later default when absent."""
    return StudySpec(
        method=d["method"],
        params=tuple(d["params"]),
        iterations=d["iterations"],
        entities=EntitySpec(**d["entities"]),
        seed=d["seed"],
        world_seed=d["world_seed"],
        rewards=Rewards.from_dict(d["rewards"]),
        train_fraction=d["train_fraction"],
        top_k=d["top_k"],
        name=d.get("name", ""),
        evidence=EvidenceRef(**d.get("evidence", {})),
        labels=LabelsRef(**d["labels"]) if d.get("labels") else None,
        concurrency=int(d.get("concurrency", 1)),
        max_hops_per_s=d.get("max_hops_per_s"),
        max_in_flight=d.get("max_in_flight"),
        workers=int(d.get("workers", 1)),
    )
