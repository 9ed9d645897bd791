"""Keys, roles, and the rule that another organisation's objects do not exist for you."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Actor, deliver, new_org, post_order, register


def test_a_request_without_a_key_is_unauthorized(client: TestClient) -> None:
    r = client.get("/v1/orders/1")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"


def test_a_made_up_key_is_unauthorized(client: TestClient) -> None:
    r = client.get("/v1/orders/1", headers={"Authorization": "Bearer upah_deadbeefdeadbeef_nope"})
    assert r.status_code == 401


def test_only_an_admin_creates_organisations(client: TestClient, buyer: Actor) -> None:
    r = client.post("/v1/organizations", json={"name": "x", "kind": "buyer"}, headers=buyer.headers)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"


def test_keys_are_stored_only_as_hashes(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    secret = buyer.key.split("_", 2)[2]
    with pg_factory() as s:
        hashes = s.execute(text("SELECT secret_hash FROM api_keys")).scalars().all()
    assert all(secret not in h for h in hashes)


@pytest.fixture
def scene(client: TestClient, buyer: Actor) -> dict[str, int]:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    delivery = deliver(client, buyer, order["id"], worker["id"], 5)
    return {
        "org": buyer.organization_id or 0,
        "worker": worker["id"],
        "order": order["id"],
        "delivery": delivery["id"],
    }


ROUTES = [
    ("GET", "/v1/organizations/{org}", None),
    ("GET", "/v1/organizations/{org}/balance", None),
    ("GET", "/v1/homeworkers/{worker}", None),
    ("GET", "/v1/homeworkers/{worker}/balance", None),
    ("GET", "/v1/homeworkers/{worker}/payslip", None),
    ("POST", "/v1/homeworkers/{worker}/pin-reset", None),
    (
        "POST",
        "/v1/homeworkers/{worker}/adjustments",
        {"kind": "bonus", "amount": {"amount": "1000"}, "memo": "x"},
    ),
    ("GET", "/v1/orders/{order}", None),
    ("GET", "/v1/orders/{order}/deliveries", None),
    ("POST", "/v1/orders/{order}/deliveries", {"homeworker_id": 1, "pieces": 1}),
    ("POST", "/v1/orders/{order}/close", None),
    ("POST", "/v1/orders/{order}/cancel", None),
    ("GET", "/v1/deliveries/{delivery}", None),
    ("POST", "/v1/deliveries/{delivery}/confirm", {"accepted": 5, "rejected": 0}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_another_organisations_objects_answer_not_found(
    client: TestClient, other_buyer: Actor, scene: dict[str, int], method: str, path: str, body: object
) -> None:
    r = client.request(method, path.format(**scene), json=body, headers=other_buyer.headers)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"
    assert str(scene["worker"]) not in r.json()["error"]["message"]


def test_an_order_is_read_by_its_buyer_alone_as_the_contract_says(
    client: TestClient, admin: Actor, buyer: Actor, intermediary: Actor, pg_factory: sessionmaker[Session]
) -> None:
    from payments.parties import Role
    from tests.api.conftest import make_key

    worker = register(client, intermediary)
    carried = post_order(client, buyer, worker["id"], intermediary_id=intermediary.organization_id)
    assert client.get(f"/v1/orders/{carried['id']}", headers=buyer.headers).status_code == 200
    for other in (intermediary, admin, make_key(pg_factory, Role.AUDITOR, buyer.organization_id)):
        refused = client.get(f"/v1/orders/{carried['id']}", headers=other.headers)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    stranger = make_key(pg_factory, Role.INTERMEDIARY, new_org(client, admin, "intermediary"))
    assert client.get(f"/v1/homeworkers/{worker['id']}", headers=stranger.headers).status_code == 404
