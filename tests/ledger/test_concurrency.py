"""Concurrency on real PostgreSQL: hot accounts, one key raced, exact overdraft bounds."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from ledger import AccountType, journal, reports, retrying
from ledger.errors import InsufficientFunds
from tests.factories import fund, make_account, ref, transfer

pytestmark = pytest.mark.postgres


def _post(
    factory: sessionmaker[Session], source: int, target: int, amount: int, key: str | None = None
) -> int:
    return retrying(
        factory,
        lambda s: journal.post(s, transfer(source, target, amount, key=key), now=datetime.now(UTC)).id,
    )


def test_eight_threads_of_transfers_between_hot_accounts_never_overdraw(
    pg_factory: sessionmaker[Session],
) -> None:
    with pg_factory() as s, s.begin():
        accounts = [make_account(s, type=AccountType.LIABILITY, no_overdraft=True) for _ in range(5)]
        for a in accounts:
            fund(s, a, 1_000)
    ids = [a.id for a in accounts]
    successes: list[tuple[int, int, int]] = []
    unexpected: list[BaseException] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(250):
            src, dst = rng.sample(ids, 2)
            amount = rng.randint(1, 400)
            try:
                _post(pg_factory, src, dst, amount)
            except InsufficientFunds:
                continue
            except BaseException as exc:
                with lock:
                    unexpected.append(exc)
                continue
            with lock:
                successes.append((src, dst, amount))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    assert unexpected == []
    expected = Counter(dict.fromkeys(ids, 1000))
    for src, dst, amount in successes:
        expected[src] -= amount
        expected[dst] += amount
    with pg_factory() as s:
        balances = {i: journal.balance(s, i).posted for i in ids}
        assert reports.check_integrity(s) == []
    assert balances == dict(expected)
    assert min(balances.values()) >= 0


def test_twenty_threads_posting_one_key_make_exactly_one_entry(pg_factory: sessionmaker[Session]) -> None:
    with pg_factory() as s, s.begin():
        a, b = make_account(s, type=AccountType.LIABILITY), make_account(s, type=AccountType.LIABILITY)
        fund(s, a, 1_000)
    key = ref("race")
    draft = transfer(a.id, b.id, 10, key=key)
    barrier = threading.Barrier(20)

    def worker(_: int) -> int:
        barrier.wait()
        return retrying(pg_factory, lambda s: journal.post(s, draft, now=datetime.now(UTC)).id)

    with ThreadPoolExecutor(20) as pool:
        ids = set(pool.map(worker, range(20)))
    assert len(ids) == 1
    with pg_factory() as s:
        assert journal.balance(s, b.id).posted == 10


@pytest.mark.parametrize(("balance", "amount"), [(1_000, 70), (999, 333)])
def test_parallel_debits_succeed_exactly_floor_of_balance_over_amount_times(
    pg_factory: sessionmaker[Session], balance: int, amount: int
) -> None:
    with pg_factory() as s, s.begin():
        a, b = (
            make_account(s, type=AccountType.LIABILITY, no_overdraft=True),
            make_account(s, type=AccountType.LIABILITY),
        )
        fund(s, a, balance)

    def worker(_: int) -> bool:
        try:
            _post(pg_factory, a.id, b.id, amount)
        except InsufficientFunds:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(balance // amount + 10)))
    assert results.count(True) == balance // amount
    with pg_factory() as s:
        assert journal.balance(s, a.id).posted == balance % amount


def test_the_hold_sweeper_and_a_void_of_an_expired_hold_never_deadlock(
    pg_factory: sessionmaker[Session],
) -> None:
    now = datetime.now(UTC)
    with pg_factory() as s, s.begin():
        account = make_account(s, type=AccountType.LIABILITY, no_overdraft=True)
        fund(s, account, 1_000)
        first, second = (
            journal.place_hold(s, key=ref(), account_id=account.id, amount=100, now=now, expires_at=now)
            for _ in range(2)
        )
    voider_has_the_hold = threading.Event()
    errors: list[BaseException] = []

    def void_the_second() -> None:  # a void takes its hold, then (a moment later) the account
        try:
            with pg_factory() as s, s.begin():
                s.execute(text("SELECT id FROM ledger_holds WHERE id = :id FOR UPDATE"), {"id": second.id})
                voider_has_the_hold.set()
                time.sleep(0.5)  # the sweeper runs meanwhile
                journal.void_hold(s, hold_id=second.id, now=now)
        except BaseException as exc:
            errors.append(exc)

    voider = threading.Thread(target=void_the_second)
    voider.start()
    assert voider_has_the_hold.wait(5)
    with pg_factory() as s, s.begin():
        expired = journal.expire_holds(s, now=now)
    voider.join(10)
    assert errors == []
    assert expired == 1  # the first; the second was the void's to resolve
    with pg_factory() as s:
        assert journal.get_hold(s, first.id).status.value == "expired"
        assert journal.get_hold(s, second.id).status.value == "voided"
        assert reports.check_integrity(s) == []
