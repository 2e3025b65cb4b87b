"""Overview live charts: the frames, tiles and alert banner (pure) and the Overview page with metric events and
alerts (AppTest)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console.live import LATENCY_LABEL, LIVE_METRICS, alert_banner, comparison_tiles, runs_caption, series_frame
from console.signin import BANNER
from console.vocab import RUN_LATENCY
from engine.monitoring.events import record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.monitoring.windows import series_from_events, summarize_events
from engine.store.opsdb import open_ops_db
from tests.support.actors import ADMIN
from tests.support.console_env import as_shown
from tests.support.monitoring_data import make_event, make_run

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
T0 = 1_800_000_000.0


def test_series_frame_has_one_row_per_bucket_system_and_metric():
    events = [
        make_event(T0, system="new", cost=0.2, actionable=True, hops=4, errors=("timeout",)),
        make_event(T0 + 10, system="new", cost=0.4, hops=4),
        make_event(T0, system="old", cost=1.0, hops=5),
    ]
    frame = series_frame(series_from_events(events, 60))
    assert len(frame) == 2 * len(LIVE_METRICS)
    new = frame[frame["system"] == "new"].set_index("metric")["value"]
    assert new["cost_per_entity"] == pytest.approx(0.3)
    assert new["actionable_rate"] == pytest.approx(0.5)
    assert new["error_rate"] == pytest.approx(1 / 8)
    old = frame[frame["system"] == "old"].set_index("metric")["value"]
    assert old["cost_per_entity"] == pytest.approx(1.0) and old["actionable_rate"] == 0.0
    assert str(frame["time"].dt.tz) == "UTC"
    assert frame["time"].iloc[0].timestamp() == (T0 // 60) * 60


def test_a_bucket_without_hops_has_no_error_rate_rather_than_zero():
    frame = series_frame(series_from_events([make_event(T0, hops=0)], 60))
    assert "error_rate" not in set(frame["metric"])
    assert "cost_per_entity" in set(frame["metric"])


def test_empty_series_is_an_empty_frame_with_the_columns():
    frame = series_frame([])
    assert frame.empty and list(frame.columns) == ["time", "bucket", "system", "metric", "value", "runs"]


def test_comparison_tiles_show_new_against_old_with_units_sizes_and_window_and_say_why_a_figure_is_missing():
    both = summarize_events(
        [
            make_event(T0, system="new", cost=0.5, hops=4, errors=("timeout",)),
            make_event(T0, system="old", cost=1.0, actionable=True, hops=4),
        ],
        start=T0 - 60,
        end=T0 + 60,
        now=T0 + 60,
    )
    tiles = {t.label: t for t in comparison_tiles(both, "24h")}
    assert list(tiles) == ["Cost per entity", "Actionable rate", f"p95 {RUN_LATENCY}", "Evidence error rate"]
    cost = tiles["Cost per entity"]
    assert (cost.value, cost.delta, cost.delta_color) == ("$0.500", "-$0.500 vs old $1.000", "inverse")
    assert "cost reduction vs old +50.0%" in cost.help and "old n=1, new n=1" in cost.help
    assert all("new system" in t.help and "last 24 h" in t.help for t in tiles.values())
    act = tiles["Actionable rate"]
    assert (act.value, act.delta) == ("0.0%", "-100.0 pp vs old 100.0%")
    assert tiles["Evidence error rate"].delta == "+25.0 pp vs old 0.0%"
    latency = tiles[LATENCY_LABEL]
    assert LATENCY_LABEL == "p95 run latency (evidence + engine)"
    assert (latency.value, latency.delta, latency.delta_color) == ("3.0 s", "no change vs old 3.0 s", "off")
    assert "not the engine time per entity" in latency.help
    only_new = summarize_events([make_event(T0, system="new")], start=T0 - 60, end=T0 + 60, now=T0 + 60)
    tiles = {t.label: t for t in comparison_tiles(only_new, "1h")}
    assert tiles["Cost per entity"].delta is None and "no old runs" in tiles["Cost per entity"].help
    assert runs_caption(only_new, "1h", 120, T0).startswith("1 runs in the last 1 h (new 1, old 0) · buckets of 2m")
    nothing = summarize_events([], start=T0 - 60, end=T0 + 60, now=T0 + 60)
    shown = " ".join(f"{t.label} {t.value} {t.delta or ''} {t.help}" for t in comparison_tiles(nothing, "15m"))
    assert "None" not in shown and "nan" not in shown and "inf" not in shown
    assert {t.value for t in comparison_tiles(nothing, "15m")} == {"—"}


# --------------------------------------------------------------------------- the Overview page


def _charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


def test_overview_without_events_says_how_to_get_some(console_env):
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert any("No discovery runs recorded in the last 24 h" in as_shown(i.value) for i in at.info)
    assert len(_charts(at)) == 3  # only the graph's own charts


def test_overview_draws_four_live_charts_from_recorded_events(console_env):
    now = time.time()
    ops = open_ops_db(console_env)
    log = JsonlLog.for_settings(console_env)
    record_runs(
        ops,
        [make_run(f"n{i}", cost=0.25, actionable=i % 2 == 0) for i in range(4)],
        run_id="t",
        clock=lambda: now - 3600,
        log=log,
    )
    record_runs(
        ops, [make_run(f"o{i}", system="old", cost=0.5) for i in range(3)], run_id="t", clock=lambda: now - 600, log=log
    )
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert len(_charts(at)) == 3 + 4
    metrics = {m.label: m for m in at.metric}
    assert metrics["Cost per entity"].value == "$0.250"
    assert metrics["Cost per entity"].delta == "-$0.250 vs old $0.500"
    assert metrics["Actionable rate"].value == "50.0%"
    # the run latency is named in full, with its unit, and the window is stated
    latency = metrics["p95 run latency (evidence + engine)"]
    assert latency.value.endswith(" s") and "last 24 h" in latency.proto.help
    assert any(as_shown(c.value).startswith("New system, last 24 h;") for c in at.caption)
    assert any(as_shown(c.value).startswith("7 runs in the last 24 h (new 4, old 3)") for c in at.caption)
    assert not any("p95 latency" in m.label for m in at.metric)
    # a shorter window leaves the older new-system runs out
    at.segmented_control(key="live_window").set_value("15m").run()
    assert not at.exception
    assert any(as_shown(c.value).startswith("3 runs in the last 15 min (new 0, old 3)") for c in at.caption)
    assert {m.label: m.value for m in at.metric}["Cost per entity"] == "—"


def _rec(rid, state, acked_by=None):
    from engine.monitoring.alerts import AlertRecord, AlertStatus

    return AlertRecord(rid, AlertStatus(state), 0.0, "", None, 0, 0.0, acked_by, 1.0 if acked_by else None)


def test_alert_banner_names_firing_and_pending_rules_nobody_acknowledged():
    assert alert_banner({"a": _rec("a", "ok"), "b": _rec("b", "no_data")}) is None
    states = {r: _rec(r, s) for r, s in (("x", "firing"), ("y", "pending"), ("z", "firing"), ("w", "resolved"))}
    banner = alert_banner(states)
    assert (banner.firing, banner.pending, banner.acknowledged) == (("x", "z"), ("y",), 0)
    assert banner.text == "Alerts: 2 firing, 1 pending — open the Alerts page"
    assert banner.detail == "firing: x, z · pending: y"
    states |= {"v": _rec("v", "firing", "console:alice"), "u": _rec("u", "pending", "console:bob")}
    banner = alert_banner(states)
    assert (banner.firing, banner.pending, banner.acknowledged) == (("x", "z"), ("y",), 2)
    assert banner.text == "Alerts: 2 firing, 1 pending — open the Alerts page"
    assert banner.detail == "firing: x, z · pending: y · 2 acknowledged, still firing or pending (not listed)"
    only_acked = alert_banner({"v": _rec("v", "firing", "console:alice")})
    assert only_acked.open == 0
    assert only_acked.text == "Alerts: 1 acknowledged — open the Alerts page"
    assert only_acked.detail == "1 acknowledged, still firing or pending"


def _firing_alerts(console_env, rule_ids=("error-rate", "cost-increase")):
    """Make the shipped rules ``rule_ids`` fire at once (no hold, one run is enough) on one run with errors."""
    from engine.monitoring.alerts import evaluate_alerts, load_rules, save_rules

    save_rules(
        console_env,
        [r.to_json() | ({"hold": "0s", "min_sample": 1} if r.id in rule_ids else {}) for r in load_rules(console_env)],
        ops=open_ops_db(console_env),
        actor=ADMIN,
    )
    ops = open_ops_db(console_env)
    record_runs(
        ops,
        [make_run("e", hops=2, errors=("timeout", "timeout"))],
        run_id="t",
        clock=lambda: time.time() - 60,
        log=JsonlLog.for_settings(console_env),
    )
    evaluate_alerts(ops, load_rules(console_env), time.time())
    return ops


def _banner_links(at: AppTest) -> list:
    return [link for link in at.get("page_link") if "Alerts" in link.proto.label]


def test_overview_banner_is_a_link_to_the_alerts_page_while_an_alert_fires(console_env):
    _firing_alerts(console_env, ("error-rate",))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    (link,) = _banner_links(at)
    assert link.proto.page.endswith("alerts")
    assert as_shown(link.proto.label) == ":red[Alerts: 1 firing — open the Alerts page]"
    assert any(as_shown(c.value) == "firing: error-rate" for c in at.caption)  # the rule, under the link
    # the banner is the link, not a text beside it (the one warning is the console's sign-in-off banner)
    assert [w.value for w in at.warning] == [BANNER]


def test_overview_banner_leaves_acknowledged_alerts_out_and_counts_them(console_env):
    from engine.monitoring.alerts import acknowledge, current_states

    ops = _firing_alerts(console_env, ("error-rate",))
    assert current_states(ops)["error-rate"].state.value == "firing"
    acknowledge(ops, "error-rate", actor=ADMIN, now=time.time(), note="looking")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    (link,) = _banner_links(at)
    assert as_shown(link.proto.label) == ":gray[Alerts: 1 acknowledged — open the Alerts page]"
    shown = [as_shown(c.value) for c in at.caption]
    assert "1 acknowledged, still firing or pending" in shown
    assert not any("error-rate" in line for line in shown)  # acknowledged: counted, not listed
