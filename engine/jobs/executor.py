"""Where units of work run: in this process (the default) or on a Dask cluster.

A job's own worker process (engine.jobs.queue) stays the **coordinator**:
only it writes SQLite and the graph, checkpoints and heartbeats. What it hands
to an executor are **units**: pure functions of plain data (entity state,
config, an evidence spec in; a RunResult or a trial's runs out), so a unit can
run in another process or on another machine, and running it twice gives the
same answer.

Two executors behind one interface (``Executor``):

- ``InProcessExecutor``: runs each unit in the caller's thread, in the order
  given (today's behaviour; nothing to start).
- ``DaskExecutor``: a ``distributed.Client`` on a ``LocalCluster`` of N worker
  processes on this machine (one thread each: the units are CPU work under the
  GIL), or on a running cluster (``tcp://host:8786``: ``dask scheduler`` on
  one machine, ``dask worker tcp://host:8786`` on others).

``ExecutorSpec`` says which (``workers``, ``scheduler``); it is JSON-able so a
job stores it in its params and a resumed job runs the same way.
``DISCOVERY_DASK_SCHEDULER`` in the environment names a running cluster when
no ``--scheduler`` is given.

**Lost workers.** When a Dask worker process (or machine) dies, the scheduler
re-runs the units it held on the workers left; the coordinator receives each
unit's result once (a future resolves once), so nothing is counted twice. A
unit that killed ``ALLOWED_FAILURES`` workers in a row, or a cluster that
cannot be reached, is an ``ExecutorUnavailable`` (a fault of the machinery:
the job stops and is resumed from its checkpoints).

**Dashboard.** Dask's dashboard needs ``bokeh``; it is only linked when bokeh
is installed (``dashboard_available``). A local cluster always binds its HTTP
port to a free one (``:0``), so two clusters on one host never fight over 8787.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from engine.core.errors import ConfigError, DiscoveryError

#: the environment variable naming a running Dask scheduler (tcp://host:8786)
SCHEDULER_ENV = "DISCOVERY_DASK_SCHEDULER"
#: worker processes a local cluster may have (a machine with more cores runs a real cluster)
MAX_WORKERS = 64
#: seconds to reach a running scheduler before giving up (one-line error naming the address)
CONNECT_TIMEOUT_S = 10.0
#: seconds between the coordinator's ticks (heartbeat, cancel) while it waits for units
TICK_S = 1.0
#: seconds between two looks at the cluster for finished units while none is ready
POLL_S = 0.02
#: how many workers a unit may take down with it before it is declared broken (Dask's allowed-failures)
ALLOWED_FAILURES = 3
#: where coordinators announce the cluster they use, so the console can show it (under the data dir)
ANNOUNCE_DIR = "executors"
#: how a local cluster makes its worker processes. Dask's default, "spawn", boots a fresh interpreter per
#: worker that imports distributed, then the engine again on its first unit, and tears it all down on
#: close: 2.8-8.7 s per study with 2 workers on this 2-core machine (start, first-unit imports, close).
#: "forkserver" boots one small server process per coordinator, which imports distributed and the modules
#: the caller names (``preload``: the units' own) once; each worker is a fork of it, imports done, and
#: ends without an interpreter teardown: 1.8-2.4 s, measured back to back with spawn. Not "fork" of the
#: coordinator itself (0.2 s, but the coordinator has threads: under load a forked worker hung at start-up
#: twice in one run of the cluster tests, measured). A running cluster's workers are started by
#: `dask worker`, not by this setting.
START_METHOD = "forkserver"
#: Dask settings for the clusters this process starts or joins. The worker's statistical profiler wakes
#: every 10 ms to walk the running unit's stack under the GIL (about 6% of a unit's CPU, measured); nothing
#: reads its profiles (the dashboard is optional), so it is off. Every Dask server (scheduler, nanny, worker,
#: client) checks its event loop's health every 20 ms: every 500 ms (Dask's own cluster tests' setting) cut
#: a worker's CPU beside its unit from 4-5% to about 1% of the unit's (measured); a blocked loop is still
#: reported after the same 3 s.
DASK_CONFIG = {
    "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
}


class ExecutorUnavailable(DiscoveryError):
    """The cluster cannot be reached, or lost a unit for good: the job stops and resumes from its checkpoints."""


# --------------------------------------------------------------------------- which executor


def check_workers(value: object, what: str = "--workers") -> int:
    """``value`` as a whole number from 1 to MAX_WORKERS; a one-line ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise ConfigError(f"{what} must be a whole number from 1 to {MAX_WORKERS}, got {value!r}")
    return value


def check_scheduler(address: object, what: str = "--scheduler") -> str:
    """A Dask scheduler address ``tcp://host:port``; a one-line ConfigError otherwise."""
    text = str(address or "").strip()
    parsed = urlparse(text)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in ("tcp", "tls") or not parsed.hostname or port is None:
        raise ConfigError(f"{what} {text!r} is not a Dask scheduler address: use tcp://host:8786")
    return text


@dataclass(frozen=True)
class ExecutorSpec:
    """Where units run. ``workers``: units in flight (and, without a scheduler, the processes of a local
    cluster); ``scheduler``: a running cluster's address; ``dask``: use a local Dask cluster even for one
    worker (the benchmark's overhead figure). Defaults: in this process."""

    workers: int = 1
    scheduler: str | None = None
    dask: bool = False

    def __post_init__(self) -> None:
        check_workers(self.workers)
        if self.scheduler is not None:
            check_scheduler(self.scheduler)

    @property
    def kind(self) -> str:
        """in-process, local cluster or remote cluster."""
        if self.scheduler:
            return "remote"
        return "local" if self.workers > 1 or self.dask else "in-process"

    def describe(self) -> str:
        """One line for progress messages and reports."""
        if self.kind == "remote":
            return f"Dask cluster at {self.scheduler}, {self.workers} unit(s) in flight"
        if self.kind == "local":
            return f"local Dask cluster of {self.workers} worker process(es)"
        return "in this process"

    def to_dict(self) -> dict[str, Any]:
        return {"workers": self.workers, "scheduler": self.scheduler, "dask": self.dask}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ExecutorSpec:
        data = dict(data or {})
        return cls(
            workers=int(data.get("workers", 1)), scheduler=data.get("scheduler") or None, dask=bool(data.get("dask"))
        )


def executor_spec(
    workers: int | None = None, scheduler: str | None = None, *, env: Mapping[str, str] | None = None
) -> ExecutorSpec:
    """The spec an operator's flags ask for: ``--scheduler`` (else ``DISCOVERY_DASK_SCHEDULER``) names a
    running cluster; else ``--workers N`` > 1 starts a local cluster of N processes; else in this process."""
    env = os.environ if env is None else env
    what = "--scheduler"
    if not scheduler and env.get(SCHEDULER_ENV):
        scheduler, what = env[SCHEDULER_ENV], SCHEDULER_ENV
    if scheduler:
        scheduler = check_scheduler(scheduler, what)
    return ExecutorSpec(workers=check_workers(1 if workers is None else workers), scheduler=scheduler or None)


# --------------------------------------------------------------------------- the interface


@dataclass(frozen=True)
class UnitDone:
    """One finished unit: its index in the units given, and its value or the exception it raised."""

    index: int
    value: Any = None
    error: BaseException | None = None


@dataclass(frozen=True)
class ClusterStatus:
    """What the console's cluster panel shows."""

    kind: str
    address: str | None
    workers: int
    threads: int
    tasks_in_flight: int
    memory_bytes: int
    memory_limit_bytes: int
    dashboard_url: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Executor(Protocol):
    """Runs units; the caller (the coordinator) consumes results as they finish."""

    spec: ExecutorSpec

    @property
    def slots(self) -> int:
        """Units that run at once."""
        ...

    def run(
        self, fn: Callable[..., Any], units: Sequence[tuple], *, tick: Callable[[], None] | None = None
    ) -> Iterator[UnitDone]:
        """``fn(*unit)`` for each unit; yields each as it finishes (once). ``tick()`` is called at least every
        TICK_S seconds while waiting; if it raises, the units not finished are cancelled and it propagates."""
        ...

    def status(self) -> ClusterStatus: ...

    def close(self) -> None: ...


class InProcessExecutor:
    """Each unit in the caller's thread, in the order given."""

    def __init__(self, spec: ExecutorSpec | None = None):
        self.spec = spec or ExecutorSpec()

    @property
    def slots(self) -> int:
        return 1

    def run(self, fn, units, *, tick=None) -> Iterator[UnitDone]:
        last = time.monotonic()
        for i, unit in enumerate(units):
            try:
                done = UnitDone(i, value=fn(*unit))
            except Exception as exc:  # noqa: BLE001 - kept with its unit; the caller decides
                done = UnitDone(i, error=exc)
            yield done
            if tick is not None and time.monotonic() - last >= TICK_S:
                tick()
                last = time.monotonic()

    def status(self) -> ClusterStatus:
        return ClusterStatus("in-process", None, 1, 1, 0, 0, 0, None)

    def close(self) -> None:
        return None

    def __enter__(self) -> InProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dashboard_available() -> bool:
    """Whether Dask's dashboard can be served here (it needs bokeh, which is optional)."""
    return importlib.util.find_spec("bokeh") is not None


class DaskExecutor:
    """Units on a Dask cluster: a local one this executor starts (and closes), or a running one it connects to."""

    def __init__(self, spec: ExecutorSpec, *, preload: Sequence[str] = ()):
        # lazy: distributed takes a second to import and only a Dask executor needs it
        import dask
        from distributed import Client, LocalCluster

        self.spec = spec
        self._cluster = None
        dask.config.set(DASK_CONFIG)
        if not spec.scheduler:  # set for good, not for the start only: the nanny restarts a lost worker the same way
            dask.config.set({"distributed.worker.multiprocessing-method": START_METHOD})
            _preload_forkserver(preload)
        try:
            if spec.scheduler:
                self.client = Client(spec.scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            else:
                self._cluster = LocalCluster(
                    n_workers=spec.workers,
                    threads_per_worker=1,
                    processes=True,
                    # the HTTP port on a free one: two clusters on one host never fight over 8787
                    dashboard_address=":0",
                    memory_limit=0,
                )
                self.client = Client(self._cluster, set_as_default=False)
        except (OSError, TimeoutError, RuntimeError) as exc:
            self._close_cluster()
            where = spec.scheduler or "a local cluster"
            why = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExecutorUnavailable(
                f"cannot start or reach {where} ({why}); "
                f"check the address and that `dask scheduler` runs there, or drop --scheduler/{SCHEDULER_ENV}"
            ) from None

    @property
    def address(self) -> str:
        """The scheduler's address (a local cluster's is on 127.0.0.1)."""
        if self._cluster is not None:
            return str(self._cluster.scheduler_address)
        return str(self.spec.scheduler)

    @property
    def slots(self) -> int:
        return self.spec.workers

    def run(self, fn, units, *, tick=None) -> Iterator[UnitDone]:
        # lazy: see __init__
        from distributed import as_completed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        futures = [self.client.submit(fn, *unit, pure=False, retries=0) for unit in units]
        index = {f.key: i for i, f in enumerate(futures)}
        finished = as_completed(futures, loop=self.client.loop)
        returned = 0
        last = time.monotonic()
        try:
            while returned < len(futures):
                batch = finished.next_batch(block=False)
                if not batch:
                    time.sleep(POLL_S)
                for f in sorted(batch, key=lambda f: index[f.key]):
                    i = index[f.key]
                    returned += 1
                    if f.status == "finished":
                        yield UnitDone(i, value=f.result())
                        continue
                    try:
                        exc = f.exception()
                    except FutureCancelledError:
                        exc = None
                    if isinstance(exc, KilledWorker) or exc is None:
                        raise ExecutorUnavailable(
                            f"a unit of work was lost with {ALLOWED_FAILURES} Dask workers in a row "
                            f"({self.spec.describe()}): the job stops; resume it when the cluster is healthy"
                        )
                    yield UnitDone(i, error=exc)
                if tick is not None and time.monotonic() - last >= TICK_S:
                    tick()
                    last = time.monotonic()
        finally:
            left = [f for f in futures if not f.done()]
            if left:
                self.client.cancel(left)

    def status(self) -> ClusterStatus:
        return cluster_status_of(self.client, "remote" if self.spec.scheduler else "local")

    def _close_cluster(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        self._close_cluster()

    def worker_pids(self) -> list[int]:
        """The worker processes' ids (tests kill one to show a lost worker loses nothing)."""
        return sorted(self.client.run(os.getpid).values())

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _preload_forkserver(modules: Sequence[str]) -> None:
    """Name the modules the fork server imports before it forks any worker (distributed and ``modules``). The
    server starts with the first worker a process starts and then serves every later cluster of that process:
    the first cluster's list is the one that counts (a module missing from it is imported by the worker)."""
    # lazy: see DaskExecutor.__init__
    from distributed.utils import get_mp_context

    if START_METHOD == "forkserver":
        # Dask names its own list on its first call (once per process): ours is set after it, so it stays
        get_mp_context().set_forkserver_preload(["distributed", *modules])


def make_executor(spec: ExecutorSpec | None = None, *, preload: Sequence[str] = ()) -> InProcessExecutor | DaskExecutor:
    """The executor a spec describes (close it when done; both are context managers). ``preload``: the modules
    of the units it will run, imported by a local cluster's fork server once instead of by each worker."""
    spec = spec or ExecutorSpec()
    if spec.kind == "in-process":
        return InProcessExecutor(spec)
    return DaskExecutor(spec, preload=preload)


# --------------------------------------------------------------------------- the cluster panel


def cluster_status_of(client: Any, kind: str) -> ClusterStatus:
    """Workers, threads, units in flight and memory of the cluster ``client`` is connected to."""
    info = client.scheduler_info()
    workers = info.get("workers", {})
    in_flight = sum(len(keys) for keys in client.processing().values())
    link = client.dashboard_link if dashboard_available() else None
    return ClusterStatus(
        kind=kind,
        address=str(info.get("address") or "") or None,
        workers=len(workers),
        threads=sum(int(w.get("nthreads", 0)) for w in workers.values()),
        tasks_in_flight=in_flight,
        memory_bytes=sum(int(w.get("metrics", {}).get("memory", 0)) for w in workers.values()),
        memory_limit_bytes=sum(int(w.get("memory_limit") or 0) for w in workers.values()),
        dashboard_url=link,
    )


def cluster_status(address: str, *, timeout_s: float = 3.0) -> ClusterStatus:
    """Connect to the scheduler at ``address`` for a moment and read its status (the console's panel)."""
    # lazy: see DaskExecutor
    from distributed import Client

    check_scheduler(address, "scheduler address")
    try:
        client = Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ExecutorUnavailable(f"cannot reach the Dask scheduler at {address} ({type(exc).__name__})") from None
    try:
        return cluster_status_of(client, "remote")
    finally:
        client.close()


def announce_path(data_dir: Path, job_id: int) -> Path:
    return Path(data_dir) / ANNOUNCE_DIR / f"job-{job_id}.json"


def announce(data_dir: Path, job_id: int, executor: DaskExecutor, *, what: str = "") -> Path:
    """Say which cluster job ``job_id`` uses (the console reads it while the job runs; ``withdraw`` removes it)."""
    path = announce_path(data_dir, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    entry = {"job_id": job_id, "address": executor.address, "kind": executor.spec.kind, "what": what}
    tmp.write_text(json.dumps({**entry, "pid": os.getpid()}))
    tmp.replace(path)
    return path


def withdraw(data_dir: Path, job_id: int) -> None:
    announce_path(data_dir, job_id).unlink(missing_ok=True)


def announced(data_dir: Path) -> list[dict[str, Any]]:
    """The clusters running jobs announced (newest job first); entries whose coordinator is gone are skipped."""
    folder = Path(data_dir) / ANNOUNCE_DIR
    out = []
    for path in sorted(folder.glob("job-*.json"), reverse=True) if folder.is_dir() else []:
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _alive(int(entry.get("pid", 0))):
            out.append(entry)
    return sorted(out, key=lambda e: -int(e.get("job_id", 0)))


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
