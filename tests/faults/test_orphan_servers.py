"""Case 11 of issue 11: leftover servers.

A CLI command that had to start the embedded FalkorDB stops it when it exits, unless another
process uses it (a process holding it through the users lock, even before its first connection;
any other connection to it); the last CLI process to leave a server a command started stops it,
so a worker launched by `rollout start` keeps the server its CLI started. `store start` (what
`make run` does) keeps one running. `store status` lists every embedded server of this user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import redis

from engine.catalogue.generator import generate_catalogue
from engine.core.settings import REPO_ROOT, Settings
from engine.jobs.queue import JobStore
from engine.store import falkor
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.rollouts import candidate_file
from tests.support.stages import stage_table

PY = sys.executable
#: a bound for waiting on other processes, so a broken build fails instead of hanging (not a timing claim)
PATIENCE_S = 180


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FALKORDB_URL", "DISCOVERY_GRAPH")}
    env.update(DISCOVERY_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO_ROOT))
    return env


def _cli(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([PY, "-m", "engine", *args], env=_env(data_dir), cwd=data_dir.parent,
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _server_pids(settings: Settings) -> list[int]:
    """Live redis-server processes serving this data dir (the server's working dir is its graph dir)."""
    pids = []
    for proc in psutil.process_iter(["name", "cwd", "status"]):
        try:
            if (
                "redis-server" in (proc.info["name"] or "")
                and proc.info["status"] != psutil.STATUS_ZOMBIE
                and proc.info["cwd"]
                and settings.graph_dir.exists()
                and os.path.samefile(proc.info["cwd"], settings.graph_dir)
            ):
                pids.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return pids


@pytest.fixture
def data(tmp_path):
    """A fresh data dir; whatever server a test leaves is stopped at teardown."""
    settings = Settings(data_dir=tmp_path / "data")
    try:
        yield settings
    finally:
        falkor.stop_embedded_server(settings)


#: `python -m engine stats` exactly as the entry point runs it (process_main), paused after it has
#: opened (and started) the store and closed its client, until the test writes a line
_PAUSED_STATS = textwrap.dedent(
    """
    import sys
    from engine.cli import catalogue, main

    real = catalogue.format_stats

    def paused(*args, **kwargs):
        print("started", flush=True)
        sys.stdin.readline()
        return real(*args, **kwargs)

    catalogue.format_stats = paused
    sys.exit(main.process_main(["stats"]))
    """
)


class PausedStats:
    """A `stats` CLI process held open after it started the server, released by ``finish()``."""

    def __init__(self, settings: Settings):
        self.proc = subprocess.Popen([PY, "-c", _PAUSED_STATS], env=_env(settings.data_dir), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        line = self.proc.stdout.readline().strip()
        if line != "started":
            self.proc.kill()
            pytest.fail(f"paused stats did not start: {line!r} {self.proc.stderr.read()}")

    def finish(self) -> str:
        out, err = self.proc.communicate("go\n", timeout=PATIENCE_S)
        assert self.proc.returncode == 0, err
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def paused_stats(data):
    started: list[PausedStats] = []

    def start() -> PausedStats:
        started.append(PausedStats(data))
        return started[-1]

    try:
        yield start
    finally:
        for p in started:
            p.kill()


@pytest.mark.slow  # starts or kills real processes
def test_a_command_that_started_the_server_leaves_nothing_running(data):
    """case 11: `stats`, `seed`, `stats` on a fresh data dir: no redis-server left after each; nothing lost."""
    _cli(data.data_dir, "stats")
    assert _server_pids(data) == []
    _cli(data.data_dir, "seed", "--entities", "5", "--seed", "7")
    assert _server_pids(data) == []
    stats = json.loads(_cli(data.data_dir, "stats", "--json").stdout)
    assert stats["entities"] == 5  # saved by SHUTDOWN SAVE, replayed by the next start
    assert _server_pids(data) == []
    assert not (data.graph_dir / falkor.AUTOSTOP_NAME).exists()
    assert not (data.graph_dir / falkor.PID_NAME).exists()


@pytest.mark.slow  # starts or kills real processes
def test_a_server_another_process_is_connected_to_keeps_running(data, paused_stats):
    """case 11: the test's own GraphStore attaches while `stats` runs; `stats` exits; the server stays, usable,
    and `store status` lists it; the last user to leave then stops it."""
    cli = paused_stats()
    (pid,) = _server_pids(data)
    assert (data.graph_dir / falkor.AUTOSTOP_NAME).exists()  # started by a command, not by `store start`
    store = GraphStore.open(data)
    try:
        store.graph.query("CREATE (:Kept {v: 1})")
        assert "entities" in cli.finish()
        assert _server_pids(data) == [pid]
        assert store.graph.ro_query("MATCH (k:Kept) RETURN count(k)").result_set == [[1]]
        status = _cli(data.data_dir, "store", "status")
        listed = [line for line in status.stdout.splitlines() if line.strip().startswith(str(pid))]
        assert len(listed) == 1 and str(data.data_dir) in listed[0] and "autostop" in listed[0], status.stdout
        assert "<- this data dir" in listed[0] and "stops when the last command" in status.stdout
        assert _server_pids(data) == [pid]  # `store status` stopped nothing either
    finally:
        store.close()
    assert falkor.release_embedded_server(data) is True  # this process was the last user
    assert _server_pids(data) == []


@pytest.mark.slow  # starts or kills real processes
def test_a_process_that_has_not_connected_yet_keeps_it_too(data, paused_stats):
    """case 11: a process between "the server is up" and its first connection (no client to see) counts."""
    cli = paused_stats()
    (pid,) = _server_pids(data)
    falkor.ensure_embedded_server(data)  # attached (users lock), not connected
    others = falkor.other_clients(falkor.socket_path(data))
    assert others == []  # no connection from anyone but this probe: only the users lock tells
    cli.finish()
    assert _server_pids(data) == [pid]
    assert falkor.release_embedded_server(data) is True
    assert _server_pids(data) == []


@pytest.mark.slow  # starts or kills real processes
def test_a_foreign_connection_keeps_it(data, paused_stats):
    """case 11: a client that takes no users lock (an older version, a redis-cli) is seen by CLIENT LIST."""
    cli = paused_stats()
    (pid,) = _server_pids(data)
    client = redis.Redis(unix_socket_path=str(falkor.socket_path(data)), socket_timeout=10)
    try:
        assert client.ping()
        cli.finish()
        assert _server_pids(data) == [pid]
        assert client.ping()
    finally:
        client.close()
    _cli(data.data_dir, "stats")  # the next command is now the last user of a server a command started
    assert _server_pids(data) == []


@pytest.mark.slow  # starts or kills real processes
def test_store_start_keeps_the_server_for_make_run(data):
    """case 11: `store start` (make run's first step) keeps the server through later commands until `store stop`."""
    _cli(data.data_dir, "seed", "--entities", "5")
    assert "kept running until `store stop`" in _cli(data.data_dir, "store", "start").stdout
    (pid,) = _server_pids(data)
    _cli(data.data_dir, "stats")
    assert _server_pids(data) == [pid]
    assert not (data.graph_dir / falkor.AUTOSTOP_NAME).exists()
    assert "saved and stopped" in _cli(data.data_dir, "store", "stop").stdout
    assert _server_pids(data) == []


@pytest.mark.slow  # starts or kills real processes
def test_commands_at_once_on_a_fresh_data_dir_lose_nothing_and_leave_nothing(data):
    """case 11: four `seed`s started together: each may start, share or stop the server; every write lands."""
    seeds = (11, 22, 33, 44)
    procs = [
        subprocess.Popen([PY, "-m", "engine", "seed", "--entities", "30", "--seed", str(s)], env=_env(data.data_dir),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for s in seeds
    ]  # fmt: skip
    try:
        outputs = [p.communicate(timeout=PATIENCE_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * len(seeds), [err for _, err in outputs]
    assert _server_pids(data) == []
    expected = {e.id for s in seeds for e in generate_catalogue(30, s)}
    assert json.loads(_cli(data.data_dir, "stats", "--json").stdout)["entities"] == len(expected)
    assert _server_pids(data) == []


@pytest.mark.slow  # starts or kills real processes
def test_a_worker_launched_by_rollout_start_keeps_working_and_leaves_nothing(data, tmp_path):
    """case 11: `rollout start` (no --wait) exits at once; its worker runs the whole rollout on the graph,
    then the last of them to leave stops the server."""
    _cli(data.data_dir, "seed", "--entities", "40", "--seed", "3")
    stages = stage_table(tmp_path, counts=(10, 20, "all"), loose_triggers=True)
    started = _cli(data.data_dir, "rollout", "--stage", "all", "--stages-file", str(stages), "--entities", "20",
                   "--time-scale", "400000", "--config-file", str(candidate_file(tmp_path)))  # fmt: skip
    assert "rollout 1 started" in started.stdout
    jobs = JobStore(open_ops_db(data))
    deadline = time.monotonic() + PATIENCE_S
    while any(j.state.is_active() for j in jobs.list()) or _server_pids(data):
        assert time.monotonic() < deadline, (
            [(j.id, j.state) for j in jobs.list()],
            _server_pids(data),
        )
        time.sleep(0.5)
    assert {j.state.value for j in jobs.list()} == {"succeeded"}
    status = json.loads(_cli(data.data_dir, "rollout", "status", "--json").stdout)
    assert status["state"] == "completed" and status["progress"] == [20, 20]
    assert _server_pids(data) == []
