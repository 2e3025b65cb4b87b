"""A scripted HTTP evaluator on loopback for tests of the HTTP evidence source and the CLI.

Besides a scripted reply (``reply(body) -> (status, text)``), it can misbehave the way a real
evaluator does: answer a cost as any JSON literal (``costing("1e999")``), or drip its whole answer
(status line, headers, body) one byte every ``drip_s`` seconds, so a client that only bounds each
socket read would wait for ever.

It speaks HTTP/1.1 with keep-alive, as a real evaluator behind any web server does, so a pooling
client reuses its connections (``connections`` counts the TCP connections it accepted). ``close()``
also cuts the connections still open, so a stopped evaluator is really gone for a pooled client.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: seconds a kept-alive connection may sit idle before the evaluator drops it
IDLE_TIMEOUT_S = 30.0


class Evaluator:
    """A local HTTP evaluator whose reply is scripted per test; it counts every request it gets."""

    def __init__(self):
        self.requests: list[dict] = []
        self.reply = lambda body: (
            200,
            json.dumps({"decision": "ACCEPT", "cost_usd": 0.021, "url": "https://x.example/a", "excerpt": "found it"}),
        )
        self.delay_s = 0.0
        #: > 0: send the answer one byte at a time, this many seconds apart
        self.drip_s = 0.0
        #: bytes each dripping answer got out before the client hung up (one entry per dripped answer)
        self.dripped: list[int] = []
        #: TCP connections accepted so far (a pooled client opens far fewer than it sends requests)
        self.connections = 0
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            #: headers and body go out as two writes: without this a kept-alive connection waits out the
            #: client's delayed ACK (~40 ms) on every answer
            disable_nagle_algorithm = True
            #: an idle kept-alive connection is dropped after this long (its thread ends)
            timeout = IDLE_TIMEOUT_S

            def setup(self):
                super().setup()
                with outer._lock:
                    outer.connections += 1
                    outer._open.add(self.connection)

            def finish(self):
                with outer._lock:
                    outer._open.discard(self.connection)
                super().finish()

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                with outer._lock:
                    outer.requests.append({"path": self.path, "body": body, "ctype": self.headers.get("Content-Type")})
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                status, text = outer.reply(body)
                data = text.encode()
                if outer.drip_s:
                    outer._drip(self, status, data)
                    return
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/evaluate"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def costing(self, literal: str, decision: str = "ACCEPT") -> None:
        """Answer every hop 200 with ``cost_usd`` written as this JSON literal, verbatim (``1e999``, ``NaN``...)."""
        text = f'{{"decision": "{decision}", "cost_usd": {literal}, "url": "https://x.example/a"}}'
        self.reply = lambda body: (200, text)

    def _drip(self, handler: BaseHTTPRequestHandler, status: int, data: bytes) -> None:
        head = (
            f"HTTP/1.0 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        sent = 0
        try:
            for i in range(len(head + data)):
                if self._closing.wait(self.drip_s):
                    break
                handler.wfile.write((head + data)[i : i + 1])
                handler.wfile.flush()
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.dripped.append(sent)
            handler.close_connection = True

    def close(self):
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            still_open = list(self._open)
        for conn in still_open:  # kept-alive connections would otherwise go on answering a pooled client
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
