"""Prometheus metrics, one registry per app (so tests can build many apps)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


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
