"""Personal data at rest: field encryption with rotating keys, and blind indexes.

Phone numbers, wallet accounts and national ID numbers (NIK) are stored encrypted, and
looked up through a *blind index* — a keyed hash of the normalised value — so the
database can answer "which homeworker has +6281234567890?" without holding the number in
clear. Keys come from the environment (``UPAH_SECRET_KEYS``) and are passed in: this
module reads no settings and stores nothing.

**Keys.** A key is 32 random bytes, urlsafe base64 (:func:`generate_key`). A
:class:`Keyring` is built from a comma-separated list: the **first** (primary) key encrypts
and makes blind indexes, **all** decrypt and are searched. Each master key is never used
directly: HKDF-SHA256 derives from it an AES key, a key id and blind-index keys, each for
one purpose only.

**Ciphertext.** AES-256-GCM with a fresh 96-bit random nonce, in a text token
``pii1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>``. The key id says which key
decrypts it. The version, key id and an optional *context* (e.g. ``"homeworker.phone"``)
are authenticated as associated data, so a token cannot be moved to another column or
relabelled to another key without failing to decrypt. A tampered token is refused.

**Blind index.** HMAC-SHA256 of the value, keyed by a key derived from a master key and
from a *purpose* (``"phone"``, ``"nik"``), so indexes of different fields cannot be joined.
New rows are indexed with the primary key (:func:`blind_index`); a lookup must match an
index made by *any* key of the ring (:func:`blind_indexes`, one per key, primary first,
for ``IN``), because rows written before a rotation keep their older index until they are
rewritten. An index is prefixed with the id of the key that made it (``<key id>.<digest>``),
so such rows can be found. Callers normalise the value first (E.164 for phones, 16 digits
for a NIK): the index is of exact bytes.

**Rotation**, with no downtime:

1. Put a new key first in ``UPAH_SECRET_KEYS`` (``NEW,OLD``) and restart every process
   (API, workers, beat). New values are sealed and indexed with NEW; rows sealed or
   indexed with OLD still decrypt and are still found, since every key is searched. (If
   processes restart one by one, first add NEW *last* everywhere, ``OLD,NEW``, then move it
   first: no process then meets a value sealed with a key it does not have.)
2. Run ``upah keys rotate``: it re-seals every field and recomputes every blind index not
   yet made with the primary key (:func:`needs_reencrypt`, :func:`needs_reindex`), in small
   transactions; it can be stopped and run again. ``upah keys status`` counts what is left.
3. Drop OLD from ``UPAH_SECRET_KEYS`` and restart. USSD PINs are the exception: their
   hashes are peppered with a key (:func:`pepper`) and can be remade only from the PIN
   itself, at her next right PIN; a PIN still made with OLD must then be reset.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from payments.errors import PaymentsError

KEY_BYTES = 32
NONCE_BYTES = 12
TOKEN_VERSION = "pii1"  # noqa: S105 - a format tag, not a secret

_KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{43}=?")
_PURPOSE = re.compile(r"[a-z][a-z0-9_.]{0,63}")


class InvalidKey(PaymentsError):
    """A key or key list that cannot be used: wrong encoding or length, or none at all."""

    code = "invalid_key"


class DecryptionFailed(PaymentsError):
    """A token that is malformed, tampered with, or sealed by a key not in the ring."""

    code = "decryption_failed"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)


def _derive(master: bytes, info: str, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info.encode("ascii")).derive(master)


def generate_key() -> str:
    """A new random key in the format :class:`Keyring` reads (urlsafe base64, 32 bytes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


@dataclass(frozen=True, slots=True)
class _Key:
    key_id: str
    aead: AESGCM = field(repr=False)
    index_master: bytes = field(repr=False)


def _load_key(text: str, position: int) -> _Key:
    if not _KEY_TEXT.fullmatch(text):
        raise InvalidKey(
            f"key #{position} is not 32 bytes of urlsafe base64 (44 characters); make one with generate_key()"
        )
    try:
        master = _unb64(text.rstrip("="))
    except (binascii.Error, ValueError) as exc:
        raise InvalidKey(f"key #{position} is not valid base64") from exc
    if len(master) != KEY_BYTES:
        raise InvalidKey(f"key #{position} decodes to {len(master)} bytes, not {KEY_BYTES}")
    return _Key(
        key_id=_b64(_derive(master, "upah/pii/key-id/v1", 6)),
        aead=AESGCM(_derive(master, "upah/pii/encrypt/v1")),
        index_master=_derive(master, "upah/pii/blind-index/v1"),
    )


@dataclass(frozen=True, slots=True)
class Keyring:
    """Keys for personal data: the first encrypts and indexes, all decrypt and are searched."""

    _keys: tuple[_Key, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self._keys:
            raise InvalidKey("a keyring needs at least one key")
        ids = [key.key_id for key in self._keys]
        if len(set(ids)) != len(ids):
            raise InvalidKey("the same key appears twice in the keyring")

    @classmethod
    def from_string(cls, text: str) -> Keyring:
        """Build from ``UPAH_SECRET_KEYS``: comma-separated, newest first; blanks ignored."""
        if not isinstance(text, str):
            raise InvalidKey("keys must be given as a comma-separated string")
        parts = [part.strip() for part in text.split(",") if part.strip()]
        return cls.from_keys(parts)

    @classmethod
    def from_keys(cls, keys: list[str] | tuple[str, ...]) -> Keyring:
        return cls(tuple(_load_key(key, i) for i, key in enumerate(keys, start=1)))

    @property
    def primary_key_id(self) -> str:
        """The id of the key that encrypts."""
        return self._keys[0].key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(key.key_id for key in self._keys)

    def _by_id(self, key_id: str) -> _Key | None:
        return next((key for key in self._keys if key.key_id == key_id), None)

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids!r})"


def _aad(key_id: str, context: str) -> bytes:
    return f"{TOKEN_VERSION}.{key_id}.{context}".encode()


def encrypt(keyring: Keyring, plaintext: str, *, context: str = "") -> str:
    """Seal a personal-data field with the newest key; same text, different token each time."""
    key = keyring._keys[0]
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = key.aead.encrypt(nonce, plaintext.encode("utf-8"), _aad(key.key_id, context))
    return f"{TOKEN_VERSION}.{key.key_id}.{_b64(nonce + sealed)}"


def _split(token: str) -> tuple[str, bytes]:
    if not isinstance(token, str):
        raise DecryptionFailed("a token is a string")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        raise DecryptionFailed(f"not a {TOKEN_VERSION} token")
    try:
        payload = _unb64(parts[2])
    except (binascii.Error, ValueError) as exc:
        raise DecryptionFailed("token payload is not base64") from exc
    if len(payload) < NONCE_BYTES + 16:
        raise DecryptionFailed("token is too short")
    return parts[1], payload


def token_key_id(token: str) -> str:
    """Which key sealed a token, without decrypting it."""
    return _split(token)[0]


def decrypt(keyring: Keyring, token: str, *, context: str = "") -> str:
    """Open a token with whichever key of the ring sealed it; refuse anything tampered."""
    key_id, payload = _split(token)
    key = keyring._by_id(key_id)
    if key is None:
        raise DecryptionFailed("the token was sealed by a key that is not in the keyring")
    nonce, sealed = payload[:NONCE_BYTES], payload[NONCE_BYTES:]
    try:
        plain = key.aead.decrypt(nonce, sealed, _aad(key_id, context))
    except InvalidTag as exc:
        raise DecryptionFailed("the token has been altered or belongs elsewhere") from exc
    return plain.decode("utf-8")


def needs_reencrypt(keyring: Keyring, token: str) -> bool:
    """True for a token sealed by an older key: a rotation job should re-encrypt it."""
    return token_key_id(token) != keyring.primary_key_id


def pepper(keyring: Keyring, secret: str, *, purpose: str, key_id: str | None = None) -> tuple[str, bytes]:
    """A keyed hash of a short secret (a PIN) to stretch instead of the secret itself.

    With at most a million PINs, a stolen table of stretched PINs falls to guessing in
    hours; peppered first with a key that lives outside the database, it gives nothing
    without the key. Made with the key ``key_id`` (the primary key by default); returns that
    key's id (to store beside the hash) and the digest. A key id not in the ring raises
    :class:`InvalidKey`.
    """
    if not _PURPOSE.fullmatch(purpose):
        raise ValueError("purpose is a short lower-case name such as 'ussd_pin'")
    key = keyring._keys[0] if key_id is None else keyring._by_id(key_id)
    if key is None:
        raise InvalidKey("the key that made this value is no longer in UPAH_SECRET_KEYS")
    purpose_key = hmac.new(key.index_master, f"pepper/{purpose}".encode("ascii"), hashlib.sha256).digest()
    return key.key_id, hmac.new(purpose_key, secret.encode("utf-8"), hashlib.sha256).digest()


def _index(key: _Key, value: str, purpose: str) -> str:
    purpose_key = hmac.new(key.index_master, purpose.encode("ascii"), hashlib.sha256).digest()
    digest = hmac.new(purpose_key, value.encode("utf-8"), hashlib.sha256).digest()
    return f"{key.key_id}.{_b64(digest)}"


def _check_purpose(purpose: str) -> None:
    if not _PURPOSE.fullmatch(purpose):
        raise ValueError("purpose is a short lower-case name such as 'phone' or 'nik'")


def blind_index(keyring: Keyring, value: str, *, purpose: str) -> str:
    """Keyed hash for equality lookups, made with the primary key: the one to store."""
    _check_purpose(purpose)
    return _index(keyring._keys[0], value, purpose)


def blind_indexes(keyring: Keyring, value: str, *, purpose: str) -> tuple[str, ...]:
    """The value's index under every key of the ring, primary first: the ones to look up with
    (``WHERE phone_index IN (...)``), since a row keeps its index until it is rewritten."""
    _check_purpose(purpose)
    return tuple(_index(key, value, purpose) for key in keyring._keys)


def index_key_id(index: str) -> str:
    """Which key made a blind index."""
    return index.partition(".")[0]


def needs_reindex(keyring: Keyring, index: str) -> bool:
    """True for an index made by an older key: a rotation job should recompute it."""
    return index_key_id(index) != keyring.primary_key_id


def reencrypt(keyring: Keyring, token: str, *, context: str = "") -> str:
    """The token sealed again with the primary key, in the same context; a token already
    sealed with it is returned as it is. Raises :class:`DecryptionFailed` as :func:`decrypt`."""
    if not needs_reencrypt(keyring, token):
        return token
    return encrypt(keyring, decrypt(keyring, token, context=context), context=context)
