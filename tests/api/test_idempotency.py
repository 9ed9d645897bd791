"""Every POST honours Idempotency-Key: same request → the first response; different → 409."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Actor, order_body, register


def test_the_same_key_and_body_returns_the_first_response_and_posts_once(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    worker = register(client, buyer)
    body = order_body(worker["id"])
    headers = {**buyer.headers, "Idempotency-Key": "order-once"}
    first = client.post("/v1/orders", json=body, headers=headers)
    second = client.post("/v1/orders", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    with pg_factory() as s:
        n = s.execute(
            text("SELECT count(*) FROM orders WHERE reference = :r"), {"r": body["reference"]}
        ).scalar_one()
    assert n == 1


def test_the_same_key_with_a_different_body_is_a_conflict(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    headers = {**buyer.headers, "Idempotency-Key": "order-twice"}
    assert client.post("/v1/orders", json=order_body(worker["id"]), headers=headers).status_code == 201
    r = client.post(
        "/v1/orders",
        json=order_body(
            worker["id"], quantity=50, assignments=[{"homeworker_id": worker["id"], "quantity": 50}]
        ),
        headers=headers,
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "idempotency_conflict"


def test_keys_are_scoped_to_the_caller(client: TestClient, buyer: Actor, other_buyer: Actor) -> None:
    mine, theirs = register(client, buyer), register(client, other_buyer)
    assert (
        client.post(
            "/v1/orders", json=order_body(mine["id"]), headers={**buyer.headers, "Idempotency-Key": "shared"}
        ).status_code
        == 201
    )
    r = client.post(
        "/v1/orders",
        json=order_body(theirs["id"]),
        headers={**other_buyer.headers, "Idempotency-Key": "shared"},
    )
    assert r.status_code == 201


def test_an_error_response_is_replayed_too(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    body = order_body(worker["id"], piece_rate={"rate": "10000000"})
    headers = {**buyer.headers, "Idempotency-Key": "too-big"}
    first = client.post("/v1/orders", json=body, headers=headers)
    second = client.post("/v1/orders", json=body, headers=headers)
    assert first.status_code == second.status_code == 409
    assert first.json() == second.json()


def test_the_key_survives_a_restart(client: TestClient, buyer: Actor, api_settings: object) -> None:
    from api.main import create_app

    worker = register(client, buyer)
    body = order_body(worker["id"])
    headers = {**buyer.headers, "Idempotency-Key": "restart"}
    first = client.post("/v1/orders", json=body, headers=headers)
    with TestClient(create_app(api_settings)) as fresh:  # type: ignore[arg-type]
        again = fresh.post("/v1/orders", json=body, headers=headers)
    assert again.json() == first.json()
