"""Every failure leaves as ``{"error": {"code", "message", "details"}}`` with its status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import (
    AccountNotFound,
    AccountNotOpen,
    AlreadyReversed,
    ConcurrencyExhausted,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidEntry,
    LedgerError,
)
from payments.errors import (
    DuplicateReference,
    Forbidden,
    InvalidState,
    NotFound,
    OverDelivery,
    PaymentsError,
    Unauthorized,
    ValidationFailed,
)
from payments.rates import InvalidCount, InvalidRate
from payments.wages import UnknownRegion

log = logging.getLogger(__name__)

PAYMENTS_STATUS: dict[type[PaymentsError], int] = {
    NotFound: 404,
    Forbidden: 403,
    Unauthorized: 401,
    ValidationFailed: 422,
    InvalidState: 409,
    OverDelivery: 409,
    DuplicateReference: 409,
}

LEDGER_STATUS: dict[type[LedgerError], int] = {
    InsufficientFunds: 409,
    IdempotencyConflict: 409,
    AlreadyReversed: 409,
    AccountNotOpen: 409,
    AccountNotFound: 404,
    InvalidEntry: 422,
    ConcurrencyExhausted: 503,
}

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _status_for(exc: Exception, table: dict[Any, int], default: int) -> int:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return default


def install(app: FastAPI) -> None:
    @app.exception_handler(PaymentsError)
    async def _payments(_: Request, exc: PaymentsError) -> JSONResponse:
        return error_response(
            _status_for(exc, PAYMENTS_STATUS, 400), exc.code, exc.message, _safe(exc.details)
        )

    @app.exception_handler(LedgerError)
    async def _ledger(_: Request, exc: LedgerError) -> JSONResponse:
        details = {k: v for k, v in exc.details.items() if k not in ("content", "key")}
        return error_response(_status_for(exc, LEDGER_STATUS, 409), exc.code, exc.message, _safe(details))

    @app.exception_handler(InvalidRate)
    async def _rate(_: Request, exc: InvalidRate) -> JSONResponse:
        return error_response(422, "validation_error", str(exc), {"code": exc.code})

    @app.exception_handler(InvalidCount)
    async def _count(_: Request, exc: InvalidCount) -> JSONResponse:
        return error_response(422, "validation_error", str(exc), {"code": exc.code})

    @app.exception_handler(UnknownRegion)
    async def _region(_: Request, exc: UnknownRegion) -> JSONResponse:
        return error_response(422, "validation_error", str(exc), {"field": "region"})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
                "problem": err.get("msg", ""),
            }
            for err in exc.errors()
        ]
        first = problems[0] if problems else {"field": "", "problem": "invalid request"}
        message = f"{first['field']}: {first['problem']}" if first["field"] else first["problem"]
        return error_response(422, "validation_error", message, {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if not unstorable(exc):
            return await _unexpected(request, exc)
        log.warning("a request's value cannot be stored: %s", type(exc.orig).__name__)
        return error_response(
            422,
            "validation_error",
            "a value is out of range: a number or a balance beyond what the ledger can hold, "
            "or text with a NUL character; nothing was changed",
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error: %s", type(exc).__name__)
        return error_response(500, "internal_error", "something went wrong on our side; nothing was changed")


UNSTORABLE_SQLSTATES = frozenset({"22003", "22021", "22P05"})
"""numeric_value_out_of_range, character_not_in_repertoire, untranslatable_character."""
SQLITE_BALANCE_REFUSAL = "a ledger balance would leave the 64-bit integer range"
"""The message of migration 0011's SQLite trigger."""


def unstorable(exc: DBAPIError) -> bool:
    """A value the database refuses to store — the request's input (an amount that takes a
    balance beyond 64 bits, a NUL in text), not a failure of ours; the transaction rolled back."""
    if getattr(exc.orig, "sqlstate", None) in UNSTORABLE_SQLSTATES:
        return True
    if isinstance(exc, DataError) and getattr(exc.orig, "sqlstate", None) is None:
        return True  # psycopg refuses a NUL in text before sending it
    return SQLITE_BALANCE_REFUSAL in str(exc.orig)


def _safe(details: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
        for k, v in details.items()
    }
