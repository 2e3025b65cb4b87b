"""Audit: who did what, when, on what, and how their identity was established (verified e-mail, issuer,
subject, role), filtered by person, action and time, with a CSV download.

Thin and read-only: OpsDB.list_audit filters; console.audit_view makes the table and the file. Every role
may read it (a viewer too).
"""

from __future__ import annotations

import streamlit as st

from console import audit_view as avw
from console.actionable_view import window
from console.identity import operator_field
from console.services import call, get_services
from console.text import md_escape

services = get_services()
operator_field()  # who is acting in this tab (console.identity)

st.title("Audit")
st.caption(
    "Every change anyone made — in the console, on the command line or by the engine on their behalf — with the "
    "identity it was made under: the verified e-mail, the provider's issuer and subject, the role at the time "
    "and how the identity was established. Newest first; times are UTC."
)

c1, c2, c3, c4 = st.columns(4)
person = c1.text_input("Person", key="audit_person", help="Part of the actor or the verified e-mail, any case.")
action = c2.text_input(
    "Action starts with", key="audit_action", help="e.g. rollout. or access.grant; empty: every action."
)
since = c3.date_input("Since (UTC)", value=None, key="audit_since", help="Empty: from the first row.")
until = c4.date_input("Until (UTC, included)", value=None, key="audit_until", help="Empty: up to now.")

start, end = window(since, until)
if start is not None and end is not None and end <= start:
    st.warning("The window ends before it begins: pick an until date on or after the since date.")
    st.stop()
wanted = avw.AuditFilter(person=person, action_prefix=action, since=since, until=until)
rows = call(services.ops.list_audit, **wanted.query())

st.markdown(md_escape(avw.summary(rows, wanted)))
if not rows:
    st.info("No audit row matches this filter.")
    st.stop()

name = avw.csv_name(wanted)
st.download_button(
    "Download (CSV)",
    avw.csv_bytes(rows),
    help=f"{md_escape(name)} · the rows above with every column; cells a spreadsheet would run are escaped",
    file_name=name,
    mime="text/csv",
    key="audit_csv",
    icon=":material/download:",
    on_click="ignore",
)
st.dataframe(
    avw.audit_frame(rows),
    hide_index=True,
    width="stretch",
    key="audit_table",
    column_config={h: st.column_config.TextColumn(h) for h in avw.HEADERS.values() if h != "#"},
)
