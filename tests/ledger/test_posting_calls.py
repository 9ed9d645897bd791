"""How postings reach the database: on PostgreSQL one message per call (the BEGIN included
when the call opens the unit of work), text escaped by libpq, integers and currency codes
checked before they are written into the SQL. The unit of work stays the caller's: it
commits or rolls back whole and keeps its isolation level, and lock failures and lost
connections surface as the errors that ``retrying`` and the pool act on."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ledger import AccountType, EntryDraft, Posting, atomic, journal
from ledger.atomic import is_retryable
from ledger.errors import ConcurrencyExhausted, InvalidEntry
from tests.factories import fund, make_account, ref, transfer
from upah import db
from upah.db import make_engine, make_session_factory

L = AccountType.LIABILITY


def _pair(factory: sessionmaker[Session]) -> tuple[int, int]:
    with atomic(factory) as s:
        a, b = make_account(s, type=L), make_account(s, type=L)
        fund(s, a, 100)
        return a.id, b.id


def _balances(factory: sessionmaker[Session], *ids: int) -> list[int]:
    with factory() as s:
        return [journal.balance(s, i).posted for i in ids]


class _Abandoned(Exception):
    pass


def test_a_posting_that_opened_its_unit_of_work_is_rolled_back_with_it(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _pair(factory)
    draft = transfer(a, b, 30)
    with pytest.raises(_Abandoned), atomic(factory) as s:
        journal.post(s, draft, now=now)
        raise _Abandoned
    assert _balances(factory, a, b) == [100, 0]
    with factory() as s:
        assert journal.find_entry_by_key(s, draft.key) is None


def test_a_posting_joins_the_transaction_that_earlier_statements_began(
    pg_factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _pair(pg_factory)
    with atomic(pg_factory) as s:
        before = s.execute(text("SELECT txid_current()")).scalar_one()
        journal.post(s, transfer(a, b, 1), now=now)
        assert s.execute(text("SELECT txid_current()")).scalar_one() == before


@pytest.mark.parametrize("level", ["SERIALIZABLE", "REPEATABLE READ"])
def test_a_posting_that_opens_the_transaction_keeps_its_isolation_level(
    pg_factory: sessionmaker[Session], now: datetime, level: str
) -> None:
    a, b = _pair(pg_factory)
    with atomic(pg_factory) as s:
        s.connection(execution_options={"isolation_level": level})
        journal.post(s, transfer(a, b, 1), now=now)
        assert s.execute(text("SHOW transaction_isolation")).scalar_one() == level.lower()


@pytest.mark.parametrize("key", ["it's", 'say "hi"', "back\\slash", "E'\\x27", "rupiah-Rp-ü-日本", "{a,b}"])
def test_keys_and_text_with_quotes_backslashes_and_non_ascii_arrive_intact(
    factory: sessionmaker[Session], now: datetime, key: str
) -> None:
    a, b = _pair(factory)
    unique = f"{key}-{ref()}"
    single = EntryDraft(
        unique,
        (Posting.debit(a, 1, "IDR"), Posting.credit(b, 1, "IDR")),
        now,
        description=key,
        metadata={"note": key},
    )
    batch = [transfer(a, b, 2, key=f"{unique}-1"), transfer(a, b, 3, key=f"{unique}-2")]
    with atomic(factory) as s:
        posted = journal.post(s, single, now=now)
        ids = journal.post_many(s, batch, now=now)
    with factory() as s:
        stored = journal.get_entry(s, posted.id)
        assert (stored.key, stored.description, stored.metadata) == (unique, key, {"note": key})
        assert [journal.get_entry(s, i).key for i in ids] == [d.key for d in batch]
    with atomic(factory) as s:  # and the same keys replay
        assert journal.post(s, single, now=now).id == posted.id
        assert journal.post_many(s, batch, now=now) == ids


def test_a_key_with_a_nul_character_is_refused(factory: sessionmaker[Session], now: datetime) -> None:
    a, b = _pair(factory)
    with pytest.raises(InvalidEntry), atomic(factory) as s:
        journal.post(s, transfer(a, b, 1, key="before\x00after"), now=now)
    assert _balances(factory, a, b) == [100, 0]


@pytest.mark.parametrize(
    ("description", "metadata"),
    [("memo\x00x", {}), ("", {"note": "a\x00b"}), ("", {"k\x00": 1}), ("", {"lines": [{"memo": "\x00"}]})],
    ids=["description", "metadata value", "metadata key", "nested metadata"],
)
def test_a_nul_in_a_description_or_metadata_is_refused_alike_on_both_databases(
    factory: sessionmaker[Session], now: datetime, description: str, metadata: dict[str, object]
) -> None:
    a, b = _pair(factory)
    base = transfer(a, b, 1)
    draft = EntryDraft(base.key, base.postings, base.effective_at, description=description, metadata=metadata)
    with pytest.raises(InvalidEntry), atomic(factory) as s:
        journal.post(s, draft, now=now)
    assert _balances(factory, a, b) == [100, 0]


def test_a_posting_naming_its_account_by_anything_but_an_integer_id_is_refused(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _pair(factory)
    draft = EntryDraft(
        ref("odd-account"),
        (Posting(a, 1, "IDR"), Posting(f"{b}}}'::bigint[]", -1, "IDR")),  # type: ignore[arg-type]
        now,
    )
    with pytest.raises(InvalidEntry), atomic(factory) as s:
        journal.post(s, draft, now=now)
    assert _balances(factory, a, b) == [100, 0]


def test_a_lock_time_out_while_posting_is_an_error_that_units_of_work_retry(
    pg_engine: Engine, pg_factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _pair(pg_factory)
    with pg_engine.begin() as holder:
        holder.execute(text("SELECT 1 FROM ledger_accounts WHERE id = :a FOR UPDATE"), {"a": a})
        with pytest.raises(DBAPIError) as caught, atomic(pg_factory) as s:
            s.execute(text("SET LOCAL lock_timeout = '50ms'"))
            journal.post(s, transfer(a, b, 1), now=now)
    assert is_retryable(caught.value)
    assert _balances(pg_factory, a, b) == [100, 0]


def test_a_posting_on_a_connection_lost_meanwhile_fails_once_and_the_pool_replaces_it(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, now: datetime
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        factory = make_session_factory(engine)
        a, b = _pair(factory)
        with atomic(factory) as s:
            pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
        admin = make_engine(pg_url)
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})
        admin.dispose()
        with pytest.raises(DBAPIError) as caught, atomic(factory) as s:
            journal.post(s, transfer(a, b, 1), now=now)
        assert caught.value.connection_invalidated
        with atomic(factory) as s:
            journal.post(s, transfer(a, b, 1), now=now)
        assert _balances(factory, a, b) == [99, 1]
    finally:
        engine.dispose()


def test_a_batch_racing_another_for_a_key_is_refused_as_a_concurrency_failure(
    pg_factory: sessionmaker[Session], now: datetime
) -> None:
    a, b = _pair(pg_factory)
    shared = transfer(a, b, 1)
    outcome: list[BaseException] = []

    def second() -> None:
        try:
            with atomic(pg_factory) as s:
                journal.post_many(s, [transfer(b, a, 1), shared], now=now)
        except BaseException as exc:
            outcome.append(exc)

    with atomic(pg_factory) as s:
        journal.post_many(s, [shared], now=now)
        racer = threading.Thread(target=second)
        racer.start()
        racer.join(0.5)  # it waits on the first batch's uncommitted key
    racer.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], ConcurrencyExhausted)
    assert _balances(pg_factory, a, b) == [99, 1]


@pytest.mark.parametrize(
    ("key", "description", "metadata"),
    [("k\ud800", "", {}), ("", "memo \udfff", {}), ("", "", {"note": "a\ud83d"}), ("", "", {"k\udc00": 1})],
    ids=["key", "description", "metadata value", "metadata key"],
)
def test_text_that_is_not_unicode_is_refused_before_the_database_sees_it(
    factory: sessionmaker[Session], now: datetime, key: str, description: str, metadata: dict[str, object]
) -> None:
    """A lone surrogate cannot be stored; PostgreSQL's refusal would quote the entry's text back."""
    a, b = _pair(factory)
    base = transfer(a, b, 1)
    draft = EntryDraft(
        base.key + key, base.postings, base.effective_at, description=description, metadata=metadata
    )
    with pytest.raises(InvalidEntry), atomic(factory) as s:
        journal.post(s, draft, now=now)
    assert _balances(factory, a, b) == [100, 0]


def test_an_account_id_beyond_the_databases_integers_is_refused(
    factory: sessionmaker[Session], now: datetime
) -> None:
    a, _ = _pair(factory)
    with pytest.raises(InvalidEntry), atomic(factory) as s:
        journal.post(s, transfer(a, 2**63, 1), now=now)
    assert _balances(factory, a) == [100]
