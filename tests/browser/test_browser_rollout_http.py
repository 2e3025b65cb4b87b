"""A rollout on an HTTP evaluator from the Rollout page, in headless Debian Chromium (issue 13, "What it must show"):
start it with 8 entities in flight after confirming its estimated cost, watch its progress advance, stop the
evaluator, see the stage pause with the reason, start the evaluator again on the same port, Resume, and see the
stage reach its end with every entity counted exactly once.

A real `streamlit run` against a temp data dir seeded with 60 demo entities and a handed-over candidate; a real
worker process; the evaluator is engine.discovery.evaluator_server in this test process, answering from the
simulated world and really sleeping each hop's latency times LATENCY_FACTOR, so the limited stage (60 entities,
batches of 10) takes a few seconds per batch: long enough to stop the evaluator in the middle of it.
"""

from __future__ import annotations

import re
import time

import pytest

from console.rollout_view import run_view
from engine import rollout
from engine.catalogue.generator import seed_catalogue
from engine.catalogue.templates import load_templates
from engine.core.settings import load_settings
from engine.discovery.evaluator_server import EvaluatorServer
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.browser.test_browser_rollout import button, progress_text, tick
from tests.support.browser_harness import browser_page, chromium, console_server, open_console, wait_for_run  # noqa: F401
from tests.support.rollouts import SETTLED, hand_over_candidate, stop_rollout_workers

pytestmark = pytest.mark.browser

N_ENTITIES = 60
#: each hop sleeps its world latency (1.5-7 s medians) times this: a batch of 10 paired entities takes seconds
LATENCY_FACTOR = 0.006
IN_FLIGHT = 8
FAST = 864000  # time scale: a stage day every 0.1 s, so a passed stage soaks at once
WATCH_S = 180.0


@pytest.fixture(scope="module")
def console_data_dir(tmp_path_factory):
    """Overrides the harness's empty data dir: 60 entities seeded and a candidate handed over before the console
    starts."""
    data_dir = tmp_path_factory.mktemp("browser-rollout-http")
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    with GraphStore.open(settings) as store:
        seed_catalogue(store, N_ENTITIES, seed=7, templates=load_templates())
    hand_over_candidate(open_ops_db(settings), data_dir / "configs")
    return data_dir


@pytest.fixture(scope="module")
def ops(console_data_dir):
    ops = open_ops_db(load_settings({"DISCOVERY_DATA_DIR": str(console_data_dir)}))
    yield ops
    stop_rollout_workers(ops)


@pytest.fixture
def evaluator():
    server = EvaluatorServer(world_seed=1, latency_factor=LATENCY_FACTOR).start()
    try:
        yield server
    finally:
        server.stop()


def entities_done(text: str) -> int | None:
    match = re.match(r"limited: (\d+) of 60 entities", text)
    return int(match.group(1)) if match else None


def wait_until_resume_offered(page) -> None:
    """Until the page shows Resume enabled (the run paused by the fault; the page polls every few seconds)."""
    deadline = time.monotonic() + WATCH_S
    while button(page, "rollout_resume").is_disabled():
        assert time.monotonic() < deadline, "Resume never offered while the evaluator was away"
        page.wait_for_timeout(100)  # sampling what the page shows, not pacing the worker


def resume_now(page) -> None:
    """Click Resume and see the page confirm the request (it asks the worker to retry now)."""
    button(page, "rollout_resume").click(timeout=5_000)
    page.get_by_text("Resume: requested; the worker continues from its last checkpoint").wait_for()


def test_a_rollout_on_the_http_evaluator_pauses_when_it_goes_away_and_resumes(
    console_server, browser_page, ops, evaluator
):
    page = open_console(browser_page, console_server.url, "rollout")
    page.wait_for_url(re.compile(r".*/rollout(\?.*)?$"))
    page.get_by_role("heading", name="Rollout", exact=True).wait_for()
    page.get_by_text("No rollout has been started yet").wait_for()

    # the form: the limited stage (skipping the pilot: acknowledged) on all 60 entities, the HTTP evaluator, 8 in flight
    stage = page.get_by_label("Stage", exact=True)
    stage.click()
    stage.fill("limited")
    stage.press("Enter")
    page.get_by_text(re.compile("I understand: this rollout skips pilot and starts at limited")).wait_for()
    tick(page, "rollout_ack")
    scale = page.get_by_role("spinbutton", name="Time scale")
    scale.fill(str(FAST))
    scale.press("Enter")
    wait_for_run(page)
    page.locator(".st-key-rollout_evidence label").filter(has_text="HTTP evaluator").click()
    url_field = page.get_by_label("Evaluator URL")
    url_field.fill(evaluator.url)
    url_field.press("Enter")
    wait_for_run(page)
    in_flight = page.get_by_role("spinbutton", name="Entities in flight")
    in_flight.fill(str(IN_FLIGHT))
    in_flight.press("Enter")
    wait_for_run(page)

    # nothing recorded yet: each entity is estimated at its cost cap, above the default budget: Start is refused
    # until the figure is confirmed
    page.get_by_text(re.compile(r"Estimated cost \$[\d,.]+: above your \$25\.00 budget")).wait_for()
    confirm = page.get_by_text(re.compile(r"I confirm the estimated cost of \$[\d,]+\.\d\d"))
    confirm.wait_for()
    button(page, "rollout_start").click()
    page.get_by_text(re.compile(r"Start: estimated cost \$[\d,.]+ on HTTP evaluator .*above the \$25\.00")).wait_for()
    assert rollout.list_runs(ops) == []
    tick(page, "rollout_cost_ack")
    tick(page, "rollout_ack")  # a refused start unticks the acknowledgement too: each is for one start
    button(page, "rollout_start").click()
    page.get_by_text(
        re.compile(r"Start: rollout \d+ started \(limited; skipped: pilot\) on HTTP evaluator http://127\.0\.0\.1:\d+")
    ).wait_for(timeout=WATCH_S * 1000)
    run = rollout.list_runs(ops)[0]
    assert run.evidence_spec["url"] == evaluator.url and run.concurrency == IN_FLIGHT
    page.get_by_text(f"Evidence: HTTP evaluator {evaluator.url} · {IN_FLIGHT} entities in flight").wait_for()

    # the progress advances by itself (the page polls the worker's checkpoints) ...
    seen: list[int] = []
    deadline = time.monotonic() + WATCH_S
    while not (len(seen) >= 2 and seen[-1] >= 10):
        assert time.monotonic() < deadline, f"progress never advanced; saw {seen}"
        done = entities_done(progress_text(page))
        if done is not None and (not seen or done != seen[-1]):
            seen.append(done)
        page.wait_for_timeout(200)  # sampling what the page shows, not pacing the worker
    assert seen == sorted(seen) and seen[-1] < N_ENTITIES, f"the stage ended before the evaluator went away: {seen}"

    # ... until the evaluator goes away: the stage pauses with the reason, nothing of the batch in flight counted
    evaluator.stop()
    page.get_by_text(re.compile(r"paused by a fault of the evaluator, nothing of the batch counted")).first.wait_for(
        timeout=WATCH_S * 1000
    )
    page.locator("h3", has_text=f"Rollout {run.id}").filter(has_text="paused in limited").wait_for()
    # whole batches only (the worker may be retrying by itself already: it pauses again while the evaluator is away)
    assert rollout.rollout_status(ops, run.id).stage("limited").done % 10 == 0

    # the evaluator is back on the same port while the page offers Resume, and Resume retries at once (the worker
    # also retries by itself within seconds; Resume of a worker that already did is only a request, still confirmed)
    wait_until_resume_offered(page)
    evaluator.start()
    resume_now(page)

    # the stage runs to its end: every entity once
    page.locator('[data-testid="stProgress"]').filter(has_text="limited: 60 of 60 entities").wait_for(
        timeout=WATCH_S * 1000
    )
    deadline = time.monotonic() + WATCH_S
    while (status := rollout.rollout_status(ops, run.id)).state not in SETTLED:
        assert time.monotonic() < deadline, f"rollout {run.id} still {status.state}"
        time.sleep(0.3)  # polling a real worker process, not pacing the test
    page.locator("h3", has_text=f"Rollout {run.id}").filter(has_text=run_view(status).label).wait_for(
        timeout=WATCH_S * 1000
    )
    seen_ids = [o["entity_id"] for o in rollout.paired_outcomes(ops, run.id, "limited")]
    assert len(seen_ids) == len(set(seen_ids)) == N_ENTITIES
    assert any(a["action"] == "rollout.fault" for a in ops.list_audit(actor="worker"))
    assert page.locator('[data-testid="stException"]').count() == 0
