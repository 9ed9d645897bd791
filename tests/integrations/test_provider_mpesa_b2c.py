"""The M-Pesa B2C (Daraja) adapter, against Daraja's documented HTTP behaviour (responses)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from integrations.providers.base import (
    CALLBACK_QUERY_HEADER,
    InvalidCallback,
    OutcomeUnknown,
    ProviderConfigError,
    RateLimited,
    TransferRejected,
    TransferRequest,
    TransferStatus,
)
from integrations.providers.mpesa_b2c import MpesaB2CProvider

API = "https://sandbox.safaricom.co.ke"
TOKEN_URL = f"{API}/oauth/v1/generate"
PAY_URL = f"{API}/mpesa/b2c/v3/paymentrequest"
STATUS_URL = f"{API}/mpesa/transactionstatus/v1/query"
KEY = "upah-payout-7f3c"
CONVERSATION = "AG_20250310_0000123456abcdef"
CALLBACK_TOKEN = "mpesa-url-token"
RESULT_URL = "https://upah.example/v1/providers/mpesa_b2c/callbacks"
ACCESS_TOKEN = "c9SQxWWhmdVRlyh0zh8gZDTkubVF"


class Clock:
    def __init__(self):
        self.now = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)

    def __call__(self):
        return self.now


def transfer(**overrides):
    fields = {
        "idempotency_key": KEY,
        "reference": "payout-001",
        "amount": 1500,
        "currency": "KES",
        "channel": "MPESA",
        "account": "+254708374149",
        "account_holder_name": "Wanjiku Kamau",
        "description": "Piecework pay",
    }
    fields.update(overrides)
    return TransferRequest(**fields)


def ack(**overrides):
    data = {
        "ConversationID": CONVERSATION,
        "OriginatorConversationID": KEY,
        "ResponseCode": "0",
        "ResponseDescription": "Accept the service request successfully.",
    }
    data.update(overrides)
    return data


def daraja_error(code, message):
    return {"requestId": "11728-2929992-1", "errorCode": code, "errorMessage": message}


class DarajaB2C:
    """Daraja's B2C endpoint keyed by OriginatorConversationID, its de-duplication key.

    The same request again is acknowledged as the same conversation. What Daraja answers to a
    reused OriginatorConversationID with a different request is not published; this answers a
    duplicate error, the reading the adapter is built for.
    """

    def __init__(self):
        self.seen = {}

    def __call__(self, request):
        body = json.loads(request.body)
        key = body["OriginatorConversationID"]
        first = self.seen.setdefault(key, body)
        if first != body:
            return 409, {}, json.dumps(daraja_error("409.001.01", "Duplicate OriginatorConversationID"))
        return 200, {}, json.dumps(ack(OriginatorConversationID=key))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def daraja():
    with responses.RequestsMock() as mock:
        yield mock


def with_token(mock, expires_in="3599", token=ACCESS_TOKEN):
    return mock.get(TOKEN_URL, json={"access_token": token, "expires_in": expires_in})


@pytest.fixture
def mpesa(clock):
    return MpesaB2CProvider(
        consumer_key="consumer-key",
        consumer_secret="consumer-secret",
        initiator_name="testapi",
        security_credential="ENCRYPTED==",
        shortcode="600978",
        result_url=RESULT_URL,
        queue_timeout_url=RESULT_URL,
        callback_token=CALLBACK_TOKEN,
        base_url=API,
        clock=clock,
    )


def sent_body(mock, index=-1):
    payments = [c for c in mock.calls if c.request.url.startswith(PAY_URL)]
    return json.loads(payments[index].request.body)


def url_query(url):
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


# ---------------------------------------------------------------- OAuth


def test_token_is_fetched_with_client_credentials_and_basic_auth(daraja, mpesa):
    token = with_token(daraja)
    daraja.post(PAY_URL, json=ack())
    mpesa.send(transfer())
    request = token.calls[0].request
    expected = base64.b64encode(b"consumer-key:consumer-secret").decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert url_query(request.url) == {"grant_type": "client_credentials"}


def test_payment_request_carries_the_bearer_token(daraja, mpesa):
    with_token(daraja, token="tok-1")
    daraja.post(PAY_URL, json=ack())
    mpesa.send(transfer())
    assert daraja.calls[1].request.headers["Authorization"] == "Bearer tok-1"


def test_token_is_reused_until_shortly_before_it_expires(daraja, mpesa, clock):
    token = with_token(daraja)
    daraja.post(PAY_URL, json=ack())
    mpesa.send(transfer())
    clock.now += timedelta(seconds=3500)
    mpesa.send(transfer())
    assert token.call_count == 1


def test_token_is_fetched_again_once_expired(daraja, mpesa, clock):
    token = with_token(daraja)
    daraja.post(PAY_URL, json=ack())
    mpesa.send(transfer())
    clock.now += timedelta(seconds=3545)
    mpesa.send(transfer())
    assert token.call_count == 2


def test_cached_token_refused_is_replaced_and_the_request_sent_once_more(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, json=ack())
    mpesa.send(transfer())
    daraja.replace(
        responses.POST, PAY_URL, status=404, json=daraja_error("404.001.03", "Invalid Access Token")
    )
    daraja.add(responses.POST, PAY_URL, json=ack())
    assert mpesa.send(transfer()).status is TransferStatus.PENDING


def test_fresh_token_refused_is_a_config_error(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, status=401, json=daraja_error("401.003.01", "Error Occurred - Invalid Access Token"))
    with pytest.raises(ProviderConfigError):
        mpesa.send(transfer())


def test_wrong_consumer_key_is_a_config_error(daraja, mpesa):
    daraja.get(TOKEN_URL, status=400, json=daraja_error("400.008.01", "Invalid Authentication passed"))
    with pytest.raises(ProviderConfigError):
        mpesa.send(transfer())


def test_token_endpoint_timeout_is_outcome_unknown(daraja, mpesa):
    daraja.get(TOKEN_URL, body=requests.exceptions.ReadTimeout())
    with pytest.raises(OutcomeUnknown):
        mpesa.send(transfer())


# ---------------------------------------------------------------- payment request


def test_accepted_request_is_pending_with_the_conversation_id(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, json=ack())
    result = mpesa.send(transfer())
    assert (result.status, result.provider_reference, result.raw_status) == (
        TransferStatus.PENDING,
        CONVERSATION,
        "accepted",
    )


def test_request_follows_the_daraja_b2c_schema(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, json=ack())
    mpesa.send(transfer())
    body = sent_body(daraja)
    assert {key: body[key] for key in body if not key.endswith("URL")} == {
        "OriginatorConversationID": KEY,
        "InitiatorName": "testapi",
        "SecurityCredential": "ENCRYPTED==",
        "CommandID": "BusinessPayment",
        "Amount": 1500,
        "PartyA": "600978",
        "PartyB": "254708374149",
        "Remarks": "Piecework pay",
        "Occasion": "payout-001",
    }


def test_result_url_carries_the_callback_token_key_and_kind(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, json=ack())
    mpesa.send(transfer())
    body = sent_body(daraja)
    assert url_query(body["ResultURL"]) == {
        "upah_token": CALLBACK_TOKEN,
        "upah_key": KEY,
        "upah_kind": "payment",
    }
    assert url_query(body["QueueTimeOutURL"])["upah_kind"] == "timeout"


def test_same_key_replayed_is_acknowledged_as_the_same_conversation(daraja, mpesa):
    with_token(daraja)
    daraja.add_callback(responses.POST, PAY_URL, callback=DarajaB2C())
    first = mpesa.send(transfer())
    assert mpesa.send(transfer()) == first
    assert sent_body(daraja, 0) == sent_body(daraja, 1)


def test_same_key_with_a_different_request_is_an_idempotency_conflict(daraja, mpesa):
    with_token(daraja)
    daraja.add_callback(responses.POST, PAY_URL, callback=DarajaB2C())
    mpesa.send(transfer())
    with pytest.raises(TransferRejected) as caught:
        mpesa.send(transfer(amount=2000))
    assert caught.value.code == "idempotency_conflict"


def test_timeout_is_outcome_unknown_not_failure(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(OutcomeUnknown):
        mpesa.send(transfer())


def test_connection_error_is_outcome_unknown(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, body=requests.exceptions.ConnectionError("reset by peer"))
    with pytest.raises(OutcomeUnknown):
        mpesa.send(transfer())


def test_system_busy_is_outcome_unknown(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, status=500, json=daraja_error("500.003.02", "System is busy"))
    with pytest.raises(OutcomeUnknown):
        mpesa.send(transfer())


def test_malformed_json_is_outcome_unknown(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, body="<soapenv:Fault/>", status=200)
    with pytest.raises(OutcomeUnknown):
        mpesa.send(transfer())


def test_acknowledgement_for_another_conversation_is_outcome_unknown(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, json=ack(OriginatorConversationID="someone-else"))
    with pytest.raises(OutcomeUnknown):
        mpesa.send(transfer())


def test_rate_limit_honours_retry_after(daraja, mpesa):
    with_token(daraja)
    daraja.post(
        PAY_URL,
        status=429,
        json=daraja_error("429.001.01", "Too many requests"),
        headers={"Retry-After": "2"},
    )
    with pytest.raises(RateLimited) as caught:
        mpesa.send(transfer())
    assert caught.value.retry_after == 2.0


def test_spike_arrest_is_rate_limited(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, status=500, json=daraja_error("500.003.03", "Spike arrest violation"))
    with pytest.raises(RateLimited):
        mpesa.send(transfer())


def test_invalid_receiver_rejected_by_daraja_is_invalid_account(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, status=400, json=daraja_error("400.002.02", "Bad Request - Invalid PartyB"))
    with pytest.raises(TransferRejected) as caught:
        mpesa.send(transfer())
    assert caught.value.code == "invalid_account"


def test_receiver_that_is_not_a_kenyan_msisdn_is_rejected_before_sending(daraja, mpesa):
    with pytest.raises(TransferRejected) as caught:
        mpesa.send(transfer(account="+6281234567001"))
    assert caught.value.code == "invalid_account"
    assert len(daraja.calls) == 0


def test_non_kes_payout_is_rejected_before_sending(daraja, mpesa):
    with pytest.raises(TransferRejected) as caught:
        mpesa.send(transfer(currency="IDR"))
    assert caught.value.code == "unsupported_currency"
    assert len(daraja.calls) == 0


def test_refused_acknowledgement_is_rejected(daraja, mpesa):
    with_token(daraja)
    daraja.post(PAY_URL, json=ack(ResponseCode="1", ResponseDescription="Rejected"))
    with pytest.raises(TransferRejected):
        mpesa.send(transfer())


def test_adapter_refuses_missing_credentials():
    with pytest.raises(ProviderConfigError, match="consumer_secret"):
        MpesaB2CProvider(
            consumer_key="k",
            consumer_secret="",
            initiator_name="testapi",
            security_credential="ENC",
            shortcode="600978",
            result_url=RESULT_URL,
            queue_timeout_url=RESULT_URL,
            callback_token=CALLBACK_TOKEN,
        )


# ---------------------------------------------------------------- status query


def test_status_submits_a_transaction_status_query_by_our_key(daraja, mpesa):
    with_token(daraja)
    query = daraja.post(STATUS_URL, json=ack(OriginatorConversationID="q-1"))
    mpesa.status(idempotency_key=KEY, provider_reference=CONVERSATION)
    body = json.loads(query.calls[0].request.body)
    assert (body["CommandID"], body["OriginalConversationID"], body["PartyA"], body["IdentifierType"]) == (
        "TransactionStatusQuery",
        KEY,
        "600978",
        "4",
    )
    assert url_query(body["ResultURL"])["upah_kind"] == "status"


def test_status_is_pending_until_the_answer_arrives_by_callback(daraja, mpesa):
    with_token(daraja)
    daraja.post(STATUS_URL, json=ack(OriginatorConversationID="q-1"))
    result = mpesa.status(idempotency_key=KEY, provider_reference=CONVERSATION)
    assert (result.status, result.provider_reference, result.raw_status) == (
        TransferStatus.PENDING,
        CONVERSATION,
        "status_query_accepted",
    )


def test_status_query_timeout_is_outcome_unknown(daraja, mpesa):
    with_token(daraja)
    daraja.post(STATUS_URL, body=requests.exceptions.ReadTimeout())
    with pytest.raises(OutcomeUnknown):
        mpesa.status(idempotency_key=KEY, provider_reference=None)


# ---------------------------------------------------------------- result callbacks


def callback_headers(kind="payment", token=CALLBACK_TOKEN, key=KEY):
    return {CALLBACK_QUERY_HEADER: f"upah_token={token}&upah_key={key}&upah_kind={kind}"}


def b2c_result(code=0, description="The service request is processed successfully.", amount=1500):
    result = {
        "ResultType": 0,
        "ResultCode": code,
        "ResultDesc": description,
        "OriginatorConversationID": KEY,
        "ConversationID": CONVERSATION,
        "TransactionID": "NLJ41HAY6Q",
        "ReferenceData": {
            "ReferenceItem": {
                "Key": "QueueTimeoutURL",
                "Value": "https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit",
            }
        },
    }
    if code == 0:
        result["ResultParameters"] = {
            "ResultParameter": [
                {"Key": "TransactionAmount", "Value": amount},
                {"Key": "TransactionReceipt", "Value": "NLJ41HAY6Q"},
                {"Key": "B2CRecipientIsRegisteredCustomer", "Value": "Y"},
                {"Key": "ReceiverPartyPublicName", "Value": "254708374149 - Wanjiku Kamau"},
                {"Key": "TransactionCompletedDateTime", "Value": "10.03.2025 11:45:50"},
                {"Key": "B2CUtilityAccountAvailableFunds", "Value": 10116.00},
            ]
        }
    return json.dumps({"Result": result}).encode()


def status_result(code=0, transaction_status="Completed"):
    result = {
        "ResultType": 0,
        "ResultCode": code,
        "ResultDesc": "The service request has been accepted successfully.",
        "OriginatorConversationID": "q-1",
        "ConversationID": "AG_20250310_0000657265d5fa9ae5c0",
        "TransactionID": "NAL0000000",
    }
    if code == 0:
        result["ResultParameters"] = {
            "ResultParameter": [
                {"Key": "DebitPartyName", "Value": "600978 - Safaricom"},
                {"Key": "CreditPartyName", "Value": "254708374149 - Wanjiku Kamau"},
                {"Key": "ReasonType", "Value": "Business Payment to Customer via API"},
                {"Key": "TransactionStatus", "Value": transaction_status},
                {"Key": "Amount", "Value": 1500},
                {"Key": "ReceiptNo", "Value": "NLJ41HAY6Q"},
            ]
        }
    return json.dumps({"Result": result}).encode()


NOW = datetime(2025, 3, 10, 8, 5, tzinfo=UTC)


def test_successful_result_is_succeeded_with_the_amount(mpesa):
    event = mpesa.parse_callback(headers=callback_headers(), body=b2c_result(), now=NOW)
    assert (event.status, event.idempotency_key, event.provider_reference, event.amount, event.currency) == (
        TransferStatus.SUCCEEDED,
        KEY,
        CONVERSATION,
        1500,
        "KES",
    )


def test_invalid_initiator_result_is_failed(mpesa):
    body = b2c_result(2001, "The initiator information is invalid.")
    event = mpesa.parse_callback(headers=callback_headers(), body=body, now=NOW)
    assert (event.status, event.failure_code) == (TransferStatus.FAILED, "invalid_initiator")


def test_insufficient_balance_result_is_failed_insufficient_balance(mpesa):
    body = b2c_result(1, "The balance is insufficient for the transaction.")
    event = mpesa.parse_callback(headers=callback_headers(), body=body, now=NOW)
    assert (event.status, event.failure_code) == (TransferStatus.FAILED, "insufficient_balance")


def test_receiver_mpesa_cannot_pay_is_failed_invalid_account(mpesa):
    body = b2c_result(2040, "Credit Party customer type can't be supported by the service.")
    event = mpesa.parse_callback(headers=callback_headers(), body=body, now=NOW)
    assert event.failure_code == "invalid_account"


def test_other_result_codes_are_failures_named_after_the_code(mpesa):
    event = mpesa.parse_callback(headers=callback_headers(), body=b2c_result(17, "Internal failure"), now=NOW)
    assert (event.status, event.failure_code) == (TransferStatus.FAILED, "mpesa_17")


def test_duplicate_detected_result_leaves_the_payout_pending(mpesa):
    body = b2c_result(15, "Duplicate Detected")
    event = mpesa.parse_callback(headers=callback_headers(), body=body, now=NOW)
    assert (event.status, event.failure_code) == (TransferStatus.PENDING, "duplicate_detected")


def test_result_with_a_wrong_url_token_is_invalid(mpesa):
    with pytest.raises(InvalidCallback):
        mpesa.parse_callback(headers=callback_headers(token="guess"), body=b2c_result(), now=NOW)


def test_result_without_the_url_query_is_invalid(mpesa):
    with pytest.raises(InvalidCallback):
        mpesa.parse_callback(headers={}, body=b2c_result(), now=NOW)


def test_result_with_two_tokens_is_invalid(mpesa):
    headers = {
        CALLBACK_QUERY_HEADER: f"upah_token=x&upah_token={CALLBACK_TOKEN}&upah_key={KEY}&upah_kind=payment"
    }
    with pytest.raises(InvalidCallback):
        mpesa.parse_callback(headers=headers, body=b2c_result(), now=NOW)


def test_result_that_is_not_json_is_invalid(mpesa):
    with pytest.raises(InvalidCallback):
        mpesa.parse_callback(headers=callback_headers(), body=b"{", now=NOW)


def test_result_without_a_result_object_is_invalid(mpesa):
    with pytest.raises(InvalidCallback):
        mpesa.parse_callback(headers=callback_headers(), body=b'{"Body": {}}', now=NOW)


def test_redelivered_result_has_the_same_event_id(mpesa):
    first = mpesa.parse_callback(headers=callback_headers(), body=b2c_result(), now=NOW)
    again = mpesa.parse_callback(headers=callback_headers(), body=b2c_result(), now=NOW)
    assert first.event_id == again.event_id


def test_fractional_result_amount_is_not_taken_as_shillings(mpesa):
    event = mpesa.parse_callback(headers=callback_headers(), body=b2c_result(amount=1500.5), now=NOW)
    assert event.amount is None


def test_queue_timeout_notice_leaves_the_payout_pending(mpesa):
    body = b2c_result(1, "The request timed out in the queue.")
    event = mpesa.parse_callback(headers=callback_headers("timeout"), body=body, now=NOW)
    assert (event.status, event.failure_code) == (TransferStatus.PENDING, "queue_timeout")


def test_status_result_completed_is_succeeded(mpesa):
    event = mpesa.parse_callback(headers=callback_headers("status"), body=status_result(), now=NOW)
    assert (event.status, event.idempotency_key, event.amount, event.provider_reference) == (
        TransferStatus.SUCCEEDED,
        KEY,
        1500,
        "NLJ41HAY6Q",
    )


def test_status_result_reversed_is_reversed(mpesa):
    body = status_result(transaction_status="Reversed")
    event = mpesa.parse_callback(headers=callback_headers("status"), body=body, now=NOW)
    assert event.status is TransferStatus.REVERSED


def test_failed_status_query_leaves_the_payout_pending_by_default(mpesa):
    event = mpesa.parse_callback(headers=callback_headers("status"), body=status_result(code=2032), now=NOW)
    assert (event.status, event.failure_code) == (TransferStatus.PENDING, "status_query_2032")


def test_status_result_code_configured_as_not_found_is_not_found(clock):
    adapter = MpesaB2CProvider(
        consumer_key="consumer-key",
        consumer_secret="consumer-secret",
        initiator_name="testapi",
        security_credential="ENCRYPTED==",
        shortcode="600978",
        result_url=RESULT_URL,
        queue_timeout_url=RESULT_URL,
        callback_token=CALLBACK_TOKEN,
        not_found_result_codes=frozenset({"2032"}),
        clock=clock,
    )
    event = adapter.parse_callback(headers=callback_headers("status"), body=status_result(code=2032), now=NOW)
    assert (event.status, event.idempotency_key) == (TransferStatus.NOT_FOUND, KEY)


# ---------------------------------------------------------------- account check


def test_account_check_accepts_a_kenyan_msisdn(mpesa):
    check = mpesa.validate_account(channel="MPESA", account="254708374149", holder_name="Wanjiku")
    assert (check.valid, check.holder_name, check.reason) == (True, None, None)


def test_account_check_rejects_a_number_mpesa_cannot_pay(mpesa):
    check = mpesa.validate_account(channel="MPESA", account="0708374149", holder_name="Wanjiku")
    assert (check.valid, check.reason) == (False, "invalid_account")
