"""AppTest of sign-in and roles in the console: the banner while sign-in is off, the sign-in screen in front of
every page while nobody is signed in, who is signed in (role, Sign out) in the sidebar, the Admin page's
controls for an admin and for a viewer, an expired session, and the Audit page with each row's verified
identity and its CSV download."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console.signin import BANNER, EXPIRED, NO_COOKIE_SECRET
from engine.core.access import LOCAL_ACTOR
from engine.store.access import grant, list_roles
from engine.store.opsdb import open_ops_db
from tests.support.console_env import as_shown, seeded_console_env

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
TIMEOUT = 60
ISSUER = "http://127.0.0.1:9/idp"
AUTH = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "a-test-cookie-secret-of-enough-length",
    "client_id": "discovery-console",
    "client_secret": "s3cret",
    "server_metadata_url": f"{ISSUER}/.well-known/openid-configuration",
}


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    with seeded_console_env(tmp_path_factory, "signin-pages", 12, 7) as (settings, _store):
        ops = open_ops_db(settings)
        grant(ops, LOCAL_ACTOR, "admin@example.com", "admin")
        yield ops


def user(email: str, *, age_s: float = 60.0) -> dict:
    return {
        "is_logged_in": True,
        "email": email,
        "email_verified": True,
        "name": email.split("@")[0].title(),
        "iss": ISSUER,
        "sub": f"sub-{email.split('@')[0]}",
        "iat": int(time.time() - age_s),
    }


def app(page: str | None = None, *, signed_in: dict | None = None, sign_in: bool = True) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if sign_in:
        at.secrets["auth"] = AUTH
        at.user = signed_in or {"is_logged_in": False}
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> list[str]:
    return [as_shown(str(e.value)) for e in (*at.markdown, *at.caption, *at.warning, *at.error, *at.success)]


def sidebar_captions(at: AppTest) -> list[str]:
    return [as_shown(c.value) for c in at.sidebar.caption]


def test_with_sign_in_off_every_page_says_so_and_acts_as_local(console):
    at = app(sign_in=False)
    assert [w.value for w in at.warning] == [BANNER]
    assert "Acting as local (admin): sign-in is off" in sidebar_captions(at)
    at.switch_page("pages/admin.py").run()
    assert [w.value for w in at.warning] == [BANNER]
    assert not at.button(key="admin_grant").disabled
    at.text_input(key="admin_principal").input("Dana@Example.com")
    at.selectbox(key="admin_role").select("approver")
    at.button(key="admin_grant").click().run()
    assert "dana@example.com is now approver." in texts(at)
    entries = [(e.principal, e.role.label, e.updated_by) for e in list_roles(console)]
    assert ("dana@example.com", "approver", "local") in entries


def test_nobody_signed_in_sees_only_the_sign_in_screen(console):
    at = app()
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.warning and not at.dataframe and not at.metric
    assert [t.value for t in at.title] == ["Discovery Ops"]


def test_a_viewer_sees_who_they_are_and_the_admin_controls_disabled(console):
    at = app("pages/admin.py", signed_in=user("vera@example.com"))
    assert BANNER not in [w.value for w in at.warning]
    assert "Signed in as Vera · vera@example.com (viewer)" in sidebar_captions(at)
    assert at.sidebar.button(key="identity_sign_out").label == "Sign out"
    for key in ("admin_grant", "admin_remove", "admin_revoke", "admin_seed"):
        button = at.button(key=key)
        assert button.disabled and button.help == "needs admin", key
    assert any("admin@example.com" in str(v) for v in at.dataframe[0].value["principal"])  # a viewer sees the list


def test_an_admin_grants_and_the_audit_page_shows_their_verified_identity(console):
    at = app("pages/admin.py", signed_in=user("admin@example.com"))
    assert "Signed in as Admin · admin@example.com (admin)" in sidebar_captions(at)
    at.text_input(key="admin_principal").input("group:sre")
    at.selectbox(key="admin_role").select("operator")
    at.text_input(key="admin_note").input("on call")
    at.button(key="admin_grant").click().run()
    assert "group:sre is now operator." in texts(at)
    at.switch_page("pages/audit.py").run()
    at.text_input(key="audit_person").input("admin@").run()
    frame = at.dataframe[0].value
    row = frame[frame["target"] == "group:sre"].iloc[0]
    assert row["action"] == "access.grant" and row["who"] == "admin@example.com"
    assert row["verified e-mail"] == "admin@example.com" and row["issuer"] == ISSUER
    assert row["subject"] == "sub-admin" and row["role"] == "admin" and row["verified by"] == "OpenID sign-in"
    assert "role: operator" in row["details"]
    download = at.get("download_button")[0]
    assert download.proto.label == "Download (CSV)"
    at.text_input(key="audit_action").input("nothing.").run()
    assert any("No audit row matches this filter." in i.value for i in at.info)


def test_an_expired_session_is_told_so_and_cannot_act(console):
    at = app("pages/admin.py", signed_in=user("admin@example.com", age_s=13 * 3600))
    assert EXPIRED in [e.value for e in at.error]
    button = at.button(key="admin_grant")
    assert button.disabled and button.help == EXPIRED


def test_sign_in_without_a_cookie_secret_says_how_to_start_and_shows_no_page(console):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.secrets["auth"] = {k: v for k, v in AUTH.items() if k != "cookie_secret"}
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception and [as_shown(e.value) for e in at.error] == [as_shown(NO_COOKIE_SECRET)]
    assert not at.button and BANNER not in [w.value for w in at.warning]


def test_a_half_configured_sign_in_shows_only_the_error_never_the_pages(console):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.secrets["auth"] = {k: v for k, v in AUTH.items() if k != "client_secret"}
    at.run()
    assert not at.exception and "missing client_secret" in as_shown(at.error[0].value)
    assert not at.button and not at.warning
