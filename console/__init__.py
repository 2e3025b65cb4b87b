"""The console's helpers, between the pages and the engine: pages -> console -> engine.

Two kinds of module, never mixed (tests/test_console_purity.py checks the first kind):

Pure — pandas, altair and plain Python over engine results, no Streamlit, tested without a page:
    actionable_view  Actionable page frames (feed, accepting evidence, departures) and the CSV download
    alerts_view    Alerts page frames (states, history, editable rules)
    cache_view     Cache page tiles, frames and the benchmark chart
    charts         Overview bar charts
    cluster_view   the Tuning page's cluster panel: a running study's Dask workers, threads, tasks, memory
    configs_view   the parameter diff table shown wherever a config is chosen or approved; Configs page tables
    entity_view    entity view frames and charts (EIG, confidence)
    format         tiles, labels, filters and the hypotheses frame
    live           live monitoring frames, tiles and charts
    naming         download file names (discovery-<kind>-...-<UTC minute>.<ext>)
    notify_view    Notifications page tables (channels masked, delivery log filters) and channel form settings
    production_view Production page: state, spend progress, spend-and-visits chart, the plan table
    rollout_view   Rollout page timeline, criteria, charts, actions and hints
    rollout_start  Rollout Start form: evidence source, entities in flight, limits, the cost estimate
    text           stored and typed text put into Markdown as text (md_escape, md_code)
    vocab          one vocabulary: missing and unbounded numbers, units, human labels for internal names
    tuning_view    Tuning page frames, charts and tiles

Streamlit — they draw, cache or keep session state:
    services       the shared stores and cache service, the error edge
    identity       the operator's name, one per browser tab, shared by every page (console:<name>)
    feedback       a button's outcome message and the one way a button calls the engine
    tables         column configurations shared by tables
    entity_panel   the entity view on the Hypotheses page
    live_panel     the live monitoring section of the Overview

Nothing here connects to a store at import time.
"""
