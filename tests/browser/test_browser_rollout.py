"""The Rollout page in headless Debian Chromium: start a pilot, watch it advance, roll it back (confirmed); a refused
same-config start; Force that resets and asks first; a pilot-only run that offers "Continue to limited"; the
production promotion that shows the diff and then says what is live; and the controls' labels at 900 px.

A real `streamlit run` against a temp data dir seeded with 60 demo entities and a handed-over candidate. The tests of
this module share that data dir and run in order.
The Start button launches a real worker process; the page's polling fragment
(st.fragment(run_every=...)) must show its progress without any click, which
only a browser exercises (AppTest runs fragments once per script run).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from engine import rollout
from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.settings import load_settings
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.actors import ADMIN
from tests.support.browser_harness import browser_page, chromium, console_server, open_console, wait_for_run  # noqa: F401
from tests.support.rollouts import SAME_DISCOVERY, hand_over_candidate, stop_rollout_workers

pytestmark = pytest.mark.browser

N_ENTITIES = 60
WATCH_S = 120.0


@pytest.fixture(scope="module")
def console_data_dir(tmp_path_factory):
    """Overrides the harness's empty data dir: 60 entities seeded before the console starts."""
    data_dir = tmp_path_factory.mktemp("browser-rollout")
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    with GraphStore.open(settings) as store:
        seed_catalogue(store, N_ENTITIES, seed=7, templates=load_templates())
    hand_over_candidate(open_ops_db(settings), data_dir / "configs")  # the live config itself is refused live
    return data_dir


@pytest.fixture(scope="module")
def stores(console_data_dir):
    settings = load_settings({"DISCOVERY_DATA_DIR": str(console_data_dir)})
    graph = GraphStore.open(settings)
    ops = open_ops_db(settings)
    try:
        yield settings, graph, ops
    finally:
        stop_rollout_workers(ops)
        graph.close()


def button(page, key: str):
    """The visible button of widget ``key`` (Streamlit tags a keyed widget's container with class st-key-<key>;
    a button with help text also holds a hidden copy). Waits for the script run to settle first."""
    wait_for_run(page)
    locator = page.locator(f".st-key-{key} button:visible")
    deadline = time.monotonic() + 30
    while locator.count() != 1 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    return locator


def progress_text(page) -> str:
    bar = page.locator('[data-testid="stProgress"]')
    return bar.first.inner_text().strip() if bar.count() else ""


def test_start_a_pilot_watch_it_advance_then_roll_it_back_with_confirmation(console_server, browser_page, stores):
    _, graph, ops = stores
    before = graph.snapshot(graph.list_entity_ids())
    # open the app's root first, then navigate: a fresh server hit on a deep link first runs pages/ in
    # Streamlit's old directory mode (no st.navigation, see the report); operators arrive at the root
    page = open_console(browser_page, console_server.url)
    page.get_by_role("link", name="Rollout").click()
    page.wait_for_url(re.compile(r".*/rollout(\?.*)?$"))  # the query keeps the operator name
    page.get_by_role("heading", name="Rollout", exact=True).wait_for()
    page.get_by_text("No rollout has been started yet").wait_for()

    # Start: a live pilot at real time (time scale 1, the default), so it stays for a person to decide
    page.get_by_label("Stage", exact=True).wait_for()
    button(page, "rollout_start").click()
    page.get_by_text(re.compile(r"Start: rollout \d+ started \(pilot\)")).wait_for()
    run_id = rollout.list_runs(ops)[0].id

    # progress advances by itself (the fragment polls the worker's checkpoints), up to all 10 pilot entities
    seen: list[str] = []
    deadline = time.monotonic() + WATCH_S
    while "10 of 10 entities" not in (seen[-1] if seen else ""):
        assert time.monotonic() < deadline, f"progress never reached 10 of 10; saw {seen}"
        text = progress_text(page)
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        page.wait_for_timeout(200)  # sampling what the page shows, not pacing the worker
    assert len(seen) >= 2 and seen[0] != seen[-1], seen
    assert seen[-1].startswith("pilot: 10 of 10 entities (100%)")
    state = rollout.rollout_status(ops, run_id).state
    assert state in ("running", "soaking", "inconclusive")
    assert graph.snapshot(graph.list_entity_ids()) != before  # the candidate ran live on the pilot

    # the verdict's criteria and the decision records are on the page
    page.get_by_role("heading", name="Criteria · pilot").wait_for()
    page.get_by_role("heading", name="Decision records").wait_for()

    # the stage report downloads as Markdown under the console's file-name scheme, made from the store
    with page.expect_download() as download:
        button(page, "rollout_report_download").click()
    assert re.fullmatch(rf"discovery-rollout-{run_id}-pilot-\d{{8}}-\d{{4}}\.md", download.value.suggested_filename)
    report = Path(download.value.path()).read_text()
    assert report.startswith(f"# Rollout {run_id} — stage pilot")
    assert "| success | cost_reduction_pct |" in report and "## Decision records" in report

    # Rollback asks first: nothing happens on the first click
    button(page, "rollout_rollback").click()
    page.get_by_text(f"Roll back rollout {run_id}?").wait_for()
    assert rollout.rollout_status(ops, run_id).state not in ("rolling_back", "rolled_back")
    button(page, "rollout_confirm_rollback").click()
    page.get_by_text(re.compile(rf"Rollback: rolled back rollout {run_id}: 10 entities restored")).wait_for(
        timeout=WATCH_S * 1000
    )
    wait_for_run(page)

    status = rollout.rollout_status(ops, run_id)
    assert status.state == "rolled_back" and status.stage("pilot").state == "rolled_back"
    # the page shows the rolled-back state: run header, pilot on the timeline, no second rollback
    page.locator("h3", has_text=f"Rollout {run_id}").filter(has_text="rolled back").wait_for()
    page.get_by_text("rolled back by local: rolled back by an operator from the console").first.wait_for()
    assert button(page, "rollout_rollback").is_disabled()
    assert page.locator('[data-testid="stException"]').count() == 0
    assert graph.snapshot(graph.list_entity_ids()) == before  # the graph is back to the snapshot


# --------------------------------------------------------------------------- guarded start and promotion


def checkbox(page, key: str):
    wait_for_run(page)
    return page.locator(f".st-key-{key} input[type=checkbox]")


def tick(page, key: str) -> None:
    wait_for_run(page)
    page.locator(f".st-key-{key} label").first.click()
    deadline = time.monotonic() + 30
    while not checkbox(page, key).is_checked() and time.monotonic() < deadline:
        page.wait_for_timeout(100)


def start_form(page):
    """The Start form, opened if its expander is closed."""
    wait_for_run(page)
    details = page.locator('[data-testid="stExpander"] details').filter(has_text="Start a rollout")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    button(page, "rollout_start").wait_for()


def open_rollout(page, url: str):
    """The Rollout page by its URL (under 1000 px the sidebar and its links start collapsed)."""
    page = open_console(page, url, "rollout")
    page.wait_for_url(re.compile(r".*/rollout(\?.*)?$"))
    page.get_by_role("heading", name="Rollout", exact=True).wait_for()
    wait_for_run(page)
    return page


def settled(ops, run_id: int) -> str:
    deadline = time.monotonic() + WATCH_S
    while (state := rollout.rollout_status(ops, run_id).state) in ("queued", "running"):
        assert time.monotonic() < deadline, f"rollout {run_id} still {state}"
        time.sleep(0.3)  # polling a real worker process, not pacing the test
    return state


def test_the_live_config_as_a_live_candidate_is_refused_with_one_line(console_server, browser_page, stores):
    _, _, ops = stores
    before = len(rollout.list_runs(ops))
    page = open_rollout(browser_page, console_server.url)
    start_form(page)
    page.locator(".st-key-rollout_candidate label").filter(has_text="Live config").click()
    page.get_by_text(re.compile("This candidate is identical to the live config")).wait_for()
    button(page, "rollout_start").click()
    page.get_by_text(re.compile(r"Start: the candidate \(live config .*identical to the live config")).wait_for()
    assert len(rollout.list_runs(ops)) == before


def test_force_resets_asks_first_and_a_pilot_only_run_offers_continue(console_server, browser_page, stores):
    _, _, ops = stores
    page = open_rollout(browser_page, console_server.url)
    start_form(page)
    assert "Handed-over candidate" in page.locator(".st-key-rollout_candidate").inner_text()
    button(page, "rollout_start").click()
    page.get_by_text(re.compile(r"Start: rollout \d+ started \(pilot\)")).wait_for()
    run_id = rollout.list_runs(ops)[0].id
    assert settled(ops, run_id) in ("soaking", "inconclusive")
    button(page, "rollout_promote").wait_for()
    deadline = time.monotonic() + WATCH_S
    while button(page, "rollout_promote").is_disabled():  # the page polls the worker's verdict
        assert time.monotonic() < deadline, "Promote never enabled"
        page.wait_for_timeout(200)
    page.get_by_text(re.compile("Promote works without Force in about")).wait_for()

    tick(page, "rollout_force")
    button(page, "rollout_promote").click()
    page.get_by_text(re.compile("Force-promote pilot before its minimum duration")).wait_for()
    assert not checkbox(page, "rollout_force").is_checked()  # Force resets at once
    assert rollout.rollout_status(ops, run_id).stage("pilot").state != "promoted"  # nothing happened yet
    button(page, "rollout_confirm_promote").click()
    page.get_by_text(
        re.compile(r"Promote: pilot promoted \(forced\): this run ends here and the live config did NOT change")
    ).wait_for()
    assert not checkbox(page, "rollout_force").is_checked()
    assert rollout.rollout_status(ops, run_id).state == "completed"
    page.locator("h3", has_text=f"Rollout {run_id}").filter(has_text="live config unchanged").wait_for()
    button(page, "rollout_continue").wait_for()
    assert button(page, "rollout_continue").inner_text().strip().endswith("Continue to limited")
    button(page, "rollout_continue").click()
    page.get_by_text(
        re.compile(rf"Continue: rollout \d+ started at limited with the candidate of rollout {run_id}")
    ).wait_for()
    continued = rollout.list_runs(ops)[0]
    assert continued.stages == ("limited",) and continued.candidate_hash == SAME_DISCOVERY.hash()
    rollout.cancel(ops, continued.id, ADMIN)


def test_production_promotion_shows_the_diff_then_says_what_is_live(console_server, browser_page, stores):
    _, _, ops = stores
    page = open_rollout(browser_page, console_server.url)
    start_form(page)
    stage = page.get_by_label("Stage", exact=True)
    stage.click()
    stage.fill("production")
    stage.press("Enter")
    page.get_by_text(re.compile("I understand: this rollout skips pilot, limited")).wait_for()
    entities = page.get_by_role("spinbutton", name="Entities (0 = every entity in the graph)")
    entities.fill("20")
    entities.press("Enter")
    wait_for_run(page)
    button(page, "rollout_start").click()  # refused: the acknowledgement is not ticked
    page.get_by_text(re.compile("Start: tick the acknowledgement first: this rollout skips pilot, limited")).wait_for()
    tick(page, "rollout_ack")
    button(page, "rollout_start").click()
    page.get_by_text(re.compile(r"Start: rollout \d+ started \(production; skipped: pilot, limited\)")).wait_for()
    run_id = rollout.list_runs(ops)[0].id
    assert settled(ops, run_id) in ("soaking", "inconclusive")
    deadline = time.monotonic() + WATCH_S
    while button(page, "rollout_promote").is_disabled():
        assert time.monotonic() < deadline, "Promote never enabled"
        page.wait_for_timeout(200)
    tick(page, "rollout_force")
    button(page, "rollout_promote").click()
    page.get_by_text(re.compile(f"Promoting production makes {SAME_DISCOVERY.hash()}")).wait_for()
    box = page.locator(".st-key-rollout_promote_box")
    box.locator('[data-testid="stDataFrame"]').wait_for()  # the parameter diff that will go live
    assert "In short: cache_ttl_s 300 → 600." in box.inner_text()
    assert rollout.live_config(ops).hash() != SAME_DISCOVERY.hash()
    button(page, "rollout_confirm_promote").click()
    page.get_by_text(re.compile(r"is now the live config \(was the defaults \(")).first.wait_for()
    assert rollout.live_config(ops).hash() == SAME_DISCOVERY.hash()
    page.locator("h3", has_text=f"Rollout {run_id}").filter(has_text="live config changed").wait_for()


def test_the_controls_keep_their_labels_at_900_px(console_server, browser_page, stores):
    settings, graph, ops = stores
    if not rollout.list_runs(ops):  # run on its own: a queued dry run is enough to draw the controls
        rollout.start_rollout(settings, ops, stage="pilot", dry_run=True, launch=False, graph=graph, actor=ADMIN)
    page = browser_page
    page.set_viewport_size({"width": 900, "height": 1000})
    page = open_rollout(page, console_server.url)
    for key, label in (
        ("rollout_pause", "Pause"),
        ("rollout_resume", "Resume"),
        ("rollout_promote", "Promote…"),
        ("rollout_rollback", "Roll back…"),
    ):
        control = button(page, key)
        assert control.inner_text().strip().endswith(label), key
        # the label is not cut: the button's text fits its box on one line
        fits = control.evaluate(
            "b => { const t = b.querySelector('p') || b; return t.scrollWidth <= t.clientWidth + 1 && "
            "t.getBoundingClientRect().height < 40 }"
        )
        assert fits, (key, control.bounding_box())
