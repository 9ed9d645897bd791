"""Replays that must not stand in for new money, and inputs both databases refuse alike."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ledger import AccountType, atomic, journal
from ledger.errors import IdempotencyConflict, InsufficientFunds, InvalidEntry
from ledger.holds import HoldStatus
from tests.factories import fund, make_account, ref, transfer


def _funded(factory: sessionmaker[Session], amount: int = 100) -> tuple[int, int]:
    with atomic(factory) as s:
        a = make_account(s, type=AccountType.LIABILITY, no_overdraft=True)
        b = make_account(s, type=AccountType.LIABILITY)
        fund(s, a, amount)
        return a.id, b.id


def test_a_pending_hold_is_not_captured_by_an_entry_another_hold_already_posted(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _funded(factory)
    with atomic(factory) as s:
        first = journal.place_hold(s, key=ref("h"), account_id=a, amount=30, now=now).id
        second = journal.place_hold(s, key=ref("h"), account_id=a, amount=30, now=now).id
    draft = transfer(a, b, 30)
    with atomic(factory) as s:
        journal.capture_hold(s, hold_id=first, draft=draft, now=now)
    with pytest.raises(IdempotencyConflict), atomic(factory) as s:
        journal.capture_hold(s, hold_id=second, draft=draft, now=now)
    with factory() as s:
        assert journal.get_hold(s, second).status is HoldStatus.PENDING
        assert journal.balance(s, a).posted == 70
        assert journal.balance(s, a).held == 30


def test_capturing_a_captured_hold_again_with_its_own_draft_still_replays(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _funded(factory)
    with atomic(factory) as s:
        hold = journal.place_hold(s, key=ref("h"), account_id=a, amount=30, now=now).id
    draft = transfer(a, b, 30)
    with atomic(factory) as s:
        entry = journal.capture_hold(s, hold_id=hold, draft=draft, now=now)
    with atomic(factory) as s:
        assert journal.capture_hold(s, hold_id=hold, draft=draft, now=now).id == entry.id


def test_a_batch_reusing_a_refused_key_with_other_content_is_a_conflict(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _funded(factory)
    key = ref("k")
    with pytest.raises(InsufficientFunds), atomic(factory) as s:
        journal.post(s, transfer(a, b, 150, key=key), now=now)
    with pytest.raises(IdempotencyConflict), atomic(factory) as s:
        journal.post_many(s, [transfer(a, b, 5, key=key)], now=now)


def test_a_batch_repeating_a_refused_draft_is_refused_the_same_way(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _funded(factory)
    draft = transfer(a, b, 150)
    with pytest.raises(InsufficientFunds), atomic(factory) as s:
        journal.post(s, draft, now=now)
    with pytest.raises(InsufficientFunds), atomic(factory) as s:
        journal.post_many(s, [draft], now=now)


@pytest.mark.parametrize("number", [float("nan"), float("inf")])
def test_metadata_that_is_not_json_is_refused_before_the_database(
    factory: sessionmaker[Session], now: datetime, number: float
) -> None:
    a, b = _funded(factory)
    with pytest.raises(InvalidEntry), atomic(factory) as s:
        journal.post(s, transfer(a, b, 1, metadata={"rate": number}), now=now)


def test_a_naive_posting_time_is_refused_on_both_databases(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _funded(factory)
    naive = now.replace(tzinfo=None)
    with pytest.raises(InvalidEntry), atomic(factory) as s:
        journal.post(s, transfer(a, b, 1), now=naive)
    with pytest.raises(InvalidEntry), atomic(factory) as s:
        journal.post_many(s, [transfer(a, b, 1)], now=naive)
