"""Sign-in in headless Chromium against a local OpenID provider (oidc-provider-mock on 127.0.0.1, started by the
test): nobody gets past the sign-in screen without the provider, a signed-in person sees who they are and
their role, a viewer's controls are disabled with the role they need, an admin's change carries their
verified e-mail into the Audit page, and Sign out ends it (issue 15).

The console runs as ``make run`` starts it: the operator's secrets file has ``[auth]`` without a cookie
secret, and console.signin generates the secret into the data dir and writes the console's secrets file
(passed to Streamlit as ``secrets.files``).

The four-eyes flow on the Rollout page (a viewer sees Promote and Roll back disabled, an operator starts a
pilot and cannot promote it, an approver does) runs once the Rollout page draws its buttons with
console.identity.needs; until then it is skipped with that reason.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import werkzeug.serving
from oidc_provider_mock import User
from oidc_provider_mock import app as oidc_app
from playwright.sync_api import expect

from console.signin import BANNER, console_secrets_files
from engine import rollout
from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.access import LOCAL_ACTOR
from engine.core.settings import load_settings
from engine.store.access import grant
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.browser_harness import (  # noqa: F401
    REPO_ROOT,
    browser_page,
    chromium,
    free_port,
    open_console,
    running_console,
    wait_for_run,
)
from tests.support.rollouts import hand_over_candidate, stop_rollout_workers

pytestmark = pytest.mark.browser

VIEWER = "vera@example.com"
OPERATOR = "otto@example.com"
APPROVER = "april@example.com"
ADMIN = "ada@example.com"
PEOPLE = (VIEWER, OPERATOR, APPROVER, ADMIN)
WATCH_S = 120.0
#: the Rollout page draws its buttons by the actor's role (needs(): disabled with "needs approver")
ROLLOUT_ON_CONTRACT = any(
    "needs(" in (REPO_ROOT / f).read_text() for f in ("pages/rollout.py", "console/rollout_view.py")
)


@pytest.fixture(scope="module")
def idp() -> Iterator[str]:
    """oidc-provider-mock on 127.0.0.1 (a free port) with one predefined user per person; its issuer URL."""
    saved = os.environ.get("AUTHLIB_INSECURE_TRANSPORT")
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # the provider serves plain http on loopback
    users = [
        User(
            sub=email,
            claims={"email": email, "email_verified": True, "name": email.split("@")[0].title(), "groups": []},
        )
        for email in PEOPLE
    ]
    server = werkzeug.serving.make_server("127.0.0.1", free_port(), oidc_app(user_claims=users), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        if saved is None:
            os.environ.pop("AUTHLIB_INSECURE_TRANSPORT", None)
        else:
            os.environ["AUTHLIB_INSECURE_TRANSPORT"] = saved


@pytest.fixture(scope="module")
def console(tmp_path_factory, idp):
    """The console with sign-in on (the provider above), on a data dir with 60 entities, a candidate and roles."""
    data_dir = tmp_path_factory.mktemp("browser-signin")
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    with GraphStore.open(settings) as store:
        seed_catalogue(
            store, 60, seed=7, templates=load_templates()
        )  # as the Rollout browser test: a pilot that does not trip a trigger
    ops = open_ops_db(settings)
    hand_over_candidate(ops, data_dir / "configs")
    for email, role in ((OPERATOR, "operator"), (APPROVER, "approver"), (ADMIN, "admin")):
        grant(ops, LOCAL_ACTOR, email, role, note="browser test")
    operator_secrets = tmp_path_factory.mktemp("operator") / "secrets.toml"
    operator_secrets.write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'  # Streamlit fills in its port
        'client_id = "discovery-console"\n'
        'client_secret = "browser-test-secret"\n'
        f'server_metadata_url = "{idp}/.well-known/openid-configuration"\n'
    )
    files = console_secrets_files(data_dir, operator_secrets)
    assert len(files) == 2  # the cookie secret was generated into the data dir
    env = {"STREAMLIT_SECRETS_FILES": " ".join(str(f) for f in files), "AUTHLIB_INSECURE_TRANSPORT": "1"}
    with running_console(data_dir, env=env) as server:
        try:
            yield server, ops
        finally:
            stop_rollout_workers(ops)


def sidebar(page):
    return page.locator('[data-testid="stSidebar"]')


def sign_in(page, url: str, email: str):
    """Sign in as ``email`` through the provider's form; back on the console, signed in."""
    page = open_console(page, url)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name=f"Authorize as {email}").click()  # the provider's one-click user
    page.wait_for_url(re.compile(re.escape(url) + r"/?(\?.*)?$"), timeout=60_000)
    wait_for_run(page)
    expect(sidebar(page).get_by_text(re.compile(rf"Signed in as .*{re.escape(email)}"))).to_be_visible(timeout=30_000)
    return page


def sign_out(page, url: str):
    """Sign out in the sidebar; confirm the provider's end-session form when it asks; the sign-in screen again."""
    sidebar(page).get_by_role("button", name="Sign out").click()
    end = page.get_by_role("button", name="End session")
    sign_in_button = page.get_by_role("button", name="Sign in")
    expect(end.or_(sign_in_button)).to_be_visible(timeout=60_000)
    if end.is_visible():
        end.click()
    page.goto(url, wait_until="domcontentloaded")
    wait_for_run(page)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=30_000)


def button(page, key: str):
    wait_for_run(page)
    return page.locator(f".st-key-{key} button:visible")


def records_in(doc) -> list[dict]:
    """Every JSON object of a downloaded document, at any depth."""
    if isinstance(doc, dict):
        return [doc, *(r for v in doc.values() for r in records_in(v))]
    if isinstance(doc, list):
        return [r for v in doc for r in records_in(v)]
    return []


def both_people(record: dict) -> bool:
    """A promotion's record: started by the operator, approved by the approver (each a verified identity)."""
    started, approved = record.get("started_by"), record.get("approved_by")
    return (
        isinstance(started, dict)
        and isinstance(approved, dict)
        and (started.get("email"), approved.get("email")) == (OPERATOR, APPROVER)
    )


def open_page(page, url: str, path: str, heading: str):
    page = open_console(page, url, path)
    page.get_by_role("heading", name=heading, exact=True).wait_for()
    wait_for_run(page)
    return page


def test_sign_in_roles_audit_and_sign_out(console, browser_page):
    server, ops = console
    # nobody signed in: the sign-in screen only, whatever page the URL names
    page = open_console(browser_page, server.url, "admin")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.get_by_role("heading", name="Admin", exact=True).count() == 0
    assert page.get_by_text(BANNER).count() == 0

    # a viewer: who they are in the sidebar, the Admin page readable, its controls disabled with the role needed
    page = sign_in(browser_page, server.url, VIEWER)
    expect(sidebar(page).get_by_text(f"{VIEWER} (viewer)", exact=False)).to_be_visible()
    assert page.get_by_text(BANNER).count() == 0
    page = open_page(page, server.url, "admin", "Admin")
    page.get_by_text(ADMIN).first.wait_for(state="attached")  # the role map is listed for everyone (a grid cell)
    assert button(page, "admin_grant").is_disabled()
    sign_out(page, server.url)
    assert sidebar(page).get_by_role("button", name="Sign out").count() == 0

    # an admin grants a role; the Audit page shows the change under their verified e-mail and the provider
    page = sign_in(browser_page, server.url, ADMIN)
    page = open_page(page, server.url, "admin", "Admin")
    page.get_by_label("Principal", exact=True).fill("group:sre")
    page.get_by_label("Principal", exact=True).press("Enter")
    wait_for_run(page)
    button(page, "admin_grant").click()
    page.get_by_text("group:sre is now operator.").wait_for()
    page = open_page(page, server.url, "audit", "Audit")
    page.get_by_label("Person", exact=True).fill(ADMIN)
    page.get_by_label("Person", exact=True).press("Enter")
    page.get_by_text("1 audit row.").wait_for()
    rows = ops.list_audit(5, action_prefix="access.grant", person=ADMIN)
    assert [(r["target"], r["actor_email"], r["actor_verified_by"]) for r in rows] == [("group:sre", ADMIN, "oidc")]
    assert rows[0]["actor_issuer"].startswith("http://127.0.0.1:")
    with page.expect_download() as download:
        button(page, "audit_csv").click()
    assert re.fullmatch(r"discovery-audit-ada-example-com-\d{8}-\d{4}\.csv", download.value.suggested_filename)
    text = Path(download.value.path()).read_text()
    assert ADMIN in text and "group:sre" in text and ",oidc" not in text  # "OpenID sign-in", as on the page
    sign_out(page, server.url)


@pytest.mark.skipif(not ROLLOUT_ON_CONTRACT, reason="the Rollout page does not draw its buttons with needs() yet")
def test_four_eyes_a_viewer_an_operator_and_a_second_approver(console, browser_page):
    server, ops = console
    # the operator starts a pilot
    page = sign_in(browser_page, server.url, OPERATOR)
    page = open_page(page, server.url, "rollout", "Rollout")
    details = page.locator('[data-testid="stExpander"] details').filter(has_text="Start a rollout")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    button(page, "rollout_start").click()
    page.get_by_text(re.compile(r"Start: rollout \d+ started \(pilot\)")).wait_for()
    run_id = rollout.list_runs(ops)[0].id
    deadline = time.monotonic() + WATCH_S
    while rollout.rollout_status(ops, run_id).state in ("queued", "running"):
        assert time.monotonic() < deadline, "the pilot did not settle"
        time.sleep(0.3)  # polling a real worker process
    page.reload(wait_until="domcontentloaded")
    wait_for_run(page)
    expect(button(page, "rollout_promote")).to_be_disabled()  # an operator does not promote (nor would four-eyes)
    sign_out(page, server.url)

    # a viewer: Promote and Roll back disabled, with the role they need
    page = sign_in(browser_page, server.url, VIEWER)
    page = open_page(page, server.url, "rollout", "Rollout")
    expect(button(page, "rollout_promote")).to_be_disabled()
    expect(button(page, "rollout_rollback")).to_be_disabled()
    sign_out(page, server.url)

    # a second person, an approver, promotes (forced: the pilot's minimum duration has not passed)
    page = sign_in(browser_page, server.url, APPROVER)
    page = open_page(page, server.url, "rollout", "Rollout")
    page.locator(".st-key-rollout_force label").first.click()
    wait_for_run(page)
    button(page, "rollout_promote").click()
    button(page, "rollout_confirm_promote").click()
    page.get_by_text(re.compile(r"Promote: ")).first.wait_for()
    records = [r for r in ops.list_audit(50) if r["action"].startswith("rollout.")]
    emails = {r["actor_email"] for r in records}
    assert {OPERATOR, APPROVER} <= emails, records
    # the page's decision records name who started and who approved the promotion (its download holds them all)
    page.reload(wait_until="domcontentloaded")
    wait_for_run(page)
    page.get_by_role("heading", name="Decision records").wait_for()
    with page.expect_download() as download:
        button(page, "rollout_records_download").click()
    records = json.loads(Path(download.value.path()).read_text())
    assert any(both_people(r) for r in records_in(records)), "no decision record names the starter and the approver"
    page = open_page(page, server.url, "audit", "Audit")
    page.get_by_label("Action starts with", exact=True).fill("rollout.")
    page.get_by_label("Action starts with", exact=True).press("Enter")
    wait_for_run(page)
    cells = page.locator('[data-testid="stDataFrame"] [role="gridcell"]')
    cells.filter(has_text=OPERATOR).first.wait_for(state="attached")
    cells.filter(has_text=APPROVER).first.wait_for(state="attached")
    sign_out(page, server.url)
    assert button(page, "rollout_promote").count() == 0  # signed out: the buttons are gone
