"""Homeworkers' personal data: normalised, encrypted at rest, shown masked."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Actor, fresh_phone, post_order, register


def test_a_local_phone_number_is_normalised_and_shown_masked(client: TestClient, buyer: Actor) -> None:
    r = client.post(
        "/v1/homeworkers",
        headers=buyer.headers,
        json={
            "name": "Siti Aminah",
            "phone": "0820-0000-1234",
            "region": "ID-JK",
            "wallet": {"provider": "dana", "account": "082000001234"},
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["phone"] == "+62820****1234"
    assert r.json()["wallet"]["account"] == "+62820****1234"


def test_the_raw_row_holds_no_plaintext_phone_nik_or_name(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    r = client.post(
        "/v1/homeworkers",
        headers=buyer.headers,
        json={
            "name": "Dewi Lestari",
            "phone": "082000005678",
            "region": "ID-JK",
            "nik": "3171234567890123",
            "wallet": {"provider": "ovo", "account": "082000005678"},
        },
    )
    worker_id = r.json()["id"]
    with pg_factory() as s:
        row = s.execute(text("SELECT * FROM homeworkers WHERE id = :i"), {"i": worker_id}).mappings().one()
    raw = " ".join(str(v) for v in row.values())
    for secret in ("82000005678", "3171234567890123", "Dewi"):
        assert secret not in raw
    assert "nik" not in r.json() or r.json().get("nik") is None
    assert r.json()["has_nik"] is True


def test_the_same_phone_cannot_be_registered_twice(client: TestClient, buyer: Actor) -> None:
    body = {
        "name": "A",
        "phone": "082000009999",
        "region": "ID-JK",
        "wallet": {"provider": "dana", "account": "082000009999"},
    }
    assert client.post("/v1/homeworkers", json=body, headers=buyer.headers).status_code == 201
    r = client.post("/v1/homeworkers", json={**body, "phone": "+6282000009999"}, headers=buyer.headers)
    assert r.status_code == 409
    assert "082000009999" not in r.text


def test_an_unknown_wallet_provider_is_refused(client: TestClient, buyer: Actor) -> None:
    r = client.post(
        "/v1/homeworkers",
        headers=buyer.headers,
        json={
            "name": "A",
            "phone": "082000001111",
            "region": "ID-JK",
            "wallet": {"provider": "paypal", "account": "082000001111"},
        },
    )
    assert r.status_code == 422


def test_an_admin_registers_her_with_the_organisation_it_names(
    client: TestClient, admin: Actor, buyer: Actor
) -> None:
    worker = register(client, admin, organization_id=buyer.organization_id)
    assert client.get(f"/v1/homeworkers/{worker['id']}", headers=buyer.headers).status_code == 200
    assert post_order(client, buyer, worker["id"])["id"]


def test_an_admin_that_names_no_organisation_is_told_to(client: TestClient, admin: Actor) -> None:
    body = {
        "name": "Siti",
        "phone": fresh_phone(),
        "region": "ID-JK",
        "wallet": {"provider": "dana", "account": fresh_phone()},
    }
    r = client.post("/v1/homeworkers", json=body, headers=admin.headers)
    assert r.status_code == 422
    assert r.json()["error"]["details"]["field"] == "organization_id"
    r = client.post("/v1/homeworkers", json={**body, "organization_id": 2**40}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "organization_id"


def test_a_buyer_cannot_register_her_with_another_organisation(
    client: TestClient, buyer: Actor, other_buyer: Actor
) -> None:
    body = {
        "name": "Siti",
        "phone": fresh_phone(),
        "region": "ID-JK",
        "wallet": {"provider": "dana", "account": fresh_phone()},
        "organization_id": other_buyer.organization_id,
    }
    r = client.post("/v1/homeworkers", json=body, headers=buyer.headers)
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "organization_id"


def test_an_organisation_she_works_with_records_that_her_wallet_is_registered(
    client: TestClient, buyer: Actor
) -> None:
    worker = register(client, buyer)
    assert worker["wallet"]["registered"] is False
    path = f"/v1/homeworkers/{worker['id']}/wallet/registration"
    r = client.put(path, json={"registered": True}, headers=buyer.headers)
    assert r.status_code == 200, r.text
    assert r.json()["wallet"]["registered"] is True
    shown = client.get(f"/v1/homeworkers/{worker['id']}", headers=buyer.headers).json()
    assert shown["wallet"]["registered"] is True


def test_another_organisation_cannot_mark_her_wallet_and_a_bad_body_is_refused(
    client: TestClient, buyer: Actor, other_buyer: Actor
) -> None:
    worker = register(client, buyer)
    path = f"/v1/homeworkers/{worker['id']}/wallet/registration"
    assert client.put(path, json={"registered": True}, headers=other_buyer.headers).status_code == 404
    refused = client.put(path, json={"registered": "maybe"}, headers=buyer.headers)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "validation_error"
    shown = client.get(f"/v1/homeworkers/{worker['id']}", headers=buyer.headers).json()
    assert shown["wallet"]["registered"] is False
