"""Payout work takes the ledger accounts it touches in the ledger's one order (by id), as
every posting does: creating a run, rejecting one and returning a failed payout's money each
touch the buyer's account and hers, and taken the other way round they deadlocked with an
advance, an allowance or one another."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from integrations.providers.base import TransferResult, TransferStatus
from ledger import atomic
from ledger.tables import AccountRow
from payments import parties, payouts
from payments.dispatch import Dispatcher
from payments.payout_states import PayoutStatus
from tests.payments.scenario import Buyer, earn, make_buyer, make_worker, run


def _waiting_on_a_lock(factory: sessionmaker[Session]) -> bool:
    with factory() as s:
        waiting = s.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)


def test_a_run_waiting_for_the_buyers_account_holds_no_lock_on_her_earnings(
    pg_factory: sessionmaker[Session],
) -> None:
    buyer = make_buyer(pg_factory)
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 50_000)
    buyers, earned = _buyer_and_her_accounts(pg_factory, buyer, worker)
    made: list[payouts.PayoutRun] = []
    _her_account_is_free_while(pg_factory, buyers, earned, lambda: made.append(run(pg_factory, buyer)))
    assert [p.amount for p in made[0].payouts] == [50_000]


def _buyer_and_her_accounts(factory: sessionmaker[Session], buyer: Buyer, worker: int) -> tuple[int, int]:
    with factory() as s:
        org = parties.get_organization(
            s, principal=buyer.principal, organization_id=buyer.principal.organization_id or 0
        )
        [earned] = parties.earnings_accounts(s, homeworker_id=worker).values()
    assert org.available_account_id is not None and org.available_account_id < earned
    return org.available_account_id, earned


def _her_account_is_free_while(
    factory: sessionmaker[Session], buyers: int, earned: int, work: Callable[[], object]
) -> None:
    """Run ``work`` in a thread while the buyer's account is locked; once it waits for that lock,
    her account must not be locked by it (it would take hers first, against the ledger's order)."""
    accounts = AccountRow.__table__
    with factory() as blocker:
        blocker.execute(select(accounts.c.id).where(accounts.c.id == buyers).with_for_update())
        worker = threading.Thread(target=work)
        worker.start()
        deadline = time.monotonic() + 30
        while not _waiting_on_a_lock(factory):
            assert time.monotonic() < deadline, "the work never waited for the buyer's account"
            time.sleep(0.02)
        with factory() as probe:
            try:
                probe.execute(
                    select(accounts.c.id).where(accounts.c.id == earned).with_for_update(nowait=True)
                )
            except OperationalError as exc:
                raise AssertionError("her account was locked before the buyer's") from exc
            finally:
                probe.rollback()
        blocker.rollback()
    worker.join(timeout=30)


def test_rejecting_a_run_takes_the_buyers_account_before_hers(pg_factory: sessionmaker[Session]) -> None:
    buyer = make_buyer(pg_factory)
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 50_000)
    strict = payouts.RunPolicy(
        provider="sandbox", minimum_payout=1_000, approval_threshold=10_000, fee_per_payout=2_500
    )
    waiting = run(pg_factory, buyer, strict)
    buyers, earned = _buyer_and_her_accounts(pg_factory, buyer, worker)

    def reject() -> None:
        with atomic(pg_factory) as s:
            payouts.reject_run(s, principal=buyer.checker, run_id=waiting.id, now=datetime.now(UTC))

    _her_account_is_free_while(pg_factory, buyers, earned, reject)
    with pg_factory() as s:
        assert payouts.get_run(s, principal=buyer.principal, run_id=waiting.id).status.value == "rejected"


def test_a_failure_returning_her_money_takes_the_buyers_account_before_hers(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher
) -> None:
    buyer = make_buyer(pg_factory)
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 50_000)
    payout = run(pg_factory, buyer).payouts[0]
    assert dispatcher.dispatch(payout.id) is PayoutStatus.SUBMITTED
    buyers, earned = _buyer_and_her_accounts(pg_factory, buyer, worker)
    failed = TransferResult(TransferStatus.FAILED, None, "invalid_account", raw_status="failed")
    _her_account_is_free_while(
        pg_factory, buyers, earned, lambda: dispatcher._apply(payout.id, failed, source="callback")
    )
    with pg_factory() as s:
        assert payouts.get(s, principal=buyer.principal, payout_id=payout.id).status is PayoutStatus.FAILED
