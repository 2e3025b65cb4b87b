"""console.format: the pure data shaping behind the pages."""

from dataclasses import dataclass, field

import pandas as pd

from console.format import (
    STATUS_ORDER,
    categories_of,
    counts_frame,
    entity_details,
    entity_label,
    filter_hypotheses,
    hypotheses_frame,
    match_caption,
    overview_tiles,
    status_counts,
    status_frame,
    statuses_of,
)
from engine.core.model import Entity, Hypothesis, Status


def hyp(entity, pattern, category, confidence=0.5, status=Status.ACTIVE, updated_at=0.0):
    return Hypothesis(
        id=f"{entity}::{pattern}", entity_id=entity, pattern=pattern, category=category,
        prior=0.5, confidence=confidence, status=status, updated_at=updated_at,
    )  # fmt: skip


HYPS = [
    hyp("a", "crm", "CRM Implementation", 0.4),
    hyp("a", "cto", "C-Suite Hiring", 0.8, Status.PROMOTED),
    hyp("b", "tix", "Ticketing", 0.2, Status.DEGRADED),
    hyp("b", "crm", "CRM Implementation", 0.9, Status.PROMOTED),
]


@dataclass
class FakeStats:
    entities: int = 3
    hypotheses: int = 4
    by_status: dict = field(default_factory=lambda: {"ACTIVE": 1, "PROMOTED": 2, "DEGRADED": 1})
    by_template: dict = field(default_factory=lambda: {"t1": 2, "t2": 1})
    by_cluster: dict = field(default_factory=lambda: {"c1": 1, "c2": 1, "c3": 1})
    by_category: dict = field(default_factory=dict)


def test_status_counts_lists_every_status_in_lifecycle_order_with_zeros():
    counts = status_counts({"PROMOTED": 2, "ACTIVE": 5})
    assert list(counts) == list(STATUS_ORDER)
    assert counts == {"ACTIVE": 5, "PROMOTED": 2, "DEGRADED": 0, "SATURATED": 0, "KILLED": 0}


def test_overview_tiles_take_counts_from_stats():
    tiles = {t.label: t.value for t in overview_tiles(FakeStats())}
    assert tiles["Entities"] == 3 and tiles["Hypotheses"] == 4
    assert tiles["Promoted"] == 2 and tiles["Active"] == 1 and tiles["Degraded"] == 1
    assert tiles["Saturated"] == 0 and tiles["Killed"] == 0
    assert tiles["Templates"] == 2 and tiles["Clusters"] == 3


def test_counts_frame_sorts_largest_first_ties_by_name_and_cuts_top():
    frame = counts_frame({"b": 2, "a": 2, "c": 5, "d": 1}, "cluster", "entities", top=3)
    assert list(frame.columns) == ["cluster", "entities"]
    assert frame["cluster"].tolist() == ["c", "a", "b"]


def test_status_frame_has_all_statuses():
    frame = status_frame({"KILLED": 1})
    assert frame["status"].tolist() == list(STATUS_ORDER)
    assert frame.set_index("status")["hypotheses"].to_dict()["KILLED"] == 1


def test_filter_by_status_and_category_combines_and_empty_choice_keeps_all():
    assert filter_hypotheses(HYPS) == HYPS
    assert [h.id for h in filter_hypotheses(HYPS, statuses=["PROMOTED"])] == ["a::cto", "b::crm"]
    assert [h.id for h in filter_hypotheses(HYPS, categories=["CRM Implementation"])] == ["a::crm", "b::crm"]
    both = filter_hypotheses(HYPS, statuses=[Status.PROMOTED], categories=["CRM Implementation"])
    assert [h.id for h in both] == ["b::crm"]
    assert filter_hypotheses(HYPS, statuses=["KILLED"]) == []


def test_filter_options_come_from_the_hypotheses_shown():
    assert categories_of(HYPS) == ["C-Suite Hiring", "CRM Implementation", "Ticketing"]
    assert statuses_of(HYPS) == ["ACTIVE", "PROMOTED", "DEGRADED"]


def test_hypotheses_frame_orders_by_confidence_and_names_entities():
    frame = hypotheses_frame(HYPS, {"a": "Alpha FC"})
    assert frame["id"].tolist() == ["b::crm", "a::cto", "a::crm", "b::tix"]
    assert frame["entity"].tolist() == ["b", "Alpha FC", "Alpha FC", "b"]
    assert frame["status"].tolist()[0] == "PROMOTED"


def test_hypotheses_frame_converts_update_time_and_handles_empty():
    frame = hypotheses_frame([hyp("a", "x", "General", updated_at=1_700_000_000.0)])
    assert frame["updated"].iloc[0] == pd.Timestamp("2023-11-14 22:13:20", tz="UTC")
    empty = hypotheses_frame([])
    assert empty.empty and "confidence" in empty.columns


def test_entity_label_and_details():
    e = Entity(
        id="arsenal-fc",
        name="Arsenal FC",
        sport="football",
        country="GB",
        type="club",
        tier=1,
        cluster="premier-league",
        template_id="tier1_club",
    )
    assert entity_label(e) == "Arsenal FC · arsenal-fc"
    details = entity_details(e)
    assert list(details) == ["Type", "Sport", "Country", "Tier", "Cluster", "Template"]
    assert details["Tier"] == "1" and details["Cluster"] == "premier-league"


def test_match_caption_tells_when_the_search_was_cut():
    assert match_caption(1, 50) == "1 entity matches"
    assert match_caption(50, 50) == "50 entities match"
    assert match_caption(51, 50).startswith("More than 50 entities match; showing the first 50")


def test_status_chart_labels_each_bar_with_its_count_so_small_statuses_stay_readable():
    from console import charts

    spec = charts.status_bars(status_frame({"ACTIVE": 28_000, "DEGRADED": 11})).to_dict()
    bars, labels = spec["layer"]
    assert bars["mark"]["type"] == "bar" and labels["mark"]["type"] == "text"
    assert labels["encoding"]["text"] == {"field": "hypotheses", "format": ",", "type": "quantitative"}
    rows = next(iter(spec["datasets"].values()))
    assert {r["status"]: r["hypotheses"] for r in rows}["DEGRADED"] == 11
