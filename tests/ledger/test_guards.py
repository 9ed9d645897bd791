"""The database itself refuses what the code would never do: raw SQL cannot bend the books."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from ledger import AccountStatus, AccountType, atomic, journal, reports
from tests.factories import fund, make_account, ref


def _seed(factory: sessionmaker[Session]) -> int:
    with atomic(factory) as s:
        account = make_account(s, type=AccountType.LIABILITY)
        return fund(s, account, 100).id


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_postings SET amount = amount * 2 WHERE entry_id = :e",
        "DELETE FROM ledger_postings WHERE entry_id = :e",
        "UPDATE ledger_entries SET description = 'changed' WHERE id = :e",
        "DELETE FROM ledger_entries WHERE id = :e",
    ],
)
def test_raw_update_or_delete_of_entries_and_postings_is_refused(
    engine: Engine, factory: sessionmaker[Session], statement: str
) -> None:
    entry_id = _seed(factory)
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement), {"e": entry_id})


def test_raw_insert_of_an_unbalanced_posting_fails_at_commit_on_postgresql(
    pg_engine: Engine, pg_factory: sessionmaker[Session], now: datetime
) -> None:
    entry_id = _seed(pg_factory)
    with pg_factory() as s:
        account_id = journal.get_entry(s, entry_id).postings[0].account_id
    with pytest.raises(DatabaseError, match="does not sum to zero"), pg_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ledger_postings (entry_id, account_id, amount, currency) "
                "VALUES (:e, :a, 5, 'IDR')"
            ),
            {"e": entry_id, "a": account_id},
        )


def test_raw_insert_of_an_entry_without_postings_is_refused_on_postgresql(
    pg_engine: Engine, now: datetime
) -> None:
    with pytest.raises(DatabaseError, match="fewer than two postings"), pg_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ledger_entries (key, description, metadata, effective_at, created_at, content) "
                "VALUES ('raw-lonely', '', '{}', now(), now(), '{}')"
            )
        )


def _entry_and_account(factory: sessionmaker[Session]) -> tuple[int, int]:
    entry_id = _seed(factory)
    with factory() as s:
        return entry_id, journal.get_entry(s, entry_id).postings[0].account_id


_PAIR = (
    "INSERT INTO ledger_postings (entry_id, account_id, amount, currency) "
    "VALUES (:e, :a, 5, :c), (:e, :b, -5, :c)"
)


def test_a_raw_posting_naming_an_unknown_account_is_refused(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    entry_id, account_id = _entry_and_account(factory)
    with pytest.raises(DatabaseError, match="account"), engine.begin() as conn:
        conn.execute(text(_PAIR), {"e": entry_id, "a": account_id, "b": 10**12, "c": "IDR"})


def test_a_raw_posting_naming_an_unknown_entry_is_refused(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    _, account_id = _entry_and_account(factory)
    with pytest.raises(DatabaseError, match="entry"), engine.begin() as conn:
        conn.execute(text(_PAIR), {"e": 10**12, "a": account_id, "b": account_id, "c": "IDR"})


def test_a_raw_posting_in_a_currency_its_account_does_not_hold_is_refused(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    entry_id, account_id = _entry_and_account(factory)
    with pytest.raises(DatabaseError, match=r"currency|holds"), engine.begin() as conn:
        conn.execute(text(_PAIR), {"e": entry_id, "a": account_id, "b": account_id, "c": "KES"})


def test_a_ledger_account_is_never_deleted(engine: Engine, factory: sessionmaker[Session]) -> None:
    with atomic(factory) as s:
        unused = make_account(s, type=AccountType.LIABILITY).id
    with pytest.raises(DatabaseError, match="never removed"), engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_accounts WHERE id = :a"), {"a": unused})


def test_the_integrity_check_names_an_overdrawn_account_that_may_not_be(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    with atomic(factory) as s:
        guarded = make_account(s, type=AccountType.LIABILITY, no_overdraft=True)
        fund(s, guarded, 100)
    held = text("UPDATE ledger_accounts SET held = :h WHERE id = :a")
    with engine.begin() as conn:  # what raw SQL could do to the materialised balance
        conn.execute(held, {"h": 150, "a": guarded.id})
    try:
        with factory() as s:
            problems = reports.check_integrity(s)
    finally:  # the database outlives this test: leave its books whole
        with engine.begin() as conn:
            conn.execute(held, {"h": 0, "a": guarded.id})
    assert [p.account_id for p in problems if p.kind == "overdrawn"] == [guarded.id]


def test_postings_added_to_an_old_entry_one_statement_at_a_time_are_refused_on_postgresql(
    pg_engine: Engine, pg_factory: sessionmaker[Session]
) -> None:
    entry_id, account_id = _entry_and_account(pg_factory)
    insert = text(
        "INSERT INTO ledger_postings (entry_id, account_id, amount, currency) VALUES (:e, :a, :m, 'IDR')"
    )
    with pytest.raises(DatabaseError, match="does not sum to zero"), pg_engine.begin() as conn:
        conn.execute(insert, {"e": entry_id, "a": account_id, "m": 5})
        conn.execute(insert, {"e": entry_id, "a": account_id, "m": -5})


_ENTRY = (
    "INSERT INTO ledger_entries (key, description, metadata, effective_at, created_at, content) "
    "VALUES (:k, '', '{}', now(), now(), '{}') RETURNING id"
)


def test_a_raw_entry_written_with_its_postings_in_one_statement_commits_on_postgresql(
    pg_engine: Engine, pg_factory: sessionmaker[Session]
) -> None:
    _, account_id = _entry_and_account(pg_factory)
    with pg_engine.begin() as conn:
        entry_id = conn.execute(
            text(
                f"WITH e AS ({_ENTRY}) "
                "INSERT INTO ledger_postings (entry_id, account_id, amount, currency) "
                "SELECT e.id, :a, m, 'IDR' FROM e, (VALUES (5), (-5)) AS v(m) RETURNING entry_id"
            ),
            {"k": ref("raw"), "a": account_id},
        ).scalar()
    with pg_factory() as s:
        assert len(journal.get_entry(s, entry_id).postings) == 2


def test_a_raw_entry_whose_postings_follow_in_a_later_statement_is_refused_on_postgresql(
    pg_engine: Engine, pg_factory: sessionmaker[Session]
) -> None:
    _, account_id = _entry_and_account(pg_factory)
    with pytest.raises(DatabaseError, match="fewer than two postings"), pg_engine.begin() as conn:
        entry_id = conn.execute(text(_ENTRY), {"k": ref("raw")}).scalar_one()
        conn.execute(text(_PAIR), {"e": entry_id, "a": account_id, "b": account_id, "c": "IDR"})


def test_a_balanced_pair_added_to_an_old_entry_is_refused_on_postgresql(
    pg_engine: Engine, pg_factory: sessionmaker[Session]
) -> None:
    entry_id, account_id = _entry_and_account(pg_factory)
    with pytest.raises(DatabaseError, match="already has its postings"), pg_engine.begin() as conn:
        conn.execute(text(_PAIR), {"e": entry_id, "a": account_id, "b": account_id, "c": "IDR"})


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("currency", "'USD'"),
        ("type", "'asset'"),
        ("code", "'renamed'"),
        ("owner", "'someone'"),
        ("no_overdraft", "NOT no_overdraft"),
    ],
)
def test_an_accounts_terms_cannot_be_rewritten(
    engine: Engine, factory: sessionmaker[Session], column: str, value: str
) -> None:
    with atomic(factory) as s:
        account = make_account(s, type=AccountType.LIABILITY).id
    with pytest.raises(DatabaseError, match="fixed when it is opened"), engine.begin() as conn:
        conn.execute(text(f"UPDATE ledger_accounts SET {column} = {value} WHERE id = :a"), {"a": account})


def test_an_accounts_balance_and_status_still_change(engine: Engine, factory: sessionmaker[Session]) -> None:
    with atomic(factory) as s:
        account = make_account(s, type=AccountType.LIABILITY)
        fund(s, account, 100)
    with atomic(factory) as s:
        journal.set_account_status(s, account_id=account.id, status=AccountStatus.FROZEN)
    with factory() as s:
        assert journal.get_account(s, account.id).status is AccountStatus.FROZEN
        assert journal.balance(s, account.id).posted == 100


def test_a_posting_that_would_take_a_balance_beyond_64_bits_is_refused_and_nothing_changes(
    factory: sessionmaker[Session],
) -> None:
    with atomic(factory) as s:
        account = make_account(s, type=AccountType.LIABILITY)
        fund(s, account, 2**63 - 1)
    with pytest.raises(DatabaseError, match=r"64-bit|out of range"), atomic(factory) as s:
        fund(s, account, 1)  # on SQLite the sum would silently become a float
    with factory() as s:
        assert journal.balance(s, account.id).posted == 2**63 - 1
        assert isinstance(journal.balance(s, account.id).posted, int)
