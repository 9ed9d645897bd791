"""The HTTP API: ``create_app(settings)`` builds it; nothing is built at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api import dashboard, deps, errors
from api import logging as app_logging
from api.deps import Kick, Runtime
from api.metrics import Metrics, RequestMetrics
from api.middleware import BodyLimit, Idempotency
from api.openapi import with_idempotency_keys
from api.routes import audit, gateway, homeworkers, orders, organizations, payouts, system
from api.schemas import ErrorBody
from api.timeouts import BodyDeadline
from ledger import chain
from payments import reconciliation
from upah import bootstrap
from upah.settings import Settings, get_settings

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": ErrorBody,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        "description": description,
    }
    for status, description in (
        (400, "the body cannot be read (not JSON, not a form)"),
        (401, "no API key, or an unknown or revoked one"),
        (403, "this key's role may not do this"),
        (404, "not found, or another organisation's"),
        (408, "the request body did not arrive in time"),
        (409, "conflict: state, funds, duplicate, or an Idempotency-Key reused with another body"),
        (413, "the request body is over 1 MB (a statement upload: over 64 MiB)"),
        (422, "validation_error: the request is not valid"),
        (429, "rate limited"),
    )
}
"""Every operation may answer these, always as ``{"error": {code, message, details}}``."""

MULTIPART_SLACK = 64 * 1024
"""Room for the form's other fields and boundaries around a statement of the largest size read."""


def serve_app() -> FastAPI:
    """The app as ``upah serve`` runs it: with the queue, and on the embedded default with the
    sandbox provider mounted under /sandbox (unless UPAH_SANDBOX_PROVIDER_URL names another).
    With a broker (REDIS_URL) it is the API alone, as CONTRACT.md says."""
    settings = get_settings()
    app_logging.configure()
    embedded_sandbox = settings.is_embedded and settings.upah_sandbox_provider_url is None
    return create_app(settings, kick=bootstrap.kick(settings), mount_sandbox=embedded_sandbox)


def create_app(
    settings: Settings | None = None, *, kick: Kick | None = None, mount_sandbox: bool = False
) -> FastAPI:
    settings = settings or get_settings()
    db = bootstrap.database(settings)
    keys = bootstrap.keys(settings)
    rt = Runtime(
        settings=settings,
        sessions=db.sessions,
        keyring=keys.keyring,
        metrics=Metrics(),
        run_policy=bootstrap.run_policy(settings),
        dispatcher=bootstrap.dispatcher(settings, db, keys),
        kick=kick,
        limiter=bootstrap.limiter(settings),
        signing_public_key=chain.public_key_pem(keys.signing_key),
    )

    sandbox = bootstrap.embedded_sandbox(settings, keys) if mount_sandbox else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if sandbox is not None:
            sandbox.close()
        db.engine.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="Upah",
        version="1.0.0",
        description="Piece-rate payments for homeworkers: work orders, a double-entry ledger, "
        "mobile-money payouts, USSD/SMS self-service and audit. Money is a string of digits in the "
        "currency's minor unit; rates are decimal strings. Every POST accepts an Idempotency-Key.",
        responses=ERROR_RESPONSES,
    )
    app.openapi = with_idempotency_keys(app)  # type: ignore[method-assign]
    app.state.runtime = rt
    errors.install(app)
    for router in (
        organizations.router,
        homeworkers.router,
        orders.router,
        payouts.router,
        gateway.router,
        audit.router,
        system.router,
        dashboard.router,
    ):
        app.include_router(router)

    app.add_middleware(RequestMetrics, metrics=rt.metrics)
    if sandbox is not None:
        app.mount(bootstrap.EMBEDDED_SANDBOX_PATH, sandbox.app)
    app.add_middleware(
        Idempotency,
        sessions=lambda: rt.sessions,
        keyring=lambda: rt.keyring,
        authenticate=lambda header: deps.authenticate(rt, header),
        exempt=(bootstrap.EMBEDDED_SANDBOX_PATH + "/",) if sandbox is not None else (),
    )
    statement_upload = reconciliation.MAX_STATEMENT_BYTES + MULTIPART_SLACK
    app.add_middleware(
        BodyLimit, larger={"/v1/reconciliations": statement_upload, "/reconciliations": statement_upload}
    )
    app.add_middleware(BodyDeadline)
    app.add_middleware(app_logging.RequestLog)
    return app
