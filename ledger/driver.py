"""The ledger's PostgreSQL functions called at the driver level, one simple-protocol query each.

Through the driver's libpq connection: SQLAlchemy's and psycopg's statement machinery cost
more client CPU than the call itself, and the BEGIN that opens a unit of work travels in the
same message instead of a round trip of its own (psycopg sends it alone before the first
statement). Text goes in as literals escaped by libpq for the connection's encoding; the
integer arrays and checked currency codes are array literals, far cheaper to build than
psycopg's element-by-element adaptation.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session

from ledger.errors import InvalidEntry
from ledger.money import check_currency


class Driver:
    """A connection at the driver level: SQL literals for it, and calls on it.

    Literals are escaped by libpq, for the connection's encoding and settings.
    """

    def __init__(self, driver: Any, dialect: Dialect, invalidate: Callable[[BaseException], None]) -> None:
        self.driver = driver
        self.dialect = dialect
        self.invalidate = invalidate
        self.dbapi = cast(Any, dialect.loaded_dbapi)
        self.encoding: str = driver.info.encoding
        self._escaping = self.dbapi.pq.Escaping(driver.pgconn)

    @classmethod
    def of(cls, session: Session) -> Driver:
        """The connection of the session's transaction."""
        return cls.of_connection(session.connection())

    @classmethod
    def of_connection(cls, connection: Connection) -> Driver:
        return cls(connection.connection.dbapi_connection, connection.dialect, connection.invalidate)

    def text(self, value: str, of: str = "text") -> str:
        if "\x00" in value:  # libpq would stop at it and send a shortened value
            raise InvalidEntry("text sent to the ledger may not contain NUL characters")
        return f"{self._escaping.escape_literal(value.encode(self.encoding)).decode(self.encoding)}::{of}"

    def texts(self, values: Iterable[str]) -> str:
        quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        return self.text("{" + ",".join(quoted) + "}", "text[]")

    @staticmethod
    def integers(values: Iterable[int], of: str) -> str:
        """An array of integers: made of digits and signs only, nothing to escape."""
        return "'{" + ",".join(map(str, map(int, values))) + "}'::" + of + "[]"

    @staticmethod
    def currencies(values: Iterable[str]) -> str:
        """An array of currency codes, each checked to be three capital letters: nothing to escape."""
        return "'{" + ",".join(map(check_currency, values)) + "}'::text[]"

    @staticmethod
    def moment(value: datetime) -> str:
        return f"'{value.isoformat()}'::timestamptz"

    @staticmethod
    def number(value: int | None) -> str:
        return "NULL" if value is None else str(int(value))

    def call(self, template: str, *literals: str) -> list[bytes | None]:
        """Run one of the ledger's functions in the connection's transaction (opening one if
        none is open); its one row, as text.

        Driver errors are raised as SQLAlchemy's, as ``exec_driver_sql`` would, so that units
        of work recognise lock failures and retry them.
        """
        driver, pgconn = self.driver, self.driver.pgconn
        sql = template.format(*literals)
        if not driver.autocommit and pgconn.transaction_status == self.dbapi.pq.TransactionStatus.IDLE:
            sql = f"{_begin(driver)}; {sql}"
        try:
            result = pgconn.exec_(sql.encode(self.encoding))
            self._check(result, self.dbapi.pq.ExecStatus.TUPLES_OK)
        except self.dbapi.Error as exc:
            raise self._raised(exc, template) from exc
        return _row(result)

    def call_committed(self, template: str, *literals: str) -> list[bytes | None]:
        """Run one of the ledger's functions as a transaction of its own, committed in the same
        message: one round trip. The connection must be outside any transaction.

        On an error nothing is committed and the connection is left outside a transaction.
        """
        driver, pgconn, pq = self.driver, self.driver.pgconn, self.dbapi.pq
        if pgconn.transaction_status != pq.TransactionStatus.IDLE:
            raise AssertionError("a committed call needs a connection outside any transaction")
        try:
            sql = f"{_begin(driver)}; {template.format(*literals)}; COMMIT"
            pgconn.send_query(sql.encode(self.encoding))
            results = _results(pgconn)
            if pgconn.transaction_status in (pq.TransactionStatus.INERROR, pq.TransactionStatus.INTRANS):
                pgconn.exec_(b"ROLLBACK")  # a statement failed: the server skipped the rest
            expected = [pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK]
            for result, status in zip(results, expected, strict=False):
                self._check(result, status)
            if len(results) != len(expected) or results[2].command_status != b"COMMIT":
                raise AssertionError("a committed call did not end in its COMMIT")
        except self.dbapi.Error as exc:
            raise self._raised(exc, template) from exc
        return _row(results[1])

    def _check(self, result: Any, expected: Any) -> None:
        if result.status != expected:
            raise self.dbapi.errors.error_from_result(result, encoding=self.encoding)

    def _raised(self, exc: Any, template: str) -> StatementError:
        """The driver's error as SQLAlchemy's, naming the call's template: never its values."""
        lost = self.dialect.is_disconnect(exc, self.driver, None)
        if lost:  # as SQLAlchemy does: the pool must not hand this connection out again
            self.invalidate(exc)
        error: StatementError = DBAPIError.instance(
            template, None, exc, self.dbapi.Error, connection_invalidated=lost, dialect=self.dialect
        )
        return error


def _results(pgconn: Any) -> list[Any]:
    """Every result of the query sent on the (non-blocking) connection, waiting for them in
    ``poll``: libpq's ``PQgetResult`` would wait holding the GIL, and the lock the query waits
    on may be held by another thread of this process, which could then never release it."""
    waiting = select.poll()
    waiting.register(pgconn.socket, select.POLLIN | select.POLLOUT)
    while pgconn.flush():
        if any(events & select.POLLIN for _, events in waiting.poll()):
            pgconn.consume_input()
    waiting.modify(pgconn.socket, select.POLLIN)
    results: list[Any] = []
    while True:
        while pgconn.is_busy():
            waiting.poll()
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return results
        results.append(result)


def _row(result: Any) -> list[bytes | None]:
    return [result.get_value(0, column) for column in range(result.nfields)]


def _begin(driver: Any) -> str:
    """The statement that opens a transaction with the driver's settings, as psycopg's own."""
    parts = ["BEGIN"]
    if driver.isolation_level is not None:
        parts.append("ISOLATION LEVEL " + driver.isolation_level.name.replace("_", " "))
    if driver.read_only is not None:
        parts.append("READ ONLY" if driver.read_only else "READ WRITE")
    if driver.deferrable is not None:
        parts.append("DEFERRABLE" if driver.deferrable else "NOT DEFERRABLE")
    return " ".join(parts)
