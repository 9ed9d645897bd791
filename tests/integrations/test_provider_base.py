"""The provider interface's own rules: exact instructions, the error tree, Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integrations.providers.base import (
    FailureCode,
    InvalidCallback,
    OutcomeUnknown,
    ProviderConfigError,
    ProviderError,
    RateLimited,
    TransferRejected,
    TransferRequest,
    find_header,
    parse_retry_after,
)

NOW = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)


def transfer(**overrides):
    fields = {
        "idempotency_key": "key-1",
        "reference": "payout-001",
        "amount": 125_000,
        "currency": "IDR",
        "channel": "ID_DANA",
        "account": "+6281234567001",
        "account_holder_name": "Siti Aminah",
    }
    fields.update(overrides)
    return TransferRequest(**fields)


def test_transfer_request_refuses_a_float_amount():
    with pytest.raises(TypeError):
        transfer(amount=125000.0)


def test_transfer_request_refuses_a_bool_amount():
    with pytest.raises(TypeError):
        transfer(amount=True)


@pytest.mark.parametrize("amount", [0, -1])
def test_transfer_request_refuses_a_non_positive_amount(amount):
    with pytest.raises(ValueError, match="positive"):
        transfer(amount=amount)


@pytest.mark.parametrize("currency", ["idr", "RUPIAH", "", "ID1"])
def test_transfer_request_refuses_a_currency_that_is_not_iso_4217(currency):
    with pytest.raises(ValueError, match="currency"):
        transfer(currency=currency)


@pytest.mark.parametrize("key", ["", "k" * 101])
def test_transfer_request_refuses_an_idempotency_key_providers_cannot_take(key):
    with pytest.raises(ValueError, match="idempotency_key"):
        transfer(idempotency_key=key)


def test_transfer_request_is_immutable():
    request = transfer()
    with pytest.raises(AttributeError):
        request.amount = 1


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ProviderError(), "provider_error"),
        (OutcomeUnknown(), "outcome_unknown"),
        (RateLimited(retry_after=2.0), "rate_limited"),
        (TransferRejected(FailureCode.LIMIT_EXCEEDED), "limit_exceeded"),
        (InvalidCallback(), "invalid_callback"),
        (ProviderConfigError(), "provider_config_error"),
    ],
)
def test_every_provider_error_has_a_snake_case_code(error, code):
    assert isinstance(error, ProviderError)
    assert error.code == code


def test_rate_limited_keeps_retry_after():
    assert RateLimited("slow down", retry_after=1.5).retry_after == 1.5


def test_retry_after_in_seconds():
    assert parse_retry_after("30", now=NOW) == 30.0


def test_retry_after_in_fractional_seconds_as_xendit_sends_it():
    assert parse_retry_after("58.37", now=NOW) == 58.37


def test_retry_after_as_an_http_date():
    assert parse_retry_after("Mon, 10 Mar 2025 08:00:45 GMT", now=NOW) == 45.0


def test_retry_after_in_the_past_is_zero():
    assert parse_retry_after("Mon, 10 Mar 2025 07:00:00 GMT", now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "inf"])
def test_unreadable_retry_after_is_none(value):
    assert parse_retry_after(value, now=NOW) is None


def test_find_header_ignores_case():
    assert find_header({"X-Callback-Token": "t"}, "x-callback-token") == "t"


def test_find_header_of_a_missing_header_is_none():
    assert find_header({}, "x-callback-token") is None
