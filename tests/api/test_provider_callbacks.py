"""POST /v1/providers/{provider}/callbacks: a provider's callback is authenticated, then
recorded with the task that applies it; a worker applies it (tests/payments, tests/workers)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from integrations import signatures
from payments import outbox
from payments.tables import OutboxRow, ProviderCallbackRow
from tests.api.conftest import settings_for

SECRET = "api-test-callback-secret"
URL = "/v1/providers/sandbox/callbacks"


@pytest.fixture
def provider_client(pg_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = settings_for(pg_url, tmp_path, upah_sandbox_callback_secret=SECRET)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def event(event_id: str) -> bytes:
    body = {
        "event_id": event_id,
        "id": "sbx-1",
        "reference": "r",
        "idempotency_key": f"no-such-payout-{event_id}",
        "status": "succeeded",
        "amount": 5_000,
        "currency": "IDR",
        "failure_code": None,
    }
    return json.dumps(body).encode()


def signed(raw: bytes, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Sandbox-Signature": signatures.sign(secret.encode(), raw, timestamp=int(time.time())),
        "Content-Type": "application/json",
    }


def recorded(factory: sessionmaker[Session], event_id: str) -> list[ProviderCallbackRow]:
    with factory() as s:
        query = select(ProviderCallbackRow).where(ProviderCallbackRow.event_id == event_id)
        return list(s.execute(query).scalars())


def test_a_signed_callback_is_recorded_with_the_task_that_applies_it(
    provider_client: TestClient, pg_factory: sessionmaker[Session]
) -> None:
    event_id = f"evt-{uuid.uuid4().hex}"
    raw = event(event_id)
    r = provider_client.post(URL, content=raw, headers=signed(raw))
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "outcome": "recorded"}
    [row] = recorded(pg_factory, event_id)
    assert row.outcome == "pending"
    with pg_factory() as s:
        queued = select(OutboxRow.payload).where(OutboxRow.topic == outbox.APPLY_CALLBACK)
        assert {"callback_id": row.id} in list(s.execute(queued).scalars())


def test_a_callback_delivered_again_is_answered_as_a_duplicate_and_recorded_once(
    provider_client: TestClient, pg_factory: sessionmaker[Session]
) -> None:
    event_id = f"evt-{uuid.uuid4().hex}"
    raw = event(event_id)
    provider_client.post(URL, content=raw, headers=signed(raw))
    r = provider_client.post(URL, content=raw, headers=signed(raw))
    assert r.status_code == 200 and r.json()["outcome"] == "duplicate"
    assert len(recorded(pg_factory, event_id)) == 1


def test_a_callback_signed_with_another_secret_gets_401_and_nothing_is_recorded(
    provider_client: TestClient, pg_factory: sessionmaker[Session]
) -> None:
    event_id = f"evt-{uuid.uuid4().hex}"
    raw = event(event_id)
    r = provider_client.post(URL, content=raw, headers=signed(raw, secret="not-the-providers-secret"))
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_signature"
    assert recorded(pg_factory, event_id) == []


def test_a_callback_whose_body_was_altered_after_signing_gets_401(
    provider_client: TestClient, pg_factory: sessionmaker[Session]
) -> None:
    event_id = f"evt-{uuid.uuid4().hex}"
    headers = signed(event(event_id))
    altered = event(event_id).replace(b"5000", b"9000")
    r = provider_client.post(URL, content=altered, headers=headers)
    assert r.status_code == 401
    assert recorded(pg_factory, event_id) == []


def test_a_callback_for_a_provider_we_do_not_use_gets_401(provider_client: TestClient) -> None:
    raw = event(f"evt-{uuid.uuid4().hex}")
    r = provider_client.post("/v1/providers/paypal/callbacks", content=raw, headers=signed(raw))
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_signature"


def test_a_callback_signed_more_than_300_seconds_ago_gets_401(
    provider_client: TestClient, pg_factory: sessionmaker[Session]
) -> None:
    event_id = f"evt-{uuid.uuid4().hex}"
    raw = event(event_id)
    stale = signatures.sign(SECRET.encode(), raw, timestamp=int(time.time()) - 301)
    r = provider_client.post(URL, content=raw, headers={"X-Sandbox-Signature": stale})
    assert r.status_code == 401
    assert recorded(pg_factory, event_id) == []
