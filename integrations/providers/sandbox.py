"""The adapter for our sandbox provider, spoken to over HTTP exactly as a real one is.

It is the reference adapter: the same session, timeouts, idempotency header and error
mapping as the Xendit and M-Pesa adapters, against :mod:`integrations.sandbox_server`.
The idempotency key travels in ``Idempotency-Key`` on every attempt; the sandbox answers a
repeat with the first response, or 409 ``IDEMPOTENCY_CONFLICT`` if the body changed.
Callbacks carry ``X-Sandbox-Signature: t=…,v1=…`` (see :mod:`integrations.signatures`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final
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
    ProviderError,
    RateLimited,
    TransferRejected,
    TransferRequest,
    TransferResult,
    TransferStatus,
    find_header,
    parse_retry_after,
)

__all__ = ["SandboxProvider"]

logger = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Sandbox-Signature"
DEFAULT_TIMEOUT: Final = (3.05, 10.0)

_STATUSES: Final = {
    "accepted": TransferStatus.PENDING,
    "pending": TransferStatus.PENDING,
    "succeeded": TransferStatus.SUCCEEDED,
    "failed": TransferStatus.FAILED,
    "reversed": TransferStatus.REVERSED,
}

_FAILURES: Final = {
    "INSUFFICIENT_BALANCE": FailureCode.INSUFFICIENT_BALANCE,
    "INVALID_ACCOUNT": FailureCode.INVALID_ACCOUNT,
    "NAME_MISMATCH": FailureCode.NAME_MISMATCH,
    "LIMIT_EXCEEDED": FailureCode.LIMIT_EXCEEDED,
    "IDEMPOTENCY_CONFLICT": FailureCode.IDEMPOTENCY_CONFLICT,
    "CHANNEL_NOT_SUPPORTED": FailureCode.CHANNEL_NOT_SUPPORTED,
    "UNSUPPORTED_CURRENCY": FailureCode.UNSUPPORTED_CURRENCY,
    "VALIDATION_ERROR": FailureCode.INVALID_REQUEST,
    "INVALID_JSON": FailureCode.INVALID_REQUEST,
    "IDEMPOTENCY_KEY_REQUIRED": FailureCode.INVALID_REQUEST,
}


def _failure_code(raw: str | None) -> str | None:
    """Our name for a sandbox failure code."""
    if raw is None:
        return None
    return str(_FAILURES.get(raw, raw.lower()))


class SandboxProvider:
    """Pays e-wallets through the sandbox provider's HTTP API."""

    def __init__(
        self,
        base_url: str,
        callback_secret: bytes,
        session: requests.Session | None = None,
        *,
        name: str = "sandbox",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        signature_tolerance: int = 300,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ProviderConfigError("sandbox base_url must be an http(s) URL")
        if not callback_secret:
            raise ProviderConfigError("sandbox callback secret is empty")
        self.name = name
        self._base_url = base_url.rstrip("/")
        self._secret = callback_secret
        self._session = session if session is not None else requests.Session()
        self._timeout = timeout
        self._tolerance = signature_tolerance
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
        """One HTTP exchange; anything that leaves the answer unknown is OutcomeUnknown."""
        try:
            return self._session.request(
                method,
                self._base_url + path,
                json=body,
                headers=dict(headers or {}),
                params=params,
                timeout=self._timeout,
            )
        except requests.Timeout as exc:
            raise OutcomeUnknown(f"sandbox {method} {path} timed out") from exc
        except requests.RequestException as exc:
            raise OutcomeUnknown(f"sandbox {method} {path} failed: {type(exc).__name__}") from exc

    @staticmethod
    def _json(response: requests.Response) -> dict[str, object]:
        """The JSON object in a response; anything else means we cannot tell what happened."""
        try:
            data = response.json()
        except ValueError as exc:
            raise OutcomeUnknown(f"unreadable sandbox answer (HTTP {response.status_code})") from exc
        if not isinstance(data, dict):
            raise OutcomeUnknown(f"unexpected sandbox answer (HTTP {response.status_code})")
        return data

    def _raise_for_error(self, response: requests.Response) -> None:
        """Turn a non-2xx answer into the right ProviderError."""
        status = response.status_code
        if status < 400:
            return
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
            raise RateLimited("sandbox rate limit", retry_after=retry_after)
        if status >= 500:
            raise OutcomeUnknown(f"sandbox answered HTTP {status}")
        try:
            data = response.json()
        except ValueError:
            data = {}
        raw = data.get("error_code") if isinstance(data, dict) else None
        message = data.get("message") if isinstance(data, dict) else None
        text = str(message or raw or f"HTTP {status}")
        if status in (401, 403):
            raise ProviderConfigError(f"sandbox refused our credentials: {text}")
        if status == 409 or status == 400 or status == 422:
            code = _failure_code(str(raw)) if raw else FailureCode.INVALID_REQUEST
            raise TransferRejected(str(code), text)
        raise ProviderConfigError(f"sandbox answered HTTP {status}: {text}")

    @staticmethod
    def _result(data: Mapping[str, object]) -> TransferResult:
        """A payout object from the sandbox as a TransferResult."""
        raw_status = data.get("status")
        payout_id = data.get("id")
        if not isinstance(raw_status, str) or not isinstance(payout_id, str):
            raise OutcomeUnknown("sandbox payout object lacks id or status")
        status = _STATUSES.get(raw_status)
        if status is None:
            raise OutcomeUnknown(f"unknown sandbox payout status {raw_status!r}")
        raw_failure = data.get("failure_code")
        failure = _failure_code(raw_failure if isinstance(raw_failure, str) else None)
        return TransferResult(
            status=status,
            provider_reference=payout_id,
            failure_code=failure,
            failure_message=raw_failure if isinstance(raw_failure, str) else None,
            raw_status=raw_status,
        )

    # ------------------------------------------------------------------ interface

    def send(self, request: TransferRequest) -> TransferResult:
        """Submit the instruction under its idempotency key; never retried here."""
        body: dict[str, object] = {
            "reference": request.reference,
            "amount": request.amount,
            "currency": request.currency,
            "channel": request.channel,
            "account": request.account,
            "account_holder_name": request.account_holder_name,
            "description": request.description,
        }
        if request.callback_url is not None:
            body["callback_url"] = request.callback_url
        response = self._call(
            "POST",
            "/v1/payouts",
            body=body,
            headers={"Idempotency-Key": request.idempotency_key},
        )
        self._raise_for_error(response)
        result = self._result(self._json(response))
        logger.info(
            "sandbox payout %s for key %s: %s",
            result.provider_reference,
            request.idempotency_key,
            result.raw_status,
        )
        return result

    def status(self, *, idempotency_key: str, provider_reference: str | None) -> TransferResult:
        """Where the payout is, by our key (or the sandbox id when we have it)."""
        if provider_reference:
            response = self._call("GET", "/v1/payouts/" + quote(provider_reference, safe=""))
        else:
            response = self._call("GET", "/v1/payouts", params={"idempotency_key": idempotency_key})
        if response.status_code == 404:
            try:
                data = response.json()
            except ValueError:
                data = None
            if isinstance(data, dict) and data.get("error_code") == "NOT_FOUND":
                return TransferResult(
                    status=TransferStatus.NOT_FOUND, provider_reference=None, raw_status="NOT_FOUND"
                )
            raise ProviderConfigError("sandbox status endpoint not found; check the base URL")
        self._raise_for_error(response)
        return self._result(self._json(response))

    def parse_callback(self, *, headers: Mapping[str, str], body: bytes, now: datetime) -> CallbackEvent:
        """Verify the HMAC signature, then read the event."""
        try:
            signatures.verify(
                self._secret,
                find_header(headers, SIGNATURE_HEADER),
                body,
                now=int(now.timestamp()),
                tolerance=self._tolerance,
            )
        except signatures.SignatureError as exc:
            raise InvalidCallback(f"sandbox callback signature rejected: {exc.reason}") from exc
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidCallback("sandbox callback is not JSON") from exc
        if not isinstance(data, dict):
            raise InvalidCallback("sandbox callback is not a JSON object")
        event_id, payout_id = data.get("event_id"), data.get("id")
        raw_status = data.get("status")
        status = _STATUSES.get(raw_status) if isinstance(raw_status, str) else None
        if not isinstance(event_id, str) or not isinstance(payout_id, str) or status is None:
            raise InvalidCallback("sandbox callback lacks event_id, id or a known status")
        key, amount, currency = data.get("idempotency_key"), data.get("amount"), data.get("currency")
        raw_failure = data.get("failure_code")
        return CallbackEvent(
            event_id=event_id,
            idempotency_key=key if isinstance(key, str) else None,
            provider_reference=payout_id,
            status=status,
            amount=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
            currency=currency if isinstance(currency, str) else None,
            failure_code=_failure_code(raw_failure if isinstance(raw_failure, str) else None),
        )

    def statement(self) -> str:
        """The settlement statement (CSV) the nightly reconciliation checks the ledger against."""
        try:
            response = self._session.get(self._base_url + "/v1/statement.csv", timeout=self._timeout)
        except requests.RequestException as exc:
            raise OutcomeUnknown(f"sandbox statement could not be fetched: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise OutcomeUnknown(f"sandbox statement answered HTTP {response.status_code}")
        return response.text

    def validate_account(self, *, channel: str, account: str, holder_name: str) -> AccountCheck:
        """Ask the sandbox's name inquiry whether the wallet is hers."""
        response = self._call(
            "POST",
            "/v1/accounts/validate",
            body={"channel": channel, "account": account, "holder_name": holder_name},
        )
        try:
            self._raise_for_error(response)
        except TransferRejected as exc:
            raise ProviderError(f"sandbox refused the account check: {exc.message}") from exc
        data = self._json(response)
        valid, name, reason = data.get("valid"), data.get("holder_name"), data.get("reason")
        if not isinstance(valid, bool):
            raise OutcomeUnknown("sandbox account check lacks 'valid'")
        return AccountCheck(
            valid=valid,
            holder_name=name if isinstance(name, str) else None,
            reason=_failure_code(reason) if isinstance(reason, str) else None,
        )
