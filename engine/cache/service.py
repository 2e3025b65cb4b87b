"""The cache of one process, with its warmer, reachable from other processes through the OpsDB.

A hypothesis cache lives in the memory of the process that reads through it
(the console). ``CacheService`` bundles that process's CachedGraph,
HypothesisCache and CacheWarmer, and runs one daemon thread that, every
``poll_s`` seconds:

* syncs the cache with the graph's write feed (``CachedGraph.sync``): what
  other processes wrote since the last sync is invalidated — pages that read
  through the cache also sync at every run (``CacheService.reader()``);
* publishes the cache's statistics (and the warmer's, and the most accessed
  entries) to the OpsDB setting ``cache.stats`` — what `cache stats` prints;
* carries out requests other processes left in the setting ``cache.request``
  (`cache warm`, `cache clear` from the CLI), once each, and publishes
  which request it handled;
* warms every ``cache.warm_interval_s`` seconds (an OpsDB setting, so the
  CLI and the page can change it; 0 turns periodic warming off).

Nothing here touches Streamlit; the console keeps one service per process
(console.services.get_cache_service).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from redis.exceptions import RedisError

from engine.cache.cached_graph import CachedGraph
from engine.cache.lru import HypothesisCache
from engine.cache.warmer import CacheWarmer, WarmerConfig, WarmReport
from engine.core.access import Actor
from engine.core.errors import ConfigError, DiscoveryError, StoreUnavailable, first_line
from engine.core.params import ParameterConfig
from engine.store.access import authorize

STATS_KEY = "cache.stats"
REQUEST_KEY = "cache.request"
INTERVAL_KEY = "cache.warm_interval_s"
DEFAULT_INTERVAL_S = 300.0
ACTIONS = ("warm", "clear")


def warm_interval(ops: Any) -> float:
    """The periodic warming interval in seconds (0 = off); default 300."""
    value = ops.get_setting(INTERVAL_KEY, DEFAULT_INTERVAL_S)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return DEFAULT_INTERVAL_S
    return value if value >= 0 else DEFAULT_INTERVAL_S


def set_warm_interval(ops: Any, seconds: float, *, actor: Actor) -> float:
    """Set the periodic warming interval (0 turns it off; otherwise 5 s .. 1 day); operator; audited."""
    who = authorize(ops, actor, "cache.interval")
    if (
        not isinstance(seconds, (int, float))
        or isinstance(seconds, bool)
        or not (seconds == 0 or 5 <= seconds <= 86_400)
    ):
        raise ConfigError(f"warm interval must be 0 (off) or 5..86400 seconds (got {seconds!r})")
    ops.set_setting(INTERVAL_KEY, float(seconds))
    ops.audit(who, "cache.warm_interval", "cache", {"seconds": float(seconds)})
    return float(seconds)


def request(ops: Any, action: str, *, actor: Actor) -> str:
    """Ask the process that owns the cache to warm or clear it (operator); returns the request id (audited)."""
    who = authorize(ops, actor, "cache.warm" if action == "warm" else "cache.clear")
    if action not in ACTIONS:
        raise ConfigError(f"unknown cache action {action!r}: use one of {', '.join(ACTIONS)}")
    rid = uuid.uuid4().hex[:12]
    ops.set_setting(REQUEST_KEY, {"id": rid, "action": action, "actor": str(who), "at": time.time()})
    ops.audit(who, f"cache.{action}", "cache", {"request": rid})
    return rid


def published_stats(ops: Any) -> dict | None:
    """The last statistics a cache-owning process published (None if none ever did)."""
    value = ops.get_setting(STATS_KEY)
    return value if isinstance(value, dict) else None


def warm_now(service: CacheService, ops: Any, *, actor: Actor) -> WarmReport:
    """Warm ``service``'s cache once now, on behalf of ``actor`` (operator; the round's trigger); audited.
    A store that does not answer is a StoreUnavailable naming the store's error."""
    who = authorize(ops, actor, "cache.warm")
    try:
        report = service.warmer.warm_once(str(who))
    except DiscoveryError:
        raise
    except (RedisError, OSError) as exc:  # what a FalkorDB or socket failure raises through the warmer
        raise StoreUnavailable(f"the store did not answer ({exc})") from exc
    ops.audit(who, "cache.warm", "cache", {"planned": report.planned, "loaded": report.loaded})
    return report


def clear(service: CacheService, ops: Any, *, actor: Actor) -> int:
    """Drop every entry of ``service``'s cache on behalf of ``actor`` (operator); returns how many; audited."""
    who = authorize(ops, actor, "cache.clear")
    n = service.cached.clear()
    ops.audit(who, "cache.clear", "cache", {"entries": n})
    return n


class CacheService:
    """One process's CachedGraph + HypothesisCache + CacheWarmer, and the thread that serves them."""

    def __init__(
        self,
        graph: Any,
        ops: Any,
        *,
        params: ParameterConfig | None = None,
        max_bytes: int = 256 * 1024 * 1024,
        warmer_config: WarmerConfig = WarmerConfig(),
        poll_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ):
        params = params or ParameterConfig()
        self.cache = HypothesisCache.from_params(params, max_bytes=max_bytes)
        self.cached = CachedGraph(graph, self.cache)
        self.ops = ops
        self.warmer = CacheWarmer(self.cached, config=warmer_config, ops=ops, clock=clock)
        self.poll_s = poll_s
        self._clock = clock
        self._handled: str | None = None
        self._last_periodic = clock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_error: str | None = None
        self.started_at = clock()
        current = ops.get_setting(REQUEST_KEY)
        if isinstance(current, dict):
            self._handled = current.get("id")  # a request older than this process is not ours to replay

    # ------------------------------------------------------------------ reads

    def reader(self) -> CachedGraph:
        """The CachedGraph, synced with the graph's write feed first (one point read when nothing
        changed): what a page run reads through it is never older than the writes committed
        before this call, whichever process made them. Store errors propagate (DiscoveryError)."""
        self.cached.sync()
        return self.cached

    # ------------------------------------------------------------------ one tick (also called by tests)

    def tick(self) -> None:
        """Sync with other writers, handle a pending request, warm if the interval has passed, publish."""
        try:
            self.cached.sync()  # before warming: a warm round must not keep what others changed
            req = self.ops.get_setting(REQUEST_KEY)
            if isinstance(req, dict) and req.get("id") != self._handled:
                self._handled = req.get("id")
                if req.get("action") == "warm":
                    self.warmer.warm_once(f"request:{req.get('actor', '?')}")
                elif req.get("action") == "clear":
                    self.cached.clear()
            interval = warm_interval(self.ops)
            if interval > 0 and self._clock() - self._last_periodic >= interval:
                self._last_periodic = self._clock()
                if interval != self.warmer.config.interval_s:
                    self.warmer.config = replace(self.warmer.config, interval_s=interval)
                self.warmer.warm_once("periodic")
            self.last_error = None
        except (DiscoveryError, OSError, ConnectionError) as exc:
            self.last_error = first_line(exc)
        except Exception as exc:  # noqa: BLE001 - a store error must not kill the service thread
            self.last_error = f"{type(exc).__name__}: {exc}"
        self.publish()

    def snapshot(self, top: int = 10) -> dict[str, Any]:
        st = self.cache.stats()
        w = self.warmer.stats()
        return {
            "pid": os.getpid(),
            "at": self._clock(),
            "started_at": self.started_at,
            "cache": st.to_dict(),
            "most_accessed": [
                {
                    "key": "/".join(map(str, a.key)) if isinstance(a.key, tuple) else str(a.key),
                    "entity_id": a.entity_id,
                    "hits": a.hits,
                    "bytes": a.bytes,
                }
                for a in self.cache.most_accessed(top)
            ],  # fmt: skip
            "warmer": {
                "rounds": w.rounds,
                "failed_rounds": w.failed_rounds,
                "entities_planned": w.entities_planned,
                "entries_loaded": w.entries_loaded,
                "seconds": w.seconds,
                "last": None if w.last is None else {**w.last.__dict__},
                "interval_s": warm_interval(self.ops),
            },  # fmt: skip
            "sync": self.cached.sync_stats.to_dict(),
            "handled_request": self._handled,
            "error": self.last_error,
        }

    def publish(self) -> None:
        try:
            self.ops.set_setting(STATS_KEY, self.snapshot())
        except Exception:  # noqa: BLE001 - publishing is best effort
            pass

    # ------------------------------------------------------------------ thread

    def start(self) -> CacheService:
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop = stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(stop,), name="cache-service", daemon=True)
        self._thread.start()
        return self

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.tick()
            stop.wait(self.poll_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


__all__ = [
    "CacheService",
    "clear",
    "published_stats",
    "request",
    "set_warm_interval",
    "warm_interval",
    "warm_now",
]
