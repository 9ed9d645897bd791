"""``update_rows`` and ``insert_rows``: a batch's rows written with their own values, on real
SQLite and PostgreSQL (one statement there, an executemany here), exactly as one statement
per row."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import BigInteger, Column, Engine, MetaData, String, Table, insert, select
from sqlalchemy.orm import Session, sessionmaker

from ledger import atomic
from ledger.bulk import insert_rows, insert_rows_returning_ids, update_rows
from ledger.tables import BigId, JsonDoc, UTCDateTime


@contextmanager
def _own_table(engine: Engine, *columns: Column[Any]) -> Iterator[Table]:
    """A table of the test's own, dropped after it: the ledger's tables must stay whole for the
    other tests."""
    table = Table(f"bulk_{uuid.uuid4().hex[:8]}", MetaData(), *columns)
    table.create(engine)
    try:
        yield table
    finally:
        table.drop(engine)


@pytest.fixture
def scratch(engine: Engine) -> Iterator[Table]:
    """Three rows (ids 1 to 3, n 0, label "start") and room for JSON and a time."""
    with _own_table(
        engine,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("n", BigInteger, nullable=False),
        Column("label", String(20), nullable=True),
        Column("doc", JsonDoc, nullable=True),
        Column("at", UTCDateTime(), nullable=True),
    ) as table:
        with engine.begin() as c:
            c.execute(insert(table), [{"id": i, "n": 0, "label": "start"} for i in (1, 2, 3)])
        yield table


@pytest.fixture
def serial(engine: Engine) -> Iterator[Table]:
    """Empty, its ids given by its sequence."""
    with _own_table(
        engine,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("doc", JsonDoc, nullable=True),
        Column("at", UTCDateTime(), nullable=False),
    ) as table:
        yield table


def _rows(factory: sessionmaker[Session], table: Table) -> list[tuple[int, str | None]]:
    with factory() as s:
        return [(r.n, r.label) for r in s.execute(select(table.c.n, table.c.label).order_by(table.c.id))]


def test_each_row_gets_its_own_values_and_the_constants(
    factory: sessionmaker[Session], scratch: Table
) -> None:
    with atomic(factory) as s:
        update_rows(
            s,
            scratch,
            [{"id": 3, "n": 7}, {"id": 1, "n": 5}],
            key="id",
            assign=lambda v: {"n": scratch.c.n + v["n"], "label": "done"},
        )
    assert _rows(factory, scratch) == [(5, "done"), (0, "start"), (7, "done")]


def test_a_value_may_be_null(factory: sessionmaker[Session], scratch: Table) -> None:
    with atomic(factory) as s:
        update_rows(
            s,
            scratch,
            [{"id": 1, "label": None}, {"id": 2, "label": "two"}],
            key="id",
            assign=lambda v: {"label": v["label"]},
        )
    assert _rows(factory, scratch) == [(0, None), (0, "two"), (0, "start")]


def test_no_rows_is_no_statement(factory: sessionmaker[Session], scratch: Table) -> None:
    with atomic(factory) as s:
        update_rows(s, scratch, [], key="id", assign=lambda v: {"n": v["n"]})
    assert _rows(factory, scratch) == [(0, "start")] * 3


def test_a_key_named_twice_is_refused_before_anything_is_written(
    factory: sessionmaker[Session], scratch: Table
) -> None:
    with atomic(factory) as s, pytest.raises(ValueError, match="twice"):
        update_rows(
            s,
            scratch,
            [{"id": 1, "n": 1}, {"id": 1, "n": 2}],
            key="id",
            assign=lambda v: {"n": scratch.c.n + v["n"]},
        )
    assert _rows(factory, scratch) == [(0, "start")] * 3


def test_inserted_rows_keep_their_values_json_times_and_nulls(
    factory: sessionmaker[Session], scratch: Table
) -> None:
    at = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    with atomic(factory) as s:
        insert_rows(
            s,
            scratch,
            [
                {"id": 10, "n": 4, "label": None, "doc": {"run_id": 7, "kind": ["a", "b"]}, "at": at},
                {"id": 11, "n": 5, "label": "x", "doc": None, "at": None},
            ],
        )
    with factory() as s:
        rows = s.execute(select(scratch).where(scratch.c.id >= 10).order_by(scratch.c.id)).all()
    assert [tuple(r) for r in rows] == [
        (10, 4, None, {"run_id": 7, "kind": ["a", "b"]}, at),
        (11, 5, "x", None, None),
    ]


def test_inserting_no_rows_is_no_statement(factory: sessionmaker[Session], scratch: Table) -> None:
    with atomic(factory) as s:
        insert_rows(s, scratch, [])
        assert insert_rows_returning_ids(s, scratch, []) == []
    assert _rows(factory, scratch) == [(0, "start")] * 3


def test_inserted_ids_come_back_in_row_order(factory: sessionmaker[Session], serial: Table) -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    with atomic(factory) as s:
        first = insert_rows_returning_ids(s, serial, [{"doc": {"n": n}, "at": at} for n in range(3)])
        second = insert_rows_returning_ids(s, serial, [{"doc": {"n": n}, "at": at} for n in range(3, 5)])
    with factory() as s:
        docs = {r.id: r.doc["n"] for r in s.execute(select(serial.c.id, serial.c.doc))}
    assert [docs[i] for i in first + second] == [0, 1, 2, 3, 4]
    assert len(set(first + second)) == 5
