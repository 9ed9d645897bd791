"""Xendit Payouts API v2: paying Indonesian e-wallets (DANA, OVO, GoPay, …) through Xendit.

How it maps onto the provider interface:

* ``POST /v2/payouts`` with HTTP basic auth (secret key as user, empty password) and an
  ``Idempotency-key`` header carrying our key on every attempt. Xendit answers a repeat
  with the same body by returning the original payout object, and a repeat with a
  different body with a duplicate error (``DUPLICATE_ERROR``), which we surface as
  ``idempotency_conflict``.
* ``reference_id`` is *also* our idempotency key: Xendit can be searched by
  ``reference_id`` (``GET /v2/payouts?reference_id=``) but not by idempotency key, and
  after a timeout the key is all we have. Our own payout reference travels in
  ``metadata.upah_reference``; reconcile Xendit reports on ``reference_id``.
* Statuses: ``ACCEPTED``/``REQUESTED``/``PENDING_COMPLIANCE_ASSESSMENT`` are pending,
  ``SUCCEEDED`` succeeded, ``FAILED``/``CANCELLED``/``COMPLIANCE_REJECTED``/``EXPIRED``
  failed (with ``failure_code``), ``REVERSED`` reversed (a bounce-back after success).
* Errors come as ``{"error_code": …, "message": …}``; 429 ``RATE_LIMIT_EXCEEDED`` carries
  ``Retry-After`` or Xendit's ``Rate-Limit-Reset`` (seconds left in the window).
* Webhooks (``payout.succeeded``/``payout.failed``/``payout.reversed``) are authenticated
  by the ``x-callback-token`` header, the verification token from the dashboard.
* Xendit has no public e-wallet name inquiry: a wrong holder name fails the payout
  (``INVALID_DESTINATION``); :meth:`XenditProvider.validate_account` checks the number's
  form and that Xendit supports the channel (``GET /payouts_channels``).

Amounts are whole rupiah; Xendit's JSON numbers are accepted only when integral.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import requests

from integrations import signatures
from integrations.providers.base import (
    AccountCheck,
    CallbackEvent,
    FailureCode,
    InvalidCallback,
    OutcomeUnknown,
    ProviderConfigError,
    RateLimited,
    TransferRejected,
    TransferRequest,
    TransferResult,
    TransferStatus,
    find_header,
    parse_retry_after,
)

__all__ = ["XenditProvider"]

logger = logging.getLogger(__name__)

BASE_URL: Final = "https://api.xendit.co"
CALLBACK_TOKEN_HEADER: Final = "x-callback-token"  # noqa: S105 - a header name, not a secret
DEFAULT_TIMEOUT: Final = (3.05, 15.0)

_STATUSES: Final = {
    "ACCEPTED": TransferStatus.PENDING,
    "REQUESTED": TransferStatus.PENDING,
    "PENDING_COMPLIANCE_ASSESSMENT": TransferStatus.PENDING,
    "READY": TransferStatus.PENDING,
    "LOCKED": TransferStatus.PENDING,
    "SUCCEEDED": TransferStatus.SUCCEEDED,
    "FAILED": TransferStatus.FAILED,
    "CANCELLED": TransferStatus.FAILED,
    "COMPLIANCE_REJECTED": TransferStatus.FAILED,
    "EXPIRED": TransferStatus.FAILED,
    "REVERSED": TransferStatus.REVERSED,
}

# Failure reasons, from create-time error codes and from a FAILED payout's failure_code.
_FAILURES: Final = {
    "INSUFFICIENT_BALANCE": FailureCode.INSUFFICIENT_BALANCE,
    "INVALID_DESTINATION": FailureCode.INVALID_ACCOUNT,
    "RECIPIENT_ACCOUNT_NUMBER_ERROR": FailureCode.INVALID_ACCOUNT,
    "DESTINATION_MAXIMUM_LIMIT": FailureCode.LIMIT_EXCEEDED,
    "MAXIMUM_TRANSFER_LIMIT_ERROR": FailureCode.LIMIT_EXCEEDED,
    "REJECTED_BY_CHANNEL": FailureCode.REJECTED_BY_CHANNEL,
    "COMPLIANCE_REJECTED": FailureCode.REJECTED_BY_CHANNEL,
    "CANCELLED": FailureCode.CANCELLED,
    "CHANNEL_CODE_NOT_SUPPORTED": FailureCode.CHANNEL_NOT_SUPPORTED,
    "CHANNEL_CODE_NOT_SUPPORTED_ERROR": FailureCode.CHANNEL_NOT_SUPPORTED,
    "DUPLICATE_ERROR": FailureCode.IDEMPOTENCY_CONFLICT,
    "IDEMPOTENCY_ERROR": FailureCode.IDEMPOTENCY_CONFLICT,
    "DUPLICATE_TRANSACTION_ERROR": FailureCode.IDEMPOTENCY_CONFLICT,
    "API_VALIDATION_ERROR": FailureCode.INVALID_REQUEST,
    "INVALID_JSON_FORMAT": FailureCode.INVALID_REQUEST,
    "RECIPIENT_AMOUNT_ERROR": FailureCode.INVALID_REQUEST,
}

_CONFIG_ERRORS: Final = frozenset({"INVALID_API_KEY", "REQUEST_FORBIDDEN_ERROR", "FEATURE_NOT_ACTIVATED"})


def _failure_code(raw: str | None) -> str | None:
    """Our name for a Xendit failure or error code."""
    if raw is None:
        return None
    return str(_FAILURES.get(raw, raw.lower()))


def _whole_amount(value: object) -> int | None:
    """A JSON number as whole rupiah, or None when it is not an exact integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _local_wallet_number(account: str) -> str:
    """``+628123…`` as the ``08123…`` form Indonesian e-wallet channels take."""
    if account.startswith("+62"):
        return "0" + account[3:]
    return account


class XenditProvider:
    """Pays Indonesian e-wallets through Xendit's Payouts API v2."""

    def __init__(
        self,
        *,
        secret_key: str,
        callback_token: str,
        session: requests.Session | None = None,
        base_url: str = BASE_URL,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        for_user_id: str | None = None,
        local_wallet_numbers: bool = True,
        clock: Callable[[], datetime] | None = None,
        name: str = "xendit",
    ) -> None:
        if not secret_key:
            raise ProviderConfigError("Xendit secret key is empty")
        if not callback_token:
            raise ProviderConfigError("Xendit callback verification token is empty")
        self.name = name
        self._auth = (secret_key, "")
        self._callback_token = callback_token
        self._session = session if session is not None else requests.Session()
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._for_user_id = for_user_id
        self._local_wallet_numbers = local_wallet_numbers
        self._clock = clock or (lambda: datetime.now(UTC))

    # ------------------------------------------------------------------ HTTP

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One authenticated exchange; anything leaving the answer unknown is OutcomeUnknown."""
        sent_headers = dict(headers or {})
        if self._for_user_id:
            sent_headers["for-user-id"] = self._for_user_id
        try:
            return self._session.request(
                method,
                self._base_url + path,
                json=body,
                headers=sent_headers,
                params=params,
                auth=self._auth,
                timeout=self._timeout,
            )
        except requests.Timeout as exc:
            raise OutcomeUnknown(f"Xendit {method} {path} timed out") from exc
        except requests.RequestException as exc:
            raise OutcomeUnknown(f"Xendit {method} {path} failed: {type(exc).__name__}") from exc

    @staticmethod
    def _json(response: requests.Response) -> object:
        """The decoded JSON; an unreadable answer leaves the outcome unknown."""
        try:
            return response.json()
        except ValueError as exc:
            raise OutcomeUnknown(f"unreadable Xendit answer (HTTP {response.status_code})") from exc

    def _raise_for_error(self, response: requests.Response) -> None:
        """Turn a non-2xx Xendit answer into the right ProviderError."""
        status = response.status_code
        if status < 400:
            return
        data = _error_body(response)
        raw = data.get("error_code")
        message = data.get("message")
        text = f"{raw or 'HTTP ' + str(status)}: {message or ''}".rstrip(": ")
        if status == 429 or raw == "RATE_LIMIT_EXCEEDED":
            raise RateLimited(f"Xendit rate limit: {text}", retry_after=self._retry_after(response))
        if status >= 500:
            raise OutcomeUnknown(f"Xendit answered HTTP {status}: {text}")
        if status in (401, 403) or raw in _CONFIG_ERRORS:
            raise ProviderConfigError(f"Xendit refused our credentials: {text}")
        if isinstance(raw, str) and raw:
            raise TransferRejected(str(_failure_code(raw)), text)
        if status in (404, 405):
            raise ProviderConfigError(f"Xendit endpoint not found: {text}")
        raise TransferRejected(FailureCode.INVALID_REQUEST, text)

    def _retry_after(self, response: requests.Response) -> float | None:
        """Seconds until Xendit accepts requests again, from whichever header it sent."""
        for name in ("Retry-After", "Rate-Limit-Reset", "RateLimit-Reset"):
            seconds = parse_retry_after(response.headers.get(name), now=self._clock())
            if seconds is not None:
                return seconds
        return None

    def _result(self, data: object, *, expected_key: str | None) -> TransferResult:
        """A Xendit payout object as a TransferResult, checking it is the payout we asked about."""
        if not isinstance(data, dict):
            raise OutcomeUnknown("Xendit payout answer is not an object")
        raw_status, payout_id = data.get("status"), data.get("id")
        if not isinstance(raw_status, str) or not isinstance(payout_id, str):
            raise OutcomeUnknown("Xendit payout object lacks id or status")
        status = _STATUSES.get(raw_status)
        if status is None:
            raise OutcomeUnknown(f"unknown Xendit payout status {raw_status!r}")
        if expected_key is not None and data.get("reference_id") != expected_key:
            raise OutcomeUnknown(f"Xendit answered about another payout ({payout_id})")
        raw_failure = data.get("failure_code")
        if not isinstance(raw_failure, str):
            raw_failure = raw_status if raw_status in ("CANCELLED", "COMPLIANCE_REJECTED") else None
        return TransferResult(
            status=status,
            provider_reference=payout_id,
            failure_code=_failure_code(raw_failure) if status is TransferStatus.FAILED else None,
            failure_message=raw_failure if status is TransferStatus.FAILED else None,
            raw_status=raw_status,
        )

    # ------------------------------------------------------------------ interface

    def send(self, request: TransferRequest) -> TransferResult:
        """Create the payout under our idempotency key; never retried here."""
        account = request.account
        if self._local_wallet_numbers and request.channel.startswith("ID_"):
            account = _local_wallet_number(account)
        body: dict[str, object] = {
            "reference_id": request.idempotency_key,
            "channel_code": request.channel,
            "channel_properties": {
                "account_number": account,
                "account_holder_name": request.account_holder_name,
            },
            "amount": request.amount,
            "currency": request.currency,
            "description": request.description or request.reference,
            "metadata": {"upah_reference": request.reference},
        }
        response = self._call(
            "POST", "/v2/payouts", body=body, headers={"Idempotency-key": request.idempotency_key}
        )
        self._raise_for_error(response)
        result = self._result(self._json(response), expected_key=request.idempotency_key)
        logger.info(
            "Xendit payout %s for key %s: %s",
            result.provider_reference,
            request.idempotency_key,
            result.raw_status,
        )
        return result

    def status(self, *, idempotency_key: str, provider_reference: str | None) -> TransferResult:
        """Where the payout is: by Xendit id when known, else by reference_id (our key).

        Xendit gave us its id, so a 404 by id cannot mean "never received" on its own: a 404
        that is not Xendit's own DATA_NOT_FOUND (a proxy's page, another account's id) leaves
        the outcome unknown, and DATA_NOT_FOUND is checked against the search by our key.
        Only that search answering empty means Xendit never received the instruction.
        """
        if provider_reference:
            response = self._call("GET", "/v2/payouts/" + quote(provider_reference, safe=""))
            if response.status_code != 404:
                self._raise_for_error(response)
                return self._result(self._json(response), expected_key=idempotency_key)
            if _error_code(response) != "DATA_NOT_FOUND":
                raise OutcomeUnknown(f"Xendit's 404 for payout {provider_reference} is not DATA_NOT_FOUND")
        response = self._call("GET", "/v2/payouts", params={"reference_id": idempotency_key})
        self._raise_for_error(response)
        data = self._json(response)
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise OutcomeUnknown("Xendit payout search answer is not a list")
        if not items:
            return TransferResult(
                status=TransferStatus.NOT_FOUND, provider_reference=None, raw_status="NOT_FOUND"
            )
        ids = {item.get("id") for item in items if isinstance(item, dict)}
        if len(ids) > 1:
            # Never pick one: two payouts under one key is an anomaly for a person to look at.
            raise OutcomeUnknown(f"{len(ids)} Xendit payouts carry reference_id {idempotency_key}")
        return self._result(items[0], expected_key=idempotency_key)

    def parse_callback(self, *, headers: Mapping[str, str], body: bytes, now: datetime) -> CallbackEvent:
        """Check the x-callback-token, then read the payout webhook."""
        try:
            signatures.verify_token(self._callback_token, find_header(headers, CALLBACK_TOKEN_HEADER))
        except signatures.SignatureError as exc:
            raise InvalidCallback(f"Xendit callback token rejected: {exc.reason}") from exc
        try:
            envelope = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidCallback("Xendit callback is not JSON") from exc
        data = envelope.get("data") if isinstance(envelope, dict) else None
        if not isinstance(data, dict):
            raise InvalidCallback("Xendit callback lacks a data object")
        raw_status, payout_id = data.get("status"), data.get("id")
        status = _STATUSES.get(raw_status) if isinstance(raw_status, str) else None
        if status is None or not isinstance(payout_id, str):
            raise InvalidCallback("Xendit callback lacks a payout id or a known status")
        event_name = envelope.get("event")
        event_id = find_header(headers, "webhook-id") or ":".join(
            str(part) for part in (payout_id, event_name or raw_status, data.get("updated") or "")
        )
        reference_id, currency = data.get("reference_id"), data.get("currency")
        raw_failure = data.get("failure_code")
        return CallbackEvent(
            event_id=event_id,
            idempotency_key=reference_id if isinstance(reference_id, str) else None,
            provider_reference=payout_id,
            status=status,
            amount=_whole_amount(data.get("amount")),
            currency=currency if isinstance(currency, str) else None,
            failure_code=_failure_code(raw_failure) if isinstance(raw_failure, str) else None,
        )

    def validate_account(self, *, channel: str, account: str, holder_name: str) -> AccountCheck:
        """Check the wallet number's form and that Xendit pays into this channel."""
        if channel.startswith("ID_") and not (
            account.startswith("+628") and account[1:].isdigit() and 11 <= len(account) <= 16
        ):
            return AccountCheck(valid=False, holder_name=None, reason=FailureCode.INVALID_ACCOUNT)
        response = self._call("GET", "/payouts_channels", params={"channel_code": channel})
        self._raise_for_error(response)
        channels = self._json(response)
        if not isinstance(channels, list):
            raise OutcomeUnknown("Xendit channel list is not a list")
        if not any(isinstance(item, dict) and item.get("channel_code") == channel for item in channels):
            return AccountCheck(valid=False, holder_name=None, reason=FailureCode.CHANNEL_NOT_SUPPORTED)
        # Xendit checks the holder name only when paying; a mismatch fails INVALID_DESTINATION.
        return AccountCheck(valid=True, holder_name=None, reason=None)


def _error_body(response: requests.Response) -> dict[str, Any]:
    """Xendit's error object, or an empty one for an answer that is not (a proxy's page)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_code(response: requests.Response) -> str | None:
    code = _error_body(response).get("error_code")
    return code if isinstance(code, str) else None
