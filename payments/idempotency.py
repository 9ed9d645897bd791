"""The first responses kept for Idempotency-Key replays: sealed at rest, forgotten after a while.

``api.middleware.Idempotency`` stores the first response to each POST with an
Idempotency-Key, so that the same request sent again gets the same answer instead of
running twice. A response can carry personal data (``POST /v1/homeworkers`` answers with
her name), so the body is stored sealed with the personal-data keyring (:mod:`payments.pii`,
context ``"idempotency.body"``), never in clear. Rows written before bodies were sealed
hold the raw bytes and are replayed as they are: a sealed body always begins with
``pii1.``, a raw one (JSON, HTML, or nothing) never does.

Inside the seal, a one-character tag says how the body was turned into text: ``t`` for a
UTF-8 body kept as is (every response the API makes), ``b`` for any other bytes, in base64.

A sealed body stays readable while the key that sealed it is in ``UPAH_SECRET_KEYS``: after
a new key is put first, ``upah keys rotate`` (:mod:`payments.rotation`) seals the stored
bodies again with it, in the same context; otherwise keep the old key for the retention
(:data:`DEFAULT_RETENTION`, setting ``UPAH_IDEMPOTENCY_RETENTION_DAYS``), after which
:func:`purge` has removed every row it sealed. A body that can no longer be opened raises
:class:`pii.DecryptionFailed`; the caller must then refuse the replay, never run the request
again.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete
from sqlalchemy.orm import Session

from ledger.tables import table_of
from payments import pii
from payments.tables import IdempotencyRow

CONTEXT = "idempotency.body"
SEALED_PREFIX = f"{pii.TOKEN_VERSION}.".encode("ascii")
DEFAULT_RETENTION = timedelta(days=30)

_TEXT, _BINARY = "t", "b"
_records = table_of(IdempotencyRow)


def seal(keyring: pii.Keyring, body: bytes) -> bytes:
    """The body as stored: a ``pii1.`` token (ASCII) sealed with the keyring's newest key."""
    try:
        plain = _TEXT + body.decode("utf-8")
    except UnicodeDecodeError:
        plain = _BINARY + base64.b64encode(body).decode("ascii")
    return pii.encrypt(keyring, plain, context=CONTEXT).encode("ascii")


def is_sealed(stored: bytes) -> bool:
    return stored.startswith(SEALED_PREFIX)


def unseal(keyring: pii.Keyring, stored: bytes) -> bytes:
    """The body to replay: opened if sealed, as stored if from before bodies were sealed.

    Raises :class:`pii.DecryptionFailed` when a sealed body cannot be opened (its key has
    left the ring, or the row was altered).
    """
    if not is_sealed(stored):
        return stored
    try:
        token = stored.decode("ascii")
    except UnicodeDecodeError as exc:
        raise pii.DecryptionFailed("a sealed body is ASCII") from exc
    plain = pii.decrypt(keyring, token, context=CONTEXT)
    tag, text = plain[:1], plain[1:]
    if tag == _TEXT:
        return text.encode("utf-8")
    if tag == _BINARY:
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise pii.DecryptionFailed("a sealed binary body is not base64") from exc
    raise pii.DecryptionFailed("a sealed body has no known encoding tag")


def purge(session: Session, *, now: datetime, older_than: timedelta = DEFAULT_RETENTION) -> int:
    """Forget keys first used before ``now - older_than``; returns how many.

    The same request sent again after that runs again, as with a new key.
    """
    if older_than <= timedelta(0):
        raise ValueError("the retention must be positive: a row still in use would be forgotten")
    result = cast(
        "CursorResult[Any]", session.execute(delete(_records).where(_records.c.created_at < now - older_than))
    )
    return int(result.rowcount or 0)
