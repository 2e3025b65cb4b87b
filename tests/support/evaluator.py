"""A scripted HTTP evaluator on loopback for tests of the HTTP evidence source and the CLI."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Evaluator:
    """A local HTTP evaluator whose reply is scripted per test; it counts every request it gets."""

    def __init__(self):
        self.requests: list[dict] = []
        self.reply = lambda body: (
            200,
            json.dumps({"decision": "ACCEPT", "cost_usd": 0.021, "url": "https://x.example/a", "excerpt": "found it"}),
        )
        self.delay_s = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                outer.requests.append({"path": self.path, "body": body, "ctype": self.headers.get("Content-Type")})
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                status, text = outer.reply(body)
                data = text.encode()
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

    def close(self):
        self.server.shutdown()
        self.server.server_close()
