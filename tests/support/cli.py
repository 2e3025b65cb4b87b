"""Running `python -m engine` as a user does: a real process on a data dir, and the one-line error check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.core.settings import REPO_ROOT, Settings


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment of a CLI process on ``settings``' data dir (always the embedded store)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FALKORDB_URL", "DISCOVERY_GRAPH")}
    env.update(DISCOVERY_DATA_DIR=str(settings.data_dir), PYTHONPATH=str(REPO_ROOT))
    return env


def run_cli(env: dict[str, str], cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m engine ARGS`` in ``cwd``; its exit code and output, whatever they are."""
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """Assert an operator error: exit code 2, and stderr exactly one ``error: ...`` line, no traceback."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr
