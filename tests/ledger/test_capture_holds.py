"""Capturing many holds at once (``capture_holds``) does what ``capture_hold`` does for each,
on real SQLite and PostgreSQL: the same entries, balances and holds, all or nothing."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ledger import AccountType, EntryDraft, atomic, journal, reports
from ledger.errors import HoldExpired, HoldNotFound, HoldNotPending, IdempotencyConflict, InvalidEntry
from ledger.holds import HoldStatus
from tests.factories import fund, make_account, ref, transfer

L = AccountType.LIABILITY


def _earners(factory: sessionmaker[Session], n: int) -> tuple[list[int], int]:
    """``n`` funded no-overdraft accounts and one account they pay into."""
    with atomic(factory) as s:
        earners = [make_account(s, type=L, no_overdraft=True) for _ in range(n)]
        for account in earners:
            fund(s, account, 1_000)
        return [a.id for a in earners], make_account(s, type=L).id


def _holds(factory: sessionmaker[Session], accounts: list[int], amount: int, now: datetime) -> list[int]:
    with atomic(factory) as s:
        return [
            journal.place_hold(s, key=ref("h"), account_id=a, amount=amount, now=now).id for a in accounts
        ]


def _state(factory: sessionmaker[Session], accounts: list[int], holds: list[int]) -> list[tuple[object, ...]]:
    with factory() as s:
        balances = [(b.posted, b.held, b.available) for b in (journal.balance(s, a) for a in accounts)]
        held = [(h.status, h.captured_amount) for h in (journal.get_hold(s, i) for i in holds)]
        return [*balances, *held]


def test_capturing_holds_together_leaves_what_capturing_them_one_by_one_leaves(
    factory: sessionmaker[Session], now: datetime
) -> None:
    results = []
    for together in (False, True):
        earners, into = _earners(factory, 3)
        holds = _holds(factory, earners, 400, now)
        drafts = [transfer(a, into, amount) for a, amount in zip(earners, (400, 250, 1), strict=True)]
        with atomic(factory) as s:
            if together:
                ids = journal.capture_holds(s, list(zip(holds, drafts, strict=True)), now=now)
            else:
                ids = [
                    journal.capture_hold(s, hold_id=h, draft=d, now=now).id
                    for h, d in zip(holds, drafts, strict=True)
                ]
        with factory() as s:
            assert [journal.get_entry(s, i).key for i in ids] == [d.key for d in drafts]
            assert [journal.get_hold(s, h).entry_id for h in holds] == ids
            assert reports.check_integrity(s) == []
        results.append(_state(factory, [*earners, into], holds))
    one_by_one, together_ = results
    assert together_ == one_by_one
    assert together_[:4] == [(600, 0, 600), (750, 0, 750), (999, 0, 999), (651, 0, 651)]
    assert together_[4:] == [(HoldStatus.CAPTURED, 400), (HoldStatus.CAPTURED, 250), (HoldStatus.CAPTURED, 1)]


def test_two_holds_on_one_account_are_both_released_by_their_captures(
    factory: sessionmaker[Session], now: datetime
) -> None:
    [earner], into = _earners(factory, 1)
    holds = _holds(factory, [earner, earner], 300, now)
    with atomic(factory) as s:
        journal.capture_holds(s, [(h, transfer(earner, into, 100)) for h in holds], now=now)
    with factory() as s:
        balance = journal.balance(s, earner)
        assert (balance.posted, balance.held, balance.available) == (800, 0, 800)


def test_capturing_the_same_holds_again_with_their_drafts_replays_them(
    factory: sessionmaker[Session], now: datetime
) -> None:
    earners, into = _earners(factory, 2)
    holds = _holds(factory, earners, 100, now)
    captures = [(h, transfer(a, into, 100)) for h, a in zip(holds, earners, strict=True)]
    with atomic(factory) as s:
        first = journal.capture_holds(s, captures, now=now)
    with atomic(factory) as s:
        assert journal.capture_holds(s, captures, now=now) == first
    with factory() as s:
        assert [journal.balance(s, a).posted for a in earners] == [900, 900]


def test_a_batch_with_a_voided_hold_is_refused_and_captures_none(
    factory: sessionmaker[Session], now: datetime
) -> None:
    earners, into = _earners(factory, 2)
    holds = _holds(factory, earners, 100, now)
    with atomic(factory) as s:
        journal.void_hold(s, hold_id=holds[1], now=now)
    captures = [(h, transfer(a, into, 100)) for h, a in zip(holds, earners, strict=True)]
    with pytest.raises(HoldNotPending), atomic(factory) as s:
        journal.capture_holds(s, captures, now=now)
    with factory() as s:
        assert journal.get_hold(s, holds[0]).status is HoldStatus.PENDING
        assert [journal.balance(s, a).posted for a in earners] == [1_000, 1_000]


def test_a_batch_taking_more_than_one_of_its_holds_is_refused_whole(
    factory: sessionmaker[Session], now: datetime
) -> None:
    earners, into = _earners(factory, 2)
    holds = _holds(factory, earners, 100, now)
    captures = [(holds[0], transfer(earners[0], into, 100)), (holds[1], transfer(earners[1], into, 101))]
    with pytest.raises(InvalidEntry, match="capture must take"), atomic(factory) as s:
        journal.capture_holds(s, captures, now=now)
    with factory() as s:
        assert [journal.balance(s, a).held for a in earners] == [100, 100]
        assert journal.get_hold(s, holds[0]).status is HoldStatus.PENDING


def test_a_pending_hold_is_not_captured_by_a_key_another_entry_already_has(
    factory: sessionmaker[Session], now: datetime
) -> None:
    earners, into = _earners(factory, 2)
    first, second = _holds(factory, earners[:1] * 2, 30, now)
    draft = transfer(earners[0], into, 30)
    with atomic(factory) as s:
        journal.capture_hold(s, hold_id=first, draft=draft, now=now)
    with pytest.raises(IdempotencyConflict), atomic(factory) as s:
        journal.capture_holds(s, [(second, draft)], now=now)
    with factory() as s:
        assert journal.get_hold(s, second).status is HoldStatus.PENDING


def test_an_expired_hold_in_a_batch_is_refused(factory: sessionmaker[Session], now: datetime) -> None:
    earners, into = _earners(factory, 1)
    with atomic(factory) as s:
        hold = journal.place_hold(
            s, key=ref("h"), account_id=earners[0], amount=100, now=now, expires_at=now + timedelta(minutes=1)
        ).id
    with pytest.raises(HoldExpired), atomic(factory) as s:
        journal.capture_holds(s, [(hold, transfer(earners[0], into, 50))], now=now + timedelta(minutes=2))


def test_a_batch_naming_a_hold_twice_or_a_missing_hold_is_refused(
    factory: sessionmaker[Session], now: datetime
) -> None:
    earners, into = _earners(factory, 1)
    [hold] = _holds(factory, earners, 100, now)
    draft: EntryDraft = transfer(earners[0], into, 10)
    with pytest.raises(InvalidEntry, match="twice"), atomic(factory) as s:
        journal.capture_holds(s, [(hold, draft), (hold, transfer(earners[0], into, 10))], now=now)
    with pytest.raises(HoldNotFound), atomic(factory) as s:
        journal.capture_holds(s, [(hold, draft), (10**12, transfer(earners[0], into, 10))], now=now)
