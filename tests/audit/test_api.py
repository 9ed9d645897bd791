"""The auditor's HTTP API on PostgreSQL: proof of the books, reconciliation, exports, reports, scope."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from ledger import atomic, chain, sealing
from payments.parties import Role
from payments.tables import DisputeRow, ReconciliationRunRow
from tests.api.conftest import Actor, confirm, deliver, make_key, post_order, register, settings_for
from tests.audit.statements import sandbox_csv, sandbox_row, xendit_csv, xendit_row
from upah.db import make_engine, make_session_factory
from upah.settings import Settings

BEAN_CHECK = Path(sys.executable).parent / "bean-check"
LONG_AGO = datetime(2001, 1, 1, 3, 0, tzinfo=UTC)


def earn(client: TestClient, buyer: Actor, pieces: int = 40) -> dict[str, Any]:
    worker = register(client, buyer)
    order = post_order(client, buyer, worker["id"])
    delivery = deliver(client, buyer, order["id"], worker["id"], pieces)
    confirm(client, buyer, delivery["id"], pieces)
    return worker


def account_id(client: TestClient, admin: Actor, code: str) -> int:
    body = client.get("/v1/ledger/trial-balance", headers=admin.headers).json()
    return next(a["account_id"] for a in body["accounts"] if a["code"] == code)


def upload(client: TestClient, actor: Actor, statement: str, provider: str = "sandbox", **form: str) -> Any:
    return client.post(
        "/v1/reconciliations",
        data={"provider": provider, **form},
        files={"statement": ("statement.csv", statement.encode(), "text/csv")},
        headers=actor.headers,
    )


@pytest.fixture
def auditor(buyer: Actor, pg_factory: sessionmaker[Session]) -> Actor:
    return make_key(pg_factory, Role.AUDITOR, buyer.organization_id)


@pytest.fixture
def other_auditor(other_buyer: Actor, pg_factory: sessionmaker[Session]) -> Actor:
    return make_key(pg_factory, Role.AUDITOR, other_buyer.organization_id)


@pytest.fixture
def platform_auditor(pg_factory: sessionmaker[Session]) -> Actor:
    return make_key(pg_factory, Role.AUDITOR, None)


# --- proof of the books ---------------------------------------------------------------------------------


def test_the_public_key_is_published_for_anyone(client: TestClient, api_settings: Settings) -> None:
    r = client.get("/v1/ledger/public-key")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-pem-file")
    key = chain.load_private_key(api_settings.upah_signing_key or "")
    assert r.text == chain.public_key_pem(key)


def test_checkpoints_verify_with_the_published_key(
    client: TestClient,
    api_settings: Settings,
    platform_auditor: Actor,
    buyer: Actor,
    pg_factory: sessionmaker[Session],
) -> None:
    earn(client, buyer)
    key = chain.load_private_key(api_settings.upah_signing_key or "")
    with atomic(pg_factory) as s:
        while sealing.seal(s, now=datetime.now(UTC), signing_key=key):
            pass
        sealing.checkpoint(s, now=datetime.now(UTC), signing_key=key)
    published = client.get("/v1/ledger/public-key").text
    with pg_factory() as s:
        cp = s.execute(
            text("SELECT seq, digest, signature FROM ledger_checkpoints ORDER BY id DESC LIMIT 1")
        ).one()
    assert chain.verify_checkpoint(published, cp.seq, cp.digest, cp.signature)
    body = client.get("/v1/ledger/verify", headers=platform_auditor.headers).json()
    assert body["ok"] is True, body["problems"]
    assert body["checkpoints_checked"] >= 1 and body["entries_checked"] >= 1
    assert published in body["signing_keys"]
    assert body["public_key_url"] == "/v1/ledger/public-key"


def test_the_trial_balance_balances_and_carries_the_integrity_check(
    client: TestClient, admin: Actor, buyer: Actor
) -> None:
    earn(client, buyer)
    body = client.get("/v1/ledger/trial-balance", headers=admin.headers).json()
    assert body["balanced"] is True
    [idr] = [t for t in body["totals"] if t["currency"] == "IDR"]
    assert idr["debits"] == idr["credits"] and idr["balanced"] is True
    assert body["integrity"] == {"ok": True, "problems": []}
    assert all(set(a["debits"]) == {"amount", "currency"} for a in body["accounts"])
    past = client.get(
        "/v1/ledger/trial-balance", params={"as_of": LONG_AGO.isoformat()}, headers=admin.headers
    )
    assert all(a["debits"]["amount"] == "0" for a in past.json()["accounts"])


def test_an_organisations_auditor_sees_totals_of_its_own_accounts_not_the_whole_books(
    client: TestClient, admin: Actor, buyer: Actor, other_buyer: Actor, auditor: Actor
) -> None:
    earn(client, buyer)
    earn(client, other_buyer)
    body = client.get("/v1/ledger/trial-balance", headers=auditor.headers).json()
    [idr] = [t for t in body["totals"] if t["currency"] == "IDR"]
    listed = [a for a in body["accounts"] if a["currency"] == "IDR"]
    assert idr["debits"]["amount"] == str(sum(int(a["debits"]["amount"]) for a in listed))
    assert idr["credits"]["amount"] == str(sum(int(a["credits"]["amount"]) for a in listed))
    whole = client.get("/v1/ledger/trial-balance", headers=admin.headers).json()
    [all_idr] = [t for t in whole["totals"] if t["currency"] == "IDR"]
    assert idr["credits"] != all_idr["credits"]
    assert body["balanced"] is True and idr["balanced"] is True  # the whole book's, without its amounts


def test_a_statement_has_opening_lines_running_and_closing_balance(
    client: TestClient, admin: Actor, buyer: Actor
) -> None:
    earn(client, buyer)
    available = account_id(client, admin, f"org:{buyer.organization_id}:available")
    body = client.get(f"/v1/ledger/accounts/{available}/statement", headers=buyer.headers).json()
    assert body["opening_balance"]["amount"] == "0"
    assert body["lines"][0]["running_balance"]["amount"] == "50000000"
    assert (body["lines"][0]["side"], body["lines"][0]["amount"]["amount"]) == ("credit", "50000000")
    held = body["lines"][1]  # the order's hold lowers what is available
    assert held["side"] == "debit" and held["amount"]["amount"].isdigit()
    assert body["closing_balance"] == body["lines"][-1]["running_balance"]
    assert client.get(f"/v1/ledger/accounts/{available}/statement", headers=admin.headers).status_code == 403
    later = client.get(
        f"/v1/ledger/accounts/{available}/statement",
        params={"from": datetime.now(UTC).isoformat()},
        headers=buyer.headers,
    ).json()
    assert later["opening_balance"] == body["closing_balance"] and later["lines"] == []


@pytest.mark.parametrize(
    "period", [{"from": "0001-01-01T00:00:00+01:00"}, {"to": "9999-12-31T23:59:59-05:00"}]
)
def test_a_period_with_no_utc_equivalent_is_a_422_not_a_500(
    client: TestClient, admin: Actor, buyer: Actor, period: dict[str, str]
) -> None:
    available = account_id(client, admin, f"org:{buyer.organization_id}:available")
    r = client.get(f"/v1/ledger/accounts/{available}/statement", params=period, headers=buyer.headers)
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "period"
    worker = register(client, buyer)
    r = client.get(f"/v1/homeworkers/{worker['id']}/payslip", params=period, headers=buyer.headers)
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "period"


def test_verify_names_the_first_break_of_a_tampered_ledger(fresh_pg_url: str, tmp_path: Path) -> None:
    settings = settings_for(fresh_pg_url, tmp_path)
    engine = make_engine(fresh_pg_url)
    factory = make_session_factory(engine)
    try:
        admin = make_key(factory, Role.ADMIN)
        with TestClient(create_app(settings), raise_server_exceptions=False) as c:
            org = c.post(
                "/v1/organizations", json={"name": "PT A", "kind": "buyer"}, headers=admin.headers
            ).json()
            for n in range(3):
                deposit = {"amount": {"amount": str(1000 + n), "currency": "IDR"}, "reference": f"d{n}"}
                c.post(f"/v1/organizations/{org['id']}/deposits", json=deposit, headers=admin.headers)
            key = chain.load_private_key(settings.upah_signing_key or "")
            with atomic(factory) as s:
                sealing.seal(s, now=datetime.now(UTC), signing_key=key, checkpoint_every=2)
            assert c.get("/v1/ledger/verify", headers=admin.headers).json()["ok"] is True
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE ledger_postings DISABLE TRIGGER USER"))
                conn.execute(
                    text(
                        "UPDATE ledger_postings SET amount = amount * 2"
                        " WHERE entry_id = (SELECT entry_id FROM ledger_seals WHERE seq = 2)"
                    )
                )
                conn.execute(text("ALTER TABLE ledger_postings ENABLE TRIGGER USER"))
            body = c.get("/v1/ledger/verify", headers=admin.headers).json()
            assert body["ok"] is False
            assert body["first_break"]["kind"] == "digest_mismatch" and body["first_break"]["seq"] == 2
            tb = c.get("/v1/ledger/trial-balance", headers=admin.headers).json()
            assert tb["integrity"]["ok"] is False
    finally:
        engine.dispose()


# --- reconciliation -------------------------------------------------------------------------------------


def test_a_reconciliation_over_http_with_notes_and_a_csv_report(
    client: TestClient, auditor: Actor, other_auditor: Actor, buyer: Actor
) -> None:
    statement = sandbox_csv([sandbox_row("UPHSTRANGER1", "k-stranger", 12_345, at=LONG_AGO)])
    r = upload(client, auditor, statement)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["summary"] == {
        "matched": 0,
        "missing_at_provider": 0,
        "unknown_at_provider": 1,
        "amount_mismatch": 0,
        "duplicate": 0,
        "status_mismatch": 0,
        "lines": 1,
        "skipped": 0,
        "out_of_scope": 0,
    }
    [exc] = run["exceptions"]
    assert exc["class"] == "unknown_at_provider"
    assert exc["provider_amount"] == {"amount": "12345", "currency": "IDR"}
    assert len(run["input_sha256"]) == 64 and len(run["report_sha256"]) == 64
    noted = client.post(
        f"/v1/reconciliations/{run['id']}/exceptions/{exc['id']}/notes",
        json={"note": "a test payment by the provider", "action": "resolve"},
        headers=auditor.headers,
    )
    assert noted.status_code == 201, noted.text
    assert noted.json()["status"] == "resolved"
    again = client.get(f"/v1/reconciliations/{run['id']}", headers=auditor.headers).json()
    assert again["exceptions"][0]["notes"][0]["note"] == "a test payment by the provider"
    assert again["exceptions"][0]["status"] == "resolved"
    report = client.get(f"/v1/reconciliations/{run['id']}/report.csv", headers=auditor.headers)
    assert report.headers["content-type"].startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(report.text)))
    assert (row["class"], row["exception_status"], row["provider_amount"]) == (
        "unknown_at_provider",
        "resolved",
        "12345",
    )
    assert client.get(f"/v1/reconciliations/{run['id']}", headers=other_auditor.headers).status_code == 404
    assert (
        client.get(f"/v1/reconciliations/{run['id']}/report.csv", headers=other_auditor.headers).status_code
        == 404
    )
    refused = client.post(
        f"/v1/reconciliations/{run['id']}/exceptions/{exc['id']}/notes",
        json={"note": "mine now", "action": "reopen"},
        headers=other_auditor.headers,
    )
    assert refused.status_code == 404
    assert (
        client.post(
            f"/v1/reconciliations/{run['id']}/exceptions/{exc['id']}/notes",
            json={"note": "again", "action": "resolve"},
            headers=auditor.headers,
        ).json()["error"]["code"]
        == "invalid_state"
    )
    listed = client.get("/v1/reconciliations", headers=auditor.headers).json()
    assert run["id"] in [r["id"] for r in listed]
    assert run["id"] not in [
        r["id"] for r in client.get("/v1/reconciliations", headers=other_auditor.headers).json()
    ]


def test_a_xendit_report_is_accepted_over_http(client: TestClient, auditor: Actor) -> None:
    r = upload(client, auditor, xendit_csv([xendit_row("upah-payout-nobody", 5_000, at=LONG_AGO)]), "xendit")
    assert r.status_code == 201, r.text
    assert (r.json()["format"], r.json()["summary"]["unknown_at_provider"]) == ("xendit", 1)


@pytest.mark.parametrize(
    ("statement", "line"),
    [
        (sandbox_csv([sandbox_row("UPH1", "k1", 5), sandbox_row("UPH2", "k2", "5.50")]), 3),
        (sandbox_csv([sandbox_row("UPH1", "k1", "lima ribu")]), 2),
        (sandbox_csv([sandbox_row("UPH1", "k1", 5)]) + sandbox_csv([]), 3),
        ("reference,amount\nUPH1,5\n", 1),
        (xendit_csv([xendit_row("k", 5)]), 1),
    ],
)
def test_a_bad_statement_is_a_4xx_naming_the_line_and_stores_nothing(
    client: TestClient, auditor: Actor, pg_factory: sessionmaker[Session], statement: str, line: int
) -> None:
    with pg_factory() as s:
        before = s.execute(select(func.count()).select_from(ReconciliationRunRow)).scalar_one()
    r = upload(client, auditor, statement)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_statement"
    assert error["details"]["line"] == line
    assert f"line {line}" in error["message"]
    with pg_factory() as s:
        assert s.execute(select(func.count()).select_from(ReconciliationRunRow)).scalar_one() == before


def test_megabytes_of_junk_are_refused(client: TestClient, auditor: Actor) -> None:
    junk = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    r = client.post(
        "/v1/reconciliations",
        data={"provider": "sandbox"},
        files={"statement": ("junk.csv", junk, "text/csv")},
        headers=auditor.headers,
    )
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_statement"
    assert error["message"].startswith(f"line {error['details']['line']}:")


def test_only_auditors_and_admins_reconcile(client: TestClient, buyer: Actor, admin: Actor) -> None:
    statement = sandbox_csv([])
    assert upload(client, buyer, statement).status_code == 403
    assert upload(client, admin, statement).status_code == 201


# --- exports --------------------------------------------------------------------------------------------


def bean_check(text_: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "books.beancount"
    path.write_text(text_)
    return subprocess.run([str(BEAN_CHECK), str(path)], capture_output=True, text=True, check=False)  # noqa: S603


def test_the_whole_book_exports_as_beancount_that_bean_check_accepts(
    client: TestClient, platform_auditor: Actor, buyer: Actor, tmp_path: Path
) -> None:
    earn(client, buyer)
    r = client.get("/v1/exports/books.beancount", headers=platform_auditor.headers)
    assert r.status_code == 200
    assert "attachment" in r.headers["content-disposition"]
    result = bean_check(r.text, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[:2000]


def test_an_organisations_auditor_exports_its_own_books(
    client: TestClient, auditor: Actor, buyer: Actor, other_buyer: Actor, tmp_path: Path
) -> None:
    earn(client, buyer)
    earn(client, other_buyer)
    r = client.get("/v1/exports/books.beancount", headers=auditor.headers)
    assert r.status_code == 200
    assert bean_check(r.text, tmp_path).returncode == 0
    assert f"Org:{buyer.organization_id}:Available" in r.text
    assert f"Org:{other_buyer.organization_id}:Available" not in r.text


def test_entries_and_payouts_csv_stay_in_scope(
    client: TestClient, auditor: Actor, admin: Actor, buyer: Actor, other_buyer: Actor
) -> None:
    earn(client, buyer)
    earn(client, other_buyer)
    mine = account_id(client, admin, f"org:{buyer.organization_id}:available")
    theirs = account_id(client, admin, f"org:{other_buyer.organization_id}:available")
    rows = list(
        csv.DictReader(io.StringIO(client.get("/v1/exports/entries.csv", headers=auditor.headers).text))
    )
    accounts = {int(r["account_id"]) for r in rows}
    assert mine in accounts and theirs not in accounts
    assert all(r["amount"].lstrip("-").isdigit() for r in rows)
    payouts = client.get("/v1/exports/payouts.csv", headers=auditor.headers)
    assert payouts.status_code == 200
    assert payouts.text.splitlines()[0].startswith("payout_id,run_id,buyer_id")
    assert all(r["buyer_id"] == str(buyer.organization_id) for r in csv.DictReader(io.StringIO(payouts.text)))


# --- reports --------------------------------------------------------------------------------------------


def test_the_pilot_report_in_json_and_csv(
    client: TestClient, auditor: Actor, buyer: Actor, intermediary: Actor
) -> None:
    earn(client, buyer)
    r = client.get("/v1/reports/pilot", headers=auditor.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert int(body["total"]["agreed"]["amount"]) > 0
    assert body["total"]["received"] == {"amount": "0", "currency": "IDR"}
    assert body["payouts"]["amount"] == {"amount": "0", "currency": "IDR"}
    assert all(
        v["amount"] == {"amount": "0", "currency": "IDR"} for v in body["payouts"]["by_status"].values()
    )
    assert body["by_buyer"][0]["agreed"] == body["total"]["agreed"]
    assert body["total"]["leakage"] == "1.0000"
    assert [g["key"] for g in body["by_buyer"]] == [str(buyer.organization_id)]
    as_csv = client.get("/v1/reports/pilot", params={"format": "csv"}, headers=buyer.headers)
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.splitlines()[0] == "dimension,key,name,metric,value"
    assert client.get("/v1/reports/pilot", headers=intermediary.headers).status_code == 403


def test_the_three_way_check_over_http(client: TestClient, buyer: Actor, other_buyer: Actor) -> None:
    worker = earn(client, buyer, pieces=40)
    earn(client, other_buyer)
    body = client.get("/v1/reports/three-way", headers=buyer.headers).json()
    assert body["ok"] is True
    [line] = body["lines"]
    assert line["homeworker_id"] == worker["id"] and line["pieces_accepted"] == 40
    assert (
        line["agreed"]
        == line["ledger_earnings"]
        == line["owed_at_end"]
        == {"amount": "20000", "currency": "IDR"}
    )
    hidden = client.get(
        "/v1/reports/three-way", params={"homeworker_id": worker["id"]}, headers=other_buyer.headers
    )
    assert hidden.status_code == 404


# --- scope and the read-only role -----------------------------------------------------------------------


def test_an_auditor_of_buyer_a_sees_nothing_of_buyer_b(
    client: TestClient,
    admin: Actor,
    auditor: Actor,
    other_auditor: Actor,
    buyer: Actor,
    other_buyer: Actor,
) -> None:
    mine, theirs = earn(client, buyer), earn(client, other_buyer)
    their_accounts = [
        account_id(client, admin, f"org:{other_buyer.organization_id}:available"),
        account_id(client, admin, f"hw:{theirs['id']}:buyer:{other_buyer.organization_id}:earned"),
    ]
    for account in their_accounts:
        assert (
            client.get(f"/v1/ledger/accounts/{account}/statement", headers=auditor.headers).status_code == 404
        )
        assert (
            client.get(f"/v1/ledger/accounts/{account}/statement", headers=buyer.headers).status_code == 404
        )
        assert (
            client.get(f"/v1/ledger/accounts/{account}/statement", headers=other_auditor.headers).status_code
            == 200
        )
    earned = account_id(client, admin, f"hw:{mine['id']}:buyer:{buyer.organization_id}:earned")
    assert client.get(f"/v1/ledger/accounts/{earned}/statement", headers=auditor.headers).status_code == 200
    assert client.get("/v1/ledger/accounts/999999999/statement", headers=auditor.headers).status_code == 404
    codes = {
        a["code"] for a in client.get("/v1/ledger/trial-balance", headers=auditor.headers).json()["accounts"]
    }
    assert f"org:{buyer.organization_id}:available" in codes
    assert not any(
        str(other_buyer.organization_id) in c.split(":") for c in codes if c.startswith(("org:", "hw:"))
    )
    three = client.get("/v1/reports/three-way", headers=auditor.headers).json()
    assert {line["buyer_id"] for line in three["lines"]} == {buyer.organization_id}
    pilot = client.get("/v1/reports/pilot", headers=auditor.headers).json()
    assert [g["key"] for g in pilot["by_buyer"]] == [str(buyer.organization_id)]


def test_an_auditor_writes_nothing_but_reconciliations_and_notes(
    client: TestClient, auditor: Actor, buyer: Actor
) -> None:
    worker = earn(client, buyer)
    attempts = [
        ("/v1/organizations", {"name": "X", "kind": "buyer"}),
        (
            f"/v1/organizations/{buyer.organization_id}/deposits",
            {"amount": {"amount": "5", "currency": "IDR"}, "reference": "x"},
        ),
        (
            "/v1/homeworkers",
            {
                "name": "X",
                "phone": "081234567890",
                "region": "ID-JK",
                "wallet": {"provider": "dana", "account": "081234567890"},
            },
        ),
        (
            f"/v1/homeworkers/{worker['id']}/adjustments",
            {"kind": "bonus", "amount": {"amount": "5", "currency": "IDR"}, "memo": "x"},
        ),
        ("/v1/payout-runs", {}),
    ]
    for path, body in attempts:
        r = client.post(path, json=body, headers=auditor.headers)
        assert r.status_code in (403, 404), (path, r.status_code, r.text)


def test_auditors_note_disputes_in_their_scope(
    client: TestClient,
    auditor: Actor,
    other_auditor: Actor,
    buyer: Actor,
    pg_factory: sessionmaker[Session],
) -> None:
    worker = earn(client, buyer)
    with atomic(pg_factory) as s:
        dispute_id = s.execute(
            insert(DisputeRow).returning(DisputeRow.id),
            {
                "reference": f"D{worker['id']}",
                "homeworker_id": worker["id"],
                "buyer_id": buyer.organization_id,
                "kind": "wrong_amount",
                "channel": "sms",
                "status": "open",
                "notes": [],
                "created_at": datetime.now(UTC),
            },
        ).scalar_one()
    r = client.post(
        f"/v1/disputes/{dispute_id}/notes", json={"note": "checked the payslip"}, headers=auditor.headers
    )
    assert r.status_code == 201, r.text
    assert [n["text"] for n in r.json()["notes"]] == ["checked the payslip"]
    with atomic(pg_factory) as s:
        unnamed = s.execute(
            insert(DisputeRow).returning(DisputeRow.id),
            {
                "reference": f"E{worker['id']}",
                "homeworker_id": worker["id"],
                "buyer_id": None,  # she named no buyer: every organisation she works with may look
                "kind": "other",
                "channel": "ussd",
                "status": "open",
                "notes": [],
                "created_at": datetime.now(UTC),
            },
        ).scalar_one()
    assert (
        client.post(
            f"/v1/disputes/{unnamed}/notes", json={"note": "seen"}, headers=auditor.headers
        ).status_code
        == 201
    )
    assert (
        client.post(
            f"/v1/disputes/{unnamed}/notes", json={"note": "x"}, headers=other_auditor.headers
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"/v1/disputes/{dispute_id}/notes", json={"note": "x"}, headers=other_auditor.headers
        ).status_code
        == 404
    )
    assert (
        client.post(f"/v1/disputes/{dispute_id}/notes", json={"note": "x"}, headers=buyer.headers).status_code
        == 403
    )
