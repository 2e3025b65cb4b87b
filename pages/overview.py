"""Overview: how many entities and hypotheses the graph holds, by status, template and cluster."""

import streamlit as st

from console import charts
from console.format import counts_frame, overview_tiles, status_frame
from console.identity import operator_field
from console.live_panel import render_live_charts
from console.services import call, get_services
from console.text import md_code

TOP_CLUSTERS = 15
#: the graph's tiles (console.format.overview_tiles) of its size; the others (hypotheses by status) are the second row
SIZE_TILES = ("Entities", "Hypotheses", "Templates", "Clusters")

services = get_services()
operator_field()  # one name for every page of this tab (console.identity)
stats = call(services.graph.stats)

st.title("Overview")
st.caption(f"Graph: {md_code(services.settings.store_label)} · graph {md_code(services.settings.graph_name)}")

if stats.entities == 0:
    st.info(
        "The graph is empty. Load the demo catalogue with `python -m engine demo --ensure` "
        "(what `make run` does) or import your own entities with `python -m engine import FILE`."
    )

# two wrapping rows (the graph's size, then hypotheses by status): as many tiles side by side as fit,
# so at 900 px a tile moves to the next line instead of reading "E… 3.."
tiles = overview_tiles(stats)
rows = {
    "graph_tiles": [t for t in tiles if t.label in SIZE_TILES],
    "status_tiles": [t for t in tiles if t.label not in SIZE_TILES],
}
for key, row in rows.items():
    with st.container(horizontal=True, key=key):
        for tile in row:
            st.metric(tile.label, f"{tile.value:,}", help=tile.help, border=True)  # md-safe: constant labels

render_live_charts(services)  # old vs new over a chosen window, refreshing by itself

left, right = st.columns(2)
with left:
    st.subheader("Hypotheses by status")
    st.altair_chart(charts.status_bars(status_frame(stats.by_status)), width="stretch")
with right:
    st.subheader("Entities by template")
    st.altair_chart(
        charts.count_bars(counts_frame(stats.by_template, "template", "entities"), "template", "entities"),
        width="stretch",
    )

st.subheader(f"Top {TOP_CLUSTERS:d} clusters")
st.altair_chart(
    charts.count_bars(
        counts_frame(stats.by_cluster, "cluster", "entities", top=TOP_CLUSTERS), "cluster", "entities", colour="#72b7b2"
    ),
    width="stretch",
)

st.subheader("All clusters")
st.dataframe(
    counts_frame(stats.by_cluster, "cluster", "entities"), hide_index=True, width="stretch", key="clusters_table"
)
