"""Whatever reaches the USSD endpoint, the answer is a clean screen or a 401 — never a 500."""

from __future__ import annotations

import string
import uuid
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from integrations import phones, signatures
from payments.tables import UssdSessionRow
from tests.api.conftest import Actor
from tests.channels.conftest import (
    SERVICE_CODE,
    USSD_SECRET,
    USSD_TOKEN,
    App,
    Worker,
    check_screen,
    login,
    register_worker,
    set_pin,
)

PIN = "583927"
UNKNOWN_NUMBER = "Maaf, layanan Upah tidak tersedia untuk nomor ini."
TOO_MANY = "Terlalu banyak jawaban salah. Silakan hubungi Upah lagi."
EXPIRED = "Sesi telah berakhir. Silakan hubungi Upah lagi."


@pytest.fixture
def worker(app: App, buyer: Actor) -> Worker:
    worker = register_worker(app, buyer)
    set_pin(app, worker, PIN)
    return worker


def sessions_named(app: App, session_id: str) -> int:
    with app.factory() as s:
        return int(
            s.execute(select(func.count()).where(UssdSessionRow.session_id == session_id)).scalar_one()
        )


def form(worker: Worker, text: str = "", session_id: str | None = None) -> dict[str, str]:
    return {
        "sessionId": session_id or uuid.uuid4().hex,
        "serviceCode": SERVICE_CODE,
        "phoneNumber": worker.phone,
        "text": text,
    }


def body_of(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda body, now: {}, id="no signature"),
        pytest.param(lambda body, now: {"X-Upah-Signature": "t=1,v1=abc"}, id="malformed"),
        pytest.param(
            lambda body, now: {"X-Upah-Signature": signatures.sign(b"wrong secret", body, timestamp=now)},
            id="wrong secret",
        ),
        pytest.param(
            lambda body, now: {
                "X-Upah-Signature": signatures.sign(USSD_SECRET.encode(), body + b"x", timestamp=now)
            },
            id="another body",
        ),
        pytest.param(
            lambda body, now: {
                "X-Upah-Signature": signatures.sign(USSD_SECRET.encode(), body, timestamp=now - 301)
            },
            id="too old",
        ),
        pytest.param(lambda body, now: {"X-Upah-Gateway-Token": USSD_TOKEN}, id="token not enabled"),
    ],
)
def test_a_request_without_a_valid_signature_is_refused_and_changes_nothing(
    app: App, worker: Worker, headers: Callable[[bytes, int], dict[str, str]]
) -> None:
    fields = form(worker)
    body = body_of(fields)
    sent = {
        "Content-Type": "application/x-www-form-urlencoded",
        **headers(body, int(app.clock.now.timestamp())),
    }
    r = app.client.post("/v1/gateway/ussd", content=body, headers=sent)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_signature"
    assert sessions_named(app, fields["sessionId"]) == 0


def test_with_no_secret_configured_every_request_is_refused(
    make_app: Callable[..., App], admin: Actor
) -> None:
    app = make_app(upah_ussd_gateway_secret=None)
    r = app.gateway.ussd_raw(form(Worker(0, phones.demo_number(1))))
    assert r.status_code == 401


def test_a_gateway_that_cannot_sign_may_use_the_shared_token(
    make_app: Callable[..., App], admin: Actor
) -> None:
    from tests.channels.conftest import buyer_actor

    app = make_app(upah_ussd_gateway_token=USSD_TOKEN)
    worker = register_worker(app, buyer_actor(app, admin))
    body = body_of(form(worker))
    base = {"Content-Type": "application/x-www-form-urlencoded"}
    ok = app.client.post(
        "/v1/gateway/ussd", content=body, headers={**base, "X-Upah-Gateway-Token": USSD_TOKEN}
    )
    assert ok.status_code == 200 and ok.text.startswith("CON ")
    wrong = app.client.post(
        "/v1/gateway/ussd", content=body, headers={**base, "X-Upah-Gateway-Token": "guess"}
    )
    assert wrong.status_code == 401
    missing = app.client.post("/v1/gateway/ussd", content=body, headers=base)
    assert missing.status_code == 401


# --- malformed and hostile input ----------------------------------------------------------------


def test_an_unknown_number_gets_a_polite_end_that_reveals_nothing(app: App) -> None:
    stranger = Worker(0, phones.demo_number(99_998))
    screen = app.gateway.ussd(session_id=uuid.uuid4().hex, phone=stranger.phone, text="")
    assert screen.ended and screen.text == UNKNOWN_NUMBER
    guess = app.gateway.ussd(session_id=uuid.uuid4().hex, phone=stranger.phone, text="583927*1")
    assert guess.text == UNKNOWN_NUMBER


def test_an_unknown_session_that_is_already_mid_menu_is_ended(app: App, worker: Worker) -> None:
    screen = app.gateway.ussd(session_id=uuid.uuid4().hex, phone=worker.phone, text=f"{PIN}*1")
    assert screen.ended and screen.text == EXPIRED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc", "CON PIN harus 4-6 angka."),
        ("*", "CON PIN harus 4-6 angka."),
        ("**", f"END {TOO_MANY}"),  # three empty answers in a row
        ("*" * 200, f"END {TOO_MANY}"),
        ("1" * 201, f"END {TOO_MANY}"),
        ("1*" * 21, f"END {TOO_MANY}"),
        ("\x00", "CON PIN harus 4-6 angka."),
        ("583927\n", "CON Upah\n1 Saldo"),  # stray whitespace around her PIN is forgiven
        ("٥٨٣٩٢٧", "CON PIN harus 4-6 angka."),
        ("<script>", "CON PIN harus 4-6 angka."),
        ("'; DROP TABLE homeworkers; --", "CON PIN harus 4-6 angka."),
    ],
)
def test_malformed_answers_get_the_screen_again_or_a_clear_end(
    app: App, worker: Worker, text: str, expected: str
) -> None:
    session_id = uuid.uuid4().hex
    app.gateway.ussd(session_id=session_id, phone=worker.phone, text="")
    screen = app.gateway.ussd(session_id=session_id, phone=worker.phone, text=text)
    assert screen.body.startswith(expected), screen.body


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"sessionId=x",
        b"sessionId=x&serviceCode=%2A384%23&text=",
        b"sessionId=x&serviceCode=%2A384%23&phoneNumber=not-a-phone&text=",
        b"sessionId=x&serviceCode=%2A384%23&phoneNumber=%2B15551234567&text=",
        b"sessionId=&serviceCode=%2A384%23&phoneNumber=%2B6282000000001&text=",
        b"sessionId=" + b"s" * 101 + b"&serviceCode=1&phoneNumber=%2B6282000000001&text=",
        b"sessionId=x&sessionId=y&serviceCode=1&phoneNumber=%2B6282000000001&text=",
        b"sessionId=x&serviceCode=1&phoneNumber=%2B6282000000001&text=%FF%FE",
        b"\xff\xfe\x00garbage",
        b'{"sessionId": "x", "phoneNumber": "+6282000000001"}',
        b"&".join(b"f%d=1" % i for i in range(200)),
        b"sessionId=x&serviceCode=1&phoneNumber=%2B6282000000001&text=%00%00",
    ],
)
def test_bodies_that_are_not_a_gateway_form_get_a_clean_end(app: App, raw: bytes) -> None:
    r = app.gateway.ussd_raw(raw)
    assert r.status_code == 200
    screen = check_screen(r.text)
    assert screen.ended


def test_a_repeated_request_is_answered_the_same_way(app: App, worker: Worker) -> None:
    dial = login(app, worker, PIN)
    first = dial.press("1")
    again = app.gateway.ussd(session_id=dial.id, phone=worker.phone, text="*".join(dial.answers))
    assert again.body == first.body


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    text=st.text(
        alphabet=st.sampled_from([*list("0123456789*#* \t"), "٣", "é", "\x00", "a", "Z"]), max_size=60
    ),
    start_fresh=st.booleans(),
    phone=st.sampled_from(["own", "stranger", "garbled"]),
)
def test_any_input_gets_a_valid_screen(
    app: App, worker: Worker, text: str, start_fresh: bool, phone: str
) -> None:
    session_id = uuid.uuid4().hex
    number = {"own": worker.phone, "stranger": phones.demo_number(99_997), "garbled": "08x" + text[:5]}[phone]
    fields = {"sessionId": session_id, "serviceCode": SERVICE_CODE, "phoneNumber": number, "text": ""}
    if not start_fresh:
        app.gateway.ussd_raw(fields)
    r = app.gateway.ussd_raw({**fields, "text": text})
    assert r.status_code == 200
    check_screen(r.text, secrets_typed={PIN} if PIN not in text else set())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300) | st.text(alphabet=string.printable, max_size=300).map(str.encode))
def test_any_bytes_get_a_valid_screen(app: App, raw: bytes) -> None:
    r = app.gateway.ussd_raw(raw)
    assert r.status_code == 200
    check_screen(r.text)


# --- rate limits ---------------------------------------------------------------------------------


def test_a_phone_that_keeps_dialling_is_slowed_down_and_others_are_not(
    make_app: Callable[..., App], admin: Actor
) -> None:
    from tests.channels.conftest import buyer_actor

    app = make_app(upah_ussd_requests_per_minute=3)
    buyer = buyer_actor(app, admin)
    busy, quiet = register_worker(app, buyer), register_worker(app, buyer)
    for _ in range(3):
        assert app.gateway.dial(busy.phone).start().kind == "CON"
    limited = app.gateway.dial(busy.phone).start()
    assert limited.ended and limited.text == "Maaf, layanan Upah sedang gangguan. Silakan coba lagi nanti."
    assert app.gateway.dial(quiet.phone).start().kind == "CON"
