"""CachedGraph: GraphStore reads through a HypothesisCache, writes through it.

Reads of entities, templates and hypotheses are served from the cache and
loaded (once, however many threads miss at the same moment) from the graph
on a miss. Every write goes to the graph FIRST and then updates or
invalidates exactly the cache entries it touched:

* ``save_hypotheses`` / ``apply_run`` — the saved values are what the graph
  now holds (GraphStore round-trips them exactly), so they replace the cached
  single hypotheses and are patched into a cached per-entity list
  (write-through; a list that is not cached stays uncached);
* ``upsert_entities`` / ``restore`` — the entity and its hypothesis list are
  invalidated (an upsert keeps existing hypotheses' state, which only the
  graph knows);
* ``upsert_templates`` — the templates are invalidated.

Writes from this object are serialised by one lock, so the cache sees them
in the order the graph did; a load that raced a write is returned to its
caller but not cached (HypothesisCache's single-flight guard).

Writes that bypass this object (another process: rollout worker, CLI
discover/import/seed, engine/batch.py; or a bare GraphStore) are caught by
``sync()``, the cross-process change feed: every GraphStore and batch write
bumps the sequence of the graph's one ``(:Meta {id: 'writes'})`` node and
stamps the entities (and templates) it touched with ``changed_seq`` in the
same query (engine/graph.py BUMP_WRITE_SEQ). ``sync()`` reads that node (one
point read); if the sequence moved since the last sync it reads the ids
stamped after it (indexed range read) and invalidates exactly those; a new
epoch (graph rebuilt) or a sequence that went backwards clears everything.
So a value read after ``sync()`` returned is never older than the writes
committed before it started. The console syncs at every page run that
reads through the cache and in its cache service's loop; the TTL
(``cache_ttl_s``) remains a backstop, ``invalidate_entities`` / ``clear``
drop entries on demand.

Every write goes through the cache as well as the store: an update read
back from a cache that missed it would start from a stale value and lose
the previous update (tests make three ACCEPT updates in a row through it).

Cache keys: ``("entity", id)``, ``("hyps", entity_id)``, ``("hyp", id)``,
``("template", id)``; values are immutable (frozen dataclasses, tuples).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from engine.cache.lru import HypothesisCache
from engine.core.model import Entity, HopRecord, Hypothesis, Template
from engine.store.graph import GraphStore, RunWrite, WritePosition


def entity_key(entity_id: str) -> tuple[str, str]:
    return ("entity", entity_id)


def hyps_key(entity_id: str) -> tuple[str, str]:
    return ("hyps", entity_id)


def hyp_key(hypothesis_id: str) -> tuple[str, str]:
    return ("hyp", hypothesis_id)


def template_key(template_id: str) -> tuple[str, str]:
    return ("template", template_id)


@dataclass
class SyncStats:
    """What ``CachedGraph.sync`` did so far (published with the cache statistics)."""

    checks: int = 0  #: syncs (each one point read of the write feed)
    moved: int = 0  #: syncs that found new writes (and read the changed ids)
    entities_invalidated: int = 0  #: entity ids invalidated by syncs (with repeats)
    templates_invalidated: int = 0
    full_clears: int = 0  #: first sync, new epoch, or a sequence that went backwards
    seq: int | None = None  #: the write sequence seen last
    epoch: str | None = None
    last_check_us: float = 0.0  #: wall time of the last sync (µs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CachedGraph:
    """The GraphStore interface with reads through ``cache`` and writes through to it.

    Methods that are not cached (stats, search, evidence, snapshots, paging)
    are passed straight to the graph.
    """

    #: reads passed through uncached (their results are aggregates or large pages)
    PASS_THROUGH = frozenset({
        "count_entities", "list_entities", "list_entity_ids", "search_entities", "list_templates",
        "get_evidence", "mark_evidence_rolled_back", "cluster_confirmations", "stats", "snapshot",
        "settings", "db", "graph", "ensure_schema", "_rows", "write_position", "changed_since",
    })  # fmt: skip

    def __init__(self, graph: GraphStore, cache: HypothesisCache):
        self.store = graph
        self.cache = cache
        self._write_lock = threading.RLock()
        self._sync_lock = threading.Lock()
        self.sync_stats = SyncStats()
        # read before anything is cached: every entry loaded later is at least this fresh
        self._seen: WritePosition | None = None
        try:
            self._seen = graph.write_position()
        except Exception:  # noqa: BLE001 - store down now: the first sync clears everything instead
            self._seen = None

    def __getattr__(self, name: str) -> Any:
        if name in CachedGraph.PASS_THROUGH:
            return getattr(self.store, name)
        raise AttributeError(
            f"CachedGraph has no {name!r}: every write must go through a method that keeps the cache right"
        )

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ reads (through the cache)

    def get_entity(self, entity_id: str) -> Entity:
        return self.cache.get_or_load(
            entity_key(entity_id), lambda: self.store.get_entity(entity_id), entity_id=entity_id
        )

    def get_entities(self, ids: Iterable[str]) -> dict[str, Entity]:
        """Entities by id from the cache, the missing ones in one graph read; unknown ids are absent."""
        wanted = list(dict.fromkeys(ids))
        found = self.cache.get_many(entity_key(e) for e in wanted)
        out = {e: found[entity_key(e)] for e in wanted if entity_key(e) in found}
        missing = [e for e in wanted if e not in out]
        if missing:
            with self.cache.load_guard() as guard:
                loaded = self.store.get_entities(missing)
                guard.put_many((entity_key(e), v, e) for e, v in loaded.items())
            out.update(loaded)
        return {e: out[e] for e in wanted if e in out}

    def get_template(self, template_id: str) -> Template:
        return self.cache.get_or_load(template_key(template_id), lambda: self.store.get_template(template_id))

    def get_hypotheses(self, entity_id: str) -> list[Hypothesis]:
        """The entity's hypotheses ordered by id (UnknownEntity if no such entity), as GraphStore."""
        hyps = self.cache.get_or_load(
            hyps_key(entity_id), lambda: tuple(self.store.get_hypotheses(entity_id)), entity_id=entity_id
        )
        return list(hyps)

    def get_hypotheses_many(self, entity_ids: Iterable[str]) -> dict[str, list[Hypothesis]]:
        """Hypotheses of many entities: cached lists, the rest in one graph read. Every id maps to a list."""
        wanted = list(dict.fromkeys(entity_ids))
        found = self.cache.get_many(hyps_key(e) for e in wanted)
        out = {e: list(found[hyps_key(e)]) for e in wanted if hyps_key(e) in found}
        missing = [e for e in wanted if e not in out]
        if missing:
            with self.cache.load_guard() as guard:
                loaded = self.store.get_hypotheses_many(missing)
                # an empty list may mean "no such entity", which get_hypotheses must still report: not cached
                guard.put_many((hyps_key(e), tuple(v), e) for e, v in loaded.items() if v)
            out.update(loaded)
        return {e: out[e] for e in wanted}

    def get_hypothesis(self, hypothesis_id: str) -> Hypothesis:
        key = hyp_key(hypothesis_id)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        # the guard is taken before the read: a write that races it marks the key, and then the
        # value read is returned but not cached
        with self.cache.load_guard() as guard:
            h = self.store.get_hypothesis(hypothesis_id)
            guard.put_many([(key, h, h.entity_id)])
        return h

    def warm(self, entity_ids: Iterable[str]) -> int:
        """Load entities and hypothesis lists not cached yet (one graph read each); returns entries added."""
        wanted = list(dict.fromkeys(entity_ids))
        cold = [e for e in wanted if hyps_key(e) not in self.cache or entity_key(e) not in self.cache]
        if not cold:
            return 0
        with self.cache.load_guard() as guard:
            ents = self.store.get_entities(cold)
            hyps = self.store.get_hypotheses_many(list(ents))
            added = guard.put_many((entity_key(e), v, e) for e, v in ents.items())
            added += guard.put_many((hyps_key(e), tuple(hyps[e]), e) for e in ents)
        return added

    # ------------------------------------------------------------------ writes (through to the cache)

    def save_hypotheses(self, hyps: Sequence[Hypothesis]) -> None:
        hyps = list(hyps)
        with self._write_lock:
            self.store.save_hypotheses(hyps)
            self._written(hyps)

    def apply_run(
        self,
        entity_id: str,
        run_id: str,
        system: str,
        hyps: Sequence[Hypothesis],
        records: Sequence[HopRecord],
        *,
        at: float | None = None,
    ) -> None:
        hyps = list(hyps)
        with self._write_lock:
            self.store.apply_run(entity_id, run_id, system, hyps, records, at=at)
            self._written(hyps)

    def apply_runs(self, runs: Sequence[RunWrite], *, at: float | None = None) -> None:
        """Many entities' runs in one write (the batch runner); the cache takes every saved hypothesis."""
        runs = list(runs)
        with self._write_lock:
            self.store.apply_runs(runs, at=at)
            self._written([h for r in runs for h in r.hyps])

    def add_evidence(self, entity_id: str, run_id: str, system: str, records: Sequence[HopRecord], *,
                     at: float | None = None) -> None:  # fmt: skip
        self.apply_run(entity_id, run_id, system, (), records, at=at)

    def upsert_templates(self, templates: Iterable[Template]) -> Any:
        templates = list(templates)
        with self._write_lock:
            try:
                return self.store.upsert_templates(templates)
            finally:
                for t in templates:
                    self.cache.invalidate(template_key(t.id))

    def upsert_entities(self, entities: Iterable[Entity], hypotheses: Iterable[Hypothesis] = ()) -> int:
        entities, hypotheses = list(entities), list(hypotheses)
        with self._write_lock:
            try:
                return self.store.upsert_entities(entities, hypotheses)
            finally:  # even a failed write may have reached some chunks: drop what it could have touched
                self.invalidate_entities({e.id for e in entities} | {h.entity_id for h in hypotheses})

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        with self._write_lock:
            try:
                self.store.restore(snapshot)
            finally:
                entities = snapshot.get("entities")
                if isinstance(entities, Mapping):
                    self.invalidate_entities(entities)

    # ------------------------------------------------------------------ other writers

    def sync(self) -> int:
        """Invalidate what other writers changed since the last sync; returns entries dropped.

        One point read when nothing was written. A new epoch (the graph was
        rebuilt), a lower sequence, or a first sync when the position could
        not be read at construction clears the whole cache.
        """
        with self._sync_lock:
            started = time.perf_counter()
            stats = self.sync_stats
            pos = self.store.write_position()
            seen = self._seen
            dropped = 0
            # (None, 0) seen = no write ever: the first writes create the node and its epoch
            if seen is None or (seen.epoch is not None and pos.epoch != seen.epoch) or pos.seq < seen.seq:
                dropped = self.cache.invalidate_all()
                stats.full_clears += 1
            elif pos.seq > seen.seq:
                entity_ids, template_ids = self.store.changed_since(seen.seq)
                dropped = self.cache.invalidate_entities(entity_ids)
                for t in template_ids:
                    dropped += bool(self.cache.invalidate(template_key(t)))
                stats.moved += 1
                stats.entities_invalidated += len(entity_ids)
                stats.templates_invalidated += len(template_ids)
            self._seen = pos
            stats.checks += 1
            stats.seq, stats.epoch = pos.seq, pos.epoch
            stats.last_check_us = (time.perf_counter() - started) * 1e6
            return dropped

    # ------------------------------------------------------------------ operator actions

    def invalidate_entities(self, entity_ids: Iterable[str]) -> int:
        """Drop every cached entry of these entities (entity, list, single hypotheses)."""
        return self.cache.invalidate_entities(entity_ids)

    def clear(self) -> int:
        return self.cache.invalidate_all()

    # ------------------------------------------------------------------ internals

    def _written(self, hyps: Sequence[Hypothesis]) -> None:
        """The graph now holds ``hyps``: put them where they are cached (lock held)."""
        by_entity: dict[str, dict[str, Hypothesis]] = {}
        for h in hyps:
            self.cache.replace_if_present(hyp_key(h.id), h)
            by_entity.setdefault(h.entity_id, {})[h.id] = h
        for entity_id, changed in by_entity.items():
            key = hyps_key(entity_id)
            current = self.cache.peek(key)
            if current is None:
                self.cache.invalidate(key)  # marks a load in flight as stale
                continue
            ids = {h.id for h in current}
            if not set(changed) <= ids:  # a hypothesis the cached list does not know: reload next time
                self.cache.invalidate(key)
                continue
            self.cache.replace_if_present(key, tuple(changed.get(h.id, h) for h in current))


__all__ = ["CachedGraph", "SyncStats", "entity_key", "hyp_key", "hyps_key", "template_key"]
