"""A real HTTP server on a free loopback port that collects the callbacks POSTed to it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CallbackInbox:
    """Records each POST's headers and body and answers the scripted statuses in turn, then 200.

    ``close_after_each`` closes every connection after its answer, without saying so first.
    """

    def __init__(self, statuses: Iterable[int] = (), *, close_after_each: bool = False) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses)
        self._lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real API answers

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with inbox._lock:
                    inbox.received.append((dict(self.headers), body))
                    status = inbox.statuses.pop(0) if inbox.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                self.close_connection = close_after_each  # as a server whose keep-alive ran out

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/providers/sandbox/callbacks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CallbackInbox:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]
