"""Sending SMS: the one-method interface, a sandbox that records, and Twilio's request signature.

Everything Upah tells a homeworker on its own initiative — a payout arrived or failed, new
work was assigned, her menu was locked — and every reply to an SMS command goes out
through an :class:`SmsSender`: ``send(to=E.164, text=…)`` returns the gateway's message id
or raises. The errors say what the caller should do next:

- :class:`SmsRejected` — definitive: this message to this number will never go (an invalid
  or unreachable number, a fictitious demo number). Record it; do not retry.
- :class:`SmsTemporaryFailure` — the gateway was busy, down or slow (HTTP 429, 5xx, a
  timeout, bad credentials that an operator can fix). Retry later, with backoff; a
  timeout may mean the message *was* sent, so delivery is at-least-once.

:class:`SandboxSmsSender` is a real implementation, not a mock: it keeps every message in
memory (for the demo and the tests) and accepts any valid number, demo ones included.
The real gateway adapter (Twilio's Messages API over ``requests``) lives in
:mod:`integrations.twilio_sms`, so that code which only needs this interface — the
payments package, the API — never imports an HTTP client.

Inbound requests from Twilio carry ``X-Twilio-Signature``: base64 of HMAC-SHA1, keyed with
the account's auth token, over the full URL Twilio called (scheme, host, path and query)
followed by every POST parameter, sorted by name, as name and value concatenated with no
separator (:func:`twilio_signature`). :func:`verify_twilio_signature` compares in constant
time and raises :class:`~integrations.signatures.SignatureError` like our own HMAC scheme.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from integrations import phones
from integrations.signatures import SignatureError

__all__ = [
    "SandboxSmsSender",
    "SentSms",
    "SmsError",
    "SmsRejected",
    "SmsSender",
    "SmsTemporaryFailure",
    "twilio_signature",
    "verify_twilio_signature",
]

TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"


class SmsError(Exception):
    """A message that was not handed to the gateway; ``code`` says why, without personal data."""

    code = "sms_error"

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code


class SmsRejected(SmsError):
    """This message can never be sent to this number: record the failure, never retry."""


class SmsTemporaryFailure(SmsError):
    """The gateway could not take the message now: retry after ``retry_after`` seconds (or backoff)."""

    def __init__(self, code: str, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class SentSms:
    """What the gateway said when it took a message."""

    message_id: str
    status: str
    """The gateway's own word (Twilio: ``queued``, ``accepted``, ``sent``…)."""


class SmsSender(Protocol):
    @property
    def name(self) -> str:
        """The gateway's short name, recorded beside every message sent."""
        ...

    def send(self, *, to: str, text: str) -> SentSms:
        """Hand one message for ``to`` (E.164) to the gateway, or raise an :class:`SmsError`."""
        ...


def _check_number(to: str) -> str:
    try:
        e164 = phones.normalise(to)
    except phones.InvalidPhone as exc:
        raise SmsRejected("invalid_number", "the destination is not a valid phone number") from exc
    if e164 != to:
        raise SmsRejected("invalid_number", "the destination must be given in E.164")
    return e164


@dataclass(frozen=True, slots=True)
class RecordedSms:
    """One message the sandbox accepted."""

    message_id: str
    to: str
    text: str
    sent_at: datetime


class SandboxSmsSender:
    """Records messages instead of sending them: the demo's and the tests' SMS gateway."""

    name = "sandbox"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: list[RecordedSms] = []
        self._ids = itertools.count(1)

    def send(self, *, to: str, text: str) -> SentSms:
        _check_number(to)
        if not text:
            raise SmsRejected("empty_message", "refusing to send an empty message")
        with self._lock:
            message_id = f"SANDBOX{next(self._ids):010d}"
            self._sent.append(RecordedSms(message_id, to, text, datetime.now(UTC)))
        return SentSms(message_id=message_id, status="sent")

    @property
    def sent(self) -> list[RecordedSms]:
        """Every message accepted so far, oldest first (a copy)."""
        with self._lock:
            return list(self._sent)

    def to(self, number: str) -> list[str]:
        """The texts sent to one number, oldest first."""
        return [m.text for m in self.sent if m.to == number]


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(token, url + sorted name+value pairs))."""
    if not auth_token:
        raise ValueError("an auth token is needed to sign")
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_twilio_signature(
    auth_token: str | None,
    header: str | None,
    *,
    url: str,
    params: Iterable[tuple[str, str]] | Mapping[str, str],
) -> None:
    """Accept only a request Twilio signed for exactly this URL and these parameters."""
    if not auth_token:
        raise SignatureError("no Twilio auth token configured")
    if header is None or not header.strip():
        raise SignatureError("missing X-Twilio-Signature")
    if len(header) > 200:
        raise SignatureError("signature header too long")
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    expected = twilio_signature(auth_token, url, pairs)
    if not hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace")):
        raise SignatureError("X-Twilio-Signature does not match")
