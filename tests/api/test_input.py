"""Bad input gets a 4xx with a machine-readable code, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Actor, deliver, deposit, order_body, post_order, register


def counts(factory: sessionmaker[Session]) -> tuple[int, ...]:
    with factory() as s:
        return tuple(
            s.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("orders", "deliveries", "homeworkers", "ledger_entries", "assignments")
        )


BAD_ORDERS: list[tuple[str, dict[str, Any]]] = [
    ("negative quantity", {"quantity": -5}),
    ("zero quantity", {"quantity": 0}),
    ("quantity beyond int32", {"quantity": 2**31}),
    ("quantity as a string", {"quantity": "100"}),
    ("rate with five decimals", {"piece_rate": {"rate": "12.12345"}}),
    ("negative rate", {"piece_rate": {"rate": "-1"}}),
    ("rate as a float", {"piece_rate": {"rate": 12.5}}),
    ("unknown unit", {"piece_rate": {"rate": "10", "unit": "gross"}}),
    ("foreign currency", {"piece_rate": {"rate": "10", "currency": "USD"}}),
    ("unknown region", {"region": "ID-XX"}),
    ("deadline in the past", {"deadline": "2020-01-01"}),
    ("unknown field", {"colour": "red"}),
    ("no assignments", {"assignments": []}),
    ("assignments beyond quantity", {"quantity": 5}),
    ("commission without intermediary", {"commission_rate": {"kind": "percent", "rate": "10"}}),
]


@pytest.mark.parametrize(("name", "change"), BAD_ORDERS, ids=[n for n, _ in BAD_ORDERS])
def test_bad_orders_are_refused_and_write_nothing(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session], name: str, change: dict[str, Any]
) -> None:
    worker = register(client, buyer)
    before = counts(pg_factory)
    r = client.post("/v1/orders", json=order_body(worker["id"], **change), headers=buyer.headers)
    assert 400 <= r.status_code < 500, (name, r.text)
    assert r.json()["error"]["code"] == "validation_error"
    assert r.json()["error"]["message"]
    assert counts(pg_factory) == before


@pytest.mark.parametrize("pieces", [-1, 0, 2**31, "3", 1.5])
def test_bad_piece_counts_are_refused(client: TestClient, buyer: Actor, pieces: object) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    r = client.post(
        f"/v1/orders/{order['id']}/deliveries",
        json={"homeworker_id": worker["id"], "pieces": pieces},
        headers=buyer.headers,
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("phone", ["12345", "0812", "+1 not a number", "08" + "1" * 30])
def test_malformed_phones_are_refused(client: TestClient, buyer: Actor, phone: str) -> None:
    r = client.post(
        "/v1/homeworkers",
        headers=buyer.headers,
        json={
            "name": "Siti",
            "phone": phone,
            "region": "ID-JK",
            "wallet": {"provider": "dana", "account": "081234567890"},
        },
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"
    assert phone not in r.text


def test_unknown_wage_region_for_a_homeworker_is_refused(client: TestClient, buyer: Actor) -> None:
    r = client.post(
        "/v1/homeworkers",
        headers=buyer.headers,
        json={
            "name": "Siti",
            "phone": "081234567890",
            "region": "ID-ZZ",
            "wallet": {"provider": "dana", "account": "081234567890"},
        },
    )
    assert r.status_code == 422


def test_a_body_over_one_megabyte_is_refused(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    before = counts(pg_factory)
    r = client.post(
        "/v1/orders",
        content=b'{"reference": "' + b"x" * (1024 * 1024) + b'"}',
        headers={**buyer.headers, "content-type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
    assert counts(pg_factory) == before


def test_malformed_json_is_a_validation_error(client: TestClient, buyer: Actor) -> None:
    r = client.post(
        "/v1/orders", content=b"{not json", headers={**buyer.headers, "content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"


def test_negative_deposit_is_refused(client: TestClient, admin: Actor, buyer: Actor) -> None:
    r = client.post(
        f"/v1/organizations/{buyer.organization_id}/deposits",
        json={"amount": {"amount": "-100"}, "reference": "neg"},
        headers=admin.headers,
    )
    assert r.status_code == 422


def test_deposit_amount_as_a_number_is_refused(client: TestClient, admin: Actor, buyer: Actor) -> None:
    r = client.post(
        f"/v1/organizations/{buyer.organization_id}/deposits",
        json={"amount": {"amount": 100}, "reference": "num"},
        headers=admin.headers,
    )
    assert r.status_code == 422


def test_text_with_a_nul_character_is_refused_and_writes_nothing(
    client: TestClient, admin: Actor, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    worker = register(client, buyer)
    before = counts(pg_factory)
    r = client.post("/v1/organizations", json={"name": "a\u0000b", "kind": "buyer"}, headers=admin.headers)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error")
    r = client.post("/v1/orders", json=order_body(worker["id"], reference="PO-\u0000"), headers=buyer.headers)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error")
    assert counts(pg_factory) == before


def test_an_order_whose_hold_would_not_fit_the_ledger_is_refused(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    worker = register(client, buyer)
    most = 2**31 - 1
    body = order_body(
        worker["id"],
        quantity=most,
        piece_rate={"rate": "99999999999", "currency": "IDR"},
        assignments=[{"homeworker_id": worker["id"], "quantity": most}],
    )
    before = counts(pg_factory)
    r = client.post("/v1/orders", json=body, headers=buyer.headers)
    assert r.status_code == 422
    assert r.json()["error"]["details"]["field"] == "quantity"
    assert counts(pg_factory) == before


def test_deposits_that_would_take_a_balance_beyond_64_bits_are_refused_not_a_500(
    client: TestClient, admin: Actor, buyer: Actor
) -> None:
    def deposit(n: int) -> int:
        return client.post(
            f"/v1/organizations/{buyer.organization_id}/deposits",
            json={"amount": {"amount": "999999999999999999"}, "reference": f"huge-{n}-{buyer.key[-6:]}"},
            headers=admin.headers,
        ).status_code

    codes = [deposit(n) for n in range(10)]
    assert 500 not in codes
    assert codes[-1] == 422


def test_the_longest_rate_is_stored_exactly_and_paid_in_full_on_sqlite(
    sqlite_app: tuple[TestClient, Actor, Actor],
) -> None:
    """SQLite keeps a NUMERIC as a double: the rate's bounds keep it exact there too."""
    client, admin, buyer = sqlite_app
    assert buyer.organization_id is not None
    deposit(client, admin, buyer.organization_id, 10**15)
    worker = register(client, buyer)
    body = order_body(
        worker["id"],
        piece_rate={"rate": "99999999999.0008", "currency": "IDR", "unit": "piece"},
        quantity=1_000,
        assignments=[{"homeworker_id": worker["id"], "quantity": 1_000}],
    )
    r = client.post("/v1/orders", json=body, headers=buyer.headers)
    assert r.status_code == 201, r.text
    assert r.json()["piece_rate"]["rate"] == "99999999999.0008"
    d = deliver(client, buyer, r.json()["id"], worker["id"], 1_000)
    confirmed = client.post(
        f"/v1/deliveries/{d['id']}/confirm", json={"accepted": 1_000, "rejected": 0}, headers=buyer.headers
    )
    assert confirmed.status_code == 200, confirmed.text
