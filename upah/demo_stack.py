"""What ``upah demo`` runs beside its story: the API (to take the provider's callbacks), the
sandbox provider (in this process, so the story can set its faults and wallets), and a real
Celery worker process with its beat — on the embedded broker, or on Redis for ``--postgres``."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from integrations.sandbox_server import SandboxService, create_sandbox_app, sandbox_service
from upah import bootstrap
from upah.settings import Settings, get_settings

STARTUP_SECONDS = 20.0


class ThreadServer:
    """One ASGI app under uvicorn in a daemon thread, on a free loopback port."""

    def __init__(self, app: Any, *, factory: bool = False) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, factory=factory, log_level="warning", lifespan="on", ws="none")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@dataclass
class Stack:
    settings: Settings
    api_url: str
    sandbox: SandboxService
    worker_log: Path


@contextmanager
def running(*, env: Mapping[str, str]) -> Iterator[Stack]:
    """Start the sandbox, the API and a worker, each told where the others are.

    ``env`` is the story's configuration; it is set in this process too (with the servers'
    addresses), so the story, the API thread and the worker all read the same settings.
    """
    sandbox_server: ThreadServer | None = None
    api: ThreadServer | None = None
    worker: subprocess.Popen[bytes] | None = None
    service: SandboxService | None = None
    try:
        api = ThreadServer("api.main:serve_app", factory=True)
        settings = _configure(env, api_url=api.url)
        keys = bootstrap.keys(settings)
        sandbox_app = create_sandbox_app(
            store_path=bootstrap.sandbox_store(settings), callback_secret=keys.sandbox_callback_secret
        )
        service = sandbox_service(sandbox_app)
        sandbox_server = ThreadServer(sandbox_app)
        settings = _configure({**env, "UPAH_SANDBOX_PROVIDER_URL": sandbox_server.url}, api_url=api.url)
        sandbox_server.start()
        api.start()
        logs = settings.data_dir / ".upah"
        _quiet_api_logs(logs / "demo-api.log")
        with (logs / "demo-worker.log").open("wb") as log:
            worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                bootstrap.worker_command(beat=True, pool="prefork", concurrency=2, loglevel="WARNING"),
                env=dict(os.environ),
                cwd=settings.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        yield Stack(settings=settings, api_url=api.url, sandbox=service, worker_log=logs / "demo-worker.log")
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)
        if api is not None:
            api.stop()
        if sandbox_server is not None:
            sandbox_server.stop()
        if service is not None:
            service.close()


def _configure(env: Mapping[str, str], *, api_url: str) -> Settings:
    os.environ.update(env)
    os.environ["UPAH_PUBLIC_URL"] = api_url
    get_settings.cache_clear()
    return get_settings()


def _quiet_api_logs(path: Path) -> None:
    """The API thread's JSON request log goes to a file, not over the story."""
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    handler = logging.FileHandler(path)
    handler.setFormatter(formatter)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
