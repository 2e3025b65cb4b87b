"""Local receivers for notification tests: a JSON webhook on 127.0.0.1 that honours ``Idempotency-Key``,
and an SMTP server (aiosmtpd) on 127.0.0.1, optionally with STARTTLS and a user name and password.

The webhook can be stopped and started again on the same port (a receiver that is down for a while);
``posts`` keeps every request it answered, ``unique`` one body per idempotency key (what a receiver that
honours the key keeps).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WebhookReceiver:
    """A JSON receiver on 127.0.0.1:port; ``status`` is what it answers (500 to play a broken receiver)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.posts: list[dict[str, Any]] = []
        self.unique: dict[str, dict[str, Any]] = {}
        self.status = 200
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/T0SECRETPATH/abcdef123456"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key", "")
                with receiver._lock:
                    data = json.loads(body or b"{}")
                    receiver.posts.append({"key": key, "path": self.path, "body": data})
                    if receiver.status < 300:
                        receiver.unique.setdefault(key, data)
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok" if receiver.status < 300 else b"broken")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def topics(self) -> list[str]:
        return [p["body"].get("topic", "") for p in self.posts]


class _Collect:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "data": envelope.content.decode("utf-8", "replace"),
                "auth": session.authenticated,
            }
        )
        return "250 OK"


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl), so STARTTLS can be verified against it."""
    cert, key = tmp / "smtp-cert.pem", tmp / "smtp-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1; with ``cert`` it requires STARTTLS, with ``login`` it requires that login."""

    def __init__(self, *, cert: tuple[Path, Path] | None = None, login: tuple[str, str] | None = None):
        self.port = free_port()
        self.handler = _Collect()
        kw: dict[str, Any] = {}
        if cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
            kw.update(tls_context=ctx, require_starttls=True)
        if login is not None:

            def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
                ok = (
                    isinstance(auth_data, LoginPassword)
                    and (
                        auth_data.login.decode(),
                        auth_data.password.decode(),
                    )
                    == login
                )
                return AuthResult(success=ok, handled=False)

            kw.update(authenticator=authenticate, auth_required=True, auth_require_tls=cert is not None)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kw)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.handler.messages

    def start(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
