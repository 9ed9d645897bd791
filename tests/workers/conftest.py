"""The full stack for worker tests: PostgreSQL, Redis, a real Celery worker process, the
sandbox provider and the API (both on loopback), each run on its own queue and database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import uvicorn

from api.main import create_app
from ledger import chain
from payments import pii
from tests.sandbox import LiveSandbox
from upah import bootstrap
from upah.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("UPAH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CALLBACK_SECRET = "worker-test-callback-secret"


class Stack:
    def __init__(self, pg_url: str, tmp: Path, sandbox: LiveSandbox, api_url: str) -> None:
        self.queue = f"upah-test-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "DATABASE_URL": pg_url,
            "REDIS_URL": REDIS_URL,
            "UPAH_QUEUE": self.queue,
            "UPAH_SECRET_KEYS": pii.generate_key(),
            "UPAH_SIGNING_KEY": chain.generate_private_key_text(),
            "UPAH_SANDBOX_PROVIDER_URL": sandbox.url,
            "UPAH_SANDBOX_CALLBACK_SECRET": CALLBACK_SECRET,
            "UPAH_PUBLIC_URL": api_url,
            "UPAH_DATA_DIR": str(tmp),
            "UPAH_PROVIDER_TIMEOUT_SECONDS": "1.0",
            "UPAH_STALE_AFTER_SECONDS": "3",
            "UPAH_VISIBILITY_TIMEOUT": "10",
            "UPAH_PROVIDER_RATE_PER_SECOND": "200",
            "PYTHONPATH": str(ROOT),
        }
        self.tmp = tmp
        self.sandbox = sandbox
        self.worker: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def settings(self) -> Settings:
        keys = {k.lower(): v for k, v in self.env.items() if k.startswith(("UPAH_", "DATABASE_", "REDIS_"))}
        return Settings(**keys)  # type: ignore[arg-type]

    def start_worker(self, concurrency: int = 4) -> None:
        self.starts += 1
        with (self.tmp / f"worker-{self.starts}.log").open("wb") as log:
            self.worker = self._spawn(concurrency, log)

    def _spawn(self, concurrency: int, log: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603
            bootstrap.worker_command(
                beat=True, pool="prefork", concurrency=concurrency, loglevel="WARNING", heartbeat=False
            ),
            env=self.env,
            cwd=self.tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # type: ignore[arg-type]
        )

    def kill_worker(self) -> None:
        """SIGKILL the worker and every child it forked: no cleanup, no acks."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=10)

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait(timeout=10)

    def worker_log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp.glob("worker-*.log")))

    def close(self) -> None:
        self.stop_worker()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"*{self.queue}*"):
            client.delete(key)
        client.close()


class LiveApi:
    """The API under uvicorn in a thread, to receive the sandbox's callbacks."""

    def __init__(self, settings_factory: object) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._factory = settings_factory
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, settings: Settings) -> None:
        config = uvicorn.Config(
            create_app(settings), log_level="warning", lifespan="on", ws="none", http="h11"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("api did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._socket.close()


@pytest.fixture
def stack(pg_url: str, tmp_path: Path) -> Iterator[Stack]:
    sandbox = LiveSandbox(tmp_path, CALLBACK_SECRET.encode(), callback_retry_delays=(0.2, 1.0))
    sandbox.start()
    api = LiveApi(None)
    the_stack = Stack(pg_url, tmp_path, sandbox, api.url)
    api.start(the_stack.settings)
    try:
        yield the_stack
    finally:
        the_stack.close()
        api.stop()
        sandbox.stop()
