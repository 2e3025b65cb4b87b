"""Batched graph queries on the FalkorDB asyncio client.

Thousands of entities are read or updated as chunks of ``UNWIND $ids`` /
``UNWIND $rows`` queries (default 100 per chunk) of which at most
``concurrency`` (default 10) are in flight at once (an ``asyncio.Semaphore``).
Every chunk has its own timeout: a chunk that runs out of time is cancelled
(redis-py drops that connection, so no half-read reply can reach the next
command; read queries also carry the timeout to the server, which aborts
them) and is reported as a failure; the other chunks carry on. Each call
returns a ``BatchResult``: the values of the chunks that succeeded, and one
``BatchFailure`` per chunk that did not, with its keys and the reason.

Updates apply decisions with ``model.apply_decision`` itself (counters,
confidence clamped to [0, 1] after each step, the recent window, KILLED
sticky, then PROMOTED, DEGRADED, SATURATED, else ACTIVE), so a batch and the
same decisions applied one by one leave identical graph state, to the last
bit. Per chunk: one ``UNWIND`` read of the current state, the pure update in
Python, one ``UNWIND`` write guarded by compare-and-set on what was read (a
hypothesis changed meanwhile by another writer is re-read and re-applied, up
to ``CAS_RETRIES`` times, else reported as a failure). Why not do the
arithmetic in Cypher: FalkorDB stores doubles exactly but replies with 15
significant digits, so every node keeps an exact-repr sidecar
(``exact_floats``) on every node; values computed on the server would leave
that sidecar stale, and no Cypher function prints a double exactly. Writing
rows built here keeps the sidecar right. Several decisions for one
hypothesis are applied in the order given and travel in one row, so a
hypothesis is never split across concurrent chunks.

Property names and value encodings are the row codec's (engine.store.rows), shared
with GraphStore: rows are built with ``hypothesis_props`` and read back with
``hypothesis_from_row``, which gives what GraphStore's ``hypothesis_from_props`` does.
Every value is a query parameter; the Cypher text is constant.

Use ``async with AsyncBatchGraph.open(settings) as batch: ...`` inside a
coroutine, or ``run_batch(settings, lambda b: b.read_hypotheses(ids))`` from
synchronous code (the client belongs to the event loop that created it, so
each ``run_batch`` opens and closes its own).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from falkordb.helpers import stringify_param_value
from redis.exceptions import RedisError, ResponseError

from engine.core.errors import DiscoveryError, describe
from engine.core.model import (
    Decision,
    DecisionDeltas,
    DomainError,
    Hypothesis,
    LifecycleRules,
    Status,
    apply_decision,
    is_actionable,
)
from engine.core.settings import Settings
from engine.store import falkor
from engine.store.graph import BUMP_WRITE_SEQ, write_epoch
from engine.store.rows import (
    EXACT_FLOATS,
    ROW_EXACT_FLOATS,
    ROW_ID,
    ROW_RETURN,
    check_finite,
    exact_floats_sidecar,
    hypothesis_from_row,
    hypothesis_props,
)

T = TypeVar("T")

DEFAULT_CHUNK = 100
DEFAULT_CONCURRENCY = 10
DEFAULT_TIMEOUT_S = 30.0
RO_QUERY = "GRAPH.RO_QUERY"


class BatchFailed(DiscoveryError):
    """A batch had failed chunks and the caller asked for all or nothing."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class BatchFailure:
    """One chunk that did not succeed."""

    chunk: int  # index of the chunk in this call
    keys: tuple[str, ...]  # the ids it carried (or, for an update, the ids not found)
    error: str  # one line: what went wrong
    timed_out: bool = False


@dataclass(frozen=True)
class BatchResult[T]:
    """Outcome of one batched call: values of the chunks that worked, and the failures."""

    operation: str
    requested: int  # distinct keys asked for
    values: T
    failures: tuple[BatchFailure, ...] = ()
    chunks: int = 0
    elapsed_s: float = 0.0

    @property
    def failed(self) -> int:
        return sum(len(f.keys) for f in self.failures)

    @property
    def succeeded(self) -> int:
        return self.requested - self.failed

    @property
    def success_rate(self) -> float:
        """Share of requested keys that succeeded (1.0 for an empty request)."""
        return self.succeeded / self.requested if self.requested else 1.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def failed_keys(self) -> tuple[str, ...]:
        return tuple(k for f in self.failures for k in f.keys)

    def raise_on_failure(self) -> BatchResult[T]:
        """Self when every chunk worked, else BatchFailed naming the first failure."""
        if self.failures:
            first = self.failures[0]
            raise BatchFailed(
                f"{self.operation}: {self.failed} of {self.requested} keys failed in "
                f"{len(self.failures)} chunk(s); first: chunk {first.chunk} ({first.error}); "
                "retry the failed keys or raise the timeout"
            )
        return self

    def summary(self) -> str:
        return (
            f"{self.operation}: {self.succeeded}/{self.requested} ok ({self.success_rate:.1%}) "
            f"in {self.chunks} chunk(s), {self.elapsed_s * 1000:.1f} ms"
            + (f"; {len(self.failures)} failed chunk(s)" if self.failures else "")
        )


@dataclass(frozen=True)
class DecisionUpdate:
    """One decision to apply to one hypothesis."""

    hypothesis_id: str
    decision: Decision


@dataclass(frozen=True)
class EntityAssessment:
    """Where one entity stands, computed from its hypotheses (see assess_entity)."""

    entity_id: str
    hypotheses: int
    by_status: Mapping[str, int]
    accepts: int
    max_confidence: float
    mean_confidence: float
    top_pattern: str  # pattern of the most confident hypothesis ("" if none)
    actionable: bool


def assess_entity(
    entity_id: str, hyps: Sequence[Hypothesis], *, min_accepts: int = 2, min_categories: int = 2
) -> EntityAssessment:
    """Pure summary of an entity's hypotheses; actionable as in model.is_actionable."""
    by_status = {str(s): 0 for s in Status}
    for h in hyps:
        by_status[str(h.status)] += 1
    top = max(hyps, key=lambda h: (h.confidence, h.id), default=None)
    return EntityAssessment(
        entity_id=entity_id,
        hypotheses=len(hyps),
        by_status=by_status,
        accepts=sum(h.accepts for h in hyps),
        max_confidence=top.confidence if top else 0.0,
        mean_confidence=(sum(h.confidence for h in hyps) / len(hyps)) if hyps else 0.0,
        top_pattern=top.pattern if top else "",
        actionable=is_actionable(hyps, min_accepts, min_categories),
    )


# --------------------------------------------------------------------------- queries
# Constant Cypher text; every value arrives through $parameters.

# Hypotheses are read as verbose-format rows of the codec's columns (engine.store.rows: why
# verbose, and the fast decoder hypothesis_from_row).
_Q_READ = "UNWIND $ids AS eid MATCH (h:Hypothesis {entity_id: eid})" + ROW_RETURN
_Q_READ_BY_ID = "UNWIND $ids AS hid MATCH (h:Hypothesis {id: hid})" + ROW_RETURN

# compare-and-set: write only if the node still holds what the update was computed from
# (the sidecar carries every float exactly; counters, window and status are compared as is).
# Columnar parameters (one list per field, indexed by i): far cheaper to encode than a list
# of maps, which is where a batch update spends most of its time.
# Both writes bump the graph's write feed and stamp the entities they touch (graph.BUMP_WRITE_SEQ), so
# another process's cache (CachedGraph.sync) sees them.
_Q_WRITE_IF_UNCHANGED = (
    BUMP_WRITE_SEQ
    + f"""
UNWIND range(0, size($ids) - 1) AS i
MATCH (h:Hypothesis {{id: $ids[i]}})
WHERE coalesce(h.{EXACT_FLOATS}, '') = $x_exact[i] AND h.status = $x_status[i]
  AND h.accepts = $x_a[i] AND h.weak_accepts = $x_w[i] AND h.rejects = $x_r[i]
  AND h.no_progress = $x_n[i] AND h.recent = $x_recent[i]
SET h.confidence = $confidence[i], h.last_delta = $last_delta[i], h.updated_at = $updated_at[i],
    h.accepts = $a[i], h.weak_accepts = $w[i], h.rejects = $r[i], h.no_progress = $n[i],
    h.recent = $recent[i], h.status = $status[i], h.{EXACT_FLOATS} = $exact[i]
WITH h, write_seq
OPTIONAL MATCH (e:Entity {{id: h.entity_id}})
SET e.changed_seq = write_seq
RETURN h.id
"""
)

#: how often a chunk re-reads and re-applies hypotheses another writer changed meanwhile
CAS_RETRIES = 3

_Q_CREATE = (
    BUMP_WRITE_SEQ
    + """
UNWIND $rows AS row
MATCH (e:Entity {id: row.entity_id})
OPTIONAL MATCH (old:Hypothesis {id: row.id})
WITH e, row, old IS NULL AS fresh, write_seq
MERGE (h:Hypothesis {id: row.id})
ON CREATE SET h = row
MERGE (e)-[:HAS_HYPOTHESIS]->(h)
SET e.changed_seq = write_seq
RETURN row.id, fresh
"""
)

#: evidence of live runs since a time, per entity (the warmer's hotspot signal reads it too)
Q_ACTIVITY = """
MATCH (ev:Evidence)
WHERE ev.at >= $since AND ev.rolled_back = false
RETURN ev.entity_id, count(ev)
"""

#: every entity's cluster and template (the warmer reads it too)
Q_ENTITY_INDEX = """
MATCH (e:Entity)
RETURN e.id, e.cluster, e.template_id
"""


def _update_row(h: Hypothesis) -> dict[str, Any]:
    """The fields apply_decision changes, as stored, with the exact-floats sidecar GraphStore writes
    (same content as rows.with_exact_floats(hypothesis_props(h)): every float field, sorted)."""
    floats = {"confidence": h.confidence, "created_at": h.created_at, "last_delta": h.last_delta,
              "prior": h.prior, "updated_at": h.updated_at}  # fmt: skip
    for name, value in floats.items():
        if type(value) is not float or not math.isfinite(value):  # rare: let the codec's rule decide (or raise)
            floats[name] = check_finite(value, f"hypothesis {h.id!r} {name}")
    return {
        **floats, "accepts": h.accepts, "weak_accepts": h.weak_accepts, "rejects": h.rejects,
        "no_progress": h.no_progress, "recent": [str(d) for d in h.recent], "status": str(h.status),
        EXACT_FLOATS: exact_floats_sidecar(floats),
    }  # fmt: skip


_WRITE_COLUMNS = (
    "ids", "x_exact", "x_status", "x_a", "x_w", "x_r", "x_n", "x_recent", "confidence", "last_delta",
    "updated_at", "a", "w", "r", "n", "recent", "status", "exact",
)  # fmt: skip


#: control characters FalkorDB does not unescape from a JSON string (it reads \n and \t)
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b-\x1f]")


def _json_safe(value: Any) -> bool:
    """True if json.dumps(value, ensure_ascii=False) is read back by FalkorDB as the same value:
    finite floats, ints, bools, and strings without control characters other than newline and
    tab (FalkorDB does not understand \\uXXXX escapes), nested in lists."""
    if isinstance(value, str):
        return _UNSAFE_CHARS.search(value) is None
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (bool, int)) or value is None:
        return True
    if isinstance(value, list):
        strings = []
        for v in value:
            t = type(v)
            if t is str:
                strings.append(v)
            elif t is float:
                if not math.isfinite(v):
                    return False
            elif t is list:
                if not _json_safe(v):
                    return False
            elif not (t is int or t is bool or v is None):
                return False
        return not strings or _UNSAFE_CHARS.search("".join(strings)) is None
    return False


def encode_params(params: Mapping[str, Any]) -> str:
    """The ``CYPHER name=value ...`` header for lists of scalars (and lists of lists of strings).

    ``json.dumps`` in C instead of the client's per-value Python encoder (several times
    faster on thousands of rows); values it cannot spell the way FalkorDB reads them go
    through the client's own encoder.
    """
    parts = ["CYPHER"]
    for name, value in params.items():
        if _json_safe(value):
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        else:
            text = stringify_param_value(value)
        parts.append(f"{name}={text}")
    return " ".join(parts) + " "


def _chunked[T](items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------- the batch client


class AsyncBatchGraph:
    """Chunked, concurrency-limited, timed queries over one asyncio FalkorDB graph.

    ``graph`` is a ``falkordb.asyncio`` graph (or anything with the same
    ``query``/``ro_query`` coroutines). Defaults apply to every call and can
    be overridden per call.
    """

    def __init__(
        self,
        graph: Any,
        *,
        chunk_size: int = DEFAULT_CHUNK,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.graph = graph
        self.chunk_size = self._positive(chunk_size, "chunk_size")
        self.concurrency = self._positive(concurrency, "concurrency")
        self.timeout_s = self._timeout(timeout_s)
        self._clock = clock

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, **kwargs: Any) -> AsyncIterator[AsyncBatchGraph]:
        """A batch client on a fresh asyncio connection pool to the settings' graph; closed on exit."""
        db = falkor.connect_async(settings)
        try:
            yield cls(db.select_graph(settings.graph_name), **kwargs)
        finally:
            await db.aclose()
            await db.connection.connection_pool.disconnect()

    # ------------------------------------------------------------------ reads

    async def read_hypotheses(
        self,
        entity_ids: Iterable[str],
        *,
        chunk_size: int | None = None,
        concurrency: int | None = None,
        timeout_s: float | None = None,
    ) -> BatchResult[dict[str, list[Hypothesis]]]:
        """Hypotheses of many entities, ordered by id; every id of a chunk that worked maps to a list
        ([] when it has none, as GraphStore.get_hypotheses_many)."""
        ids = list(dict.fromkeys(entity_ids))
        values: dict[str, list[Hypothesis]] = {}

        async def run(chunk: Sequence[str], timeout: float) -> None:
            rows = await self._ro_verbose(_Q_READ, {"ids": list(chunk)}, timeout)
            got: dict[str, list[Hypothesis]] = {eid: [] for eid in chunk}
            for row in rows:
                h = hypothesis_from_row(row)
                got[h.entity_id].append(h)
            for hyps in got.values():
                hyps.sort(key=lambda h: h.id)
            values.update(got)

        return await self._run("read_hypotheses", ids, run, chunk_size, concurrency, timeout_s, values)

    async def _ro_verbose(self, cypher: str, params: dict[str, Any], timeout: float) -> list[list[Any]]:
        """Rows of a read-only query in the verbose reply format, with the timeout sent to the server too."""
        graph = self.graph
        query = graph._build_params_header(params) + cypher  # the client's own parameter encoding
        reply = await graph.execute_command(RO_QUERY, graph.name, query, "timeout", _server_ms(timeout))
        if reply and isinstance(reply[-1], ResponseError):  # a run-time error ends the reply
            raise reply[-1]
        return reply[1] if len(reply) == 3 else []

    async def _write_verbose(self, cypher: str, params: dict[str, Any]) -> list[Any]:
        """First column of every row of a write query (verbose reply), parameters encoded by encode_params."""
        graph = self.graph
        reply = await graph.execute_command("GRAPH.QUERY", graph.name, encode_params(params) + cypher)
        if reply and isinstance(reply[-1], ResponseError):
            raise reply[-1]
        return [r[0] for r in reply[1]] if len(reply) == 3 else []

    def stream_assessments(
        self,
        entity_ids: Iterable[str],
        *,
        min_accepts: int = 2,
        min_categories: int = 2,
        chunk_size: int | None = None,
        concurrency: int | None = None,
        timeout_s: float | None = None,
    ) -> AssessmentStream:
        """An async iterator of EntityAssessment, yielded as each chunk arrives (not in input order).

        Failed chunks yield nothing; after the iteration ``stream.result`` is
        the BatchResult (counts, failures). Leaving the loop early cancels the
        chunks still running.
        """
        return AssessmentStream(
            self, list(dict.fromkeys(entity_ids)), min_accepts, min_categories,
            chunk_size or self.chunk_size, concurrency or self.concurrency,
            self.timeout_s if timeout_s is None else self._timeout(timeout_s),
        )  # fmt: skip

    async def recent_activity(self, since: float, *, timeout_s: float | None = None) -> dict[str, int]:
        """Evidence records per entity at or after ``since`` (unix s), rolled-back ones excluded."""
        timeout = self.timeout_s if timeout_s is None else self._timeout(timeout_s)
        async with asyncio.timeout(timeout):
            res = await self.graph.ro_query(Q_ACTIVITY, {"since": float(since)}, timeout=_server_ms(timeout))
        return {eid: int(n) for eid, n in res.result_set}

    async def entity_index(self, *, timeout_s: float | None = None) -> dict[str, tuple[str, str]]:
        """entity id -> (cluster, template id) for every entity."""
        timeout = self.timeout_s if timeout_s is None else self._timeout(timeout_s)
        async with asyncio.timeout(timeout):
            res = await self.graph.ro_query(Q_ENTITY_INDEX, timeout=_server_ms(timeout))
        return {eid: (cluster, template) for eid, cluster, template in res.result_set}

    # ------------------------------------------------------------------ writes

    async def apply_decisions(
        self,
        updates: Iterable[DecisionUpdate | tuple[str, Decision]],
        *,
        now: float,
        deltas: DecisionDeltas = DecisionDeltas(),
        rules: LifecycleRules = LifecycleRules(),
        chunk_size: int | None = None,
        concurrency: int | None = None,
        timeout_s: float | None = None,
    ) -> BatchResult[list[str]]:
        """Apply decisions exactly as model.apply_decision does, in UNWIND chunks. Values: the ids updated.

        Decisions for one hypothesis are applied in the order given. An id
        that does not exist is reported as a failure of its chunk ("no such
        hypothesis"); so is one that other writers kept changing through
        ``CAS_RETRIES`` attempts; the rest of the chunk is written. A
        timed-out write is reported as failed but may still be applied by the
        server (writes cannot be aborted mid-way).
        """
        steps: dict[str, list[Decision]] = defaultdict(list)
        for u in updates:
            hid, decision = (u.hypothesis_id, u.decision) if isinstance(u, DecisionUpdate) else u
            try:
                steps[hid].append(Decision(decision))
            except ValueError:
                raise DomainError(
                    f"unknown decision {decision!r} for hypothesis {hid!r}: use one of "
                    + ", ".join(str(d) for d in Decision)
                ) from None
        when = float(now)
        done: list[str] = []

        async def run(chunk: Sequence[str], timeout: float) -> dict[str, str]:
            pending = list(chunk)
            problems: dict[str, str] = {}
            for _attempt_no in range(CAS_RETRIES + 1):
                rows = await self._ro_verbose(_Q_READ_BY_ID, {"ids": pending}, timeout)
                current = {r[ROW_ID]: (hypothesis_from_row(r), r[ROW_EXACT_FLOATS] or "") for r in rows}
                for hid in pending:
                    if hid not in current:
                        problems[hid] = "no such hypothesis"
                cols: dict[str, list[Any]] = {k: [] for k in _WRITE_COLUMNS}
                for hid, (h, sidecar) in current.items():
                    new = h
                    for d in steps[hid]:
                        new = apply_decision(new, d, when, deltas, rules)
                    row = _update_row(new)
                    for k, v in (
                        ("ids", hid), ("x_exact", sidecar), ("x_status", str(h.status)), ("x_a", h.accepts),
                        ("x_w", h.weak_accepts), ("x_r", h.rejects), ("x_n", h.no_progress),
                        ("x_recent", [str(d) for d in h.recent]), ("confidence", row["confidence"]),
                        ("last_delta", row["last_delta"]), ("updated_at", row["updated_at"]), ("a", row["accepts"]),
                        ("w", row["weak_accepts"]), ("r", row["rejects"]), ("n", row["no_progress"]),
                        ("recent", row["recent"]), ("status", row["status"]), ("exact", row[EXACT_FLOATS]),
                    ):  # fmt: skip
                        cols[k].append(v)
                if not cols["ids"]:
                    break
                written = set(await self._write_verbose(_Q_WRITE_IF_UNCHANGED, {**cols, "write_epoch": write_epoch()}))
                done.extend(i for i in cols["ids"] if i in written)
                pending = [i for i in cols["ids"] if i not in written]  # changed since we read it
                if not pending:
                    break
            for hid in pending:
                problems.setdefault(hid, f"changed by another writer {CAS_RETRIES + 1} times while updating; retry it")
            return problems

        return await self._run("apply_decisions", list(steps), run, chunk_size, concurrency, timeout_s, done)

    async def create_hypotheses(
        self,
        hypotheses: Iterable[Hypothesis],
        *,
        chunk_size: int | None = None,
        concurrency: int | None = None,
        timeout_s: float | None = None,
    ) -> BatchResult[dict[str, bool]]:
        """Create hypotheses under their (existing) entities with UNWIND; an existing one keeps its state.

        Values: id -> True if created now, False if it existed. Ids whose
        entity does not exist are failures.
        """
        rows = [hypothesis_props(h) for h in hypotheses]
        seen: set[str] = set()
        for r in rows:
            if r["id"] in seen:
                raise DomainError(f"hypothesis id {r['id']!r} appears more than once in one batch: pass each once")
            seen.add(r["id"])
        ids = [r["id"] for r in rows]
        by_id = dict(zip(ids, rows))
        created: dict[str, bool] = {}

        async def run(chunk: Sequence[str], timeout: float) -> list[str]:
            res = await self.graph.query(_Q_CREATE, {"rows": [by_id[i] for i in chunk], "write_epoch": write_epoch()})
            for hid, fresh in res.result_set:
                created[hid] = bool(fresh)
            return [i for i in chunk if i not in created]

        return await self._run("create_hypotheses", ids, run, chunk_size, concurrency, timeout_s, created,
                               missing_error="entity does not exist")  # fmt: skip

    # ------------------------------------------------------------------ the chunk runner

    async def _run(
        self,
        operation: str,
        keys: list[str],
        run: Callable[[Sequence[str], float], Awaitable[Any]],
        chunk_size: int | None,
        concurrency: int | None,
        timeout_s: float | None,
        values: T,
        *,
        missing_error: str = "",
    ) -> BatchResult[T]:
        size = self._positive(chunk_size or self.chunk_size, "chunk_size")
        limit = asyncio.Semaphore(self._positive(concurrency or self.concurrency, "concurrency"))
        timeout = self.timeout_s if timeout_s is None else self._timeout(timeout_s)
        chunks = _chunked(keys, size)
        started = self._clock()

        async def one(index: int, chunk: Sequence[str]) -> list[BatchFailure]:
            async with limit:
                return await _attempt(index, chunk, run, timeout, missing_error)

        outcomes = await asyncio.gather(*(one(i, c) for i, c in enumerate(chunks)))
        failures = tuple(f for fs in outcomes for f in fs)
        return BatchResult(operation, len(keys), values, failures, len(chunks), self._clock() - started)

    @staticmethod
    def _positive(n: int, what: str) -> int:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise DomainError(f"batch {what} must be a whole number >= 1 (got {n!r})")
        return n

    @staticmethod
    def _timeout(t: float) -> float:
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise DomainError(f"batch timeout must be a positive number of seconds (got {t!r})")
        return float(t)


async def _attempt(
    index: int,
    chunk: Sequence[str],
    run: Callable[[Sequence[str], float], Awaitable[Any]],
    timeout: float,
    missing_error: str,
) -> list[BatchFailure]:
    """Run one chunk under its timeout; the failures it produced (none when it worked)."""
    try:
        async with asyncio.timeout(timeout):
            missing = await run(chunk, timeout)
    except TimeoutError:
        return [BatchFailure(index, tuple(chunk), f"timed out after {timeout:g} s (cancelled)", True)]
    except (RedisError, OSError, DiscoveryError, ValueError, KeyError, TypeError) as exc:
        return [BatchFailure(index, tuple(chunk), describe(exc))]
    if isinstance(missing, Mapping):  # key -> why, one failure per distinct reason
        by_error: dict[str, list[str]] = defaultdict(list)
        for key, why in missing.items():
            by_error[why].append(key)
        return [BatchFailure(index, tuple(keys), why) for why, keys in by_error.items()]
    if missing:
        return [BatchFailure(index, tuple(missing), missing_error or "not found")]
    return []


def _server_ms(timeout_s: float) -> int:
    """The same timeout for the server (read queries only), in whole milliseconds."""
    return max(1, math.ceil(timeout_s * 1000))


# --------------------------------------------------------------------------- streaming


class AssessmentStream:
    """Async iterator of EntityAssessment; ``result`` holds the BatchResult once exhausted."""

    def __init__(self, batch: AsyncBatchGraph, ids: list[str], min_accepts: int, min_categories: int,
                 chunk_size: int, concurrency: int, timeout_s: float):  # fmt: skip
        self._batch = batch
        self._ids = ids
        self._min_accepts = min_accepts
        self._min_categories = min_categories
        self._chunk_size = AsyncBatchGraph._positive(chunk_size, "chunk_size")
        self._concurrency = AsyncBatchGraph._positive(concurrency, "concurrency")
        self._timeout_s = timeout_s
        self.result: BatchResult[int] | None = None
        self._gen: AsyncIterator[EntityAssessment] | None = None

    def __aiter__(self) -> AsyncIterator[EntityAssessment]:
        if self._gen is None:
            self._gen = self._iterate()
        return self._gen

    async def _iterate(self) -> AsyncIterator[EntityAssessment]:
        batch = self._batch
        limit = asyncio.Semaphore(self._concurrency)
        chunks = _chunked(self._ids, self._chunk_size)
        started = batch._clock()
        failures: list[BatchFailure] = []
        yielded = 0

        async def one(index: int, chunk: Sequence[str]) -> BatchResult[dict[str, list[Hypothesis]]]:
            async with limit:
                res = await batch.read_hypotheses(
                    chunk, chunk_size=len(chunk), concurrency=1, timeout_s=self._timeout_s
                )
            return replace(res, failures=tuple(replace(f, chunk=index) for f in res.failures))

        tasks = [asyncio.ensure_future(one(i, c)) for i, c in enumerate(chunks)]
        try:
            for next_done in asyncio.as_completed(tasks):
                res = await next_done
                failures.extend(res.failures)
                got = res.values
                for eid in sorted(got):
                    yielded += 1
                    yield assess_entity(eid, got[eid], min_accepts=self._min_accepts,
                                        min_categories=self._min_categories)  # fmt: skip
        finally:
            pending = [t for t in tasks if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            self.result = BatchResult(
                "stream_assessments", len(self._ids), yielded, tuple(sorted(failures, key=lambda f: f.chunk)),
                len(chunks), batch._clock() - started,
            )  # fmt: skip


# --------------------------------------------------------------------------- sync entry point


def run_batch[T](settings: Settings, work: Callable[[AsyncBatchGraph], Awaitable[T]], **kwargs: Any) -> T:
    """Run ``work(batch)`` on a fresh batch client from synchronous code; returns its result.

    Uses ``asyncio.run``; when the calling thread already runs an event loop
    the work runs in a helper thread instead (the client belongs to its loop).
    """

    out: list[T] = []

    async def main() -> None:
        # The result is handed over through ``out``, not as the main task's result: on leaving,
        # asyncio.run (CPython 3.12) looks up the SIGINT handler, which fails to map to an enum and
        # formats the handler's repr, which reprs the main task, which reprs its result in full
        # (reprlib truncates only afterwards): seconds for a result of 28,000 hypotheses.
        async with AsyncBatchGraph.open(settings, **kwargs) as batch:
            out.append(await work(batch))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(main())
        return out[0]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, main()).result()
    return out[0]


__all__ = [
    "AssessmentStream",
    "AsyncBatchGraph",
    "BatchFailed",
    "BatchFailure",
    "BatchResult",
    "DecisionUpdate",
    "EntityAssessment",
    "assess_entity",
    "run_batch",
]
