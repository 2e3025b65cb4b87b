"""The simulated world: a seeded, deterministic stand-in for the real evidence pipeline.

Every number comes from a profile file (default ``data/world_profile.json``,
which documents each one and its assumptions). Every outcome is a pure
function of (world seed, entity id, hypothesis id, hop type, attempt) and the
depth the hop is used at: each random draw is a keyed BLAKE2b hash mapped to
[0, 1) (never Python's ``hash()``, which is salted per process). So the old and
the new system meet the same world: the same hop gets the same answer.

The hidden truth (which patterns are really happening at an entity) is drawn
from the same seed and is reachable only through :meth:`SimulatedWorld.truth`,
which is what scoring is handed; the engine never sees it.

Time is virtual by default: each hop's latency is drawn and reported, not
slept. ``sleep=True`` sleeps it for real (scaled by ``time_scale``).

A world may be called from many threads at once: every answer is a pure
function of its key, and the one thing it keeps (the entities it knows, for
:meth:`SimulatedWorld.truth`) is changed under a lock.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

from engine.core.errors import ConfigError
from engine.core.model import Decision, Depth, Entity, EvidenceResult, HopType, Hypothesis, Pattern, Template
from engine.core.settings import SHIPPED_DATA_DIR

DEFAULT_PROFILE_PATH = SHIPPED_DATA_DIR / "world_profile.json"

_UNIT = 1.0 / 2.0**64
_NORMAL = NormalDist()


def unit(seed: int | str, *parts: object) -> float:
    """A uniform draw in [0, 1) that is a pure function of (seed, parts)."""
    key = "\x1f".join([str(seed), *(str(p) for p in parts)]).encode("utf-8")
    (n,) = struct.unpack(">Q", hashlib.blake2b(key, digest_size=8).digest())
    return n * _UNIT


# --------------------------------------------------------------------------- profile


@dataclass(frozen=True)
class DepthProfile:
    no_progress: float
    sensitivity: float
    false_accept: float


@dataclass(frozen=True)
class HopProfile:
    cost_usd: float
    latency_median_s: float
    latency_sigma: float
    error_rate: float
    by_depth: Mapping[int, DepthProfile]


@dataclass(frozen=True)
class WorldProfile:
    name: str
    in_market_rate_by_tier: Mapping[int, float]
    in_market_rate_default: float
    p_true_in_market_base: float
    p_true_in_market_per_prior: float
    p_true_out_of_market_base: float
    p_true_out_of_market_per_prior: float
    actionable_min_true_categories: int
    weak_accept_share_if_true: float
    weak_accept_share_if_false: float
    no_progress_false_extra: float
    repeat_yield: float
    error_types: tuple[tuple[str, float], ...]
    error_cost_fraction: float
    timeout_s: float
    cost_jitter: float
    hops: Mapping[HopType, HopProfile]

    def quote(self, hop_type: HopType) -> float:
        """The most one hop of this type can cost."""
        return self.hops[hop_type].cost_usd * (1.0 + self.cost_jitter)

    @classmethod
    def load(cls, path: str | Path | None = None) -> WorldProfile:
        p = Path(path) if path is not None else DEFAULT_PROFILE_PATH
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"world profile {p} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"world profile {p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data, source=f"world profile {p}")

    @classmethod
    def from_dict(cls, data: Any, source: str = "world profile") -> WorldProfile:
        problems: list[str] = []

        def get(obj: Any, path: str, kind: str = "prob") -> Any:
            cur = obj
            for key in path.split("."):
                if not isinstance(cur, Mapping) or key not in cur:
                    problems.append(f"{path} is missing")
                    return 0.0
                cur = cur[key]
            if kind == "raw":
                return cur
            if isinstance(cur, bool) or not isinstance(cur, (int, float)) or not math.isfinite(cur):
                problems.append(f"{path} = {cur!r} is not a number")
                return 0.0
            if kind == "prob" and not 0.0 <= cur <= 1.0:
                problems.append(f"{path} = {cur!r} is outside [0, 1]")
            if kind == "pos" and cur < 0:
                problems.append(f"{path} = {cur!r} must be >= 0")
            return float(cur)

        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a JSON object")
        tiers = get(data, "market.in_market_rate_by_tier", "raw")
        rates: dict[int, float] = {}
        if isinstance(tiers, Mapping):
            for k in tiers:
                rates[int(k)] = get(tiers, str(k))
        hops: dict[HopType, HopProfile] = {}
        raw_hops = get(data, "hops", "raw")
        for hop in HopType:
            base = f"hops.{hop.value}"
            if not isinstance(raw_hops, Mapping) or hop.value not in raw_hops:
                problems.append(f"{base} is missing")
                continue
            h = raw_hops[hop.value]
            by_depth: dict[int, DepthProfile] = {}
            for d in Depth:
                if d < hop.min_depth:
                    continue
                dp = f"by_depth.{int(d)}"
                by_depth[int(d)] = DepthProfile(
                    no_progress=get(h, dp + ".no_progress"),
                    sensitivity=get(h, dp + ".sensitivity"),
                    false_accept=get(h, dp + ".false_accept"),
                )
            hops[hop] = HopProfile(
                cost_usd=get(h, "cost_usd", "pos"),
                latency_median_s=get(h, "latency_median_s", "pos"),
                latency_sigma=get(h, "latency_sigma", "pos"),
                error_rate=get(h, "error_rate"),
                by_depth=by_depth,
            )
        err_types = get(data, "errors.types", "raw")
        error_types: list[tuple[str, float]] = []
        if isinstance(err_types, Mapping):
            error_types = [(str(k), get(err_types, str(k))) for k in err_types]
            if error_types and abs(sum(w for _, w in error_types) - 1.0) > 1e-6:
                problems.append("errors.types shares must add up to 1")
        profile = cls(
            name=str(data.get("name", "unnamed")),
            in_market_rate_by_tier=rates,
            in_market_rate_default=get(data, "market.in_market_rate_default"),
            p_true_in_market_base=get(data, "truth.p_true_in_market_base"),
            p_true_in_market_per_prior=get(data, "truth.p_true_in_market_per_prior", "pos"),
            p_true_out_of_market_base=get(data, "truth.p_true_out_of_market_base"),
            p_true_out_of_market_per_prior=get(data, "truth.p_true_out_of_market_per_prior", "pos"),
            actionable_min_true_categories=int(get(data, "truth.actionable_min_true_categories", "pos")),
            weak_accept_share_if_true=get(data, "decisions.weak_accept_share_if_true"),
            weak_accept_share_if_false=get(data, "decisions.weak_accept_share_if_false"),
            no_progress_false_extra=get(data, "decisions.no_progress_false_extra"),
            repeat_yield=get(data, "decisions.repeat_yield"),
            error_types=tuple(error_types),
            error_cost_fraction=get(data, "errors.error_cost_fraction"),
            timeout_s=get(data, "errors.timeout_s", "pos"),
            cost_jitter=get(data, "cost_jitter"),
            hops=hops,
        )
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems))
        return profile


# --------------------------------------------------------------------------- the world

_HOP_PATHS = {
    HopType.OFFICIAL_SITE: "https://www.{e}.example/news",
    HopType.CAREERS_PAGE: "https://www.{e}.example/careers",
    HopType.PRESS_RELEASE: "https://www.{e}.example/press/{p}",
    HopType.LINKEDIN_JOB: "https://jobs.linkedin.example/{e}/{p}",
    HopType.ANNUAL_REPORT: "https://www.{e}.example/investors/annual-report.pdf",
    HopType.RFP_PORTAL: "https://tenders.example/notices/{e}-{p}",
    HopType.DOCUMENT: "https://www.{e}.example/documents/{p}.pdf",
}


class SimulatedWorld:
    """An EvidenceSource over a seeded world. ``truth`` is for scoring only."""

    def __init__(
        self,
        seed: int,
        templates: Mapping[str, Template],
        entities: Iterable[Entity] = (),
        profile: WorldProfile | None = None,
        *,
        sleep: bool = False,
        time_scale: float = 1.0,
        sleeper: Callable[[float], None] = time.sleep,
    ):
        self.seed = int(seed)
        self.templates = dict(templates)
        self.profile = profile or WorldProfile.load()
        self.sleep = sleep
        #: a hop waits only when latencies are slept for real (engine.discovery.pool.in_flight_for)
        self.waits = bool(sleep)
        self.time_scale = time_scale
        self._sleeper = sleeper
        self._lock = threading.Lock()
        self._entities: dict[str, Entity] = {}
        self.register(entities)

    def register(self, entities: Iterable[Entity]) -> None:
        """Make entities known to :meth:`truth` (evaluate registers the entity it is asked about)."""
        batch = list(entities)  # drawn outside the lock: the iterable may be a slow generator
        with self._lock:
            for e in batch:
                self._entities[e.id] = e

    # ------------------------------------------------------------------ hidden truth

    def in_market(self, entity: Entity) -> bool:
        rate = self.profile.in_market_rate_by_tier.get(entity.tier, self.profile.in_market_rate_default)
        return unit(self.seed, "market", entity.id) < rate

    def pattern_true(self, entity: Entity, pattern: str, prior: float | None = None) -> bool:
        if prior is None:
            prior = self._prior(entity, pattern)
        pr = self.profile
        if self.in_market(entity):
            p = pr.p_true_in_market_base + pr.p_true_in_market_per_prior * prior
        else:
            p = pr.p_true_out_of_market_base + pr.p_true_out_of_market_per_prior * prior
        return unit(self.seed, "truth", entity.id, pattern) < min(1.0, max(0.0, p))

    def true_patterns(self, entity: Entity) -> list[str]:
        template = self.templates.get(entity.template_id)
        if template is None:
            return []
        return [p.name for p in template.patterns if self.pattern_true(entity, p.name, p.weight)]

    def truly_actionable(self, entity: Entity) -> bool:
        template = self.templates.get(entity.template_id)
        if template is None:
            return False
        categories = {p.category for p in template.patterns if self.pattern_true(entity, p.name, p.weight)}
        return len(categories) >= self.profile.actionable_min_true_categories

    def truth(self, entity_id: str) -> bool | None:
        """Ground truth of 'actionable' for a registered entity; None when unknown (not scored)."""
        with self._lock:
            entity = self._entities.get(entity_id)
        if entity is None or entity.template_id not in self.templates:
            return None
        return self.truly_actionable(entity)

    def _pattern(self, entity: Entity, name: str) -> Pattern | None:
        template = self.templates.get(entity.template_id)
        if template is not None:
            for p in template.patterns:
                if p.name == name:
                    return p
        return None

    def _prior(self, entity: Entity, pattern: str, fallback: float = 0.0) -> float:
        """The template's weight of the pattern (a hypothesis's own prior when the template lacks it)."""
        found = self._pattern(entity, pattern)
        return found.weight if found is not None else fallback

    # ------------------------------------------------------------------ evidence

    def max_cost(self, hop_type: HopType, depth: Depth) -> float:
        return self.profile.quote(HopType(hop_type))

    def evaluate(
        self, entity: Entity, hypothesis: Hypothesis, hop_type: HopType, depth: Depth, attempt: int
    ) -> EvidenceResult:
        with self._lock:
            self._entities.setdefault(entity.id, entity)
        hop_type = HopType(hop_type)
        depth = Depth(depth)
        if depth < hop_type.min_depth:
            raise ValueError(f"hop type {hop_type} needs depth >= {hop_type.min_depth.name}, got {depth.name}")
        pr = self.profile
        hp = pr.hops[hop_type]
        dp = hp.by_depth[int(depth)]
        key = (entity.id, hypothesis.id, hop_type.value, attempt)
        draw = lambda stream: unit(self.seed, stream, *key)  # noqa: E731

        base_cost = hp.cost_usd * (1.0 + pr.cost_jitter * (2.0 * draw("cost") - 1.0))
        z = _NORMAL.inv_cdf(min(max(draw("latency"), 1e-12), 1.0 - 1e-12))
        latency = hp.latency_median_s * math.exp(hp.latency_sigma * z)

        if draw("error") < hp.error_rate:
            u = draw("error_type")
            error = pr.error_types[-1][0] if pr.error_types else "error"
            acc = 0.0
            for name, share in pr.error_types:
                acc += share
                if u < acc:
                    error = name
                    break
            if error == "timeout":
                latency = pr.timeout_s
            return self._finish(
                EvidenceResult(
                    decision=Decision.NO_PROGRESS,
                    cost_usd=round(base_cost * pr.error_cost_fraction, 6),
                    latency_s=latency,
                    url=self._url(entity, hypothesis, hop_type),
                    excerpt=f"{hop_type.value} failed: {error}",
                    error=error,
                )
            )

        true = self.pattern_true(entity, hypothesis.pattern, self._prior(entity, hypothesis.pattern, hypothesis.prior))
        np_ = dp.no_progress
        if not true:
            np_ = np_ + (1.0 - np_) * pr.no_progress_false_extra
        np_ = 1.0 - (1.0 - np_) * pr.repeat_yield ** max(0, attempt)
        if draw("progress") < np_:
            decision = Decision.NO_PROGRESS
        else:
            u = draw("decision")
            p_accept = dp.sensitivity if true else dp.false_accept
            weak_share = pr.weak_accept_share_if_true if true else pr.weak_accept_share_if_false
            if u < p_accept:
                decision = Decision.ACCEPT
            elif u < p_accept + (1.0 - p_accept) * weak_share:
                decision = Decision.WEAK_ACCEPT
            else:
                decision = Decision.REJECT
        return self._finish(
            EvidenceResult(
                decision=decision,
                cost_usd=round(base_cost, 6),
                latency_s=latency,
                url=self._url(entity, hypothesis, hop_type),
                excerpt=self._excerpt(entity, hypothesis, hop_type, decision, draw("keyword")),
            )
        )

    def _finish(self, result: EvidenceResult) -> EvidenceResult:
        if self.sleep and result.latency_s > 0:
            self._sleeper(result.latency_s * self.time_scale)
        return result

    @staticmethod
    def _url(entity: Entity, hypothesis: Hypothesis, hop_type: HopType) -> str:
        slug = hypothesis.id.split("::", 1)[-1]
        return _HOP_PATHS[hop_type].format(e=entity.id, p=slug)

    def _excerpt(self, entity: Entity, h: Hypothesis, hop_type: HopType, decision: Decision, u: float) -> str:
        found = self._pattern(entity, h.pattern)
        keywords = found.keywords if found is not None else ()
        kw = keywords[int(u * len(keywords))] if keywords else h.category
        source = hop_type.value.replace("_", " ")
        if decision is Decision.ACCEPT:
            return f'{source}: "{kw}" mentioned in a passage that supports "{h.pattern}" at {entity.name}'
        if decision is Decision.WEAK_ACCEPT:
            return f'{source}: indirect hint ("{kw}") that may relate to "{h.pattern}"'
        if decision is Decision.REJECT:
            return f'{source}: content about "{kw}" that contradicts "{h.pattern}"'
        return f'{source}: nothing relevant to "{h.pattern}" found'
