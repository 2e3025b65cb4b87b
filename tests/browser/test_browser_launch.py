"""`make run`'s launcher (python -m console.launch) as a process: on loopback without sign-in it serves the console
straight away, no provider needed, with the sign-in-off banner on the page and `local (admin)` in the sidebar; on
a non-loopback address without sign-in it exits with one line before Streamlit starts (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from console.signin import BANNER, INSECURE_ENV
from engine.core.settings import load_settings
from engine.store.falkor import stop_embedded_server
from tests.support.browser_harness import REPO_ROOT, browser_page, chromium, free_port, healthy, open_console, terminate  # noqa: F401

pytestmark = pytest.mark.browser

STARTUP_S = 90.0


def launcher_env(data_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FALKORDB_URL", INSECURE_ENV)}
    env["DISCOVERY_DATA_DIR"] = str(data_dir)
    return env


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> Iterator[str]:
    """`python -m console.launch --port P` (the default host, 127.0.0.1) on an empty data dir; its URL."""
    data_dir = tmp_path_factory.mktemp("launch")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "launch.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "console.launch", "--port", str(port), "--secrets", str(data_dir / "none.toml")],
            cwd=REPO_ROOT,
            env=launcher_env(data_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_S
        while not healthy(url):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)  # polling a real server
        yield url
    finally:
        terminate(proc)
        settings = load_settings({"DISCOVERY_DATA_DIR": str(data_dir)})
        if settings.graph_dir.exists():
            stop_embedded_server(settings)


def test_on_loopback_the_console_opens_straight_away_with_the_banner(launched, browser_page):
    page = open_console(browser_page, launched)
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible(timeout=60_000)
    expect(page.get_by_text(BANNER)).to_be_visible()
    sidebar = page.locator('[data-testid="stSidebar"]')
    expect(sidebar.get_by_text("Acting as local (admin): sign-in is off")).to_be_visible()
    assert page.get_by_role("button", name="Sign in").count() == 0


@pytest.mark.slow
def test_beyond_loopback_without_sign_in_it_exits_with_one_line(tmp_path):
    cmd = [sys.executable, "-m", "console.launch", "--host", "0.0.0.0", "--port", str(free_port())]
    cmd += ["--secrets", str(tmp_path / "none.toml")]
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=launcher_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: refusing to serve the console on 0.0.0.0 without sign-in")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "ops.sqlite").exists()  # refused before anything was started or written
