"""Every POST honours Idempotency-Key: same request → the first response; different → 409."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from ledger import atomic, chain
from payments import idempotency, parties, pii
from payments.tables import IdempotencyRow
from tests.api.conftest import Actor, fresh_phone, order_body, register
from upah.db import make_session_factory
from upah.settings import Settings, get_settings


def test_the_same_key_and_body_returns_the_first_response_and_posts_once(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    worker = register(client, buyer)
    body = order_body(worker["id"])
    headers = {**buyer.headers, "Idempotency-Key": "order-once"}
    first = client.post("/v1/orders", json=body, headers=headers)
    second = client.post("/v1/orders", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    with pg_factory() as s:
        n = s.execute(
            text("SELECT count(*) FROM orders WHERE reference = :r"), {"r": body["reference"]}
        ).scalar_one()
    assert n == 1


def test_the_same_body_serialised_again_with_other_spacing_and_key_order_is_the_same_request(
    client: TestClient, buyer: Actor
) -> None:
    worker = register(client, buyer)
    body = order_body(worker["id"])
    headers = {**buyer.headers, "Idempotency-Key": "order-reserialised", "Content-Type": "application/json"}
    first = client.post("/v1/orders", content=json.dumps(body), headers=headers)
    again = json.dumps(dict(reversed(list(body.items()))), indent=2)
    second = client.post("/v1/orders", content=again, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()


@pytest.mark.parametrize(
    "raw",
    [b'{"name": "\\ud800", "kind": "buyer"}', b"[" * 3000 + b"]" * 3000, b"{not json"],
    ids=["lone surrogate", "deep nesting", "not json"],
)
def test_a_body_the_endpoint_refuses_gets_the_same_4xx_with_a_key_as_without(
    client: TestClient, admin: Actor, raw: bytes
) -> None:
    headers = {**admin.headers, "Content-Type": "application/json"}
    bare = client.post("/v1/organizations", content=raw, headers=headers)
    keyed = client.post(
        "/v1/organizations", content=raw, headers={**headers, "Idempotency-Key": f"odd-{uuid.uuid4()}"}
    )
    assert 400 <= bare.status_code < 500
    assert keyed.status_code == bare.status_code, keyed.text


def test_the_same_key_with_a_different_body_is_a_conflict(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    headers = {**buyer.headers, "Idempotency-Key": "order-twice"}
    assert client.post("/v1/orders", json=order_body(worker["id"]), headers=headers).status_code == 201
    r = client.post(
        "/v1/orders",
        json=order_body(
            worker["id"], quantity=50, assignments=[{"homeworker_id": worker["id"], "quantity": 50}]
        ),
        headers=headers,
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "idempotency_conflict"


def test_keys_are_scoped_to_the_caller(client: TestClient, buyer: Actor, other_buyer: Actor) -> None:
    mine, theirs = register(client, buyer), register(client, other_buyer)
    assert (
        client.post(
            "/v1/orders", json=order_body(mine["id"]), headers={**buyer.headers, "Idempotency-Key": "shared"}
        ).status_code
        == 201
    )
    r = client.post(
        "/v1/orders",
        json=order_body(theirs["id"]),
        headers={**other_buyer.headers, "Idempotency-Key": "shared"},
    )
    assert r.status_code == 201


def test_an_error_response_is_replayed_too(client: TestClient, buyer: Actor) -> None:
    worker = register(client, buyer)
    body = order_body(worker["id"], piece_rate={"rate": "10000000"})
    headers = {**buyer.headers, "Idempotency-Key": "too-big"}
    first = client.post("/v1/orders", json=body, headers=headers)
    second = client.post("/v1/orders", json=body, headers=headers)
    assert first.status_code == second.status_code == 409
    assert first.json() == second.json()


def test_the_key_survives_a_restart(client: TestClient, buyer: Actor, api_settings: object) -> None:
    from api.main import create_app

    worker = register(client, buyer)
    body = order_body(worker["id"])
    headers = {**buyer.headers, "Idempotency-Key": "restart"}
    first = client.post("/v1/orders", json=body, headers=headers)
    with TestClient(create_app(api_settings)) as fresh:  # type: ignore[arg-type]
        again = fresh.post("/v1/orders", json=body, headers=headers)
    assert again.json() == first.json()


# --- stored responses are sealed at rest, and forgotten after the retention --------------------

SECRET_NAME = "Rahasia Nama Pekerja"


def _principal(factory: sessionmaker[Session], actor: Actor) -> str:
    """Records are kept per API key: the key's id, as authentication finds it."""
    with factory() as s:
        return f"key:{parties.authenticate(s, actor.key).key_id}"


def _stored_body(factory: sessionmaker[Session], actor: Actor, key: str) -> bytes:
    with factory() as s:
        row = s.execute(
            select(IdempotencyRow).where(
                IdempotencyRow.principal == _principal(factory, actor), IdempotencyRow.key == key
            )
        ).scalar_one()
        assert row.body is not None
        return row.body


def _register_once(client: TestClient, actor: Actor, key: str) -> tuple[dict[str, Any], Any]:
    body = {
        "name": SECRET_NAME,
        "phone": fresh_phone(),
        "region": "ID-JK",
        "wallet": {"provider": "dana", "account": fresh_phone()},
    }
    r = client.post("/v1/homeworkers", json=body, headers={**actor.headers, "Idempotency-Key": key})
    assert r.status_code == 201, r.text
    return body, r


def _homeworkers(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(s.execute(text("SELECT count(*) FROM homeworkers")).scalar_one())


def test_the_stored_response_holds_no_personal_data_in_clear(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    sent, r = _register_once(client, buyer, "sealed-at-rest")
    assert r.json()["name"] == SECRET_NAME  # the response itself names her
    stored = _stored_body(pg_factory, buyer, "sealed-at-rest")
    assert stored.startswith(b"pii1.")
    for clear in (SECRET_NAME, "Rahasia", sent["phone"], sent["phone"][1:], r.json()["phone"]):
        assert clear.encode() not in stored, clear


def test_a_replay_returns_the_identical_status_and_body(client: TestClient, buyer: Actor) -> None:
    sent, first = _register_once(client, buyer, "replay-identical")
    again = client.post(
        "/v1/homeworkers", json=sent, headers={**buyer.headers, "Idempotency-Key": "replay-identical"}
    )
    assert (again.status_code, again.headers["content-type"], again.content) == (
        first.status_code,
        first.headers["content-type"],
        first.content,
    )


def test_a_response_stored_in_clear_before_sealing_still_replays(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    sent, first = _register_once(client, buyer, "legacy-row")
    with atomic(pg_factory) as s:  # as every row was written before bodies were sealed
        s.execute(
            update(IdempotencyRow)
            .where(
                IdempotencyRow.principal == _principal(pg_factory, buyer), IdempotencyRow.key == "legacy-row"
            )
            .values(body=first.content)
        )
    again = client.post(
        "/v1/homeworkers", json=sent, headers={**buyer.headers, "Idempotency-Key": "legacy-row"}
    )
    assert (again.status_code, again.content) == (first.status_code, first.content)


def test_a_stored_response_replays_after_a_key_rotation(
    client: TestClient, buyer: Actor, api_settings: Settings, pg_factory: sessionmaker[Session]
) -> None:
    sent, first = _register_once(client, buyer, "rotated")
    rotated = api_settings.model_copy(
        update={"upah_secret_keys": f"{pii.generate_key()},{api_settings.upah_secret_keys}"}
    )
    before = _homeworkers(pg_factory)
    with TestClient(create_app(rotated)) as fresh:
        again = fresh.post(
            "/v1/homeworkers", json=sent, headers={**buyer.headers, "Idempotency-Key": "rotated"}
        )
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert _homeworkers(pg_factory) == before


def test_a_response_sealed_by_a_retired_key_is_refused_without_data_and_not_run_again(
    client: TestClient, buyer: Actor, api_settings: Settings, pg_factory: sessionmaker[Session]
) -> None:
    sent, _ = _register_once(client, buyer, "retired")
    retired = api_settings.model_copy(update={"upah_secret_keys": pii.generate_key()})
    before = _homeworkers(pg_factory)
    with TestClient(create_app(retired), raise_server_exceptions=False) as fresh:
        again = fresh.post(
            "/v1/homeworkers", json=sent, headers={**buyer.headers, "Idempotency-Key": "retired"}
        )
    assert again.status_code == 409
    error = again.json()["error"]
    assert (error["code"], error["details"]) == (
        "idempotency_conflict",
        {"reason": "stored_response_unreadable"},
    )
    assert SECRET_NAME not in again.text
    assert _homeworkers(pg_factory) == before


def test_a_body_that_is_not_utf8_is_sealed_and_opened_byte_for_byte() -> None:
    keyring = pii.Keyring.from_keys([pii.generate_key()])
    raw = bytes(range(256)) + b"\xff\xfe not text"
    sealed = idempotency.seal(keyring, raw)
    assert sealed.startswith(b"pii1.") and b"not text" not in sealed
    assert idempotency.unseal(keyring, sealed) == raw


def _key_row(principal: str, key: str, created_at: datetime) -> dict[str, Any]:
    return {
        "principal": principal,
        "key": key,
        "request_hash": "0" * 64,
        "status_code": 201,
        "content_type": "application/json",
        "body": b"{}",
        "created_at": created_at,
    }


def test_the_purge_forgets_keys_older_than_the_retention_only(pg_factory: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    principal = f"purge-{uuid.uuid4().hex}"
    with atomic(pg_factory) as s:
        s.execute(
            insert(IdempotencyRow),
            [
                _key_row(principal, "old", now - timedelta(days=30, seconds=1)),
                _key_row(principal, "recent", now - timedelta(days=29)),
                _key_row(principal, "in-flight", now - timedelta(days=31))
                | {"status_code": None, "body": None},
            ],
        )
    with atomic(pg_factory) as s:
        assert idempotency.purge(s, now=now, older_than=timedelta(days=30)) >= 2
    with pg_factory() as s:
        left = s.execute(select(IdempotencyRow.key).where(IdempotencyRow.principal == principal)).scalars()
        assert sorted(left) == ["recent"]


def test_the_beat_purges_with_the_configured_retention(
    sqlite_url: str, sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hourly task, run as the worker runs it (settings from the environment), on SQLite."""
    from workers import tasks
    from workers.app import celery_app
    from workers.schedule import beat_schedule

    factory = make_session_factory(sqlite_engine)
    now, principal = datetime.now(UTC), f"beat-{uuid.uuid4().hex}"
    with atomic(factory) as s:
        s.execute(
            insert(IdempotencyRow),
            [
                _key_row(principal, "three-days", now - timedelta(days=3)),
                _key_row(principal, "one-day", now - timedelta(days=1)),
            ],
        )
    assert "idempotency.purge_old_keys" in {job["task"] for job in beat_schedule().values()}
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("UPAH_SECRET_KEYS", pii.generate_key())
    monkeypatch.setenv("UPAH_SIGNING_KEY", chain.generate_private_key_text())
    monkeypatch.setenv("UPAH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UPAH_IDEMPOTENCY_RETENTION_DAYS", "2")
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    tasks.runtime.cache_clear()
    try:
        assert celery_app.tasks["idempotency.purge_old_keys"].run() >= 1
        tasks.runtime().db.engine.dispose()
    finally:
        get_settings.cache_clear()
        tasks.runtime.cache_clear()
    with factory() as s:
        left = s.execute(select(IdempotencyRow.key).where(IdempotencyRow.principal == principal)).scalars()
        assert sorted(left) == ["one-day"]


BONUS = {"kind": "bonus", "amount": {"amount": "1000", "currency": "IDR"}, "memo": "Lebaran"}


def test_one_caller_is_one_caller_however_it_spells_its_authorization_header(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    worker = register(client, buyer)
    url = f"/v1/homeworkers/{worker['id']}/adjustments"
    spellings = (f"Bearer {buyer.key}", f"bearer {buyer.key}", f"BEARER   {buyer.key}  ")
    answers = [
        client.post(url, json=BONUS, headers={"Authorization": h, "Idempotency-Key": "eid-bonus"})
        for h in spellings
    ]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert answers[1].json() == answers[2].json() == answers[0].json()
    with pg_factory() as s:
        paid = s.execute(
            text("SELECT count(*) FROM adjustments WHERE homeworker_id = :h"), {"h": worker["id"]}
        ).scalar_one()
    assert paid == 1


def test_a_revoked_key_gets_401_not_the_stored_response(
    client: TestClient, buyer: Actor, pg_factory: sessionmaker[Session]
) -> None:
    sent, first = _register_once(client, buyer, "before-revoking")
    assert first.status_code == 201
    with atomic(pg_factory) as s:
        key_id = parties.authenticate(s, buyer.key).key_id
        s.execute(text("UPDATE api_keys SET revoked_at = now() WHERE id = :k"), {"k": key_id})
    client.app.state.runtime.keys.clear()  # type: ignore[attr-defined]  # as after the cache's 2 s
    again = client.post(
        "/v1/homeworkers", json=sent, headers={**buyer.headers, "Idempotency-Key": "before-revoking"}
    )
    assert again.status_code == 401
    assert sent["name"] not in again.text


def test_requests_that_fail_authentication_leave_no_idempotency_record(
    client: TestClient, pg_factory: sessionmaker[Session]
) -> None:
    keys = [f"junk-{uuid.uuid4().hex}" for _ in range(3)]
    for key in keys:
        r = client.post(
            "/v1/orders", json={}, headers={"Authorization": "Bearer nope", "Idempotency-Key": key}
        )
        assert r.status_code == 401
    with pg_factory() as s:
        stored = s.execute(select(IdempotencyRow.key).where(IdempotencyRow.key.in_(keys))).scalars().all()
    assert stored == []


def test_the_same_upload_sent_again_with_its_key_gets_the_first_response(
    client: TestClient, admin: Actor
) -> None:
    statement = b"reference,idempotency_key,account,amount,currency,status,settled_at\n"
    headers = {**admin.headers, "Idempotency-Key": f"recon-{uuid.uuid4().hex}"}

    def upload() -> Any:  # each request gets a new random multipart boundary
        return client.post(
            "/v1/reconciliations",
            data={"provider": "sandbox"},
            files={"statement": ("statement.csv", statement, "text/csv")},
            headers=headers,
        )

    first, second = upload(), upload()
    assert first.status_code == 201
    assert (second.status_code, second.json()) == (first.status_code, first.json())


def test_the_embedded_sandbox_provider_sees_every_request_itself(api_settings: Settings) -> None:
    body = {
        "reference": f"p-{uuid.uuid4().hex[:8]}",
        "amount": 125000,
        "currency": "IDR",
        "channel": "ID_DANA",
        "account": "+6281234567890",
        "account_holder_name": "Siti",
        "description": "upah",
    }
    key = f"sbx-{uuid.uuid4().hex}"
    with TestClient(create_app(api_settings, mount_sandbox=True)) as c:
        for _ in range(2):
            assert (
                c.post("/sandbox/v1/payouts", json=body, headers={"Idempotency-Key": key}).status_code < 300
            )
        seen = c.get("/sandbox/v1/payouts", params={"idempotency_key": key}).json()
    assert seen["received_count"] == 2  # its own record of duplicates, not our replay layer's
