"""`python -m engine exporter` as an operator runs it: a real process serving /metrics until Ctrl-C or SIGTERM
(also when started in the background with SIGINT ignored), and flags refused in one line."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys

import pytest

from engine.core.settings import REPO_ROOT
from engine.monitoring.events import events_of_runs, record_events
from engine.monitoring.jsonlog import JsonlLog
from tests.support.cli import cli_env, one_line_error, run_cli
from tests.support.monitoring_data import make_run
from tests.support.scrape import scrape_text, value


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a non-interactive shell's background job inherits


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "inherited"),
    [(signal.SIGINT, None), (signal.SIGINT, _ignore_sigint), (signal.SIGTERM, None)],
    ids=["ctrl-c", "ctrl-c-with-sigint-ignored-by-the-parent", "sigterm"],
)
def test_the_command_serves_metrics_until_stopped(settings, ops, sig, inherited):
    record_events(
        ops,
        events_of_runs([make_run("e-1"), make_run("e-2")], run_id="r", stage_id="production", at=1.0),
        log=JsonlLog.for_settings(settings, "metrics"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "exporter", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(settings),
        preexec_fn=inherited,  # noqa: PLW1509 - a signal disposition, nothing that could deadlock
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/metrics)", first)
        assert match, first
        text = scrape_text(match[1])
        assert value(text, "discovery_opsdb_up") == 1.0
        assert value(text, "discovery_runs_total", system="new", stage="production", shadow="false") == 2.0
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=90)  # interpreter exit on a loaded machine
        assert proc.returncode == 0, err
        assert "exporter stopped" in out and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
@pytest.mark.parametrize("port", ["70000", "-1", "http", "9108.5", "1e3"])
def test_a_bad_port_is_refused_in_one_line(settings, tmp_path, port):
    err = one_line_error(run_cli(cli_env(settings), tmp_path, "exporter", "--port", port, timeout=120))
    assert "--port" in err


@pytest.mark.slow
def test_a_port_in_use_is_one_line(settings, tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        err = one_line_error(run_cli(cli_env(settings), tmp_path, "exporter", "--port", port, timeout=120))
    assert f"cannot listen on 127.0.0.1:{port}" in err
