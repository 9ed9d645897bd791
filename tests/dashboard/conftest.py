"""The dashboard against the real app and PostgreSQL: in-process for page rules, and served by
uvicorn on a loopback port to a real headless Chromium (Debian's package, driven by Playwright)
for the end-to-end story. A missing browser fails the run; it never skips."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Playwright, sync_playwright

from api.main import create_app
from tests.api.conftest import admin, api_settings, buyer, client, other_buyer  # noqa: F401 - shared fixtures
from upah.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


class LiveApp:
    """The real app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, make: Callable[[str], FastAPI]) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.app = make(self.url)
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="on", ws="none", http="h11", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> LiveApp:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the app did not start under uvicorn")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Per module: Playwright's sync API keeps an event loop running in this thread while it is
    open, which would break any later test that runs one of its own (asyncio.run, anyio.run)."""
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium; if it is missing or cannot start, every browser test fails (never skips)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (scripts/test does)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def seeding_client(settings: Settings) -> TestClient:
    """An in-process client on the same database and keys as the app under test."""
    return TestClient(create_app(settings), raise_server_exceptions=False)


def sign_in(web: TestClient, key: str) -> None:
    """Sign an in-process client in through the form, as a browser would."""
    web.cookies.clear()
    assert web.get("/login").status_code == 200
    r = web.post("/login", data={"key": key, "csrf": web.cookies.get("upah_csrf") or ""})
    assert r.status_code == 200, r.text
    assert "upah_session" in web.cookies


def csrf(web: TestClient) -> str:
    return web.cookies.get("upah_csrf") or ""


def flash(html: str) -> list[str]:
    return [m.strip() for m in re.findall(r'class="flash[^"]*"[^>]*>([^<]*)<', html)]


def form_post(web: TestClient, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
    return web.post(path, data={"csrf": csrf(web), **data}, **kwargs)
