"""Prometheus metrics, one registry per app (so tests can build many apps)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "upah_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram("upah_http_request_seconds", "HTTP request latency", ["route"], registry=r)
        self.orders_posted = Counter("upah_orders_posted", "work orders posted", registry=r)
        self.deliveries_confirmed = Counter("upah_deliveries_confirmed", "deliveries confirmed", registry=r)
        self.pieces_accepted = Counter("upah_pieces_accepted", "pieces accepted", registry=r)
        self.pieces_rejected = Counter("upah_pieces_rejected", "pieces rejected", registry=r)
        self.earnings_posted = Counter(
            "upah_earnings_posted_rupiah", "earnings posted, in rupiah", registry=r
        )
        self.below_benchmark = Counter(
            "upah_orders_below_benchmark", "orders below the wage benchmark", registry=r
        )
        self.payout_runs = Counter("upah_payout_runs", "payout runs created", registry=r)
        self.domain_errors = Counter("upah_domain_errors", "refused requests by code", ["code"], registry=r)


class RequestMetrics:
    """ASGI middleware: count and time every request the application answers, by route template.

    Pure ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs
    the app in a task of its own and streams the response through memory channels, a cost
    every request paid. It sits innermost, just outside the router,
    so what it counts is what it always counted: answers the application gave (domain
    refusals included), not the 408s, 413s and idempotency replays the outer middleware give
    nor a request whose handler raised (the server's error handler answers that one).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, send_noting_status)
        if not status:  # the client left before an answer was started: nothing was answered
            return
        path = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests.labels(scope["method"], path, str(status)).inc()
        self.metrics.latency.labels(path).observe(time.perf_counter() - started)
