"""What the published schema says that routes alone do not: every POST takes an Idempotency-Key
(a middleware reads it, not a route parameter)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "the same key with the same body returns the first response; "
    "with a different body, 409 idempotency_conflict",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}


def with_idempotency_keys(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi``, with the Idempotency-Key header on every POST operation."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = app.openapi_schema
        if schema is None:  # the first time: generated (and kept by FastAPI), then completed
            schema = generate()
            for operations in schema["paths"].values():
                if "post" in operations:
                    operations["post"].setdefault("parameters", []).append(IDEMPOTENCY_KEY)
        return schema

    return openapi
