"""The row codec: how entities, templates, hypotheses and evidence are stored as FalkorDB node properties.

Every writer (GraphStore, the batch client) encodes with the ``*_props``
functions here, and every reader decodes with ``*_from_props`` (a node's
``properties()`` map) or, on the batch read's hot path, ``hypothesis_from_row``
(one row of ``ROW_RETURN`` columns in the server's verbose reply format).
The encoders validate (finite numbers, integers, strings without NUL) and
raise DomainError naming the offending field.

Floats: FalkorDB stores doubles exactly but replies with 15 significant
digits (0.1 + 0.2 reads back as 0.3). So every node written with floats also
carries ``EXACT_FLOATS``, a JSON sidecar of their exact values; a reader puts a
sidecar value back only when the stored double still is that value to 15
digits, so a property someone changed by hand wins over a stale sidecar. Both
decoders follow that one rule (``exact_value``); the row decoder inlines its
common case for speed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from engine.core.errors import describe
from engine.core.model import (
    Channel,
    Decision,
    Depth,
    DomainError,
    Entity,
    HopRecord,
    HopType,
    Hypothesis,
    Pattern,
    Status,
    Template,
)

# --------------------------------------------------------------------------- validation


def check_finite(value: Any, what: str) -> float:
    """``value`` as a float; DomainError unless it is a finite number (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DomainError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise DomainError(f"{what} must be a finite number, got {value!r}")
    return number


def check_int(value: Any, what: str) -> int:
    """``value`` itself; DomainError unless it is an int (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DomainError(f"{what} must be an integer, got {value!r}")
    return value


#: the longest id the graph stores: FalkorDB's exact-match index does not find a key longer than 4,096
#: bytes, so a longer id would be written and then never found again (measured); 1,024 characters of
#: UTF-8 stay under it
MAX_ID_CHARS = 1024


def check_id(value: Any, what: str) -> str:
    """``value`` itself; DomainError unless it is a string id the graph can store and find again."""
    text = check_str(value, what)
    if not text or len(text) > MAX_ID_CHARS:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise DomainError(
            f"{what} {shown!r} is {len(text):,} characters: ids must have 1 to {MAX_ID_CHARS:,} characters"
        )
    return text


def check_str(value: Any, what: str) -> str:
    """``value`` itself; DomainError unless it is a string the graph can store."""
    if not isinstance(value, str):
        raise DomainError(f"{what} must be a string, got {value!r}")
    if "\x00" in value:
        # FalkorDB's parameter parser stops at NUL: the value could not be stored faithfully
        raise DomainError(f"{what} contains a NUL character, which the graph cannot store: strip it first")
    return value


# --------------------------------------------------------------------------- exact floats

#: property holding the exact repr of a node's float properties (see the module docstring)
EXACT_FLOATS = "exact_floats"


def exact_value(stored: Any, exact: Any) -> Any:
    """The sidecar's ``exact`` value when the ``stored`` double still is it (to the 15 digits the
    server shows), else ``stored``: if someone changed the property by hand, what they wrote wins."""
    if (
        isinstance(stored, (int, float))
        and isinstance(exact, (int, float))
        and math.isclose(stored, exact, rel_tol=1e-13, abs_tol=1e-300)
    ):
        return float(exact)
    return stored


def exact_floats_sidecar(floats: Mapping[str, float]) -> str:
    """The ``EXACT_FLOATS`` value for these float properties (keys sorted: equal values, equal text)."""
    return json.dumps(dict(floats), sort_keys=True)


def with_exact_floats(props: dict[str, Any]) -> dict[str, Any]:
    """Node properties as written: with the sidecar of their float values."""
    return {**props, EXACT_FLOATS: exact_floats_sidecar({k: v for k, v in props.items() if isinstance(v, float)})}


def without_exact_floats(props: Mapping[str, Any]) -> dict[str, Any]:
    """Node properties with their floats put back to full precision (and the sidecar removed)."""
    out = dict(props)
    raw = out.pop(EXACT_FLOATS, None)
    if not raw:
        return out
    try:
        exact = json.loads(raw)
    except ValueError:
        return out
    for key, value in exact.items():
        out[key] = exact_value(out.get(key), value)
    return out


# --------------------------------------------------------------------------- entities and templates


def entity_props(e: Entity) -> dict[str, Any]:
    """Every field of an Entity as node properties (validated)."""
    where = f"entity {e.id[:40]!r}" if isinstance(e.id, str) else f"entity {e.id!r}"
    return {
        "id": check_id(e.id, f"{where} id"),
        "name": check_str(e.name, f"{where} name"),
        "sport": check_str(e.sport, f"{where} sport"),
        "country": check_str(e.country, f"{where} country"),
        "type": check_str(e.type, f"{where} type"),
        "tier": check_int(e.tier, f"{where} tier"),
        "cluster": check_str(e.cluster, f"{where} cluster"),
        "template_id": check_str(e.template_id, f"{where} template_id"),
    }


def entity_from_props(p: Mapping[str, Any]) -> Entity:
    """The Entity of a node's properties (missing optional fields default to empty)."""
    return Entity(
        id=p["id"],
        name=p["name"],
        sport=p.get("sport", ""),
        country=p.get("country", ""),
        type=p.get("type", ""),
        tier=int(p.get("tier", 0)),
        cluster=p.get("cluster", ""),
        template_id=p.get("template_id", ""),
    )


def template_props(t: Template) -> dict[str, Any]:
    """A Template as node properties: patterns and channels as JSON text."""
    patterns = [
        {
            "name": p.name,
            "category": p.category,
            "weight": check_finite(p.weight, f"template {t.id!r} pattern {p.name!r} weight"),
            "keywords": list(p.keywords),
        }
        for p in t.patterns
    ]
    channels = [{"hop_type": str(HopType(c.hop_type)), "priority": int(c.priority)} for c in t.channels]
    return {
        "id": check_str(t.id, "template id"),
        "name": check_str(t.name, f"template {t.id!r} name"),
        "description": check_str(t.description, f"template {t.id!r} description"),
        "patterns": json.dumps(patterns, ensure_ascii=False),
        "channels": json.dumps(channels, ensure_ascii=False),
    }


def template_from_props(p: Mapping[str, Any]) -> Template:
    """The Template of a node's properties."""
    patterns = tuple(
        Pattern(
            name=d["name"], category=d["category"], weight=float(d["weight"]), keywords=tuple(d.get("keywords", ()))
        )
        for d in json.loads(p.get("patterns") or "[]")
    )
    channels = tuple(
        Channel(hop_type=HopType(d["hop_type"]), priority=int(d["priority"]))
        for d in json.loads(p.get("channels") or "[]")
    )
    return Template(
        id=p["id"], name=p.get("name", ""), patterns=patterns, channels=channels, description=p.get("description", "")
    )


# --------------------------------------------------------------------------- hypotheses

#: the stored properties of a Hypothesis, in its dataclass field order (tests/test_rows.py checks both)
HYPOTHESIS_FIELDS = (
    "id", "entity_id", "pattern", "category", "prior", "confidence", "status", "accepts",
    "weak_accepts", "rejects", "no_progress", "last_delta", "recent", "created_at", "updated_at",
    "killed_reason",
)  # fmt: skip

#: the float fields of a Hypothesis (each has an exact value in the sidecar)
HYPOTHESIS_FLOATS = ("prior", "confidence", "last_delta", "created_at", "updated_at")


def hypothesis_props(h: Hypothesis) -> dict[str, Any]:
    """Every field of a Hypothesis as FalkorDB property values (JSON-able, validated)."""
    where = f"hypothesis {h.id!r}"
    try:
        status = Status(h.status)
        recent = [str(Decision(d)) for d in h.recent]
    except ValueError as exc:
        raise DomainError(f"{where}: {exc}") from None
    return {
        "id": check_str(h.id, f"{where} id"),
        "entity_id": check_str(h.entity_id, f"{where} entity_id"),
        "pattern": check_str(h.pattern, f"{where} pattern"),
        "category": check_str(h.category, f"{where} category"),
        "prior": check_finite(h.prior, f"{where} prior"),
        "confidence": check_finite(h.confidence, f"{where} confidence"),
        "status": str(status),
        "accepts": check_int(h.accepts, f"{where} accepts"),
        "weak_accepts": check_int(h.weak_accepts, f"{where} weak_accepts"),
        "rejects": check_int(h.rejects, f"{where} rejects"),
        "no_progress": check_int(h.no_progress, f"{where} no_progress"),
        "last_delta": check_finite(h.last_delta, f"{where} last_delta"),
        "recent": recent,
        "created_at": check_finite(h.created_at, f"{where} created_at"),
        "updated_at": check_finite(h.updated_at, f"{where} updated_at"),
        "killed_reason": check_str(h.killed_reason, f"{where} killed_reason"),
    }


def hypothesis_from_props(p: Mapping[str, Any]) -> Hypothesis:
    """The Hypothesis of a node's properties (the canonical decoder; floats exact via the sidecar)."""
    p = without_exact_floats(p)
    return Hypothesis(
        id=p["id"],
        entity_id=p["entity_id"],
        pattern=p["pattern"],
        category=p["category"],
        prior=float(p["prior"]),
        confidence=float(p["confidence"]),
        status=Status(p.get("status", Status.ACTIVE)),
        accepts=int(p.get("accepts", 0)),
        weak_accepts=int(p.get("weak_accepts", 0)),
        rejects=int(p.get("rejects", 0)),
        no_progress=int(p.get("no_progress", 0)),
        last_delta=float(p.get("last_delta", 0.0)),
        recent=tuple(Decision(d) for d in (p.get("recent") or ())),
        created_at=float(p.get("created_at", 0.0)),
        updated_at=float(p.get("updated_at", 0.0)),
        killed_reason=p.get("killed_reason", "") or "",
    )


# --------------------------------------------------------------------------- the verbose hypothesis row
# The batch read asks for these columns in the server's verbose reply format (no --compact):
# strings and integers arrive as native RESP values, doubles as their text, so hiredis does
# the parsing in C and the client's per-value type dispatch is skipped (measured ~3x faster
# end to end for 28k hypotheses). (toJSON would be faster still but the server does not
# escape quotes in strings.)

#: columns of a verbose hypothesis row: every stored field, then the sidecar
ROW_COLUMNS = HYPOTHESIS_FIELDS + (EXACT_FLOATS,)
#: the RETURN clause of a query that binds the hypothesis node as ``h``
ROW_RETURN = " RETURN " + ", ".join(f"h.{c}" for c in ROW_COLUMNS)
#: column name -> index in a row
ROW_INDEX = {name: i for i, name in enumerate(ROW_COLUMNS)}

# index constants, derived once (the decoder below runs once per hypothesis of a batch read)
ROW_ID = ROW_INDEX["id"]
ROW_EXACT_FLOATS = ROW_INDEX[EXACT_FLOATS]
_ENTITY_ID, _PATTERN, _CATEGORY = ROW_INDEX["entity_id"], ROW_INDEX["pattern"], ROW_INDEX["category"]
_STATUS_COL, _RECENT, _KILLED = ROW_INDEX["status"], ROW_INDEX["recent"], ROW_INDEX["killed_reason"]
_ACCEPTS, _WEAK, _REJECTS, _NO_PROGRESS = (
    ROW_INDEX["accepts"], ROW_INDEX["weak_accepts"], ROW_INDEX["rejects"], ROW_INDEX["no_progress"]
)  # fmt: skip
_FLOAT_COLUMNS = tuple((name, ROW_INDEX[name]) for name in HYPOTHESIS_FLOATS)
_STATUS = {str(s): s for s in Status}
_DECISION = {str(d): d for d in Decision}


def _row_floats(r: Sequence[Any]) -> list[float]:
    """The HYPOTHESIS_FLOATS of a verbose row, exact (``exact_value``'s rule).

    Inlined for speed (it is most of a batch read's client time): in the common case the
    sidecar value prints as the reply's 15-digit text, and is taken without further ado.
    """
    raw = r[ROW_EXACT_FLOATS]
    exact: dict[str, Any] = {}
    if raw:
        try:
            exact = json.loads(raw)
        except ValueError:
            exact = {}
    vals = []
    for name, i in _FLOAT_COLUMNS:
        text, e = r[i], exact.get(name)
        if type(e) is float and text is not None and f"{e:.15g}" == text:  # the common case, fast
            vals.append(e)
            continue
        vals.append(exact_value(0.0 if text is None else float(text), e))
    return vals


def hypothesis_from_row(r: Sequence[Any]) -> Hypothesis:
    """A Hypothesis from one verbose-format row of ROW_COLUMNS (same result as hypothesis_from_props).

    The verbose format prints a list as ``[A, B]``; ``recent`` only ever holds
    Decision names, which contain neither commas nor brackets.
    """
    recent = r[_RECENT]
    status = r[_STATUS_COL]
    try:
        prior, confidence, last_delta, created_at, updated_at = _row_floats(r)
        # positional, in Hypothesis field order (cheaper than keywords in this loop)
        return Hypothesis(
            r[ROW_ID], r[_ENTITY_ID], r[_PATTERN], r[_CATEGORY], prior, confidence,
            _STATUS[status] if status is not None else Status.ACTIVE,
            r[_ACCEPTS] or 0, r[_WEAK] or 0, r[_REJECTS] or 0, r[_NO_PROGRESS] or 0, last_delta,
            tuple(_DECISION[d] for d in recent[1:-1].split(", ")) if recent and len(recent) > 2 else (),
            created_at, updated_at, r[_KILLED] or "",
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise DomainError(f"hypothesis {r[ROW_ID]!r} has an unreadable stored value ({describe(exc)})") from None


# --------------------------------------------------------------------------- evidence


def evidence_id(run_id: str, system: str, entity_id: str, iteration: int) -> str:
    """The id of one evidence record: re-applying a run writes the same ids."""
    return f"{run_id}:{system}:{entity_id}:{iteration}"


def evidence_props(entity_id: str, run_id: str, system: str, at: float, r: HopRecord) -> dict[str, Any]:
    """One HopRecord of a run as Evidence node properties (validated)."""
    where = f"evidence of run {run_id!r} iteration {r.iteration!r}"
    try:
        hop_type = str(HopType(r.hop_type))
        depth = int(Depth(r.depth))
        decision = str(Decision(r.decision))
    except ValueError as exc:
        raise DomainError(f"{where}: {exc}") from None
    if r.error is not None and not isinstance(r.error, str):
        raise DomainError(f"{where} error must be a string or None, got {r.error!r}")
    props: dict[str, Any] = {
        "id": evidence_id(run_id, system, entity_id, check_int(r.iteration, f"{where} iteration")),
        "entity_id": entity_id,
        "run_id": run_id,
        "system": system,
        "at": check_finite(at, f"{where} at"),
        "rolled_back": False,
        "iteration": r.iteration,
        "hypothesis_id": check_str(r.hypothesis_id, f"{where} hypothesis_id"),
        "pattern": check_str(r.pattern, f"{where} pattern"),
        "category": check_str(r.category, f"{where} category"),
        "eig": check_finite(r.eig, f"{where} eig"),
        "hop_type": hop_type,
        "depth": depth,
        "decision": decision,
        "delta": check_finite(r.delta, f"{where} delta"),
        "confidence_after": check_finite(r.confidence_after, f"{where} confidence_after"),
        "cost_usd": check_finite(r.cost_usd, f"{where} cost_usd"),
        "latency_s": check_finite(r.latency_s, f"{where} latency_s"),
        "url": check_str(r.url, f"{where} url"),
        "excerpt": check_str(r.excerpt, f"{where} excerpt"),
    }
    if r.error is not None:
        props["error"] = r.error  # FalkorDB drops null properties; absent reads back as None
    return props


EVIDENCE_FIELDS = (
    "id", "entity_id", "run_id", "system", "at", "rolled_back", "iteration", "hypothesis_id", "pattern",
    "category", "eig", "hop_type", "depth", "decision", "delta", "confidence_after", "cost_usd",
    "latency_s", "url", "excerpt", "error",
)  # fmt: skip


def evidence_from_props(p: Mapping[str, Any]) -> dict[str, Any]:
    """One evidence trail row (EVIDENCE_FIELDS) of an Evidence node's properties, floats exact."""
    p = without_exact_floats(p)
    row = {k: p.get(k) for k in EVIDENCE_FIELDS}
    row["rolled_back"] = bool(row["rolled_back"])
    return row


__all__ = [
    "EVIDENCE_FIELDS",
    "EXACT_FLOATS",
    "HYPOTHESIS_FIELDS",
    "HYPOTHESIS_FLOATS",
    "ROW_COLUMNS",
    "ROW_EXACT_FLOATS",
    "ROW_ID",
    "ROW_INDEX",
    "ROW_RETURN",
    "check_finite",
    "check_int",
    "check_str",
    "entity_from_props",
    "entity_props",
    "evidence_from_props",
    "evidence_id",
    "evidence_props",
    "exact_value",
    "hypothesis_from_props",
    "hypothesis_from_row",
    "hypothesis_props",
    "template_from_props",
    "template_props",
    "with_exact_floats",
    "without_exact_floats",
]
