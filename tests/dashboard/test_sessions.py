"""Signing out of the dashboard ends the session itself, not only the browser's cookie: a copy of
the cookie is refused, other sign-ins go on, and the record goes once the cookie has expired.
On PostgreSQL and on the embedded default (SQLite)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from api.dashboard import SESSION_CONTEXT, SessionCookie, _unseal
from api.deps import Runtime
from api.main import create_app
from ledger import atomic, chain
from payments import dashboard_sessions, parties, pii
from payments.tables import DashboardSessionEndedRow
from tests.api.conftest import Actor, make_key, settings_for
from tests.conftest import create_pg_database, drop_pg_database
from tests.dashboard.conftest import form_post, sign_in
from upah.db import make_session_factory
from upah.migrate import alembic_config, upgrade
from upah.settings import get_settings
from workers import tasks
from workers.app import celery_app
from workers.schedule import beat_schedule


def refused(web: TestClient) -> bool:
    r = web.get("/orders", follow_redirects=False)
    assert r.status_code in (200, 303), r.text
    return r.status_code == 303 and r.headers["location"] == "/login"


def with_cookie(web: TestClient, token: str) -> TestClient:
    """The client with this session cookie instead of its own (and its CSRF cookie kept)."""
    csrf = web.cookies.get("upah_csrf")
    web.cookies.clear()
    web.cookies.set("upah_session", token)
    if csrf:
        web.cookies.set("upah_csrf", csrf)
    return web


def runtime(web: TestClient) -> Runtime:
    return web.app.state.runtime  # type: ignore[attr-defined,no-any-return]


def unsealed(web: TestClient, token: str) -> SessionCookie:
    found = _unseal(runtime(web), token, datetime.now(UTC))
    assert found is not None
    return found


def ended_rows(factory: sessionmaker[Session]) -> list[DashboardSessionEndedRow]:
    with factory() as s:
        return list(s.execute(select(DashboardSessionEndedRow)).scalars())


def test_a_cookie_copied_before_signing_out_is_refused_after(client: TestClient, buyer: Actor) -> None:
    sign_in(client, buyer.key)
    stolen = client.cookies["upah_session"]
    assert not refused(client)
    form_post(client, "/logout", {})
    assert "upah_session" not in client.cookies
    assert refused(with_cookie(client, stolen))


def test_signing_out_ends_only_that_sign_in(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    sign_in(client, buyer.key)
    first = client.cookies["upah_session"]
    sign_in(client, buyer.key)  # the same key again, as from a second browser
    second = client.cookies["upah_session"]
    assert first != second
    first_id, second_id = unsealed(client, first).session_id, unsealed(client, second).session_id
    assert first_id != second_id  # a fresh session id at each sign-in

    with_cookie(client, first)
    form_post(client, "/logout", {})
    assert refused(with_cookie(client, first))
    assert not refused(with_cookie(client, second))
    ended = {row.session_id for row in ended_rows(pg_factory)}
    assert first_id in ended and second_id not in ended


def test_signing_out_twice_is_harmless(client: TestClient, buyer: Actor) -> None:
    sign_in(client, buyer.key)
    token = client.cookies["upah_session"]
    csrf = client.cookies["upah_csrf"]
    for _ in range(2):
        client.cookies.set("upah_session", token)
        r = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, "/login")
    assert refused(with_cookie(client, token))


def test_a_cookie_sealed_without_a_session_id_is_refused(client: TestClient, buyer: Actor) -> None:
    """Cookies from before session ids could not be signed out: their holders sign in again."""
    payload = json.dumps({"k": buyer.key, "t": int(datetime.now(UTC).timestamp())}, separators=(",", ":"))
    old = pii.encrypt(runtime(client).keyring, payload, context=SESSION_CONTEXT)
    assert refused(with_cookie(client, old))
    r = client.get("/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/login")


def test_the_ended_record_lasts_as_long_as_the_cookie(client: TestClient, buyer: Actor) -> None:
    sign_in(client, buyer.key)
    token = client.cookies["upah_session"]
    sealed = unsealed(client, token)
    form_post(client, "/logout", {})
    with runtime(client).read() as s:
        row = s.get(DashboardSessionEndedRow, sealed.session_id)
        assert row is not None and row.expires_at == sealed.expires_at
    issued = sealed.expires_at - timedelta(hours=8)
    assert abs((datetime.now(UTC) - issued).total_seconds()) < 60


def test_ended_sessions_are_purged_once_their_cookies_expire(factory: sessionmaker[Session]) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    gone, kept, edge = (f"purge-{n}-{now.timestamp():.0f}".ljust(22, "x") for n in ("gone", "kept", "edge"))
    with atomic(factory) as s:
        dashboard_sessions.end(s, session_id=gone, expires_at=now - timedelta(seconds=1))
        dashboard_sessions.end(s, session_id=kept, expires_at=now + timedelta(hours=1))
        dashboard_sessions.end(s, session_id=edge, expires_at=now)  # the cookie still works this second
        dashboard_sessions.end(s, session_id=kept, expires_at=now - timedelta(days=1))  # again: first stands
    with atomic(factory) as s:
        assert dashboard_sessions.purge_ended(s, now=now) >= 1
    with factory() as s:
        assert not dashboard_sessions.is_ended(s, gone)
        assert dashboard_sessions.is_ended(s, kept) and dashboard_sessions.is_ended(s, edge)
    with atomic(factory) as s:
        dashboard_sessions.purge_ended(s, now=now + timedelta(hours=1, seconds=1))
    with factory() as s:
        assert not dashboard_sessions.is_ended(s, kept) and not dashboard_sessions.is_ended(s, edge)


def test_the_beat_purges_ended_sessions(
    sqlite_url: str, sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hourly task, run as the worker runs it (settings from the environment), on SQLite."""
    factory = make_session_factory(sqlite_engine)
    expired = "beat-expired".ljust(22, "x")
    with atomic(factory) as s:
        dashboard_sessions.end(s, session_id=expired, expires_at=datetime.now(UTC) - timedelta(hours=1))
    assert "dashboard.purge_ended_sessions" in {job["task"] for job in beat_schedule().values()}
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("UPAH_SECRET_KEYS", pii.generate_key())
    monkeypatch.setenv("UPAH_SIGNING_KEY", chain.generate_private_key_text())
    monkeypatch.setenv("UPAH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    tasks.runtime.cache_clear()
    try:
        assert celery_app.tasks["dashboard.purge_ended_sessions"].run() >= 1
        tasks.runtime().db.engine.dispose()
    finally:
        get_settings.cache_clear()
        tasks.runtime.cache_clear()
    with factory() as s:
        assert not dashboard_sessions.is_ended(s, expired)


# --- the embedded default: SQLite --------------------------------------------------------------


@pytest.fixture
def sqlite_web(sqlite_url: str, sqlite_engine: Engine, tmp_path: Path) -> Iterator[tuple[TestClient, Actor]]:
    admin = make_key(make_session_factory(sqlite_engine), parties.Role.ADMIN)
    with TestClient(create_app(settings_for(sqlite_url, tmp_path)), raise_server_exceptions=False) as web:
        yield web, admin


def test_signing_out_ends_the_session_on_sqlite(sqlite_web: tuple[TestClient, Actor]) -> None:
    web, admin = sqlite_web
    sign_in(web, admin.key)
    stolen = web.cookies["upah_session"]
    sign_in(web, admin.key)
    other = web.cookies["upah_session"]
    with_cookie(web, stolen)
    form_post(web, "/logout", {})
    assert refused(with_cookie(web, stolen))
    assert not refused(with_cookie(web, other))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_0009_downgrades_and_upgrades_again(kind: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}" if kind == "sqlite" else create_pg_database("upah_mig")
    try:
        upgrade(url)
        command.downgrade(alembic_config(url), "0008")
        engine = create_engine(url)
        assert "dashboard_sessions_ended" not in inspect(engine).get_table_names()
        engine.dispose()
        upgrade(url)
        engine = create_engine(url)
        assert "dashboard_sessions_ended" in inspect(engine).get_table_names()
        engine.dispose()
    finally:
        if kind == "postgresql":
            drop_pg_database(url)
