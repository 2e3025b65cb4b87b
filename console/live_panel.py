"""Live monitoring on the Overview, drawn: the window choice and the auto-refreshing charts.

The Overview calls ``render_live_charts(services)``. The charts live in an
``st.fragment(run_every=...)`` (5 to 30 s by window, console.live.REFRESH_S): the
browser re-runs only that fragment, so new metric events (a rollout or a tuning
worker recording runs in another process) appear without a click. Every figure
comes from the store: one read of the window's metric events
(engine.monitoring.events.query_events_light), aggregated by engine.monitoring.windows;
the frames and tiles are console.live's, the charts engine.monitoring.charts' (the HTML report draws
the same ones). Above them, alerts that fire or are pending and nobody acknowledged, as a link to
the Alerts page.
"""

from __future__ import annotations

import time

import streamlit as st

from console.live import (
    DEFAULT_WINDOW,
    LIVE_METRICS,
    REFRESH_S,
    WINDOWS,
    alert_banner,
    comparison_tiles,
    metric_chart,
    refresh_s,
    runs_caption,
    series_frame,
    tiles_caption,
    window_words,
)
from console.text import md_escape
from engine.monitoring.alerts import current_states
from engine.monitoring.events import query_events_light
from engine.monitoring.windows import default_bucket, parse_window, series_from_events, summarize_events

#: where the alert banner leads (streamlit_app.py's page list)
ALERTS_PAGE = "pages/alerts.py"


def render_live_charts(services) -> None:
    """Overview section: window choice, then the auto-refreshing charts."""
    st.subheader("Live monitoring: old vs new")
    window_label = (
        st.segmented_control(
            "Window",
            WINDOWS,
            default=DEFAULT_WINDOW,
            key="live_window",
            help="how far back the charts go from now; they refresh on their own",
        )
        or DEFAULT_WINDOW
    )
    _FRAGMENTS[refresh_s(window_label)](services, window_label)


def _alert_banner(services) -> None:
    """Alerts that need attention and nobody acknowledged, as one link to the Alerts page."""
    banner = alert_banner(current_states(services.ops))
    if banner is None:
        return
    colour = "red" if banner.firing else "orange" if banner.pending else "gray"
    with st.container(border=True, key="alert_banner", gap=None):
        st.page_link(
            ALERTS_PAGE,
            label=f":{colour}[{md_escape(banner.text)}]",  # md-safe: the whole text escaped, inside our colour
            icon=":material/notifications_active:" if banner.open else ":material/notifications:",
            width="stretch",
        )
        st.caption(md_escape(banner.detail))  # the rule ids are data


def _live_body(services, window_label: str) -> None:
    _alert_banner(services)
    window_s = parse_window(window_label)
    now = time.time()
    bucket_s = default_bucket(window_s)
    # one read of the window's events serves the tiles, the charts and the caption (the light read:
    # no JSON lists, which neither the tiles nor the charts need)
    events = query_events_light(services.ops, now - window_s, now)
    summary = summarize_events(events, start=now - window_s, end=now, now=now)
    if summary.overall.runs == 0:
        st.info(
            f"No discovery runs recorded in the {md_escape(window_words(window_label))}. Runs of "
            "`python -m engine discover`, rollouts and tuning appear here as they are recorded (this section "
            "refreshes by itself); `python -m engine demo --ensure` records a day of demo runs on an empty store."
        )
        return
    frame = series_frame(series_from_events(events, bucket_s))
    st.caption(md_escape(tiles_caption(window_label)))
    # a wrapping row: four tiles side by side when they fit, fewer per row on a narrow screen, never cut
    with st.container(horizontal=True, key="live_tiles"):
        for tile in comparison_tiles(summary, window_label):
            # md-safe: console.live.comparison_tiles: constant labels, numbers and the engine's comparison note
            st.metric(tile.label, tile.value, tile.delta, delta_color=tile.delta_color, help=tile.help, border=True)
    # two charts a row when they fit, one a row on a narrow screen (a chart's title is not cut)
    for i, row in enumerate((LIVE_METRICS[:2], LIVE_METRICS[2:])):
        with st.container(horizontal=True, key=f"live_charts_{i}"):
            for metric in row:
                st.altair_chart(metric_chart(frame, metric, window_label), width="stretch")
    st.caption(md_escape(runs_caption(summary, window_label, bucket_s, now)))


#: one auto-refreshing fragment per refresh period (the period is fixed when a fragment is made)
_FRAGMENTS = {seconds: st.fragment(run_every=seconds)(_live_body) for seconds in set(REFRESH_S.values())}
