"""The real app on PostgreSQL with the gateway secrets set, a movable clock, and a phone to dial with.

Every USSD screen that passes through :class:`Gateway` is checked for what a feature phone
and a gateway can carry: ``CON``/``END``, at most 160 characters of screen, GSM-7 only (in
fact the safe printable subset), and no PIN that the test typed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from integrations import phones, signatures
from integrations.sms import gsm7_length, is_gsm7
from integrations.sms_senders import SandboxSmsSender, SmsSender, twilio_signature
from ledger import atomic, reports
from payments import channels, messages, outbox, parties, pii
from payments.tables import HomeworkerRow, OutboxRow, PayoutRow
from tests.api.conftest import Actor, deposit, make_key, new_org, settings_for

USSD_SECRET = "ussd-gateway-secret-for-tests"
SMS_SECRET = "sms-gateway-secret-for-tests"
USSD_TOKEN = "ussd-shared-token-for-tests"
TWILIO_TOKEN = "twilio-auth-token-for-tests"
PUBLIC_URL = "https://upah.example"
SERVICE_CODE = "*384*123#"


class Clock:
    """The app's clock: starts at real time, moves only when a test says so."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Screen:
    body: str

    @property
    def kind(self) -> str:
        return self.body[:3]

    @property
    def text(self) -> str:
        return self.body[4:]

    @property
    def ended(self) -> bool:
        return self.kind == "END"

    def __contains__(self, part: str) -> bool:
        return part in self.text


def check_screen(body: str, *, secrets_typed: Collection[str] = ()) -> Screen:
    """What every USSD reply must be, whatever was asked."""
    assert body.startswith(("CON ", "END ")), body
    screen = body[4:]
    assert 0 < len(screen) <= messages.LIMIT, (len(screen), screen)
    assert is_gsm7(body) and gsm7_length(body) <= 182, body
    assert all(ch in messages.SAFE_CHARS or ch == "\n" for ch in screen), screen
    for pin in secrets_typed:
        assert pin not in screen, "a PIN was echoed on a screen"
    return Screen(body)


@dataclass
class Gateway:
    """Signs and posts gateway requests the way our USSD and SMS gateways do."""

    client: TestClient
    clock: Clock
    pins_typed: set[str] = field(default_factory=set)

    def sign(self, secret: str, body: bytes) -> str:
        return signatures.sign(secret.encode(), body, timestamp=int(self.clock.now.timestamp()))

    def ussd_raw(self, form: dict[str, str] | bytes, headers: dict[str, str] | None = None) -> Any:
        body = form if isinstance(form, bytes) else urlencode(form).encode()
        sent = {"Content-Type": "application/x-www-form-urlencoded"}
        if headers is None:
            sent["X-Upah-Signature"] = self.sign(USSD_SECRET, body)
        else:
            sent.update(headers)
        return self.client.post("/v1/gateway/ussd", content=body, headers=sent)

    def ussd(self, *, session_id: str, phone: str, text: str) -> Screen:
        r = self.ussd_raw(
            {"sessionId": session_id, "serviceCode": SERVICE_CODE, "phoneNumber": phone, "text": text}
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        return check_screen(r.text, secrets_typed=self.pins_typed)

    def dial(self, phone: str) -> UssdSession:
        return UssdSession(self, phone)

    def sms_raw(self, form: dict[str, str], *, secret: str = SMS_SECRET) -> Any:
        body = urlencode(form).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Upah-Signature": self.sign(secret, body),
        }
        return self.client.post("/v1/gateway/sms", content=body, headers=headers)

    def sms(self, phone: str, text: str) -> Any:
        return self.sms_raw({"from": phone, "to": "98765", "text": text})

    def twilio(self, form: dict[str, str], *, token: str = TWILIO_TOKEN, url: str | None = None) -> Any:
        signature = twilio_signature(token, url or f"{PUBLIC_URL}/v1/gateway/sms", form.items())
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
        return self.client.post("/v1/gateway/sms", content=urlencode(form).encode(), headers=headers)


class UssdSession:
    """One dial of the USSD code: every answer is resent with the ones before it."""

    def __init__(self, gateway: Gateway, phone: str) -> None:
        self.gateway = gateway
        self.phone = phone
        self.id = f"ATUid_{uuid.uuid4().hex}"
        self.answers: list[str] = []

    def start(self) -> Screen:
        return self.gateway.ussd(session_id=self.id, phone=self.phone, text="")

    def press(self, answer: str) -> Screen:
        self.answers.append(answer)
        return self.gateway.ussd(session_id=self.id, phone=self.phone, text="*".join(self.answers))

    def pin(self, pin: str) -> Screen:
        self.gateway.pins_typed.add(pin)
        return self.press(pin)


@dataclass
class App:
    client: TestClient
    clock: Clock
    gateway: Gateway
    keyring: pii.Keyring
    factory: sessionmaker[Session]

    @property
    def runtime(self) -> Any:
        return self.client.app.state.runtime  # type: ignore[attr-defined]


@pytest.fixture
def make_app(pg_url: str, tmp_path: Path, pg_factory: sessionmaker[Session]) -> Iterator[Callable[..., App]]:
    """Build the real app (PostgreSQL, in-memory limiter, no queue) with settings overrides."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> App:
        options: dict[str, Any] = {
            "upah_ussd_gateway_secret": USSD_SECRET,
            "upah_sms_gateway_secret": SMS_SECRET,
            "twilio_auth_token": TWILIO_TOKEN,
            "upah_public_url": PUBLIC_URL,
            "redis_url": None,
            "celery_broker_url": None,
            "upah_ussd_requests_per_minute": 1000,
            "upah_sms_requests_per_minute": 1000,
        }
        options.update(overrides)
        settings = settings_for(pg_url, tmp_path / uuid.uuid4().hex[:8], **options)
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        clock = Clock()
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        runtime.clock = clock
        return App(client, clock, Gateway(client, clock), runtime.keyring, pg_factory)

    yield build
    for client in clients:
        client.__exit__(None, None, None)
    with pg_factory() as s:
        assert reports.check_integrity(s) == []


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


@pytest.fixture
def gateway(app: App) -> Gateway:
    return app.gateway


@pytest.fixture
def admin(pg_factory: sessionmaker[Session]) -> Actor:
    return make_key(pg_factory, parties.Role.ADMIN)


def buyer_actor(app: App, admin: Actor) -> Actor:
    org = new_org(app.client, admin, "buyer")
    deposit(app.client, admin, org, 50_000_000)
    return make_key(app.factory, parties.Role.BUYER, org)


@pytest.fixture
def buyer(app: App, admin: Actor) -> Actor:
    return buyer_actor(app, admin)


_numbers = iter(range(30_000, 99_999))


def new_phone() -> str:
    """A fictitious demo number (E.164), unique in this run."""
    return phones.demo_number((next(_numbers) + uuid.uuid4().int) % 100_000)


@dataclass
class Worker:
    id: int
    phone: str
    """E.164."""


def register_worker(app: App, actor: Actor, **overrides: Any) -> Worker:
    phone = overrides.pop("phone", None) or new_phone()
    body = {
        "name": "Siti Aminah",
        "phone": "0" + phone[3:],  # she gives it as people write it: 08…
        "region": "ID-JK",
        "wallet": {"provider": "dana", "account": phone},
        **overrides,
    }
    r = app.client.post("/v1/homeworkers", json=body, headers=actor.headers)
    assert r.status_code == 201, r.text
    return Worker(int(r.json()["id"]), phone)


def stored(app: App, worker: Worker) -> HomeworkerRow:
    """Her row as the database holds it now."""
    with app.factory() as s:
        return s.execute(select(HomeworkerRow).where(HomeworkerRow.id == worker.id)).scalar_one()


def set_pin(app: App, worker: Worker, pin: str) -> None:
    """First use: create the PIN twice, as she would."""
    dial = app.gateway.dial(worker.phone)
    assert "PIN" in dial.start()
    assert dial.pin(pin).kind == "CON"
    saved = dial.pin(pin)
    assert saved.ended and ("tersimpan" in saved or "saved" in saved)


def login(app: App, worker: Worker, pin: str) -> UssdSession:
    dial = app.gateway.dial(worker.phone)
    dial.start()
    menu = dial.pin(pin)
    assert menu.kind == "CON" and "1 " in menu, menu.body
    return dial


def _owner(session: Session, payload: dict[str, Any]) -> int | None:
    if isinstance(payload.get("homeworker_id"), int):
        return int(payload["homeworker_id"])
    if isinstance(payload.get("payout_id"), int):
        return session.execute(
            select(PayoutRow.homeworker_id).where(PayoutRow.id == payload["payout_id"])
        ).scalar_one_or_none()
    return None


def pending_sms(factory: sessionmaker[Session], homeworker_ids: set[int]) -> list[tuple[int, dict[str, Any]]]:
    """Outbox SMS messages for these homeworkers that no relay has taken yet."""
    with factory() as s:
        rows = s.execute(
            select(OutboxRow.id, OutboxRow.payload)
            .where(OutboxRow.topic == outbox.SEND_SMS, OutboxRow.relayed_at.is_(None))
            .order_by(OutboxRow.id)  # in the order they were queued, as the relay takes them
        ).all()
        return [(r.id, dict(r.payload)) for r in rows if _owner(s, dict(r.payload)) in homeworker_ids]


def relay_sms(
    app: App, sender: SmsSender, homeworker_ids: set[int], clock: Callable[[], datetime] | None = None
) -> list[str]:
    """Do what the relay and the ``sms.send`` task do, for these homeworkers' messages only."""
    outcomes = []
    for message_id, payload in pending_sms(app.factory, homeworker_ids):
        outcomes.append(
            channels.deliver_sms(
                app.factory, keyring=app.keyring, sender=sender, payload=payload, clock=clock or app.clock
            )
        )
        with atomic(app.factory) as s:
            s.execute(update(OutboxRow).where(OutboxRow.id == message_id).values(relayed_at=app.clock.now))
    return outcomes


def announced(app: App, homeworker_ids: set[int]) -> None:
    """Her order notices went out (to a gateway nobody reads): the scenario starts after them."""
    relay_sms(app, SandboxSmsSender(), homeworker_ids)


@pytest.fixture
def sandbox_sms() -> SandboxSmsSender:
    return SandboxSmsSender()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
