"""A payout the provider said it paid after we had failed it, settled by an admin from the
provider's statement (``payments.conflicts``), on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ledger import atomic, journal, reports
from ledger.holds import HoldStatus
from payments import conflicts, parties, payouts
from payments.dispatch import Dispatcher
from payments.errors import Forbidden, InvalidState, ValidationFailed
from payments.payout_states import PayoutStatus
from payments.tables import OutboxRow, PayoutRow
from tests.payments.scenario import (
    Buyer,
    admin,
    callback_body,
    deliver_callback,
    earned,
    failed_then_paid,
    key_of,
    make_worker,
    run,
    signed,
)


def conflicted(factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer) -> tuple[int, int]:
    """(her id, a payout of Rp 50,000 failed, then said by the provider to be paid)."""
    worker = make_worker(factory, buyer)
    payout = failed_then_paid(factory, dispatcher, buyer, worker)
    body = callback_body(payout.id, key_of(factory, payout.id), "succeeded", 50_000, f"evt-ok-{payout.id}")
    headers, raw = signed(body)
    assert deliver_callback(dispatcher, "sandbox", headers=headers, body=raw) == "conflict"
    return worker, payout.id


def settle(
    factory: sessionmaker[Session], payout_id: int, *, paid: bool, who: parties.Principal | None = None
) -> payouts.Payout:
    with atomic(factory) as s:
        return conflicts.resolve(
            s,
            principal=who or admin(),
            payout_id=payout_id,
            provider_paid=paid,
            reason="provider statement of 2026-12-01, line 14",
            now=datetime.now(UTC),
        )


def test_a_conflict_settled_as_paid_records_her_payout_once_and_charges_the_buyer_the_fee(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer
) -> None:
    worker, payout_id = conflicted(pg_factory, dispatcher, buyer)
    with pg_factory() as s:
        fee = s.execute(select(PayoutRow.fee).where(PayoutRow.id == payout_id)).scalar_one()
        account = parties.get_organization(
            s, principal=admin(), organization_id=buyer.principal.organization_id
        )
        before = journal.balance(s, account.available_account_id).posted
    settled = settle(pg_factory, payout_id, paid=True)
    assert settled.status is PayoutStatus.SUCCEEDED and settled.failure_code is None
    assert earned(pg_factory, buyer, worker) == 0
    assert run(pg_factory, buyer).count == 0  # paid once: nothing is owed to her again
    with pg_factory() as s:
        hold = journal.find_hold_by_key(s, f"payout:{payout_id}:conflict")
        assert hold is not None and hold.status is HoldStatus.CAPTURED
        assert before - journal.balance(s, account.available_account_id).posted == fee > 0
        notices = s.execute(select(OutboxRow.payload).where(OutboxRow.topic == "sms.send")).scalars()
        assert {"kind": "payout_succeeded", "payout_id": payout_id} in list(notices)
        assert reports.check_integrity(s) == []


def test_a_conflict_settled_as_not_paid_releases_her_earnings_to_the_next_run(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer
) -> None:
    worker, payout_id = conflicted(pg_factory, dispatcher, buyer)
    assert settle(pg_factory, payout_id, paid=False).status is PayoutStatus.FAILED
    assert earned(pg_factory, buyer, worker) == 50_000
    next_run = run(pg_factory, buyer)
    assert [(p.homeworker_id, p.amount) for p in next_run.payouts] == [(worker, 50_000)]
    with pg_factory() as s:
        assert reports.check_integrity(s) == []


def test_a_conflict_is_settled_once(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer
) -> None:
    _, payout_id = conflicted(pg_factory, dispatcher, buyer)
    settle(pg_factory, payout_id, paid=True)
    with pytest.raises(InvalidState):
        settle(pg_factory, payout_id, paid=False)


def test_a_failed_payout_with_no_conflict_cannot_be_settled(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer
) -> None:
    payout = failed_then_paid(pg_factory, dispatcher, buyer, make_worker(pg_factory, buyer))
    with pytest.raises(InvalidState):
        settle(pg_factory, payout.id, paid=True)


def test_only_an_admin_settles_a_conflict_and_says_why(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer
) -> None:
    _, payout_id = conflicted(pg_factory, dispatcher, buyer)
    with pytest.raises(Forbidden):
        settle(pg_factory, payout_id, paid=False, who=buyer.principal)
    with pytest.raises(ValidationFailed), atomic(pg_factory) as s:
        conflicts.resolve(
            s, principal=admin(), payout_id=payout_id, provider_paid=False, reason="  ", now=datetime.now(UTC)
        )
    with pg_factory() as s:
        hold = journal.find_hold_by_key(s, f"payout:{payout_id}:conflict")
        assert hold is not None and hold.status is HoldStatus.PENDING


@pytest.mark.parametrize("paid", [True, False])
def test_a_payout_shows_what_its_conflict_holds_until_an_admin_settles_it(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer, paid: bool
) -> None:
    _, payout_id = conflicted(pg_factory, dispatcher, buyer)
    with pg_factory() as s:
        seen = payouts.get(s, principal=buyer.principal, payout_id=payout_id)
        listed = {p.id: p for p in payouts.list_for(s, principal=buyer.principal, status=PayoutStatus.FAILED)}
        [in_run] = payouts.get_run(s, principal=buyer.principal, run_id=seen.run_id).payouts
    assert seen.status is PayoutStatus.FAILED
    assert seen.conflict_held == listed[payout_id].conflict_held == in_run.conflict_held == 50_000
    settle(pg_factory, payout_id, paid=paid)
    with pg_factory() as s:
        assert payouts.get(s, principal=buyer.principal, payout_id=payout_id).conflict_held is None


def test_a_payout_without_a_conflict_holds_nothing(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    payout = failed_then_paid(pg_factory, dispatcher, buyer, worker)  # failed; no word of payment yet
    with pg_factory() as s:
        assert payouts.get(s, principal=buyer.principal, payout_id=payout.id).conflict_held is None
