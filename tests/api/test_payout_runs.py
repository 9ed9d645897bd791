"""Payout runs over HTTP: a buyer pays its own homeworkers; an admin key may create the same
run for a named buyer, which only a buyer key of that organisation can approve."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from ledger import reports
from payments.parties import Role
from tests.api.conftest import Actor, amount, confirm, deliver, make_key, post_order, register, settings_for

UNKNOWN_ORG = 2**62


def earn(client: TestClient, buyer: Actor, pieces: int = 40) -> dict[str, Any]:
    """A homeworker of ``buyer`` owed ``pieces`` × Rp 500 (40 pieces: Rp 20,000, above the minimum)."""
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    delivery = deliver(client, buyer, order["id"], worker["id"], pieces)
    confirm(client, buyer, delivery["id"], pieces)
    return worker


def written(factory: sessionmaker[Session]) -> dict[str, int]:
    """Row counts of everything creating a run writes."""
    with factory() as s:
        return {
            table: int(s.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in ("payout_runs", "payouts", "payout_events", "ledger_holds", "outbox")
        }


def create(client: TestClient, actor: Actor, body: dict[str, Any] | None = None) -> Any:
    return client.post("/v1/payout-runs", json={} if body is None else body, headers=actor.headers)


def key_id(factory: sessionmaker[Session], actor: Actor) -> int:
    public_id = actor.key.split("_", 2)[1]
    with factory() as s:
        return int(
            s.execute(text("SELECT id FROM api_keys WHERE public_id = :p"), {"p": public_id}).scalar_one()
        )


@pytest.fixture
def strict(pg_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The app with an approval threshold of Rp 10,000: a Rp 20,000 run awaits approval."""
    settings = settings_for(pg_url, tmp_path, upah_payout_approval_threshold=10_000)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_a_buyer_creates_its_own_run_with_an_empty_body(client: TestClient, buyer: Actor) -> None:
    worker = earn(client, buyer)
    r = create(client, buyer)
    assert r.status_code == 201, r.text
    assert [(p["homeworker_id"], amount(p["amount"])) for p in r.json()["payouts"]] == [
        (worker["id"], 20_000)
    ]


def test_the_payslip_lists_a_payout_with_its_amount_as_money(client: TestClient, buyer: Actor) -> None:
    worker = earn(client, buyer)
    assert create(client, buyer).status_code == 201
    slip = client.get(f"/v1/homeworkers/{worker['id']}/payslip", headers=buyer.headers)
    assert slip.status_code == 200, slip.text
    [payout] = slip.json()["payouts"]
    assert payout["amount"] == {"amount": "20000", "currency": "IDR"}


def test_a_buyer_naming_its_own_organisation_creates_its_run(client: TestClient, buyer: Actor) -> None:
    worker = earn(client, buyer)
    r = create(client, buyer, {"buyer_id": buyer.organization_id})
    assert r.status_code == 201, r.text
    assert [p["homeworker_id"] for p in r.json()["payouts"]] == [worker["id"]]


def test_an_admin_creates_the_run_a_named_buyer_would_create(
    client: TestClient, admin: Actor, buyer: Actor, other_buyer: Actor
) -> None:
    earn(client, buyer)
    earn(client, other_buyer)
    own = create(client, buyer)
    on_behalf = create(client, admin, {"buyer_id": other_buyer.organization_id})
    assert own.status_code == 201, own.text
    assert on_behalf.status_code == 201, on_behalf.text

    def shape(run: dict[str, Any]) -> tuple[Any, ...]:
        lines = [(amount(p["amount"]), p["status"]) for p in run["payouts"]]
        return run["status"], run["count"], amount(run["total"]), amount(run["fee"]), lines

    assert (
        shape(on_behalf.json())
        == shape(own.json())
        == ("dispatching", 1, 20_000, 2_500, [(20_000, "created")])
    )
    seen = client.get(f"/v1/payout-runs/{on_behalf.json()['id']}", headers=other_buyer.headers)
    assert seen.status_code == 200, seen.text


def test_an_admin_created_run_records_the_admin_key_as_its_creator(
    client: TestClient, admin: Actor, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    earn(client, buyer)
    r = create(client, admin, {"buyer_id": buyer.organization_id})
    assert r.status_code == 201, r.text
    with pg_factory() as s:
        row = s.execute(
            text("SELECT buyer_id, created_by FROM payout_runs WHERE id = :id"), {"id": r.json()["id"]}
        ).one()
    assert (row.buyer_id, row.created_by) == (buyer.organization_id, key_id(pg_factory, admin))


def test_an_admin_with_an_empty_body_is_told_to_name_the_buyer_and_nothing_is_written(
    client: TestClient, admin: Actor, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    earn(client, buyer)
    before = written(pg_factory)
    r = create(client, admin)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["field"] == "buyer_id"
    assert "buyer_id" in error["message"]
    assert written(pg_factory) == before


def test_an_admin_naming_an_intermediary_is_refused_and_nothing_is_written(
    client: TestClient, admin: Actor, intermediary: Actor, pg_factory: sessionmaker[Session]
) -> None:
    before = written(pg_factory)
    r = create(client, admin, {"buyer_id": intermediary.organization_id})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_error"
    assert r.json()["error"]["details"]["field"] == "buyer_id"
    assert written(pg_factory) == before


def test_an_admin_naming_an_unknown_organisation_gets_not_found(
    client: TestClient, admin: Actor, pg_factory: sessionmaker[Session]
) -> None:
    before = written(pg_factory)
    r = create(client, admin, {"buyer_id": UNKNOWN_ORG})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"
    assert written(pg_factory) == before


def test_a_buyer_naming_another_buyer_gets_the_unknown_organisations_not_found_and_nothing_is_written(
    client: TestClient, buyer: Actor, other_buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    earn(client, other_buyer)
    before = written(pg_factory)
    r = create(client, buyer, {"buyer_id": other_buyer.organization_id})
    assert r.status_code == 404, r.text
    assert r.json() == create(client, buyer, {"buyer_id": UNKNOWN_ORG}).json()
    assert written(pg_factory) == before


def test_the_admin_who_created_a_run_above_the_threshold_cannot_approve_it(
    strict: TestClient, admin: Actor, buyer: Actor
) -> None:
    earn(strict, buyer)
    run = create(strict, admin, {"buyer_id": buyer.organization_id}).json()
    assert run["status"] == "awaiting_approval"
    r = strict.post(f"/v1/payout-runs/{run['id']}/approve", headers=admin.headers)
    assert r.status_code == 403, r.text
    assert strict.get(f"/v1/payout-runs/{run['id']}", headers=buyer.headers).json()["status"] == (
        "awaiting_approval"
    )


def test_a_buyer_key_of_that_organisation_approves_an_admin_created_run(
    strict: TestClient, admin: Actor, buyer: Actor
) -> None:
    earn(strict, buyer)
    run = create(strict, admin, {"buyer_id": buyer.organization_id}).json()
    assert run["status"] == "awaiting_approval"
    r = strict.post(f"/v1/payout-runs/{run['id']}/approve", headers=buyer.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "dispatching"


def test_another_buyers_key_cannot_approve_an_admin_created_run(
    strict: TestClient, admin: Actor, buyer: Actor, other_buyer: Actor
) -> None:
    earn(strict, buyer)
    run = create(strict, admin, {"buyer_id": buyer.organization_id}).json()
    r = strict.post(f"/v1/payout-runs/{run['id']}/approve", headers=other_buyer.headers)
    assert r.status_code == 404, r.text


def test_an_auditor_cannot_create_a_run_for_a_buyer(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    earn(client, buyer)
    auditor = make_key(pg_factory, Role.AUDITOR)
    r = create(client, auditor, {"buyer_id": buyer.organization_id})
    assert r.status_code == 403, r.text


# --- rejecting a run awaiting approval -------------------------------------------------------------


def test_a_rejected_run_releases_her_earnings_to_the_next_run_and_the_buyers_fees(
    strict: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    worker = earn(strict, buyer)
    balance_before = strict.get(f"/v1/organizations/{buyer.organization_id}/balance", headers=buyer.headers)
    run = create(strict, buyer).json()
    assert run["status"] == "awaiting_approval"
    r = strict.post(f"/v1/payout-runs/{run['id']}/reject", headers=buyer.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected"
    assert [p["status"] for p in r.json()["payouts"]] == ["failed"]
    after = strict.get(f"/v1/organizations/{buyer.organization_id}/balance", headers=buyer.headers)
    assert after.json() == balance_before.json()
    again = create(strict, buyer).json()
    assert [(p["homeworker_id"], amount(p["amount"])) for p in again["payouts"]] == [(worker["id"], 20_000)]
    with pg_factory() as s:
        assert reports.check_integrity(s) == []


def test_a_run_being_dispatched_cannot_be_rejected(client: TestClient, buyer: Actor) -> None:
    earn(client, buyer)
    run = create(client, buyer).json()
    assert run["status"] == "dispatching"
    r = client.post(f"/v1/payout-runs/{run['id']}/reject", headers=buyer.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state"


def test_another_buyer_cannot_reject_a_run_and_an_auditor_may_not(
    strict: TestClient, buyer: Actor, other_buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    earn(strict, buyer)
    run = create(strict, buyer).json()
    other = strict.post(f"/v1/payout-runs/{run['id']}/reject", headers=other_buyer.headers)
    assert other.status_code == 404
    auditor = make_key(pg_factory, Role.AUDITOR, buyer.organization_id)
    assert strict.post(f"/v1/payout-runs/{run['id']}/reject", headers=auditor.headers).status_code == 403
    assert strict.get(f"/v1/payout-runs/{run['id']}", headers=buyer.headers).json()["status"] == (
        "awaiting_approval"
    )


def test_runs_and_payouts_are_read_by_their_buyer_and_auditors_alone(
    client: TestClient, admin: Actor, buyer: Actor, intermediary: Actor, pg_factory: sessionmaker[Session]
) -> None:
    earn(client, buyer)
    run = create(client, buyer).json()
    payout_id = run["payouts"][0]["id"]
    paths = (f"/v1/payout-runs/{run['id']}", f"/v1/payouts/{payout_id}", "/v1/payouts")
    auditor = make_key(pg_factory, Role.AUDITOR, buyer.organization_id)
    for reader in (buyer, auditor):
        assert all(client.get(path, headers=reader.headers).status_code == 200 for path in paths)
    for other in (intermediary, admin):
        for path in paths:
            refused = client.get(path, headers=other.headers)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden", path


def settle_conflict(client: TestClient, actor: Actor, payout_id: int, body: dict[str, Any]) -> Any:
    return client.post(f"/v1/payouts/{payout_id}/conflict", json=body, headers=actor.headers)


SETTLED_AS_PAID = {"provider_paid": True, "reason": "provider statement of 2026-12-01, line 14"}


def test_settling_a_conflict_a_payout_does_not_have_is_409_and_changes_nothing(
    client: TestClient, buyer: Actor, admin: Actor
) -> None:
    earn(client, buyer)
    payout_id = create(client, buyer).json()["payouts"][0]["id"]
    r = settle_conflict(client, admin, payout_id, SETTLED_AS_PAID)
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state"
    payout = client.get(f"/v1/payouts/{payout_id}", headers=buyer.headers).json()
    assert (payout["status"], payout["conflict_held"]) == ("created", None)


def test_only_an_admin_settles_a_payout_conflict(client: TestClient, buyer: Actor) -> None:
    earn(client, buyer)
    payout_id = create(client, buyer).json()["payouts"][0]["id"]
    r = settle_conflict(client, buyer, payout_id, SETTLED_AS_PAID)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "body",
    [
        {"reason": "statement"},
        {"provider_paid": True, "reason": ""},
        {"provider_paid": "maybe", "reason": "x"},
    ],
)
def test_a_conflict_settlement_says_whether_the_provider_paid_and_why(
    client: TestClient, admin: Actor, body: dict[str, Any]
) -> None:
    r = settle_conflict(client, admin, 1, body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_settling_the_conflict_of_a_payout_that_does_not_exist_is_404(
    client: TestClient, admin: Actor
) -> None:
    r = settle_conflict(client, admin, 10**9, SETTLED_AS_PAID)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
