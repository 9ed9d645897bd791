"""SMS commands through the real HTTP app: authenticated, limited, answered once, only to the sender."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from integrations.sms import fits_one_sms
from integrations.sms_senders import SandboxSmsSender
from tests.api.conftest import Actor, confirm, deliver, post_order
from tests.channels.conftest import (
    PUBLIC_URL,
    TWILIO_TOKEN,
    App,
    Worker,
    announced,
    buyer_actor,
    new_phone,
    pending_sms,
    register_worker,
    relay_sms,
)

NIK = "3174015507880012"

BALANCE_ID = (
    "Upah: belum dibayar Rp5.000, dalam proses Rp0, dibayar bulan ini Rp0. "
    "Kirim RIWAYAT untuk pembayaran terakhir."
)
BALANCE_EN = (
    "Upah: owed to you Rp5.000, in process Rp0, paid this month Rp0. Send HIST for your last payments."
)
HELP_ID = (
    "Upah: kirim SALDO (saldo), RIWAYAT (pembayaran), TARIF (pekerjaan dan tarif). "
    "Menu lengkap lewat USSD. Upah tidak pernah meminta PIN Anda."
)
HELP_EN = (
    "Upah: send BAL (balance), HIST (payments), RATES (work and rates). "
    "Full menu by USSD. Upah never asks for your PIN."
)


@pytest.fixture
def wallet() -> str:
    return new_phone()


@pytest.fixture
def worker(app: App, buyer: Actor, wallet: str) -> Worker:
    """Owed Rp5.000 for 10 pairs, 90 pairs still to do; registered with her NIK and a wallet."""
    worker = register_worker(app, buyer, nik=NIK, wallet={"provider": "ovo", "account": wallet})
    order = post_order(app.client, buyer, worker.id, reference="PO-77", product="Sandal")
    confirm(app.client, buyer, deliver(app.client, buyer, order["id"], worker.id, 10)["id"], 10)
    announced(app, {worker.id})
    return worker


def ask(app: App, sender: SandboxSmsSender, worker: Worker, text: str) -> str:
    r = app.gateway.sms(worker.phone, text)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "reply": "queued"}
    assert relay_sms(app, sender, {worker.id}) == ["sent"]
    reply = sender.sent[-1]
    assert reply.to == worker.phone
    assert fits_one_sms(reply.text), reply.text
    return reply.text


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("SALDO", BALANCE_ID),
        ("saldo", BALANCE_ID),
        ("  Saldo!! ", BALANCE_ID),
        ("SaLdO.", BALANCE_ID),
        ("BAL", BALANCE_EN),
        ("bal?", BALANCE_EN),
        ("RIWAYAT", "Upah: belum ada pembayaran. Kirim SALDO untuk melihat saldo."),
        ("hist", "Upah: no payments yet. Send BAL to see your balance."),
        ("TARIF", "Upah, pekerjaan dan tarif:\nPO-77 Sandal Rp500/pasang sisa 90 s/d "),
        ("Rates", "Upah, open work and rates:\nPO-77 Sandal Rp500/pair 90 left by "),
        ("BANTUAN", HELP_ID),
        ("help", HELP_EN),
        ("apa kabar bu", HELP_ID),
        ("", HELP_ID),
        ("🙂🙂", HELP_ID),
    ],
)
def test_each_command_is_answered_in_one_sms(
    app: App, worker: Worker, sandbox_sms: SandboxSmsSender, command: str, expected: str
) -> None:
    reply = ask(app, sandbox_sms, worker, command)
    assert reply.startswith(expected), reply


def test_a_reply_never_carries_her_nik_or_her_wallet_number(
    app: App, worker: Worker, wallet: str, sandbox_sms: SandboxSmsSender
) -> None:
    replies = [
        ask(app, sandbox_sms, worker, c) for c in ("SALDO", "RIWAYAT", "TARIF", "BANTUAN", "BAL", "RATES")
    ]
    for reply in replies:
        digits = "".join(ch for ch in reply if ch.isdigit())
        assert NIK not in digits and NIK[-8:] not in digits
        assert wallet[3:] not in digits and wallet[-8:] not in digits


def test_the_reply_goes_only_to_the_number_that_asked(
    app: App, buyer: Actor, worker: Worker, sandbox_sms: SandboxSmsSender
) -> None:
    neighbour = register_worker(app, buyer)
    ask(app, sandbox_sms, worker, "SALDO")
    assert relay_sms(app, sandbox_sms, {neighbour.id}) == []
    assert {m.to for m in sandbox_sms.sent} == {worker.phone}


def test_an_unknown_number_gets_no_reply(app: App, sandbox_sms: SandboxSmsSender) -> None:
    r = app.gateway.sms(new_phone(), "SALDO")
    assert r.status_code == 200 and r.json() == {"received": True, "reply": "none"}


def test_a_spoofed_message_with_a_bad_signature_is_refused(app: App, worker: Worker) -> None:
    r = app.gateway.sms_raw({"from": worker.phone, "to": "98765", "text": "SALDO"}, secret="guessed")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_signature"
    unsigned = app.client.post(
        "/v1/gateway/sms",
        content=f"from={worker.phone}&to=98765&text=SALDO".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert unsigned.status_code == 401
    assert pending_sms(app.factory, {worker.id}) == []


def test_a_repeated_delivery_of_one_message_is_answered_once(
    app: App, worker: Worker, sandbox_sms: SandboxSmsSender
) -> None:
    body = f"from={worker.phone.replace('+', '%2B')}&to=98765&text=SALDO".encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Upah-Signature": app.gateway.sign("sms-gateway-secret-for-tests", body),
    }
    for _ in range(3):
        assert app.client.post("/v1/gateway/sms", content=body, headers=headers).status_code == 200
    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent", "sent", "sent"]  # one SMS, found sent
    assert len(sandbox_sms.sent) == 1


def test_a_replay_padded_with_another_signature_is_answered_once(
    app: App, worker: Worker, sandbox_sms: SandboxSmsSender
) -> None:
    body = f"from={worker.phone.replace('+', '%2B')}&to=98765&text=SALDO".encode()
    header = app.gateway.sign("sms-gateway-secret-for-tests", body)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for signature in (header, f"{header},{header.split(',')[1]}", f"{header},v1={'0' * 64}"):
        sent = app.client.post(
            "/v1/gateway/sms", content=body, headers={**form, "X-Upah-Signature": signature}
        )
        assert sent.status_code == 200
    relay_sms(app, sandbox_sms, {worker.id})
    assert len(sandbox_sms.sent) == 1


def test_a_malformed_message_is_refused_without_a_500(app: App, worker: Worker) -> None:
    r = app.gateway.sms_raw({"from": worker.phone, "text": "SALDO"})
    assert r.status_code == 422
    r = app.gateway.sms_raw({"from": "not a phone", "to": "1", "text": "SALDO"})
    assert r.status_code == 422
    r = app.gateway.sms_raw({"from": worker.phone, "to": "1", "text": "x" * 2000})
    assert r.status_code == 422


def test_a_number_that_floods_us_is_limited(make_app: Callable[..., App], admin: Actor) -> None:
    app = make_app(upah_sms_requests_per_minute=2)
    worker = register_worker(app, buyer_actor(app, admin))
    assert app.gateway.sms(worker.phone, "SALDO").status_code == 200
    assert app.gateway.sms(worker.phone, "SALDO").status_code == 200
    limited = app.gateway.sms(worker.phone, "SALDO")
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert len(pending_sms(app.factory, {worker.id})) == 2


# --- Twilio's inbound format ----------------------------------------------------------------------


def twilio_form(worker: Worker, body: str, sid: str | None = None) -> dict[str, str]:
    return {
        "ToCountry": "ID",
        "SmsMessageSid": sid or f"SM{uuid.uuid4().hex}",
        "NumMedia": "0",
        "From": worker.phone,
        "To": "+6281100000001",
        "Body": body,
        "MessageSid": sid or f"SM{uuid.uuid4().hex}",
        "AccountSid": "AC" + "0" * 32,
        "NumSegments": "1",
        "ApiVersion": "2010-04-01",
    }


def test_twilio_messages_signed_with_our_token_are_answered(
    app: App, worker: Worker, sandbox_sms: SandboxSmsSender
) -> None:
    sid = f"SM{uuid.uuid4().hex}"
    form = twilio_form(worker, "saldo", sid)
    r = app.gateway.twilio(form)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml")
    assert r.text == '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
    assert app.gateway.twilio(form).status_code == 200  # Twilio retried the webhook
    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent", "sent"]
    assert sandbox_sms.to(worker.phone) == [BALANCE_ID]


@pytest.mark.parametrize(
    ("token", "url"),
    [
        ("wrong-token", None),
        (TWILIO_TOKEN, "http://upah.example/v1/gateway/sms"),
        (TWILIO_TOKEN, f"{PUBLIC_URL}/v1/gateway/sms?x=1"),
    ],
)
def test_a_spoofed_twilio_request_is_refused(app: App, worker: Worker, token: str, url: str | None) -> None:
    r = app.gateway.twilio(twilio_form(worker, "SALDO"), token=token, url=url)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_signature"
    assert pending_sms(app.factory, {worker.id}) == []


def test_twilio_requests_are_refused_when_no_token_is_configured(
    make_app: Callable[..., App], admin: Actor
) -> None:
    app = make_app(twilio_auth_token=None)
    worker = register_worker(app, buyer_actor(app, admin))
    assert app.gateway.twilio(twilio_form(worker, "SALDO")).status_code == 401


def test_a_tampered_twilio_body_is_refused(app: App, worker: Worker) -> None:
    form = twilio_form(worker, "SALDO")
    from integrations.sms_senders import twilio_signature

    signature = twilio_signature(TWILIO_TOKEN, f"{PUBLIC_URL}/v1/gateway/sms", form.items())
    form["From"] = new_phone()
    r = app.client.post(
        "/v1/gateway/sms",
        data=form,
        headers={"X-Twilio-Signature": signature},
    )
    assert r.status_code == 401


# --- the sandbox's record -------------------------------------------------------------------------


def test_the_admin_can_read_what_the_sandbox_sent(
    app: App, admin: Actor, buyer: Actor, worker: Worker, sandbox_sms: SandboxSmsSender
) -> None:
    ask(app, sandbox_sms, worker, "SALDO")
    ask(app, sandbox_sms, worker, "HELP")
    r = app.client.get("/v1/sandbox/sms", headers=admin.headers)
    assert r.status_code == 200
    mine = [m for m in r.json() if m["homeworker_id"] == worker.id]
    assert [m["text"] for m in mine][:2] == [HELP_EN, BALANCE_ID]  # newest first
    assert [m["kind"] for m in mine][2:] == ["order_assigned"]  # the notice of her order came first
    assert all(m["to"] == worker.phone for m in mine)  # demo numbers are shown whole
    assert set(mine[0]) == {"to", "text", "sent_at", "kind", "homeworker_id"}
    assert app.client.get("/v1/sandbox/sms", headers=buyer.headers).status_code == 403


def test_the_sandbox_record_is_closed_when_a_real_gateway_is_configured(
    make_app: Callable[..., App], admin: Actor
) -> None:
    app = make_app(upah_sms_provider="twilio")
    assert app.client.get("/v1/sandbox/sms", headers=admin.headers).status_code == 404
