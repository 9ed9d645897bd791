"""The ledger's rules, on real SQLite and real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ledger import AccountStatus, AccountType, EntryDraft, Posting, atomic, journal, reports
from ledger.errors import (
    AccountNotFound,
    AccountNotOpen,
    AlreadyReversed,
    AmountOutOfRange,
    CurrencyMismatch,
    HoldExpired,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientFunds,
    UnbalancedEntry,
)
from tests.factories import fund, make_account, ref, transfer

L = AccountType.LIABILITY


def entry_count(session: Session) -> int:
    return len(reports.trial_balance(session).lines)


def test_posting_moves_money_and_materialises_both_balances(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
        fund(s, a, 1000)
        journal.post(s, transfer(a.id, b.id, 300), now=now)
    with factory() as s:
        assert journal.balance(s, a.id).posted == 700
        assert journal.balance(s, b.id).posted == 300
        assert reports.check_integrity(s) == []


def test_same_key_same_content_returns_the_original_and_writes_nothing(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
        fund(s, a, 1000)
        draft = transfer(a.id, b.id, 300)
        first = journal.post(s, draft, now=now)
        again = journal.post(s, draft, now=now + timedelta(seconds=5))
    assert again.id == first.id
    with factory() as s:
        assert journal.balance(s, b.id).posted == 300


def test_same_key_different_amount_is_a_conflict_naming_the_field(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
        fund(s, a, 1000)
        key = ref()
        journal.post(s, transfer(a.id, b.id, 300, key=key), now=now)
    with pytest.raises(IdempotencyConflict) as caught, atomic(factory) as s:
        journal.post(s, transfer(a.id, b.id, 301, key=key), now=now)
    assert caught.value.details["field"] == "postings"


def test_same_key_different_metadata_is_a_conflict_naming_metadata(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
        fund(s, a, 1000)
        draft = transfer(a.id, b.id, 300, metadata={"order": 1})
        journal.post(s, draft, now=now)
    changed = EntryDraft(draft.key, draft.postings, draft.effective_at, draft.description, {"order": 2})
    with pytest.raises(IdempotencyConflict) as caught, atomic(factory) as s:
        journal.post(s, changed, now=now)
    assert caught.value.details["field"] == "metadata"


def test_overdraft_of_a_no_overdraft_account_is_refused_and_writes_nothing(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L, no_overdraft=True), make_account(s, type=L)
        fund(s, a, 100)
    with pytest.raises(InsufficientFunds), atomic(factory) as s:
        journal.post(s, transfer(a.id, b.id, 101), now=now)
    with factory() as s:
        assert journal.balance(s, a.id).posted == 100
        assert journal.balance(s, b.id).posted == 0


def test_a_key_refused_for_lack_of_funds_keeps_being_refused(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L, no_overdraft=True), make_account(s, type=L)
        fund(s, a, 100)
    draft = transfer(a.id, b.id, 150)
    with pytest.raises(InsufficientFunds), atomic(factory) as s:
        journal.post(s, draft, now=now)
    with atomic(factory) as s:
        fund(s, a, 1000)
    with pytest.raises(InsufficientFunds), atomic(factory) as s:
        journal.post(s, draft, now=now)
    with factory() as s:
        assert journal.balance(s, b.id).posted == 0


def test_unbalanced_entry_is_refused_before_anything_is_written(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
    draft = EntryDraft(ref(), (Posting(a.id, 100, "IDR"), Posting(b.id, -99, "IDR")), now)
    with pytest.raises(UnbalancedEntry), atomic(factory) as s:
        journal.post(s, draft, now=now)
    with factory() as s:
        assert journal.find_entry_by_key(s, draft.key) is None


@pytest.mark.parametrize("amount", [0, -5, 2**63])
def test_zero_negative_and_beyond_int64_amounts_are_refused(amount: int, now: datetime) -> None:
    with pytest.raises((AmountOutOfRange, UnbalancedEntry)):
        Posting.debit(1, amount, "IDR")


def test_posting_in_a_currency_the_account_does_not_hold_is_refused(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L, currency="KES"), make_account(s, type=L, currency="KES")
    with pytest.raises(CurrencyMismatch), atomic(factory) as s:
        journal.post(s, transfer(a.id, b.id, 10, currency="IDR"), now=now)


def test_posting_to_an_unknown_account_is_refused(factory: sessionmaker[Session], now: datetime) -> None:
    with atomic(factory) as s:
        a = make_account(s, type=L)
    with pytest.raises(AccountNotFound), atomic(factory) as s:
        journal.post(s, transfer(a.id, 10**12, 10), now=now)


@pytest.mark.parametrize("status", [AccountStatus.FROZEN, AccountStatus.CLOSED])
def test_posting_to_a_frozen_or_closed_account_fails(
    factory: sessionmaker[Session], now: datetime, status: AccountStatus
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
        fund(s, a, 50)
        journal.set_account_status(s, account_id=b.id, status=status)
    with pytest.raises(AccountNotOpen) as caught, atomic(factory) as s:
        journal.post(s, transfer(a.id, b.id, 10), now=now)
    assert caught.value.code == "account_closed"


def test_reversal_mirrors_the_entry_and_links_to_it(factory: sessionmaker[Session], now: datetime) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
        fund(s, a, 500)
        original = journal.post(s, transfer(a.id, b.id, 200), now=now)
        reversal = journal.reverse(s, entry_id=original.id, key=ref(), reason="wrong homeworker", now=now)
    assert reversal.reverses_id == original.id
    assert sorted(p.amount for p in reversal.postings) == sorted(-p.amount for p in original.postings)
    with factory() as s:
        assert journal.balance(s, a.id).posted == 500
        assert journal.balance(s, b.id).posted == 0


def test_an_entry_is_reversed_at_most_once(factory: sessionmaker[Session], now: datetime) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
        fund(s, a, 500)
        original = journal.post(s, transfer(a.id, b.id, 200), now=now)
        journal.reverse(s, entry_id=original.id, key=ref(), reason="mistake", now=now)
    with pytest.raises(AlreadyReversed), atomic(factory) as s:
        journal.reverse(s, entry_id=original.id, key=ref(), reason="again", now=now)


def test_a_reversal_retried_later_with_its_key_returns_the_first(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
        fund(s, a, 500)
        original = journal.post(s, transfer(a.id, b.id, 200), now=now)
    key = ref()
    with atomic(factory) as s:
        first = journal.reverse(s, entry_id=original.id, key=key, reason="mistake", now=now)
    with atomic(factory) as s:
        again = journal.reverse(
            s, entry_id=original.id, key=key, reason="mistake", now=now + timedelta(minutes=5)
        )
    assert again.id == first.id


def test_a_reversal_refused_for_lack_of_funds_keeps_being_refused_when_retried_later(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b, c = make_account(s, type=L), make_account(s, type=L, no_overdraft=True), make_account(s, type=L)
        fund(s, a, 500)
        original = journal.post(s, transfer(a.id, b.id, 200), now=now)
        journal.post(s, transfer(b.id, c.id, 150), now=now)  # b spent it: undoing the 200 would overdraw b
    key = ref()
    with pytest.raises(InsufficientFunds), atomic(factory) as s:
        journal.reverse(s, entry_id=original.id, key=key, reason="mistake", now=now)
    with atomic(factory) as s:
        fund(s, b, 1000)
    with pytest.raises(InsufficientFunds) as caught, atomic(factory) as s:
        journal.reverse(s, entry_id=original.id, key=key, reason="mistake", now=now + timedelta(minutes=5))
    assert caught.value.details["replayed"] is True
    with factory() as s:
        assert journal.balance(s, b.id).posted == 1050


def test_a_reversal_under_the_key_of_a_refused_hold_is_a_conflict(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L, no_overdraft=True), make_account(s, type=L)
        fund(s, a, 100)
        original = journal.post(s, transfer(a.id, b.id, 50), now=now)
    key = ref()
    with pytest.raises(InsufficientFunds), atomic(factory) as s:
        journal.place_hold(s, key=key, account_id=a.id, amount=500, now=now)
    with pytest.raises(IdempotencyConflict), atomic(factory) as s:
        journal.reverse(s, entry_id=original.id, key=key, reason="mistake", now=now)


def test_a_reversal_retried_with_its_key_but_another_reason_is_a_conflict(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
        fund(s, a, 500)
        original = journal.post(s, transfer(a.id, b.id, 200), now=now)
        key = ref()
        journal.reverse(s, entry_id=original.id, key=key, reason="mistake", now=now)
    with pytest.raises(IdempotencyConflict) as caught, atomic(factory) as s:
        journal.reverse(s, entry_id=original.id, key=key, reason="another", now=now)
    assert caught.value.details["field"] == "description"


def test_a_hold_reserves_available_balance(factory: sessionmaker[Session], now: datetime) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L, no_overdraft=True), make_account(s, type=L)
        fund(s, a, 1000)
        journal.place_hold(s, key=ref(), account_id=a.id, amount=800, now=now)
    with pytest.raises(InsufficientFunds), atomic(factory) as s:
        journal.post(s, transfer(a.id, b.id, 300), now=now)
    with factory() as s:
        bal = journal.balance(s, a.id)
        assert (bal.posted, bal.held, bal.available) == (1000, 800, 200)


def test_partial_capture_posts_the_part_and_releases_the_rest(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L, no_overdraft=True), make_account(s, type=L)
        fund(s, a, 1000)
        hold = journal.place_hold(s, key=ref(), account_id=a.id, amount=800, now=now)
        journal.capture_hold(s, hold_id=hold.id, draft=transfer(a.id, b.id, 500), now=now)
    with factory() as s:
        bal = journal.balance(s, a.id)
        assert (bal.posted, bal.held, bal.available) == (500, 0, 500)
        assert journal.get_hold(s, hold.id).captured_amount == 500
        assert reports.check_integrity(s) == []


def test_capturing_more_than_the_hold_is_refused(factory: sessionmaker[Session], now: datetime) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L, no_overdraft=True), make_account(s, type=L)
        fund(s, a, 1000)
        hold = journal.place_hold(s, key=ref(), account_id=a.id, amount=100, now=now)
    with pytest.raises(Exception, match="capture must take"), atomic(factory) as s:
        journal.capture_hold(s, hold_id=hold.id, draft=transfer(a.id, b.id, 101), now=now)


def test_a_hold_resolves_exactly_once(factory: sessionmaker[Session], now: datetime) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L, no_overdraft=True), make_account(s, type=L)
        fund(s, a, 1000)
        hold = journal.place_hold(s, key=ref(), account_id=a.id, amount=100, now=now)
        journal.void_hold(s, hold_id=hold.id, now=now)
    with pytest.raises(HoldNotPending), atomic(factory) as s:
        journal.capture_hold(s, hold_id=hold.id, draft=transfer(a.id, b.id, 50), now=now)


def test_an_expired_hold_can_never_be_captured_even_before_the_sweeper(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a, b = make_account(s, type=L, no_overdraft=True), make_account(s, type=L)
        fund(s, a, 1000)
        hold = journal.place_hold(
            s, key=ref(), account_id=a.id, amount=100, now=now, expires_at=now + timedelta(minutes=1)
        )
    later = now + timedelta(minutes=2)
    with pytest.raises(HoldExpired), atomic(factory) as s:
        journal.capture_hold(s, hold_id=hold.id, draft=transfer(a.id, b.id, 50), now=later)


def test_the_sweeper_expires_overdue_holds_and_frees_the_funds(
    factory: sessionmaker[Session], now: datetime
) -> None:
    with atomic(factory) as s:
        a = make_account(s, type=L, no_overdraft=True)
        fund(s, a, 1000)
        hold = journal.place_hold(
            s, key=ref(), account_id=a.id, amount=100, now=now, expires_at=now - timedelta(seconds=1)
        )
    with atomic(factory) as s:
        assert journal.expire_holds(s, now=now) >= 1
    with factory() as s:
        assert journal.get_hold(s, hold.id).status.value == "expired"
        assert journal.balance(s, a.id).available == 1000


def test_balance_as_of_a_past_time_comes_from_the_postings(
    factory: sessionmaker[Session], now: datetime
) -> None:
    early = now - timedelta(days=10)
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
        fund(s, a, 1000)
        journal.post(s, EntryDraft(ref(), transfer(a.id, b.id, 100).postings, early), now=now)
        journal.post(s, transfer(a.id, b.id, 50), now=now)
    with factory() as s:
        assert journal.balance(s, b.id, as_of=early + timedelta(days=1)).posted == 100
        assert journal.balance(s, b.id).posted == 150


def test_statement_has_opening_running_and_closing_balance(
    factory: sessionmaker[Session], now: datetime
) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
        fund(s, a, 1000)
        for day, amount in ((1, 100), (2, 20), (3, 3)):
            journal.post(
                s, EntryDraft(ref(), transfer(a.id, b.id, amount).postings, t0 + timedelta(days=day)), now=now
            )
    with factory() as s:
        st = reports.statement(
            s, account_id=b.id, start=t0 + timedelta(days=2), end=t0 + timedelta(days=2, hours=1)
        )
    assert st.opening_balance == 100
    assert [(ln.amount, ln.running_balance) for ln in st.lines] == [(20, 120)]
    assert st.closing_balance == 120


def test_worked_example_deposit_order_hold_confirmation_and_payout(
    factory: sessionmaker[Session], now: datetime
) -> None:
    """DESIGN.md's flows: a buyer deposits Rp 1,000,000, a worker earns Rp 12,500 and is paid."""
    with atomic(factory) as s:
        cash = make_account(s, type=AccountType.ASSET)
        buyer = make_account(s, type=L, no_overdraft=True)
        held = make_account(s, type=L, no_overdraft=True)
        earned = make_account(s, type=L, no_overdraft=True)
        in_flight = make_account(s, type=L, no_overdraft=True)
        post = lambda *p: journal.post(s, EntryDraft(ref(), p, now), now=now)  # noqa: E731
        post(Posting.debit(cash.id, 1_000_000, "IDR"), Posting.credit(buyer.id, 1_000_000, "IDR"))
        post(Posting.debit(buyer.id, 25_000, "IDR"), Posting.credit(held.id, 25_000, "IDR"))
        post(Posting.debit(held.id, 12_500, "IDR"), Posting.credit(earned.id, 12_500, "IDR"))
        post(Posting.debit(earned.id, 12_500, "IDR"), Posting.credit(in_flight.id, 12_500, "IDR"))
        post(Posting.debit(in_flight.id, 12_500, "IDR"), Posting.credit(cash.id, 12_500, "IDR"))
    with factory() as s:
        balances = {
            n: journal.balance(s, a.id).posted
            for n, a in {
                "cash": cash,
                "buyer": buyer,
                "held": held,
                "earned": earned,
                "in_flight": in_flight,
            }.items()
        }
        assert balances == {"cash": 987_500, "buyer": 975_000, "held": 12_500, "earned": 0, "in_flight": 0}
        tb = reports.trial_balance(s)
        assert tb.balanced
