"""A real sandbox provider served by uvicorn in a thread on a free loopback port, for tests."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import requests
import uvicorn

from integrations.sandbox_server import create_sandbox_app


class LiveSandbox:
    """A sandbox server running under uvicorn in a thread, on a free port."""

    def __init__(self, tmp_path: Path, secret: bytes, **options: Any) -> None:
        options.setdefault("callback_retry_delays", (0.05,))
        self.app = create_sandbox_app(store_path=tmp_path / "live.db", callback_secret=secret, **options)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="on",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self):
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("sandbox server did not start")
            time.sleep(0.01)

    def stop(self):
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def set_faults(self, **plan):
        requests.put(self.url + "/v1/faults", json=plan, timeout=5).raise_for_status()

    def get(self, path):
        response = requests.get(self.url + path, timeout=5)
        response.raise_for_status()
        return response
