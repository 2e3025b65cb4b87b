"""Cache warming: load what operators are about to read before they ask for it.

Three signals, each scored per entity and summed (weights in WarmerConfig):

* **recently accessed** — the cache's own access log: how often each entity
  was asked for within the log window, and how recently (most recent first);
* **cluster hotspots** — recent discovery activity: evidence nodes written in
  the last ``activity_window_s`` (rolled-back ones excluded) and, when an
  OpsDB is given, metric events of the same window; a cluster's heat is its
  share of that activity, and every entity of a hot cluster inherits it
  (cluster-mates are read next: dampening, the cluster table);
* **template popularity** — the share of accesses and activity that fell on
  each template; every entity of a popular template gets a smaller share.

``plan()`` ranks entities by that score and keeps the top ``max_entities``;
``warm_once()`` loads the ones not cached yet through
``CachedGraph.warm`` (one read of entities and one of hypotheses, guarded so
a write during the load wins). ``start()`` runs ``warm_once`` every
``interval_s`` in a daemon thread of the process that owns the cache (the
console) until ``stop()``; a failed round is counted and the thread carries
on. ``stats()`` reports rounds, entities planned and loaded, time spent,
the last error and per-signal counts; each round is also recorded in the
``cache_warm_runs`` table when an OpsDB is given.

``replay_trace`` measures the impact: the same access trace replayed on a
cache warmed from an earlier history and on a cold one, hit rates compared.
``zipf_trace`` builds a deterministic Zipf(s) trace over entity ids.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import accumulate
from typing import Any

from redis.exceptions import RedisError

from engine.cache.cached_graph import CachedGraph, hyps_key
from engine.cache.lru import HypothesisCache
from engine.core.errors import ConfigError, DiscoveryError, first_line
from engine.store.batch import Q_ACTIVITY, Q_ENTITY_INDEX

RUNS_TABLE = "cache_warm_runs"


SIGNALS = ("recent", "hotspot", "template")


@dataclass(frozen=True)
class WarmerConfig:
    """What to warm and how often. Validated on construction (ConfigError names the field)."""

    max_entities: int = 1000  # entities kept warm at most per round
    interval_s: float = 60.0  # between background rounds
    activity_window_s: float = 3600.0  # "recent" discovery activity
    recent_limit: int = 2000  # distinct recently accessed entities considered
    weight_recent: float = 1.0
    weight_hotspot: float = 0.5
    weight_template: float = 0.1

    def __post_init__(self) -> None:
        checks = (
            ("max_entities", self.max_entities, 1, 10_000_000, True),
            ("recent_limit", self.recent_limit, 0, 10_000_000, True),
            ("interval_s", self.interval_s, 0.1, 86_400.0, False),
            ("activity_window_s", self.activity_window_s, 0.0, 365 * 86_400.0, False),
            ("weight_recent", self.weight_recent, 0.0, 1000.0, False),
            ("weight_hotspot", self.weight_hotspot, 0.0, 1000.0, False),
            ("weight_template", self.weight_template, 0.0, 1000.0, False),
        )
        for name, value, lo, hi, whole in checks:
            ok = isinstance(value, int) if whole else isinstance(value, (int, float))
            if not ok or isinstance(value, bool) or not math.isfinite(value) or not lo <= value <= hi:
                kind = "a whole number" if whole else "a number"
                raise ConfigError(f"warmer {name} must be {kind} in [{lo}, {hi}] (got {value!r})")


@dataclass(frozen=True)
class WarmPlan:
    """Entities to keep warm, best first, with the score and the signals behind each."""

    entity_ids: tuple[str, ...]
    scores: dict[str, float]
    signal_counts: dict[str, int]  # entities each signal contributed to (before the cut)
    candidates: int  # entities with a positive score


@dataclass(frozen=True)
class WarmReport:
    """One warming round."""

    at: float
    trigger: str
    planned: int
    loaded: int  # entries added to the cache
    already_cached: int
    elapsed_s: float
    signal_counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class WarmerStats:
    rounds: int
    failed_rounds: int
    entities_planned: int
    entries_loaded: int
    seconds: float
    last: WarmReport | None
    running: bool
    interval_s: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d


# --------------------------------------------------------------------------- signals (pure)


def entity_of_key(key: Hashable) -> str | None:
    """The entity a CachedGraph key belongs to (None for templates and foreign keys)."""
    if isinstance(key, tuple) and len(key) == 2 and key[0] in ("hyps", "entity") and isinstance(key[1], str):
        return key[1]
    return None


def score_entities(
    access_counts: Counter,
    recent_order: Sequence[str],
    activity: dict[str, int],
    index: dict[str, tuple[str, str]],
    config: WarmerConfig,
) -> WarmPlan:
    """Pure: rank entities by recency/frequency of access, cluster heat and template popularity.

    ``access_counts`` entity -> accesses in the log window; ``recent_order``
    entity ids most recent first; ``activity`` entity -> recent discovery
    events; ``index`` entity -> (cluster, template id) for every entity.
    """
    scores: dict[str, float] = defaultdict(float)
    counts = {s: 0 for s in SIGNALS}
    known = index.keys()

    # recently accessed: frequency on a log scale (normalised to the busiest entity: access counts
    # are heavy-tailed, and an entity read 3 times should not count 300 times less than one read
    # 1,000 times) plus a smaller recency bonus that breaks ties between equally frequent ones
    top = max(access_counts.values(), default=0)
    log_top = math.log1p(top) if top else 1.0
    recent = [e for e in recent_order if e in known][: config.recent_limit]
    n_recent = len(recent)
    for rank, eid in enumerate(recent):
        freq = math.log1p(access_counts.get(eid, 0)) / log_top
        recency = 1.0 - rank / max(n_recent, 1)
        scores[eid] += config.weight_recent * (freq + 0.2 * recency)
    counts["recent"] = n_recent

    # cluster hotspots: a cluster's share of the recent activity, inherited by all its entities
    cluster_heat: Counter = Counter()
    template_use: Counter = Counter()
    for eid, n in activity.items():
        if eid in index:
            cluster, template = index[eid]
            cluster_heat[cluster] += n
            template_use[template] += n
    for eid, n in access_counts.items():
        if eid in index:
            template_use[index[eid][1]] += n
    hottest = max(cluster_heat.values(), default=0)
    popular = max(template_use.values(), default=0)
    for eid, (cluster, template) in index.items():
        heat = cluster_heat.get(cluster, 0)
        if heat:
            own = activity.get(eid, 0)
            scores[eid] += config.weight_hotspot * (heat / hottest + (own / hottest if own else 0.0))
            counts["hotspot"] += 1
        use = template_use.get(template, 0)
        if use:
            scores[eid] += config.weight_template * use / popular
            counts["template"] += 1

    ranked = sorted((e for e, s in scores.items() if s > 0), key=lambda e: (-scores[e], e))
    chosen = tuple(ranked[: config.max_entities])
    return WarmPlan(chosen, {e: scores[e] for e in chosen}, counts, len(ranked))


# --------------------------------------------------------------------------- the warmer


class CacheWarmer:
    """Warms ``cached`` (a CachedGraph) from its cache's access log and the store's recent activity."""

    def __init__(
        self,
        cached: CachedGraph,
        *,
        config: WarmerConfig = WarmerConfig(),
        ops: Any = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ):
        self.cached = cached
        self.config = config
        self.ops = ops
        self._clock = clock
        self._timer = timer
        self._lock = threading.Lock()
        self._round_lock = threading.Lock()  # one round at a time (button and background thread)
        self._rounds = self._failed = self._planned = self._loaded = 0
        self._seconds = 0.0
        self._last: WarmReport | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ signals from the stores

    def entity_index(self) -> dict[str, tuple[str, str]]:
        rows = self.cached.store.graph.ro_query(Q_ENTITY_INDEX).result_set
        return {eid: (cluster, template) for eid, cluster, template in rows}

    def recent_activity(self, since: float) -> dict[str, int]:
        """Evidence per entity since ``since`` plus, with an OpsDB, metric events (discovery runs) since then."""
        activity: Counter = Counter()
        try:
            rows = self.cached.store.graph.ro_query(Q_ACTIVITY, {"since": float(since)}).result_set
        except RedisError as exc:
            if "does not exist" in str(exc).lower() or "empty key" in str(exc).lower():
                rows = []  # no graph yet
            else:
                raise
        for eid, n in rows:
            activity[eid] += int(n)
        if self.ops is not None:
            try:
                with self.ops.connect() as db:
                    if "metric_events" in db.table_names():
                        for eid, n in db.execute(
                            "SELECT entity_id, count(*) FROM metric_events WHERE at >= ? GROUP BY entity_id",
                            [float(since)],
                        ).fetchall():
                            activity[eid] += int(n)
            except Exception as exc:  # noqa: BLE001 - the ops DB is an extra signal, never a reason to fail
                raise DiscoveryError(f"cannot read recent discovery runs from the ops database: {exc}") from None
        return dict(activity)

    def plan(self) -> WarmPlan:
        cache: HypothesisCache = self.cached.cache
        counts: Counter = Counter()
        for key, n in cache.access_counts().items():
            eid = entity_of_key(key)
            if eid is not None:
                counts[eid] += n
        recent = list(dict.fromkeys(e for e in (entity_of_key(k) for k in cache.recent_keys()) if e is not None))
        since = self._clock() - self.config.activity_window_s
        return score_entities(counts, recent, self.recent_activity(since), self.entity_index(), self.config)

    # ------------------------------------------------------------------ rounds

    def warm_once(self, trigger: str = "manual") -> WarmReport:
        """Plan and load one round; errors of the store become a failed report (and are re-raised)."""
        with self._round_lock:
            started = self._timer()
            at = self._clock()
            try:
                plan = self.plan()
                cached = sum(1 for e in plan.entity_ids if hyps_key(e) in self.cached.cache)
                loaded = self.cached.warm(plan.entity_ids)
                report = WarmReport(at, trigger, len(plan.entity_ids), loaded, cached, self._timer() - started,
                                    plan.signal_counts)  # fmt: skip
            except (DiscoveryError, RedisError, OSError) as exc:
                report = WarmReport(at, trigger, 0, 0, 0, self._timer() - started, {}, first_line(exc))
                self._record(report)
                raise
            self._record(report)
            return report

    def _record(self, report: WarmReport) -> None:
        with self._lock:
            self._rounds += 1
            self._failed += report.error is not None
            self._planned += report.planned
            self._loaded += report.loaded
            self._seconds += report.elapsed_s
            self._last = report
        if self.ops is not None:
            try:
                record_warm_run(self.ops, report)
            except Exception:  # noqa: BLE001 - bookkeeping must not fail the round
                pass

    # ------------------------------------------------------------------ background

    def start(self, interval_s: float | None = None) -> None:
        """Warm every ``interval_s`` (default: the config's) in a daemon thread; restarts with a new interval."""
        if interval_s is not None:
            self.config = replace(self.config, interval_s=interval_s)  # validated by WarmerConfig
        self.stop()
        self._stop = stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(stop,), name="cache-warmer", daemon=True)
        self._thread.start()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.warm_once("periodic")
            except Exception:  # noqa: BLE001 - counted in stats; the next round tries again
                pass
            stop.wait(self.config.interval_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        thread = self._thread
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> WarmerStats:
        with self._lock:
            return WarmerStats(self._rounds, self._failed, self._planned, self._loaded, self._seconds, self._last,
                               self.running, self.config.interval_s)  # fmt: skip


# --------------------------------------------------------------------------- warm-run history (OpsDB)


def record_warm_run(ops: Any, report: WarmReport) -> None:
    with ops.connect() as db:
        db[RUNS_TABLE].insert({
            "at": report.at, "pid": os.getpid(), "trigger": report.trigger, "planned": report.planned,
            "loaded": report.loaded, "already_cached": report.already_cached, "elapsed_s": report.elapsed_s,
            "signals": json.dumps(report.signal_counts, sort_keys=True), "error": report.error,
        })  # fmt: skip


def list_warm_runs(ops: Any, limit: int = 50) -> list[dict[str, Any]]:
    with ops.connect() as db:
        if RUNS_TABLE not in db.table_names():
            return []
        rows = db.execute(f"SELECT * FROM {RUNS_TABLE} ORDER BY at DESC, id DESC LIMIT ?", [int(limit)]).fetchall()
        cols = [c.name for c in db[RUNS_TABLE].columns]
    return [dict(zip(cols, r)) for r in rows]


# --------------------------------------------------------------------------- measuring the impact


def zipf_trace(keys: Sequence[str], n: int, *, s: float = 1.1, seed: int = 0) -> list[str]:
    """``n`` accesses drawn from Zipf(s) over ``keys``; which key gets which rank is shuffled by ``seed``."""
    if not keys:
        raise ConfigError("a Zipf trace needs at least one key")
    if not (isinstance(s, (int, float)) and s > 0):
        raise ConfigError(f"Zipf exponent s must be > 0 (got {s!r})")
    rng = random.Random(seed)
    ranked = list(keys)
    rng.shuffle(ranked)
    cdf = list(accumulate(1.0 / (k**s) for k in range(1, len(ranked) + 1)))
    total = cdf[-1]
    return [ranked[min(bisect_left(cdf, rng.random() * total), len(ranked) - 1)] for _ in range(n)]


@dataclass(frozen=True)
class ReplayResult:
    accesses: int
    hits: int
    warmed_entities: int
    warm_s: float
    warmed_ids: tuple[str, ...] = ()

    @property
    def hit_rate(self) -> float:
        return self.hits / self.accesses if self.accesses else 0.0


def replay_trace(
    cached: CachedGraph,
    trace: Iterable[str],
    *,
    history: Iterable[str] = (),
    warmer: CacheWarmer | None = None,
) -> ReplayResult:
    """Hit rate of ``trace`` (entity ids read with get_hypotheses) on ``cached``'s cache.

    The cache and its access log are cleared, ``history`` is recorded as
    accesses in the log (what operators read earlier: the warmer's signal;
    nothing is cached by it), so the trace starts from an empty cache; with a
    ``warmer`` one round runs first.
    Counters are reset before the trace, so the hit rate is the trace's alone.
    """
    cache = cached.cache
    cache.invalidate_all()
    cache.clear_access_log()
    for eid in history:
        cache.get(hyps_key(eid))  # an access the log remembers (a miss: nothing is cached)
    warmed: tuple[str, ...] = ()
    warm_s = 0.0
    if warmer is not None:
        report = warmer.warm_once("replay")
        warm_s = report.elapsed_s
        warmed = tuple(e for e in dict.fromkeys(entity_of_key(k) for k in cache.keys()) if e is not None)  # noqa: SIM118 - HypothesisCache has keys() but is not iterable
    cache.reset_stats()
    for eid in trace:
        cached.get_hypotheses(eid)
    st = cache.stats()
    return ReplayResult(st.requests, st.hits, len(warmed), warm_s, warmed)


__all__ = [
    "CacheWarmer",
    "ReplayResult",
    "WarmPlan",
    "WarmReport",
    "WarmerConfig",
    "WarmerStats",
    "entity_of_key",
    "list_warm_runs",
    "record_warm_run",
    "replay_trace",
    "score_entities",
    "zipf_trace",
]
