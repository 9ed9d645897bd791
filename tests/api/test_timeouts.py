"""A client gets a bounded time to send its request body; a slow one is refused before anything runs."""

from __future__ import annotations

import json
from typing import Any

import anyio

from api.middleware import BodyLimit
from api.timeouts import BodyDeadline


async def _exchange(wrap: Any, chunks: list[tuple[float, bytes, bool]]) -> tuple[int, dict[str, Any], bool]:
    """Send a POST whose body arrives in ``chunks`` (delay, bytes, more); return status, body, ran."""
    sent: list[dict[str, Any]] = []
    ran = False
    queue = list(chunks)

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        nonlocal ran
        ran = True
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        if not queue:
            await anyio.sleep(3600)
        delay, body, more = queue.pop(0)
        await anyio.sleep(delay)
        return {"type": "http.request", "body": body, "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/orders", "headers": []}
    with anyio.fail_after(5):
        await wrap(handler)(scope, receive, send)
    status = sent[0]["status"]
    body = json.loads(sent[1]["body"]) if sent[1]["body"] else {}
    return status, body, ran


def test_a_body_that_trickles_in_too_slowly_is_refused_with_408_and_nothing_runs() -> None:
    async def scenario() -> tuple[int, dict[str, Any], bool]:
        return await _exchange(
            lambda handler: BodyDeadline(BodyLimit(handler), seconds=0.2),
            [(0.0, b'{"a":', True), (0.5, b"1}", False)],
        )

    status, body, ran = anyio.run(scenario)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert not ran


def test_a_body_that_arrives_in_time_is_handled() -> None:
    async def scenario() -> tuple[int, dict[str, Any], bool]:
        return await _exchange(
            lambda handler: BodyDeadline(BodyLimit(handler), seconds=1.0),
            [(0.0, b'{"a":', True), (0.05, b"1}", False)],
        )

    status, _, ran = anyio.run(scenario)
    assert status == 204 and ran
