"""Stage config: the rollout's stage table (``data/stages.json``), loaded and validated.

A stage says how many entities are exposed by its end (cumulative: 10, then
100, then ``"all"``), how long it must run before it may be promoted, how
entities are processed (batch size, paired shadow fraction) and the policy
its verdict is assessed against: success criteria (every one must hold to
pass) and rollback triggers (any one breached fails the stage), each on a
named metric with an operator, a threshold and a test ("point": the
measured value; "bound": the whole confidence interval must be on that side).
The last stage (the one whose promotion makes the candidate the live config)
may set ``bake_days``: for that long after the promotion its rollback
triggers keep being evaluated on production traffic, and a breach reverts the
live config (engine.rollout.guardrails). A stage may set ``four_eyes`` (a
boolean, default false; the shipped table sets it for ``production``):
promoting a run into that stage, or promoting it when that makes the config
live, needs an approver other than the person who started the run
(engine.rollout.control). ``save_stage_config`` replaces a stage table
(approver: ``stages.edit``), validated and audited.

Validation reports every bad field in one one-line ConfigError (problems
separated by "; "), each naming the stage, the field, the bad value and the
allowed range. Every number must be finite and within the bounds below: a NaN
threshold would silently switch its trigger off, a NaN confidence or 1e12
bootstrap resamples would only fail after live runs, needing a rollback.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.core.access import Actor
from engine.core.errors import ConfigError
from engine.core.inputs import MAX_INT64, number_problem, read_json_file, shown, shown_name
from engine.core.settings import SHIPPED_DATA_DIR
from engine.discovery.limits import MAX_CONCURRENCY
from engine.store.access import authorize

DEFAULT_STAGES_FILE = SHIPPED_DATA_DIR / "stages.json"
SECONDS_PER_DAY = 86400.0

# Bounds of the numbers of a stage table: generous for real use, tight enough that a typo cannot
# switch a check off, exhaust memory or overflow a stored integer. The README's Stages section
# lists them; change both together.
#: cumulative exposure of a stage, and its minimum sample
MAX_STAGE_ENTITIES = 10_000_000
#: entities processed (and checkpointed) together
MAX_BATCH_SIZE = 100_000
#: entities in flight while a stage runs when its entry in the stage table does not say: enough to keep an
#: HTTP evaluator of seconds per hop busy without flooding it (the simulated world answers the same either way)
DEFAULT_STAGE_CONCURRENCY = 16
#: minimum duration of a stage: ten years
MAX_MIN_DURATION_DAYS = 3650.0
#: bake period after the last stage's promotion (engine.rollout.guardrails): at most a year
MAX_BAKE_DAYS = 365.0
#: confidence level of the intervals
CONFIDENCE_RANGE = (0.5, 0.999)
#: bootstrap resamples per interval (memory grows with resamples x entities)
BOOTSTRAP_RESAMPLES_RANGE = (100, 100_000)
#: scaled seconds per real second: above 0, at most 1e9 (30 days pass in 3 ms)
MAX_TIME_SCALE = 1e9
#: percentage-change thresholds (cost reduction or increase, actionable increase)
MAX_PCT_CHANGE = 1_000_000.0
#: p95 latency thresholds: a day, in ms
MAX_LATENCY_MS = 86_400_000.0


class Metric(StrEnum):
    """What a criterion measures (see engine.rollout.stats.measure for the definitions)."""

    COST_REDUCTION_PCT = "cost_reduction_pct"  # (old cost - new cost) / old cost, paired entities
    COST_INCREASE_PCT = "cost_increase_pct"  # minus the above
    ACTIONABLE_INCREASE_PCT = "actionable_increase_pct"  # (new actionable - old) / old, paired
    ERROR_RATE_PCT = "error_rate_pct"  # errored hops (+ crashed runs) of the candidate
    P95_LATENCY_MS = "p95_latency_ms"  # candidate's own per-entity decision time, p95

    def higher_is_better(self) -> bool:
        return self in (Metric.COST_REDUCTION_PCT, Metric.ACTIONABLE_INCREASE_PCT)


class Check(StrEnum):
    POINT = "point"  # compare the measured value
    BOUND = "bound"  # the interval's bound on the far side must clear the threshold

    def uses_interval(self) -> bool:
        return self is Check.BOUND


OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}

#: the thresholds a criterion on each metric may have (a percentage, a rate in %, or milliseconds)
THRESHOLD_RANGE: dict[Metric, tuple[float, float]] = {
    Metric.COST_REDUCTION_PCT: (-MAX_PCT_CHANGE, MAX_PCT_CHANGE),
    Metric.COST_INCREASE_PCT: (-MAX_PCT_CHANGE, MAX_PCT_CHANGE),
    Metric.ACTIONABLE_INCREASE_PCT: (-MAX_PCT_CHANGE, MAX_PCT_CHANGE),
    Metric.ERROR_RATE_PCT: (0.0, 100.0),
    Metric.P95_LATENCY_MS: (0.0, MAX_LATENCY_MS),
}


@dataclass(frozen=True)
class Criterion:
    metric: Metric
    op: str
    threshold: float
    test: Check = Check.POINT

    def holds(self, value: float) -> bool:
        return bool(OPS[self.op](value, self.threshold))

    def label(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    def to_dict(self) -> dict:
        return {"metric": str(self.metric), "op": self.op, "threshold": self.threshold, "test": str(self.test)}


@dataclass(frozen=True)
class StagePolicy:
    name: str
    entities: int | None  # cumulative exposure at the end of the stage; None = all
    min_duration_days: float
    batch_size: int
    min_sample: int
    shadow_fraction: float
    confidence: float
    bootstrap_resamples: int
    success: tuple[Criterion, ...]
    rollback: tuple[Criterion, ...]
    #: entities in flight at once while the stage runs (engine.discovery.pool); ``--concurrency`` overrides it
    concurrency: int = DEFAULT_STAGE_CONCURRENCY
    #: last stage only: days after its promotion during which its rollback triggers watch production traffic
    #: (0: no bake; engine.rollout.guardrails)
    bake_days: float = 0.0
    #: entering this stage (and making the config live from it) needs a second person: an approver other
    #: than the one who started the run (engine.rollout.control)
    four_eyes: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["entities"] = "all" if self.entities is None else self.entities
        d["success"] = [c.to_dict() for c in self.success]
        d["rollback"] = [c.to_dict() for c in self.rollback]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StagePolicy:
        """Inverse of to_dict (used to recompute a verdict from a decision record)."""
        crit = lambda items: tuple(  # noqa: E731
            Criterion(Metric(c["metric"]), c["op"], float(c["threshold"]), Check(c.get("test", "point"))) for c in items
        )
        return cls(
            name=d["name"],
            entities=None if d["entities"] == "all" else int(d["entities"]),
            min_duration_days=float(d["min_duration_days"]),
            batch_size=int(d["batch_size"]),
            min_sample=int(d["min_sample"]),
            shadow_fraction=float(d["shadow_fraction"]),
            confidence=float(d["confidence"]),
            bootstrap_resamples=int(d["bootstrap_resamples"]),
            success=crit(d["success"]),
            rollback=crit(d["rollback"]),
            concurrency=int(d.get("concurrency", DEFAULT_STAGE_CONCURRENCY)),  # runs stored before the setting
            bake_days=float(d.get("bake_days", 0.0)),  # runs stored before guardrails: no bake
            four_eyes=bool(d.get("four_eyes", False)),  # runs stored before four-eyes: none
        )


@dataclass(frozen=True)
class StageConfig:
    stages: tuple[StagePolicy, ...]
    seed: int = 0
    #: simulated seconds per real second: 86400 makes a day pass every second
    time_scale: float = 1.0
    source: str = ""  # file it came from, for messages and records
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    def stage(self, name: str) -> StagePolicy:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(f"no stage named {name!r} in {self.source or 'the stage config'}: use one of {self.names()}")

    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def index(self, name: str) -> int:
        return self.names().index(self.stage(name).name)

    def with_time_scale(self, time_scale: float) -> StageConfig:
        problem = number_problem(time_scale, 0, MAX_TIME_SCALE, low_open=True)
        if problem:
            raise ConfigError(f"time scale: {problem} (86400 makes a day pass per second)")
        return replace(self, time_scale=float(time_scale))

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "time_scale": self.time_scale,
            "stages": [s.to_dict() for s in self.stages],
        }


# --------------------------------------------------------------------------- validation


def _num(
    errors: list[str],
    where: str,
    value: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    integer: bool = False,
    lo_open: bool = False,
) -> float | None:
    """``value`` when it is a finite number in range (whole if ``integer``), else None with one problem recorded."""
    problem = number_problem(value, lo, hi, integer=integer, low_open=lo_open)
    if problem:
        errors.append(f"{where}: {problem}")
        return None
    return int(value) if integer else float(value)


def _criteria(errors: list[str], where: str, items: Any, default_test: str) -> tuple[Criterion, ...]:
    if not isinstance(items, list):
        errors.append(f"{where}: expected a list of criteria, got {type(items).__name__}")
        return ()
    out = []
    for i, c in enumerate(items):
        w = f"{where}[{i}]"
        if not isinstance(c, dict):
            errors.append(f"{w}: expected an object with metric, op, threshold")
            continue
        unknown = set(c) - {"metric", "op", "threshold", "test"}
        if unknown:
            errors.append(f"{w}: unknown field(s) {sorted(unknown)} (allowed: metric, op, threshold, test)")
        ok = True
        metric = c.get("metric")
        if not isinstance(metric, str) or metric not in set(Metric):
            errors.append(f"{w}.metric: {shown(metric)} is not one of {[str(m) for m in Metric]}")
            ok = False
        if not isinstance(c.get("op"), str) or c.get("op") not in OPS:
            errors.append(f"{w}.op: {shown(c.get('op'))} is not one of {list(OPS)}")
            ok = False
        test = c.get("test", default_test)
        if not isinstance(test, str) or test not in set(Check):
            errors.append(f"{w}.test: {shown(test)} is not one of {[str(t) for t in Check]}")
            ok = False
        lo, hi = THRESHOLD_RANGE[Metric(c["metric"])] if ok else (None, None)
        thr = _num(errors, f"{w}.threshold", c.get("threshold"), lo=lo, hi=hi)
        if ok and thr is not None:
            out.append(Criterion(Metric(c["metric"]), c["op"], thr, Check(test)))
    return tuple(out)


STAGE_FIELDS = {
    "name",
    "entities",
    "min_duration_days",
    "batch_size",
    "min_sample",
    "shadow_fraction",
    "test",
    "confidence",
    "bootstrap_resamples",
    "success",
    "rollback",
    "concurrency",
    "bake_days",
    "four_eyes",
}
TOP_FIELDS = {"version", "seed", "time_scale", "confidence", "bootstrap_resamples", "stages"}


def parse_stage_config(data: Any, source: str = "") -> StageConfig:
    """Validate a decoded stage config; raise one one-line ConfigError listing every bad field."""
    errors: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(f"{source or 'stage config'}: expected a JSON object with a 'stages' list")
    unknown = set(data) - TOP_FIELDS
    if unknown:
        errors.append(f"unknown top-level field(s) {sorted(unknown)} (allowed: {sorted(TOP_FIELDS)})")
    seed = _num(errors, "seed", data.get("seed", 0), lo=0, hi=MAX_INT64, integer=True)
    time_scale = _num(errors, "time_scale", data.get("time_scale", 1), lo=0, hi=MAX_TIME_SCALE, lo_open=True)
    confidence = _num(errors, "confidence", data.get("confidence", 0.9), lo=CONFIDENCE_RANGE[0], hi=CONFIDENCE_RANGE[1])
    resamples = _num(
        errors,
        "bootstrap_resamples",
        data.get("bootstrap_resamples", 2000),
        lo=BOOTSTRAP_RESAMPLES_RANGE[0],
        hi=BOOTSTRAP_RESAMPLES_RANGE[1],
        integer=True,
    )
    stages_raw = data.get("stages")
    stages: list[StagePolicy] = []
    if not isinstance(stages_raw, list) or not stages_raw:
        errors.append("stages: expected a non-empty list of stages")
        stages_raw = []
    seen: set[str] = set()
    last_count = 0
    for i, s in enumerate(stages_raw):
        w = f"stages[{i}]"
        if not isinstance(s, dict):
            errors.append(f"{w}: expected an object")
            continue
        name = s.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append(f"{w}.name: expected a non-empty name")
            name = f"#{i}"
        else:
            w = f"stages[{i}] ({shown_name(name)})"
            if name in seen:
                errors.append(f"{w}.name: duplicate stage name {shown(name)}")
            seen.add(name)
        unknown = set(s) - STAGE_FIELDS
        if unknown:
            errors.append(f"{w}: unknown field(s) {sorted(unknown)} (allowed: {sorted(STAGE_FIELDS)})")
        ents = s.get("entities")
        count: int | None
        if ents == "all":
            count = None
            if i != len(stages_raw) - 1:
                errors.append(f"{w}.entities: only the last stage may expose 'all' entities")
        else:
            v = _num(errors, f"{w}.entities", ents, lo=1, hi=MAX_STAGE_ENTITIES, integer=True)
            count = int(v) if v is not None else 0
            if v is not None and count <= last_count:
                errors.append(
                    f"{w}.entities: exposure is cumulative, so {count} must be more than "
                    f"the previous stage's {last_count}"
                )
            last_count = max(last_count, count)
        min_days = _num(errors, f"{w}.min_duration_days", s.get("min_duration_days", 0), lo=0, hi=MAX_MIN_DURATION_DAYS)
        batch = _num(errors, f"{w}.batch_size", s.get("batch_size", 10), lo=1, hi=MAX_BATCH_SIZE, integer=True)
        min_sample = _num(errors, f"{w}.min_sample", s.get("min_sample", 1), lo=1, hi=MAX_STAGE_ENTITIES, integer=True)
        shadow = _num(errors, f"{w}.shadow_fraction", s.get("shadow_fraction", 1.0), lo=0, hi=1, lo_open=True)
        in_flight = _num(
            errors,
            f"{w}.concurrency",
            s.get("concurrency", DEFAULT_STAGE_CONCURRENCY),
            lo=1,
            hi=MAX_CONCURRENCY,
            integer=True,
        )
        conf = _num(
            errors,
            f"{w}.confidence",
            s.get("confidence", confidence or 0.9),
            lo=CONFIDENCE_RANGE[0],
            hi=CONFIDENCE_RANGE[1],
        )
        res = _num(
            errors,
            f"{w}.bootstrap_resamples",
            s.get("bootstrap_resamples", resamples or 2000),
            lo=BOOTSTRAP_RESAMPLES_RANGE[0],
            hi=BOOTSTRAP_RESAMPLES_RANGE[1],
            integer=True,
        )
        test = s.get("test", "bound")
        if not isinstance(test, str) or test not in set(Check):
            errors.append(f"{w}.test: {shown(test)} is not one of {[str(t) for t in Check]}")
            test = "bound"
        success = _criteria(errors, f"{w}.success", s.get("success", []), test)
        rollback = _criteria(errors, f"{w}.rollback", s.get("rollback", []), "point")
        if not s.get("success"):
            errors.append(f"{w}.success: a stage needs at least one success criterion")
        four_eyes = s.get("four_eyes", False)
        if not isinstance(four_eyes, bool):
            errors.append(f"{w}.four_eyes: {shown(four_eyes)} is not true or false")
            four_eyes = False
        bake = _num(errors, f"{w}.bake_days", s.get("bake_days", 0), lo=0, hi=MAX_BAKE_DAYS)
        if bake and i != len(stages_raw) - 1:
            errors.append(
                f"{w}.bake_days: only the last stage (its promotion makes the config live) bakes; "
                f"set it to 0 or move it to the last stage"
            )
        if (
            min_days is not None
            and batch is not None
            and min_sample is not None
            and shadow is not None
            and conf is not None
            and res is not None
            and in_flight is not None
            and bake is not None
        ):
            stages.append(
                StagePolicy(
                    name=name,
                    entities=count,
                    min_duration_days=float(min_days),
                    batch_size=int(batch),
                    min_sample=int(min_sample),
                    shadow_fraction=float(shadow),
                    confidence=float(conf),
                    bootstrap_resamples=int(res),
                    success=success,
                    rollback=rollback,
                    concurrency=int(in_flight),
                    bake_days=float(bake),
                    four_eyes=four_eyes,
                )
            )
    if errors or seed is None or time_scale is None:  # _num records an error for every None it returns
        where = f"{source}: " if source else ""
        if len(errors) == 1:
            raise ConfigError(f"{where}invalid stage config: {errors[0]}")
        raise ConfigError(f"{where}invalid stage config, {len(errors)} problems: " + "; ".join(errors))
    return StageConfig(stages=tuple(stages), seed=int(seed), time_scale=float(time_scale), source=source, raw=data)


def load_stage_config(path: Path | str | None = None) -> StageConfig:
    """Load and validate a stage table; the shipped ``data/stages.json`` when no path is given."""
    p = Path(path) if path else DEFAULT_STAGES_FILE
    data = read_json_file(p, "stage table", missing="pass --stages-file with an existing file")
    return parse_stage_config(data, source=str(p))


def save_stage_config(ops, actor: Actor, data: Any, path: Path | str | None = None) -> StageConfig:
    """Replace a stage table (the shipped ``data/stages.json`` when no path is given): approver only.

    The new table is validated in full first (nothing is written when any field is bad), then written
    whole (a temporary file renamed over the old one, so a reader never sees half a table) and audited
    with the stages it names and which of them need four-eyes.
    """
    who = authorize(ops, actor, "stages.edit")
    p = Path(path) if path else DEFAULT_STAGES_FILE
    cfg = parse_stage_config(data, source=str(p))
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(p)
    ops.audit(
        who,
        "stages.edit",
        p.name,
        {"stages": cfg.names(), "four_eyes": [s.name for s in cfg.stages if s.four_eyes]},
    )
    return replace(cfg, source=str(p))
