"""GraphStore: the domain graph in FalkorDB.

Graph shape::

    (:Entity {id, name, sport, country, type, tier, cluster, template_id})
        -[:HAS_HYPOTHESIS]->(:Hypothesis {every field of model.Hypothesis; recent: [str]; status: str})
        -[:IN_CLUSTER]->(:Cluster {id})
        -[:USES_TEMPLATE]->(:Template {id, name, description, patterns: JSON, channels: JSON})
    (:Hypothesis)-[:HAS_EVIDENCE]->(:Evidence {id, entity_id, run_id, system, at, rolled_back,
                                              every field of model.HopRecord})
    (:Meta {id: 'writes', seq, epoch})   the write feed; Entity and Template also carry changed_seq

Every write of entities, templates or hypotheses bumps ``Meta.seq`` and stamps
what it touched with ``changed_seq`` in the same query (BUMP_WRITE_SEQ), so a
cache in another process can tell cheaply what changed (CachedGraph.sync).

Every value goes in as a query parameter; Cypher text is constant. Writes are
batched with ``UNWIND $rows`` and a multi-part write is one query, so FalkorDB
applies it atomically (a query that fails part way is undone by the server).
Where a write must touch exactly the rows it was given, the query ends with a
guard that divides by zero when a count differs: the server then rejects the
whole query, and we translate that into a one-line DomainError.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import falkordb
from redis.exceptions import RedisError, ResponseError

from engine.core.errors import LeaseLost
from engine.core.model import DomainError, Entity, HopRecord, Hypothesis, Status, Template, UnknownEntity, slugify
from engine.core.settings import Settings
from engine.store import falkor
from engine.store.rows import (
    check_str,
    entity_from_props,
    entity_props,
    evidence_from_props,
    evidence_props,
    hypothesis_from_props,
    hypothesis_props,
    template_from_props,
    template_props,
    with_exact_floats,
)

#: rows per UNWIND batch for bulk upserts
CHUNK = 500
SNAPSHOT_FORMAT = "discovery-ops/graph-snapshot"
SNAPSHOT_VERSION = 1

#: (label, property) pairs that are looked up by value
INDEXES: tuple[tuple[str, str], ...] = (
    ("Entity", "id"),
    ("Hypothesis", "id"),
    ("Hypothesis", "entity_id"),
    ("Template", "id"),
    ("Cluster", "id"),
    ("Evidence", "id"),
    ("Evidence", "run_id"),
    ("Evidence", "entity_id"),
    ("Entity", "changed_seq"),
    ("Template", "changed_seq"),
)

# FalkorDB reports a failed guard as this runtime error
_GUARD_ERROR = "Division by zero"


class UnknownHypothesis(DomainError):
    def __init__(self, hypothesis_id: str):
        super().__init__(
            f"unknown hypothesis id {hypothesis_id!r}: hypotheses are created when their entity is "
            "upserted; check the entity with `python -m engine stats` or the Hypotheses page"
        )
        self.hypothesis_id = hypothesis_id


class UnknownTemplate(DomainError):
    def __init__(self, template_id: str, context: str = ""):
        where = f" ({context})" if context else ""
        super().__init__(
            f"unknown template id {template_id!r}{where}: upsert the template first "
            "(templates ship as JSON under data/)"
        )
        self.template_id = template_id


@dataclass(frozen=True)
class GraphStats:
    """Counts of the whole graph, for the Overview page and `stats`."""

    entities: int
    hypotheses: int
    by_status: dict[str, int] = field(default_factory=dict)  # hypotheses per status
    by_template: dict[str, int] = field(default_factory=dict)  # entities per template id
    by_cluster: dict[str, int] = field(default_factory=dict)  # entities per cluster
    by_category: dict[str, int] = field(default_factory=dict)  # hypotheses per pattern category


# --------------------------------------------------------------------------- writing rows
# How values are encoded as node properties is engine.store.rows' (the row codec).


def _stored(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as written to nodes: with the exact-floats sidecar."""
    return [with_exact_floats(r) for r in rows]


def _chunks(rows: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _no_duplicates(ids: Iterable[str], what: str) -> None:
    dup = [i for i, n in Counter(ids).items() if n > 1]
    if dup:
        raise DomainError(f"{what} {dup[0]!r} appears more than once in one write: pass each once")


# --------------------------------------------------------------------------- queries
# Constant Cypher text; every value arrives through $parameters.

# The write feed (read by other processes' caches, engine/cached_graph.py CachedGraph.sync):
# every write of entities, templates or hypotheses starts with this clause, which bumps the
# one (:Meta {id: 'writes'}) node's sequence, and stamps what it touches with
# ``changed_seq = write_seq`` in the SAME query, so the bump and the change commit together
# (or not at all). ``epoch`` is set once, when the node is created: a graph that was deleted
# and rebuilt has a new epoch, so a reader's "seen" sequence from before is not trusted.
WRITE_FEED_ID = "writes"
BUMP_WRITE_SEQ = """
MERGE (meta:Meta {id: 'writes'})
ON CREATE SET meta.seq = 0, meta.epoch = $write_epoch
SET meta.seq = meta.seq + 1
WITH meta.seq AS write_seq
"""

# Fencing (DESIGN.md "Fencing"): a worker's writes carry the lease token of its job. One
# (:Lease {id: scope}) node per fenced scope (e.g. ``rollout:7``) holds the token of whoever may write
# now; a fenced write starts with this clause, so the check and the write are ONE query (FalkorDB runs
# a query atomically): a worker whose token was replaced (a new attempt, a rollback) matches no row
# and writes nothing.
FENCE_CHECK = """
MATCH (lease:Lease {id: $fence_scope}) WHERE lease.token = $fence_token
WITH lease
"""

_Q_TAKE_FENCE = "MERGE (l:Lease {id: $scope}) SET l.token = $token, l.at = $at RETURN l.token"
_Q_FENCE_TOKEN = "MATCH (l:Lease {id: $scope}) RETURN l.token"


@dataclass(frozen=True)
class Fence:
    """Who may write a fenced scope: ``scope`` names it (``rollout:<run id>``), ``token`` is the holder's lease."""

    scope: str
    token: str


@dataclass(frozen=True)
class RunWrite:
    """One entity's live run as ``GraphStore.apply_runs`` writes it (what ``apply_run`` takes, as a value)."""

    entity_id: str
    run_id: str
    system: str
    hyps: Sequence[Hypothesis]
    records: Sequence[HopRecord]


_Q_WRITE_POSITION = "MATCH (meta:Meta {id: 'writes'}) RETURN meta.epoch, meta.seq"

_Q_CHANGED_SINCE = """
MATCH (e:Entity) WHERE e.changed_seq > $seen RETURN 'entity' AS kind, e.id AS id
UNION ALL
MATCH (t:Template) WHERE t.changed_seq > $seen RETURN 'template' AS kind, t.id AS id
"""


def write_epoch() -> str:
    """A fresh epoch token for a write-feed node this write may create."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class WritePosition:
    """Where the graph's write feed stands: ``epoch`` changes when the graph is rebuilt."""

    epoch: str | None
    seq: int


_Q_UPSERT_TEMPLATES = (
    BUMP_WRITE_SEQ
    + """
UNWIND $rows AS row
MERGE (t:Template {id: row.id})
SET t = row
SET t.changed_seq = write_seq
RETURN count(t)
"""
)

_Q_TEMPLATE_IDS = """
UNWIND $ids AS tid
MATCH (t:Template {id: tid})
RETURN t.id
"""

_Q_UPSERT_ENTITIES = (
    BUMP_WRITE_SEQ
    + """
UNWIND $rows AS row
MERGE (e:Entity {id: row.id})
SET e = row
SET e.changed_seq = write_seq
WITH e, row
OPTIONAL MATCH (e)-[old_c:IN_CLUSTER]->(oc:Cluster) WHERE oc.id <> row.cluster
DELETE old_c
WITH DISTINCT e, row
OPTIONAL MATCH (e)-[old_t:USES_TEMPLATE]->(ot:Template) WHERE ot.id <> row.template_id
DELETE old_t
WITH DISTINCT e, row
MERGE (c:Cluster {id: row.cluster})
MERGE (e)-[:IN_CLUSTER]->(c)
WITH e, row
MATCH (t:Template {id: row.template_id})
MERGE (e)-[:USES_TEMPLATE]->(t)
RETURN count(e)
"""
)

_Q_ENTITY_IDS = """
UNWIND $ids AS eid
MATCH (e:Entity {id: eid})
RETURN e.id
"""

# create-if-missing: an existing hypothesis keeps its state
_Q_ADD_HYPOTHESES = (
    BUMP_WRITE_SEQ
    + """
CALL {
  WITH write_seq
  UNWIND $rows AS row
  MATCH (e:Entity {id: row.entity_id})
  MERGE (h:Hypothesis {id: row.id})
  ON CREATE SET h = row
  MERGE (e)-[:HAS_HYPOTHESIS]->(h)
  RETURN count(h) AS written
}
CALL {
  WITH write_seq
  UNWIND $entity_ids AS eid
  MATCH (e:Entity {id: eid})
  SET e.changed_seq = write_seq
  RETURN count(e) AS stamped
}
RETURN written, 1 / (CASE WHEN written = $n THEN 1 ELSE 0 END) AS guard
"""
)
# (each entity is stamped once per chunk, not once per hypothesis row: a SET on the indexed
# changed_seq per row made seeding 3,400 entities ~50% dearer in server CPU)

_Q_SAVE_HYPOTHESES = (
    BUMP_WRITE_SEQ
    + """
CALL {
  WITH write_seq
  UNWIND $rows AS row
  MATCH (e:Entity {id: row.entity_id})-[:HAS_HYPOTHESIS]->(h:Hypothesis {id: row.id})
  SET h = row
  SET e.changed_seq = write_seq
  RETURN count(h) AS saved
}
RETURN saved, 1 / (CASE WHEN saved = $n THEN 1 ELSE 0 END) AS guard
"""
)

# Entities' runs in ONE query (apply_runs, and apply_run as a batch of one): each entity's hypothesis states
# and evidence trail, all or nothing, one write-sequence bump for the lot.
_Q_APPLY_RUNS = (
    BUMP_WRITE_SEQ
    + """
CALL {
  WITH write_seq
  UNWIND $entity_ids AS eid
  MATCH (e:Entity {id: eid})
  SET e.changed_seq = write_seq
  RETURN count(e) AS found
}
CALL {
  UNWIND $hyps AS row
  MATCH (:Entity {id: row.entity_id})-[:HAS_HYPOTHESIS]->(h:Hypothesis {id: row.id})
  SET h = row
  RETURN count(h) AS saved
}
CALL {
  UNWIND $records AS rec
  MATCH (:Entity {id: rec.entity_id})-[:HAS_HYPOTHESIS]->(h:Hypothesis {id: rec.hypothesis_id})
  MERGE (ev:Evidence {id: rec.id})
  ON CREATE SET ev = rec
  MERGE (h)-[:HAS_EVIDENCE]->(ev)
  RETURN count(ev) AS added
}
RETURN found, saved, added,
       1 / (CASE WHEN found = $n_runs AND saved = $n_hyps AND added = $n_records THEN 1 ELSE 0 END) AS guard
"""
)

_Q_HYPOTHESES_OF = """
MATCH (e:Entity {id: $id})
OPTIONAL MATCH (e)-[:HAS_HYPOTHESIS]->(h:Hypothesis)
RETURN e.id, properties(h)
ORDER BY h.id
"""

_Q_HYPOTHESES_MANY = """
UNWIND $ids AS eid
MATCH (h:Hypothesis {entity_id: eid})
RETURN properties(h)
ORDER BY h.entity_id, h.id
"""

_Q_RESTORE = (
    BUMP_WRITE_SEQ
    + """
CALL {
  WITH write_seq
  UNWIND $entities AS ent
  MATCH (e:Entity {id: ent.id})
  SET e.changed_seq = write_seq
  RETURN count(e) AS found
}
CALL {
  UNWIND $entities AS ent
  MATCH (e:Entity {id: ent.id})-[:HAS_HYPOTHESIS]->(h:Hypothesis)
  WHERE NOT h.id IN ent.keep
  DETACH DELETE h
}
CALL {
  UNWIND $rows AS row
  MATCH (e:Entity {id: row.entity_id})
  MERGE (h:Hypothesis {id: row.id})
  SET h = row
  MERGE (e)-[:HAS_HYPOTHESIS]->(h)
  RETURN count(h) AS restored
}
RETURN found, restored, 1 / (CASE WHEN found = $n_entities AND restored = $n_rows THEN 1 ELSE 0 END) AS guard
"""
)


#: what ``get_evidence_many`` returns of each evidence node (columns, in this order)
EVIDENCE_SUMMARY_FIELDS = (
    "id", "entity_id", "run_id", "system", "at", "rolled_back", "iteration", "hypothesis_id", "pattern",
    "category", "hop_type", "decision", "confidence_after", "url", "excerpt", "error",
)  # fmt: skip

_Q_EVIDENCE_MANY = (
    """
UNWIND $ids AS eid
MATCH (ev:Evidence {entity_id: eid})
WHERE $every OR ev.decision IN $decisions
RETURN """
    + ", ".join(f"ev.{c}" for c in EVIDENCE_SUMMARY_FIELDS)
    + """
ORDER BY ev.entity_id, ev.at DESC, ev.iteration DESC, ev.id DESC
"""
)

_Q_EVIDENCE_COUNTS = """
UNWIND $ids AS eid
MATCH (ev:Evidence {entity_id: eid})
WHERE ev.decision = $decision
RETURN eid, ev.run_id, count(ev)
"""

_Q_TALLIES = """
UNWIND $ids AS eid
MATCH (h:Hypothesis {entity_id: eid})
RETURN h.id, h.entity_id, h.pattern, h.category, h.accepts, h.confidence
ORDER BY h.entity_id, h.id
"""


@dataclass(frozen=True)
class HypothesisTally:
    """The part of a hypothesis the actionable gate counts and a best-hypothesis pick compares."""

    id: str
    entity_id: str
    pattern: str
    category: str
    accepts: int
    confidence: float


# --------------------------------------------------------------------------- the store


class GraphStore:
    """Repository of entities, templates, clusters, hypotheses and evidence in FalkorDB.

    Open with ``GraphStore.open(settings)``; it connects (starting the
    embedded server if needed) and creates the schema idempotently. One store
    may be shared by threads (redis-py pools connections).
    """

    def __init__(self, settings: Settings, db: falkordb.FalkorDB, *, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.db = db
        self.graph: falkordb.Graph = db.select_graph(settings.graph_name)
        self._clock = clock
        self._fence: Fence | None = None

    @classmethod
    def open(cls, settings: Settings, *, clock: Callable[[], float] = time.time) -> GraphStore:
        """Connect and ensure schema and indexes (idempotent, safe from concurrent openers)."""
        store = cls(settings, falkor.connect(settings), clock=clock)
        try:
            store.ensure_schema()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close the client's connections. The embedded server keeps running (see falkor.stop_embedded_server)."""
        self.db.close()
        try:
            self.db.connection.connection_pool.disconnect()
        except RedisError:
            pass

    # ------------------------------------------------------------------ fencing

    def take_fence(self, scope: str, token: str) -> None:
        """Make ``token`` the only one whose fenced writes of ``scope`` land; every earlier holder is refused
        from now on (a new attempt of a job, a rollback). Unconditional: call it once you hold the lease."""
        check_str(scope, "fence scope")
        check_str(token, "fence token")
        self._query(_Q_TAKE_FENCE, {"scope": scope, "token": token, "at": self._clock()})

    def fence_token(self, scope: str) -> str | None:
        """The token that holds ``scope`` now (None if nobody took it)."""
        rows = self._rows(_Q_FENCE_TOKEN, {"scope": scope})
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    def fenced(self, fence: Fence) -> GraphStore:
        """A view of this store (same connection) whose run writes (``apply_run``, ``restore``) land only
        while ``fence`` holds its scope; otherwise they raise LeaseLost and write nothing."""
        view = copy.copy(self)
        view._fence = fence
        return view

    def _fence_cypher(self, cypher: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self._fence is None:
            return cypher, params
        return FENCE_CHECK + cypher, {**params, "fence_scope": self._fence.scope, "fence_token": self._fence.token}

    def _raise_if_fence_lost(self) -> None:
        """After a fenced write matched nothing: LeaseLost when the fence has passed on (else return)."""
        if self._fence is None:
            return
        holder = self.fence_token(self._fence.scope)
        if holder != self._fence.token:
            raise LeaseLost(
                f"graph write refused: {self._fence.scope} is now held by another worker or a rollback; "
                "this worker stops without changing anything"
            )

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _query(self, cypher: str, params: dict[str, Any] | None = None, *, read_only: bool = False) -> list[list[Any]]:
        """Run one query and return its result rows (falkordb's ``result_set``)."""
        if not read_only and "$write_epoch" in cypher:
            params = {**(params or {}), "write_epoch": write_epoch()}
        try:
            reply = self.graph.ro_query(cypher, params) if read_only else self.graph.query(cypher, params)
        except ResponseError:
            raise
        except (RedisError, OSError) as exc:
            raise falkor._unreachable(self.settings, exc) from exc
        # falkordb ships no types: a QueryResult's result_set is a list of rows, each a list of values
        rows: list[list[Any]] = reply.result_set
        return rows

    def _rows(self, cypher: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        return self._query(cypher, params, read_only=True)

    def ensure_schema(self) -> None:
        """Create every index in INDEXES that does not exist yet (this also creates the graph)."""
        existing: set[tuple[str, str]] = set()
        try:
            for row in self.graph.query(
                "CALL db.indexes() YIELD label, properties RETURN label, properties"
            ).result_set:
                existing.update((row[0], prop) for prop in row[1])
        except (RedisError, OSError) as exc:
            if not isinstance(exc, ResponseError):
                raise falkor._unreachable(self.settings, exc) from exc
            raise
        for label, prop in INDEXES:
            if (label, prop) in existing:
                continue
            try:
                # label and property come from the constant INDEXES table, never from input
                self.graph.query(f"CREATE INDEX FOR (n:{label}) ON (n.{prop})")
            except ResponseError as exc:
                if "already indexed" not in str(exc):  # another process won the race
                    raise

    # ------------------------------------------------------------------ write feed

    def write_position(self) -> WritePosition:
        """The write feed's epoch and sequence: one point read of the single Meta node
        (``WritePosition(None, 0)`` before the first write)."""
        rows = self._rows(_Q_WRITE_POSITION)
        if not rows:
            return WritePosition(None, 0)
        epoch, seq = rows[0]
        return WritePosition(None if epoch is None else str(epoch), int(seq or 0))

    def changed_since(self, seen: int) -> tuple[list[str], list[str]]:
        """(entity ids, template ids) written by writes after sequence ``seen`` (indexed range reads)."""
        entities: list[str] = []
        templates: list[str] = []
        for kind, ident in self._rows(_Q_CHANGED_SINCE, {"seen": int(seen)}):
            (entities if kind == "entity" else templates).append(ident)
        return entities, templates

    # ------------------------------------------------------------------ templates

    def upsert_templates(self, templates: Iterable[Template]) -> int:
        """MERGE templates by id and (re)set their fields. Returns how many were written."""
        rows = [template_props(t) for t in templates]
        _no_duplicates((r["id"] for r in rows), "template id")
        written = 0
        for chunk in _chunks(rows):
            written += int(self._query(_Q_UPSERT_TEMPLATES, {"rows": list(chunk)})[0][0])
        return written

    def get_template(self, template_id: str) -> Template:
        rows = self._rows("MATCH (t:Template {id: $id}) RETURN properties(t)", {"id": template_id})
        if not rows:
            raise UnknownTemplate(template_id)
        return template_from_props(rows[0][0])

    def list_templates(self) -> list[Template]:
        rows = self._rows("MATCH (t:Template) RETURN properties(t) ORDER BY t.id")
        return [template_from_props(r[0]) for r in rows]

    # ------------------------------------------------------------------ entities

    def upsert_entities(self, entities: Sequence[Entity], hypotheses: Sequence[Hypothesis] = ()) -> int:
        """MERGE entities (props re-set, cluster and template edges moved) and add missing hypotheses.

        Batched in UNWIND chunks of CHUNK rows; idempotent. A hypothesis that
        already exists keeps its state (counters, confidence, status). Every
        template must exist already and every hypothesis must belong to one of
        ``entities`` or to an entity in the graph; otherwise DomainError and
        nothing is written. Returns the number of entities written.
        """
        rows = [entity_props(e) for e in entities]
        hyp_rows = [hypothesis_props(h) for h in hypotheses]
        _no_duplicates((r["id"] for r in rows), "entity id")
        _no_duplicates((r["id"] for r in hyp_rows), "hypothesis id")
        template_ids = sorted({r["template_id"] for r in rows})
        if template_ids:
            found = {r[0] for r in self._rows(_Q_TEMPLATE_IDS, {"ids": template_ids})}
            for r in rows:
                if r["template_id"] not in found:
                    raise UnknownTemplate(r["template_id"], f"entity {r['id']!r}")
        given = {r["id"] for r in rows}
        others = sorted({r["entity_id"] for r in hyp_rows} - given)
        if others:
            found = {r[0] for r in self._rows(_Q_ENTITY_IDS, {"ids": others})}
            missing = [e for e in others if e not in found]
            if missing:
                raise UnknownEntity(missing[0])
        written = 0
        for chunk in _chunks(rows):
            written += int(self._query(_Q_UPSERT_ENTITIES, {"rows": list(chunk)})[0][0])
        for chunk in _chunks(hyp_rows, CHUNK * 4):
            entity_ids = list(dict.fromkeys(r["entity_id"] for r in chunk))
            self._guarded(
                _Q_ADD_HYPOTHESES, {"rows": _stored(chunk), "n": len(chunk), "entity_ids": entity_ids}, lambda: None
            )
        return written

    def count_entities(self) -> int:
        return int(self._rows("MATCH (e:Entity) RETURN count(e)")[0][0])

    def get_entity(self, entity_id: str) -> Entity:
        rows = self._rows("MATCH (e:Entity {id: $id}) RETURN properties(e)", {"id": entity_id})
        if not rows:
            raise UnknownEntity(entity_id)
        return entity_from_props(rows[0][0])

    def get_entities(self, ids: Iterable[str]) -> dict[str, Entity]:
        """Entities by id; ids that do not exist are absent from the result."""
        wanted = list(dict.fromkeys(ids))
        out: dict[str, Entity] = {}
        for chunk in _chunks(wanted, CHUNK * 4):
            q = "UNWIND $ids AS eid MATCH (e:Entity {id: eid}) RETURN properties(e)"
            for (props,) in self._rows(q, {"ids": list(chunk)}):
                out[props["id"]] = entity_from_props(props)
        return out

    def list_entities(self, offset: int = 0, limit: int | None = None) -> list[Entity]:
        """Entities ordered by id, paged."""
        params: dict[str, Any] = {"offset": int(offset)}
        q = "MATCH (e:Entity) RETURN properties(e) ORDER BY e.id SKIP $offset"
        if limit is not None:
            q += " LIMIT $limit"
            params["limit"] = int(limit)
        return [entity_from_props(r[0]) for r in self._rows(q, params)]

    def list_entity_ids(self) -> list[str]:
        return [r[0] for r in self._rows("MATCH (e:Entity) RETURN e.id ORDER BY e.id")]

    def entity_countries(self) -> list[str]:
        """The distinct countries of the catalogue's entities, sorted (what a country filter may name)."""
        return [str(r[0]) for r in self._rows("MATCH (e:Entity) RETURN DISTINCT e.country AS c ORDER BY c")]

    def search_entities(self, text: str, limit: int = 50) -> list[Entity]:
        """Entities whose name or id contains ``text`` (case-insensitive); exact, then prefix matches first.

        The text's slug is matched against ids too, so "bbc dusseldorf" finds
        "BBC Düsseldorf" (id ``bbc-dusseldorf``) without typing the accent.
        """
        needle = text.strip().lower()
        slug = slugify(text) or needle
        q = """
        MATCH (e:Entity)
        WHERE toLower(e.name) CONTAINS $q OR e.id CONTAINS $q OR e.id CONTAINS $slug
        RETURN properties(e),
               CASE WHEN e.id = $q OR e.id = $slug OR toLower(e.name) = $q THEN 0
                    WHEN e.id STARTS WITH $q OR e.id STARTS WITH $slug OR toLower(e.name) STARTS WITH $q THEN 1
                    ELSE 2 END AS rank
        ORDER BY rank, e.name, e.id
        LIMIT $limit
        """
        rows = self._rows(q, {"q": needle, "slug": slug, "limit": int(limit)})
        return [entity_from_props(r[0]) for r in rows]

    # ------------------------------------------------------------------ hypotheses

    def get_hypotheses(self, entity_id: str) -> list[Hypothesis]:
        """The entity's hypotheses ordered by id; [] when it has none; UnknownEntity if no such entity."""
        rows = self._rows(_Q_HYPOTHESES_OF, {"id": entity_id})
        if not rows:
            raise UnknownEntity(entity_id)
        return [hypothesis_from_props(r[1]) for r in rows if r[1] is not None]

    def get_hypotheses_many(self, entity_ids: Iterable[str]) -> dict[str, list[Hypothesis]]:
        """Hypotheses of many entities in few round trips: every requested id maps to a list ([] if none)."""
        wanted = list(dict.fromkeys(entity_ids))
        out: dict[str, list[Hypothesis]] = {eid: [] for eid in wanted}
        for chunk in _chunks(wanted, CHUNK * 4):
            for (props,) in self._rows(_Q_HYPOTHESES_MANY, {"ids": list(chunk)}):
                out[props["entity_id"]].append(hypothesis_from_props(props))
        return out

    def hypothesis_tallies_many(self, entity_ids: Iterable[str]) -> dict[str, list[HypothesisTally]]:
        """Id, pattern, category, ACCEPT count and confidence of every hypothesis of many entities, read as
        columns in few round trips (what the actionable gate and a best-hypothesis pick need, at a tenth of
        the cost of whole hypotheses); confidence at the server's 15 significant digits. Every requested id
        maps to a list ([] if none)."""
        wanted = list(dict.fromkeys(entity_ids))
        out: dict[str, list[HypothesisTally]] = {eid: [] for eid in wanted}
        for chunk in _chunks(wanted, CHUNK * 4):
            for hid, eid, pattern, category, accepts, confidence in self._rows(_Q_TALLIES, {"ids": list(chunk)}):
                out[eid].append(HypothesisTally(hid, eid, pattern, category, int(accepts), float(confidence)))
        return out

    def get_hypothesis(self, hypothesis_id: str) -> Hypothesis:
        rows = self._rows("MATCH (h:Hypothesis {id: $id}) RETURN properties(h)", {"id": hypothesis_id})
        if not rows:
            raise UnknownHypothesis(hypothesis_id)
        return hypothesis_from_props(rows[0][0])

    def save_hypotheses(self, hyps: Sequence[Hypothesis]) -> None:
        """Write the full state (all fields) of existing hypotheses in one round trip, all or nothing."""
        rows = [hypothesis_props(h) for h in hyps]
        if not rows:
            return
        _no_duplicates((r["id"] for r in rows), "hypothesis id")
        self._guarded(
            _Q_SAVE_HYPOTHESES, {"rows": _stored(rows), "n": len(rows)}, lambda: self._raise_missing_hypotheses(rows)
        )

    # ------------------------------------------------------------------ runs and evidence

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
        """Save the hypotheses' state and add the run's evidence trail in ONE query (``apply_runs`` of one).

        All or nothing: a record or hypothesis that does not belong to the
        entity, or a value that cannot be stored, fails the whole call and
        nothing is written. Re-applying the same run is idempotent for the
        evidence (ids are run/system/entity/iteration). ``at`` defaults to the
        store's clock.
        """
        self.apply_runs([RunWrite(entity_id, run_id, system, tuple(hyps), tuple(records))], at=at)

    def apply_runs(self, runs: Sequence[RunWrite], *, at: float | None = None) -> None:
        """``apply_run`` for many entities in ONE query: all or nothing, one write-sequence bump.

        The batch runner's write (engine.discovery.runs): a batch of live runs lands together or not at
        all, and a fenced view refuses it whole (LeaseLost) once its fence has passed on. Each entity
        appears once. A run that does not fit (a hypothesis of another entity, an unknown entity) fails
        the whole call with the same one-line DomainError/UnknownEntity as ``apply_run``.
        """
        if not runs:
            return
        _no_duplicates((r.entity_id for r in runs), "entity")
        hyps: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        for r in runs:
            hyp_rows = [hypothesis_props(h) for h in r.hyps]
            for row in hyp_rows:
                if row["entity_id"] != r.entity_id:
                    raise DomainError(
                        f"hypothesis {row['id']!r} belongs to {row['entity_id']!r}, not {r.entity_id!r}: "
                        "apply a run to one entity's hypotheses only"
                    )
            _no_duplicates((row["id"] for row in hyp_rows), "hypothesis id")
            hyps.extend(hyp_rows)
            records.extend(self._evidence_rows(r.entity_id, r.run_id, r.system, r.records, at))
        _no_duplicates((r["id"] for r in records), "evidence (run, system, entity, iteration)")
        params = {
            "entity_ids": [r.entity_id for r in runs],
            "hyps": _stored(hyps),
            "records": _stored(records),
            "n_runs": len(runs),
            "n_hyps": len(hyps),
            "n_records": len(records),
        }

        def explain() -> None:
            for r in runs:
                self.get_entity(r.entity_id)  # raises UnknownEntity
            self._raise_missing_hypotheses(
                hyps + [{"id": ev["hypothesis_id"], "entity_id": ev["entity_id"]} for ev in records]
            )

        cypher, params = self._fence_cypher(_Q_APPLY_RUNS, params)
        result = self._guarded(cypher, params, explain)
        if not result:
            self._raise_if_fence_lost()
            raise UnknownEntity(runs[0].entity_id)

    def add_evidence(
        self, entity_id: str, run_id: str, system: str, records: Sequence[HopRecord], *, at: float | None = None
    ) -> None:
        """Add evidence records under their hypotheses (all or nothing; idempotent per run/iteration)."""
        self.apply_run(entity_id, run_id, system, (), records, at=at)

    def _evidence_rows(
        self, entity_id: str, run_id: str, system: str, records: Sequence[HopRecord], at: float | None
    ) -> list[dict[str, Any]]:
        check_str(run_id, "run_id")
        check_str(system, "system")
        when = self._clock() if at is None else at
        rows = [evidence_props(entity_id, run_id, system, when, r) for r in records]
        _no_duplicates((r["id"] for r in rows), "evidence (run, system, entity, iteration)")
        return rows

    def get_evidence(self, entity_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The entity's evidence trail, newest first: HopRecord fields plus id, run_id, system, rolled_back, at."""
        q = """
        MATCH (ev:Evidence {entity_id: $id})
        RETURN properties(ev)
        ORDER BY ev.at DESC, ev.iteration DESC, ev.id DESC
        LIMIT $limit
        """
        return [evidence_from_props(r[0]) for r in self._rows(q, {"id": entity_id, "limit": int(limit)})]

    def get_evidence_many(
        self, entity_ids: Iterable[str], *, decisions: Sequence[str] = ()
    ) -> dict[str, list[dict[str, Any]]]:
        """Evidence of many entities in few round trips (chunks of ids through the entity_id index): every
        requested id maps to its rows (EVIDENCE_SUMMARY_FIELDS), newest first as ``get_evidence`` orders
        them; ``decisions`` keeps only those (e.g. ``("ACCEPT",)``), empty keeps all.

        Reads columns, not whole nodes (about ten times cheaper to parse for thousands of rows), so floats
        come back at the server's 15 significant digits: for showing and counting, not for restoring state.
        """
        wanted = list(dict.fromkeys(entity_ids))
        out: dict[str, list[dict[str, Any]]] = {eid: [] for eid in wanted}
        params: dict[str, Any] = {"every": not decisions, "decisions": [str(d) for d in decisions]}
        for chunk in _chunks(wanted, CHUNK * 4):
            for row in self._rows(_Q_EVIDENCE_MANY, {**params, "ids": list(chunk)}):
                found = dict(zip(EVIDENCE_SUMMARY_FIELDS, row))
                found["rolled_back"] = bool(found["rolled_back"])
                out[found["entity_id"]].append(found)
        return out

    def evidence_counts_many(self, entity_ids: Iterable[str], decision: str) -> dict[str, dict[str, int]]:
        """How many evidence rows of ``decision`` each entity has per run id (counted by the server):
        every requested id maps to ``{run_id: n}`` ({} when none)."""
        wanted = list(dict.fromkeys(entity_ids))
        out: dict[str, dict[str, int]] = {eid: {} for eid in wanted}
        for chunk in _chunks(wanted, CHUNK * 4):
            for eid, run_id, n in self._rows(_Q_EVIDENCE_COUNTS, {"ids": list(chunk), "decision": str(decision)}):
                out[eid][str(run_id)] = int(n)
        return out

    def mark_evidence_rolled_back(self, entity_ids: Iterable[str], run_id: str) -> int:
        """Flag the run's evidence of these entities as rolled back (kept, not deleted). Returns how many changed."""
        q = """
        UNWIND $ids AS eid
        MATCH (ev:Evidence {entity_id: eid})
        WHERE ev.run_id = $run_id AND ev.rolled_back = false
        SET ev.rolled_back = true
        RETURN count(ev)
        """
        ids = list(dict.fromkeys(entity_ids))
        if not ids:
            return 0
        return int(self._query(q, {"ids": ids, "run_id": run_id})[0][0])

    # ------------------------------------------------------------------ aggregates

    def cluster_confirmations(self, cluster: str) -> dict[str, int]:
        """Pattern name -> number of entities in ``cluster`` whose hypothesis of that pattern is PROMOTED."""
        q = """
        MATCH (:Cluster {id: $cluster})<-[:IN_CLUSTER]-(e:Entity)-[:HAS_HYPOTHESIS]->(h:Hypothesis)
        WHERE h.status = $promoted
        RETURN h.pattern, count(DISTINCT e)
        """
        rows = self._rows(q, {"cluster": cluster, "promoted": str(Status.PROMOTED)})
        return {pattern: n for pattern, n in rows}

    def stats(self) -> GraphStats:
        def grouped(q: str) -> dict[str, int]:
            return {str(k): int(n) for k, n in sorted(self._rows(q), key=lambda r: (-r[1], str(r[0])))}

        by_status = grouped("MATCH (h:Hypothesis) RETURN h.status, count(h)")
        return GraphStats(
            entities=self.count_entities(),
            hypotheses=sum(by_status.values()),
            by_status=by_status,
            by_template=grouped("MATCH (e:Entity) RETURN e.template_id, count(e)"),
            by_cluster=grouped("MATCH (e:Entity) RETURN e.cluster, count(e)"),
            by_category=grouped("MATCH (h:Hypothesis) RETURN h.category, count(h)"),
        )

    # ------------------------------------------------------------------ snapshot / restore

    def snapshot(self, entity_ids: Iterable[str]) -> dict[str, Any]:
        """JSON-able full hypothesis state of these entities (UnknownEntity if one does not exist)."""
        ids = list(dict.fromkeys(entity_ids))
        found = set(self.get_entities(ids))
        for eid in ids:
            if eid not in found:
                raise UnknownEntity(eid)
        hyps = self.get_hypotheses_many(ids)
        return {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "entities": {eid: [hypothesis_props(h) for h in hyps[eid]] for eid in ids},
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Put back exactly the snapshot's hypothesis state of its entities, in one query.

        Hypotheses of those entities that are not in the snapshot are removed
        (their evidence nodes stay, found by entity id); other entities and the
        evidence trail are not touched. All or nothing.
        """
        if snapshot.get("format") != SNAPSHOT_FORMAT or snapshot.get("version") != SNAPSHOT_VERSION:
            raise DomainError(
                f"not a graph snapshot of version {SNAPSHOT_VERSION} "
                f"(format {snapshot.get('format')!r}, version {snapshot.get('version')!r}): "
                "take it with GraphStore.snapshot"
            )
        entities = snapshot.get("entities")
        if not isinstance(entities, Mapping):
            raise DomainError("graph snapshot has no 'entities' mapping: take it with GraphStore.snapshot")
        rows: list[dict[str, Any]] = []
        ents: list[dict[str, Any]] = []
        for eid, hyp_list in entities.items():
            keep = []
            for props in hyp_list:
                try:
                    h = hypothesis_from_props(props)
                except (KeyError, TypeError, ValueError) as exc:
                    raise DomainError(f"graph snapshot of entity {eid!r} has a malformed hypothesis ({exc})") from None
                if h.entity_id != eid:
                    raise DomainError(
                        f"graph snapshot lists hypothesis {h.id!r} under {eid!r} but it belongs to {h.entity_id!r}"
                    )
                row = hypothesis_props(h)
                rows.append(row)
                keep.append(row["id"])
            ents.append({"id": eid, "keep": keep})
        _no_duplicates((r["id"] for r in rows), "hypothesis id")
        if not ents:
            return
        params = {"entities": ents, "rows": _stored(rows), "n_entities": len(ents), "n_rows": len(rows)}

        def explain() -> None:
            found = set(self.get_entities(e["id"] for e in ents))
            for e in ents:
                if e["id"] not in found:
                    raise UnknownEntity(e["id"])

        cypher, params = self._fence_cypher(_Q_RESTORE, params)
        if not self._guarded(cypher, params, explain):
            self._raise_if_fence_lost()
            raise DomainError("restore wrote nothing although its entities exist: report this as a bug")

    # ------------------------------------------------------------------ helpers

    def _guarded(self, cypher: str, params: dict[str, Any], explain: Callable[[], None]) -> list[list[Any]]:
        """Run a write whose guard divides by zero when it would not touch exactly its rows.

        The server undoes the whole query then; ``explain`` looks up what was
        missing and raises a precise DomainError.
        """
        try:
            return self._query(cypher, params)
        except ResponseError as exc:
            if _GUARD_ERROR not in str(exc):
                raise
        explain()
        raise DomainError("write refused: it referenced nodes that do not exist (nothing was written)")

    def _raise_missing_hypotheses(self, rows: Sequence[Mapping[str, Any]]) -> None:
        ids = list(dict.fromkeys(r["id"] for r in rows))
        owner = {r["id"]: r["entity_id"] for r in rows}
        q = "UNWIND $ids AS hid MATCH (e:Entity)-[:HAS_HYPOTHESIS]->(h:Hypothesis {id: hid}) RETURN h.id, e.id"
        found = {hid: eid for hid, eid in self._rows(q, {"ids": ids})}
        for hid in ids:
            if hid not in found:
                raise UnknownHypothesis(hid)
            if found[hid] != owner[hid]:
                raise DomainError(f"hypothesis {hid!r} belongs to entity {found[hid]!r}, not {owner[hid]!r}")


__all__ = [
    "BUMP_WRITE_SEQ",
    "FENCE_CHECK",
    "Fence",
    "WRITE_FEED_ID",
    "WritePosition",
    "write_epoch",
    "EVIDENCE_SUMMARY_FIELDS",
    "GraphStats",
    "GraphStore",
    "HypothesisTally",
    "UnknownHypothesis",
    "UnknownTemplate",
]
