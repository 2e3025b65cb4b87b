"""Run the real console and drive it in headless Debian Chromium.

Fixtures (import the ones you use into your test module, e.g.
``from browser_harness import browser_page, console_server  # noqa: F401``):

``console_data_dir``  module-scoped empty data directory; override it in a test
                      module to seed the stores before the console starts.
``console_server``    module-scoped: ``streamlit run streamlit_app.py`` on a free
                      loopback port with DISCOVERY_DATA_DIR=console_data_dir; waits
                      for /_stcore/health and yields a ``ConsoleServer`` (``.url``).
                      At teardown the console is terminated and the embedded FalkorDB
                      of that data directory stopped.
``chromium``          module-scoped Chromium (playwright ``BrowserContext`` on a fresh
                      user data dir), launched from /usr/bin/chromium with the
                      flags of DESIGN.md. Nothing here ever downloads a browser.
``browser_page``      a new page in that browser, closed after the test.

When /usr/bin/chromium is missing the browser fixtures fail if the ``CI``
environment variable is set, and skip otherwise.

Helpers: ``running_console(data_dir)`` (the context manager behind
``console_server``), ``open_console(page, url, path)`` (navigate and wait until
the script run has finished), ``free_port()``.

Run as a script to refresh the README screenshots from an existing data dir:
``.venv/bin/python tests/browser_harness.py screenshots --data-dir data/run``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
STARTUP_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class ConsoleServer:
    url: str
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def healthy(url: str) -> bool:
    """Whether the console at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop_embedded_store(data_dir: Path) -> None:
    """Stop the embedded FalkorDB of ``data_dir`` (whoever started it); quiet if there is none."""
    from engine.core.settings import load_settings
    from engine.store.falkor import stop_embedded_server

    settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)})
    if settings.graph_dir.exists():
        stop_embedded_server(settings)


@contextmanager
def running_console(
    data_dir: Path,
    *,
    env: dict[str, str] | None = None,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
    stop_store: bool = True,
) -> Iterator[ConsoleServer]:
    """Start ``streamlit run streamlit_app.py`` on a free loopback port against ``data_dir``.

    Raises RuntimeError (with the console's log tail) if it exits or is not
    healthy within ``startup_timeout_s``. At exit the process is terminated
    (killed if it does not stop) and, with ``stop_store``, the embedded
    FalkorDB of ``data_dir`` is stopped.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "logs" / f"console-{port}.log"  # beside the data dir's other logs
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {k: v for k, v in os.environ.items() if k != "FALKORDB_URL"}
    child_env.update(env or {})
    child_env["DISCOVERY_DATA_DIR"] = str(data_dir)
    cmd = [
        sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
        "--server.headless", "true",
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT)
    server = ConsoleServer(url=url, port=port, data_dir=data_dir, log_path=log_path, process=proc)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"console exited with {proc.returncode} before serving:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"console not healthy on {url} after {startup_timeout_s:.0f}s:\n{server.log_tail()}")
            time.sleep(0.2)  # polling a real server, not pacing a test
        yield server
    finally:
        if proc.poll() is None:
            terminate(proc)
        if stop_store:
            _stop_embedded_store(data_dir)


def terminate(proc: subprocess.Popen) -> None:
    """Stop a console process: SIGTERM, then SIGKILL if it has not exited within 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def require_chromium() -> None:
    """Fail under CI, skip elsewhere, when Debian Chromium is not installed."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`, as .ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def launch_chromium(user_data_dir: Path | None = None, viewport: tuple[int, int] = (1400, 1000)):
    """A playwright BrowserContext of /usr/bin/chromium on a fresh user data dir."""
    from playwright.sync_api import sync_playwright

    own_dir = user_data_dir is None
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-")) if own_dir else user_data_dir
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(profile),
                executable_path=str(CHROMIUM),
                headless=True,
                args=list(CHROMIUM_ARGS),
                viewport={"width": viewport[0], "height": viewport[1]},
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        if own_dir:
            shutil.rmtree(profile, ignore_errors=True)


def wait_for_run(page, timeout_ms: float = 60_000) -> None:
    """Wait until the app is connected and its script run has finished.

    Streamlit marks its root element with ``data-test-connection-state`` and
    ``data-test-script-state`` ("initial" before the first run, "running",
    "notRunning" once done). Right after an interaction the state may still be
    the previous run's "notRunning": wait for the content you expect too.
    """
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]',
        state="attached",
        timeout=timeout_ms,
    )


def open_console(page, url: str, path: str = "", timeout_ms: float = 60_000):
    """Open ``url/path`` and wait until the page's script run has finished."""
    page.goto(f"{url.rstrip('/')}/{path.lstrip('/')}", wait_until="domcontentloaded", timeout=timeout_ms)
    wait_for_run(page, timeout_ms)
    return page


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def console_data_dir(tmp_path_factory) -> Path:
    """An empty data dir; override in a module to seed it before the console starts."""
    return tmp_path_factory.mktemp("console-data")


@pytest.fixture(scope="module")
def console_server(console_data_dir) -> Iterator[ConsoleServer]:
    with running_console(console_data_dir) as server:
        yield server


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    require_chromium()
    with launch_chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture
def browser_page(chromium):
    page = chromium.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        page.close()


# --------------------------------------------------------------------------- screenshots


def console_pages(app: Path = REPO_ROOT / "streamlit_app.py") -> dict[str, str]:
    """Page name -> url path of every page in streamlit_app.py's PAGES, in menu order (default page: "")."""
    import re

    pages: dict[str, str] = {}
    for match in re.finditer(r'st\.Page\(\s*"pages/(\w+)\.py"(.*)', app.read_text()):
        name, rest = match.group(1), match.group(2)
        pages[name] = "" if "default=True" in rest else name
    return pages


def take_screenshots(
    url: str,
    out_dir: Path,
    pages: dict[str, str],
    search: str | None = None,
    run_discovery: bool = False,
    viewport: tuple[int, int] = (1400, 1600),
) -> list[Path]:
    """Full-page PNG of each console page (name -> url path); returns the files written.

    On the Hypotheses page, ``search`` is typed into the search box; with
    ``run_discovery`` the entity view's "Run discovery" button is clicked too
    (a shadow run, the console's default: it shows the hop-by-hop result and writes nothing).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with launch_chromium(viewport=viewport) as context:
        page = context.new_page()
        page.set_default_timeout(120_000)
        for name, path in pages.items():
            open_console(page, url, path)
            if search and path.strip("/") == "hypotheses":
                box = page.get_by_label("Find an entity")
                box.fill(search)
                box.press("Enter")
                page.locator('[data-testid="stDataFrame"]').first.wait_for()
                wait_for_run(page)
                button = page.get_by_role("button", name="Run discovery")
                if run_discovery and button.count():
                    button.click()
                    page.wait_for_timeout(500)
                    wait_for_run(page)
            page.wait_for_timeout(2500)  # let vega and glide-data-grid finish drawing before the picture
            # Streamlit scrolls inside its main container (so full_page adds nothing): show its top
            page.evaluate(
                "document.querySelectorAll('[data-testid=\"stMain\"], section.main')"
                ".forEach(e => e.scrollTo(0, 0)); window.scrollTo(0, 0)"
            )
            page.wait_for_timeout(300)
            target = out_dir / f"{name}.png"
            page.screenshot(path=str(target), full_page=True)
            written.append(target)
    return written


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshots of the running console for the README.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    shots = sub.add_parser("screenshots", help="start the console on DATA_DIR and save PNGs of its pages")
    shots.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data" / "run")
    shots.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    shots.add_argument("--search", default="united", help="text typed into the Hypotheses page's search box")
    shots.add_argument(
        "--run-discovery",
        action="store_true",
        help="click 'Run discovery' on the Hypotheses page first (a shadow run: the graph is not written)",
    )
    shots.add_argument("--pages", default="", help="comma-separated page names (default: every page of the menu)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    pages = console_pages()
    if args.pages:
        wanted = [p.strip() for p in args.pages.split(",") if p.strip()]
        unknown = [p for p in wanted if p not in pages]
        if unknown:
            parser.error(f"unknown page(s) {', '.join(unknown)}: choose from {', '.join(pages)}")
        pages = {p: pages[p] for p in wanted}
    with running_console(args.data_dir, stop_store=False) as server:
        files = take_screenshots(server.url, args.out, pages, search=args.search, run_discovery=args.run_discovery)
    for f in files:
        print(f)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
