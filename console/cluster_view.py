"""The cluster panel of the Tuning and Rollout pages: which Dask cluster a running study's trials (or a rollout
stage's batches) use, and how it is doing.

Pure: ``cluster_panel(data_dir, job_id)`` reads the announcement the job's coordinator wrote
(engine.jobs.executor.announce), asks that scheduler for a moment, and returns what the page draws: the
figures (workers, threads, tasks in flight, memory), a one-line caption, and the dashboard's address when
Dask's dashboard is up (it needs bokeh). A cluster that cannot be reached is a caption, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from console.vocab import fmt_num
from engine.core.errors import DiscoveryError
from engine.jobs.executor import ClusterStatus, announced, cluster_status

#: how long the panel waits for a scheduler before saying it cannot be reached
PANEL_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ClusterPanel:
    """What the page draws: (label, value) figures, a caption, and the dashboard link (None: no dashboard)."""

    figures: tuple[tuple[str, str], ...]
    caption: str
    dashboard_url: str | None


def fmt_bytes(n: int) -> str:
    """Memory as an operator reads it (MiB under a GiB, GiB above)."""
    if n >= 1024**3:
        return f"{fmt_num(n / 1024**3, ',.1f')} GiB"
    return f"{fmt_num(n / 1024**2, ',.0f')} MiB"


def panel_of(status: ClusterStatus, what: str = "") -> ClusterPanel:
    """The panel for a cluster's status."""
    memory = fmt_bytes(status.memory_bytes)
    if status.memory_limit_bytes:
        memory += f" of {fmt_bytes(status.memory_limit_bytes)}"
    where = "local Dask cluster on this machine" if status.kind == "local" else "Dask cluster"
    caption = f"{what + ': ' if what else ''}{where} at {status.address or 'an unknown address'}"
    if status.dashboard_url is None:
        caption += " · Dask's dashboard is off (it needs the optional bokeh package)"
    return ClusterPanel(
        figures=(
            ("Workers", fmt_num(status.workers, ",d")),
            ("Threads", fmt_num(status.threads, ",d")),
            ("Tasks in flight", fmt_num(status.tasks_in_flight, ",d")),
            ("Memory", memory),
        ),
        caption=caption,
        dashboard_url=status.dashboard_url,
    )


def cluster_panel(
    data_dir: Path,
    job_id: int | None,
    *,
    status_of: Callable[[str], ClusterStatus] = lambda address: cluster_status(address, timeout_s=PANEL_TIMEOUT_S),
) -> ClusterPanel | None:
    """The panel of the cluster job ``job_id`` announced; None when it runs none (in-process, or finished)."""
    if job_id is None:
        return None
    entry = next((e for e in announced(data_dir) if int(e.get("job_id", 0)) == job_id), None)
    if entry is None:
        return None
    kind = "local" if entry.get("kind") == "local" else "remote"
    try:
        status = status_of(str(entry.get("address")))
    except DiscoveryError as exc:
        what = str(entry.get("what") or "the job")
        return ClusterPanel((), f"{what}: its Dask cluster cannot be reached: {exc}", None)
    return panel_of(ClusterStatus(**{**status.to_dict(), "kind": kind}), str(entry.get("what") or ""))
