"""Who is acting in this browser tab: the signed-in user (or ``local`` with sign-in off) and their role.

``gate()`` runs before every page (streamlit_app.py): with sign-in configured (``[auth]`` in the
secrets, console.signin) a tab nobody signed in to gets only the sign-in screen; a console serving beyond
loopback without sign-in shows only its refusal. Every page calls ``operator_field()`` once, first (who is
signed in, their role, Sign out, in the sidebar; the banner while sign-in is off, or the expired-session
line, over the page); callbacks call ``actor()`` when a button fires and pass it to the engine, which checks the
role itself (``engine.store.access.authorize``: the role map is read again at each act, so a role taken
away stops this tab at its next click). Pages draw a button the actor may not use disabled, with
``needs(action)`` (``"needs approver"``, or the expired-session line) as its help text.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import streamlit as st

from console.services import get_services
from console.signin import (
    BANNER,
    EXPIRED,
    NO_COOKIE_SECRET,
    SigninConfig,
    identity_claims,
    insecure_requested,
    is_expired,
    signin_config,
    startup_refusal,
)
from console.text import md_escape
from engine.core.access import LOCAL_ACTOR, Actor, PermissionDenied
from engine.core.access import needs as _needs
from engine.core.errors import DiscoveryError
from engine.store.access import signed_in_actor


def _secrets() -> dict:
    """The console's secrets (an empty dict when there is no secrets file at all)."""
    try:
        return st.secrets.to_dict()
    except FileNotFoundError:  # Streamlit's "no secrets file" (StreamlitSecretNotFoundError)
        return {}


def config() -> SigninConfig | None:
    """This console's sign-in configuration, None when sign-in is off (ConfigError when half-configured)."""
    return signin_config(_secrets())


def _signed_in() -> bool:
    return bool(st.user.get("is_logged_in"))


def actor() -> Actor:
    """The actor of this tab now (read when a button fires): the signed-in person with their current role.

    Sign-in off: the built-in ``local`` admin. Sign-in on and nobody signed in: PermissionDenied (the
    gate shows only the sign-in screen then, so a page never gets here).
    """
    cfg = config()
    if cfg is None:
        return LOCAL_ACTOR
    if not _signed_in():
        raise PermissionDenied("nobody is signed in to this tab: sign in first")
    return signed_in_actor(get_services().ops, **identity_claims(st.user.to_dict(), cfg))


def needs(action: str) -> str | None:
    """``"needs approver"`` when this tab's actor may not perform ``action``, the expired-session line when
    its session has ended; None when it may."""
    try:
        who = actor()
    except PermissionDenied:
        return _needs(None, action)
    if is_expired(who.expires_at):
        return EXPIRED
    return _needs(who, action)


def operator_field() -> Actor:
    """Draw who is acting (every page calls this once, first): in the sidebar the person, their role and Sign
    out; over the page the sign-in-off banner, or the expired-session line. Returns the actor.

    A page that somehow runs outside streamlit_app.py's gate (a first deep link on a fresh server) is gated
    here too: it shows the sign-in screen or the refusal and stops.
    """
    blocked = gate()
    if blocked is not None:
        blocked()
        st.stop()
    who = actor()
    if who is LOCAL_ACTOR:
        st.warning(BANNER, icon=":material/lock_open:")  # md-safe: a constant
        st.sidebar.caption(f"Acting as {who.display}: sign-in is off")  # md-safe: a constant identity
        return who
    name = f"{who.name} · " if who.name and who.name.lower() != who.key else ""
    st.sidebar.caption(f"Signed in as {md_escape(name + who.display)}")
    if is_expired(who.expires_at):
        st.error(EXPIRED, icon=":material/timer_off:")  # md-safe: a constant
    st.sidebar.button("Sign out", key="identity_sign_out", on_click=st.logout, icon=":material/logout:")
    return who


def _sign_in_screen() -> None:
    st.title("Discovery Ops")
    st.write("Sign in to use the console. Your role (viewer, operator, approver or admin) comes from the role map.")
    st.button("Sign in", key="identity_sign_in", type="primary", on_click=_login, icon=":material/login:")


def _login() -> None:
    cfg = config()
    if cfg is None or cfg.provider == "default":
        st.login()
    else:
        st.login(cfg.provider)


def _refusal_screen(message: str) -> Callable[[], None]:
    def page() -> None:
        st.title("Discovery Ops")
        st.error(md_escape(message))

    return page


def gate() -> Callable[[], None] | None:
    """None when this run may show the pages; otherwise the one page this run shows instead: the sign-in
    screen, or why the console refuses to serve (a half-configured sign-in, or no sign-in beyond loopback)."""
    try:
        cfg = config()
    except DiscoveryError as exc:  # a half-configured [auth]: never fall back to running without sign-in
        return _refusal_screen(str(exc))
    address = st.get_option("server.address")
    refusal = startup_refusal(address, signin_on=cfg is not None, insecure=insecure_requested(os.environ))
    if refusal:
        return _refusal_screen(refusal)
    if cfg is not None and not cfg.has_cookie_secret:  # Streamlit would refuse st.login with a traceback
        return _refusal_screen(NO_COOKIE_SECRET)
    if cfg is not None and not _signed_in():
        return _sign_in_screen
    return None


__all__ = ["actor", "config", "gate", "needs", "operator_field"]
