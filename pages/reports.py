"""Reports: choose a window (and a stage), preview, download as Markdown, JSON or self-contained HTML."""

import base64
import json
import time

import streamlit as st

from console.identity import operator_field
from console.services import call, get_services
from console.text import md_code, md_escape
from engine.monitoring import alerts
from engine.monitoring.events import stage_ids
from engine.monitoring.reports import FORMATS, MEDIA_TYPES, build_report, render, report_filename
from engine.monitoring.windows import parse_window

WINDOWS = ("15m", "1h", "6h", "24h", "7d", "30d")
FORMAT_LABELS = {"md": "Markdown", "json": "JSON", "html": "HTML"}
ALL_STAGES = "all stages"

services = get_services()
operator_field()  # one name for every page of this tab (console.identity)
ops = services.ops

st.title("Reports")
st.caption(
    "What the system cost, found and suffered over a window, old against new, with the alert states: "
    "the same report as `python -m engine report --format md|json|html --window 24h -o FILE`."
)

left, mid, right = st.columns([2, 2, 2], vertical_alignment="bottom")
preset = left.selectbox("Window", WINDOWS, index=WINDOWS.index("24h"), key="report_window")
custom = mid.text_input("or any window", key="report_custom_window", placeholder="e.g. 90m, 3d, 2w").strip()
window = custom or preset
window_s = call(parse_window, window)  # a bad window: one-line error, nothing built
now = time.time()
stages = call(stage_ids, ops, now - window_s, now)
stage = right.selectbox("Stage", [ALL_STAGES, *stages], key="report_stage")
stage_id = None if stage == ALL_STAGES else stage

rules = call(alerts.load_rules, services.settings)
report = call(build_report, ops, window, now=now, stage_id=stage_id, rules=rules)
texts = {fmt: render(report, fmt) for fmt in FORMATS}

s = report.summary
st.markdown(
    f"**{s.overall.runs:,} runs** in the last **{md_escape(report.window_label)}** "
    f"(new {s.by_system['new'].runs:,}, old {s.by_system['old'].runs:,})"
    + (f" · stage {md_code(stage_id)}" if stage_id else "")
)
if s.overall.runs == 0:
    st.info(
        f"No discovery runs recorded in the last {md_escape(report.window_label)}: the report is valid but empty. "
        "Pick a longer window, or record runs (`python -m engine discover`, a rollout, tuning)."
    )

for column, fmt in zip(st.columns(len(FORMATS)), FORMATS):
    name = report_filename(now, report.window_label, fmt)
    column.download_button(
        f"Download {md_escape(FORMAT_LABELS[fmt])}",
        texts[fmt].encode("utf-8"),
        file_name=name,
        mime=MEDIA_TYPES[fmt],
        key=f"download_{fmt}",
        icon=":material/download:",
        on_click="ignore",
        width="stretch",
        help=f"{md_escape(name)} · {len(texts[fmt].encode('utf-8')):,} bytes",
    )

st.subheader("Preview")
html_tab, md_tab, json_tab = st.tabs(["HTML", "Markdown", "JSON"])
with html_tab:
    # a data: URL has an opaque origin: the report cannot reach the console even if it held markup
    encoded = base64.b64encode(texts["html"].encode("utf-8")).decode("ascii")
    st.iframe(f"data:text/html;base64,{encoded}", height=900)
with md_tab:
    st.code(texts["md"], language="markdown")
with json_tab:
    st.json(json.loads(texts["json"]), expanded=2)
