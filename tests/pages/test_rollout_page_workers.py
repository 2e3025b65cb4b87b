"""AppTest of the Rollout Start form's "Workers" field (issue 16): a start with 2 workers stores a local Dask cluster
of 2 processes with the run, the run header names where its batches run, a bad cluster address in the console's
environment is a one-line refusal that starts nothing, and the cluster panel shows the cluster the stage's worker
announced.

The start's worker launch is replaced by a recorder: these tests are about what the form asks and shows, and a
real worker with a cluster of its own is the rollout tests' business (tests/rollout/test_rollout_fanout.py).
"""

from __future__ import annotations

import json
import os

import pytest

from console import rollout_view as rv
from engine import rollout
from engine.jobs.executor import SCHEDULER_ENV, ClusterStatus, announce_path
from tests.pages.test_rollout_page import flashes, open_page, seeded_console, start
from tests.support.actors import ADMIN
from tests.support.console_env import as_shown


@pytest.fixture
def console(tmp_path, monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    launched: list[int] = []
    monkeypatch.setattr("engine.rollout.control.launch_worker", lambda settings, job_id: launched.append(job_id))
    with seeded_console(tmp_path, monkeypatch, 7) as stores:
        yield (*stores, launched)


def captions(at) -> list[str]:
    return [as_shown(c.value) for c in at.caption]


def test_the_workers_field_is_stored_with_the_run_and_named_in_its_header(console):
    settings, _, ops, launched = console
    at = open_page()
    workers = at.number_input(key="rollout_workers")
    assert workers.value == 1 and "local Dask cluster" in as_shown(workers.help)
    assert "Batches run" not in " ".join(captions(at))  # no run yet
    workers.set_value(2)
    start(at, dry_run=True)
    ok, errors = flashes(at)
    assert not errors and ok, (ok, errors)
    run = rollout.rollout_status(ops, None).run
    assert run.executor_spec == {"workers": 2, "scheduler": None, "dask": False}
    assert launched == [run.job_id]
    at.run()
    assert "Batches run: local Dask cluster of 2 worker process(es)" in captions(at)
    rollout.cancel(ops, run.id, ADMIN)


def test_a_bad_cluster_address_in_the_environment_is_one_line_and_starts_nothing(console, monkeypatch):
    _, _, ops, launched = console
    monkeypatch.setenv(SCHEDULER_ENV, "localhost:8786")
    at = open_page()
    at.number_input(key="rollout_workers").set_value(2)
    start(at, dry_run=True)
    _, errors = flashes(at)
    assert len(errors) == 1 and "\n" not in errors[0]
    assert f"{SCHEDULER_ENV} 'localhost:8786' is not a Dask scheduler address" in errors[0]
    assert rollout.list_runs(ops) == [] and launched == []


def test_the_cluster_panel_shows_the_cluster_the_stage_worker_announced(console, monkeypatch):
    settings, _, ops, _ = console
    at = open_page()
    at.number_input(key="rollout_workers").set_value(2)
    start(at, dry_run=True)
    run = rollout.rollout_status(ops, None).run
    at.run()
    assert not any(m.value == "**Cluster**" for m in at.markdown)  # no worker has a cluster up yet
    # what the stage's worker writes when its cluster is up (engine.jobs.executor.announce), from a live process
    path = announce_path(settings.data_dir, run.job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"job_id": run.job_id, "address": "tcp://127.0.0.1:1", "kind": "local", "what": f"rollout {run.id}"}
    path.write_text(json.dumps({**entry, "pid": os.getpid()}))
    status = ClusterStatus("local", "tcp://127.0.0.1:1", 2, 2, 3, 200 * 1024**2, 0, None)
    monkeypatch.setattr("console.cluster_view.cluster_status", lambda address, timeout_s: status)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.value == "**Cluster**" for m in at.markdown)
    figures = {m.label: m.value for m in at.metric}
    assert figures["Workers"] == "2" and figures["Tasks in flight"] == "3" and figures["Memory"] == "200 MiB"
    assert any(c.startswith(f"rollout {run.id}: local Dask cluster on this machine") for c in captions(at))
    rollout.cancel(ops, run.id, ADMIN)


def test_a_stage_paused_by_a_cluster_fault_says_so_and_what_happens_next():
    note = "paused by a fault of the cluster, nothing of the batch counted: a unit of work was lost"
    kind, text = rv.state_hint("paused", "pilot", note=note)
    assert kind == "error" and text.startswith(note)
    assert "retries by itself once the store, the evaluator or the cluster answers" in text
