"""Actionable: the entities that became actionable (when, on which system and config, on what evidence), the
ones that left the feed and why, filtered by window, template, category and country, with a CSV download.

Thin and read-only: engine.production.feed derives the feed from the live runs and the graph;
console.actionable_view makes the tables and the file. `python -m engine actionable` prints the same.
"""

from __future__ import annotations

import streamlit as st

from console import actionable_view as av
from console.identity import operator_field
from console.services import call, get_services
from console.text import md_code, md_escape
from engine.production.feed import FeedFilter, feed_choices, load_feed

services = get_services()
operator_field()  # one name for every page of this tab (console.identity)

st.title("Actionable")
st.caption(
    "Entities whose live runs made them actionable, newest first: when, on which system and config, and the "
    "evidence that was accepted. An entity whose later live run was not actionable, or whose hypotheses no "
    "longer pass the gate, leaves the feed and is listed below with the reason. Times are UTC. The CLI prints "
    "the same: `python -m engine actionable --since 2026-12-01`."
)

choices = call(feed_choices, services.graph)


def any_label(value: str | None) -> str:
    return "Any" if value is None else value


c1, c2, c3, c4, c5 = st.columns(5)
since = c1.date_input("Since (UTC)", value=None, key="actionable_since", help="Empty: from the first run.")
until = c2.date_input("Until (UTC, included)", value=None, key="actionable_until", help="Empty: up to now.")
template = c3.selectbox(
    "Template", av.choices_with_any(choices.templates), format_func=any_label, key="actionable_template"
)
category = c4.selectbox(
    "Category",
    av.choices_with_any(choices.categories),
    format_func=any_label,
    key="actionable_category",
    help="Entities with an ACCEPT in this pattern category.",
)
country = c5.selectbox(
    "Country", av.choices_with_any(choices.countries), format_func=any_label, key="actionable_country"
)

start, end = av.window(since, until)  # one date each (not a range picker)
if start is not None and end is not None and end <= start:
    st.warning("The window ends before it begins: pick an until date on or after the since date.")
    st.stop()
wanted = FeedFilter(since=start, until=end, template=template, category=category, country=country)
feed = call(load_feed, services.graph, services.ops, wanted)

st.markdown(md_escape(av.summary(feed)))

st.header("In the feed")
if not feed.rows:
    st.info("No entity became actionable in this window (with these filters).")
else:
    name = av.csv_name(wanted)
    st.download_button(
        "Download the feed (CSV)",
        av.csv_bytes(feed),
        help=f"{md_escape(name)} · {len(feed.rows):,} row{'' if len(feed.rows) == 1 else 's'}, the columns of the "
        "CLI's --format csv",
        file_name=name,
        mime="text/csv",
        key="actionable_csv",
        icon=":material/download:",
        on_click="ignore",
    )
    st.dataframe(
        av.feed_frame(feed),
        hide_index=True,
        width="stretch",
        key="actionable_feed",
        column_config={
            "when": st.column_config.DatetimeColumn("Became actionable", format="YYYY-MM-DD HH:mm"),
            "entity": st.column_config.TextColumn("Entity"),
            "template": st.column_config.TextColumn("Template"),
            "categories": st.column_config.TextColumn("Accepted categories"),
            "country": st.column_config.TextColumn("Country"),
            "system": st.column_config.TextColumn("System"),
            "stage": st.column_config.TextColumn("Stage"),
            "config": st.column_config.TextColumn("Config"),
            "config_origin": st.column_config.TextColumn("Config from"),
            "best_hypothesis": st.column_config.TextColumn("Best hypothesis"),
            "confidence": st.column_config.NumberColumn("Confidence", format="%.2f"),
            "evidence": st.column_config.NumberColumn("Accepts shown", format="%d"),
            "excerpt": st.column_config.TextColumn("Evidence excerpt"),
            "link": st.column_config.LinkColumn("Evidence link"),
        },
    )

    st.subheader("Accepting evidence")
    by_id = {r.entity_id: r for r in feed.rows}
    chosen = st.selectbox(
        "Entity", list(by_id), format_func=lambda i: av.entity_label(by_id[i]), key="actionable_entity"
    )
    row = by_id[chosen]
    # names, ids and hashes are data: escaped or in code spans, never Markdown
    st.markdown(
        f"{md_escape(row.entity_name)} {md_code(row.entity_id)} · run {md_code(row.run_id)} · "
        f"config {md_code(row.config_hash)}" + (f" ({md_escape(row.config_origin)})" if row.config_origin else "")
    )
    st.dataframe(
        av.evidence_frame(row),
        hide_index=True,
        width="stretch",
        key="actionable_evidence",
        column_config={
            "found": st.column_config.DatetimeColumn("Found", format="YYYY-MM-DD HH:mm"),
            "pattern": st.column_config.TextColumn("Pattern"),
            "category": st.column_config.TextColumn("Category"),
            "hop": st.column_config.TextColumn("Hop"),
            "excerpt": st.column_config.TextColumn("Excerpt"),
            "run": st.column_config.TextColumn("Run"),
            "link": st.column_config.LinkColumn("Link"),
            "url": st.column_config.TextColumn("URL as recorded"),
        },
    )

st.header("Left the feed")
if not feed.departures:
    st.info("No entity left the feed in this window.")
else:
    left_name = av.csv_name(wanted, left=True)
    st.download_button(
        "Download the departures (CSV)",
        av.left_csv_bytes(feed),
        help=f"{md_escape(left_name)} · {len(feed.departures):,} row{'' if len(feed.departures) == 1 else 's'}",
        file_name=left_name,
        mime="text/csv",
        key="actionable_left_csv",
        icon=":material/download:",
        on_click="ignore",
    )
    st.dataframe(
        av.left_frame(feed),
        hide_index=True,
        width="stretch",
        key="actionable_left",
        column_config={
            name: st.column_config.TextColumn(name.capitalize()) for name in av.LEFT_TABLE_COLUMNS
        },  # md-safe: constant column names
    )
