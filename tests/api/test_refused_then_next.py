"""On the embedded default (SQLite), a request refused for lack of funds leaves nothing that
refuses the next one: an order's hold and an adjustment are keyed by the id of a row that
rolls back with the refusal, and SQLite gives that id to the next row."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.conftest import Actor, order_body, register
from upah.db import make_engine
from upah.migrate import alembic_config, upgrade


def test_an_adjustment_after_a_refused_one_is_made(sqlite_app: tuple[TestClient, Actor, Actor]) -> None:
    client, _, buyer = sqlite_app
    worker = register(client, buyer)
    path = f"/v1/homeworkers/{worker['id']}/adjustments"
    too_much = {"kind": "bonus", "amount": {"amount": "500000"}, "memo": "THR"}
    r = client.post(path, json=too_much, headers=buyer.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "insufficient_funds"
    affordable = {"kind": "allowance", "amount": {"amount": "25000"}, "memo": "listrik"}
    assert client.post(path, json=affordable, headers=buyer.headers).status_code == 201


def test_an_order_after_a_refused_one_is_posted(sqlite_app: tuple[TestClient, Actor, Actor]) -> None:
    client, _, buyer = sqlite_app
    worker = register(client, buyer)
    big = order_body(
        worker["id"], quantity=1000, assignments=[{"homeworker_id": worker["id"], "quantity": 1000}]
    )
    r = client.post("/v1/orders", json=big, headers=buyer.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "insufficient_funds", r.text
    small = order_body(
        worker["id"], quantity=10, assignments=[{"homeworker_id": worker["id"], "quantity": 10}]
    )
    assert client.post("/v1/orders", json=small, headers=buyer.headers).status_code == 201


def test_migration_0012_forgets_only_refusals_of_rows_that_never_were(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0011")
    engine = make_engine(url)
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        for key in ("order:7:hold", "adjustment:3", "deposit:1:bank-ref"):
            conn.execute(
                text(
                    "INSERT INTO ledger_rejections (key, code, message, content, created_at)"
                    " VALUES (:k, 'insufficient_funds', 'no', '{}', :t)"
                ),
                {"k": key, "t": now},
            )
    upgrade(url)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT key FROM ledger_rejections")).scalars().all()
    engine.dispose()
    assert left == ["deposit:1:bank-ref"]
