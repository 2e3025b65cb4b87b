"""Hypotheses: find an entity by name or id, see its hypotheses, filter them by status and category."""

import streamlit as st

from console.entity_panel import render_entity_view
from console.format import (
    categories_of,
    entity_details,
    entity_label,
    filter_hypotheses,
    hypotheses_frame,
    match_caption,
    search_placeholder,
    statuses_of,
)
from console.identity import operator_field
from console.services import cached_graph, call, get_services
from console.tables import HYPOTHESIS_COLUMN_CONFIG
from console.text import md_code, md_escape

SEARCH_LIMIT = 50

services = get_services()
operator_field()  # one name for every page of this tab (console.identity)
graph = cached_graph(services)  # hypotheses through the console's cache, synced with other writers

st.title("Hypotheses")
# the hint names the graph's first entity: an example that is really there (the catalogue is the operator's)
example = next(iter(call(services.graph.list_entities, limit=1)), None)
query = st.text_input("Find an entity", placeholder=search_placeholder(example), key="entity_query").strip()
if not query:
    st.info("Type part of an entity's name or id.")
    st.stop()

found = call(services.graph.search_entities, query, limit=SEARCH_LIMIT + 1)
if not found:
    st.warning(f"No entity matches {md_escape(repr(query))}.")
    st.stop()

st.caption(md_escape(match_caption(len(found), SEARCH_LIMIT)))
matches = found[:SEARCH_LIMIT]
by_id = {e.id: e for e in matches}
entity_id = st.selectbox("Entity", list(by_id), format_func=lambda i: entity_label(by_id[i]), key="entity_id")
entity = by_id[entity_id]
hyps = call(graph.get_hypotheses, entity.id)

# names, ids and details are data (an import can name an entity anything): shown as text, never as Markdown
st.header(md_escape(entity.name))
st.caption(md_code(entity.id))
details = entity_details(entity)
for column, (label, value) in zip(st.columns([1, 1, 1, 0.5, 2, 1]), details.items()):
    column.markdown(f"**{md_escape(label)}**  \n{md_escape(value)}")

f1, f2 = st.columns(2)
statuses = f1.multiselect("Status", statuses_of(hyps), key="status_filter")
categories = f2.multiselect("Category", categories_of(hyps), key="category_filter")
shown = filter_hypotheses(hyps, statuses, categories)
st.caption(f"{len(shown)} of {len(hyps)} hypotheses")
st.dataframe(
    hypotheses_frame(shown).drop(columns=["entity"]),
    hide_index=True,
    width="stretch",
    column_config=HYPOTHESIS_COLUMN_CONFIG,
    key="entity_hypotheses",
)

# Entity view: EIG ranking, Run discovery button, evidence trail.
render_entity_view(services, entity.id)

with st.expander(f"All hypotheses of the {len(matches)} matching entities"):
    everything = call(graph.get_hypotheses_many, list(by_id))
    all_hyps = [h for hs in everything.values() for h in hs]
    g1, g2 = st.columns(2)
    all_statuses = g1.multiselect("Status", statuses_of(all_hyps), key="all_status_filter")
    all_categories = g2.multiselect("Category", categories_of(all_hyps), key="all_category_filter")
    all_shown = filter_hypotheses(all_hyps, all_statuses, all_categories)
    st.caption(f"{len(all_shown)} of {len(all_hyps)} hypotheses")
    st.dataframe(
        hypotheses_frame(all_shown, {e.id: e.name for e in matches}),
        hide_index=True,
        width="stretch",
        column_config=HYPOTHESIS_COLUMN_CONFIG,
        key="matching_hypotheses",
    )
