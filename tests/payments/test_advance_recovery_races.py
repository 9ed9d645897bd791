"""Her confirmations and advances with one buyer, raced: an advance (kasbon) is recovered
once, and her first confirmations open her earnings account once, however they interleave.

Each race is staged the same way on the real PostgreSQL server: one transaction is left
open holding its locks, a second starts in a thread, and the first commits only after the
second has had time to read whatever it would read without waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from ledger import atomic
from payments import adjustments, deliveries
from tests.payments.scenario import Buyer, deliver, make_buyer, make_worker

pytestmark = pytest.mark.postgres

ADVANCE = 1_000
HEAD_START_SECONDS = 1.0


def test_confirmations_on_two_orders_at_once_recover_one_advance_once(
    pg_factory: sessionmaker[Session],
) -> None:
    buyer, worker = _worker_with_advance(pg_factory)
    first = deliver(pg_factory, buyer, worker, 2_000)
    second = deliver(pg_factory, buyer, worker, 2_000)

    _while_open(pg_factory, lambda s: _confirm(s, buyer, first), then=lambda s: _confirm(s, buyer, second))

    assert _recovered(pg_factory, worker) == ADVANCE
    assert _outstanding(pg_factory, buyer, worker) == 0


def test_her_next_delivery_is_paid_after_confirmations_raced(pg_factory: sessionmaker[Session]) -> None:
    buyer, worker = _worker_with_advance(pg_factory)
    first = deliver(pg_factory, buyer, worker, 2_000)
    second = deliver(pg_factory, buyer, worker, 2_000)
    third = deliver(pg_factory, buyer, worker, 10)
    _while_open(pg_factory, lambda s: _confirm(s, buyer, first), then=lambda s: _confirm(s, buyer, second))

    with atomic(pg_factory) as s:
        paid = _confirm(s, buyer, third)

    assert paid.earning == 10
    assert paid.recovered == 0


def test_an_advance_paid_during_a_confirmation_is_left_for_her_next_earning(
    pg_factory: sessionmaker[Session],
) -> None:
    buyer, worker = _worker_with_advance(pg_factory)
    first = deliver(pg_factory, buyer, worker, 2_000)
    second = deliver(pg_factory, buyer, worker, 4_000)

    _while_open(pg_factory, lambda s: _confirm(s, buyer, first), then=lambda s: _advance(s, buyer, worker))
    assert _outstanding(pg_factory, buyer, worker) == ADVANCE

    with atomic(pg_factory) as s:
        assert _confirm(s, buyer, second).recovered == ADVANCE
    assert _outstanding(pg_factory, buyer, worker) == 0


def test_a_confirmation_waits_for_an_advance_being_paid_and_recovers_it(
    pg_factory: sessionmaker[Session],
) -> None:
    buyer, worker = _worker_with_advance(pg_factory)
    first = deliver(pg_factory, buyer, worker, 2_000)
    second = deliver(pg_factory, buyer, worker, 2_000)
    with atomic(pg_factory) as s:
        _confirm(s, buyer, first)

    _while_open(pg_factory, lambda s: _advance(s, buyer, worker), then=lambda s: _confirm(s, buyer, second))

    assert _recovered(pg_factory, worker) == 2 * ADVANCE
    assert _outstanding(pg_factory, buyer, worker) == 0


def _while_open(
    factory: sessionmaker[Session], hold: Callable[[Session], object], *, then: Callable[[Session], object]
) -> None:
    """Run ``then`` in its own transaction while ``hold`` sits uncommitted, and prove it waited."""
    holder = factory()
    hold(holder)
    errors: list[BaseException] = []
    done = threading.Event()

    def other() -> None:
        try:
            with atomic(factory) as s:
                then(s)
        except BaseException as exc:  # reported on the test's thread
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        waited = not done.wait(HEAD_START_SECONDS)
        holder.commit()
    finally:
        holder.close()
        thread.join(30)
    assert not errors, errors
    assert waited, "the second transaction did not wait for the first one's lock"


def _worker_with_advance(factory: sessionmaker[Session]) -> tuple[Buyer, int]:
    buyer = make_buyer(factory)
    worker = make_worker(factory, buyer)
    with atomic(factory) as s:
        _advance(s, buyer, worker)
    return buyer, worker


def test_her_first_two_confirmations_with_a_buyer_at_once_both_succeed(
    pg_factory: sessionmaker[Session],
) -> None:
    buyer = make_buyer(pg_factory)
    worker = make_worker(pg_factory, buyer)
    first = deliver(pg_factory, buyer, worker, 10)
    second = deliver(pg_factory, buyer, worker, 20)

    _while_open(pg_factory, lambda s: _confirm(s, buyer, first), then=lambda s: _confirm(s, buyer, second))

    with pg_factory() as s:
        assert {
            d: deliveries.get(s, principal=buyer.principal, delivery_id=d).earning for d in (first, second)
        } == {
            first: 10,
            second: 20,
        }


def _advance(session: Session, buyer: Buyer, worker: int) -> None:
    adjustments.add(
        session,
        principal=buyer.principal,
        homeworker_id=worker,
        kind=adjustments.AdjustmentKind.ADVANCE,
        amount=ADVANCE,
        memo="kasbon",
        now=datetime.now(UTC),
    )


def _confirm(session: Session, buyer: Buyer, delivery_id: int) -> deliveries.Delivery:
    pieces = deliveries.get(session, principal=buyer.principal, delivery_id=delivery_id).pieces
    return deliveries.confirm(
        session,
        principal=buyer.principal,
        delivery_id=delivery_id,
        accepted=pieces,
        rejected=0,
        reason=None,
        now=datetime.now(UTC),
    )


def _recovered(factory: sessionmaker[Session], worker: int) -> int:
    with factory() as s:
        return int(
            s.execute(
                text(
                    "SELECT coalesce(sum(amount), 0) FROM adjustments"
                    " WHERE homeworker_id = :w AND kind = 'recovery'"
                ),
                {"w": worker},
            ).scalar_one()
        )


def _outstanding(factory: sessionmaker[Session], buyer: Buyer, worker: int) -> int:
    assert buyer.principal.organization_id is not None
    with factory() as s:
        return adjustments.outstanding_advance(
            s, homeworker_id=worker, buyer_id=buyer.principal.organization_id
        )
