"""The Xendit Payouts v2 adapter, against Xendit's documented HTTP behaviour (responses)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
import requests
import responses

from integrations.providers.base import (
    InvalidCallback,
    OutcomeUnknown,
    ProviderConfigError,
    RateLimited,
    TransferRejected,
    TransferRequest,
    TransferStatus,
)
from integrations.providers.xendit import XenditProvider

API = "https://api.xendit.co"
SECRET_KEY = "xnd_development_test_key"
CALLBACK_TOKEN = "xnd-callback-verification-token"
KEY = "upah-payout-7f3c"
NOW = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)


def transfer(**overrides):
    fields = {
        "idempotency_key": KEY,
        "reference": "payout-001",
        "amount": 125_000,
        "currency": "IDR",
        "channel": "ID_DANA",
        "account": "+6281234567001",
        "account_holder_name": "Siti Aminah",
        "description": "Upah borongan Maret",
    }
    fields.update(overrides)
    return TransferRequest(**fields)


def payout(status="ACCEPTED", **overrides):
    """A payout object shaped like Xendit's documented example."""
    data = {
        "id": "disb-571f3644d2b4edf0745e9703",
        "amount": 125000,
        "channel_code": "ID_DANA",
        "currency": "IDR",
        "status": status,
        "description": "Upah borongan Maret",
        "reference_id": KEY,
        "created": "2025-03-10T08:00:00Z",
        "updated": "2025-03-10T08:00:00Z",
        "estimated_arrival_time": "2025-03-10T08:15:00Z",
        "business_id": "6018306aa16ad90cb3c43ba7",
        "channel_properties": {"account_number": "081234567001", "account_holder_name": "Siti Aminah"},
        "metadata": {"upah_reference": "payout-001"},
    }
    data.update(overrides)
    return data


class XenditIdempotency:
    """Xendit's documented rule: same key and body returns the first payout, else DUPLICATE_ERROR."""

    def __init__(self):
        self.first = {}

    def __call__(self, request):
        key = request.headers["Idempotency-key"]
        body = json.loads(request.body)
        if key not in self.first:
            self.first[key] = (body, payout(reference_id=body["reference_id"]))
        original_body, original = self.first[key]
        if body != original_body:
            error = {"error_code": "DUPLICATE_ERROR", "message": "Idempotency key has been used before"}
            return 409, {}, json.dumps(error)
        return 200, {}, json.dumps(original)


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def xendit():
    return XenditProvider(secret_key=SECRET_KEY, callback_token=CALLBACK_TOKEN, clock=lambda: NOW)


def error(code, message="error"):
    return {"error_code": code, "message": message}


# ---------------------------------------------------------------- create payout


def test_accepted_payout_is_pending_with_the_xendit_id(api, xendit):
    api.post(f"{API}/v2/payouts", json=payout())
    result = xendit.send(transfer())
    assert (result.status, result.provider_reference, result.raw_status) == (
        TransferStatus.PENDING,
        "disb-571f3644d2b4edf0745e9703",
        "ACCEPTED",
    )


def test_create_sends_the_idempotency_key_header(api, xendit):
    api.post(f"{API}/v2/payouts", json=payout())
    xendit.send(transfer())
    assert api.calls[0].request.headers["Idempotency-key"] == KEY


def test_create_authenticates_with_the_secret_key_as_basic_auth_user(api, xendit):
    api.post(f"{API}/v2/payouts", json=payout())
    xendit.send(transfer())
    expected = base64.b64encode(f"{SECRET_KEY}:".encode()).decode()
    assert api.calls[0].request.headers["Authorization"] == f"Basic {expected}"


def test_create_body_follows_the_payouts_v2_schema(api, xendit):
    api.post(f"{API}/v2/payouts", json=payout())
    xendit.send(transfer())
    assert json.loads(api.calls[0].request.body) == {
        "reference_id": KEY,
        "channel_code": "ID_DANA",
        "channel_properties": {"account_number": "081234567001", "account_holder_name": "Siti Aminah"},
        "amount": 125_000,
        "currency": "IDR",
        "description": "Upah borongan Maret",
        "metadata": {"upah_reference": "payout-001"},
    }


def test_create_can_keep_the_e164_wallet_number(api):
    api.post(f"{API}/v2/payouts", json=payout())
    adapter = XenditProvider(secret_key=SECRET_KEY, callback_token=CALLBACK_TOKEN, local_wallet_numbers=False)
    adapter.send(transfer())
    body = json.loads(api.calls[0].request.body)
    assert body["channel_properties"]["account_number"] == "+6281234567001"


def test_sub_account_header_is_sent_when_configured(api):
    api.post(f"{API}/v2/payouts", json=payout())
    adapter = XenditProvider(secret_key=SECRET_KEY, callback_token=CALLBACK_TOKEN, for_user_id="5f9a")
    adapter.send(transfer())
    assert api.calls[0].request.headers["for-user-id"] == "5f9a"


def test_same_key_replayed_returns_the_original_payout(api, xendit):
    api.add_callback(responses.POST, f"{API}/v2/payouts", callback=XenditIdempotency())
    first = xendit.send(transfer())
    assert xendit.send(transfer()) == first
    assert [c.request.headers["Idempotency-key"] for c in api.calls] == [KEY, KEY]


def test_same_key_with_a_different_body_is_an_idempotency_conflict(api, xendit):
    api.add_callback(responses.POST, f"{API}/v2/payouts", callback=XenditIdempotency())
    xendit.send(transfer())
    with pytest.raises(TransferRejected) as caught:
        xendit.send(transfer(amount=150_000))
    assert caught.value.code == "idempotency_conflict"


def test_timeout_is_outcome_unknown_not_failure(api, xendit):
    api.post(f"{API}/v2/payouts", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(OutcomeUnknown):
        xendit.send(transfer())


def test_connection_error_is_outcome_unknown(api, xendit):
    api.post(f"{API}/v2/payouts", body=requests.exceptions.ConnectionError("connection reset"))
    with pytest.raises(OutcomeUnknown):
        xendit.send(transfer())


def test_server_error_is_outcome_unknown(api, xendit):
    api.post(f"{API}/v2/payouts", status=500, json=error("SERVER_ERROR"))
    with pytest.raises(OutcomeUnknown):
        xendit.send(transfer())


def test_bad_gateway_without_json_is_outcome_unknown(api, xendit):
    api.post(f"{API}/v2/payouts", status=502, body="<html>Bad Gateway</html>")
    with pytest.raises(OutcomeUnknown):
        xendit.send(transfer())


def test_malformed_json_is_outcome_unknown(api, xendit):
    api.post(f"{API}/v2/payouts", status=200, body='{"id": "disb-1", "status": ')
    with pytest.raises(OutcomeUnknown):
        xendit.send(transfer())


def test_answer_about_another_payout_is_outcome_unknown(api, xendit):
    api.post(f"{API}/v2/payouts", json=payout(reference_id="someone-else"))
    with pytest.raises(OutcomeUnknown):
        xendit.send(transfer())


def test_insufficient_balance_at_creation_is_rejected(api, xendit):
    api.post(f"{API}/v2/payouts", status=400, json=error("INSUFFICIENT_BALANCE", "Not enough balance"))
    with pytest.raises(TransferRejected) as caught:
        xendit.send(transfer())
    assert caught.value.code == "insufficient_balance"


def test_invalid_account_number_is_rejected_as_invalid_account(api, xendit):
    api.post(f"{API}/v2/payouts", status=400, json=error("RECIPIENT_ACCOUNT_NUMBER_ERROR"))
    with pytest.raises(TransferRejected) as caught:
        xendit.send(transfer())
    assert caught.value.code == "invalid_account"


def test_unsupported_channel_is_rejected(api, xendit):
    api.post(f"{API}/v2/payouts", status=400, json=error("CHANNEL_CODE_NOT_SUPPORTED_ERROR"))
    with pytest.raises(TransferRejected) as caught:
        xendit.send(transfer(channel="ID_NOWALLET"))
    assert caught.value.code == "channel_not_supported"


def test_amount_over_the_channel_maximum_is_rejected_as_limit_exceeded(api, xendit):
    api.post(f"{API}/v2/payouts", status=400, json=error("MAXIMUM_TRANSFER_LIMIT_ERROR"))
    with pytest.raises(TransferRejected) as caught:
        xendit.send(transfer(amount=50_000_000))
    assert caught.value.code == "limit_exceeded"


def test_rate_limit_honours_retry_after(api, xendit):
    api.post(
        f"{API}/v2/payouts",
        status=429,
        json=error("RATE_LIMIT_EXCEEDED"),
        headers={"Retry-After": "3"},
    )
    with pytest.raises(RateLimited) as caught:
        xendit.send(transfer())
    assert caught.value.retry_after == 3.0


def test_rate_limit_falls_back_to_xendits_rate_limit_reset(api, xendit):
    api.post(
        f"{API}/v2/payouts",
        status=429,
        json=error("RATE_LIMIT_EXCEEDED"),
        headers={"Rate-Limit-Limit": "600", "Rate-Limit-Remaining": "0", "Rate-Limit-Reset": "58.37"},
    )
    with pytest.raises(RateLimited) as caught:
        xendit.send(transfer())
    assert caught.value.retry_after == 58.37


def test_invalid_api_key_is_a_config_error(api, xendit):
    api.post(f"{API}/v2/payouts", status=401, json=error("INVALID_API_KEY"))
    with pytest.raises(ProviderConfigError):
        xendit.send(transfer())


def test_forbidden_key_is_a_config_error(api, xendit):
    api.post(f"{API}/v2/payouts", status=403, json=error("REQUEST_FORBIDDEN_ERROR"))
    with pytest.raises(ProviderConfigError):
        xendit.send(transfer())


def test_adapter_refuses_an_empty_secret_key():
    with pytest.raises(ProviderConfigError):
        XenditProvider(secret_key="", callback_token=CALLBACK_TOKEN)


# ---------------------------------------------------------------- status


def test_status_by_xendit_id_maps_succeeded(api, xendit):
    api.get(f"{API}/v2/payouts/disb-571f3644d2b4edf0745e9703", json=payout("SUCCEEDED"))
    result = xendit.status(idempotency_key=KEY, provider_reference="disb-571f3644d2b4edf0745e9703")
    assert result.status is TransferStatus.SUCCEEDED


def test_status_without_xendit_id_searches_by_reference_id(api, xendit):
    api.get(
        f"{API}/v2/payouts",
        match=[responses.matchers.query_param_matcher({"reference_id": KEY})],
        json=[payout("REQUESTED")],
    )
    result = xendit.status(idempotency_key=KEY, provider_reference=None)
    assert (result.status, result.provider_reference) == (
        TransferStatus.PENDING,
        "disb-571f3644d2b4edf0745e9703",
    )


def test_status_search_also_reads_the_paginated_shape(api, xendit):
    api.get(f"{API}/v2/payouts", json={"data": [payout("SUCCEEDED")], "has_more": False})
    assert xendit.status(idempotency_key=KEY, provider_reference=None).status is TransferStatus.SUCCEEDED


def test_status_of_a_payout_xendit_never_received_is_not_found(api, xendit):
    api.get(f"{API}/v2/payouts", json=[])
    result = xendit.status(idempotency_key=KEY, provider_reference=None)
    assert (result.status, result.provider_reference) == (TransferStatus.NOT_FOUND, None)


def test_an_xendit_id_it_does_not_find_and_no_payout_under_our_key_is_not_found(api, xendit):
    api.get(f"{API}/v2/payouts/disb-nope", status=404, json=error("DATA_NOT_FOUND"))
    api.get(f"{API}/v2/payouts", json=[])
    result = xendit.status(idempotency_key=KEY, provider_reference="disb-nope")
    assert result.status is TransferStatus.NOT_FOUND


def test_an_xendit_id_it_does_not_find_is_answered_by_the_search_under_our_key(api, xendit):
    api.get(f"{API}/v2/payouts/disb-nope", status=404, json=error("DATA_NOT_FOUND"))
    api.get(f"{API}/v2/payouts", json=[payout("SUCCEEDED")])
    result = xendit.status(idempotency_key=KEY, provider_reference="disb-nope")
    assert result.status is TransferStatus.SUCCEEDED


def test_a_404_by_id_that_is_not_xendits_own_leaves_the_outcome_unknown(api, xendit):
    api.get(
        f"{API}/v2/payouts/disb-571f3644d2b4edf0745e9703",
        status=404,
        body="<html><body>404 Not Found (nginx)</body></html>",
        content_type="text/html",
    )
    with pytest.raises(OutcomeUnknown):
        xendit.status(idempotency_key=KEY, provider_reference="disb-571f3644d2b4edf0745e9703")


def test_failed_payout_is_a_result_with_our_failure_code(api, xendit):
    api.get(f"{API}/v2/payouts", json=[payout("FAILED", failure_code="INSUFFICIENT_BALANCE")])
    result = xendit.status(idempotency_key=KEY, provider_reference=None)
    assert (result.status, result.failure_code, result.failure_message) == (
        TransferStatus.FAILED,
        "insufficient_balance",
        "INSUFFICIENT_BALANCE",
    )


def test_wrong_holder_name_fails_as_invalid_account(api, xendit):
    api.get(f"{API}/v2/payouts", json=[payout("FAILED", failure_code="INVALID_DESTINATION")])
    result = xendit.status(idempotency_key=KEY, provider_reference=None)
    assert result.failure_code == "invalid_account"


def test_cancelled_payout_is_failed_cancelled(api, xendit):
    api.get(f"{API}/v2/payouts", json=[payout("CANCELLED")])
    result = xendit.status(idempotency_key=KEY, provider_reference=None)
    assert (result.status, result.failure_code) == (TransferStatus.FAILED, "cancelled")


def test_reversed_payout_is_reversed(api, xendit):
    api.get(f"{API}/v2/payouts", json=[payout("REVERSED")])
    assert xendit.status(idempotency_key=KEY, provider_reference=None).status is TransferStatus.REVERSED


def test_two_payouts_under_one_key_are_never_resolved_automatically(api, xendit):
    api.get(f"{API}/v2/payouts", json=[payout("SUCCEEDED"), payout("SUCCEEDED", id="disb-other")])
    with pytest.raises(OutcomeUnknown, match="2 Xendit payouts"):
        xendit.status(idempotency_key=KEY, provider_reference=None)


def test_status_timeout_is_outcome_unknown(api, xendit):
    api.get(f"{API}/v2/payouts", body=requests.exceptions.ReadTimeout())
    with pytest.raises(OutcomeUnknown):
        xendit.status(idempotency_key=KEY, provider_reference=None)


def test_status_rate_limit_is_rate_limited(api, xendit):
    api.get(f"{API}/v2/payouts", status=429, json=error("RATE_LIMIT_EXCEEDED"), headers={"Retry-After": "1"})
    with pytest.raises(RateLimited):
        xendit.status(idempotency_key=KEY, provider_reference=None)


# ---------------------------------------------------------------- webhooks


def webhook(event="payout.succeeded", **data_overrides):
    status = data_overrides.pop("status", event.split(".")[1].upper())
    body = {
        "event": event,
        "business_id": "5f27a14a9bf05c73dd040bc8",
        "created": "2025-03-10T08:05:00Z",
        "data": payout(status, updated="2025-03-10T08:04:59Z", **data_overrides),
    }
    return json.dumps(body).encode()


def test_webhook_with_the_right_token_is_parsed(xendit):
    event = xendit.parse_callback(headers={"x-callback-token": CALLBACK_TOKEN}, body=webhook(), now=NOW)
    assert (event.status, event.idempotency_key, event.provider_reference, event.amount, event.currency) == (
        TransferStatus.SUCCEEDED,
        KEY,
        "disb-571f3644d2b4edf0745e9703",
        125_000,
        "IDR",
    )


def test_webhook_token_header_name_is_case_insensitive(xendit):
    event = xendit.parse_callback(headers={"X-CALLBACK-TOKEN": CALLBACK_TOKEN}, body=webhook(), now=NOW)
    assert event.status is TransferStatus.SUCCEEDED


def test_webhook_with_a_wrong_token_is_invalid(xendit):
    with pytest.raises(InvalidCallback):
        xendit.parse_callback(headers={"x-callback-token": "guess"}, body=webhook(), now=NOW)


def test_webhook_without_a_token_is_invalid(xendit):
    with pytest.raises(InvalidCallback):
        xendit.parse_callback(headers={}, body=webhook(), now=NOW)


def test_webhook_that_is_not_json_is_invalid(xendit):
    with pytest.raises(InvalidCallback):
        xendit.parse_callback(headers={"x-callback-token": CALLBACK_TOKEN}, body=b"<xml/>", now=NOW)


def test_webhook_without_data_is_invalid(xendit):
    body = json.dumps({"event": "payout.succeeded"}).encode()
    with pytest.raises(InvalidCallback):
        xendit.parse_callback(headers={"x-callback-token": CALLBACK_TOKEN}, body=body, now=NOW)


def test_failed_webhook_carries_our_failure_code(xendit):
    body = webhook("payout.failed", failure_code="INSUFFICIENT_BALANCE")
    event = xendit.parse_callback(headers={"x-callback-token": CALLBACK_TOKEN}, body=body, now=NOW)
    assert (event.status, event.failure_code) == (TransferStatus.FAILED, "insufficient_balance")


def test_reversed_webhook_is_reversed(xendit):
    body = webhook("payout.reversed")
    event = xendit.parse_callback(headers={"x-callback-token": CALLBACK_TOKEN}, body=body, now=NOW)
    assert event.status is TransferStatus.REVERSED


def test_redelivered_webhook_has_the_same_event_id(xendit):
    headers = {"x-callback-token": CALLBACK_TOKEN}
    first = xendit.parse_callback(headers=headers, body=webhook(), now=NOW)
    again = xendit.parse_callback(headers=headers, body=webhook(), now=NOW)
    assert first.event_id == again.event_id


def test_webhook_id_header_is_used_as_event_id_when_sent(xendit):
    headers = {"x-callback-token": CALLBACK_TOKEN, "webhook-id": "whk_123"}
    assert xendit.parse_callback(headers=headers, body=webhook(), now=NOW).event_id == "whk_123"


def test_fractional_amount_in_a_webhook_is_not_taken_as_rupiah(xendit):
    body = webhook(amount=125000.5)
    event = xendit.parse_callback(headers={"x-callback-token": CALLBACK_TOKEN}, body=body, now=NOW)
    assert event.amount is None


# ---------------------------------------------------------------- account check


def test_account_check_accepts_a_wallet_on_a_supported_channel(api, xendit):
    api.get(
        f"{API}/payouts_channels",
        json=[{"channel_code": "ID_DANA", "channel_category": "EWALLET", "currency": "IDR"}],
    )
    check = xendit.validate_account(channel="ID_DANA", account="+6281234567001", holder_name="Siti Aminah")
    assert (check.valid, check.reason) == (True, None)


def test_account_check_rejects_a_channel_xendit_does_not_pay(api, xendit):
    api.get(f"{API}/payouts_channels", json=[])
    check = xendit.validate_account(channel="ID_NOWALLET", account="+6281234567001", holder_name="Siti")
    assert (check.valid, check.reason) == (False, "channel_not_supported")


def test_account_check_rejects_a_number_that_is_not_an_indonesian_mobile(xendit):
    check = xendit.validate_account(channel="ID_DANA", account="12345", holder_name="Siti")
    assert (check.valid, check.reason) == (False, "invalid_account")
