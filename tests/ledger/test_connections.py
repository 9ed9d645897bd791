"""The pool under the units of work: a connection that died while idle is never handed out,
one handed back a moment ago is reused without a round trip to check it, and every session
reads times in UTC whatever the server's default zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ledger import atomic
from tests.conftest import create_pg_database, drop_pg_database
from upah import db
from upah.db import make_engine, make_session_factory

pytestmark = pytest.mark.postgres


def _backend_pid(factory: sessionmaker[Session]) -> int:
    with atomic(factory) as s:
        return int(s.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pg_url: str, pid: int) -> None:
    admin = make_engine(pg_url)
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})
    admin.dispose()


def test_a_connection_killed_while_idle_is_replaced_before_use(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        factory = make_session_factory(engine)
        first = _backend_pid(factory)
        _terminate(pg_url, first)
        assert _backend_pid(factory) != first
    finally:
        engine.dispose()


def test_a_connection_handed_back_a_moment_ago_is_not_pinged(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The price of skipping the ping: a server lost under a busy pool fails one use."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        factory = make_session_factory(engine)
        first = _backend_pid(factory)
        assert _backend_pid(factory) == first
        _terminate(pg_url, first)
        with pytest.raises(DBAPIError) as caught:
            _backend_pid(factory)
        assert caught.value.connection_invalidated
        assert _backend_pid(factory) != first
    finally:
        engine.dispose()


def test_times_read_back_in_utc_on_a_server_whose_default_zone_is_another() -> None:
    url = create_pg_database("upah_tz")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            name = url.rsplit("/", 1)[1]
            conn.execute(text(f"ALTER DATABASE \"{name}\" SET timezone = 'Asia/Jakarta'"))
            conn.commit()
        engine.dispose()  # new connections take the database's default zone
        with engine.connect() as conn:
            moment = conn.execute(text("SELECT timestamptz '2026-11-30 07:00:00+07'")).scalar_one()
        assert moment.utcoffset() == timedelta(0)
        assert moment == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    finally:
        engine.dispose()
        drop_pg_database(url)
