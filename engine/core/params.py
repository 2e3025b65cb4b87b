"""ParameterConfig: every tunable of the discovery system, with default, bounds and step.

One frozen dataclass; ``PARAMETER_SPECS`` is the single source of each
field's default, bounds, step, group and meaning, so validation, the tuning
search space and the documentation cannot drift apart. An invalid config
cannot be constructed: ``__post_init__`` validates and raises ``ConfigError``
with one message per bad field (field, value, allowed range).

Groups (each one changes behaviour; tests/test_param_effects.py proves it per field):

``value``      EIG category value per group (model.CATEGORY_GROUP is the explicit table)
``deltas``     confidence change per decision
``eig``        novelty (cluster dampening) decay and temporal decay lambda (per day)
``search``     max iterations, max depth, depth patience, flat-confidence stop, stop confidence
``lifecycle``  promote / degrade thresholds, saturation window and count
``cluster``    cluster dampening: min cluster size, min confirmations before it counts
``cache``      hypothesis cache TTL and size (used by engine.cache.lru)
``cost``       max cost per entity and the safety margin kept below it
``actionable`` the actionable gate: min ACCEPTs, min distinct categories
``bonus``      exploration / exploitation bonuses added to EIG when choosing
``channel``    weights of the channel (hop type) score
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, SupportsInt

from engine.core.errors import ConfigError
from engine.core.inputs import number_problem, read_json_file, shown
from engine.core.model import DecisionDeltas, LifecycleRules, category_group


@dataclass(frozen=True)
class ParamSpec:
    """Default, bounds (inclusive) and grid step of one parameter."""

    name: str
    default: float | int
    low: float | int
    high: float | int
    step: float | int | None
    group: str
    help: str

    @property
    def integer(self) -> bool:
        return isinstance(self.default, int)

    def allowed(self) -> str:
        kind = "integer" if self.integer else "number"
        return f"{kind} in [{self.low}, {self.high}]"


def _s(name: str, default: float, low: float, high: float, step: float | None, group: str, help_: str) -> ParamSpec:
    return ParamSpec(name, default, low, high, step, group, help_)


#: Every tunable, in a stable order. ``ParameterConfig`` fields are generated from
#: the same names; a test checks the two agree.
PARAMETER_SPECS: tuple[ParamSpec, ...] = (
    # category value groups (EIG)
    _s("value_csuite", 1.5, 0.5, 3.0, 0.1, "value", "EIG value of C-Suite Hiring / Executive Change"),
    _s("value_strategic", 1.4, 0.5, 3.0, 0.1, "value", "EIG value of Strategic Hire"),
    _s("value_digital", 1.3, 0.5, 3.0, 0.1, "value", "EIG value of Digital Transformation / AI Platform"),
    _s("value_data", 1.2, 0.5, 3.0, 0.1, "value", "EIG value of Data Analytics / CRM Implementation"),
    _s("value_commercial", 1.1, 0.5, 3.0, 0.1, "value", "EIG value of Fan Engagement / Ticketing / E-commerce"),
    _s(
        "value_default",
        1.0,
        0.5,
        3.0,
        0.1,
        "value",
        "EIG value of Operations / Infrastructure / IT Modernization / General",
    ),
    _s("value_other", 0.9, 0.5, 3.0, 0.1, "value", "EIG value of any category outside the table"),
    # decision deltas
    _s("delta_accept", 0.06, 0.01, 0.20, 0.01, "deltas", "confidence change on ACCEPT"),
    _s("delta_weak_accept", 0.02, 0.0, 0.10, 0.01, "deltas", "confidence change on WEAK_ACCEPT"),
    _s("delta_reject", -0.02, -0.20, 0.0, 0.01, "deltas", "confidence change on REJECT (negative)"),
    # EIG decays
    _s("novelty_decay", 1.0, 0.0, 5.0, 0.1, "eig", "novelty = 1 / (1 + decay * confirmations in the cluster)"),
    _s("temporal_decay", 0.01, 0.0, 1.0, 0.005, "eig", "lambda of exp(-lambda * days since the hypothesis last moved)"),
    # search and stop rules
    _s("max_iterations", 20, 1, 100, 1, "search", "hops per entity run at most"),
    _s("max_depth", 3, 1, 3, 1, "search", "deepest depth (1 SURFACE, 2 OPERATIONAL, 3 AUTHORITY)"),
    _s(
        "depth_patience",
        3,
        1,
        10,
        1,
        "search",
        "consecutive hops without an (weak) accept before going one depth deeper",
    ),
    _s("flat_window", 8, 2, 20, 1, "search", "hops over which confidence must move, else the run stops (flat)"),
    _s(
        "flat_epsilon",
        0.02,
        0.0,
        0.20,
        0.01,
        "search",
        "total |confidence change| over the window at or below which it is flat",
    ),
    _s("stop_confidence", 0.80, 0.50, 1.0, 0.01, "search", "stop when actionable and the best confidence exceeds this"),
    # lifecycle
    _s("promote_confidence", 0.70, 0.40, 0.95, 0.01, "lifecycle", "PROMOTED at or above this confidence ..."),
    _s("promote_accepts", 2, 1, 10, 1, "lifecycle", "... and at least this many ACCEPTs"),
    _s("degrade_confidence", 0.30, 0.05, 0.60, 0.01, "lifecycle", "DEGRADED below this confidence ..."),
    _s("degrade_rejects", 2, 1, 10, 1, "lifecycle", "... and at least this many REJECTs"),
    _s("saturation_window", 5, 2, 20, 1, "lifecycle", "SATURATED looks at the last this-many attempts ..."),
    _s("saturation_count", 3, 1, 20, 1, "lifecycle", "... of which at least this many made no progress"),
    # cluster dampening
    _s("cluster_min_size", 3, 1, 100, 1, "cluster", "dampen novelty only in clusters with at least this many entities"),
    _s("cluster_min_confirmations", 1, 1, 20, 1, "cluster", "confirmations below this count as none"),
    # cache (engine.cache.lru)
    _s("cache_ttl_s", 300.0, 0.0, 86400.0, 30.0, "cache", "seconds a cached hypothesis read stays fresh"),
    _s("cache_max_items", 20000, 100, 1_000_000, 1000, "cache", "entries the hypothesis cache holds at most"),
    # cost
    _s("max_cost_usd", 0.50, 0.05, 5.0, 0.05, "cost", "spend per entity run never exceeds this (USD)"),
    _s("cost_safety_margin", 0.05, 0.0, 0.50, 0.01, "cost", "fraction of max_cost_usd kept in reserve"),
    # actionable gate
    _s("actionable_min_accepts", 2, 1, 10, 1, "actionable", "actionable: at least this many ACCEPTs ..."),
    _s("actionable_min_categories", 2, 1, 5, 1, "actionable", "... across at least this many distinct categories"),
    # selection bonuses
    _s(
        "exploration_bonus",
        0.5,
        0.0,
        1.0,
        0.01,
        "bonus",
        "added to EIG / sqrt(1 + tries of the hypothesis in this run)",
    ),
    _s(
        "exploitation_bonus",
        0.10,
        0.0,
        1.0,
        0.01,
        "bonus",
        "added to EIG of an unpromoted hypothesis that has an ACCEPT",
    ),
    # channel score weights
    _s("channel_w_depth", 1.0, 0.0, 3.0, 0.1, "channel", "weight of a channel being native to the current depth"),
    _s("channel_w_yield", 1.0, 0.0, 3.0, 0.1, "channel", "weight of the channel's observed progress rate in this run"),
    _s("channel_w_cost", 0.5, 0.0, 3.0, 0.1, "channel", "weight of the channel's quoted cost (relative, subtracted)"),
    _s(
        "channel_w_repeat",
        0.3,
        0.0,
        3.0,
        0.1,
        "channel",
        "penalty per earlier use of the channel on the same hypothesis",
    ),
    _s("channel_w_priority", 0.2, 0.0, 3.0, 0.1, "channel", "weight of the template's channel priority (1/priority)"),
)

SPEC_BY_NAME: dict[str, ParamSpec] = {s.name: s for s in PARAMETER_SPECS}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(s.group for s in PARAMETER_SPECS))

#: value group (model.CATEGORY_GROUP's values) -> ParameterConfig field
VALUE_FIELD_BY_GROUP: dict[str, str] = {
    "csuite": "value_csuite",
    "strategic": "value_strategic",
    "digital": "value_digital",
    "data": "value_data",
    "commercial": "value_commercial",
    "default": "value_default",
    "other": "value_other",
}


@dataclass(frozen=True)
class ParameterConfig:
    """The discovery system's parameters. Construction validates; see PARAMETER_SPECS."""

    value_csuite: float = 1.5
    value_strategic: float = 1.4
    value_digital: float = 1.3
    value_data: float = 1.2
    value_commercial: float = 1.1
    value_default: float = 1.0
    value_other: float = 0.9
    delta_accept: float = 0.06
    delta_weak_accept: float = 0.02
    delta_reject: float = -0.02
    novelty_decay: float = 1.0
    temporal_decay: float = 0.01
    max_iterations: int = 20
    max_depth: int = 3
    depth_patience: int = 3
    flat_window: int = 8
    flat_epsilon: float = 0.02
    stop_confidence: float = 0.80
    promote_confidence: float = 0.70
    promote_accepts: int = 2
    degrade_confidence: float = 0.30
    degrade_rejects: int = 2
    saturation_window: int = 5
    saturation_count: int = 3
    cluster_min_size: int = 3
    cluster_min_confirmations: int = 1
    cache_ttl_s: float = 300.0
    cache_max_items: int = 20000
    max_cost_usd: float = 0.50
    cost_safety_margin: float = 0.05
    actionable_min_accepts: int = 2
    actionable_min_categories: int = 2
    exploration_bonus: float = 0.5
    exploitation_bonus: float = 0.10
    channel_w_depth: float = 1.0
    channel_w_yield: float = 1.0
    channel_w_cost: float = 0.5
    channel_w_repeat: float = 0.3
    channel_w_priority: float = 0.2

    def __post_init__(self) -> None:
        # Coerce numeric look-alikes (numpy scalars from an optimiser, 3.0 for an int) so
        # equality, hashing and JSON are stable; anything else is reported by problems().
        for spec in PARAMETER_SPECS:
            v = getattr(self, spec.name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                continue
            try:
                as_float = float(v)
            except OverflowError:  # an integer too long for a float (hundreds of digits): problems() reports it
                continue
            if spec.integer:
                if as_float.is_integer() and isinstance(v, SupportsInt):  # every Real in practice
                    object.__setattr__(self, spec.name, int(v))
            else:
                object.__setattr__(self, spec.name, as_float)
        bad = self.problems()
        if bad:
            raise ConfigError("invalid parameters: " + "; ".join(bad))

    # ------------------------------------------------------------------ validation

    def problems(self) -> list[str]:
        """One message per bad field (name, value, allowed range), then cross-field rules."""
        out: list[str] = []
        for spec in PARAMETER_SPECS:
            v = getattr(self, spec.name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                out.append(f"{spec.name} = {shown(v)} is not a number: allowed {spec.allowed()}")
            elif spec.integer and not isinstance(v, int):
                out.append(f"{spec.name} = {shown(v)} is not an integer: allowed {spec.allowed()}")
            elif number_problem(v, spec.low, spec.high):  # finite and in range, compared without a float overflow
                out.append(f"{spec.name} = {shown(v)} is out of range: allowed {spec.allowed()}")
        if out:
            return out
        if self.saturation_count > self.saturation_window:
            out.append(
                f"saturation_count = {self.saturation_count} exceeds saturation_window = "
                f"{self.saturation_window}: it can never fire; lower the count or widen the window"
            )
        if self.degrade_confidence >= self.promote_confidence:
            out.append(
                f"degrade_confidence = {self.degrade_confidence} must be below promote_confidence = "
                f"{self.promote_confidence}"
            )
        return out

    def validate(self) -> ParameterConfig:
        """Raise ConfigError listing every problem; return self when valid (always, once built)."""
        bad = self.problems()
        if bad:
            raise ConfigError("invalid parameters: " + "; ".join(bad))
        return self

    # ------------------------------------------------------------------ derived views

    def to_lifecycle_rules(self) -> LifecycleRules:
        return LifecycleRules(
            promote_confidence=self.promote_confidence,
            promote_accepts=self.promote_accepts,
            degrade_confidence=self.degrade_confidence,
            degrade_rejects=self.degrade_rejects,
            saturation_window=self.saturation_window,
            saturation_count=self.saturation_count,
        )

    def to_deltas(self) -> DecisionDeltas:
        return DecisionDeltas(accept=self.delta_accept, weak_accept=self.delta_weak_accept, reject=self.delta_reject)

    def group_values(self) -> dict[str, float]:
        """Value per category group, keyed like model.GROUP_VALUE_DEFAULTS."""
        return {group: getattr(self, name) for group, name in VALUE_FIELD_BY_GROUP.items()}

    def category_value(self, category: str) -> float:
        """EIG value of a pattern category via the explicit model.CATEGORY_GROUP table."""
        value: float = getattr(self, VALUE_FIELD_BY_GROUP[category_group(category)])
        return value

    @property
    def cost_cap_usd(self) -> float:
        """The budget a run plans against: max cost less the safety margin."""
        return self.max_cost_usd * (1.0 - self.cost_safety_margin)

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    def hash(self) -> str:
        """Stable short id of the values: sha256 of sorted compact JSON, first 12 hex digits.

        Computed once per (immutable) config: every run result carries it, so it is on the hot path.
        """
        cached = self.__dict__.get("_hash")
        if cached is None:
            canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
            cached = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
            self.__dict__["_hash"] = cached  # not a field: equality, asdict and replace ignore it
        return cached

    def with_changes(self, **changes: Any) -> ParameterConfig:
        unknown = sorted(set(changes) - set(SPEC_BY_NAME))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}: see PARAMETER_SPECS for the names")
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "parameters") -> ParameterConfig:
        """Build from a (partial) mapping; missing fields keep their defaults."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a JSON object of parameter names to values")
        unknown = sorted(set(data) - set(SPEC_BY_NAME))
        if unknown:
            raise ConfigError(
                f"{source}: unknown parameter(s) {', '.join(unknown)}; known: see `PARAMETER_SPECS` in engine/params.py"
            )
        try:
            return cls(**dict(data))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "parameters") -> ParameterConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        except ValueError:  # an integer literal past Python's 4,300-digit conversion limit
            raise ConfigError(f"{source}: holds a number with thousands of digits; no parameter takes one") from None
        except RecursionError:
            raise ConfigError(f"{source}: nested too deeply to be a parameter set") from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> ParameterConfig:
        """Read a parameter file; every error (missing, a directory, not UTF-8, bad JSON) is one line naming it."""
        p = Path(path)
        data = read_json_file(p, "parameter file")
        return cls.from_dict(data, source=f"parameter file {p}")

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_json() + "\n", encoding="utf-8")
        return p


DEFAULT_PARAMS = ParameterConfig()


def _check_specs_match_fields() -> None:
    names = [f.name for f in fields(ParameterConfig)]
    if names != [s.name for s in PARAMETER_SPECS]:
        raise RuntimeError("ParameterConfig fields and PARAMETER_SPECS disagree")
    for f, s in zip(fields(ParameterConfig), PARAMETER_SPECS, strict=True):  # lengths checked above
        if f.default != s.default or type(f.default) is not type(s.default):
            raise RuntimeError(f"default of {f.name} differs from PARAMETER_SPECS")


_check_specs_match_fields()
