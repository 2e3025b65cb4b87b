"""Who is acting in this browser tab: the signed-in user (or ``local`` with sign-in off) and their role.

Every page calls ``operator_field()`` once (it draws who is signed in in the
sidebar); callbacks call ``actor()`` when a button fires and pass it to the
engine, which checks the role itself (``engine.store.access.authorize``). Pages
draw a button the actor may not use disabled, with ``needs(action)``
(``"needs approver"``) as its help text.
"""

from __future__ import annotations

import streamlit as st

from engine.core.access import LOCAL_ACTOR, Actor
from engine.core.access import needs as _needs


def actor() -> Actor:
    """The actor of this tab now (read when a button fires)."""
    return LOCAL_ACTOR


def needs(action: str) -> str | None:
    """``"needs approver"`` when this tab's actor may not perform ``action``; None when it may."""
    return _needs(actor(), action)


def operator_field() -> Actor:
    """Draw who is acting in the sidebar (every page calls this once) and return the actor."""
    who = actor()
    st.sidebar.caption(f"Signed in as {who.display}")  # md-safe: an identity from the provider, shown as text
    return who


__all__ = ["actor", "needs", "operator_field"]
