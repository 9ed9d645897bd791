"""``post_alone``: one entry as a unit of work of its own, committed. It answers exactly as
``post`` in a unit of work does — posting, replay, conflict, refusals remembered — on both
databases; on PostgreSQL in one message, whose failures roll back whole and leave the pooled
connection fit for the next use."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ledger import AccountType, EntryDraft, Posting, atomic, journal, post_alone
from ledger.errors import (
    AccountNotFound,
    ConcurrencyExhausted,
    IdempotencyConflict,
    InsufficientFunds,
    UnbalancedEntry,
)
from ledger.tables import EntryRow
from tests.factories import fund, make_account, transfer
from upah.db import make_engine, make_session_factory

L = AccountType.LIABILITY
_LOCK_WAITERS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
)


def _pair(factory: sessionmaker[Session], *, no_overdraft: bool = False) -> tuple[int, int]:
    with atomic(factory) as s:
        a, b = make_account(s, type=L, no_overdraft=no_overdraft), make_account(s, type=L)
        fund(s, a, 100)
        return a.id, b.id


def _balances(factory: sessionmaker[Session], *ids: int) -> list[int]:
    with factory() as s:
        return [journal.balance(s, i).posted for i in ids]


def _entries(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(s.execute(select(func.count()).select_from(EntryRow)).scalar_one())


def test_it_posts_and_commits_the_entry(factory: sessionmaker[Session], now: datetime) -> None:
    a, b = _pair(factory)
    draft = transfer(a, b, 30, metadata={"memo": "piece work"})
    entry = post_alone(factory, draft, now=now)
    assert _balances(factory, a, b) == [70, 30]
    with factory() as s:
        stored = journal.get_entry(s, entry.id)
    assert (stored.key, stored.postings) == (draft.key, draft.postings)
    assert stored.metadata == {"memo": "piece work"}
    assert (entry.key, entry.postings, entry.created_at) == (draft.key, draft.postings, now)


def test_the_same_key_and_content_returns_the_first_entry_and_writes_nothing(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _pair(factory)
    draft = transfer(a, b, 30)
    first = post_alone(factory, draft, now=now)
    before = _entries(factory)
    assert post_alone(factory, draft, now=now).id == first.id
    assert _entries(factory) == before
    assert _balances(factory, a, b) == [70, 30]


def test_the_same_key_with_other_content_is_a_conflict_naming_the_field(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _pair(factory)
    draft = transfer(a, b, 30)
    post_alone(factory, draft, now=now)
    with pytest.raises(IdempotencyConflict) as caught:
        post_alone(factory, transfer(a, b, 31, key=draft.key), now=now)
    assert caught.value.details["field"] == "postings"
    assert _balances(factory, a, b) == [70, 30]


def test_a_key_refused_for_lack_of_funds_keeps_being_refused(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _pair(factory, no_overdraft=True)
    draft = transfer(a, b, 150)
    with pytest.raises(InsufficientFunds):
        post_alone(factory, draft, now=now)
    with atomic(factory) as s:
        fund(s, journal.get_account(s, a), 1000)
    with pytest.raises(InsufficientFunds):
        post_alone(factory, draft, now=now)
    assert _balances(factory, b) == [0]


def test_an_unknown_account_is_refused_and_nothing_is_written(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, _ = _pair(factory)
    before = _entries(factory)
    with pytest.raises(AccountNotFound):
        post_alone(factory, transfer(a, 10**15, 5), now=now)
    assert _entries(factory) == before
    assert _balances(factory, a) == [100]


def test_an_unbalanced_entry_is_refused_before_the_database_is_asked(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _pair(factory)
    good = transfer(a, b, 5)
    bad = EntryDraft(good.key, (good.postings[0], Posting(b, -4, "IDR")), now)
    with pytest.raises(UnbalancedEntry):
        post_alone(factory, bad, now=now)
    assert _balances(factory, a, b) == [100, 0]


@pytest.mark.postgres
def test_a_lock_time_out_is_retried_then_given_up_and_the_connection_stays_usable(
    pg_url: str, pg_engine: Engine, now: datetime
) -> None:
    engine = make_engine(
        pg_url, pool_size=1, max_overflow=0, connect_args={"options": "-c TimeZone=UTC -c lock_timeout=20ms"}
    )
    try:
        factory = make_session_factory(engine)
        a, b = _pair(factory)
        with pg_engine.begin() as holder:
            holder.execute(text("SELECT 1 FROM ledger_accounts WHERE id = :a FOR UPDATE"), {"a": a})
            with pytest.raises(ConcurrencyExhausted):
                post_alone(factory, transfer(a, b, 1), now=now, attempts=2)
        assert _balances(factory, a, b) == [100, 0]
        post_alone(factory, transfer(a, b, 1), now=now)  # the one pooled connection, out of its failure
        assert _balances(factory, a, b) == [99, 1]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_waiting_on_a_lock_lets_the_other_threads_of_the_process_run(
    pg_url: str, pg_engine: Engine, now: datetime
) -> None:
    """The lock it waits on may belong to a unit of work in another thread of this process:
    that thread must be able to go on and commit, or both wait until the lock times out."""
    engine = make_engine(
        pg_url, pool_size=1, max_overflow=0, connect_args={"options": "-c TimeZone=UTC -c lock_timeout=5s"}
    )
    try:
        factory = make_session_factory(engine)
        a, b = _pair(factory)
        outcome: list[object] = []

        def waiter() -> None:
            try:
                outcome.append(post_alone(factory, transfer(a, b, 1), now=now, attempts=1))
            except Exception as exc:  # the failure is the finding
                outcome.append(exc)

        with pg_engine.begin() as holder:
            holder.execute(text("SELECT 1 FROM ledger_accounts WHERE id = :a FOR UPDATE"), {"a": a})
            thread = threading.Thread(target=waiter)
            thread.start()
            while thread.is_alive() and not holder.execute(_LOCK_WAITERS).scalar_one():
                thread.join(0.01)  # this thread's Python runs while the other one waits
        thread.join()
        assert len(outcome) == 1 and not isinstance(outcome[0], Exception), outcome
        assert _balances(factory, a, b) == [99, 1]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_database_out_of_reach_is_sqlalchemys_error_as_for_a_unit_of_work(now: datetime) -> None:
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    try:
        with pytest.raises(OperationalError):
            post_alone(make_session_factory(engine), transfer(1, 2, 1), now=now)
    finally:
        engine.dispose()


def test_an_entry_larger_than_the_socket_buffers_goes_through_whole(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _pair(factory)
    base = transfer(a, b, 1)
    memo = "x" * 3_000_000  # the message is sent in parts, waiting for the socket between them
    draft = EntryDraft(base.key, base.postings, now, description=memo, metadata={"memo": memo})
    entry = post_alone(factory, draft, now=now)
    with factory() as s:
        stored = journal.get_entry(s, entry.id)
    assert (stored.description, stored.metadata) == (memo, {"memo": memo})
