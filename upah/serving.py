"""``upah serve --workers N``: the API in N processes, each listening on a socket of its own.

Uvicorn's own ``--workers`` binds one socket in its parent and shares it, and the kernel
hands a new connection to the worker that began waiting last: the 16 keep-alive
connections of ``bench/api.py``'s clients landed 14 on one worker and 2 on the other, so
one process's Python served seven eighths of the traffic. Here every process binds its own
socket to the address with ``SO_REUSEPORT`` and the kernel spreads connections over them by
a hash of their addresses (Linux). The workers keep their Prometheus counters in files of a
directory they share (``PROMETHEUS_MULTIPROC_DIR``: the operator's, else one made for the run
and removed after it), so that ``/metrics`` sums them whichever worker answers. The parent
only supervises: a worker that dies after it started is replaced; one that cannot start stops
them all, as the app or its configuration is broken and would fail again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from types import FrameType

import uvicorn

log = logging.getLogger(__name__)

GRACE_SECONDS = 30.0
"""How long a worker may take to finish its requests once told to stop."""

PARENT_CHECK_SECONDS = 1.0
"""How often a worker looks for its supervisor, to leave with it."""


class AddressInUse(Exception):
    """Something already listens on the address; no worker was started."""


def serve(app: str, *, host: str, port: int, workers: int, log_level: str = "info") -> int:
    """Serve the app factory ``app`` ("module:function") from ``workers`` processes until
    SIGINT or SIGTERM; the exit status (1 when a worker could not start)."""
    family, address = _address(host, port)
    _check_free(family, address)
    own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if own_metrics_dir:  # the spawned workers inherit it
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="upah-metrics-")
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    running = [_start(context, app, family, address, log_level) for _ in range(workers)]
    status = 0
    try:
        while not stop.wait(0.2):
            for i, (process, started) in enumerate(running):
                if process.is_alive():
                    continue
                if not started.is_set():
                    log.error("an API worker could not start (exit code %s); stopping", process.exitcode)
                    status = 1
                    stop.set()
                    break
                log.warning("API worker %s exited (code %s); starting another", process.pid, process.exitcode)
                running[i] = _start(context, app, family, address, log_level)
    finally:
        for process, _ in running:
            if process.is_alive():
                process.terminate()
        for process, _ in running:
            process.join(GRACE_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if own_metrics_dir:
            shutil.rmtree(os.environ.pop("PROMETHEUS_MULTIPROC_DIR"), ignore_errors=True)
    return status


def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return family, (str(address[0]), int(address[1]))


def _check_free(family: socket.AddressFamily, address: tuple[str, int]) -> None:
    """Bind without SO_REUSEPORT: refused if anything listens there, another ``upah serve``
    included (whose reuse-port group the workers would otherwise silently join)."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise AddressInUse(f"cannot listen on {address[0]}:{address[1]}: {exc.strerror}") from exc


def _listening_socket(family: socket.AddressFamily, address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def _start(
    context: multiprocessing.context.SpawnContext,
    app: str,
    family: socket.AddressFamily,
    address: tuple[str, int],
    log_level: str,
) -> tuple[SpawnProcess, Event]:
    started = context.Event()
    process = context.Process(
        target=_worker, args=(app, family, address, log_level, started, os.getpid()), daemon=False
    )
    process.start()
    return process, started


class _Server(uvicorn.Server):
    """Tells the parent once it serves, so that a death before that stops the whole server;
    stops as uvicorn stops on SIGTERM should the parent die without stopping it (killed), so
    that no orphan keeps the address."""

    def __init__(self, config: uvicorn.Config, started: Event, parent: int) -> None:
        super().__init__(config)
        self._serving = started
        self._parent = parent  # given, not read here: a parent killed meanwhile reads as init

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._serving.set()
            threading.Thread(target=self._exit_with_parent, daemon=True).start()

    def _exit_with_parent(self) -> None:
        while os.getppid() == self._parent:
            time.sleep(PARENT_CHECK_SECONDS)
        self.should_exit = True


def _worker(
    app: str,
    family: socket.AddressFamily,
    address: tuple[str, int],
    log_level: str,
    started: Event,
    parent: int,
) -> None:
    sock = _listening_socket(family, address)
    config = uvicorn.Config(app, factory=True, log_level=log_level)
    _Server(config, started, parent).run(sockets=[sock])
