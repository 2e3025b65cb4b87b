"""Who is acting: one operator name per browser session, on every page and in every audit row.

Until sign-in exists this is a name the operator types once. The sidebar field
is drawn by every page under one key, so Streamlit keeps it while the operator
moves between pages, and the name is mirrored into the URL (``?operator=``) so a
reload or a bookmarked page comes back with it. Every button that changes
something records ``console:<name>`` (``actor()``); pages never build that
string themselves.
"""

from __future__ import annotations

import streamlit as st

KEY = "operator_name"
#: where the name is kept between pages (not a widget key: Streamlit drops those on a page change)
KEPT = "_operator_name_kept"
PARAM = "operator"
DEFAULT = "operator"
#: longer names are cut: the audit log's actor column is for a name, not a paragraph
MAX_CHARS = 64
HELP = (
    "Your name, shared by every page of this browser tab: recorded as console:<name> in the audit log "
    "and the decision records."
)


def clean(name: object) -> str:
    """A typed name as recorded: one line, trimmed, at most MAX_CHARS; the default when empty."""
    text = " ".join(str(name or "").split())[:MAX_CHARS]
    return text or DEFAULT


def actor_of(name: object) -> str:
    """``console:<name>`` for the audit log."""
    return f"console:{clean(name)}"


def _remember() -> None:
    st.session_state[KEPT] = clean(st.session_state.get(KEY))
    st.query_params[PARAM] = st.session_state[KEPT]


def operator_field() -> str:
    """Draw the sidebar's Operator field (every page calls this once) and return ``console:<name>``.

    Streamlit forgets a widget's value when the page changes (a widget's identity includes its
    page), so the name is kept under a key of its own and put back into the field on every run.
    """
    if KEPT not in st.session_state:
        st.session_state[KEPT] = clean(st.query_params.get(PARAM))
    st.session_state[KEY] = st.session_state[KEPT]
    # md-safe: HELP is a literal of this module
    st.sidebar.text_input("Operator", key=KEY, max_chars=MAX_CHARS, help=HELP, on_change=_remember)
    if st.query_params.get(PARAM) != st.session_state[KEPT]:
        st.query_params[PARAM] = st.session_state[KEPT]
    return actor()


def actor() -> str:
    """``console:<name>`` for the name in the field now (read when a button fires: callbacks run first)."""
    return actor_of(st.session_state.get(KEY) or st.session_state.get(KEPT))


__all__ = ["DEFAULT", "KEY", "PARAM", "actor", "actor_of", "clean", "operator_field"]
