"""The actionable feed: which entities became actionable, when, on which system and config, on what evidence.

The people the discovery system exists for (sales) need its result as a list, not one entity at a time.
Everything here is derived from what is recorded, nothing is kept of its own:

* **when** an entity became actionable: its live runs (non-shadow metric events, engine.monitoring.events)
  in time order; the first actionable run after a run that was not (or after none) starts a *stay* in the
  feed. Shadow runs (the old system beside a rollout, compares, tuning trials) change nothing and never count.
* **where**: that run's system, stage (``production`` or a rollout's stage key) and config hash, with where
  the config came from when the ops database knows it (the defaults, a live config of the history, the
  handed-over candidate).
* **on what evidence**: the ACCEPT evidence of the entity's live runs up to that one (the graph's evidence
  trail, not rolled back), with links and excerpts; and its best hypothesis now.
* **leaving**: a later live run that is not actionable ends the stay, with the reason (what that run found,
  the REJECTs recorded since the entity became actionable, the gate of that run's config). The graph is read
  too: an entity whose hypotheses no longer pass the gate although its last live run did (a rollback
  restored them) has left as well, with that reason and no known time.

Under the lifecycle (engine.core.model.is_actionable) ACCEPT counters only grow, so REJECTs alone never make
an entity stop being actionable; what does is a stricter gate (a new live config) or a restore. The reason
says which and counts the REJECTs seen since.

Decisions are pure functions over plain rows (``stays``, ``gate_counts``, ``best_hypothesis``,
``accepting_evidence``, ``departure_reason``, ``build_feed``); ``read_live_runs``, ``feed_choices`` and
``load_feed`` are the thin store reads around them: one SQL read of the metric events and a few batched
graph reads (entities, hypothesis tallies, ACCEPT evidence and REJECT counts of up to 2,000 entities per round
trip, read as columns), whatever the feed's size.
"""

from __future__ import annotations

import calendar
import csv
import io
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from engine.core.configs import (
    candidate_config,
    candidate_info,
    candidate_origin,
    live_config,
    live_config_history,
    when,
)
from engine.core.errors import ConfigError
from engine.core.model import Decision, Entity
from engine.core.params import ParameterConfig
from engine.monitoring.events import EXPERIMENT_STAGE_PREFIX, TABLE

#: the longest excerpt a feed row carries in its table column (the evidence detail has the whole text)
EXCERPT_CHARS = 160
#: values an unknown-filter error lists at most before "and N more"
LISTED_CHOICES = 20
#: what a time reads like in the feed's own texts (UTC)
WHEN_FORMAT = "%Y-%m-%d %H:%M UTC"
#: departure causes: a later live run was not actionable / the graph's state no longer passes the gate
LEFT_BY_RUN = "not_actionable_run"
LEFT_BY_STATE = "state_restored"

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


class Tallied(Protocol):
    """What the feed's rules read of a hypothesis (a Hypothesis, or the graph's lighter HypothesisTally)."""

    @property
    def id(self) -> str: ...
    @property
    def pattern(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def accepts(self) -> int: ...
    @property
    def confidence(self) -> float: ...


class FeedError(ConfigError):
    """A feed filter that names nothing (unknown template, category or country) or a time that is not one."""


# --------------------------------------------------------------------------- plain rows


@dataclass(frozen=True)
class LiveRun:
    """One live (non-shadow) run of one entity, as its metric event records it."""

    id: int
    at: float
    entity_id: str
    run_id: str
    system: str
    config_hash: str
    stage_id: str | None
    actionable: bool
    entity_name: str = ""


@dataclass(frozen=True)
class Stay:
    """One stay of an entity in the feed: the run that made it actionable, its runs since, and how it ended.

    ``run_ids`` are the entity's live runs from its first one to ``joined`` (their evidence is what made it
    actionable); ``later_run_ids`` its runs after that, up to ``left`` (their REJECTs are counted); ``left``
    is the first live run after ``joined`` that was not actionable (None: still in the feed as far as the
    runs say); ``last`` the latest actionable run of the stay.
    """

    entity_id: str
    joined: LiveRun
    last: LiveRun
    left: LiveRun | None = None
    run_ids: tuple[str, ...] = ()  # run ids of the entity's live runs up to and including ``joined``
    later_run_ids: tuple[str, ...] = ()  # run ids of its live runs after ``joined`` (up to ``left``)


def stays(runs: Iterable[LiveRun]) -> dict[str, list[Stay]]:
    """Every entity's stays in the feed, oldest first, from its live runs (any order; sorted by time, id).

    A stay starts at an actionable run that follows a run that was not (or no run) and ends at the next run
    that is not actionable. An entity in the feed now has a last stay with ``left`` None.
    """
    by_entity: dict[str, list[LiveRun]] = {}
    for r in sorted(runs, key=lambda r: (r.at, r.id)):
        by_entity.setdefault(r.entity_id, []).append(r)
    out: dict[str, list[Stay]] = {}
    for eid, seq in by_entity.items():
        found: list[Stay] = []
        seen: dict[str, None] = {}  # run ids so far, in order, once each
        current: Stay | None = None
        for r in seq:
            seen[r.run_id] = None
            if current is None:
                if r.actionable:
                    current = Stay(eid, joined=r, last=r, run_ids=tuple(seen))
                continue
            later = tuple(dict.fromkeys((*current.later_run_ids, r.run_id)))
            if r.actionable:
                current = replace(current, last=r, later_run_ids=later)
            else:
                found.append(replace(current, left=r, later_run_ids=later))
                current = None
        if current is not None:
            found.append(current)
        if found:
            out[eid] = found
    return out


def gate_counts(hyps: Iterable[Tallied]) -> tuple[int, int]:
    """(ACCEPTs in total, distinct categories with an ACCEPT): what the actionable gate counts."""
    accepts = 0
    categories: set[str] = set()
    for h in hyps:
        if h.accepts > 0:
            accepts += h.accepts
            categories.add(h.category)
    return accepts, len(categories)


def passes_gate(hyps: Iterable[Tallied], gate: tuple[int, int]) -> bool:
    accepts, categories = gate_counts(hyps)
    return accepts >= gate[0] and categories >= gate[1]


def accepted_categories(hyps: Iterable[Tallied]) -> tuple[str, ...]:
    """The categories whose hypotheses have an ACCEPT, sorted (what the category filter matches)."""
    return tuple(sorted({h.category for h in hyps if h.accepts > 0}))


def best_hypothesis[T: Tallied](hyps: Iterable[T]) -> T | None:
    """The entity's most confident hypothesis (ties: more ACCEPTs, then id); None when it has none."""
    return min(hyps, key=lambda h: (-h.confidence, -h.accepts, h.id), default=None)


@dataclass(frozen=True)
class EvidenceItem:
    """One piece of accepting evidence: what was found, where, when, by which hop."""

    at: float
    run_id: str
    pattern: str
    category: str
    hop_type: str
    decision: str
    url: str
    excerpt: str
    confidence_after: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "run_id": self.run_id,
            "pattern": self.pattern,
            "category": self.category,
            "hop_type": self.hop_type,
            "decision": self.decision,
            "url": self.url,
            "excerpt": self.excerpt,
            "confidence_after": self.confidence_after,
        }


def _item(ev: Mapping[str, Any]) -> EvidenceItem:
    return EvidenceItem(
        at=float(ev["at"]),
        run_id=str(ev["run_id"]),
        pattern=str(ev["pattern"]),
        category=str(ev["category"]),
        hop_type=str(ev["hop_type"]),
        decision=str(ev["decision"]),
        url=str(ev.get("url") or ""),
        excerpt=str(ev.get("excerpt") or ""),
        confidence_after=float(ev["confidence_after"]),
    )


def accepting_evidence(evidence: Iterable[Mapping[str, Any]], run_ids: Iterable[str]) -> list[EvidenceItem]:
    """The ACCEPT evidence of these runs that was not rolled back, oldest first (by time, then iteration)."""
    wanted = set(run_ids)
    rows = [
        ev
        for ev in evidence
        if ev["decision"] == Decision.ACCEPT.value and ev["run_id"] in wanted and not ev.get("rolled_back")
    ]
    rows.sort(key=lambda ev: (float(ev["at"]), str(ev["run_id"]), int(ev.get("iteration") or 0)))
    return [_item(ev) for ev in rows]


def rejects_in(counts: Mapping[str, int], run_ids: Iterable[str]) -> int:
    """How many REJECTs these runs recorded (rolled back or not: they were seen), from REJECTs per run id."""
    return sum(counts.get(r, 0) for r in set(run_ids))


def stamp(at: float | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM UTC`` ("time unknown" when None)."""
    return "time unknown" if at is None else time.strftime(WHEN_FORMAT, time.gmtime(at))


def _plural(n: int, word: str, words: str = "") -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def departure_reason(
    *,
    cause: str,
    run: LiveRun | None,
    hyps: Sequence[Tallied],
    gate: tuple[int, int],
    rejects_since: int,
    rolled_back: bool = False,
) -> str:
    """Why an entity left the feed, in one line an operator reads (plain text, no Markdown).

    ``cause`` LEFT_BY_RUN: ``run`` is the live run that was not actionable; LEFT_BY_STATE: the graph's
    hypotheses no longer pass ``gate`` although the last live run did (``rolled_back``: its accepting
    evidence is marked rolled back). ``gate`` is (min ACCEPTs, min categories) of the config that judged.
    """
    accepts, categories = gate_counts(hyps)
    now = (
        f"{_plural(accepts, 'ACCEPT')} across {_plural(categories, 'category', 'categories')} now; "
        f"the gate needs {gate[0]} across {gate[1]}"
    )
    seen = f"; {_plural(rejects_since, 'REJECT')} since it became actionable"
    if cause == LEFT_BY_RUN and run is not None:
        return (
            f"live run {run.run_id} ({run.system} system, config {run.config_hash}) on {stamp(run.at)} "
            f"was not actionable: {now}{seen}"
        )
    why = "its accepting evidence was rolled back and " if rolled_back else ""
    return f"{why}its hypotheses no longer pass the actionable gate: {now}{seen}"


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class FeedFilter:
    """What the feed shows: stays that began (and departures that happened) in ``[since, until)``, of one
    template, one accepted category, one country (None: any)."""

    since: float | None = None
    until: float | None = None
    template: str | None = None
    category: str | None = None
    country: str | None = None


@dataclass(frozen=True)
class FeedChoices:
    """What a filter may name: the graph's templates, its templates' pattern categories, its countries."""

    templates: tuple[str, ...]
    categories: tuple[str, ...]
    countries: tuple[str, ...]


def _listed(values: Sequence[str]) -> str:
    if not values:
        return "none (the catalogue is empty)"
    shown = ", ".join(values[:LISTED_CHOICES])
    more = len(values) - LISTED_CHOICES
    return shown + (f" and {more} more" if more > 0 else "")


def _pick(value: str | None, valid: Sequence[str], what: str) -> str | None:
    """``value`` as the catalogue spells it (case-insensitive match), or a one-line FeedError listing the valid."""
    if value is None or not str(value).strip():
        return None
    wanted = str(value).strip()
    for v in valid:
        if v.casefold() == wanted.casefold():
            return v
    raise FeedError(f"unknown {what} {wanted!r}: use one of {_listed(valid)}")


def check_filter(f: FeedFilter, choices: FeedChoices) -> FeedFilter:
    """The filter with template, category and country spelt as the catalogue has them; FeedError (one line,
    listing what is valid) for a value that names nothing or a window that ends before it begins."""
    if f.since is not None and f.until is not None and f.until <= f.since:
        raise FeedError(f"the window ends ({stamp(f.until)}) before it begins ({stamp(f.since)}): swap the two times")
    return replace(
        f,
        template=_pick(f.template, choices.templates, "template"),
        category=_pick(f.category, choices.categories, "category"),
        country=_pick(f.country, choices.countries, "country"),
    )


def parse_time(text: str, flag: str = "time", *, end: bool = False) -> float:
    """A date (``2026-12-01``) or an ISO time (``2026-12-01T09:30``, ``...:00Z``, ``...+01:00``) as unix
    seconds; UTC unless it carries an offset. ``end``: a bare date means the end of that day (an ``until``
    of ``2026-12-01`` includes the 1st). Anything else: a one-line FeedError saying what is valid."""
    raw = str(text).strip()
    hint = f"{flag}: {raw!r} is not a date or time: use YYYY-MM-DD or an ISO time such as 2026-12-01T09:30 (UTC)"
    try:
        if _DATE.match(raw):
            t = time.strptime(raw, "%Y-%m-%d")
            return float(calendar.timegm(t)) + (86_400.0 if end else 0.0)
        m = _TIME.match(raw)
        if not m:
            raise ValueError(raw)
        day, hh, mm, ss, zone = m.groups()
        t = time.strptime(f"{day} {hh}:{mm}:{ss or '00'}", "%Y-%m-%d %H:%M:%S")
        at = float(calendar.timegm(t))
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            at -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        return at
    except ValueError:
        raise FeedError(hint) from None


# --------------------------------------------------------------------------- the feed


@dataclass(frozen=True)
class FeedRow:
    """One entity in the feed: when it became actionable, where, and on what evidence."""

    entity_id: str
    entity_name: str
    template: str
    country: str
    became_at: float
    run_id: str
    system: str
    stage_id: str | None
    config_hash: str
    config_origin: str
    categories: tuple[str, ...]  # categories with an ACCEPT now
    accepts: int
    best_pattern: str
    best_category: str
    best_confidence: float | None
    evidence: tuple[EvidenceItem, ...]

    @property
    def excerpt(self) -> str:
        """The newest accepting excerpt, cut to EXCERPT_CHARS for a table cell."""
        text = next((e.excerpt for e in reversed(self.evidence) if e.excerpt), "")
        return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1].rstrip() + "…"

    @property
    def link(self) -> str:
        """The newest accepting evidence's URL ("" when none has one)."""
        return next((e.url for e in reversed(self.evidence) if e.url), "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "entity_name": self.entity_name,
            "template": self.template,
            "country": self.country,
            "became_at": self.became_at,
            "run_id": self.run_id,
            "system": self.system,
            "stage_id": self.stage_id,
            "config_hash": self.config_hash,
            "config_origin": self.config_origin,
            "categories": list(self.categories),
            "accepts": self.accepts,
            "best_pattern": self.best_pattern,
            "best_category": self.best_category,
            "best_confidence": self.best_confidence,
            "evidence": [e.to_dict() for e in self.evidence],
        }


@dataclass(frozen=True)
class Departure:
    """One entity that left the feed: when it joined and left (None when only the graph says so), and why."""

    entity_id: str
    entity_name: str
    template: str
    country: str
    joined_at: float
    left_at: float | None
    cause: str
    reason: str
    run_id: str  # the run that was not actionable ("" when the graph's state says so)
    config_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "entity_name": self.entity_name,
            "template": self.template,
            "country": self.country,
            "joined_at": self.joined_at,
            "left_at": self.left_at,
            "cause": self.cause,
            "reason": self.reason,
            "run_id": self.run_id,
            "config_hash": self.config_hash,
        }


@dataclass(frozen=True)
class Feed:
    """The feed in a window: entities in it now (newest first) and departures (newest first)."""

    rows: tuple[FeedRow, ...]
    departures: tuple[Departure, ...]
    filter: FeedFilter = field(default_factory=FeedFilter)
    live_runs: int = 0  # live runs read to derive it

    def entity_ids(self) -> list[str]:
        return [r.entity_id for r in self.rows]


def _in_window(at: float | None, f: FeedFilter) -> bool:
    if at is None:
        return True
    return (f.since is None or at >= f.since) and (f.until is None or at < f.until)


def _matches(entity: Entity, categories: Sequence[str], f: FeedFilter) -> bool:
    return (
        (f.template is None or entity.template_id == f.template)
        and (f.country is None or entity.country == f.country)
        and (f.category is None or f.category in categories)
    )


def wanted_entities(all_stays: Mapping[str, Sequence[Stay]], f: FeedFilter) -> list[str]:
    """Entities whose current stay or a departure can fall in the window (what ``build_feed`` needs read)."""
    out = []
    for eid, seq in all_stays.items():
        last = seq[-1]
        if (last.left is None and (f.until is None or last.joined.at < f.until)) or any(
            s.left is not None and _in_window(s.left.at, f) for s in seq
        ):
            out.append(eid)
    return out


def build_feed(
    all_stays: Mapping[str, Sequence[Stay]],
    entities: Mapping[str, Entity],
    hyps: Mapping[str, Sequence[Tallied]],
    evidence: Mapping[str, Sequence[Mapping[str, Any]]],
    rejects: Mapping[str, Mapping[str, int]],
    *,
    gates: Mapping[str, tuple[int, int]],
    default_gate: tuple[int, int],
    origins: Mapping[str, str],
    f: FeedFilter = FeedFilter(),
    live_runs: int = 0,
    check_state: bool = True,
) -> Feed:
    """The feed of ``f`` (pure): ``all_stays`` from ``stays``, the graph's entities, hypotheses, ACCEPT evidence
    rows and REJECTs per run id of the entities concerned, the gate of each config hash (default
    ``default_gate``) and where each config came from.

    ``check_state``: compare the graph's hypotheses now with the gate (a restored entity leaves). Only right
    when the runs read are the latest ones: a window that ends before the last live run shows the feed as it
    stood then, and the graph now says nothing about that."""
    rows: list[FeedRow] = []
    gone: list[Departure] = []
    for eid, seq in all_stays.items():
        entity = entities.get(eid)
        h = list(hyps.get(eid, ()))
        ev = evidence.get(eid, ())
        rej = rejects.get(eid, {})
        cats = accepted_categories(h)
        if entity is None or not _matches(entity, cats, f):
            continue  # (None: removed from the catalogue since, nothing left to sell to)
        for s in seq:
            if s.left is None:
                continue
            if _in_window(s.left.at, f):
                gate = gates.get(s.left.config_hash, default_gate)
                gone.append(
                    Departure(
                        eid, entity.name, entity.template_id, entity.country, s.joined.at, s.left.at, LEFT_BY_RUN,
                        departure_reason(
                            cause=LEFT_BY_RUN, run=s.left, hyps=h, gate=gate,
                            rejects_since=rejects_in(rej, s.later_run_ids),
                        ),
                        s.left.run_id, s.left.config_hash,
                    )
                )  # fmt: skip
        last = seq[-1]
        if last.left is not None or (f.until is not None and last.joined.at >= f.until):
            continue
        gate = gates.get(last.last.config_hash, default_gate)
        if check_state and not passes_gate(h, gate):
            rolled = any(e.get("rolled_back") and e["decision"] == Decision.ACCEPT.value for e in ev)
            gone.append(
                Departure(
                    eid, entity.name, entity.template_id, entity.country, last.joined.at, None, LEFT_BY_STATE,
                    departure_reason(
                        cause=LEFT_BY_STATE, run=None, hyps=h, gate=gate,
                        rejects_since=rejects_in(rej, last.later_run_ids), rolled_back=rolled,
                    ),
                    "", last.last.config_hash,
                )
            )  # fmt: skip
            continue
        if not _in_window(last.joined.at, f):
            continue
        best = best_hypothesis(h)
        accepts, _ = gate_counts(h)
        rows.append(
            FeedRow(
                entity_id=eid,
                entity_name=entity.name,
                template=entity.template_id,
                country=entity.country,
                became_at=last.joined.at,
                run_id=last.joined.run_id,
                system=last.joined.system,
                stage_id=last.joined.stage_id,
                config_hash=last.joined.config_hash,
                config_origin=origins.get(last.joined.config_hash, ""),
                categories=cats,
                accepts=accepts,
                best_pattern=best.pattern if best else "",
                best_category=best.category if best else "",
                best_confidence=best.confidence if best else None,
                evidence=tuple(accepting_evidence(ev, last.run_ids)),
            )
        )
    rows.sort(key=lambda r: (-r.became_at, r.entity_id))
    gone.sort(key=lambda d: (-(d.left_at if d.left_at is not None else float("inf")), d.entity_id))
    return Feed(tuple(rows), tuple(gone), f, live_runs)


# --------------------------------------------------------------------------- tables (CSV, the CLI, the console)

#: one row per entity in the feed: the CSV's columns, the CLI table's and the console's (as words)
FEED_COLUMNS = (
    "became_actionable", "entity", "entity_id", "template", "country", "categories", "system", "stage", "config",
    "config_origin", "run_id", "best_hypothesis", "best_category", "best_confidence", "accepts",
    "evidence_count", "evidence_url", "evidence_excerpt",
)  # fmt: skip
#: one row per departure
LEFT_COLUMNS = (
    "left", "entity", "entity_id", "template", "country", "joined", "cause", "reason", "run_id", "config",
)  # fmt: skip
#: one row per piece of accepting evidence of one entity (the detail)
EVIDENCE_COLUMNS = ("found", "run_id", "pattern", "category", "hop_type", "url", "excerpt", "confidence_after")
#: how times read in the tables: ISO 8601 UTC to the second (sorts as text, parses everywhere)
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def iso(at: float | None) -> str:
    """``at`` as ISO 8601 UTC (``2026-12-01T10:00:00Z``); "" when unknown."""
    return "" if at is None else time.strftime(ISO_FORMAT, time.gmtime(at))


def feed_rows(feed: Feed) -> list[dict[str, Any]]:
    """The feed as plain table rows (FEED_COLUMNS), newest first; times as ISO text, categories joined."""
    return [
        {
            "became_actionable": iso(r.became_at),
            "entity": r.entity_name,
            "entity_id": r.entity_id,
            "template": r.template,
            "country": r.country,
            "categories": "; ".join(r.categories),
            "system": r.system,
            "stage": r.stage_id or "",
            "config": r.config_hash,
            "config_origin": r.config_origin,
            "run_id": r.run_id,
            "best_hypothesis": r.best_pattern,
            "best_category": r.best_category,
            "best_confidence": r.best_confidence,
            "accepts": r.accepts,
            "evidence_count": len(r.evidence),
            "evidence_url": r.link,
            "evidence_excerpt": r.excerpt,
        }
        for r in feed.rows
    ]


def left_rows(feed: Feed) -> list[dict[str, Any]]:
    """The departures as plain table rows (LEFT_COLUMNS), newest first; an unknown time is ""."""
    return [
        {
            "left": iso(d.left_at),
            "entity": d.entity_name,
            "entity_id": d.entity_id,
            "template": d.template,
            "country": d.country,
            "joined": iso(d.joined_at),
            "cause": d.cause,
            "reason": d.reason,
            "run_id": d.run_id,
            "config": d.config_hash,
        }
        for d in feed.departures
    ]


def evidence_rows(row: FeedRow) -> list[dict[str, Any]]:
    """The accepting evidence of one entity (EVIDENCE_COLUMNS), oldest first."""
    return [
        {
            "found": iso(e.at),
            "run_id": e.run_id,
            "pattern": e.pattern,
            "category": e.category,
            "hop_type": e.hop_type,
            "url": e.url,
            "excerpt": e.excerpt,
            "confidence_after": e.confidence_after,
        }
        for e in row.evidence
    ]


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """RFC 4180 CSV with a header line; None is an empty cell. Stored text is data: a cell that a spreadsheet
    would run as a formula (=, +, -, @ first) gets a leading apostrophe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_cell(r.get(c)) for c in columns])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


# --------------------------------------------------------------------------- store edges


def read_live_runs(ops: Any, until: float | None = None) -> list[LiveRun]:
    """Every live (non-shadow) run recorded before ``until``, oldest first: one SQL read of the light columns.

    The whole history is read (not only the window): whether a run in the window *made* an entity
    actionable depends on the run before it.
    """
    sql = (
        f"SELECT id, at, entity_id, run_id, system, config_hash, stage_id, actionable, entity_name FROM {TABLE} "
        f"WHERE shadow = 0 AND (stage_id IS NULL OR stage_id NOT LIKE '{EXPERIMENT_STAGE_PREFIX}%')"
    )
    params: list[Any] = []
    if until is not None:
        sql += " AND at < ?"
        params.append(float(until))
    sql += " ORDER BY at, id"
    with ops.connect() as db:
        rows = db.conn.execute(sql, params).fetchall()
    return [
        LiveRun(
            id=r[0], at=float(r[1]), entity_id=r[2], run_id=r[3], system=r[4], config_hash=r[5], stage_id=r[6],
            actionable=bool(r[7]), entity_name=r[8] or "",
        )
        for r in rows
    ]  # fmt: skip


def last_live_run_at(ops: Any) -> float | None:
    """When the latest live run was recorded (None before any)."""
    with ops.connect() as db:
        row = db.conn.execute(f"SELECT MAX(at) FROM {TABLE} WHERE shadow = 0").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def feed_choices(graph: Any) -> FeedChoices:
    """What the filters may name, from the graph: its templates, their pattern categories, entity countries."""
    templates = graph.list_templates()
    categories = sorted({p.category for t in templates for p in t.patterns})
    return FeedChoices(
        templates=tuple(t.id for t in templates),
        categories=tuple(categories),
        countries=tuple(c for c in graph.entity_countries() if c),
    )


def _gate(cfg: ParameterConfig) -> tuple[int, int]:
    return int(cfg.actionable_min_accepts), int(cfg.actionable_min_categories)


def config_book(ops: Any) -> tuple[dict[str, tuple[int, int]], dict[str, str], tuple[int, int]]:
    """(gate per known config hash, where each known config came from, the live config's gate).

    Known: the defaults, every config that was live (engine.core.configs.live_config_history) and the
    handed-over candidate. A run on another config (a file given to `discover`, a rollout's --config-file)
    is judged by the live config's gate and its origin is left empty.
    """
    defaults = ParameterConfig()
    gates = {defaults.hash(): _gate(defaults)}
    origins = {defaults.hash(): "the defaults"}
    cand = candidate_config(ops)
    info = candidate_info(ops)
    if cand is not None and info:
        gates[cand.hash()] = _gate(cand)
        origins[cand.hash()] = f"rollout candidate, {candidate_origin(info)}"
    for entry in reversed(live_config_history(ops)):  # oldest first: a newer promotion of a hash wins
        if entry.config is not None:
            gates[entry.hash] = _gate(entry.config)
        run = f"rollout run {entry.run_id}" if entry.run_id is not None else "a rollout"
        state = "the live config" if entry.current else "a past live config"
        origins[entry.hash] = f"{state}, promoted by {run} on {when(entry.at)}"
    return gates, origins, _gate(live_config(ops))


def load_feed(graph: Any, ops: Any, f: FeedFilter = FeedFilter(), *, check: bool = True) -> Feed:
    """The feed of ``f`` from the stores: one SQL read of the live runs, then batched graph reads (entities,
    hypothesis tallies, ACCEPT evidence, REJECTs per run) of only the entities whose stays or departures can
    fall in the window.

    ``check``: the filter's template, category and country are checked against the catalogue first
    (``check_filter``: an unknown one is a one-line FeedError listing the valid values).
    """
    if check:
        f = check_filter(f, feed_choices(graph))
    runs = read_live_runs(ops, f.until)
    latest = last_live_run_at(ops)
    all_stays = stays(runs)
    ids = wanted_entities(all_stays, f)
    entities = graph.get_entities(ids) if ids else {}
    hyps = graph.hypothesis_tallies_many(ids) if ids else {}
    evidence = graph.get_evidence_many(ids, decisions=(Decision.ACCEPT.value,)) if ids else {}
    rejects = graph.evidence_counts_many(ids, Decision.REJECT.value) if ids else {}
    gates, origins, default_gate = config_book(ops)
    return build_feed(
        {eid: all_stays[eid] for eid in ids},
        entities,
        hyps,
        evidence,
        rejects,
        gates=gates,
        default_gate=default_gate,
        origins=origins,
        f=f,
        live_runs=len(runs),
        check_state=f.until is None or latest is None or latest < f.until,
    )


__all__ = [
    "EVIDENCE_COLUMNS",
    "FEED_COLUMNS",
    "LEFT_COLUMNS",
    "evidence_rows",
    "feed_rows",
    "iso",
    "left_rows",
    "to_csv",
    "Departure",
    "EvidenceItem",
    "Feed",
    "FeedChoices",
    "FeedError",
    "FeedFilter",
    "FeedRow",
    "LEFT_BY_RUN",
    "LEFT_BY_STATE",
    "LiveRun",
    "Stay",
    "Tallied",
    "accepted_categories",
    "accepting_evidence",
    "best_hypothesis",
    "build_feed",
    "check_filter",
    "config_book",
    "departure_reason",
    "feed_choices",
    "gate_counts",
    "last_live_run_at",
    "load_feed",
    "parse_time",
    "read_live_runs",
    "stays",
    "wanted_entities",
]
