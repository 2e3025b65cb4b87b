"""The project frame a newcomer relies on: loopback by default, pinned requirements, the two make targets, CI."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib

import pytest

from engine.core.settings import REPO_ROOT


def test_console_listens_on_loopback_unless_told_otherwise():
    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^HOST \?= 127\.0\.0\.1$", makefile, re.M)
    assert "-m console.launch --host $(HOST)" in makefile  # it passes HOST to --server.address


def test_requirements_are_pinned_and_python_is_3_12():
    lines = [ln.strip() for ln in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    packages = [ln for ln in lines if ln and not ln.startswith("#")]
    assert packages and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[A-Za-z0-9_.+\-]+", p) for p in packages), [
        p for p in packages if "==" not in p
    ]
    names = {p.split("==")[0].lower() for p in packages}
    assert {"falkordblite", "falkordb", "sqlite-utils", "streamlit", "playwright", "pytest"} <= names
    assert (REPO_ROOT / ".python-version").read_text().strip() == "3.12"


@pytest.mark.slow  # starts or kills real processes
def test_make_knows_run_and_test():
    done = subprocess.run(["make", "-n", "run", "test"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "-m engine demo --ensure" in done.stdout  # first run loads the demo catalogue, later runs do not
    assert "-m console.launch --check" in done.stdout  # refuses an unsafe address before the store starts
    assert "-m console.launch --host" in done.stdout and "-m pytest" in done.stdout  # streamlit run streamlit_app.py


def test_ci_entry_point_installs_chromium_and_runs_the_readme_test_command():
    ci = REPO_ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    text = ci.read_text()
    assert "apt-get install -y -q chromium" in text
    assert text.rstrip().endswith("make test")
    assert 'export CI="${CI:-true}"' in text  # so the browser tests fail, not skip, without Chromium
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_pyproject_takes_the_pins_from_requirements_and_names_the_console_script():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    assert project["name"] == "discovery-ops" and project["requires-python"] == ">=3.12,<3.13"
    # one list of pins: requirements.txt
    assert "dependencies" in project["dynamic"] and "dependencies" not in project
    assert pyproject["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    assert project["scripts"] == {"discovery-ops": "engine.cli.main:process_main"}  # what `python -m engine` runs
    pins = (REPO_ROOT / "requirements.txt").read_text()
    assert re.search(r"^ruff==", pins, re.M) and re.search(r"^mypy==", pins, re.M)
    assert "lint:" in (REPO_ROOT / "Makefile").read_text()
