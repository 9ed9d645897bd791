"""The in-process API-key cache: it saves the database a query per request, and a revoked
key is still refused within ``AUTH_CACHE_SECONDS``."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.deps import AUTH_CACHE_SECONDS, KeyCache
from ledger import atomic
from payments.parties import Principal, Role
from payments.tables import ApiKeyRow
from tests.api.conftest import Actor

WHO = Principal(key_id=7, role=Role.BUYER, organization_id=3)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_for_the_ttl_only() -> None:
    clock = Clock()
    cache = KeyCache(ttl=2.0, clock=clock)
    cache.put(b"k", WHO)
    assert cache.get(b"k") == WHO
    clock.now += 1.9
    assert cache.get(b"k") == WHO
    clock.now += 0.2
    assert cache.get(b"k") is None


def test_a_full_cache_drops_expired_entries_first_and_never_grows_past_its_bound() -> None:
    clock = Clock()
    cache = KeyCache(ttl=1.0, max_entries=3, clock=clock)
    cache.put(b"old", WHO)
    clock.now += 2
    cache.put(b"a", WHO)
    cache.put(b"b", WHO)
    cache.put(b"c", WHO)  # full: the expired entry goes
    assert cache.get(b"old") is None and cache.get(b"a") == WHO
    cache.put(b"d", WHO)  # full of live entries: start again
    assert len(cache._entries) <= 3 and cache.get(b"d") == WHO


def test_a_zero_ttl_caches_nothing() -> None:
    cache = KeyCache(ttl=0)
    cache.put(b"k", WHO)
    assert cache.get(b"k") is None


def test_the_ttl_is_seconds_not_minutes() -> None:
    assert 0 < AUTH_CACHE_SECONDS <= 5


def test_a_revoked_key_is_refused_once_the_cached_principal_expires(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    clock = Clock()
    client.app.state.runtime.keys = KeyCache(ttl=AUTH_CACHE_SECONDS, clock=clock)  # type: ignore[attr-defined]
    assert client.get("/v1/orders/999999", headers=buyer.headers).status_code == 404
    with atomic(pg_factory) as s:
        s.execute(
            update(ApiKeyRow)
            .where(ApiKeyRow.public_id == buyer.key.split("_")[1])
            .values(revoked_at=datetime.now(UTC))
        )
    clock.now += AUTH_CACHE_SECONDS
    assert client.get("/v1/orders/999999", headers=buyer.headers).status_code == 401


def test_a_wrong_key_is_never_cached(client: TestClient, buyer: Actor) -> None:
    client.app.state.runtime.keys = KeyCache()  # type: ignore[attr-defined]
    wrong = {"Authorization": f"Bearer {buyer.key[:-2]}xx"}
    assert client.get("/v1/orders/999999", headers=wrong).status_code == 401
    assert client.get("/v1/orders/999999", headers=wrong).status_code == 401
    assert client.get("/v1/orders/999999", headers=buyer.headers).status_code == 404
    assert len(client.app.state.runtime.keys._entries) == 1  # type: ignore[attr-defined]
