"""The real app on the real PostgreSQL database, with builders for the actors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from integrations import phones
from ledger import atomic, chain, reports
from payments import parties, pii
from upah.db import make_engine, make_session_factory
from upah.migrate import upgrade
from upah.settings import Settings

TODAY = datetime.now(UTC).date()


def settings_for(url: str, tmp: Path, **overrides: Any) -> Settings:
    return Settings(
        database_url=url,
        upah_secret_keys=pii.generate_key(),
        upah_signing_key=chain.generate_private_key_text(),
        upah_data_dir=tmp,
        **overrides,
    )


@pytest.fixture
def api_settings(pg_url: str, tmp_path: Path) -> Settings:
    return settings_for(pg_url, tmp_path)


@pytest.fixture
def client(api_settings: Settings, pg_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings), raise_server_exceptions=False) as c:
        yield c
    with pg_factory() as s:
        assert reports.check_integrity(s) == []


@dataclass
class Actor:
    key: str
    organization_id: int | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_key(factory: sessionmaker[Session], role: parties.Role, organization_id: int | None = None) -> Actor:
    with atomic(factory) as s:
        return Actor(
            parties.create_api_key(s, organization_id=organization_id, role=role, now=datetime.now(UTC)),
            organization_id,
        )


@pytest.fixture
def admin(pg_factory: sessionmaker[Session]) -> Actor:
    return make_key(pg_factory, parties.Role.ADMIN)


def new_org(client: TestClient, admin: Actor, kind: str, name: str | None = None) -> int:
    r = client.post(
        "/v1/organizations",
        json={"name": name or f"{kind} {uuid.uuid4().hex[:6]}", "kind": kind},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def deposit(client: TestClient, admin: Actor, org_id: int, amount: int) -> None:
    r = client.post(
        f"/v1/organizations/{org_id}/deposits",
        json={"amount": {"amount": str(amount), "currency": "IDR"}, "reference": uuid.uuid4().hex},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text


@pytest.fixture
def buyer(client: TestClient, admin: Actor, pg_factory: sessionmaker[Session]) -> Actor:
    org = new_org(client, admin, "buyer")
    deposit(client, admin, org, 50_000_000)
    return make_key(pg_factory, parties.Role.BUYER, org)


@pytest.fixture
def other_buyer(client: TestClient, admin: Actor, pg_factory: sessionmaker[Session]) -> Actor:
    org = new_org(client, admin, "buyer")
    deposit(client, admin, org, 50_000_000)
    return make_key(pg_factory, parties.Role.BUYER, org)


@pytest.fixture
def intermediary(client: TestClient, admin: Actor, pg_factory: sessionmaker[Session]) -> Actor:
    org = new_org(client, admin, "intermediary")
    return make_key(pg_factory, parties.Role.INTERMEDIARY, org)


_phone_counter = iter(range(10_000, 99_999))


def fresh_phone() -> str:
    """A fictitious demo number in local form (08…), unique per call."""
    return "0" + phones.demo_number(next(_phone_counter) + uuid.uuid4().int % 50_000)[3:]


def register(client: TestClient, actor: Actor, *, region: str = "ID-JK", **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "Siti Aminah",
        "phone": fresh_phone(),
        "region": region,
        "wallet": {"provider": "dana", "account": fresh_phone()},
        **overrides,
    }
    r = client.post("/v1/homeworkers", json=body, headers=actor.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def order_body(homeworker_id: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": f"PO-{uuid.uuid4().hex[:8]}",
        "product": "sandal insole gluing",
        "piece_rate": {"rate": "500", "currency": "IDR", "unit": "pasang"},
        "minutes_per_piece": "3",
        "quantity": 100,
        "deadline": (TODAY + timedelta(days=14)).isoformat(),
        "region": "ID-JK",
        "assignments": [{"homeworker_id": homeworker_id, "quantity": 100}],
    }
    body.update(overrides)
    return body


def post_order(client: TestClient, actor: Actor, homeworker_id: int, **overrides: Any) -> dict[str, Any]:
    r = client.post("/v1/orders", json=order_body(homeworker_id, **overrides), headers=actor.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def deliver(
    client: TestClient, actor: Actor, order_id: int, homeworker_id: int, pieces: int
) -> dict[str, Any]:
    r = client.post(
        f"/v1/orders/{order_id}/deliveries",
        json={"homeworker_id": homeworker_id, "pieces": pieces},
        headers=actor.headers,
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def confirm(
    client: TestClient,
    actor: Actor,
    delivery_id: int,
    accepted: int,
    rejected: int = 0,
    reason: str | None = None,
) -> dict[str, Any]:
    r = client.post(
        f"/v1/deliveries/{delivery_id}/confirm",
        json={"accepted": accepted, "rejected": rejected, "reason": reason},
        headers=actor.headers,
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def amount(money: dict[str, str]) -> int:
    assert money["currency"] == "IDR"
    return int(money["amount"])


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[tuple[TestClient, Actor, Actor]]:
    """(client, admin, buyer) on a fresh SQLite file, the buyer's account holding Rp 100,000."""
    url = f"sqlite:///{tmp_path / 'upah.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with TestClient(create_app(settings_for(url, tmp_path)), raise_server_exceptions=False) as client:
        admin = make_key(factory, parties.Role.ADMIN)
        org = new_org(client, admin, "buyer")
        deposit(client, admin, org, 100_000)
        yield client, admin, make_key(factory, parties.Role.BUYER, org)
    engine.dispose()
