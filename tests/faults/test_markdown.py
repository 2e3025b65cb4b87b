"""Issue 11, case 8 — Markdown from data is rendered: shown as data everywhere in the console, and in the reports.

An entity named ``Evil ![pixel](http://127.0.0.1:<port>/track.png) FC`` drew an image in the console and the
browser fetched the URL. Here the data dir holds that entity, an evidence excerpt, a rollback reason and an
operator name, alert rule ids, an acknowledgement note, a tuning study name and a job error that all carry
the pixel (and ``[click](javascript:alert(1))``, ``:red[...]``, ``:material/...:``, ``$x^2$``); a tiny HTTP
server on that port counts what it is asked for. Chromium opens every page that shows those texts: the
server gets no request, no ``<img>`` points at it, no ``javascript:`` link exists, and the texts are on the
page as the characters they are made of. A control image loaded by the same browser first proves that a
fetch would be counted.

The downloaded Markdown report must not turn such a name into an image or a link either: its cells are
escaped (``engine.monitoring.reports.md_cell``).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from console.text import md_escape
from engine.core.settings import load_settings
from engine.monitoring.events import record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.monitoring.reports import build_report, md_cell, render
from engine.store import falkor
from engine.store.opsdb import open_ops_db
from tests.support.actors import as_role
from tests.support.browser_harness import browser_page, chromium, console_server, free_port, open_console, wait_for_run  # noqa: F401
from tests.support.console_env import DIRECTIVES, SCRIPT_LINK, HostileData, seed_hostile_console, tracking_pixel
from tests.support.monitoring_data import make_run

PIXEL_PATH = "/track.png"
CONTROL_PATH = "/control.png"
#: a 1x1 transparent GIF: what a tracking pixel answers
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
CONTROL_TIMEOUT_S = 30.0


@dataclass
class Tracker:
    """A loopback HTTP server that counts the paths it is asked for."""

    port: int
    hits: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pixel_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PIXEL_PATH}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CONTROL_PATH}"

    def count(self, path: str | None = None) -> int:
        with self.lock:
            return sum(self.hits.values()) if path is None else self.hits[path]


@pytest.fixture(scope="module")
def tracker() -> Iterator[Tracker]:
    track = Tracker(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            with track.lock:
                track.hits[self.path.split("?")[0]] += 1
            self.send_response(200)
            self.send_header("Content-Type", "image/gif")
            self.send_header("Content-Length", str(len(GIF)))
            self.end_headers()
            self.wfile.write(GIF)

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", track.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield track
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory, tracker) -> tuple:
    data_dir = tmp_path_factory.mktemp("markdown-data")
    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)}).ensure_dirs()
    try:
        data = seed_hostile_console(settings, tracker.pixel_url)
    except BaseException:
        falkor.stop_embedded_server(settings)
        raise
    return data_dir, data


@pytest.fixture(scope="module")
def console_data_dir(hostile_dir):
    """The harness's console runs on the hostile data dir (its teardown stops that dir's store)."""
    return hostile_dir[0]


@pytest.fixture(scope="module")
def hostile(hostile_dir) -> HostileData:
    return hostile_dir[1]


def assert_shown_as_text(page, tracker: Tracker, where: str) -> None:
    """Nothing on ``page`` points at the tracker, links to script, or was drawn from data as a formula."""
    assert page.locator('[data-testid="stException"]').count() == 0, f"{where}: the page raised"
    assert page.locator(f'img[src*=":{tracker.port}"]').count() == 0, f"{where}: an image points at the tracker"
    assert page.locator('a[href^="javascript:" i]').count() == 0, f"{where}: a javascript: link"
    assert page.locator(".katex").count() == 0, f"{where}: data drawn as a formula"
    assert tracker.count(PIXEL_PATH) == 0, f"{where}: the browser fetched the tracking pixel"


def visible(page, text: str) -> None:
    """``text`` is on the page, character for character, where a person sees it (waits for it; a data grid's
    hidden accessibility copy of its cells does not count)."""
    page.get_by_text(text, exact=False).filter(visible=True).first.wait_for(state="visible")


@pytest.mark.browser
@pytest.mark.slow
def test_markdown_in_stored_text_is_shown_as_text_and_fetches_nothing(
    console_server,  # noqa: F811 (the harness's fixture, imported above: pytest's way of sharing it)
    browser_page,  # noqa: F811
    tracker,
    hostile,
):
    """case 8: an entity, evidence, rollback reason, operator, alert rules, note, study and job error holding
    ``![pixel](http://127.0.0.1:<port>/track.png)`` — on every page that shows them, no request leaves."""
    page = browser_page

    # control: this browser does fetch an image of the tracker when one is really on a page
    page.set_content(f'<img src="{tracker.control_url}" alt="control">')
    deadline = time.monotonic() + CONTROL_TIMEOUT_S
    while tracker.count(CONTROL_PATH) == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert tracker.count(CONTROL_PATH) >= 1, "the control image was not fetched: the test could not see a leak"

    # Overview: the alert banner names the firing rule nobody acknowledged, whose id holds the pixel
    open_console(page, console_server.url)
    visible(page, "Alerts: 1 firing")
    assert_shown_as_text(page, tracker, "Overview")
    visible(page, hostile.rule_ids[0])

    # Hypotheses: the entity's name as the header, its sport (a script link and directives) among the details
    open_console(page, console_server.url, "hypotheses")
    box = page.get_by_label("Find an entity")
    box.fill(hostile.entity_name)
    box.press("Enter")
    page.get_by_text(re.compile(r"\d+ of \d+ hops, newest first")).wait_for()  # down to the evidence trail
    assert_shown_as_text(page, tracker, "Hypotheses")
    page.get_by_role("heading", name=hostile.entity_name).wait_for()
    visible(page, hostile.sport)
    page.get_by_role("button", name="Run discovery").click()  # its spinner names the entity too
    page.get_by_role("heading", name="Last run").wait_for()
    assert_shown_as_text(page, tracker, "Hypotheses, after a run")
    visible(page, hostile.entity_name)

    # Rollout: the run's message says who rolled it back and why, as typed
    open_console(page, console_server.url, "rollout")
    visible(page, "Whole run:")
    assert_shown_as_text(page, tracker, "Rollout")
    visible(page, f"rolled back by {hostile.actor}: {hostile.reason}")
    visible(page, f"started by {hostile.actor}")

    # Alerts: the rule still open is offered by its id (a picker's options are plain text: open the list);
    # acknowledging it flashes a message naming it (a person's name is the provider's: tests/pages)
    open_console(page, console_server.url, "alerts")
    picker = page.get_by_label("Alert", exact=True)
    assert picker.input_value() == f"{hostile.rule_ids[0]} (firing)"
    picker.click()
    page.get_by_role("option", name=f"{hostile.rule_ids[0]} (firing)").wait_for()
    assert_shown_as_text(page, tracker, "Alerts, picker open")
    page.keyboard.press("Escape")
    page.get_by_label("Note").fill(SCRIPT_LINK)
    page.get_by_role("button", name="Acknowledge").click()
    page.get_by_text("acknowledged").filter(visible=True).first.wait_for()
    assert_shown_as_text(page, tracker, "Alerts")
    visible(page, f"acknowledged {hostile.rule_ids[0]} as local")  # sign-in off (a hostile name: pages test)

    # Reports: the HTML preview lists the entity's run (escaped HTML in a data: frame)
    open_console(page, console_server.url, "reports")
    page.frame_locator("iframe").first.get_by_text(hostile.entity_name).first.wait_for()
    assert page.frame_locator("iframe").first.locator(f'img[src*=":{tracker.port}"]').count() == 0
    assert_shown_as_text(page, tracker, "Reports")

    # Tuning: the study's name as the heading, its job's message and error
    open_console(page, console_server.url, "tuning")
    page.get_by_role("heading", name=re.compile(r"^Study \d+")).wait_for()
    assert_shown_as_text(page, tracker, "Tuning")
    visible(page, hostile.study_name)
    visible(page, hostile.job_error)

    page.wait_for_timeout(500)  # let any request a page made reach the tracker before the last count
    assert tracker.count(PIXEL_PATH) == 0
    assert set(tracker.hits) == {CONTROL_PATH}, tracker.hits


def test_the_markdown_report_shows_names_as_text(tmp_path):
    """case 8: the downloaded Markdown report holds an entity's name so that no viewer draws an image or a link."""
    settings = load_settings({"DISCOVERY_DATA_DIR": str(tmp_path / "data")}).ensure_dirs()
    ops = open_ops_db(settings)
    pixel = tracking_pixel("http://127.0.0.1:9/track.png")
    name = f"Evil {pixel} FC {SCRIPT_LINK} *bold* _it_ `code` ~~gone~~ <img src=x> a|b"
    now = time.time()
    record_runs(
        ops,
        [make_run("evil-fc", cost=9.0, actionable=True, promoted=2, confidences=(0.8, 0.8))],
        run_id="r",
        clock=lambda: now - 60,
        log=JsonlLog.for_settings(settings),
        names={"evil-fc": name},
    )
    md = render(build_report(ops, "1h", now=now), "md")

    assert name not in md and pixel not in md and SCRIPT_LINK not in md
    cell = md_cell(name)
    assert cell in md  # in the runs tables, escaped
    assert not re.search(r"(?<!\\)[\[\]`]", cell), cell  # no bracket (link, image) nor backtick (code) left bare
    assert not re.search(r"(?<!\\)[*_~](?=\S)", cell), cell  # no emphasis or strikethrough mark left bare
    assert not re.search(r"(?<!\\)<img", cell) and "a\\|b" in cell  # the tag's < is escaped: text, not HTML
    # unescaped, the cell gives back the name: the escapes hide nothing
    unescaped = re.sub(r"\\(.)", r"\1", md_cell(name)).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert unescaped == name


def test_console_escape_leaves_no_markdown_construct():
    """case 8: what console.text.md_escape makes of the hostile texts has no construct left and loses nothing."""
    for text in (tracking_pixel("http://h/t.png"), SCRIPT_LINK, DIRECTIVES, "$x^2$", "<b>x</b>", "# h", "a|b"):
        escaped = md_escape(text)
        assert re.sub(r"\\(.)", r"\1", escaped) == text
        assert not re.search(r"(?<!\\)[!\[\]():$<>#|`*_~]", escaped.replace("\\\\", "")), escaped


def test_the_rollout_stage_report_shows_typed_text_as_text(settings, ops, seed_graph, tmp_path):
    """case 8: a rollback reason and an actor typed by people are text in the stage report, never an image."""
    from engine import rollout as ro
    from tests.support.rollouts import run_pilot_here

    graph = seed_graph(30, 7)
    run_id = run_pilot_here(settings, ops, graph, tmp_path)
    pixel = "![pixel](http://127.0.0.1:9/track.png)"
    typed = as_role("approver", key=f"console:{pixel}")  # an identity whose name is Markdown
    ro.rollback(settings, ops, run_id, typed, f"because {pixel}", graph=graph)
    report = ro.stage_report(ops, run_id, "pilot")
    assert pixel not in report
    assert r"\[pixel\]" in report
    assert not re.search(r"(?<!\\)!\[", report)
