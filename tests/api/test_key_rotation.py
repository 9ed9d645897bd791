"""A key rotation as operators run it, seen from the API and the USSD gateway.

She registers while the service runs with K1; K2 is put first; ``upah keys rotate`` runs; the
service is restarted with K2 alone. A database of its own: a rotation reads whole tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.main import create_app
from integrations import phones
from ledger import chain
from payments import parties, pii
from tests.api.conftest import Actor, make_key, new_org, register
from tests.channels.conftest import USSD_SECRET, Clock, Gateway
from upah import cli
from upah.db import make_engine, make_session_factory
from upah.settings import Settings, get_settings

K1, K2 = pii.generate_key(), pii.generate_key()
SIGNING_KEY = chain.generate_private_key_text()


def app_with(url: str, tmp_path: Path, keys: str) -> TestClient:
    settings = Settings(
        database_url=url,
        upah_secret_keys=keys,
        upah_signing_key=SIGNING_KEY,
        upah_data_dir=tmp_path,
        upah_ussd_gateway_secret=USSD_SECRET,
        redis_url=None,
        celery_broker_url=None,
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


def rotate(url: str, tmp_path: Path, keys: str) -> None:
    env = {
        "DATABASE_URL": url,
        "UPAH_SECRET_KEYS": keys,
        "UPAH_SIGNING_KEY": SIGNING_KEY,
        "UPAH_DATA_DIR": str(tmp_path),
    }
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.app, ["keys", "rotate"], env=env)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output


@dataclass
class Registered:
    buyer: Actor
    homeworker_id: int
    phone: str
    """E.164."""


@pytest.fixture
def registered(fresh_pg_url: str, tmp_path: Path) -> Iterator[Registered]:
    """She registered through the API while the service ran with K1 alone."""
    engine = make_engine(fresh_pg_url)
    factory = make_session_factory(engine)
    phone = phones.demo_number(uuid.uuid4().int % 100_000)
    with app_with(fresh_pg_url, tmp_path, K1) as client:
        admin = make_key(factory, parties.Role.ADMIN)
        buyer = make_key(factory, parties.Role.BUYER, new_org(client, admin, "buyer"))
        worker = register(client, buyer, phone="0" + phone[3:])
    yield Registered(buyer, int(worker["id"]), phone)
    engine.dispose()


def test_while_both_keys_are_in_use_her_phone_cannot_be_registered_again(
    registered: Registered, fresh_pg_url: str, tmp_path: Path
) -> None:
    with app_with(fresh_pg_url, tmp_path, f"{K2},{K1}") as client:
        r = client.post(
            "/v1/homeworkers",
            headers=registered.buyer.headers,
            json={
                "name": "Siti Aminah",
                "phone": registered.phone,
                "region": "ID-JK",
                "wallet": {"provider": "dana", "account": registered.phone},
            },
        )
    assert r.status_code == 409, r.text


def test_after_rotation_the_api_reads_her_with_the_new_key_alone(
    registered: Registered, fresh_pg_url: str, tmp_path: Path
) -> None:
    rotate(fresh_pg_url, tmp_path, f"{K2},{K1}")
    with app_with(fresh_pg_url, tmp_path, K2) as client:
        r = client.get(f"/v1/homeworkers/{registered.homeworker_id}", headers=registered.buyer.headers)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Siti Aminah"


def test_after_rotation_ussd_finds_her_by_phone_with_the_new_key_alone(
    registered: Registered, fresh_pg_url: str, tmp_path: Path
) -> None:
    rotate(fresh_pg_url, tmp_path, f"{K2},{K1}")
    with app_with(fresh_pg_url, tmp_path, K2) as client:
        screen = Gateway(client, Clock()).dial(registered.phone).start()
    assert screen.kind == "CON" and "PIN" in screen, screen.body
