"""Rates read back as they were quoted ("500", "1250.5"), never in exponent form (CONTRACT.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ledger import atomic
from payments import deliveries, orders, rates, statements
from tests.payments.scenario import KEYRING, Buyer, make_buyer, make_worker


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (Decimal("500.0000"), "500"),
        (Decimal("5E+2"), "500"),
        (Decimal("1250.5000"), "1250.5"),
        (Decimal("12.1234"), "12.1234"),
        (Decimal("0.0500"), "0.05"),
        (Decimal("0.0000"), "0"),
        (Decimal("1000000"), "1000000"),
    ],
)
def test_a_decimal_is_written_plain_without_trailing_zeros(value: Decimal, written: str) -> None:
    assert rates.plain(value) == written


def test_an_order_read_back_keeps_a_whole_rate_as_quoted(factory: sessionmaker[Session]) -> None:
    buyer = make_buyer(factory)
    worker = make_worker(factory, buyer)
    order_id = _order(factory, buyer, worker, rate=Decimal("500"))

    with factory() as s:
        order = orders.get(s, principal=buyer.principal, order_id=order_id)

    assert str(order.rate) == "500"


def test_the_payslip_shows_a_whole_rate_as_quoted(factory: sessionmaker[Session]) -> None:
    buyer = make_buyer(factory)
    worker = make_worker(factory, buyer)
    _order(factory, buyer, worker, rate=Decimal("500"), confirm=True)

    with factory() as s:
        slip = statements.payslip(
            s, principal=buyer.principal, keyring=KEYRING, homeworker_id=worker, start=None, end=None
        )

    assert str(slip.orders[0].rate) == "500"
    assert "rate 500 per piece" in statements.render_text(slip)


def _order(
    factory: sessionmaker[Session], buyer: Buyer, worker: int, *, rate: Decimal, confirm: bool = False
) -> int:
    now = datetime.now(UTC)
    with atomic(factory) as s:
        order = orders.post(
            s,
            principal=buyer.principal,
            reference=uuid.uuid4().hex[:12],
            product="test work",
            rate=rate,
            unit=rates.Unit.PIECE,
            minutes_per_piece=Decimal("0.01"),
            quantity=10,
            deadline=(now + timedelta(days=7)).date(),
            region="ID-JK",
            intermediary_id=None,
            commission=None,
            assignments=[orders.AssignmentRequest(worker, 10)],
            policy=rates.FairRatePolicy.OFF,
            now=now,
        )
        if confirm:
            delivery = deliveries.record(
                s, principal=buyer.principal, order_id=order.id, homeworker_id=worker, pieces=10, now=now
            )
            deliveries.confirm(
                s,
                principal=buyer.principal,
                delivery_id=delivery.id,
                accepted=10,
                rejected=0,
                reason=None,
                now=now,
            )
        return order.id
