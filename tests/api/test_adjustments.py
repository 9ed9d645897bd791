"""Allowances, bonuses and advances; advance recovery takes at most half of an earning."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from tests.api.conftest import Actor, amount, confirm, deliver, post_order, register


def earned(client: TestClient, actor: Actor, worker_id: int) -> int:
    return amount(client.get(f"/v1/homeworkers/{worker_id}/balance", headers=actor.headers).json()["earned"])


def adjust(
    client: TestClient, actor: Actor, worker_id: int, kind: str, value: int, memo: str
) -> dict[str, object]:
    r = client.post(
        f"/v1/homeworkers/{worker_id}/adjustments",
        json={"kind": kind, "amount": {"amount": str(value)}, "memo": memo},
        headers=actor.headers,
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_an_electricity_allowance_is_owed_at_once(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    adjust(client, buyer, worker["id"], "allowance", 25_000, "tunjangan listrik November")
    assert earned(client, buyer, worker["id"]) == 25_000


def test_an_advance_is_recovered_from_later_earnings_at_most_half_at_a_time(
    client: TestClient, buyer: Actor
) -> None:
    worker = register(client, buyer)
    adjust(client, buyer, worker["id"], "advance", 150_000, "kasbon for school fees")
    order = post_order(
        client,
        buyer,
        worker["id"],
        quantity=1000,
        assignments=[{"homeworker_id": worker["id"], "quantity": 1000}],
    )
    first = confirm(client, buyer, deliver(client, buyer, order["id"], worker["id"], 200)["id"], accepted=200)
    assert (amount(first["earning"]), amount(first["advance_recovered"])) == (100_000, 50_000)
    second = confirm(
        client, buyer, deliver(client, buyer, order["id"], worker["id"], 400)["id"], accepted=400
    )
    assert amount(second["advance_recovered"]) == 100_000
    third = confirm(client, buyer, deliver(client, buyer, order["id"], worker["id"], 100)["id"], accepted=100)
    assert amount(third["advance_recovered"]) == 0
    assert earned(client, buyer, worker["id"]) == 150_000 + 100_000 + 200_000 + 50_000 - 150_000


def test_an_adjustment_needs_a_memo(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    r = client.post(
        f"/v1/homeworkers/{worker['id']}/adjustments",
        json={"kind": "bonus", "amount": {"amount": "1000"}, "memo": ""},
        headers=buyer.headers,
    )
    assert r.status_code == 422


def test_a_bonus_beyond_the_buyers_funds_is_refused(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    r = client.post(
        f"/v1/homeworkers/{worker['id']}/adjustments",
        json={"kind": "bonus", "amount": {"amount": "999999999999"}, "memo": "THR"},
        headers=buyer.headers,
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "insufficient_funds"
    assert earned(client, buyer, worker["id"]) == 0


def test_the_payslip_lists_work_adjustments_and_balances(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    confirm(
        client,
        buyer,
        deliver(client, buyer, order["id"], worker["id"], 20)["id"],
        accepted=19,
        rejected=1,
        reason="lem belepotan",
    )
    adjust(client, buyer, worker["id"], "bonus", 50_000, "THR Idul Fitri")
    slip = client.get(f"/v1/homeworkers/{worker['id']}/payslip", headers=buyer.headers).json()
    assert slip["orders"][0]["accepted"] == 19
    assert slip["orders"][0]["rejection_reasons"] == ["lem belepotan"]
    assert amount(slip["orders"][0]["earnings"]) == 9_500
    assert slip["orders"][0]["meets_benchmark"] is False
    assert [a["kind"] for a in slip["adjustments"]] == ["bonus"]
    assert amount(slip["closing_balance"]) == 59_500
    text = client.get(f"/v1/homeworkers/{worker['id']}/payslip?format=text", headers=buyer.headers)
    assert text.headers["content-type"].startswith("text/plain")
    assert "Rp59.500" in text.text
    assert "lem belepotan" in text.text


def test_the_payslip_period_filters_by_date(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    confirm(client, buyer, deliver(client, buyer, order["id"], worker["id"], 20)["id"], accepted=20)
    slip = client.get(
        f"/v1/homeworkers/{worker['id']}/payslip?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z",
        headers=buyer.headers,
    ).json()
    assert slip["orders"] == []
    assert amount(slip["closing_balance"]) == 0


def test_consecutive_payslips_count_work_at_their_boundary_once(client: TestClient, buyer: Actor) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"], deadline="2026-12-31")
    delivery = deliver(client, buyer, order["id"], worker["id"], 10)
    boundary = datetime(2026, 2, 1, tzinfo=UTC)
    real_clock = runtime.clock
    runtime.clock = lambda: boundary  # confirmed on the stroke of February
    try:
        confirm(client, buyer, delivery["id"], accepted=10)
    finally:
        runtime.clock = real_clock
    path = f"/v1/homeworkers/{worker['id']}/payslip"
    january = client.get(
        path, params={"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}, headers=buyer.headers
    ).json()
    february = client.get(
        path, params={"from": "2026-02-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, headers=buyer.headers
    ).json()
    assert (amount(january["totals"]["earnings"]), amount(february["totals"]["earnings"])) == (0, 5_000)
    assert january["closing_balance"] == february["opening_balance"]


def test_a_payslip_to_a_date_includes_that_whole_day(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    confirm(client, buyer, deliver(client, buyer, order["id"], worker["id"], 10)["id"], accepted=10)
    today = datetime.now(UTC).date().isoformat()
    slip = client.get(
        f"/v1/homeworkers/{worker['id']}/payslip", params={"from": today, "to": today}, headers=buyer.headers
    ).json()
    assert amount(slip["totals"]["earnings"]) == 5_000
