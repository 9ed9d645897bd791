"""The dashboard's rules, in-process against the real app on PostgreSQL: sessions, CSRF, scope,
escaping and language. (The end-to-end story in a real browser is in test_browser.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from ledger import atomic
from payments import parties
from payments.tables import ApiKeyRow, DeliveryRow
from tests.api.conftest import Actor, confirm, deliver, make_key, post_order, register, settings_for
from tests.dashboard.conftest import csrf, flash, form_post, sign_in


def awaiting_delivery(client: TestClient, actor: Actor, **order: object) -> dict[str, object]:
    worker = register(client, actor)
    placed = post_order(client, actor, worker["id"], **order)
    return deliver(client, actor, placed["id"], worker["id"], 10)


def delivery_status(factory: sessionmaker[Session], delivery_id: object) -> str:
    with factory() as s:
        return str(s.execute(select(DeliveryRow.status).where(DeliveryRow.id == delivery_id)).scalar_one())


def test_pages_send_a_visitor_without_a_session_to_sign_in(client: TestClient) -> None:
    r = client.get("/deliveries", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/login")


def test_the_session_cookie_is_httponly_strict_and_does_not_hold_the_key(
    client: TestClient, buyer: Actor
) -> None:
    client.get("/login")
    r = client.post("/login", data={"key": buyer.key, "csrf": csrf(client)}, follow_redirects=False)
    assert r.status_code == 303
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("upah_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert buyer.key not in cookie and buyer.key.split("_")[2] not in value
    assert buyer.key not in r.headers.get("location", "")


def test_a_wrong_key_does_not_sign_in(client: TestClient) -> None:
    client.get("/login")
    r = client.post("/login", data={"key": "upah_0123456789abcdef_nope", "csrf": csrf(client)})
    assert r.status_code == 401
    assert "upah_session" not in client.cookies


def test_a_tampered_session_cookie_is_no_session(client: TestClient, buyer: Actor) -> None:
    sign_in(client, buyer.key)
    token = client.cookies["upah_session"]
    client.cookies.clear()
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    client.cookies.set("upah_session", tampered)
    assert client.get("/orders", follow_redirects=False).status_code == 303
    client.cookies.clear()
    client.cookies.set("upah_session", token)
    assert client.get("/orders", follow_redirects=False).status_code == 200


def test_revoking_the_key_ends_its_session(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    sign_in(client, buyer.key)
    assert client.get("/orders").status_code == 200
    public_id = buyer.key.split("_")[1]
    with atomic(pg_factory) as s:
        s.execute(
            update(ApiKeyRow).where(ApiKeyRow.public_id == public_id).values(revoked_at=datetime.now(UTC))
        )
    assert client.get("/orders", follow_redirects=False).status_code == 303


def test_signing_out_forgets_the_session(client: TestClient, buyer: Actor) -> None:
    sign_in(client, buyer.key)
    form_post(client, "/logout", {})
    assert "upah_session" not in client.cookies
    assert client.get("/orders", follow_redirects=False).status_code == 303


def test_a_form_without_the_csrf_token_is_refused(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    delivery = awaiting_delivery(client, buyer)
    sign_in(client, buyer.key)
    r = client.post(f"/deliveries/{delivery['id']}/confirm", data={"accepted": "10", "rejected": "0"})
    assert r.status_code == 403
    r = client.post(
        f"/deliveries/{delivery['id']}/confirm", data={"accepted": "10", "rejected": "0", "csrf": "x" * 43}
    )
    assert r.status_code == 403
    assert delivery_status(pg_factory, delivery["id"]) == "awaiting_confirmation"


def test_a_form_posted_from_another_site_is_refused(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    delivery = awaiting_delivery(client, buyer)
    sign_in(client, buyer.key)
    r = form_post(
        client,
        f"/deliveries/{delivery['id']}/confirm",
        {"accepted": "10", "rejected": "0"},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    r = form_post(client, "/payouts/runs", {}, headers={"Origin": "null"})
    assert r.status_code == 403
    assert delivery_status(pg_factory, delivery["id"]) == "awaiting_confirmation"


def test_the_sign_in_form_needs_its_csrf_token(client: TestClient, buyer: Actor) -> None:
    client.get("/login")
    r = client.post("/login", data={"key": buyer.key})
    assert r.status_code == 403
    assert "upah_session" not in client.cookies


def test_confirming_with_rejections_needs_a_reason_and_the_page_says_so(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    delivery = awaiting_delivery(client, buyer)
    sign_in(client, buyer.key)
    path = f"/deliveries/{delivery['id']}/confirm"
    r = form_post(client, path, {"accepted": "8", "rejected": "2", "reason": ""})
    assert r.status_code == 422
    assert flash(r.text) == ["Isian tidak valid: say why pieces were rejected"]
    r = form_post(client, path, {"accepted": "8", "rejected": "2", "reason": "jahitan lepas"})
    assert r.status_code == 200
    assert flash(r.text) == [f"Setoran #{delivery['id']} dikonfirmasi: 8 diterima, 2 ditolak; upah dicatat."]
    assert delivery_status(pg_factory, delivery["id"]) == "confirmed"


def test_what_people_typed_is_escaped_and_no_script_may_run(client: TestClient, buyer: Actor) -> None:
    delivery = awaiting_delivery(client, buyer, product='<script>alert("x")</script>')
    sign_in(client, buyer.key)
    for path in ("/orders", "/deliveries"):
        r = client.get(path)
        assert "<script>" not in r.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in r.text
        assert "script-src" not in r.headers["content-security-policy"]
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store"
    assert delivery["id"]


def test_a_buyer_sees_and_touches_only_its_own_work(
    client: TestClient, buyer: Actor, other_buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    theirs = awaiting_delivery(client, other_buyer, reference="PO-THEIRS-ONLY")
    sign_in(client, buyer.key)
    for path in ("/", "/orders", "/deliveries", "/payouts", "/disputes", "/report"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "PO-THEIRS-ONLY" not in r.text
        assert f"delivery-{theirs['id']}" not in r.text
    r = form_post(client, f"/deliveries/{theirs['id']}/confirm", {"accepted": "10", "rejected": "0"})
    assert r.status_code == 404
    assert delivery_status(pg_factory, theirs["id"]) == "awaiting_confirmation"


def test_auditor_pages_are_not_for_buyers_nor_buyer_forms_for_auditors(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    sign_in(client, buyer.key)
    for path in ("/ledger", "/reconciliations"):
        assert client.get(path).status_code == 403
    auditor = make_key(
        pg_factory, parties.Role.AUDITOR, buyer.organization_id
    )  # the shared database holds others' data
    sign_in(client, auditor.key)
    assert client.get("/deliveries").status_code == 403
    assert form_post(client, "/payouts/runs", {}).status_code == 403
    assert client.get("/ledger").status_code == 200


def test_the_pages_are_in_indonesian_unless_english_is_chosen(client: TestClient, buyer: Actor) -> None:
    sign_in(client, buyer.key)
    r = client.get("/payouts")
    assert '<html lang="id">' in r.text and "Putaran pembayaran" in r.text
    r = client.get("/lang/en?next=/payouts")
    assert r.status_code == 200 and r.url.path == "/payouts"
    assert '<html lang="en">' in r.text and "Payout runs" in r.text


def test_the_language_switch_never_sends_anyone_to_another_site(client: TestClient) -> None:
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        r = client.get("/lang/en", params={"next": target}, follow_redirects=False)
        assert r.headers["location"] == "/"


def test_the_pilot_report_downloads_as_csv_for_the_signed_in_buyer(client: TestClient, buyer: Actor) -> None:
    sign_in(client, buyer.key)
    r = client.get("/report.csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.text.startswith("dimension,key,name,metric,value")


def test_the_stylesheet_is_served_from_the_app(client: TestClient) -> None:
    r = client.get("/static/style.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")


def test_the_dashboard_is_not_part_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(p in paths for p in ("/", "/login", "/orders", "/report", "/ledger"))


def test_a_buyer_rejects_a_run_awaiting_approval_from_the_payouts_page(
    pg_url: str, tmp_path: Path, buyer: Actor
) -> None:
    settings = settings_for(pg_url, tmp_path, upah_payout_approval_threshold=10_000)
    with TestClient(create_app(settings), raise_server_exceptions=False) as web:
        worker = register(web, buyer)
        placed = post_order(web, buyer, worker["id"])
        confirm(web, buyer, deliver(web, buyer, placed["id"], worker["id"], 40)["id"], 40)
        run = web.post("/v1/payout-runs", json={}, headers=buyer.headers).json()
        assert run["status"] == "awaiting_approval"
        sign_in(web, buyer.key)
        assert f'action="/payouts/runs/{run["id"]}/reject"' in web.get("/payouts").text
        r = form_post(web, f"/payouts/runs/{run['id']}/reject", {})
        assert r.status_code == 200
        assert flash(r.text) == [
            f"Putaran #{run['id']} ditolak; uang yang ditahan dilepas untuk putaran berikutnya."
        ]
        after = web.get(f"/v1/payout-runs/{run['id']}", headers=buyer.headers).json()
        assert after["status"] == "rejected" and after["payouts"][0]["status"] == "failed"
