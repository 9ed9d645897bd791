"""Every order is measured against the regional minimum wage; `block` refuses, `warn` records."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from payments.parties import Role
from tests.api.conftest import Actor, make_key, new_org, order_body, post_order, register, settings_for


def test_a_rate_below_the_benchmark_is_accepted_with_its_finding_under_warn(
    client: TestClient, buyer: Actor
) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])  # Rp 500 a pair at 3 minutes: Rp 10,000 an hour
    finding = order["fair_rate"]
    assert finding["meets_benchmark"] is False
    assert finding["effective_hourly"] == "10000.00"
    assert finding["policy"] == "warn"
    assert finding["region"] == "ID-JK"
    assert finding["homeworkers"][str(worker["id"])]["fair_rate"] == finding["fair_rate"]


def test_a_rate_at_the_benchmark_meets_it(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"], piece_rate={"rate": "2000"}, minutes_per_piece="3")
    assert order["fair_rate"]["meets_benchmark"] is True


def test_the_homeworkers_own_region_decides(client: TestClient, buyer: Actor) -> None:
    yogya = register(client, buyer, region="ID-YO-KOTA-YOGYAKARTA")
    order = post_order(
        client, buyer, yogya["id"], piece_rate={"rate": "1000", "unit": "piece"}, minutes_per_piece="3"
    )
    per_worker = order["fair_rate"]["homeworkers"][str(yogya["id"])]
    assert per_worker["region"] == "ID-YO-KOTA-YOGYAKARTA"
    assert per_worker["meets_benchmark"] is True
    assert order["fair_rate"]["meets_benchmark"] is False  # the order's own region, Jakarta, is higher


def test_block_policy_refuses_with_the_fair_rate_in_details(
    pg_url: str, tmp_path: Path, pg_factory: sessionmaker[Session], admin: Actor
) -> None:
    with TestClient(create_app(settings_for(pg_url, tmp_path, upah_fair_rate_policy="block"))) as c:
        org = new_org(c, admin, "buyer")
        c.post(
            f"/v1/organizations/{org}/deposits",
            json={"amount": {"amount": "1000000"}, "reference": "d"},
            headers=admin.headers,
        )
        buyer = make_key(pg_factory, Role.BUYER, org)
        worker = register(c, buyer)
        r = c.post("/v1/orders", json=order_body(worker["id"]), headers=buyer.headers)
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["code"] == "rate_below_minimum_wage"
        assert error["details"]["fair_rate"] == "1656.04"  # 5,729,876 ÷ 173 × 3 ÷ 60, rounded up
        assert (
            c.get(f"/v1/organizations/{org}/balance", headers=buyer.headers).json()["held"]["amount"] == "0"
        )


def test_off_policy_records_no_finding(
    pg_url: str, tmp_path: Path, pg_factory: sessionmaker[Session], admin: Actor
) -> None:
    with TestClient(create_app(settings_for(pg_url, tmp_path, upah_fair_rate_policy="off"))) as c:
        org = new_org(c, admin, "buyer")
        c.post(
            f"/v1/organizations/{org}/deposits",
            json={"amount": {"amount": "1000000"}, "reference": "d"},
            headers=admin.headers,
        )
        buyer = make_key(pg_factory, Role.BUYER, org)
        order = post_order(c, buyer, register(c, buyer)["id"])
        assert order["fair_rate"] == {"policy": "off"}
