"""Tiny ASGI apps for tests/test_serving.py: which process answered, or a factory that fails."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]


def create() -> Callable[..., Awaitable[None]]:
    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        body = str(os.getpid()).encode()
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def broken() -> Callable[..., Awaitable[None]]:
    raise RuntimeError("this app cannot be built")


def slow() -> Callable[..., Awaitable[None]]:
    """An app that takes a while to build, as a real one loading its configuration does."""
    time.sleep(2)
    return create()
