"""Hypothesis cache: LRU + TTL with a memory limit in bytes, statistics, and single-flight loads.

Built on ``cachetools.TTLCache`` (LRU order, per-item time to live, injected
timer). What it adds:

* **A byte limit whose bookkeeping cannot drift.** The size of an entry is
  estimated once, when it is inserted, and stored with the entry; the byte
  counter subtracts exactly that number when the entry leaves (eviction,
  expiry, invalidation or replacement), whatever happened to the value since
  (estimating again on removal would let the total drift).
* **Statistics**: hits, misses, evictions, expirations, invalidations, loads,
  hit rate, bytes, items; the most-accessed entries; a bounded log of recent
  accesses the warmer reads.
* **Invalidation** of one key, of every entry of one entity, or of everything,
  and a purge of expired entries.
* **Single-flight loading** (``get_or_load`` and the ``@cached`` decorator):
  when many threads miss the same key at once, one of them runs the loader and
  the others wait for its result (per-key in-flight futures). A load that
  raced with an invalidation of its key does not put its (possibly stale)
  value into the cache.

One ``threading.Lock`` guards every structure; loaders run outside it.
Values must be treated as immutable (frozen dataclasses, tuples): the cache
hands out the object it holds.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import heapq
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import cachetools
from cachetools import keys as cachetools_keys

from engine.core.errors import ConfigError

T = TypeVar("T")

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_TTL_S = 300.0
DEFAULT_ACCESS_LOG = 20_000

#: bytes charged per entry on top of its value: the key, the entry object and
#: the dict/link slots cachetools keeps per key (measured order of magnitude)
ENTRY_OVERHEAD = 240

_MISSING = object()


# --------------------------------------------------------------------------- sizes


def estimate_size(obj: Any) -> int:
    """Deep size estimate in bytes of a plain value (dataclasses, tuples, lists, dicts, scalars).

    Objects reached twice are counted once; singletons (None, bools, enum
    members) cost nothing because every entry shares them.
    """
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if o is None or o is True or o is False or isinstance(o, enum.Enum):
            continue
        oid = id(o)
        if oid in seen:
            continue
        seen.add(oid)
        total += sys.getsizeof(o)
        if isinstance(o, (str, bytes, int, float)):
            continue
        if isinstance(o, Mapping):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (tuple, list, set, frozenset)):
            stack.extend(o)
        elif dataclasses.is_dataclass(o):
            stack.extend(getattr(o, f.name) for f in dataclasses.fields(o))
        elif hasattr(o, "__dict__"):
            stack.append(vars(o))
    return total


# --------------------------------------------------------------------------- stats


@dataclass(frozen=True)
class CacheStats:
    """A consistent snapshot of the cache counters (taken under the lock)."""

    hits: int
    misses: int
    evictions: int  # removed to make room (LRU), by bytes or by item count
    expirations: int  # removed because their TTL ran out
    invalidations: int  # removed because a write or an operator said so
    loads: int  # values loaded by get_or_load / @cached
    load_failures: int
    coalesced: int  # misses that waited for another caller's load instead of loading again
    items: int
    bytes: int
    max_bytes: int
    max_items: int | None
    ttl_s: float

    @property
    def requests(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        """Hits over requests; 0.0 before the first request."""
        return self.hits / self.requests if self.requests else 0.0

    @property
    def fill_ratio(self) -> float:
        return self.bytes / self.max_bytes if self.max_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hit_rate"] = self.hit_rate
        d["requests"] = self.requests
        return d


@dataclass(frozen=True)
class AccessCount:
    key: Hashable
    hits: int
    entity_id: str | None
    bytes: int


# --------------------------------------------------------------------------- internals


class _Entry:
    """A cached value with the size charged for it (computed once) and its access count."""

    __slots__ = ("value", "size", "entity_id", "hits")

    def __init__(self, value: Any, size: int, entity_id: str | None):
        self.value = value
        self.size = size
        self.entity_id = entity_id
        self.hits = 0


def _entry_size(entry: _Entry) -> int:
    return entry.size


class _TTLStore(cachetools.TTLCache):
    """TTLCache that reports what it drops (so the owner counts it and keeps its entity index right)."""

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float], owner: HypothesisCache):
        super().__init__(maxsize, ttl, timer=timer, getsizeof=_entry_size)
        self._owner = owner

    def popitem(self):
        # cachetools calls this to make room; it expires first (reported by expire()).
        key, entry = super().popitem()
        self._owner._dropped(key, entry)
        self._owner._evictions += 1
        return key, entry

    def expire(self, time=None):
        expired = super().expire(time)
        for key, entry in expired:
            self._owner._dropped(key, entry)
        self._owner._expirations += len(expired)
        return expired


# --------------------------------------------------------------------------- the cache


class HypothesisCache:
    """Thread-safe LRU+TTL cache bounded in bytes (and optionally in items).

    ``timer`` is any monotonic clock in seconds (tests pass a fake one and tick it).
    ``sizeof`` estimates an entry's bytes once, on insert; ``ENTRY_OVERHEAD`` is added.
    ``entity_id`` given on insert groups entries for ``invalidate_entity``.
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_items: int | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        timer: Callable[[], float] = time.monotonic,
        sizeof: Callable[[Any], int] = estimate_size,
        access_log: int = DEFAULT_ACCESS_LOG,
    ):
        if max_bytes <= 0:
            raise ConfigError(f"cache max_bytes must be > 0 (got {max_bytes}); e.g. 268435456 for 256 MiB")
        if max_items is not None and max_items <= 0:
            raise ConfigError(f"cache max_items must be > 0 or unset (got {max_items})")
        if ttl_s < 0:
            # 0 is allowed: every entry is stale at once, i.e. caching is off
            raise ConfigError(f"cache ttl must be >= 0 seconds (got {ttl_s}); 0 turns caching off")
        self.max_bytes = int(max_bytes)
        self.max_items = None if max_items is None else int(max_items)
        self.ttl_s = float(ttl_s)
        self._timer = timer
        self._sizeof = sizeof
        self._lock = threading.Lock()
        self._data = _TTLStore(self.max_bytes, self.ttl_s, timer, self)
        self._by_entity: dict[str, set[Hashable]] = {}
        self._access_log: collections.deque[Hashable] = collections.deque(maxlen=access_log)
        self._hits = self._misses = 0
        self._evictions = self._expirations = self._invalidations = 0
        self._loads = self._load_failures = self._coalesced = 0
        # single-flight loads and the invalidations that raced with them
        self._inflight: dict[Hashable, Future] = {}
        self._loads_running = 0
        self._seq = 0
        self._inval_key: dict[Hashable, int] = {}
        self._inval_entity: dict[str, int] = {}
        self._inval_all = 0

    @classmethod
    def from_params(cls, params: Any, *, max_bytes: int = DEFAULT_MAX_BYTES, **kwargs: Any) -> HypothesisCache:
        """A cache sized by a ParameterConfig (``cache_ttl_s``, ``cache_max_items``)."""
        return cls(
            max_bytes=max_bytes, max_items=int(params.cache_max_items), ttl_s=float(params.cache_ttl_s), **kwargs
        )

    # ------------------------------------------------------------------ reads

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The cached value, or ``default`` (counted as a miss) if absent or expired."""
        with self._lock:
            self._access_log.append(key)
            try:
                entry = self._data[key]
            except KeyError:
                self._misses += 1
                return default
            entry.hits += 1
            self._hits += 1
            return entry.value

    def get_many(self, keys: Iterable[Hashable]) -> dict[Hashable, Any]:
        """The cached values of those keys that are present (absent ones count as misses)."""
        found: dict[Hashable, Any] = {}
        with self._lock:
            data = self._data
            log = self._access_log
            for key in keys:
                log.append(key)
                try:
                    entry = data[key]
                except KeyError:
                    self._misses += 1
                    continue
                entry.hits += 1
                self._hits += 1
                found[key] = entry.value
        return found

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """Like get, but touches neither the statistics nor the LRU order."""
        with self._lock:
            if key not in self._data:  # TTLCache.__contains__ checks expiry without reordering
                return default
            return cachetools.Cache.__getitem__(self._data, key).value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    # ------------------------------------------------------------------ writes

    def put(self, key: Hashable, value: Any, *, entity_id: str | None = None) -> bool:
        """Insert or replace. False (and nothing cached) when the value alone exceeds max_bytes.

        A put is newer than any load in flight for the key: such a load will not overwrite it.
        """
        size = self._sizeof(value) + ENTRY_OVERHEAD
        with self._lock:
            self._mark_invalidated(key=key)
            return self._put_locked(key, value, entity_id, size)

    def put_many(self, items: Iterable[tuple[Hashable, Any, str | None]]) -> int:
        """Insert (key, value, entity_id) triples; returns how many were cached."""
        sized = [(k, v, e, self._sizeof(v) + ENTRY_OVERHEAD) for k, v, e in items]
        stored = 0
        with self._lock:
            for k, v, e, size in sized:
                self._mark_invalidated(key=k)
                stored += self._put_locked(k, v, e, size)
        return stored

    def replace_if_present(self, key: Hashable, value: Any) -> bool:
        """Replace a live entry's value (write-through of a value we already hold); else do nothing."""
        size = self._sizeof(value) + ENTRY_OVERHEAD
        with self._lock:
            self._mark_invalidated(key=key)
            if key not in self._data:
                return False
            entity_id = cachetools.Cache.__getitem__(self._data, key).entity_id
            return self._put_locked(key, value, entity_id, size)

    def invalidate(self, key: Hashable) -> bool:
        """Drop one key. True if a live entry was dropped."""
        with self._lock:
            self._mark_invalidated(key=key)
            return self._remove_locked(key)

    def invalidate_entity(self, entity_id: str) -> int:
        """Drop every entry inserted with this entity id; returns how many."""
        with self._lock:
            self._mark_invalidated(entity_id=entity_id)
            keys = list(self._by_entity.get(entity_id, ()))
            return sum(self._remove_locked(k) for k in keys)

    def invalidate_entities(self, entity_ids: Iterable[str]) -> int:
        with self._lock:
            n = 0
            for entity_id in entity_ids:
                self._mark_invalidated(entity_id=entity_id)
                n += sum(self._remove_locked(k) for k in list(self._by_entity.get(entity_id, ())))
            return n

    def invalidate_all(self) -> int:
        """Drop everything (statistics are kept); returns how many live entries were dropped."""
        with self._lock:
            self._mark_invalidated(everything=True)
            self._data.expire()
            n = cachetools.Cache.__len__(self._data)
            self._data.clear()
            self._by_entity.clear()
            self._invalidations += n
            return n

    def purge_expired(self) -> int:
        """Remove expired entries now (they are otherwise removed lazily); returns how many."""
        with self._lock:
            return len(self._data.expire())

    # ------------------------------------------------------------------ single-flight loads

    def get_or_load(self, key: Hashable, loader: Callable[[], T], *, entity_id: str | None = None) -> T:
        """The cached value; on a miss, load it once however many threads ask at the same time.

        The loader runs outside the lock. If it raises, every caller waiting on
        it gets the same exception and nothing is cached. If the key (or its
        entity, or everything) is invalidated while the load runs, the loaded
        value is returned to the callers but not cached: it may predate the write.
        """
        with self._lock:
            self._access_log.append(key)
            try:
                entry = self._data[key]
            except KeyError:
                pass
            else:
                entry.hits += 1
                self._hits += 1
                return entry.value
            self._misses += 1
            future = self._inflight.get(key)
            if future is not None:
                self._coalesced += 1
                owner = False
            else:
                future = self._inflight[key] = Future()
                token = self._begin_load()
                owner = True
        if not owner:
            return future.result()
        try:
            value = loader()
        except BaseException as exc:
            with self._lock:
                del self._inflight[key]
                self._load_failures += 1
                self._end_load()
            future.set_exception(exc)
            raise
        size = self._sizeof(value) + ENTRY_OVERHEAD
        with self._lock:
            del self._inflight[key]
            self._loads += 1
            if not self._stale_since(token, key, entity_id):
                self._put_locked(key, value, entity_id, size)
            self._end_load()
        future.set_result(value)
        return value

    def load_guard(self) -> LoadGuard:
        """For bulk loaders (warming, get_many): take a token before reading the store,
        then ``guard.put_many(...)`` caches only what no write invalidated meanwhile."""
        with self._lock:
            token = self._begin_load()
        return LoadGuard(self, token)

    # ------------------------------------------------------------------ introspection

    def stats(self) -> CacheStats:
        with self._lock:
            self._data.expire()
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                expirations=self._expirations,
                invalidations=self._invalidations,
                loads=self._loads,
                load_failures=self._load_failures,
                coalesced=self._coalesced,
                items=cachetools.Cache.__len__(self._data),
                # Cache's own property, not TTLCache's (that one expires again); looked up in the class dict
                # because mypy types a property read off its class as the bare getter function
                bytes=vars(cachetools.Cache)["currsize"].fget(self._data),
                max_bytes=self.max_bytes,
                max_items=self.max_items,
                ttl_s=self.ttl_s,
            )

    def reset_stats(self) -> None:
        """Zero the counters (not the contents nor the per-entry access counts)."""
        with self._lock:
            self._hits = self._misses = 0
            self._evictions = self._expirations = self._invalidations = 0
            self._loads = self._load_failures = self._coalesced = 0

    def clear_access_log(self) -> None:
        """Forget which keys were asked for (the warmer's signal); contents and counters stay."""
        with self._lock:
            self._access_log.clear()

    def most_accessed(self, n: int = 10) -> list[AccessCount]:
        """The n live entries with the most hits since they were inserted, most first."""
        with self._lock:
            self._data.expire()
            items = [(k, cachetools.Cache.__getitem__(self._data, k)) for k in cachetools.Cache.__iter__(self._data)]
        top = heapq.nlargest(n, items, key=lambda kv: kv[1].hits)
        return [AccessCount(k, e.hits, e.entity_id, e.size) for k, e in top]

    def recent_keys(self, limit: int | None = None) -> list[Hashable]:
        """Keys asked for (hit or miss), most recent first, each once."""
        with self._lock:
            log = list(self._access_log)
        out: list[Hashable] = []
        seen: set[Hashable] = set()
        for key in reversed(log):
            if key not in seen:
                seen.add(key)
                out.append(key)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def access_counts(self) -> collections.Counter:
        """How often each key was asked for within the access log window."""
        with self._lock:
            return collections.Counter(self._access_log)

    def keys(self) -> list[Hashable]:
        with self._lock:
            self._data.expire()
            return list(cachetools.Cache.__iter__(self._data))

    def entity_keys(self, entity_id: str) -> set[Hashable]:
        with self._lock:
            return set(self._by_entity.get(entity_id, ()))

    # ------------------------------------------------------------------ internals (lock held)

    def _put_locked(self, key: Hashable, value: Any, entity_id: str | None, size: int) -> bool:
        if size > self.max_bytes:
            # too big to ever fit: make sure no older value of the key survives
            self._remove_locked(key, count=False)
            return False
        old_entity = None
        if cachetools.Cache.__contains__(self._data, key):
            old_entity = cachetools.Cache.__getitem__(self._data, key).entity_id
        self._data[key] = _Entry(value, size, entity_id)  # may evict (LRU) and expire
        if old_entity is not None and old_entity != entity_id:
            self._unindex(key, old_entity)
        if entity_id is not None:
            self._by_entity.setdefault(entity_id, set()).add(key)
        if self.max_items is not None:
            while cachetools.Cache.__len__(self._data) > self.max_items:
                self._data.popitem()
        return True

    def _remove_locked(self, key: Hashable, *, count: bool = True) -> bool:
        data = self._data
        if not cachetools.Cache.__contains__(data, key):
            return False
        live = key in data  # False if present but already expired
        entry = cachetools.Cache.__getitem__(data, key)
        try:
            del data[key]
        except KeyError:  # TTLCache raises after removing an expired entry
            pass
        self._unindex(key, entry.entity_id)
        if live and count:
            self._invalidations += 1
        elif not live:
            self._expirations += 1
        return live

    def _dropped(self, key: Hashable, entry: _Entry) -> None:
        self._unindex(key, entry.entity_id)

    def _unindex(self, key: Hashable, entity_id: str | None) -> None:
        if entity_id is None:
            return
        keys = self._by_entity.get(entity_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_entity[entity_id]

    def _begin_load(self) -> int:
        self._loads_running += 1
        return self._seq

    def _end_load(self) -> None:
        self._loads_running -= 1
        if self._loads_running == 0:
            # no load can be stale any more: forget the invalidation marks
            self._inval_key.clear()
            self._inval_entity.clear()

    def _mark_invalidated(
        self, *, key: Hashable = _MISSING, entity_id: str | None = None, everything: bool = False
    ) -> None:
        if not self._loads_running:
            return
        self._seq += 1
        if everything:
            self._inval_all = self._seq
        if key is not _MISSING:
            self._inval_key[key] = self._seq
        if entity_id is not None:
            self._inval_entity[entity_id] = self._seq

    def _stale_since(self, token: int, key: Hashable, entity_id: str | None) -> bool:
        if self._inval_all > token:
            return True
        if self._inval_key.get(key, -1) > token:
            return True
        return entity_id is not None and self._inval_entity.get(entity_id, -1) > token


class LoadGuard:
    """A bulk load in progress; see HypothesisCache.load_guard. Use as a context manager."""

    def __init__(self, cache: HypothesisCache, token: int):
        self._cache = cache
        self._token = token
        self._open = True

    def put_many(self, items: Iterable[tuple[Hashable, Any, str | None]]) -> int:
        """Cache those (key, value, entity_id) not invalidated since the guard was taken."""
        cache = self._cache
        sized = [(k, v, e, cache._sizeof(v) + ENTRY_OVERHEAD) for k, v, e in items]
        stored = 0
        with cache._lock:
            for k, v, e, size in sized:
                if not cache._stale_since(self._token, k, e):
                    stored += cache._put_locked(k, v, e, size)
            cache._loads += len(sized)
        return stored

    def close(self) -> None:
        if self._open:
            self._open = False
            with self._cache._lock:
                self._cache._end_load()

    def __enter__(self) -> LoadGuard:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------- decorator


def cached(
    cache: HypothesisCache,
    *,
    key: Callable[..., Hashable] | None = None,
    entity: Callable[..., str | None] | None = None,
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Memoize a function in ``cache``; concurrent misses of one key call it once.

    ``key(*args, **kwargs)`` builds the cache key (default: the function's
    qualified name plus its arguments); ``entity(*args, **kwargs)`` names the
    entity the value belongs to, so ``cache.invalidate_entity`` drops it.
    The wrapper exposes ``.cache`` and ``.invalidate(*args, **kwargs)``.
    """

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        name = fn.__qualname__

        def make_key(*args: Any, **kwargs: Any) -> Hashable:
            if key is not None:
                return key(*args, **kwargs)
            return (name,) + cachetools_keys.hashkey(*args, **kwargs)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            entity_id = entity(*args, **kwargs) if entity is not None else None
            return cache.get_or_load(make_key(*args, **kwargs), lambda: fn(*args, **kwargs), entity_id=entity_id)

        def invalidate(*args: Any, **kwargs: Any) -> bool:
            return cache.invalidate(make_key(*args, **kwargs))

        wrapper.cache = cache  # type: ignore[attr-defined]
        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.cache_key = make_key  # type: ignore[attr-defined]
        return wrapper

    return decorate
