"""HMAC signatures on webhook bodies, and shared-token checks.

Our sandbox provider's callbacks and our own SMS/USSD gateway format carry one header::

    t=<unix seconds>,v1=<hex hmac_sha256(secret, b"<t>." + body)>

The timestamp is inside the signed bytes, so an old message cannot be given a fresh
timestamp; the verifier refuses timestamps more than ``tolerance`` seconds from its own
clock, which bounds how long a captured message can be replayed. Within that window the
caller drops repeats by remembering :func:`replay_key` of each accepted message in a
store. A sender rotating its secret signs with both secrets and sends two ``v1=`` values;
either one matching is enough.

Providers that authenticate with a shared token instead of a signature (Xendit's
``x-callback-token``) are checked with :func:`verify_token`. Every comparison is
constant-time (``hmac.compare_digest``) so an attacker learns nothing from timing.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SignatureError", "replay_key", "sign", "verify", "verify_token"]

MAX_HEADER_LENGTH = 2048
_HEX_DIGITS = frozenset("0123456789abcdef")


class SignatureError(Exception):
    """A header or token that does not prove who sent the message."""

    code = "invalid_signature"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _digest(secret: bytes, body: bytes, timestamp: int) -> str:
    """The hex HMAC over the timestamp and the body, the one formula both sides use."""
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, *, timestamp: int) -> str:
    """Header value proving ``body`` came from the holder of ``secret`` at ``timestamp``."""
    if not secret:
        raise ValueError("refusing to sign with an empty secret")
    return f"t={timestamp},v1={_digest(secret, body, timestamp)}"


def _parse(header: str | None) -> tuple[int, list[str]]:
    """Split a header into its timestamp and its v1 signatures, refusing anything odd."""
    if header is None or not header.strip():
        raise SignatureError("missing signature header")
    if len(header) > MAX_HEADER_LENGTH:
        raise SignatureError("signature header too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed signature header")
        if key == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise SignatureError("malformed timestamp")
            timestamp = int(value)
        elif key == "v1":
            candidate = value.lower()
            if len(candidate) != 64 or not set(candidate) <= _HEX_DIGITS:
                raise SignatureError("malformed v1 signature")
            signatures.append(candidate)
        # Other schemes (v0, future versions) are ignored, as the format allows.
    if timestamp is None or not signatures:
        raise SignatureError("signature header needs t= and v1=")
    return timestamp, signatures


def verify(secret: bytes, header: str | None, body: bytes, *, now: int, tolerance: int = 300) -> int:
    """Return the signed timestamp if ``header`` is a fresh, valid signature of ``body``."""
    if not secret:
        raise SignatureError("no secret configured")
    timestamp, signatures = _parse(header)
    expected = _digest(secret, body, timestamp)
    matched = False
    for candidate in signatures:
        # Check every value so the time taken does not depend on which one matched.
        matched = hmac.compare_digest(expected, candidate) | matched
    if not matched:
        raise SignatureError("signature does not match")
    if timestamp < now - tolerance:
        raise SignatureError("signature timestamp too old")
    if timestamp > now + tolerance:
        raise SignatureError("signature timestamp in the future")
    return timestamp


def verify_token(expected: str, given: str | None) -> None:
    """Accept only the exact shared token, compared in constant time."""
    if not expected:
        raise SignatureError("no token configured")
    if given is None or not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureError("token does not match")


def replay_key(header: str, body: bytes) -> str:
    """A stable key for one signed message, for the caller's seen-signatures store.

    Made of what was signed (the timestamp and the body), not of the header's text: a header
    accepts any number of ``v1=`` values, so a replay padded with one more would otherwise
    pass for a new message.
    """
    timestamp, _ = _parse(header)
    return "sig:" + hashlib.sha256(f"{timestamp}.".encode() + body).hexdigest()
