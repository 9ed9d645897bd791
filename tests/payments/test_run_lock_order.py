"""A run locks the ledger accounts it holds money on in the ledger's one order (by id), as
every posting does: otherwise it deadlocks with an advance or a recovery for the same buyer."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ledger.tables import AccountRow
from payments import parties, payouts
from tests.payments.scenario import earn, make_buyer, make_worker, run


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
    with pg_factory() as s:
        org = parties.get_organization(
            s, principal=buyer.principal, organization_id=buyer.principal.organization_id or 0
        )
        [earned] = parties.earnings_accounts(s, homeworker_id=worker).values()
    assert org.available_account_id is not None and org.available_account_id < earned
    accounts = AccountRow.__table__
    made: list[payouts.PayoutRun] = []
    with pg_factory() as blocker:
        blocker.execute(
            select(accounts.c.id).where(accounts.c.id == org.available_account_id).with_for_update()
        )
        creating = threading.Thread(target=lambda: made.append(run(pg_factory, buyer)))
        creating.start()
        deadline = time.monotonic() + 30
        while not _waiting_on_a_lock(pg_factory):
            assert time.monotonic() < deadline, "the run never waited for the buyer's account"
            time.sleep(0.02)
        with pg_factory() as probe:
            try:  # an advance would take her account next: it must be free
                probe.execute(
                    select(accounts.c.id).where(accounts.c.id == earned).with_for_update(nowait=True)
                )
            except OperationalError as exc:
                raise AssertionError("the run locked her earnings before the buyer's account") from exc
            finally:
                probe.rollback()
        blocker.rollback()
    creating.join(timeout=30)
    assert [p.amount for p in made[0].payouts] == [50_000]
