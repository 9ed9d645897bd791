"""Notices she gets without asking: paid, payment failed, new work, menu locked — sent once each."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
import responses
from sqlalchemy import select

from integrations.providers.base import TransferResult, TransferStatus
from integrations.providers.sandbox import SandboxProvider
from integrations.sms import fits_one_sms
from integrations.sms_senders import SandboxSmsSender, SmsTemporaryFailure
from integrations.twilio_sms import TwilioSmsSender
from ledger import atomic
from payments import channels, messages, orders, outbox, rates
from payments.dispatch import Dispatcher
from payments.messages import FailureReason, Language
from payments.payout_states import PayoutStatus
from payments.tables import PayoutRow, SmsMessageRow
from tests.api.conftest import Actor, confirm, deliver, post_order
from tests.channels.conftest import App, Worker, announced, pending_sms, register_worker, relay_sms
from tests.sandbox import LiveSandbox

SECRET = b"notice-test-callback-secret"
SID = "AC" + "1" * 32
MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json"


def real_looking_number() -> str:
    """A number outside the demo range, for a gateway that is mocked at the HTTP edge."""
    return "+62812" + "".join(random.choice("0123456789") for _ in range(7))


def twilio() -> TwilioSmsSender:
    return TwilioSmsSender(account_sid=SID, auth_token="token", from_number="+15005550006")


def created(to: str, body: str) -> dict[str, object]:
    return {
        "sid": f"SM{uuid.uuid4().hex}",
        "status": "queued",
        "to": to,
        "from": "+15005550006",
        "body": body,
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "error_code": None,
        "error_message": None,
    }


# --- order assigned ------------------------------------------------------------------------------


def test_new_work_is_announced_with_its_rate_and_hourly_pay_against_the_benchmark(
    app: App, buyer: Actor, sandbox_sms: SandboxSmsSender
) -> None:
    worker = register_worker(app, buyer)
    order = post_order(app.client, buyer, worker.id, reference="PO-KOK-3", product="Bulu kok")
    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent"]  # posting the order queued it
    finding = rates.assess(
        rate=Decimal(500),
        minutes_per_piece=Decimal(3),
        region="ID-JK",
        on=channels.local_date(app.clock.now),
        unit=rates.Unit.PASANG,
    )
    deadline = datetime.fromisoformat(order["deadline"]).date()
    expected = messages.order_assigned_notice(
        lang=Language.ID,
        order_ref="PO-KOK-3",
        product="Bulu kok",
        quantity=100,
        rate=Decimal(500),
        unit=rates.Unit.PASANG,
        deadline=deadline,
        effective_hourly=finding.effective_hourly,
        benchmark_hourly=finding.benchmark_hourly,
    )
    assert sandbox_sms.to(worker.phone) == [expected]
    assert "100 buah, tarif Rp500/pasang" in expected and "Upah per jam Rp10.000" in expected
    assert fits_one_sms(expected)
    with atomic(app.factory) as s:  # the same order announced again: still one SMS
        orders.announce(s, order_id=order["id"], homeworker_id=worker.id, now=app.clock.now)
    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent"]
    assert len(sandbox_sms.to(worker.phone)) == 1


def test_notices_follow_her_language(app: App, buyer: Actor, sandbox_sms: SandboxSmsSender) -> None:
    worker = register_worker(app, buyer, language="en")
    post_order(app.client, buyer, worker.id)
    relay_sms(app, sandbox_sms, {worker.id})
    (text,) = sandbox_sms.to(worker.phone)
    assert text.startswith("Upah: order ") and "100 pieces at Rp500/pair" in text


# --- payouts, through the real dispatcher and sandbox provider --------------------------------------


@pytest.fixture
def provider_sandbox(tmp_path: Path) -> Iterator[LiveSandbox]:
    server = LiveSandbox(tmp_path, SECRET, send_callbacks=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dispatcher(app: App, provider_sandbox: LiveSandbox) -> Iterator[Dispatcher]:
    provider = SandboxProvider(provider_sandbox.url, SECRET, timeout=(1.0, 2.0))
    yield Dispatcher(
        sessions=app.factory,
        providers={"sandbox": provider},
        keyring=app.keyring,
        clock=lambda: datetime.now(UTC),
    )
    provider._session.close()


def pay(app: App, buyer: Actor, dispatcher: Dispatcher) -> PayoutStatus:
    run = app.client.post("/v1/payout-runs", json={}, headers=buyer.headers)
    assert run.status_code == 201, run.text
    (line,) = run.json()["payouts"]
    status = dispatcher.dispatch(line["id"])
    if status is PayoutStatus.SUBMITTED:
        status = dispatcher.resolve(line["id"])
    return status


def test_she_is_told_when_her_pay_reaches_her_wallet(
    app: App, buyer: Actor, dispatcher: Dispatcher, sandbox_sms: SandboxSmsSender
) -> None:
    worker = register_worker(app, buyer)
    order = post_order(app.client, buyer, worker.id)
    confirm(app.client, buyer, deliver(app.client, buyer, order["id"], worker.id, 40)["id"], 40)
    announced(app, {worker.id})
    assert pay(app, buyer, dispatcher) is PayoutStatus.SUCCEEDED
    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent"]
    (text,) = sandbox_sms.to(worker.phone)
    day = channels.local_date(datetime.now(UTC)).strftime("%d/%m")
    assert text.startswith(f"Upah: Rp20.000 dikirim ke dompet Anda untuk 40 buah, {day}. Ref ")
    assert text.endswith("Upah tidak pernah meminta PIN Anda.") and fits_one_sms(text)
    payout_id = next(iter(pending_sms(app.factory, {worker.id})), None)
    assert payout_id is None  # dispatch queued exactly one notice, and it went
    with app.factory() as s:
        (paid,) = s.execute(select(PayoutRow.id).where(PayoutRow.homeworker_id == worker.id)).scalars().all()
    with atomic(app.factory) as s:  # the same notice queued again: still one SMS
        notice = {"kind": "payout_succeeded", "payout_id": paid}
        outbox.add(s, topic=outbox.SEND_SMS, payload=notice, now=app.clock.now)
    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent"]
    assert len(sandbox_sms.to(worker.phone)) == 1


def test_she_is_told_when_the_provider_takes_a_payment_back_and_that_it_is_owed_again(
    app: App, buyer: Actor, dispatcher: Dispatcher, sandbox_sms: SandboxSmsSender
) -> None:
    worker = register_worker(app, buyer)
    order = post_order(app.client, buyer, worker.id)
    confirm(app.client, buyer, deliver(app.client, buyer, order["id"], worker.id, 40)["id"], 40)
    announced(app, {worker.id})
    assert pay(app, buyer, dispatcher) is PayoutStatus.SUCCEEDED
    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent"]
    with app.factory() as s:
        paid = s.execute(select(PayoutRow).where(PayoutRow.homeworker_id == worker.id)).scalar_one()
    taken_back = TransferResult(TransferStatus.REVERSED, f"sbx-{paid.id}", raw_status="reversed")
    assert dispatcher._apply(paid.id, taken_back, source="callback") is PayoutStatus.REVERSED
    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent"]
    *_, text = sandbox_sms.to(worker.phone)
    assert text == messages.payout_reversed_notice(lang=Language.ID, amount=20_000, reference=paid.reference)
    assert fits_one_sms(text)
    assert pay(app, buyer, dispatcher) is PayoutStatus.SUCCEEDED  # paid again, for the same 40 pieces
    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent"]
    *_, again = sandbox_sms.to(worker.phone)
    assert "Rp20.000 dikirim ke dompet Anda untuk 40 buah" in again


def test_she_is_told_why_a_payment_failed_and_that_the_money_is_still_hers(
    app: App, buyer: Actor, dispatcher: Dispatcher, sandbox_sms: SandboxSmsSender
) -> None:
    worker = register_worker(app, buyer)
    order = post_order(
        app.client,
        buyer,
        worker.id,
        quantity=4_200,
        assignments=[{"homeworker_id": worker.id, "quantity": 4_200}],
    )
    confirm(app.client, buyer, deliver(app.client, buyer, order["id"], worker.id, 4_200)["id"], 4_200)
    announced(app, {worker.id})
    assert pay(app, buyer, dispatcher) is PayoutStatus.FAILED  # Rp2.100.000 > an unregistered wallet's limit
    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent"]
    (text,) = sandbox_sms.to(worker.phone)
    reference = text.rsplit("Ref ", 1)[1].rstrip(".")
    assert text == messages.payout_failed_notice(
        lang=Language.ID, amount=2_100_000, reason=FailureReason.WALLET_LIMIT, reference=reference
    )
    assert "Uang tetap tercatat sebagai hak Anda" in text


def test_a_payout_after_a_failed_one_counts_the_pieces_the_failed_one_returned(
    app: App,
    buyer: Actor,
    dispatcher: Dispatcher,
    provider_sandbox: LiveSandbox,
    sandbox_sms: SandboxSmsSender,
) -> None:
    worker = register_worker(app, buyer)
    wallet = {
        "account": worker.phone,
        "holder_name": "Siti Aminah",
        "registered": False,
        "balance": 1_990_000,
    }
    requests.post(provider_sandbox.url + "/v1/wallets", json=wallet, timeout=5).raise_for_status()
    order = post_order(app.client, buyer, worker.id)
    confirm(app.client, buyer, deliver(app.client, buyer, order["id"], worker.id, 40)["id"], 40)
    announced(app, {worker.id})
    assert pay(app, buyer, dispatcher) is PayoutStatus.FAILED  # her wallet is nearly full
    wallet.update(registered=True, balance=None)
    requests.post(provider_sandbox.url + "/v1/wallets", json=wallet, timeout=5).raise_for_status()
    assert pay(app, buyer, dispatcher) is PayoutStatus.SUCCEEDED
    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent", "sent"]
    failed, paid = sandbox_sms.to(worker.phone)
    assert "gagal" in failed
    assert "Rp20.000 dikirim ke dompet Anda untuk 40 buah" in paid


# --- through Twilio, mocked at the HTTP edge with its documented answers ----------------------------


def lock_her_out(app: App, worker: Worker) -> None:
    from tests.channels.conftest import set_pin

    set_pin(app, worker, "583927")
    for _ in range(3):
        dial = app.gateway.dial(worker.phone)
        dial.start()
        dial.pin("583928")


def test_the_pin_locked_notice_goes_out_through_twilio_once(app: App, buyer: Actor) -> None:
    worker = register_worker(app, buyer, phone=real_looking_number())
    lock_her_out(app, worker)
    text = messages.pin_locked_notice(lang=Language.ID)
    with responses.RequestsMock() as mock:
        mock.post(MESSAGES_URL, status=201, json=created(worker.phone, text))
        assert relay_sms(app, twilio(), {worker.id}) == ["sent"]
        (call,) = mock.calls
    sent = parse_qs(call.request.body)  # type: ignore[arg-type]
    assert sent == {"To": [worker.phone], "From": ["+15005550006"], "Body": [text]}
    assert call.request.headers["Authorization"].startswith("Basic ")
    with app.factory() as s:
        row = s.execute(select(SmsMessageRow).where(SmsMessageRow.homeworker_id == worker.id)).scalar_one()
    assert (row.status, row.provider, row.attempts) == ("sent", "twilio", 1)
    assert row.provider_message_id.startswith("SM")
    assert worker.phone not in (row.to_enc or "") and text not in (row.text_enc or "")  # sealed at rest


def test_twilio_busy_means_try_again_later_and_the_message_still_goes_once(app: App, buyer: Actor) -> None:
    worker = register_worker(app, buyer, phone=real_looking_number())
    lock_her_out(app, worker)
    ((_, payload),) = pending_sms(app.factory, {worker.id})
    too_many = {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }
    with responses.RequestsMock() as mock:
        mock.post(MESSAGES_URL, status=429, json=too_many, headers={"Retry-After": "2"})
        with pytest.raises(SmsTemporaryFailure) as busy:
            channels.deliver_sms(
                app.factory, keyring=app.keyring, sender=twilio(), payload=payload, clock=app.clock
            )
        assert busy.value.retry_after == 2
    with responses.RequestsMock() as mock:
        mock.post(MESSAGES_URL, status=201, json=created(worker.phone, "x"))
        assert (
            channels.deliver_sms(
                app.factory, keyring=app.keyring, sender=twilio(), payload=payload, clock=app.clock
            )
            == "sent"
        )
        assert (
            channels.deliver_sms(
                app.factory, keyring=app.keyring, sender=twilio(), payload=payload, clock=app.clock
            )
            == "sent"
        )
        assert len(mock.calls) == 1  # the task ran again (a relay crash): nothing resent


def test_an_invalid_number_fails_for_good_and_is_not_retried(app: App, buyer: Actor) -> None:
    worker = register_worker(app, buyer, phone=real_looking_number())
    lock_her_out(app, worker)
    invalid = {
        "code": 21211,
        "message": f"The 'To' number {worker.phone} is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400,
    }
    with responses.RequestsMock() as mock:
        mock.post(MESSAGES_URL, status=400, json=invalid)
        assert relay_sms(app, twilio(), {worker.id}) == ["failed"]
    with app.factory() as s:
        row = s.execute(select(SmsMessageRow).where(SmsMessageRow.homeworker_id == worker.id)).scalar_one()
    assert (row.status, row.error) == ("failed", "twilio_21211")


def test_demo_numbers_never_reach_twilio(app: App, buyer: Actor) -> None:
    worker = register_worker(app, buyer)  # a fictitious +62820… number
    lock_her_out(app, worker)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(MESSAGES_URL, status=201, json=created(worker.phone, "x"))
        assert relay_sms(app, twilio(), {worker.id}) == ["failed"]
        assert len(mock.calls) == 0
    with app.factory() as s:
        row = s.execute(select(SmsMessageRow).where(SmsMessageRow.homeworker_id == worker.id)).scalar_one()
    assert row.error == "demo_number"


def test_payloads_it_cannot_read_are_dropped_not_retried(app: App, sandbox_sms: SandboxSmsSender) -> None:
    for payload in (
        {},
        {"kind": "nonsense"},
        {"kind": "pin_locked"},
        {"kind": "payout_succeeded", "payout_id": "x"},
        {"kind": "sms_reply", "homeworker_id": 10**12, "key": "k"},
        {"kind": "payout_failed", "payout_id": 10**12},
    ):
        assert (
            channels.deliver_sms(
                app.factory, keyring=app.keyring, sender=sandbox_sms, payload=payload, clock=app.clock
            )
            == "skipped"
        )
    assert sandbox_sms.sent == []
