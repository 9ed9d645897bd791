"""Time limits on requests: a client gets a bounded time to send its request body.

Uvicorn closes idle keep-alive connections (``--timeout-keep-alive``, 5 s by default) but sets
no limit on how slowly a client may send a body, so a handful of clients trickling bytes could
hold every connection. ``BodyDeadline`` answers 408 ``request_timeout`` when the body has not
fully arrived within ``seconds`` of the request starting; nothing has run yet at that point,
so refusing is always safe. Handlers themselves are not cut off: a write stopped halfway from
the outside could be committed after its client was told it failed, so their time is bounded
where it is spent (provider calls have their own timeouts; the database's ``statement_timeout``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from api.errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_SECONDS = 30.0


class _BodyTooSlow(Exception):
    pass


class BodyDeadline:
    def __init__(self, app: ASGIApp, seconds: float = BODY_SECONDS) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = anyio.current_time() + self.seconds
        body_done = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            with anyio.move_on_after(max(deadline - anyio.current_time(), 0)) as waited:
                message = await receive()
            if waited.cancelled_caught:
                raise _BodyTooSlow
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except _BodyTooSlow:
            if started:
                raise
            body = json.dumps(
                error_body("request_timeout", f"the request body did not arrive within {self.seconds:g} s")
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 408,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
