"""Plain data -> tables and labels for the pages.

Pure functions over engine values (no Streamlit, no stores), so the pages stay
a description of the UI and these can be unit-tested. "Compute the data, then
draw it": the pages hand these frames to st.dataframe / altair.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from engine.core.model import Entity, Hypothesis, Status

#: Order in which statuses are shown (lifecycle order, KILLED last).
STATUS_ORDER: tuple[str, ...] = tuple(s.value for s in Status)

#: One colour per status, used by every chart so a status looks the same everywhere.
STATUS_COLOURS: dict[str, str] = {
    Status.ACTIVE.value: "#4c78a8",
    Status.PROMOTED.value: "#54a24b",
    Status.DEGRADED.value: "#e45756",
    Status.SATURATED.value: "#f58518",
    Status.KILLED.value: "#79706e",
}


@dataclass(frozen=True)
class Tile:
    """One metric tile of the Overview."""

    label: str
    value: int
    help: str = ""


def status_counts(by_status: Mapping[str, int]) -> dict[str, int]:
    """Every status in lifecycle order, 0 where the store had none."""
    return {s: int(by_status.get(s, 0)) for s in STATUS_ORDER}


def overview_tiles(stats) -> list[Tile]:
    """The Overview's metric tiles from a GraphStats (entities, hypotheses, by_*)."""
    counts = status_counts(stats.by_status)
    return [
        Tile("Entities", stats.entities, "sports organisations in the graph"),
        Tile("Hypotheses", stats.hypotheses, "one per (entity, template pattern)"),
        Tile("Promoted", counts[Status.PROMOTED], "confidence >= 0.70 with >= 2 accepts"),
        Tile("Active", counts[Status.ACTIVE], "still chosen by discovery"),
        Tile("Degraded", counts[Status.DEGRADED], "confidence < 0.30 with >= 2 rejects"),
        Tile("Saturated", counts[Status.SATURATED], "3 of the last 5 attempts made no progress"),
        Tile("Killed", counts[Status.KILLED], "stopped by an operator or contradicting evidence"),
        Tile("Templates", len(stats.by_template), "templates with at least one entity"),
        Tile("Clusters", len(stats.by_cluster), "clusters with at least one entity"),
    ]


def counts_frame(counts: Mapping[str, int], key: str, value: str = "count", *, top: int | None = None) -> pd.DataFrame:
    """A two-column frame from a name -> count mapping, largest first (ties by name)."""
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if top is not None:
        rows = rows[:top]
    return pd.DataFrame(rows, columns=[key, value])


def status_frame(by_status: Mapping[str, int]) -> pd.DataFrame:
    """Hypotheses by status in lifecycle order (every status present)."""
    return pd.DataFrame(list(status_counts(by_status).items()), columns=["status", "hypotheses"])


def entity_label(entity: Entity) -> str:
    """How an entity is named in pickers: 'Arsenal FC · arsenal-fc'."""
    return f"{entity.name} · {entity.id}"


def search_placeholder(example: Entity | None) -> str:
    """The search box's hint, naming an entity this graph really holds (a made-up example finds nothing)."""
    return f"name or id, e.g. {example.name}" if example is not None else "name or id"


def match_caption(found: int, limit: int) -> str:
    """Caption of a search that asked the store for ``limit + 1`` matches and got ``found``."""
    if found > limit:
        return f"More than {limit} entities match; showing the first {limit}. Type more to narrow it down."
    return f"{found} entit{'y matches' if found == 1 else 'ies match'}"


def entity_details(entity: Entity) -> dict[str, str]:
    """The fields shown on an entity card (its id is shown with the name), in display order."""
    return {
        "Type": entity.type,
        "Sport": entity.sport,
        "Country": entity.country,
        "Tier": str(entity.tier),
        "Cluster": entity.cluster,
        "Template": entity.template_id,
    }


def filter_hypotheses(
    hyps: Iterable[Hypothesis],
    statuses: Sequence[str] = (),
    categories: Sequence[str] = (),
) -> list[Hypothesis]:
    """Hypotheses whose status and category are among those chosen (an empty choice keeps all)."""
    wanted_status = {str(s) for s in statuses}
    wanted_category = set(categories)
    return [
        h
        for h in hyps
        if (not wanted_status or h.status.value in wanted_status)
        and (not wanted_category or h.category in wanted_category)
    ]


def categories_of(hyps: Iterable[Hypothesis]) -> list[str]:
    return sorted({h.category for h in hyps})


def statuses_of(hyps: Iterable[Hypothesis]) -> list[str]:
    present = {h.status.value for h in hyps}
    return [s for s in STATUS_ORDER if s in present]


HYPOTHESIS_COLUMNS = (
    "entity",
    "pattern",
    "category",
    "confidence",
    "status",
    "accepts",
    "weak_accepts",
    "rejects",
    "no_progress",
    "last_delta",
    "updated",
    "id",
)


def hypotheses_frame(hyps: Iterable[Hypothesis], entity_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per hypothesis, highest confidence first; `updated` is a UTC timestamp."""
    names = entity_names or {}
    rows = [
        {
            "entity": names.get(h.entity_id, h.entity_id),
            "pattern": h.pattern,
            "category": h.category,
            "confidence": float(h.confidence),
            "status": h.status.value,
            "accepts": h.accepts,
            "weak_accepts": h.weak_accepts,
            "rejects": h.rejects,
            "no_progress": h.no_progress,
            "last_delta": float(h.last_delta),
            "updated": pd.to_datetime(h.updated_at, unit="s", utc=True) if h.updated_at else pd.NaT,
            "id": h.id,
        }
        for h in hyps
    ]
    frame = pd.DataFrame(rows, columns=list(HYPOTHESIS_COLUMNS))
    if frame.empty:
        return frame
    return frame.sort_values(["confidence", "entity", "pattern"], ascending=[False, True, True]).reset_index(drop=True)
