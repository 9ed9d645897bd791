"""The sandbox adapter, against a real sandbox server on 127.0.0.1 and, at the edges, responses."""

from __future__ import annotations

import csv
import io
import json
import socket
from datetime import UTC, datetime

import pytest
import requests
import responses

from integrations import signatures
from integrations.providers.base import (
    InvalidCallback,
    OutcomeUnknown,
    ProviderConfigError,
    RateLimited,
    TransferRejected,
    TransferRequest,
    TransferStatus,
)
from integrations.providers.sandbox import SandboxProvider
from integrations.sandbox_server import sandbox_service
from tests.callback_inbox import CallbackInbox
from tests.sandbox import LiveSandbox

SECRET = b"sandbox-callback-secret"
WALLET = "+6281234567001"
MOCK_URL = "http://sandbox.test"


def transfer(key="payout-key-1", **overrides):
    fields = {
        "idempotency_key": key,
        "reference": "payout-001",
        "amount": 125_000,
        "currency": "IDR",
        "channel": "ID_DANA",
        "account": WALLET,
        "account_holder_name": "Siti Aminah",
        "description": "Upah borongan",
    }
    fields.update(overrides)
    return TransferRequest(**fields)


@pytest.fixture
def live(tmp_path):
    server = LiveSandbox(tmp_path, SECRET)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def provider(live):
    adapter = SandboxProvider(live.url, SECRET, timeout=(1.0, 2.0))
    yield adapter
    adapter._session.close()


# ---------------------------------------------------------------- against the live sandbox


def test_send_to_the_sandbox_is_accepted_as_pending(provider):
    result = provider.send(transfer())
    assert (result.status, result.raw_status) == (TransferStatus.PENDING, "accepted")
    assert result.provider_reference.startswith("po_")


def test_status_after_send_shows_the_payout_succeeded(provider):
    sent = provider.send(transfer())
    result = provider.status(idempotency_key="payout-key-1", provider_reference=None)
    assert (result.status, result.provider_reference) == (
        TransferStatus.SUCCEEDED,
        sent.provider_reference,
    )


def test_status_by_provider_reference_shows_the_same_payout(provider):
    sent = provider.send(transfer())
    result = provider.status(idempotency_key="payout-key-1", provider_reference=sent.provider_reference)
    assert result.status is TransferStatus.SUCCEEDED


def test_timeout_after_paying_is_outcome_unknown_then_status_shows_succeeded(live):
    live.set_faults(timeout_paid=1.0, stall_seconds=1.5)
    impatient = SandboxProvider(live.url, SECRET, timeout=(1.0, 0.3))
    with pytest.raises(OutcomeUnknown):
        impatient.send(transfer())
    live.set_faults()
    result = impatient.status(idempotency_key="payout-key-1", provider_reference=None)
    assert result.status is TransferStatus.SUCCEEDED


def test_timeout_before_recording_is_outcome_unknown_then_status_not_found(live):
    live.set_faults(timeout_unpaid=1.0, stall_seconds=1.5)
    impatient = SandboxProvider(live.url, SECRET, timeout=(1.0, 0.3))
    with pytest.raises(OutcomeUnknown):
        impatient.send(transfer())
    live.set_faults()
    result = impatient.status(idempotency_key="payout-key-1", provider_reference=None)
    assert result.status is TransferStatus.NOT_FOUND


def test_resending_after_a_timeout_with_the_same_key_pays_once(live):
    live.set_faults(timeout_paid=1.0, stall_seconds=1.5)
    impatient = SandboxProvider(live.url, SECRET, timeout=(1.0, 0.3))
    with pytest.raises(OutcomeUnknown):
        impatient.send(transfer())
    live.set_faults()
    impatient.send(transfer())
    summary = live.get("/v1/payouts").json()["summary"]
    assert (summary["count"], summary["received_total"], summary["paid"]) == (1, 2, 1)


def test_same_key_replayed_returns_the_original_result(provider):
    first = provider.send(transfer())
    assert provider.send(transfer()) == first


def test_same_key_with_a_different_body_is_an_idempotency_conflict(provider):
    provider.send(transfer())
    with pytest.raises(TransferRejected) as caught:
        provider.send(transfer(amount=999_000))
    assert caught.value.code == "idempotency_conflict"


def test_wallet_limit_is_a_failed_result_not_an_exception(provider):
    provider.send(transfer(amount=2_500_000))
    result = provider.status(idempotency_key="payout-key-1", provider_reference=None)
    assert (result.status, result.failure_code) == (TransferStatus.FAILED, "limit_exceeded")


def test_insufficient_provider_balance_is_a_failed_result(live, provider):
    requests.put(live.url + "/v1/float", json={"balance": 1_000}, timeout=5).raise_for_status()
    provider.send(transfer())
    result = provider.status(idempotency_key="payout-key-1", provider_reference=None)
    assert (result.status, result.failure_code) == (TransferStatus.FAILED, "insufficient_balance")


def test_invalid_account_is_a_failed_result(provider):
    provider.send(transfer(account="081234567001"))
    result = provider.status(idempotency_key="payout-key-1", provider_reference=None)
    assert (result.status, result.failure_code) == (TransferStatus.FAILED, "invalid_account")


def test_unsupported_currency_is_rejected_before_anything_is_recorded(live, provider):
    with pytest.raises(TransferRejected) as caught:
        provider.send(transfer(currency="KES"))
    assert caught.value.code == "unsupported_currency"
    assert live.get("/v1/payouts").json()["summary"]["count"] == 0


def test_status_of_a_key_never_sent_is_not_found(provider):
    result = provider.status(idempotency_key="never-sent", provider_reference=None)
    assert (result.status, result.provider_reference) == (TransferStatus.NOT_FOUND, None)


def test_rate_limit_from_the_sandbox_carries_retry_after(live, provider):
    live.set_faults(rate_limit=1.0)
    with pytest.raises(RateLimited) as caught:
        provider.send(transfer())
    assert caught.value.retry_after == 1.0


def test_503_from_the_sandbox_is_outcome_unknown(live, provider):
    live.set_faults(error_5xx_paid=1.0)
    with pytest.raises(OutcomeUnknown):
        provider.send(transfer())
    live.set_faults()
    assert provider.status(idempotency_key="payout-key-1", provider_reference=None).status is (
        TransferStatus.SUCCEEDED
    )


def test_connection_refused_is_outcome_unknown():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    adapter = SandboxProvider(f"http://127.0.0.1:{port}", SECRET, timeout=(0.5, 0.5))
    with pytest.raises(OutcomeUnknown):
        adapter.send(transfer())


def test_statement_csv_lists_each_payout_once_in_rupiah(live, provider):
    provider.send(transfer("k-1", reference="p-1", amount=125_000))
    provider.send(transfer("k-1", reference="p-1", amount=125_000))
    provider.send(transfer("k-2", reference="p-2", amount=80_000, account="+6281234567002"))
    rows = list(csv.DictReader(io.StringIO(live.get("/v1/statement.csv").text)))
    assert list(rows[0]) == [
        "reference",
        "idempotency_key",
        "account",
        "amount",
        "currency",
        "status",
        "settled_at",
    ]
    assert [(r["reference"], r["idempotency_key"], r["amount"], r["status"]) for r in rows] == [
        ("p-1", "k-1", "125000", "succeeded"),
        ("p-2", "k-2", "80000", "succeeded"),
    ]


def test_account_check_reports_a_name_mismatch(live, provider):
    requests.post(
        live.url + "/v1/wallets",
        json={"account": WALLET, "holder_name": "Siti Aminah", "registered": True},
        timeout=5,
    ).raise_for_status()
    check = provider.validate_account(channel="ID_DANA", account=WALLET, holder_name="Sri Wahyuni")
    assert (check.valid, check.holder_name, check.reason) == (False, "Siti Aminah", "name_mismatch")


def test_account_check_accepts_a_well_formed_new_wallet(provider):
    check = provider.validate_account(channel="ID_OVO", account=WALLET, holder_name="Siti Aminah")
    assert (check.valid, check.reason) == (True, None)


def test_callback_from_the_sandbox_passes_the_adapters_verification(live, provider):
    with CallbackInbox() as inbox:
        sent = provider.send(transfer(callback_url=inbox.url))
        assert sandbox_service(live.app).wait_idle()
    [(headers, body)] = inbox.received
    event = provider.parse_callback(headers=headers, body=body, now=datetime.now(UTC))
    assert (event.provider_reference, event.idempotency_key, event.status, event.amount) == (
        sent.provider_reference,
        "payout-key-1",
        TransferStatus.SUCCEEDED,
        125_000,
    )


def test_a_callback_carries_its_signature_and_no_netrc_credentials_for_its_host(
    live, provider, tmp_path, monkeypatch
):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login operator password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with CallbackInbox() as inbox:
        provider.send(transfer(callback_url=inbox.url))
        assert sandbox_service(live.app).wait_idle()
    [(headers, _)] = inbox.received
    assert "Authorization" not in headers and "X-Sandbox-Signature" in headers


# ---------------------------------------------------------------- HTTP edge cases (responses)


@pytest.fixture
def mocked():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def mock_provider():
    return SandboxProvider(MOCK_URL, SECRET)


def test_read_timeout_is_outcome_unknown_not_failure(mocked, mock_provider):
    mocked.post(f"{MOCK_URL}/v1/payouts", body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(OutcomeUnknown):
        mock_provider.send(transfer())


def test_connection_error_is_outcome_unknown(mocked, mock_provider):
    mocked.post(f"{MOCK_URL}/v1/payouts", body=requests.exceptions.ConnectionError("reset"))
    with pytest.raises(OutcomeUnknown):
        mock_provider.send(transfer())


def test_malformed_json_is_outcome_unknown(mocked, mock_provider):
    mocked.post(f"{MOCK_URL}/v1/payouts", body="<html>proxy error</html>", status=200)
    with pytest.raises(OutcomeUnknown):
        mock_provider.send(transfer())


def test_unknown_payout_status_is_outcome_unknown(mocked, mock_provider):
    mocked.post(f"{MOCK_URL}/v1/payouts", json={"id": "po_1", "status": "teleported"})
    with pytest.raises(OutcomeUnknown):
        mock_provider.send(transfer())


def test_idempotency_key_and_body_are_sent_on_every_attempt(mocked, mock_provider):
    accepted = {"id": "po_1", "reference": "payout-001", "status": "accepted"}
    mocked.post(f"{MOCK_URL}/v1/payouts", json=accepted)
    mock_provider.send(transfer())
    mock_provider.send(transfer())
    sent = [(c.request.headers["Idempotency-Key"], json.loads(c.request.body)) for c in mocked.calls]
    assert sent[0] == sent[1]
    assert sent[0][0] == "payout-key-1"
    assert sent[0][1]["amount"] == 125_000


def test_rejected_credentials_are_a_config_error(mocked, mock_provider):
    mocked.post(f"{MOCK_URL}/v1/payouts", status=401, json={"error_code": "UNAUTHORIZED"})
    with pytest.raises(ProviderConfigError):
        mock_provider.send(transfer())


def test_status_404_without_not_found_code_is_a_config_error(mocked, mock_provider):
    mocked.get(f"{MOCK_URL}/v1/payouts", status=404, body="Not Found")
    with pytest.raises(ProviderConfigError):
        mock_provider.status(idempotency_key="k", provider_reference=None)


def test_status_timeout_is_outcome_unknown(mocked, mock_provider):
    mocked.get(f"{MOCK_URL}/v1/payouts/po_1", body=requests.exceptions.ReadTimeout())
    with pytest.raises(OutcomeUnknown):
        mock_provider.status(idempotency_key="k", provider_reference="po_1")


def test_base_url_must_be_http():
    with pytest.raises(ProviderConfigError):
        SandboxProvider("sandbox.test", SECRET)


# ---------------------------------------------------------------- callbacks


NOW = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)


def callback(secret=SECRET, timestamp=None, **overrides):
    event = {
        "event_id": "evt_1",
        "id": "po_1",
        "reference": "payout-001",
        "idempotency_key": "payout-key-1",
        "status": "failed",
        "amount": 125_000,
        "currency": "IDR",
        "failure_code": "LIMIT_EXCEEDED",
    }
    event.update(overrides)
    body = json.dumps(event).encode()
    stamp = int(NOW.timestamp()) if timestamp is None else timestamp
    return {"x-sandbox-signature": signatures.sign(secret, body, timestamp=stamp)}, body


def test_signed_callback_is_parsed_into_an_event(mock_provider):
    headers, body = callback()
    event = mock_provider.parse_callback(headers=headers, body=body, now=NOW)
    assert (event.event_id, event.status, event.failure_code, event.amount, event.currency) == (
        "evt_1",
        TransferStatus.FAILED,
        "limit_exceeded",
        125_000,
        "IDR",
    )


def test_callback_signed_with_another_secret_is_invalid(mock_provider):
    headers, body = callback(secret=b"attacker")
    with pytest.raises(InvalidCallback):
        mock_provider.parse_callback(headers=headers, body=body, now=NOW)


def test_callback_without_signature_is_invalid(mock_provider):
    _, body = callback()
    with pytest.raises(InvalidCallback):
        mock_provider.parse_callback(headers={}, body=body, now=NOW)


def test_replayed_old_callback_is_invalid(mock_provider):
    headers, body = callback(timestamp=int(NOW.timestamp()) - 3600)
    with pytest.raises(InvalidCallback):
        mock_provider.parse_callback(headers=headers, body=body, now=NOW)


def test_callback_with_unknown_status_is_invalid(mock_provider):
    headers, body = callback(status="teleported")
    with pytest.raises(InvalidCallback):
        mock_provider.parse_callback(headers=headers, body=body, now=NOW)


def test_signed_callback_that_is_not_json_is_invalid(mock_provider):
    body = b"not json"
    headers = {"X-Sandbox-Signature": signatures.sign(SECRET, body, timestamp=int(NOW.timestamp()))}
    with pytest.raises(InvalidCallback):
        mock_provider.parse_callback(headers=headers, body=body, now=NOW)


def test_stale_accepted_callback_parses_as_pending(mock_provider):
    headers, body = callback(status="accepted", failure_code=None)
    event = mock_provider.parse_callback(headers=headers, body=body, now=NOW)
    assert event.status is TransferStatus.PENDING


def test_reversed_callback_parses_as_reversed(mock_provider):
    headers, body = callback(status="reversed", failure_code=None)
    event = mock_provider.parse_callback(headers=headers, body=body, now=NOW)
    assert event.status is TransferStatus.REVERSED
