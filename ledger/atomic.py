"""Units of work around the ledger: commit once, remember refusals, retry lock failures.

Use-cases run inside ``atomic(factory)``: one transaction, committed once at the end or
rolled back whole. When a posting is refused for lack of funds, the refusal is recorded
in a fresh transaction after the rollback, so that the same idempotency key keeps being
refused the same way. ``retrying`` re-runs a unit of work on serialization failures,
deadlocks and lock time-outs, a bounded number of times with jittered backoff.
``post_alone`` is the unit of work of a caller whose whole work is one entry.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Engine, Executable, Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ledger import journal
from ledger.driver import Driver
from ledger.entries import EntryDraft, JournalEntry
from ledger.errors import ConcurrencyExhausted, InsufficientFunds

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


@contextmanager
def atomic(factory: sessionmaker[Session]) -> Iterator[Session]:
    session = factory()
    try:
        yield session
        session.commit()
    except InsufficientFunds as exc:
        session.rollback()
        if "key" in exc.details:
            _remember_refusal(factory, exc)
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alone(
    factory: sessionmaker[Session], statement: Executable, parameters: Mapping[str, Any] | None = None
) -> list[Row[Any]]:
    """One statement as a transaction of its own; the rows it returns, if any.

    On PostgreSQL it runs on a pooled connection in autocommit, where a statement is atomic by
    itself: one round trip where a unit of work takes three (BEGIN, the statement, COMMIT),
    and less than half its client CPU. Elsewhere it is a unit of work.
    """
    engine: Engine = factory.kw["bind"]
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            return _rows(connection.execute(statement, parameters))
    with atomic(factory) as session:
        return _rows(cast("CursorResult[Any]", session.execute(statement, parameters)))


def _rows(result: CursorResult[Any]) -> list[Row[Any]]:
    return list(result) if result.returns_rows else []


def retrying(factory: sessionmaker[Session], work: Callable[[Session], T], *, attempts: int = 6) -> T:
    def once() -> T:
        with atomic(factory) as session:
            return work(session)

    return _retried(once, attempts)


def post_alone(
    factory: sessionmaker[Session], draft: EntryDraft, *, now: datetime, attempts: int = 6
) -> JournalEntry:
    """Post one entry as a unit of work of its own, and commit it: the same answers as
    ``retrying(factory, post)``.

    On PostgreSQL the BEGIN, the posting and the COMMIT go in one message, on a pooled
    connection without an ORM session: one round trip where a unit of work takes two, and
    half its client CPU. An answer other than a fresh posting (a replay, a conflict, a
    refusal) wrote nothing, and is given by ``post`` in a unit of work, in full.
    """
    engine: Engine = factory.kw["bind"]
    if engine.dialect.name == "postgresql":
        entry = _retried(lambda: _post_committed(engine, draft, now), attempts)
        if entry is not None:
            return entry
    return retrying(factory, lambda session: journal.post(session, draft, now=now), attempts=attempts)


def _post_committed(engine: Engine, draft: EntryDraft, now: datetime) -> JournalEntry | None:
    with engine.connect() as connection:  # failing to connect is SQLAlchemy's error, as for a session
        return journal.post_committed(Driver.of_connection(connection), draft, now=now)


def _retried(work: Callable[[], T], attempts: int) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == attempts:
                if is_retryable(exc):
                    raise ConcurrencyExhausted(f"gave up after {attempts} attempts") from exc
                raise
            log.info("retrying unit of work after %s (attempt %d)", type(exc.orig).__name__, attempt)
            time.sleep(random.uniform(0, 0.005 * 2**attempt))  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")


def is_retryable(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(exc.orig)


def _remember_refusal(factory: sessionmaker[Session], exc: InsufficientFunds) -> None:
    with factory() as session, session.begin():
        journal.record_rejection(session, exc, now=datetime.now(UTC))
