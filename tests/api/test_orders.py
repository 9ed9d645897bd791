"""Buyers fund, post orders, and confirm pieces: every accepted piece becomes money owed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Actor, amount, confirm, deliver, order_body, post_order, register


def balance(client: TestClient, actor: Actor) -> dict[str, int]:
    r = client.get(f"/v1/organizations/{actor.organization_id}/balance", headers=actor.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    return {"available": amount(body["available"]), "held": amount(body["held"])}


def test_deposit_credits_the_buyers_available_balance(client: TestClient, buyer: Actor) -> None:
    assert balance(client, buyer) == {"available": 50_000_000, "held": 0}


def test_posting_an_order_holds_quantity_times_rate(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    assert amount(order["hold"]) == 50_000
    assert balance(client, buyer) == {"available": 49_950_000, "held": 50_000}


def test_an_order_beyond_the_available_funds_is_refused_and_writes_nothing(
    client: TestClient, buyer: Actor
) -> None:
    worker = register(client, buyer)
    r = client.post(
        "/v1/orders",
        headers=buyer.headers,
        json={
            "reference": "too-big",
            "product": "x",
            "piece_rate": {"rate": "1000000"},
            "minutes_per_piece": "3",
            "quantity": 100,
            "deadline": "2099-01-01",
            "region": "ID-JK",
            "assignments": [{"homeworker_id": worker["id"], "quantity": 100}],
        },
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "insufficient_funds"
    assert balance(client, buyer) == {"available": 50_000_000, "held": 0}
    again = post_order(client, buyer, worker["id"], reference="too-big")
    assert again["reference"] == "too-big"


def test_confirming_pieces_moves_the_earning_to_the_homeworker(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    delivery = deliver(client, buyer, order["id"], worker["id"], 40)
    confirmed = confirm(client, buyer, delivery["id"], accepted=38, rejected=2, reason="lem belepotan")
    assert amount(confirmed["earning"]) == 19_000
    r = client.get(f"/v1/homeworkers/{worker['id']}/balance", headers=buyer.headers)
    assert amount(r.json()["earned"]) == 19_000


def test_rates_quoted_per_kodi_convert_to_pieces_exactly(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(
        client,
        buyer,
        worker["id"],
        piece_rate={"rate": "2000", "unit": "kodi"},
        quantity=60,
        assignments=[{"homeworker_id": worker["id"], "quantity": 60}],
    )
    assert amount(order["hold"]) == 6_000
    d = deliver(client, buyer, order["id"], worker["id"], 7)
    assert amount(confirm(client, buyer, d["id"], accepted=7)["earning"]) == 700


def test_fractional_rates_round_half_even_on_the_cumulative_total(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(
        client,
        buyer,
        worker["id"],
        piece_rate={"rate": "12.5"},
        quantity=4,
        assignments=[{"homeworker_id": worker["id"], "quantity": 4}],
    )
    earnings = [
        amount(
            confirm(client, buyer, deliver(client, buyer, order["id"], worker["id"], 1)["id"], 1)["earning"]
        )
        for _ in range(4)
    ]
    assert earnings == [12, 13, 13, 12]  # 12.5 → 12, 25, 37.5 → 38, 50: each the increment
    assert sum(earnings) == amount(order["hold"]) == 50


def test_intermediary_commission_is_its_own_line_paid_on_top(
    client: TestClient, buyer: Actor, intermediary: Actor
) -> None:
    worker = register(client, intermediary)
    order = post_order(
        client,
        buyer,
        worker["id"],
        intermediary_id=intermediary.organization_id,
        commission_rate={"kind": "per_piece", "rate": "100"},
    )
    assert amount(order["hold"]) == 60_000
    d = deliver(client, intermediary, order["id"], worker["id"], 10)
    confirmed = confirm(client, buyer, d["id"], accepted=10)
    assert (amount(confirmed["earning"]), amount(confirmed["commission"])) == (5_000, 1_000)
    r = client.get(f"/v1/organizations/{intermediary.organization_id}/balance", headers=intermediary.headers)
    assert amount(r.json()["commission"]) == 1_000


def test_a_commission_rate_written_as_the_contracts_rate_is_rupiah_per_piece(
    client: TestClient, buyer: Actor, intermediary: Actor
) -> None:
    worker = register(client, intermediary)
    order = post_order(
        client,
        buyer,
        worker["id"],
        intermediary_id=intermediary.organization_id,
        commission_rate={"rate": "100", "currency": "IDR"},
    )
    assert order["commission_rate"] == {"kind": "per_piece", "rate": "100", "currency": "IDR"}
    assert amount(order["hold"]) == 60_000


def test_a_commission_in_another_currency_is_refused(
    client: TestClient, buyer: Actor, intermediary: Actor
) -> None:
    worker = register(client, intermediary)
    r = client.post(
        "/v1/orders",
        json=order_body(
            worker["id"],
            intermediary_id=intermediary.organization_id,
            commission_rate={"rate": "1", "currency": "USD"},
        ),
        headers=buyer.headers,
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_a_piece_worth_under_half_a_rupiah_confirms_with_its_commission_alone(
    client: TestClient, buyer: Actor, intermediary: Actor
) -> None:
    worker = register(client, intermediary)
    order = post_order(
        client,
        buyer,
        worker["id"],
        piece_rate={"rate": "5", "currency": "IDR", "unit": "kodi"},  # Rp 0.25 a piece
        quantity=20,
        assignments=[{"homeworker_id": worker["id"], "quantity": 20}],
        intermediary_id=intermediary.organization_id,
        commission_rate={"kind": "per_piece", "rate": "100"},
    )
    d = deliver(client, intermediary, order["id"], worker["id"], 1)
    confirmed = confirm(client, buyer, d["id"], accepted=1)
    assert (amount(confirmed["earning"]), amount(confirmed["commission"])) == (0, 100)
    later = deliver(client, intermediary, order["id"], worker["id"], 19)
    assert amount(confirm(client, buyer, later["id"], accepted=19)["earning"]) == 5  # the kodi in full


def test_percentage_commission_is_computed_on_the_earning(
    client: TestClient, buyer: Actor, intermediary: Actor
) -> None:
    worker = register(client, intermediary)
    order = post_order(
        client,
        buyer,
        worker["id"],
        intermediary_id=intermediary.organization_id,
        commission_rate={"kind": "percent", "rate": "10"},
    )
    d = deliver(client, intermediary, order["id"], worker["id"], 10)
    assert amount(confirm(client, buyer, d["id"], accepted=10)["commission"]) == 500


def test_accepting_more_than_the_assignment_is_over_delivery(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(
        client,
        buyer,
        worker["id"],
        quantity=10,
        assignments=[{"homeworker_id": worker["id"], "quantity": 10}],
    )
    deliver(client, buyer, order["id"], worker["id"], 10)
    r = client.post(
        f"/v1/orders/{order['id']}/deliveries",
        json={"homeworker_id": worker["id"], "pieces": 1},
        headers=buyer.headers,
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "over_delivery"


def test_rejected_pieces_need_a_reason(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    d = deliver(client, buyer, order["id"], worker["id"], 10)
    r = client.post(
        f"/v1/deliveries/{d['id']}/confirm", json={"accepted": 8, "rejected": 2}, headers=buyer.headers
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"


def test_a_delivery_is_confirmed_once(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    d = deliver(client, buyer, order["id"], worker["id"], 10)
    confirm(client, buyer, d["id"], accepted=10)
    r = client.post(
        f"/v1/deliveries/{d['id']}/confirm", json={"accepted": 10, "rejected": 0}, headers=buyer.headers
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "invalid_state"


def test_closing_releases_the_unused_hold_and_takes_no_more_deliveries(
    client: TestClient, buyer: Actor
) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    confirm(client, buyer, deliver(client, buyer, order["id"], worker["id"], 30)["id"], accepted=30)
    r = client.post(f"/v1/orders/{order['id']}/close", headers=buyer.headers)
    assert r.status_code == 200
    assert r.json()["status"] == "closed"
    assert balance(client, buyer) == {"available": 50_000_000 - 15_000, "held": 0}
    r = client.post(
        f"/v1/orders/{order['id']}/deliveries",
        json={"homeworker_id": worker["id"], "pieces": 1},
        headers=buyer.headers,
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "invalid_state"


def test_cancelling_keeps_what_was_earned(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    confirm(client, buyer, deliver(client, buyer, order["id"], worker["id"], 10)["id"], accepted=10)
    r = client.post(f"/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    assert r.json()["status"] == "cancelled"
    earned = client.get(f"/v1/homeworkers/{worker['id']}/balance", headers=buyer.headers).json()["earned"]
    assert amount(earned) == 5_000


def test_closing_with_deliveries_awaiting_confirmation_is_refused(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    deliver(client, buyer, order["id"], worker["id"], 10)
    r = client.post(f"/v1/orders/{order['id']}/close", headers=buyer.headers)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "invalid_state"


def test_a_whole_rate_and_minutes_come_back_as_they_were_quoted(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    posted = post_order(client, buyer, worker["id"], minutes_per_piece="10")
    read = client.get(f"/v1/orders/{posted['id']}", headers=buyer.headers).json()
    for order in (posted, read):
        assert (order["piece_rate"]["rate"], order["minutes_per_piece"]) == ("500", "10")


@pytest.mark.parametrize(("sent", "kept"), [(10, "10"), (2.5, "2.5"), ("2.5", "2.5")])
def test_minutes_per_piece_may_be_sent_as_a_json_number_or_as_text(
    client: TestClient, buyer: Actor, sent: object, kept: str
) -> None:
    worker = register(client, buyer)
    assert post_order(client, buyer, worker["id"], minutes_per_piece=sent)["minutes_per_piece"] == kept


@pytest.mark.parametrize("sent", [2.125, True, -3, "3 minutes"])
def test_minutes_per_piece_that_is_not_a_time_in_hundredths_is_refused(
    client: TestClient, buyer: Actor, sent: object
) -> None:
    worker = register(client, buyer)
    r = client.post(
        "/v1/orders", json=order_body(worker["id"], minutes_per_piece=sent), headers=buyer.headers
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_the_payslip_quotes_a_whole_rate_as_agreed(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    confirm(client, buyer, deliver(client, buyer, order["id"], worker["id"], 10)["id"], accepted=10)
    slip = client.get(f"/v1/homeworkers/{worker['id']}/payslip", headers=buyer.headers).json()
    assert slip["orders"][0]["piece_rate"]["rate"] == "500"
    text = client.get(f"/v1/homeworkers/{worker['id']}/payslip?format=text", headers=buyer.headers).text
    assert "rate 500 per pasang" in text
