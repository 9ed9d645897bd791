"""``upah serve --workers N`` (upah.serving): processes with a listening socket each."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from upah.cli import app as cli
from upah.cli import public_url
from upah.migrate import upgrade
from upah.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(port: int, app: str = "tests.serving_app:create", workers: int = 2) -> subprocess.Popen[bytes]:
    code = (
        "import sys; from upah import serving; sys.exit(serving.serve("
        f"{app!r}, host='127.0.0.1', port={port}, workers={workers}, log_level='warning'))"
    )
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _pids_answering(port: int, connections: int = 24) -> set[int]:
    """The processes behind ``connections`` connections opened at once and each used once."""
    opened = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(connections)]
    try:
        for conn in opened:
            conn.connect()
        pids = set()
        for conn in opened:
            conn.request("GET", "/")
            pids.add(int(conn.getresponse().read()))
        return pids
    finally:
        for conn in opened:
            conn.close()


def _wait_until_serving(port: int, process: subprocess.Popen[bytes], workers: int = 2) -> set[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.communicate()[1].decode())
        try:
            pids = _pids_answering(port)
            if len(pids) == workers:
                return pids
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("the workers did not all answer")


@pytest.fixture
def server() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = _free_port()
    process = _serve(port)
    try:
        yield port, process
    finally:
        process.terminate()
        process.communicate(timeout=60)


def test_connections_opened_at_once_reach_every_worker(server: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, process = server
    pids = _wait_until_serving(port, process)
    assert len(pids) == 2
    assert process.pid not in pids


def test_a_worker_that_dies_is_replaced(server: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, process = server
    first, second = sorted(_wait_until_serving(port, process))
    os.kill(first, signal.SIGKILL)
    pids = _wait_until_serving(port, process)
    assert second in pids
    assert first not in pids


def test_workers_stop_when_the_server_is_killed(server: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, process = server
    pids = _wait_until_serving(port, process)
    process.kill()
    process.communicate(timeout=60)  # its pipe closes once every worker has gone too
    for pid in pids:
        _wait_gone(pid)


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} still runs")


def test_workers_stop_when_the_server_is_killed_while_they_start() -> None:
    process = _serve(_free_port(), app="tests.serving_app:slow")
    try:
        deadline = time.monotonic() + 30
        children: list[int] = []
        while len(children) < 2:  # the workers (and multiprocessing's resource tracker)
            assert time.monotonic() < deadline, "no workers were started"
            children = _children(process.pid)
            time.sleep(0.01)
        process.kill()
    finally:
        process.communicate(timeout=60)  # its pipe closes once every child has gone too
    for pid in children:
        _wait_gone(pid)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listed:
            return [int(child) for child in listed.read().split()]
    except OSError:
        return []


def test_sigterm_stops_every_worker_and_the_server(server: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, process = server
    pids = _wait_until_serving(port, process)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_an_app_that_cannot_start_stops_the_server_with_status_1() -> None:
    process = _serve(_free_port(), app="tests.serving_app:broken")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert b"could not start" in err


def test_an_address_already_listened_on_is_refused_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = _serve(taken.getsockname()[1])
        _, err = process.communicate(timeout=60)
        assert process.returncode == 1
        assert b"AddressInUse" in err


def test_more_than_one_worker_is_refused_on_the_embedded_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.setenv("UPAH_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers above 1 needs a broker" in result.output


@pytest.mark.postgres
def test_upah_serve_with_two_workers_answers_and_counts_every_workers_requests_in_metrics(
    pg_url: str, tmp_path: Path
) -> None:
    from ledger import chain
    from payments import pii

    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "UPAH_QUEUE": f"upah-test-serving-{os.getpid()}",
        "UPAH_SECRET_KEYS": pii.generate_key(),
        "UPAH_SIGNING_KEY": chain.generate_private_key_text(),
        "UPAH_SANDBOX_PROVIDER_URL": "http://127.0.0.1:9",
        "UPAH_SANDBOX_CALLBACK_SECRET": "test-serving-secret",
        "UPAH_DATA_DIR": str(tmp_path),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
        [sys.executable, "-m", "upah.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        answered = 0
        deadline = time.monotonic() + 60
        while answered < 40:
            assert time.monotonic() < deadline, "the API did not answer"
            if process.poll() is not None:
                raise AssertionError(process.communicate()[1].decode())
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/healthz")
                answered += conn.getresponse().status == 200
                conn.close()
            except OSError:
                time.sleep(0.2)
        counted = set()
        for _ in range(10):  # fresh connections: both workers answer some of these
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
            conn.close()
            line = next(
                line
                for line in text.splitlines()
                if line.startswith("upah_http_requests_total{") and 'route="/healthz"' in line
            )
            counted.add(float(line.rsplit(" ", 1)[1]))
        assert counted == {answered}
    finally:
        process.terminate()
        process.communicate(timeout=60)
    assert process.returncode == 0


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8123"),
        ("0.0.0.0", "http://127.0.0.1:8123"),  # noqa: S104 - the address a server is told to bind
        ("::", "http://[::1]:8123"),
        ("localhost", "http://localhost:8123"),
    ],
)
def test_the_public_url_is_where_this_machine_reaches_the_server(host: str, url: str) -> None:
    assert public_url(host, 8123) == url


def test_serve_on_another_port_tells_the_worker_and_providers_that_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without it the embedded worker sent payouts to the sandbox at :8000, where nothing listened."""
    import uvicorn

    seen: dict[str, str] = {}
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")  # no worker process to start here
    monkeypatch.setenv("UPAH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("UPAH_PUBLIC_URL", raising=False)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: seen.update(url=get_settings().upah_public_url))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve", "--port", "18765"])
        assert result.exit_code == 0, result.output
        assert seen["url"] == "http://127.0.0.1:18765"
        assert os.environ["UPAH_PUBLIC_URL"] == "http://127.0.0.1:18765"
    finally:
        os.environ.pop("UPAH_PUBLIC_URL", None)
        get_settings.cache_clear()


def test_serve_keeps_a_public_url_the_operator_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import uvicorn

    seen: dict[str, str] = {}
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("UPAH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UPAH_PUBLIC_URL", "https://upah.example.org")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: seen.update(url=get_settings().upah_public_url))
    get_settings.cache_clear()
    try:
        assert CliRunner().invoke(cli, ["serve", "--port", "18765"]).exit_code == 0
        assert seen["url"] == "https://upah.example.org"
    finally:
        get_settings.cache_clear()


def _served_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> tuple[TestClient, str]:
    """``serve_app`` as ``upah serve`` builds it from the environment, and its sandbox's address."""
    from api.main import serve_app
    from upah import bootstrap

    for name in ("REDIS_URL", "CELERY_BROKER_URL", "UPAH_SANDBOX_PROVIDER_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UPAH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'upah.db'}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    upgrade(get_settings().database_url)
    return TestClient(serve_app()), bootstrap.sandbox_url(get_settings())


def test_with_a_broker_serve_runs_the_api_alone_and_pays_through_the_standalone_sandbox(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client, sandbox = _served_app(monkeypatch, tmp_path, REDIS_URL="redis://127.0.0.1:6379/0")
    try:
        with client:
            assert client.get("/sandbox/v1/payouts").status_code == 404
        assert sandbox == "http://127.0.0.1:8100"
    finally:
        get_settings.cache_clear()


def test_on_the_embedded_default_serve_mounts_the_sandbox_and_pays_through_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client, sandbox = _served_app(monkeypatch, tmp_path)
    try:
        with client:
            assert client.get("/sandbox/v1/payouts").status_code == 200
        assert sandbox == "http://127.0.0.1:8000/sandbox"
    finally:
        get_settings.cache_clear()
