"""Liveness and metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from sqlalchemy import text

from api.deps import RuntimeDep

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz(rt: RuntimeDep) -> dict[str, str]:
    with rt.read() as session:
        session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get("/metrics", response_class=Response)
def metrics(rt: RuntimeDep) -> Response:
    """This process's counters; under ``upah serve --workers`` (which sets
    ``PROMETHEUS_MULTIPROC_DIR``) every worker's, summed, whichever worker is asked."""
    registry = rt.metrics.registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
