"""Structured logs: one JSON object per line, and one line per HTTP request.

A request line holds the request id, method, route *template* (``/v1/orders/{order_id}``,
never the path as sent, never the query string), status and duration — and nothing a person
could be identified by: no phone numbers, names, API keys, cookies, headers or bodies. Every
other line logged while the request runs carries the same ``request_id`` (a context
variable; it follows the handler into the thread pool). The id comes from a well-formed
``X-Request-ID`` header or is made here, and is returned in ``X-Request-ID``.

As a second line of defence the formatter masks anything in a message or traceback that looks
like a phone number (Indonesian mobile or E.164) or an Upah API key, so a careless log call
cannot leak one. ``configure()`` installs the formatter on the root logger and on uvicorn's
loggers (whose access log, which prints raw paths, is replaced by this module's request line).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID: ContextVar[str | None] = ContextVar("upah_request_id", default=None)
REQUEST_ID_HEADER = "x-request-id"
REQUEST_LOGGER = "upah.requests"

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_REDACTIONS = (
    (re.compile(r"upah_[0-9a-f]{16}_[A-Za-z0-9_-]+"), "[api-key]"),
    (re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [redacted]"),
    (re.compile(r"(?<![\w.])(?:\+|00)?62[\s.-]?8[\d\s.-]{7,14}\d(?!\d)"), "[phone]"),
    (re.compile(r"(?<![\w.])08\d[\d\s.-]{6,13}\d(?!\d)"), "[phone]"),
    (re.compile(r"(?<![\w.])\+\d[\d\s.-]{7,16}\d(?!\d)"), "[phone]"),
    # PostgreSQL's detail of a refused row or key quotes the values: "Failing row contains (…)"
    (re.compile(r"(?m)^DETAIL:.*$"), "DETAIL: [redacted]"),
)

FIELDS = ("request_id", "event", "method", "route", "status", "duration_ms")
"""Extra fields a log call may set (``extra={...}``); anything else is dropped, not printed."""


def redact(text: str) -> str:
    """Mask phone numbers and API keys in free text."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, request id, known fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            doc["request_id"] = request_id
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None and name not in doc:
                doc[name] = value
        if record.exc_info:
            exc = record.exc_info[1]
            doc["exc_type"] = type(exc).__name__ if exc is not None else None
            doc["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure(level: int | str = logging.INFO, stream: TextIO | None = None) -> None:
    """JSON lines on stderr for the root logger and uvicorn's loggers (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    for old in list(access.handlers):
        access.removeHandler(old)
    access.propagate = False
    access.disabled = True


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class RequestLog:
    """ASGI middleware: a request id for every request, and one log line when it is answered."""

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.log = logger or logging.getLogger(REQUEST_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = incoming if _VALID_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers") or [] if k.lower() != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
            level = logging.ERROR if status >= 500 else logging.INFO
            self.log.log(
                level,
                "%s %s %s %.1fms",
                scope["method"],
                _route_of(scope),
                status,
                duration_ms,
                extra={
                    "request_id": request_id,
                    "event": "http_request",
                    "method": scope["method"],
                    "route": _route_of(scope),
                    "status": status,
                    "duration_ms": duration_ms,
                },
            )
            REQUEST_ID.reset(token)
