"""``update_rows``: each row of a batch updated with its own values, on real SQLite and
PostgreSQL (one statement there, an executemany here), exactly as one UPDATE per row."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ledger import AccountType, atomic
from ledger.bulk import update_rows
from ledger.tables import AccountRow, table_of
from tests.factories import make_account

_accounts = table_of(AccountRow)


def _accounts_made(factory: sessionmaker[Session], n: int) -> list[int]:
    with atomic(factory) as s:
        return [make_account(s, type=AccountType.LIABILITY).id for _ in range(n)]


def _held(factory: sessionmaker[Session], ids: list[int]) -> list[tuple[int, str]]:
    with factory() as s:
        rows = s.execute(
            select(_accounts.c.id, _accounts.c.held, _accounts.c.status).where(_accounts.c.id.in_(ids))
        )
        by_id = {r.id: (r.held, r.status) for r in rows}
    return [by_id[i] for i in ids]


def test_each_row_gets_its_own_values_and_the_constants(factory: sessionmaker[Session]) -> None:
    ids = _accounts_made(factory, 3)
    with atomic(factory) as s:
        update_rows(
            s,
            _accounts,
            [{"id": ids[0], "held": 5}, {"id": ids[2], "held": 7}],
            key="id",
            assign=lambda v: {"held": _accounts.c.held + v["held"], "status": "frozen"},
        )
    assert _held(factory, ids) == [(5, "frozen"), (0, "open"), (7, "frozen")]


def test_no_rows_is_no_statement(factory: sessionmaker[Session]) -> None:
    with atomic(factory) as s:
        update_rows(s, _accounts, [], key="id", assign=lambda v: {"held": v["held"]})


def test_a_key_named_twice_is_refused_before_anything_is_written(factory: sessionmaker[Session]) -> None:
    [account] = _accounts_made(factory, 1)
    with atomic(factory) as s, pytest.raises(ValueError, match="twice"):
        update_rows(
            s,
            _accounts,
            [{"id": account, "held": 1}, {"id": account, "held": 2}],
            key="id",
            assign=lambda v: {"held": _accounts.c.held + v["held"]},
        )
    assert _held(factory, [account]) == [(0, "open")]
