"""The embedded FalkorDB server and the clients (engine.store.falkor), against real servers in tmp dirs."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import redis

from engine.core.errors import StoreUnavailable
from engine.core.settings import REPO_ROOT, Settings
from engine.store import falkor
from engine.store.graph import GraphStore

PY = sys.executable


def _server_pids_for(graph_dir: Path) -> list[int]:
    """Live redis-server processes whose working dir is this graph dir (the server chdirs to `dir`)."""
    pids = []
    for proc in psutil.process_iter(["name", "cwd", "status"]):
        try:
            if (
                "redis-server" in (proc.info["name"] or "")
                and proc.info["status"] != psutil.STATUS_ZOMBIE
                and proc.info["cwd"]
                and Path(proc.info["cwd"]).resolve() == graph_dir.resolve()
            ):
                pids.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return pids


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with-block ends


def _engine_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FALKORDB_URL", "DISCOVERY_GRAPH")}
    env["DISCOVERY_DATA_DIR"] = str(settings.data_dir)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


# --------------------------------------------------------------------------- clients


def test_sync_client_has_no_socket_timeout_and_no_retries(graph):
    pool = graph.db.connection.connection_pool
    assert pool.connection_kwargs["socket_timeout"] is None
    conn = pool.get_connection()
    try:
        assert conn.socket_timeout is None
        # redis 8.1's default is Retry(ExponentialWithJitterBackoff, 10): a slow write would run 11 times
        assert conn.retry.get_retries() == 0
        assert conn.retry_on_error == []
        assert conn.retry_on_timeout is False
    finally:
        pool.release(conn)


def test_async_client_has_no_socket_timeout_and_no_retries(graph):
    async def probe():
        db = falkor.connect_async(graph.settings)
        pool = db.connection.connection_pool
        conn = await pool.get_connection()
        try:
            seen = (conn.socket_timeout, conn.retry.get_retries(), list(conn.retry_on_error))
        finally:
            await pool.release(conn)
        result = await db.select_graph(graph.settings.graph_name).query("RETURN $x", {"x": "async"})
        await db.connection.aclose()
        return seen, result.result_set

    (timeout, retries, retry_on), rows = asyncio.run(probe())
    assert (timeout, retries, retry_on) == (None, 0, [])
    assert rows == [["async"]]


def test_url_client_is_built_without_timeout_or_retries_too(settings):
    url_settings = Settings(data_dir=settings.data_dir, falkordb_url="redis://:secret@db.example:6390/0")
    pool = falkor._sync_pool(url_settings)
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["password"]) == ("db.example", 6390, "secret")
    assert kwargs["socket_timeout"] is None
    assert kwargs["retry"].get_retries() == 0
    async_kwargs = falkor._async_pool(url_settings).connection_kwargs
    assert async_kwargs["socket_timeout"] is None and async_kwargs["retry"].get_retries() == 0


def test_falkordb_url_is_used_instead_of_the_embedded_server(graph):
    """FALKORDB_URL takes the plain-client path; a unix:// URL lets us aim it at a real server here."""
    sock = falkor.socket_path(graph.settings)
    remote = Settings(data_dir=graph.settings.data_dir / "unused", falkordb_url=f"unix://{sock}",
                      graph_name=graph.settings.graph_name)  # fmt: skip
    graph.graph.query("CREATE (:Probe {v: $v})", {"v": "via-embedded"})
    db = falkor.connect(remote)
    try:
        rows = db.select_graph(remote.graph_name).ro_query("MATCH (p:Probe) RETURN p.v").result_set
    finally:
        db.close()
    assert rows == [["via-embedded"]]
    assert not (remote.data_dir / "falkordb").exists()  # no embedded server was started for it


def test_unreachable_falkordb_url_raises_store_unavailable_naming_the_url(tmp_path):
    port = _closed_port()
    url = f"redis://:hunter2@127.0.0.1:{port}"
    settings = Settings(data_dir=tmp_path / "data", falkordb_url=url)
    with pytest.raises(StoreUnavailable) as err:
        falkor.connect(settings)
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message
    assert "hunter2" not in message  # the password is redacted
    assert "unset FALKORDB_URL" in message
    assert "\n" not in message
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}"):
        GraphStore.open(settings)


def test_invalid_falkordb_url_is_a_store_unavailable_with_the_expected_form(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", falkordb_url="http://localhost:6379")
    with pytest.raises(StoreUnavailable, match=r"use redis://host:port\[/db\]"):
        falkor.connect(settings)


def test_unix_socket_path_stays_short_and_is_shared(tmp_path):
    short = Settings(data_dir=Path("/tmp/d"))
    assert falkor._derived_socket_path(short.graph_dir) == short.graph_dir / "falkordb.sock"
    deep = tmp_path / ("x" * 120) / "data"
    settings = Settings(data_dir=deep)
    path = falkor.socket_path(settings)
    assert len(os.fsencode(str(path))) < falkor.MAX_SOCKET_PATH
    assert path.parent == Path("/tmp")
    assert falkor.socket_path(Settings(data_dir=deep)) == path  # every process derives the same one
    assert falkor.socket_path(Settings(data_dir=tmp_path / "other")) != path


# --------------------------------------------------------------------------- embedded server lifecycle


def test_server_config_has_append_only_persistence_and_no_tcp(graph):
    client = falkor._probe_client(falkor.socket_path(graph.settings))
    try:
        config = client.config_get("*")
    finally:
        client.close()
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["port"] == "0"
    assert config["unixsocketperm"] == "700"
    assert Path(config["dir"]).resolve() == graph.settings.graph_dir.resolve()


def test_close_and_reopen_after_a_server_restart_keeps_the_data(settings):
    store = GraphStore.open(settings)
    try:
        store.graph.query("UNWIND range(1, 50) AS i CREATE (:Kept {i: i, text: $t})", {"t": "still here"})
        first_pid = falkor.server_status(settings).pid
    finally:
        store.close()
    assert falkor.stop_embedded_server(settings) is True
    assert falkor.server_status(settings).running is False
    assert _server_pids_for(settings.graph_dir) == []
    store = GraphStore.open(settings)
    try:
        second_pid = falkor.server_status(settings).pid
        rows = store.graph.ro_query("MATCH (k:Kept) RETURN count(k), min(k.text)").result_set
    finally:
        store.close()
        falkor.stop_embedded_server(settings)
    assert rows == [[50, "still here"]]
    assert second_pid != first_pid


@pytest.mark.slow  # starts or kills real processes
def test_sigkilled_server_loses_no_acknowledged_write(settings):
    """appendonly: every write acknowledged before SIGKILL is replayed from the AOF on restart."""
    store = GraphStore.open(settings)
    try:
        for i in range(20):  # separate commands, each acknowledged
            store.graph.query("CREATE (:Acked {i: $i})", {"i": i})
        server = falkor._server_process(settings.graph_dir)
        assert server is not None
        server.kill()
        assert falkor._wait_for_exit(server, deadline=float("inf"))  # gone (a zombie counts as gone)
    finally:
        store.close()
    assert falkor.server_status(settings).running is False  # stale pidfile and socket are left behind
    store = GraphStore.open(settings)  # detects the stale files and starts a fresh server
    try:
        rows = store.graph.ro_query("MATCH (a:Acked) RETURN count(a), sum(a.i)").result_set
        assert falkor.server_status(settings).pid != server.pid
    finally:
        store.close()
        falkor.stop_embedded_server(settings)
    assert rows == [[20, sum(range(20))]]


@pytest.mark.slow  # starts or kills real processes
def test_stale_pidfile_of_a_dead_or_foreign_process_is_replaced(settings):
    graph_dir = settings.graph_dir
    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait()
    for stale_pid in (dead.pid, os.getpid()):  # gone / alive but not a redis-server
        (graph_dir / falkor.PID_NAME).write_text(f"{stale_pid}\n")
        falkor.socket_path(settings).write_text("not a socket")
        assert falkor.server_status(settings).running is False
        falkor.ensure_embedded_server(settings)
        status = falkor.server_status(settings)
        assert status.running and status.responding and status.pid != stale_pid
        assert falkor.stop_embedded_server(settings) is True


@pytest.mark.slow  # starts real servers
def test_a_stale_pidfile_naming_another_data_dirs_server_never_touches_it(tmp_path):
    """Pids are reused: a pidfile left by a SIGKILLed server may name another data dir's live server by now.

    That server is not ours: status does not report it, start does not wait on it, and stop
    neither shuts it down nor signals it (it once SIGTERMed a neighbour's server after 2 minutes).
    """
    from engine.core.settings import Settings

    mine = Settings(data_dir=tmp_path / "mine", falkordb_url=None).ensure_dirs()
    theirs = Settings(data_dir=tmp_path / "theirs", falkordb_url=None).ensure_dirs()
    falkor.ensure_embedded_server(theirs)
    try:
        their_pid = falkor.server_status(theirs).pid
        (mine.graph_dir / falkor.PID_NAME).write_text(f"{their_pid}\n")
        assert falkor.server_status(mine).running is False
        assert falkor.stop_embedded_server(mine, timeout_s=1) is False
        falkor.ensure_embedded_server(mine)  # starts its own instead of waiting on theirs
        assert falkor.server_status(mine).pid not in (None, their_pid)
        assert falkor.stop_embedded_server(mine) is True
        status = falkor.server_status(theirs)
        assert status.pid == their_pid and status.responding
    finally:
        falkor.stop_embedded_server(mine)
        falkor.stop_embedded_server(theirs)


def test_stop_when_not_running_is_a_no_op(settings):
    assert falkor.stop_embedded_server(settings) is False
    falkor.ensure_embedded_server(settings)
    assert falkor.stop_embedded_server(settings) is True
    assert falkor.stop_embedded_server(settings) is False
    assert not (settings.graph_dir / falkor.PID_NAME).exists()


def test_data_dir_with_spaces_and_quotes_in_its_path(tmp_path):
    settings = Settings(data_dir=tmp_path / 'my "data" dir\\x', graph_name="g").ensure_dirs()
    try:
        with GraphStore.open(settings) as store:
            assert store.count_entities() == 0
        status = falkor.server_status(settings)
        assert status.responding
    finally:
        falkor.stop_embedded_server(settings)


_RACER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from engine.store import falkor
    from engine.core.settings import Settings

    data_dir, worker, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    settings = Settings(data_dir=data_dir, graph_name="race")
    print("ready", flush=True)
    sys.stdin.readline()  # released by the parent at the same moment as the others
    db = falkor.connect(settings)
    g = db.select_graph("race")
    for i in range(n):
        g.query("CREATE (:W {worker: $w, i: $i})", {"w": worker, "i": i})
    print("pid", falkor.server_status(settings).pid, flush=True)
    """
)


@pytest.mark.slow  # starts or kills real processes
def test_processes_starting_the_same_fresh_data_dir_at_once_share_one_server(tmp_path):
    data_dir = tmp_path / "data"
    workers, writes = 4, 25
    procs = [
        subprocess.Popen(
            [PY, "-c", _RACER, str(data_dir), str(w), str(writes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_engine_env(Settings(data_dir=data_dir)),
        )
        for w in range(workers)
    ]
    settings = Settings(data_dir=data_dir, graph_name="race")
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:  # release them together
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=120) for p in procs]
        for p, (_out, err) in zip(procs, outputs):
            assert p.returncode == 0, err
        pids = {int(out.split()[-1]) for out, _ in outputs}
        assert len(pids) == 1
        assert _server_pids_for(settings.graph_dir) == list(pids)
        with GraphStore.open(settings) as store:
            rows = store.graph.ro_query("MATCH (w:W) RETURN w.worker, count(w) ORDER BY w.worker").result_set
        assert rows == [[w, writes] for w in range(workers)]
        # and the writes survive a restart of that one server
        falkor.stop_embedded_server(settings)
        with GraphStore.open(settings) as store:
            assert store.graph.ro_query("MATCH (w:W) RETURN count(w)").result_set == [[workers * writes]]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        falkor.stop_embedded_server(settings)


@pytest.mark.slow  # starts or kills real processes
def test_server_outlives_the_cli_process_that_started_it(settings):
    env = _engine_env(settings)
    try:
        started = subprocess.run([PY, "-m", "engine", "store", "start"], env=env, capture_output=True, text=True)
        assert started.returncode == 0, started.stderr
        status = subprocess.run([PY, "-m", "engine", "store", "status"], env=env, capture_output=True, text=True)
        assert status.returncode == 0 and "running" in status.stdout
        # the starting process has exited; the server is still there for us
        assert falkor.server_status(settings).responding
        stopped = subprocess.run([PY, "-m", "engine", "store", "stop"], env=env, capture_output=True, text=True)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        again = subprocess.run([PY, "-m", "engine", "store", "status"], env=env, capture_output=True, text=True)
        assert again.returncode == 1 and "not running" in again.stdout
        idle = subprocess.run([PY, "-m", "engine", "store", "stop"], env=env, capture_output=True, text=True)
        assert idle.returncode == 0 and "was not running" in idle.stdout
    finally:
        falkor.stop_embedded_server(settings)


@pytest.mark.slow  # starts or kills real processes
def test_store_status_with_an_unreachable_url_exits_non_zero_with_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DISCOVERY_DATA_DIR": str(tmp_path / "data"),
           "FALKORDB_URL": f"redis://127.0.0.1:{_closed_port()}"}  # fmt: skip
    status = subprocess.run([PY, "-m", "engine", "store", "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 1
    assert "cannot reach FalkorDB at redis://127.0.0.1:" in status.stdout
    start = subprocess.run([PY, "-m", "engine", "store", "start"], env=env, capture_output=True, text=True)
    assert start.returncode == 2
    assert start.stderr.startswith("error: cannot reach FalkorDB") and start.stderr.count("\n") == 1


def test_a_busy_loading_server_is_waited_for_not_restarted(monkeypatch, tmp_path):
    answers = iter([redis.exceptions.BusyLoadingError("LOADING"), redis.exceptions.BusyLoadingError("LOADING"), True])

    def fake_ping(sock):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(falkor, "_ping", fake_ping)
    monkeypatch.setattr(falkor.time, "sleep", lambda s: None)
    falkor._wait_for_ping(tmp_path / "s.sock", None, float("inf"), tmp_path)
    assert next(answers, "exhausted") == "exhausted"
