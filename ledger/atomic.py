"""Units of work around the ledger: commit once, remember refusals, retry lock failures.

Use-cases run inside ``atomic(factory)``: one transaction, committed once at the end or
rolled back whole. When a posting is refused for lack of funds, the refusal is recorded
in a fresh transaction after the rollback, so that the same idempotency key keeps being
refused the same way. ``retrying`` re-runs a unit of work on serialization failures,
deadlocks and lock time-outs, a bounded number of times with jittered backoff.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ledger import journal
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


def retrying(factory: sessionmaker[Session], work: Callable[[Session], T], *, attempts: int = 6) -> T:
    for attempt in range(1, attempts + 1):
        try:
            with atomic(factory) as session:
                return work(session)
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
