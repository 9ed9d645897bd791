"""Safaricom M-Pesa B2C (Daraja): paying Kenyan M-Pesa wallets, the asynchronous pattern.

Daraja answers a payment request with an acknowledgement only; the outcome arrives
later as a POST to the ``ResultURL`` we gave. So:

* :meth:`MpesaB2CProvider.send` gets an OAuth token (``GET /oauth/v1/generate``, cached
  until shortly before ``expires_in`` by the injected clock), then ``POST
  /mpesa/b2c/v3/paymentrequest`` with ``OriginatorConversationID`` = our idempotency key —
  Daraja's de-duplication key, the same on every attempt, and echoed in the
  acknowledgement, which we check. ``ResponseCode`` ``"0"`` means *accepted*: the result
  is ``PENDING`` with the ``ConversationID`` as provider reference.
* The result callback carries ``Result.ResultCode``: ``0`` paid, anything else failed
  (``1`` insufficient balance in our utility account, ``2001`` invalid initiator, ``2040``
  a receiver M-Pesa cannot pay, …) — except ``15``, "Duplicate Detected", which answers a
  repeated instruction and leaves the payout pending on the first one's result. A
  ``QueueTimeOutURL`` notice means Daraja's queue gave up: the outcome is still unknown
  and the payout stays pending.
* :meth:`MpesaB2CProvider.status` submits a ``TransactionStatusQuery`` by
  ``OriginalConversationID`` (our key). That API is asynchronous too: ``status()``
  answers ``PENDING`` (query accepted) and the answer arrives at the ``ResultURL`` as a
  callback. Daraja publishes no result code meaning "never received"; the codes an
  operator has seen for that go in ``not_found_result_codes`` — until then an unknown
  payout waits for a person rather than risk paying twice.
* Daraja signs nothing. Callbacks are authenticated by a secret token we put in the
  ``ResultURL``/``QueueTimeOutURL`` query string (``upah_token``), compared in constant
  time; the webhook route passes the query string in the ``x-upah-callback-query``
  pseudo-header. The URL also carries ``upah_key`` (our idempotency key) and
  ``upah_kind`` (``payment``, ``status`` or ``timeout``), so every callback names its
  payout even when Daraja's body does not. Serve the ResultURL over HTTPS only.
* Errors come as ``{"requestId", "errorCode", "errorMessage"}``; a rejected token is
  retried once with a fresh one (the gateway refused the call, nothing reached M-Pesa).

Amounts are whole Kenyan shillings (``KES``); the receiver is a ``2547…``/``2541…`` MSISDN.
``SecurityCredential`` is the initiator password already encrypted with Safaricom's
certificate, as the Daraja portal produces it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import requests

from integrations import signatures
from integrations.providers.base import (
    CALLBACK_QUERY_HEADER,
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

__all__ = ["MpesaB2CProvider"]

logger = logging.getLogger(__name__)

BASE_URL: Final = "https://api.safaricom.co.ke"
CURRENCY: Final = "KES"
DEFAULT_TIMEOUT: Final = (3.05, 30.0)
TOKEN_MARGIN: Final = timedelta(seconds=60)
MAX_REMARKS: Final = 100
_MSISDN: Final = re.compile(r"\+?(254(?:7|1)[0-9]{8})")

# Result codes Daraja documents for B2C results; any other non-zero code is a failure too.
_RESULT_FAILURES: Final = {
    "1": FailureCode.INSUFFICIENT_BALANCE,
    "2001": "invalid_initiator",
    "2040": FailureCode.INVALID_ACCOUNT,
}
# Result codes that say nothing about whether she was paid. 15, "Duplicate Detected": this
# instruction repeats one M-Pesa already has (same OriginatorConversationID), and that one's
# result decides; reading it as a failure would return her money while the first may pay.
_UNDECIDED_RESULTS: Final = {"15": "duplicate_detected"}
_TOKEN_ERRORS: Final = frozenset({"404.001.03", "404.001.04", "400.008.01", "400.008.02"})
_RATE_LIMIT_ERRORS: Final = frozenset({"500.003.03", "429.001.01"})
_KINDS: Final = frozenset({"payment", "status", "timeout"})
_TRANSACTION_STATUSES: Final = {
    "completed": TransferStatus.SUCCEEDED,
    "reversed": TransferStatus.REVERSED,
    "failed": TransferStatus.FAILED,
    "declined": TransferStatus.FAILED,
    "cancelled": TransferStatus.FAILED,
    "expired": TransferStatus.FAILED,
}


def _undecided(event_id: str, key: str, reason: str) -> CallbackEvent:
    """A callback that says nothing of whether she was paid: the payout stays pending."""
    return CallbackEvent(
        event_id=event_id,
        idempotency_key=key,
        provider_reference=None,
        status=TransferStatus.PENDING,
        amount=None,
        currency=None,
        failure_code=reason,
    )


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added to its query string."""
    parts = urlsplit(url)
    query = "&".join(part for part in (parts.query, urlencode(params)) if part)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _shillings(value: object) -> int | None:
    """A Daraja amount (number or ``"5000.00"``) as whole shillings, or None if fractional."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount != amount.to_integral_value():
        return None
    return int(amount)


def _parameters(result: Mapping[str, object]) -> dict[str, object]:
    """``ResultParameters.ResultParameter`` as a plain mapping (one item or a list)."""
    container = result.get("ResultParameters")
    items = container.get("ResultParameter") if isinstance(container, dict) else None
    if isinstance(items, dict):
        items = [items]
    found: dict[str, object] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("Key"), str):
                found[str(item["Key"])] = item.get("Value")
    return found


class MpesaB2CProvider:
    """Pays M-Pesa wallets through Safaricom Daraja's B2C API."""

    def __init__(
        self,
        *,
        consumer_key: str,
        consumer_secret: str,
        initiator_name: str,
        security_credential: str,
        shortcode: str,
        result_url: str,
        queue_timeout_url: str,
        callback_token: str,
        session: requests.Session | None = None,
        base_url: str = BASE_URL,
        api_version: str = "v3",
        command_id: str = "BusinessPayment",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        not_found_result_codes: frozenset[str] = frozenset(),
        clock: Callable[[], datetime] | None = None,
        name: str = "mpesa_b2c",
    ) -> None:
        required = {
            "consumer_key": consumer_key,
            "consumer_secret": consumer_secret,
            "initiator_name": initiator_name,
            "security_credential": security_credential,
            "shortcode": shortcode,
            "callback_token": callback_token,
        }
        missing = sorted(key for key, value in required.items() if not value)
        if missing:
            raise ProviderConfigError(f"M-Pesa B2C needs {', '.join(missing)}")
        for url in (result_url, queue_timeout_url):
            if not url.startswith(("https://", "http://")):
                raise ProviderConfigError("M-Pesa result and queue-timeout URLs must be absolute URLs")
        if api_version not in ("v1", "v3"):
            raise ProviderConfigError("M-Pesa B2C api_version must be v1 or v3")
        self.name = name
        self._auth = (consumer_key, consumer_secret)
        self._initiator_name = initiator_name
        self._security_credential = security_credential
        self._shortcode = shortcode
        self._result_url = result_url
        self._queue_timeout_url = queue_timeout_url
        self._callback_token = callback_token
        self._session = session if session is not None else requests.Session()
        self._base_url = base_url.rstrip("/")
        self._payment_path = f"/mpesa/b2c/{api_version}/paymentrequest"
        self._command_id = command_id
        self._timeout = timeout
        self._not_found_codes = not_found_result_codes
        self._clock = clock or (lambda: datetime.now(UTC))
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_expires: datetime | None = None

    # ------------------------------------------------------------------ HTTP

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> requests.Response:
        """One exchange with Daraja; anything leaving the answer unknown is OutcomeUnknown."""
        try:
            return self._session.request(
                method,
                self._base_url + path,
                json=body,
                headers=dict(headers or {}),
                params=params,
                auth=auth,
                timeout=self._timeout,
            )
        except requests.Timeout as exc:
            raise OutcomeUnknown(f"Daraja {method} {path} timed out") from exc
        except requests.RequestException as exc:
            raise OutcomeUnknown(f"Daraja {method} {path} failed: {type(exc).__name__}") from exc

    @staticmethod
    def _json_object(response: requests.Response) -> dict[str, object]:
        """The JSON object in a response; anything else means we cannot tell what happened."""
        try:
            data = response.json()
        except ValueError as exc:
            raise OutcomeUnknown(f"unreadable Daraja answer (HTTP {response.status_code})") from exc
        if not isinstance(data, dict):
            raise OutcomeUnknown(f"unexpected Daraja answer (HTTP {response.status_code})")
        return data

    def _access_token(self, *, force: bool = False) -> tuple[str, bool]:
        """A bearer token and whether it was just fetched; cached until shortly before expiry."""
        with self._token_lock:
            now = self._clock()
            if (
                not force
                and self._token is not None
                and self._token_expires is not None
                and now < self._token_expires
            ):
                return self._token, False
            response = self._call(
                "GET", "/oauth/v1/generate", params={"grant_type": "client_credentials"}, auth=self._auth
            )
            if response.status_code in (400, 401, 403):
                raise ProviderConfigError(f"Daraja refused our consumer key (HTTP {response.status_code})")
            if response.status_code >= 300:
                raise OutcomeUnknown(f"Daraja token endpoint answered HTTP {response.status_code}")
            data = self._json_object(response)
            token, expires_in = data.get("access_token"), data.get("expires_in")
            try:
                lifetime = int(str(expires_in))
            except ValueError:
                lifetime = 0
            if not isinstance(token, str) or not token or lifetime <= 0:
                raise OutcomeUnknown("Daraja token answer lacks access_token or expires_in")
            self._token = token
            self._token_expires = now + timedelta(seconds=lifetime) - TOKEN_MARGIN
            return token, True

    @staticmethod
    def _is_token_rejected(response: requests.Response) -> bool:
        """Whether the gateway refused our bearer token (so nothing reached M-Pesa)."""
        if response.status_code == 401:
            return True
        if response.status_code not in (400, 404):
            return False
        try:
            data = response.json()
        except ValueError:
            return False
        return isinstance(data, dict) and data.get("errorCode") in _TOKEN_ERRORS

    def _post(self, path: str, body: Mapping[str, object]) -> requests.Response:
        """POST with a bearer token, once more with a fresh token if the cached one was refused."""
        token, fresh = self._access_token()
        response = self._call("POST", path, body=body, headers={"Authorization": f"Bearer {token}"})
        if not self._is_token_rejected(response):
            return response
        if fresh:
            raise ProviderConfigError("Daraja refused a freshly issued access token")
        token, _ = self._access_token(force=True)
        response = self._call("POST", path, body=body, headers={"Authorization": f"Bearer {token}"})
        if self._is_token_rejected(response):
            raise ProviderConfigError("Daraja refused a freshly issued access token")
        return response

    def _raise_for_error(self, response: requests.Response) -> None:
        """Turn a non-2xx Daraja answer into the right ProviderError."""
        status = response.status_code
        if status < 300:
            return
        try:
            data = response.json()
        except ValueError:
            data = None
        code = data.get("errorCode") if isinstance(data, dict) else None
        message = data.get("errorMessage") if isinstance(data, dict) else None
        text = f"{code or 'HTTP ' + str(status)}: {message or ''}".rstrip(": ")
        if status == 429 or code in _RATE_LIMIT_ERRORS:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
            raise RateLimited(f"Daraja rate limit: {text}", retry_after=retry_after)
        if status >= 500:
            raise OutcomeUnknown(f"Daraja answered HTTP {status}: {text}")
        if status in (401, 403):
            raise ProviderConfigError(f"Daraja refused the request: {text}")
        if status == 409 or (isinstance(message, str) and "duplicate" in message.lower()):
            raise TransferRejected(FailureCode.IDEMPOTENCY_CONFLICT, text)
        if isinstance(message, str) and re.search(r"party ?b|msisdn|phone", message, re.IGNORECASE):
            raise TransferRejected(FailureCode.INVALID_ACCOUNT, text)
        if status == 404 and code is None:
            raise ProviderConfigError(f"Daraja endpoint not found: {text}")
        raise TransferRejected(FailureCode.INVALID_REQUEST, text)

    def _callback_urls(self, key: str, kind: str, result_url: str | None = None) -> tuple[str, str]:
        """ResultURL and QueueTimeOutURL carrying our token, the payout's key and the kind."""
        params = {"upah_token": self._callback_token, "upah_key": key}
        return (
            _with_query(result_url or self._result_url, {**params, "upah_kind": kind}),
            _with_query(self._queue_timeout_url, {**params, "upah_kind": "timeout"}),
        )

    # ------------------------------------------------------------------ interface

    def send(self, request: TransferRequest) -> TransferResult:
        """Submit the B2C payment; accepted means pending until the result callback."""
        if request.currency != CURRENCY:
            raise TransferRejected(FailureCode.UNSUPPORTED_CURRENCY, "M-Pesa B2C pays KES only")
        match = _MSISDN.fullmatch(request.account)
        if match is None:
            raise TransferRejected(FailureCode.INVALID_ACCOUNT, "receiver must be a 2547/2541 MSISDN")
        result_url, timeout_url = self._callback_urls(
            request.idempotency_key, "payment", request.callback_url
        )
        body = {
            "OriginatorConversationID": request.idempotency_key,
            "InitiatorName": self._initiator_name,
            "SecurityCredential": self._security_credential,
            "CommandID": self._command_id,
            "Amount": request.amount,
            "PartyA": self._shortcode,
            "PartyB": match.group(1),
            "Remarks": (request.description or request.reference)[:MAX_REMARKS],
            "QueueTimeOutURL": timeout_url,
            "ResultURL": result_url,
            "Occasion": request.reference[:MAX_REMARKS],
        }
        response = self._post(self._payment_path, body)
        self._raise_for_error(response)
        data = self._json_object(response)
        code = str(data.get("ResponseCode", ""))
        description = str(data.get("ResponseDescription", ""))
        if code != "0":
            raise TransferRejected(f"mpesa_{code or 'unknown'}", description or "Daraja refused the request")
        echoed = data.get("OriginatorConversationID")
        if echoed is not None and echoed != request.idempotency_key:
            raise OutcomeUnknown("Daraja acknowledged a different OriginatorConversationID")
        conversation = data.get("ConversationID")
        if not isinstance(conversation, str) or not conversation:
            raise OutcomeUnknown("Daraja acknowledgement lacks ConversationID")
        logger.info("M-Pesa B2C %s accepted for key %s", conversation, request.idempotency_key)
        return TransferResult(
            status=TransferStatus.PENDING, provider_reference=conversation, raw_status="accepted"
        )

    def status(self, *, idempotency_key: str, provider_reference: str | None) -> TransferResult:
        """Ask Daraja for the transaction's status; the answer arrives as a callback."""
        result_url, timeout_url = self._callback_urls(idempotency_key, "status")
        body = {
            "Initiator": self._initiator_name,
            "SecurityCredential": self._security_credential,
            "CommandID": "TransactionStatusQuery",
            "OriginalConversationID": idempotency_key,
            "PartyA": self._shortcode,
            "IdentifierType": "4",
            "ResultURL": result_url,
            "QueueTimeOutURL": timeout_url,
            "Remarks": "Upah payout status",
            "Occasion": "",
        }
        response = self._post("/mpesa/transactionstatus/v1/query", body)
        self._raise_for_error(response)
        data = self._json_object(response)
        code = str(data.get("ResponseCode", ""))
        if code != "0":
            raise OutcomeUnknown(f"Daraja refused the status query: {code} {data.get('ResponseDescription')}")
        return TransferResult(
            status=TransferStatus.PENDING,
            provider_reference=provider_reference,
            raw_status="status_query_accepted",
        )

    def parse_callback(self, *, headers: Mapping[str, str], body: bytes, now: datetime) -> CallbackEvent:
        """Check the URL token, then read a B2C result, status result or queue timeout."""
        query = parse_qs(find_header(headers, CALLBACK_QUERY_HEADER) or "")
        tokens = query.get("upah_token", [])
        try:
            signatures.verify_token(self._callback_token, tokens[0] if len(tokens) == 1 else None)
        except signatures.SignatureError as exc:
            raise InvalidCallback(f"M-Pesa callback token rejected: {exc.reason}") from exc
        kind = (query.get("upah_kind") or [""])[0]
        keys = query.get("upah_key") or []
        if kind not in _KINDS or len(keys) != 1 or not keys[0]:
            raise InvalidCallback("M-Pesa callback URL lacks upah_kind or upah_key")
        key = keys[0]
        try:
            envelope = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidCallback("M-Pesa callback is not JSON") from exc
        result = envelope.get("Result") if isinstance(envelope, dict) else None
        if not isinstance(result, dict):
            raise InvalidCallback("M-Pesa callback lacks a Result object")
        conversation = result.get("ConversationID")
        code = str(result.get("ResultCode", "")).strip()
        if not isinstance(conversation, str) or not conversation or not code:
            raise InvalidCallback("M-Pesa callback lacks ConversationID or ResultCode")
        event_id = f"mpesa:{kind}:{conversation}:{code}"
        if kind == "timeout":
            return _undecided(event_id, key, "queue_timeout")
        parameters = _parameters(result)
        if kind == "status":
            return self._status_event(event_id, key, code, parameters)
        if code == "0":
            return CallbackEvent(
                event_id=event_id,
                idempotency_key=key,
                provider_reference=conversation,
                status=TransferStatus.SUCCEEDED,
                amount=_shillings(parameters.get("TransactionAmount")),
                currency=CURRENCY,
            )
        if code in _UNDECIDED_RESULTS:
            return _undecided(event_id, key, _UNDECIDED_RESULTS[code])
        return CallbackEvent(
            event_id=event_id,
            idempotency_key=key,
            provider_reference=conversation,
            status=TransferStatus.FAILED,
            amount=None,
            currency=CURRENCY,
            failure_code=str(_RESULT_FAILURES.get(code, f"mpesa_{code}")),
        )

    def _status_event(
        self, event_id: str, key: str, code: str, parameters: Mapping[str, object]
    ) -> CallbackEvent:
        """A TransactionStatusQuery result as what it says about the payout."""
        receipt = parameters.get("ReceiptNo")
        reference = receipt if isinstance(receipt, str) and receipt else None
        if code != "0":
            known_missing = code in self._not_found_codes
            return CallbackEvent(
                event_id=event_id,
                idempotency_key=key,
                provider_reference=None,
                status=TransferStatus.NOT_FOUND if known_missing else TransferStatus.PENDING,
                amount=None,
                currency=None,
                failure_code=None if known_missing else f"status_query_{code}",
            )
        raw = parameters.get("TransactionStatus")
        status = _TRANSACTION_STATUSES.get(str(raw).strip().lower(), TransferStatus.PENDING)
        return CallbackEvent(
            event_id=event_id,
            idempotency_key=key,
            provider_reference=reference,
            status=status,
            amount=_shillings(parameters.get("Amount")),
            currency=CURRENCY,
            failure_code=f"mpesa_{str(raw).lower()}" if status is TransferStatus.FAILED else None,
        )

    def validate_account(self, *, channel: str, account: str, holder_name: str) -> AccountCheck:
        """Check the MSISDN's form; Daraja B2C has no name inquiry before paying."""
        if _MSISDN.fullmatch(account) is None:
            return AccountCheck(valid=False, holder_name=None, reason=FailureCode.INVALID_ACCOUNT)
        # The receiver's registered name only comes back in the result (ReceiverPartyPublicName).
        return AccountCheck(valid=True, holder_name=None, reason=None)
