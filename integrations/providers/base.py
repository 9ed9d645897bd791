"""The payout-provider interface: what every mobile-money adapter promises.

A payout is one instruction to move ``amount`` (an ``int`` in the currency's minor unit as
the provider uses it: whole rupiah for IDR, whole shillings for KES) into one wallet. The
caller gives each payout one idempotency key for its whole life and sends it on every
attempt; an adapter passes it to the provider in the provider's own way (a header, a
request field) so that a repeated instruction can never pay twice.

An adapter never retries a payment instruction by itself and never decides that an
ambiguous answer was a failure. Every outcome is one of:

* a :class:`TransferResult` — the provider answered; ``status`` says where the payout is.
  A definitive failure the provider reports *as a payout status* (``FAILED`` with a
  failure code) is a result, not an exception;
* a :class:`ProviderError` — the tree below, each class with a snake_case ``code``::

    ProviderError                 provider_error
    ├── OutcomeUnknown            outcome_unknown   timeout, connection error, 5xx, unreadable
    │                                               answer: the payout MAY have happened —
    │                                               query status(), never send a new
    │                                               instruction for the same payout
    ├── RateLimited               rate_limited      429; retry_after seconds when the provider
    │                                               said so; nothing was processed
    ├── TransferRejected          <reason>          definitive refusal of THIS request, e.g.
    │                                               insufficient_balance, invalid_account,
    │                                               name_mismatch, limit_exceeded,
    │                                               idempotency_conflict
    ├── InvalidCallback           invalid_callback  bad signature or token, malformed body
    └── ProviderConfigError       provider_config_error  credentials, URLs, unsupported setup

``idempotency_conflict`` means the provider already holds a *different* instruction under
this key. It refuses this request only: the original instruction may well have paid, so
the caller must query status before giving the money back to what the worker is owed.

Callbacks are authenticated before they are parsed (:meth:`PayoutProvider.parse_callback`
raises :class:`InvalidCallback`); a provider that can only authenticate by a token in the
callback URL's query string (Safaricom Daraja) reads it from the pseudo-header
:data:`CALLBACK_QUERY_HEADER`, which the webhook route fills with the raw query string.
Replays and duplicates are the caller's to drop, by ``CallbackEvent.event_id``.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

__all__ = [
    "CALLBACK_QUERY_HEADER",
    "AccountCheck",
    "CallbackEvent",
    "FailureCode",
    "InvalidCallback",
    "OutcomeUnknown",
    "PayoutProvider",
    "ProviderConfigError",
    "ProviderError",
    "RateLimited",
    "TransferRejected",
    "TransferRequest",
    "TransferResult",
    "TransferStatus",
    "find_header",
    "parse_retry_after",
]

CALLBACK_QUERY_HEADER = "x-upah-callback-query"
"""Pseudo-header carrying the callback request's raw query string (``a=1&b=2``)."""

MAX_IDEMPOTENCY_KEY_LENGTH = 100  # Xendit's limit, the tightest of our providers


class TransferStatus(StrEnum):
    """Where a payout is at the provider."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERSED = "reversed"
    NOT_FOUND = "not_found"


class FailureCode(StrEnum):
    """Our names for the reasons providers give; adapters translate theirs into these."""

    INSUFFICIENT_BALANCE = "insufficient_balance"
    INVALID_ACCOUNT = "invalid_account"
    NAME_MISMATCH = "name_mismatch"
    LIMIT_EXCEEDED = "limit_exceeded"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    INVALID_REQUEST = "invalid_request"
    CHANNEL_NOT_SUPPORTED = "channel_not_supported"
    UNSUPPORTED_CURRENCY = "unsupported_currency"
    REJECTED_BY_CHANNEL = "rejected_by_channel"
    CANCELLED = "cancelled"
    PROVIDER_FAILURE = "provider_failure"


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """One payment instruction; the same key and fields on every attempt."""

    idempotency_key: str
    reference: str
    amount: int
    currency: str
    channel: str  # e.g. "ID_DANA", "ID_OVO", "ID_GOPAY"
    account: str  # wallet account number (E.164 phone for Indonesian e-wallets)
    account_holder_name: str
    description: str = ""
    callback_url: str | None = None

    def __post_init__(self) -> None:
        """Refuse an instruction no provider could carry out exactly."""
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError("amount must be an int in the minor unit")
        if self.amount <= 0:
            raise ValueError("amount must be positive")
        if not self.idempotency_key or len(self.idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            raise ValueError("idempotency_key must be 1 to 100 characters")
        if not self.reference:
            raise ValueError("reference is required")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise ValueError("currency must be an ISO 4217 code such as IDR")
        if not self.channel or not self.account or not self.account_holder_name:
            raise ValueError("channel, account and account_holder_name are required")


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What the provider said about one payout."""

    status: TransferStatus
    provider_reference: str | None
    failure_code: str | None = None
    failure_message: str | None = None
    raw_status: str = ""


@dataclass(frozen=True, slots=True)
class CallbackEvent:
    """An authenticated, parsed provider notification about one payout."""

    event_id: str
    idempotency_key: str | None
    provider_reference: str | None
    status: TransferStatus
    amount: int | None
    currency: str | None
    failure_code: str | None = None


@dataclass(frozen=True, slots=True)
class AccountCheck:
    """Whether a wallet can receive a payout under the given holder name."""

    valid: bool
    holder_name: str | None
    reason: str | None


class PayoutProvider(Protocol):
    """A mobile-money provider that can pay a wallet, report and notify."""

    name: str

    def send(self, request: TransferRequest) -> TransferResult:
        """Submit one payment instruction; ambiguity raises OutcomeUnknown."""
        ...

    def status(self, *, idempotency_key: str, provider_reference: str | None) -> TransferResult:
        """Ask where a payout is; NOT_FOUND when the provider never received it."""
        ...

    def parse_callback(self, *, headers: Mapping[str, str], body: bytes, now: datetime) -> CallbackEvent:
        """Authenticate, then parse, one provider notification."""
        ...

    def validate_account(self, *, channel: str, account: str, holder_name: str) -> AccountCheck:
        """Check a wallet and its holder name before paying into it."""
        ...


class ProviderError(Exception):
    """Anything that kept a provider call from giving a TransferResult."""

    code: str = "provider_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)
        self.message = message or self.code


class OutcomeUnknown(ProviderError):
    """The instruction may or may not have been carried out: query status, never resend anew."""

    code = "outcome_unknown"


class RateLimited(ProviderError):
    """The provider refused to process the request now; nothing happened."""

    code = "rate_limited"

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransferRejected(ProviderError):
    """The provider definitively refused this request; ``code`` says why."""

    code = "transfer_rejected"

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


class InvalidCallback(ProviderError):
    """A callback that is not authentic or cannot be read: reject it, never act on it."""

    code = "invalid_callback"


class ProviderConfigError(ProviderError):
    """Our side is misconfigured (credentials, URLs): no retry will help."""

    code = "provider_config_error"


def find_header(headers: Mapping[str, str], name: str) -> str | None:
    """Read a header case-insensitively, whatever mapping the web framework gave us."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After (delta-seconds or HTTP-date) or reset header."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
