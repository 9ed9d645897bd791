"""The pilot report page shows each key only the payouts its organisation may count."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from ledger import atomic
from payments import parties
from payments.tables import PayoutRow
from tests.api.conftest import Actor, confirm, deliver, make_key, new_org, post_order, register
from tests.dashboard.conftest import sign_in

PIECES = 37  # an order's pieces at its rate make an amount no other test pays


def paid_directly(client: TestClient, buyer: Actor, factory: sessionmaker[Session]) -> int:
    """A buyer's payout for work that went through no intermediary, settled; its amount."""
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    confirm(client, buyer, deliver(client, buyer, order["id"], worker["id"], PIECES)["id"], PIECES)
    r = client.post("/v1/payout-runs", json={}, headers=buyer.headers)
    assert r.status_code == 201, r.text
    [line] = [p for p in r.json()["payouts"] if p["homeworker_id"] == worker["id"]]
    with atomic(factory) as s:  # the provider confirmed it (the dispatcher's work, not this page's)
        s.execute(
            update(PayoutRow)
            .where(PayoutRow.id == line["id"])
            .values(status="succeeded", settled_at=datetime.now(UTC))
        )
    return int(line["amount"]["amount"])


def test_an_intermediarys_auditor_sees_no_payouts_of_a_buyer_it_works_for(
    client: TestClient, admin: Actor, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    middleman = new_org(client, admin, "intermediary")
    through = register(client, buyer)
    post_order(client, buyer, through["id"], intermediary_id=middleman)  # it works for this buyer
    amount = paid_directly(client, buyer, pg_factory)
    shown = f"{amount:,}".replace(",", ".")

    sign_in(client, buyer.key)
    assert shown in client.get("/report").text  # the buyer sees its own payout

    sign_in(client, make_key(pg_factory, parties.Role.AUDITOR, middleman).key)
    page = client.get("/report")
    assert page.status_code == 200
    assert shown not in page.text
