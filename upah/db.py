"""Engines and sessions. One transaction per use-case: ``with transaction(factory) as s:``."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from ledger.atomic import atomic as transaction
from ledger.atomic import retrying

__all__ = ["make_engine", "make_session_factory", "retrying", "transaction"]

PING_AFTER_IDLE_SECONDS = 1.0
"""A pooled PostgreSQL connection idle for longer than this is pinged before it is reused."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for its database: SQLite in WAL with immediate write transactions;
    PostgreSQL with a pool that pings only the connections that sat idle, and sessions in
    UTC whatever the server's default (times then read back in UTC everywhere, and the
    driver turns timestamps into ``datetime`` three times faster than for a named zone).
    Either way a database error never quotes the statement's parameters: they are what a
    request carried (personal data, before or after sealing), and errors reach the logs."""
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        _make_sqlite_serialisable(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    connect_args = {"options": "-c TimeZone=UTC", **kwargs.pop("connect_args", {})}
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    if "pool_pre_ping" not in kwargs:
        _ping_idle_connections(engine)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _ping_idle_connections(engine: Engine) -> None:
    """Pessimistic disconnect handling at a fraction of ``pool_pre_ping``'s price.

    ``pool_pre_ping`` spends a round trip on every checkout — one in four of a posting's.
    A connection handed back a moment ago is as good as the ping would prove, so only one
    that sat idle for more than ``PING_AFTER_IDLE_SECONDS`` (when a restarted or failed-over
    server or a dropped link shows) is pinged; a dead one is replaced before use. A server
    lost while connections are busy fails those uses once (as it would with the ping: the
    ping cannot know the commit's fate either) and SQLAlchemy then renews the whole pool.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"a pooled connection was dead after {exc}") from exc


def _make_sqlite_serialisable(engine: Engine) -> None:
    """SQLite writers serialise; take the write lock at BEGIN so that reads made before a
    write (balance checks) cannot go stale under another writer."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
