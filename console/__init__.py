"""The console's helpers, between the pages and the engine: pages -> console -> engine.

Two kinds of module, never mixed (tests/test_console_purity.py checks the first kind):

Pure — pandas, altair and plain Python over engine results, no Streamlit, tested without a page:
    actionable_view  Actionable page frames (feed, accepting evidence, departures) and the CSV download
    admin_view     Admin page: the role map table, what each role may do, the outcome lines of each change
    alerts_view    Alerts page frames (states, history, editable rules)
    audit_view     Audit page: the filter, the table with each row's verified identity, the CSV download
    cache_view     Cache page tiles, frames and the benchmark chart
    charts         Overview bar charts
    cluster_view   the Tuning page's cluster panel: a running study's Dask workers, threads, tasks, memory
    configs_view   the parameter diff table shown wherever a config is chosen or approved; Configs page tables
    entity_view    entity view frames and charts (EIG, confidence)
    format         tiles, labels, filters and the hypotheses frame
    launch         `python -m console.launch`: refuse an unsafe address, the cookie secret, then streamlit run
    live           live monitoring frames, tiles and charts
    naming         download file names (discovery-<kind>-...-<UTC minute>.<ext>)
    notify_view    Notifications page tables (channels masked, delivery log filters) and channel form settings
    production_view Production page: state, spend progress, spend-and-visits chart, the plan table
    rollout_view   Rollout page timeline, criteria, charts, actions and hints
    rollout_start  Rollout Start form: evidence source, entities in flight, limits, the cost estimate
    signin         sign-in configured?, may the console start here?, the cookie secret, claims -> actor arguments
    text           stored and typed text put into Markdown as text (md_escape, md_code)
    vocab          one vocabulary: missing and unbounded numbers, units, human labels for internal names
    tuning_view    Tuning page frames, charts and tiles

Streamlit — they draw, cache or keep session state:
    services       the shared stores and cache service, the error edge
    identity       the sign-in gate, who is signed in (sidebar, Sign out), the actor and needs(action) of a tab
    feedback       a button's outcome message and the one way a button calls the engine
    tables         column configurations shared by tables
    entity_panel   the entity view on the Hypotheses page
    live_panel     the live monitoring section of the Overview

Nothing here connects to a store at import time.
"""
