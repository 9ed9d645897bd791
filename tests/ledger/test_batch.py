"""Batched posting (``post_many``) keeps every rule of ``post``, on real SQLite and PostgreSQL.

PostgreSQL posts a batch set-based in one function call; SQLite goes through the Python
path. Both must accept, replay and refuse exactly the same batches, and a refused batch
writes nothing.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ledger import AccountStatus, AccountType, EntryDraft, Posting, atomic, journal, reports
from ledger.errors import (
    AccountNotFound,
    AccountNotOpen,
    CurrencyMismatch,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidEntry,
)
from tests.factories import fund, make_account, ref, transfer

L = AccountType.LIABILITY


def _accounts(
    factory: sessionmaker[Session], n: int, *, funded: int = 0, no_overdraft: bool = True
) -> list[int]:
    with atomic(factory) as s:
        accounts = [make_account(s, type=L, no_overdraft=no_overdraft) for _ in range(n)]
        for a in accounts:
            if funded:
                fund(s, a, funded)
    return [a.id for a in accounts]


def _balances(factory: sessionmaker[Session], ids: list[int]) -> list[int]:
    with factory() as s:
        return [journal.balance(s, i).posted for i in ids]


def test_a_batch_posts_every_entry_and_materialises_the_balances(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b, c = _accounts(factory, 3, funded=100)
    drafts = [transfer(a, b, 10), transfer(b, c, 25), transfer(c, a, 5), transfer(a, c, 1)]
    with atomic(factory) as s:
        ids = journal.post_many(s, drafts, now=now)
    assert len(set(ids)) == 4
    assert _balances(factory, [a, b, c]) == [100 - 10 + 5 - 1, 100 + 10 - 25, 100 + 25 - 5 + 1]
    with factory() as s:
        entries = [journal.get_entry(s, i) for i in ids]
        assert [e.key for e in entries] == [d.key for d in drafts]
        assert [e.postings for e in entries] == [d.postings for d in drafts]
        assert reports.check_integrity(s) == []


def test_posting_the_same_batch_again_replays_it_and_writes_nothing(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _accounts(factory, 2, funded=100)
    drafts = [transfer(a, b, 10), transfer(a, b, 20)]
    with atomic(factory) as s:
        first = journal.post_many(s, drafts, now=now)
    with atomic(factory) as s:
        again = journal.post_many(s, drafts, now=now)
    assert again == first
    assert _balances(factory, [a, b]) == [70, 130]


def test_a_batch_partly_posted_before_posts_only_the_rest(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _accounts(factory, 2, funded=100)
    drafts = [transfer(a, b, 1), transfer(a, b, 2), transfer(a, b, 4), transfer(a, b, 8)]
    with atomic(factory) as s:
        second = journal.post(s, drafts[1], now=now).id
        fourth = journal.post(s, drafts[3], now=now).id
    with atomic(factory) as s:
        ids = journal.post_many(s, drafts, now=now)
    assert ids[1] == second and ids[3] == fourth
    assert len(set(ids)) == 4
    assert _balances(factory, [a, b]) == [85, 115]
    with factory() as s:
        assert [journal.get_entry(s, i).key for i in ids] == [d.key for d in drafts]


def test_a_key_reused_with_other_content_refuses_the_whole_batch(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _accounts(factory, 2, funded=100)
    key = ref()
    with atomic(factory) as s:
        journal.post(s, transfer(a, b, 10, key=key), now=now)
    with pytest.raises(IdempotencyConflict) as caught, atomic(factory) as s:
        journal.post_many(s, [transfer(a, b, 3), transfer(a, b, 11, key=key)], now=now)
    assert caught.value.details["field"] == "postings"
    assert _balances(factory, [a, b]) == [90, 110]


def test_a_batch_may_not_repeat_a_key(factory: sessionmaker[Session], now: datetime) -> None:
    a, b = _accounts(factory, 2, funded=100)
    draft = transfer(a, b, 10)
    with pytest.raises(InvalidEntry), atomic(factory) as s:
        journal.post_many(s, [draft, draft], now=now)


def test_overdraft_is_checked_entry_by_entry_with_the_earlier_entries_applied(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _accounts(factory, 2, funded=100)
    # a may spend 150 in total only because the first entry gives it 60 before it is spent
    with atomic(factory) as s:
        journal.post_many(s, [transfer(b, a, 60), transfer(a, b, 150)], now=now)
    assert _balances(factory, [a, b]) == [10, 190]


def test_a_batch_that_overdraws_is_refused_whole_and_writes_nothing(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _accounts(factory, 2, funded=100)
    drafts = [transfer(a, b, 60), transfer(b, a, 1), transfer(a, b, 50), transfer(b, a, 500)]
    with pytest.raises(InsufficientFunds) as caught, atomic(factory) as s:
        journal.post_many(s, drafts, now=now)
    assert caught.value.details["account_id"] == a
    assert caught.value.details["available"] == "41"
    assert _balances(factory, [a, b]) == [100, 100]
    with factory() as s:
        assert all(journal.find_entry_by_key(s, d.key) is None for d in drafts)


def test_a_batch_naming_an_unknown_account_is_refused(factory: sessionmaker[Session], now: datetime) -> None:
    a, b = _accounts(factory, 2, funded=100)
    with pytest.raises(AccountNotFound) as caught, atomic(factory) as s:
        journal.post_many(s, [transfer(a, b, 1), transfer(a, 10**12, 1)], now=now)
    assert caught.value.details["account_id"] == 10**12
    assert _balances(factory, [a, b]) == [100, 100]


def test_a_batch_touching_a_frozen_account_is_refused(factory: sessionmaker[Session], now: datetime) -> None:
    a, b, c = _accounts(factory, 3, funded=100)
    with atomic(factory) as s:
        journal.set_account_status(s, account_id=c, status=AccountStatus.FROZEN)
    with pytest.raises(AccountNotOpen) as caught, atomic(factory) as s:
        journal.post_many(s, [transfer(a, b, 1), transfer(b, c, 1)], now=now)
    assert caught.value.details == {"account_id": c, "status": "frozen"}
    assert _balances(factory, [a, b, c]) == [100, 100, 100]


def test_a_batch_in_a_currency_an_account_does_not_hold_is_refused(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _accounts(factory, 2, funded=100)
    with atomic(factory) as s:
        k1, k2 = (make_account(s, type=L, currency="KES").id for _ in range(2))
    with pytest.raises(CurrencyMismatch), atomic(factory) as s:
        journal.post_many(s, [transfer(a, b, 1), transfer(k1, k2, 1, currency="IDR")], now=now)
    assert _balances(factory, [a, b]) == [100, 100]


def test_the_first_problem_in_batch_order_is_the_one_reported(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b, c = _accounts(factory, 3, funded=100)
    with atomic(factory) as s:
        journal.set_account_status(s, account_id=c, status=AccountStatus.FROZEN)
    # the second entry overdraws before the third touches the frozen account
    with pytest.raises(InsufficientFunds), atomic(factory) as s:
        journal.post_many(s, [transfer(a, b, 1), transfer(a, b, 500), transfer(b, c, 1)], now=now)
    # and the other way round
    with pytest.raises(AccountNotOpen), atomic(factory) as s:
        journal.post_many(s, [transfer(a, b, 1), transfer(b, c, 1), transfer(a, b, 500)], now=now)


def test_a_key_refused_for_lack_of_funds_is_refused_in_a_batch_too(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _accounts(factory, 2, funded=100)
    refused = transfer(a, b, 150)
    with pytest.raises(InsufficientFunds), atomic(factory) as s:
        journal.post(s, refused, now=now)
    with pytest.raises(InsufficientFunds) as caught, atomic(factory) as s:
        journal.post_many(s, [transfer(a, b, 1), refused], now=now)
    assert caught.value.details.get("replayed") is True
    assert _balances(factory, [a, b]) == [100, 100]


def test_an_entry_netting_two_postings_on_one_account_is_checked_on_the_net(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _accounts(factory, 2, funded=100)
    # a: -150 and +60 in one entry, 90 net: within its 100
    draft = EntryDraft(
        ref(),
        (
            Posting.debit(a, 150, "IDR"),
            Posting.credit(a, 60, "IDR"),
            Posting.credit(b, 90, "IDR"),
        ),
        now,
    )
    with atomic(factory) as s:
        journal.post(s, draft, now=now)
    assert _balances(factory, [a, b]) == [10, 190]
    # a: -70 and +50, 20 net: more than its 10, alone or in a batch
    too_much = (Posting.debit(a, 70, "IDR"), Posting.credit(a, 50, "IDR"), Posting.credit(b, 20, "IDR"))
    with pytest.raises(InsufficientFunds) as alone, atomic(factory) as s:
        journal.post(s, EntryDraft(ref(), too_much, now), now=now)
    with pytest.raises(InsufficientFunds) as batched, atomic(factory) as s:
        journal.post_many(s, [EntryDraft(ref(), too_much, now)], now=now)
    assert alone.value.details["available"] == batched.value.details["available"] == "10"
    assert _balances(factory, [a, b]) == [10, 190]
