"""Twenty buyers' clerks at once can never accept more pieces than an order put out."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Actor, amount, post_order, register


def test_twenty_concurrent_deliveries_and_confirmations_never_exceed_the_order(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])  # 100 pairs
    barrier = Barrier(20)

    def clerk(_: int) -> int:
        barrier.wait()
        r = client.post(
            f"/v1/orders/{order['id']}/deliveries",
            json={"homeworker_id": worker["id"], "pieces": 10},
            headers=buyer.headers,
        )
        if r.status_code != 201:
            assert r.json()["error"]["code"] == "over_delivery", r.text
            return 0
        c = client.post(
            f"/v1/deliveries/{r.json()['id']}/confirm",
            json={"accepted": 10, "rejected": 0},
            headers=buyer.headers,
        )
        assert c.status_code == 200, c.text
        return 10

    with ThreadPoolExecutor(20) as pool:
        accepted = sum(pool.map(clerk, range(20)))
    assert accepted == 100
    got = client.get(f"/v1/orders/{order['id']}", headers=buyer.headers).json()
    assert got["progress"]["accepted"] == 100
    assert amount(got["held_remaining"]) == 0
    with pg_factory() as s:
        total = s.execute(
            text("SELECT coalesce(sum(earning), 0) FROM deliveries WHERE order_id = :o"), {"o": order["id"]}
        ).scalar_one()
    assert total == 50_000
