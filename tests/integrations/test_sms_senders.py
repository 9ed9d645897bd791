"""SMS senders: the sandbox records, Twilio is spoken to as its documentation says, signatures hold.

Twilio is mocked only at the HTTP edge, with ``responses`` replaying its documented answers:
``201`` with the Message resource, ``429``/20429 (never processed, safe to retry), ``400``/21211
(invalid 'To'), ``401``/20003 (authentication), ``5xx``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from urllib.parse import parse_qs

import pytest
import requests
import responses

from integrations import phones
from integrations.signatures import SignatureError
from integrations.sms_senders import (
    SandboxSmsSender,
    SmsRejected,
    SmsSender,
    SmsTemporaryFailure,
    twilio_signature,
    verify_twilio_signature,
)
from integrations.twilio_sms import TwilioSmsSender, build_sender

SID = "AC" + "a" * 32
TOKEN = "twilio-test-auth-token"
URL = f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json"
TO = "+6281234567890"
TEXT = "Upah: Rp25.000 dikirim ke dompet Anda untuk 50 buah, 01/03-15/03. Ref P-17."


def sender(**options: object) -> TwilioSmsSender:
    return TwilioSmsSender(account_sid=SID, auth_token=TOKEN, from_number="+15005550006", **options)  # type: ignore[arg-type]


def message(status: str = "queued") -> dict[str, object]:
    return {
        "account_sid": SID,
        "api_version": "2010-04-01",
        "body": TEXT,
        "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
        "date_sent": None,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": "+15005550006",
        "num_segments": "1",
        "sid": "SM" + uuid.uuid4().hex,
        "status": status,
        "to": TO,
        "uri": f"/2010-04-01/Accounts/{SID}/Messages/SMxxx.json",
    }


def error(code: int, status: int, text: str) -> dict[str, object]:
    return {
        "code": code,
        "message": text,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


# --- the sandbox ----------------------------------------------------------------------------------


def test_the_sandbox_records_every_message_in_order() -> None:
    sandbox = SandboxSmsSender()
    first = sandbox.send(to=TO, text="one")
    second = sandbox.send(to=phones.demo_number(7), text="two")
    assert first.message_id != second.message_id and first.status == "sent"
    assert [(m.to, m.text) for m in sandbox.sent] == [(TO, "one"), (phones.demo_number(7), "two")]
    assert sandbox.to(TO) == ["one"]


@pytest.mark.parametrize("to", ["081234567890", "+1", "not a number", ""])
def test_the_sandbox_refuses_what_no_gateway_would_take(to: str) -> None:
    with pytest.raises(SmsRejected):
        SandboxSmsSender().send(to=to, text="x")


def test_both_senders_fit_the_interface() -> None:
    senders: list[SmsSender] = [SandboxSmsSender(), sender()]
    assert [s.name for s in senders] == ["sandbox", "twilio"]


# --- Twilio's Messages API ------------------------------------------------------------------------


@responses.activate
def test_a_message_is_one_form_post_with_basic_auth_and_returns_its_sid() -> None:
    answer = message()
    responses.post(URL, status=201, json=answer)
    sent = sender().send(to=TO, text=TEXT)
    assert (sent.message_id, sent.status) == (answer["sid"], "queued")
    (call,) = responses.calls
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    expected = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert call.request.headers["Authorization"] == f"Basic {expected}"
    assert parse_qs(call.request.body) == {"To": [TO], "From": ["+15005550006"], "Body": [TEXT]}  # type: ignore[arg-type]


@responses.activate
def test_a_messaging_service_and_status_callback_are_sent_when_configured() -> None:
    responses.post(URL, status=201, json=message("accepted"))
    service = TwilioSmsSender(
        account_sid=SID,
        auth_token=TOKEN,
        messaging_service_sid="MG" + "b" * 32,
        status_callback="https://upah.example/v1/gateway/sms/status",
    )
    assert service.send(to=TO, text=TEXT).status == "accepted"
    form = parse_qs(responses.calls[0].request.body)  # type: ignore[arg-type]
    assert form["MessagingServiceSid"] == ["MG" + "b" * 32] and "From" not in form
    assert form["StatusCallback"] == ["https://upah.example/v1/gateway/sms/status"]


@responses.activate
def test_429_is_never_processed_and_is_retried_after_the_given_delay() -> None:
    responses.post(URL, status=429, json=error(20429, 429, "Too Many Requests"), headers={"Retry-After": "3"})
    with pytest.raises(SmsTemporaryFailure) as busy:
        sender().send(to=TO, text=TEXT)
    assert busy.value.code == "twilio_20429" and busy.value.retry_after == 3


@responses.activate
def test_an_invalid_to_number_is_refused_for_good() -> None:
    responses.post(
        URL, status=400, json=error(21211, 400, f"The 'To' number {TO} is not a valid phone number.")
    )
    with pytest.raises(SmsRejected) as refused:
        sender().send(to=TO, text=TEXT)
    assert refused.value.code == "twilio_21211"


@responses.activate
@pytest.mark.parametrize("code", [21610, 21614])
def test_unsubscribed_or_landline_numbers_are_refused_for_good(code: int) -> None:
    responses.post(URL, status=400, json=error(code, 400, "refused"))
    with pytest.raises(SmsRejected):
        sender().send(to=TO, text=TEXT)


@responses.activate
@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (500, error(20500, 500, "Internal Server Error"), "http_500"),
        (503, {"message": "Service Unavailable"}, "http_503"),
        (401, error(20003, 401, "Authenticate"), "twilio_20003"),
        (404, error(20404, 404, "The requested resource was not found"), "twilio_20404"),
    ],
)
def test_server_errors_and_account_problems_wait_for_a_retry(
    status: int, body: dict[str, object], code: str
) -> None:
    responses.post(URL, status=status, json=body)
    with pytest.raises(SmsTemporaryFailure) as later:
        sender().send(to=TO, text=TEXT)
    assert later.value.code == code


@responses.activate
@pytest.mark.parametrize(
    "failure", [requests.ConnectTimeout(), requests.ReadTimeout(), requests.ConnectionError()]
)
def test_timeouts_and_unreachable_gateways_are_retried(failure: Exception) -> None:
    responses.post(URL, body=failure)
    with pytest.raises(SmsTemporaryFailure):
        sender().send(to=TO, text=TEXT)


@responses.activate
def test_a_2xx_without_a_readable_body_counts_as_sent_so_it_is_not_sent_twice() -> None:
    responses.post(URL, status=201, body="<html>oops</html>")
    assert sender().send(to=TO, text=TEXT).message_id == "unknown"


@responses.activate
@pytest.mark.parametrize("to", [phones.demo_number(0), phones.demo_number(99_999), "081234567890", "+62 812"])
def test_demo_and_non_e164_numbers_never_reach_twilio(to: str) -> None:
    with pytest.raises(SmsRejected) as refused:
        sender().send(to=to, text=TEXT)
    assert refused.value.code in ("demo_number", "invalid_number")
    assert len(responses.calls) == 0


def test_the_deployment_chooses_its_sender() -> None:
    assert isinstance(build_sender("sandbox"), SandboxSmsSender)
    assert isinstance(
        build_sender("twilio", twilio_account_sid=SID, twilio_auth_token=TOKEN, twilio_from_number="+1500"),
        TwilioSmsSender,
    )
    with pytest.raises(ValueError, match="TWILIO_ACCOUNT_SID"):
        build_sender("twilio")
    with pytest.raises(ValueError, match="unknown SMS provider"):
        build_sender("carrier-pigeon")
    with pytest.raises(ValueError, match="From"):
        TwilioSmsSender(account_sid=SID, auth_token=TOKEN)


# --- X-Twilio-Signature ----------------------------------------------------------------------------

DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def test_the_signature_is_hmac_sha1_of_the_url_and_sorted_parameters() -> None:
    data = DOC_URL + "".join(k + DOC_PARAMS[k] for k in sorted(DOC_PARAMS))
    expected = base64.b64encode(hmac.new(b"12345", data.encode(), hashlib.sha1).digest()).decode()
    assert twilio_signature("12345", DOC_URL, DOC_PARAMS.items()) == expected
    assert expected == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="  # the worked example Twilio's libraries test against


def test_a_valid_signature_is_accepted_whatever_the_parameter_order() -> None:
    signature = twilio_signature(TOKEN, DOC_URL, DOC_PARAMS.items())
    verify_twilio_signature(TOKEN, signature, url=DOC_URL, params=dict(reversed(list(DOC_PARAMS.items()))))


@pytest.mark.parametrize(
    ("token", "header", "url", "params"),
    [
        ("other-token", None, DOC_URL, DOC_PARAMS),
        (TOKEN, "", DOC_URL, DOC_PARAMS),
        (TOKEN, None, DOC_URL.replace("https", "http"), DOC_PARAMS),
        (TOKEN, None, DOC_URL, {**DOC_PARAMS, "Digits": "1235"}),
        (TOKEN, None, DOC_URL, {**DOC_PARAMS, "Extra": "1"}),
        (None, None, DOC_URL, DOC_PARAMS),
        (TOKEN, "x" * 300, DOC_URL, DOC_PARAMS),
    ],
)
def test_anything_else_is_refused(
    token: str | None, header: str | None, url: str, params: dict[str, str]
) -> None:
    signed = twilio_signature(TOKEN, DOC_URL, DOC_PARAMS.items())
    with pytest.raises(SignatureError):
        verify_twilio_signature(token, signed if header is None else header, url=url, params=params)


def test_a_missing_header_is_refused() -> None:
    with pytest.raises(SignatureError, match="missing"):
        verify_twilio_signature(TOKEN, None, url=DOC_URL, params=DOC_PARAMS)
