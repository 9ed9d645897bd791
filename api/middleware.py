"""ASGI middleware: request size limits, and Idempotency-Key replay for every POST.

The idempotency record is written before the handler runs (so a concurrent duplicate is
refused rather than executed twice) and completed with the response after it; a 5xx
answer deletes it so that the client can retry. Records are scoped to the caller's API key
as authentication reads it (so ``Bearer K`` and ``bearer  K`` are one caller), and only a
caller that authenticates is remembered or answered from the records: a revoked key gets
401, not the stored reply. A multipart body is compared without its random boundary, so an
upload sent again is the same request.
The stored body is sealed with the personal-data keyring (``payments.idempotency``); one
that can no longer be opened (its key retired) is answered 409 ``idempotency_conflict``
with ``details.reason = "stored_response_unreadable"`` and no data, and the request is not
run again: the first one was.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

from anyio import to_thread
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.errors import error_body
from ledger.tables import table_of
from payments import idempotency, pii
from payments.errors import Unauthorized
from payments.parties import Principal
from payments.tables import IdempotencyRow

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
_records = table_of(IdempotencyRow)


async def _reply(send: Send, status: int, body: bytes, content_type: str = "application/json") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    return json.dumps(error_body(code, message, details)).encode()


def _too_large(limit: int) -> bytes:
    return _error(413, "payload_too_large", f"request bodies are limited to {limit} bytes")


class BodyLimit:
    """Refuse bodies over 1 MB with 413, whether announced or streamed.

    Paths in ``larger`` (statement uploads: a provider's month is megabytes) have their own limit.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY, larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default = limit
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.default)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _reply(send, 413, _too_large(limit))
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
            if size > limit:
                await _reply(send, 413, _too_large(limit))
                return
        body = b"".join(chunks)
        scope.setdefault("state", {})["raw_body"] = body
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class Idempotency:
    """Replay the first response to a POST with the same Idempotency-Key and body.

    ``sessions`` and ``keyring`` are read per request (from the app's runtime), the keyring
    to seal the stored body and open it for a replay.
    """

    def __init__(
        self,
        app: ASGIApp,
        sessions: Callable[[], sessionmaker[Session]],
        keyring: Callable[[], pii.Keyring],
        authenticate: Callable[[str], Awaitable[Principal]],
        exempt: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.keyring = keyring
        self.authenticate = authenticate
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        headers = _first_headers(scope)
        key = headers.get(b"idempotency-key")
        if key is None:
            await self.app(scope, receive, send)
            return
        key_text = key.decode("latin-1").strip()
        if not key_text or len(key_text) > 200:
            await _reply(
                send, 422, _error(422, "validation_error", "Idempotency-Key must be 1 to 200 characters")
            )
            return
        try:
            caller = await self.authenticate(headers.get(b"authorization", b"").decode("latin-1"))
        except Unauthorized:  # the endpoint answers 401; nothing is remembered for an unknown caller
            await self.app(scope, receive, send)
            return
        principal = f"key:{caller.key_id}"
        body = _comparable(scope.get("state", {}).get("raw_body", b""), headers.get(b"content-type", b""))
        request_hash = hashlib.sha256(
            scope["method"].encode() + b" " + scope["path"].encode() + b"\n" + body
        ).hexdigest()
        factory, keyring = self.sessions(), self.keyring()
        outcome = await to_thread.run_sync(_claim, factory, keyring, principal, key_text, request_hash)
        if outcome is not None:
            status, content_type, stored = outcome
            await _reply(send, status, stored, content_type)
            return
        captured: dict[str, Any] = {"body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["content_type"] = (
                    dict(message.get("headers") or []).get(b"content-type", b"").decode()
                )
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            await to_thread.run_sync(_complete, factory, keyring, principal, key_text, captured)


def _first_headers(scope: Scope) -> dict[bytes, bytes]:
    """Request headers by lower-case name, the first of repeated ones (as Starlette reads them)."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or []:
        headers.setdefault(name.lower(), value)
    return headers


def _comparable(body: bytes, content_type: bytes) -> bytes:
    """The body as compared between requests: a JSON body as its value (a retry serialised
    again, with other spacing or key order, is the same request), and a multipart body with
    its boundary (random for each request a client makes) replaced by a fixed one."""
    kind, _, params = content_type.partition(b";")
    kind = kind.strip().lower()
    if kind == b"application/json":
        try:
            value = json.loads(body)
            return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        except (ValueError, RecursionError):  # not JSON the endpoint takes: compared as sent
            return body
    if kind != b"multipart/form-data":
        return body
    for param in params.split(b";"):
        name, _, value = param.strip().partition(b"=")
        if name.lower() == b"boundary" and value.strip(b'"'):
            return body.replace(b"--" + value.strip(b'"'), b"--upah-boundary")
    return body


def _claim(
    factory: sessionmaker[Session], keyring: pii.Keyring, principal: str, key: str, request_hash: str
) -> tuple[int, str, bytes] | None:
    """Reserve the key, or return the stored response (or a conflict) to send instead."""
    with factory() as s:
        try:
            with s.begin():
                s.execute(
                    insert(_records),
                    {
                        "principal": principal,
                        "key": key,
                        "request_hash": request_hash,
                        "created_at": datetime.now(UTC),
                    },
                )
            return None
        except IntegrityError:
            pass
        row = s.execute(
            select(_records).where(_records.c.principal == principal, _records.c.key == key)
        ).first()
    if row is None:
        return (
            409,
            "application/json",
            _error(409, "idempotency_conflict", "retry: the earlier request just finished"),
        )
    if row.request_hash != request_hash:
        return (
            409,
            "application/json",
            _error(409, "idempotency_conflict", "this Idempotency-Key was used with a different request"),
        )
    if row.status_code is None:
        return (
            409,
            "application/json",
            _error(
                409, "idempotency_conflict", "a request with this Idempotency-Key is still being processed"
            ),
        )
    try:
        body = idempotency.unseal(keyring, row.body or b"")
    except pii.DecryptionFailed as exc:
        # The request ran once already: never run it again, and say nothing of what it answered.
        log.error("idempotency: a stored response cannot be opened, replay refused: %s", exc)
        return (
            409,
            "application/json",
            _error(
                409,
                "idempotency_conflict",
                "this Idempotency-Key was already used, and its response can no longer be replayed; "
                "look the result up instead of sending the request again",
                {"reason": "stored_response_unreadable"},
            ),
        )
    return row.status_code, row.content_type or "application/json", body


def _complete(
    factory: sessionmaker[Session], keyring: pii.Keyring, principal: str, key: str, captured: dict[str, Any]
) -> None:
    where = (_records.c.principal == principal) & (_records.c.key == key)
    with factory() as s, s.begin():
        status = captured.get("status")
        if status is None or status >= 500:
            s.execute(delete(_records).where(where))
        else:
            s.execute(
                update(_records)
                .where(where)
                .values(
                    status_code=status,
                    content_type=captured.get("content_type"),
                    body=idempotency.seal(keyring, captured["body"]),
                )
            )
