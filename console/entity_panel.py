"""Entity view on the Hypotheses page: EIG ranking, a "Run discovery" button, the evidence trail.

The page calls ``render_entity_view(services, entity_id)``. Everything computed
here comes from engine.discovery.entity_view (tested without Streamlit) and the
frames and charts from console.entity_view; this file only draws them.

"Run discovery" runs inline, in the script thread: one entity is about a dozen
hops (at most a few dozen) against the simulated world in virtual time, well
under a second in all (measured: p95 ~130 ms for run + graph write + metric
event, engine time p95 ~15 ms; `engine.discovery.entity_view.bench()`), so it needs no
worker process.
Rollout stages and tuning studies, which run thousands, do use workers. The
run goes through engine.discovery.runs (live: graph written in one call; metric event
recorded either way); the result is kept in session state and the page is
rerun, so the page's own hypotheses table above shows the state after the run.

Reads and the run's graph write go through the console's CachedGraph
(``console.services.cached_graph``, synced with other processes' writes at
every page run), so the cache is patched by the run and never serves a value
another process changed.
"""

from __future__ import annotations

import streamlit as st

from console.entity_view import (
    confidence_chart,
    eig_chart,
    evidence_frame,
    rows_frame,
    run_warning,
    shown_frame,
    trajectory_chart,
)
from console.identity import actor, needs
from console.naming import download_name
from console.services import Services, cached_graph, call
from console.tables import HYPOTHESIS_COLUMN_CONFIG
from console.text import md_code, md_escape
from console.vocab import ENGINE_TIME, human
from engine.discovery.entity_view import (
    CONFIDENCE_COLUMNS,
    HOP_COLUMNS,
    RANKING_COLUMNS,
    EntityRun,
    filter_evidence,
    live_params,
    load_entity_view,
    run_entity,
)

LAST_RUN_KEY = "entity_view_last_run"
#: the entity a live run waits to be confirmed for (Run discovery, live, asks first)
CONFIRM_KEY = "entity_view_confirm_live"
SYSTEM_OPTIONS = {
    "new": "New system (EIG)",
    "old": "Old system (baseline)",
}

RANKING_COLUMN_CONFIG = {
    "rank": st.column_config.TextColumn(
        "Next pick",
        help="order in which the new system would pick the ACTIVE hypotheses; "
        "— for a hypothesis it never picks (not ACTIVE)",
    ),
    "pattern": st.column_config.TextColumn("Pattern"),
    "category": st.column_config.TextColumn("Category"),
    "status": st.column_config.TextColumn("Status"),
    "eig": st.column_config.NumberColumn("EIG", format="%.3f", help="uncertainty × novelty × category value × recency"),
    "score": st.column_config.NumberColumn(
        "Score", format="%.3f", help="EIG + exploration and exploitation bonuses (what picks)"
    ),
    "confidence": st.column_config.ProgressColumn(
        "Confidence", min_value=0.0, max_value=1.0, format="%.2f", color="blue"
    ),
    "uncertainty": st.column_config.NumberColumn("Uncertainty", format="%.2f", help="1 − confidence"),
    "novelty": st.column_config.NumberColumn(
        "Novelty", format="%.3f", help="1 / (1 + decay × confirmations in the cluster)"
    ),
    "confirmations": st.column_config.NumberColumn("Cluster confirmations", format="%d"),
    "value": st.column_config.NumberColumn("Category value", format="%.2f"),
    "recency": st.column_config.NumberColumn("Recency", format="%.3f", help="exp(−λ · days since it last moved)"),
    "age_days": st.column_config.NumberColumn("Age (days)", format="%.1f"),
    # counters, last delta and id as in the Hypotheses page's table
    **{
        k: HYPOTHESIS_COLUMN_CONFIG[k]
        for k in ("accepts", "weak_accepts", "rejects", "no_progress", "last_delta", "id")
    },
}

TRAIL_COLUMN_CONFIG = {
    "at": st.column_config.DatetimeColumn("Time (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "run_id": st.column_config.TextColumn("Run"),
    "system": st.column_config.TextColumn("System"),
    "iteration": st.column_config.NumberColumn("Hop", format="%d"),
    "pattern": st.column_config.TextColumn("Hypothesis"),
    "category": st.column_config.TextColumn("Category"),
    "eig": st.column_config.NumberColumn("EIG", format="%.3f"),
    "hop_type": st.column_config.TextColumn("Hop type"),
    "depth": st.column_config.TextColumn("Depth"),
    "decision": st.column_config.TextColumn("Decision"),
    "delta": st.column_config.NumberColumn("Δ confidence", format="%+.2f"),
    "confidence_after": st.column_config.NumberColumn("Confidence after", format="%.2f"),
    "cost_usd": st.column_config.NumberColumn("Cost", format="$%.3f"),
    "cumulative_cost_usd": st.column_config.NumberColumn("Spent", format="$%.3f"),
    "latency_s": st.column_config.NumberColumn("Latency (s)", format="%.1f"),
    # what the evaluator says it found: text, never a link column (a javascript: or look-alike URL one click away)
    "url": st.column_config.TextColumn("URL"),
    "excerpt": st.column_config.TextColumn("Excerpt", width="large"),
    "error": st.column_config.TextColumn("Error"),
    "rolled_back": st.column_config.CheckboxColumn("Rolled back"),
    "hypothesis_id": st.column_config.TextColumn("Hypothesis id"),
}

CONFIDENCE_COLUMN_CONFIG = {
    "pattern": st.column_config.TextColumn("Hypothesis"),
    "category": st.column_config.TextColumn("Category"),
    "before": st.column_config.NumberColumn("Before", format="%.2f"),
    "after": st.column_config.NumberColumn("After", format="%.2f"),
    "change": st.column_config.NumberColumn("Change", format="%+.2f"),
    "status_before": st.column_config.TextColumn("Status before"),
    "status_after": st.column_config.TextColumn("Status after"),
    "hops": st.column_config.NumberColumn("Hops", format="%d"),
    "id": st.column_config.TextColumn("Hypothesis id"),
}


def _render_run(run: EntityRun) -> None:
    s = run.summary()
    mode = "shadow, nothing written to the graph" if s["shadow"] else "live, written to the graph"
    st.subheader("Last run")
    st.caption(
        f"Run {md_code(s['run_id'])} · {md_escape(SYSTEM_OPTIONS.get(s['system'], s['system']))} · {md_escape(mode)} · "
        f"config {md_code(s['config_hash'])} · recorded as a metric event"
    )
    c = st.columns([2, 1, 1, 1, 1])
    c[0].metric("Stop reason", md_escape(human(s["stop"])))
    c[1].metric("Iterations", f"{s['iterations']:d}")
    c[2].metric("Cost", f"${s['cost_usd']:.3f}")
    c[3].metric("Actionable", "yes" if s["actionable"] else "no")
    c[4].metric("Errored hops", f"{s['errors']:d}")
    code, _, detail = str(s["stop_reason"]).partition(":")
    because = human(code) + (f":{detail}" if detail else "")
    st.caption(  # md-safe: the stop reason escaped; ENGINE_TIME a constant of console.vocab; numbers
        f"Stopped because {md_escape(because)}. Evidence latency {s['evidence_latency_s']:.1f} s "
        f"(virtual), {ENGINE_TIME} {s['engine_time_ms']:.1f} ms."
    )
    hops = run.hop_rows()
    if hops:
        st.markdown("**Hop by hop**")
        st.dataframe(
            shown_frame(rows_frame(hops, HOP_COLUMNS)),
            hide_index=True,
            width="stretch",
            column_config=TRAIL_COLUMN_CONFIG,
            key="entity_run_hops",
        )
    else:
        st.info("The run bought no hop (nothing to do, or the first hop would cross the cost cap).")
    conf = run.confidence_rows()
    st.markdown("**Confidence before and after**")
    left, right = st.columns([1, 1])
    left.altair_chart(confidence_chart(conf), width="stretch")
    right.dataframe(
        shown_frame(rows_frame(conf, CONFIDENCE_COLUMNS).drop(columns=["id"])),
        hide_index=True,
        width="stretch",
        column_config=CONFIDENCE_COLUMN_CONFIG,
        key="entity_run_confidences",
    )
    trajectory = run.trajectory_rows()
    if trajectory:
        st.markdown("**Confidence hop by hop** (the hypotheses the run probed; a point per hop that probed it)")
        st.altair_chart(trajectory_chart(trajectory), width="stretch")


def render_entity_view(services: Services, entity_id: str) -> None:
    """The entity view of ``entity_id``; DiscoveryErrors (store down, unknown id) show as one st.error."""
    params = call(live_params, services.ops)
    graph = cached_graph(services)  # reads and the run's write go through the console's cache
    view = call(load_entity_view, graph, entity_id, params)

    st.subheader("Ranked by expected information gain")
    size = "unknown" if view.cluster_size is None else f"{view.cluster_size} entities"
    st.caption(
        f"Cluster {md_code(view.entity.cluster)} ({md_escape(size)}); config {md_code(view.config_hash)}. "
        "Only ACTIVE hypotheses are picked; the new system takes the highest score first."
    )
    rows = view.ranking_rows()
    ranking = shown_frame(rows_frame(rows, RANKING_COLUMNS))  # "—", not "None", for hypotheses never picked
    st.dataframe(
        ranking, hide_index=True, width="stretch", column_config=RANKING_COLUMN_CONFIG, key="entity_eig_ranking"
    )
    if rows:
        with st.expander("EIG by hypothesis (chart)"):
            st.altair_chart(eig_chart(rows), width="stretch")

    st.subheader("Run discovery")
    row = st.container(horizontal=True, vertical_alignment="bottom")  # the button as wide as its label
    system = row.selectbox(
        "System", list(SYSTEM_OPTIONS), format_func=SYSTEM_OPTIONS.__getitem__, key="entity_run_system", width=260
    )
    shadow = row.toggle(
        "Shadow run",
        value=True,
        key="entity_run_shadow",
        help="on (the default): compute the run and record its metric event, but write nothing to the graph; "
        "off: a live run, which writes the graph (asked to confirm first)",
    )

    def run(live_confirmed: bool = False) -> None:
        st.session_state.pop(CONFIRM_KEY, None)
        # inline on purpose: one entity is well under a second in virtual time (see the module docstring)
        with st.spinner(f"Running the {md_escape(system)} system on {md_escape(view.entity.name)}…"):
            result = call(
                run_entity,
                graph,
                services.ops,
                entity_id,
                actor=actor(),
                system=system,
                shadow=not live_confirmed,
                params=params,
            )
        st.session_state[LAST_RUN_KEY] = (entity_id, result)
        st.rerun()  # redraw the whole page (its hypotheses table too) from the state after the run

    label, help_ = (
        ("Run discovery", "a shadow run: writes nothing to the graph")
        if shadow
        else ("Run discovery (live)…", "a live run: says what it will write and asks to confirm first")
    )
    run_needs = needs("discovery.run")  # a viewer sees the button disabled: "needs operator"
    # md-safe: label and help_ are literals above, run_needs a role's name
    if row.button(label, type="primary", key="entity_run_button", help=run_needs or help_, disabled=bool(run_needs)):
        if shadow:
            run()
        st.session_state[CONFIRM_KEY] = entity_id
    if not shadow and st.session_state.get(CONFIRM_KEY) == entity_id:
        with st.container(border=True):
            st.warning(
                md_escape(run_warning(view.entity.name, len(view.hypotheses), params.max_iterations)),
                icon=":material/warning:",
            )
            with st.container(horizontal=True):
                confirm = st.button("Write to the graph: run live", key="entity_run_confirm", type="primary")
                if st.button("Cancel", key="entity_run_cancel"):
                    st.session_state.pop(CONFIRM_KEY, None)
                    st.rerun()
            if confirm:
                run(live_confirmed=True)
    elif shadow:
        st.session_state.pop(CONFIRM_KEY, None)

    last = st.session_state.get(LAST_RUN_KEY)
    if last is not None and last[0] == entity_id:
        _render_run(last[1])

    st.subheader("Evidence trail")
    if not view.evidence:
        st.info("No evidence yet: no live run has looked at this entity.")
        return
    all_rows = list(view.evidence)
    f1, f2, f3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    run_ids = f1.multiselect("Run", list(dict.fromkeys(r["run_id"] for r in all_rows)), key="entity_evidence_runs")
    patterns = f2.multiselect("Hypothesis", sorted({r["pattern"] for r in all_rows}), key="entity_evidence_patterns")
    hide_rolled = f3.toggle("Hide rolled back", key="entity_evidence_hide_rolled_back")
    evidence = shown_frame(
        evidence_frame(filter_evidence(all_rows, run_ids, patterns, include_rolled_back=not hide_rolled))
    )
    rolled = sum(1 for r in all_rows if r["rolled_back"])
    st.caption(
        f"{len(evidence)} of {len(all_rows)} hops, newest first"
        + (f"; {rolled:d} rolled back (kept, flagged)" if rolled else "")
    )
    st.dataframe(evidence, hide_index=True, width="stretch", column_config=TRAIL_COLUMN_CONFIG, key="entity_evidence")
    st.download_button(
        "Download the evidence trail (CSV)",
        evidence.to_csv(index=False).encode("utf-8"),
        file_name=download_name("evidence", "csv", entity_id),
        mime="text/csv",
        key="entity_evidence_download",
    )
