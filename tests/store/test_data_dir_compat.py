"""A data dir written before the engine moved into packages still opens, and its rollout resumes.

tests/fixtures/datadir-before-packages.tar.gz was written by main at 64c87d4 (flat engine/):
`seed --entities 60`, `rollout --stage all --entities 40 --time-scale 1000000` with rollback
triggers set out of reach, `rollout pause`, then the worker was killed and the store stopped.
The pilot (10 entities) had ended inconclusive, so the run waits for a person and its worker is dead.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.jobs.queue import JOB_KINDS, LEGACY_KINDS, resolve_handler

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "datadir-before-packages.tar.gz"

pytestmark = pytest.mark.slow


@pytest.fixture
def legacy_dir(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(data, filter="data")
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(data))
    monkeypatch.delenv("DISCOVERY_GRAPH", raising=False)
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    yield data
    main(["rollout", "cancel"])
    main(["store", "stop"])


def _status(capsys) -> dict:
    capsys.readouterr()
    assert main(["rollout", "status", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _wait(capsys, until, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status = _status(capsys)
        if until(status):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.3)


def test_every_registered_job_kind_resolves_to_a_handler():
    assert {"rollout", "rollback", "tuning", "alerts.evaluate", "bench.store"} <= set(JOB_KINDS)
    for kind in JOB_KINDS:
        assert callable(resolve_handler(kind)), kind


def test_old_job_kinds_still_resolve():
    assert "engine.bench_store:run_bench_job" in LEGACY_KINDS  # the one kind a jobs row stored as a module path
    for old, new in LEGACY_KINDS.items():
        assert resolve_handler(old) is resolve_handler(new)


def test_a_data_dir_from_before_the_move_opens_and_its_rollout_resumes(legacy_dir, capsys):
    before = _status(capsys)
    assert before["state"] == "dead"
    assert [s["state"] for s in before["stages"]] == ["inconclusive", "pending", "pending"]
    assert before["progress"][0] == 10

    assert main(["stats", "--json"]) == 0  # the graph of the old data dir, read by the new code
    graph = json.loads(capsys.readouterr().out)
    assert (graph["entities"], graph["hypotheses"]) == (60, 495)  # what `seed --entities 60` wrote then

    assert main(["rollout", "resume"]) == 0
    _wait(capsys, lambda s: s["state"] == "inconclusive")
    assert main(["rollout", "promote"]) == 0  # a person promotes the inconclusive pilot
    after = _wait(capsys, lambda s: s["stages"][1]["state"] not in ("pending", "running", "soaking"))
    assert after["progress"] == [40, 40]  # every entity of the population, each exactly once

    assert main(["rollout", "rollback", "--yes", "--reason", "compat test"]) == 0
    assert "40 entities restored" in capsys.readouterr().out
