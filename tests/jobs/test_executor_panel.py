"""The Tuning page's cluster panel (console.cluster_view): what a running study's announced cluster shows,
and a cluster that cannot be reached shown as a caption, never an exception."""

from __future__ import annotations

import os
from types import SimpleNamespace

from console.cluster_view import cluster_panel, fmt_bytes
from engine.jobs.executor import ClusterStatus, ExecutorSpec, ExecutorUnavailable, announce, withdraw


def _announce(tmp_path, job_id: int, kind_workers: int = 2):
    fake = SimpleNamespace(address="tcp://127.0.0.1:41000", spec=ExecutorSpec(workers=kind_workers))
    return announce(tmp_path, job_id, fake, what="tuning study 3")  # type: ignore[arg-type]


def test_a_running_studys_cluster_shows_workers_threads_tasks_and_memory(tmp_path):
    _announce(tmp_path, 5)
    asked = []

    def status_of(address):
        asked.append(address)
        return ClusterStatus("remote", address, 2, 2, 1, 300 * 1024**2, 4 * 1024**3, None)

    panel = cluster_panel(tmp_path, 5, status_of=status_of)
    assert asked == ["tcp://127.0.0.1:41000"]
    assert dict(panel.figures) == {
        "Workers": "2",
        "Threads": "2",
        "Tasks in flight": "1",
        "Memory": "300 MiB of 4.0 GiB",
    }
    assert panel.caption.startswith("tuning study 3: local Dask cluster on this machine at tcp://127.0.0.1:41000")
    assert "dashboard is off" in panel.caption and panel.dashboard_url is None
    # another job's cluster, or none announced: no panel
    assert cluster_panel(tmp_path, 6, status_of=status_of) is None
    assert cluster_panel(tmp_path, None, status_of=status_of) is None
    withdraw(tmp_path, 5)
    assert cluster_panel(tmp_path, 5, status_of=status_of) is None


def test_an_unreachable_cluster_is_a_caption(tmp_path):
    _announce(tmp_path, 9)

    def gone(address):
        raise ExecutorUnavailable(f"cannot reach the Dask scheduler at {address} (OSError)")

    panel = cluster_panel(tmp_path, 9, status_of=gone)
    assert panel.figures == () and "cannot be reached" in panel.caption


def test_an_announcement_whose_coordinator_is_gone_is_ignored(tmp_path):
    path = _announce(tmp_path, 11)
    path.write_text(path.read_text().replace(f'"pid": {os.getpid()}', '"pid": 999999999'))
    assert cluster_panel(tmp_path, 11, status_of=lambda a: None) is None  # type: ignore[arg-type,return-value]


def test_memory_reads_in_mib_and_gib():
    assert fmt_bytes(512 * 1024**2) == "512 MiB" and fmt_bytes(3 * 1024**3) == "3.0 GiB"
