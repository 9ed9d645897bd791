"""USSD PINs: format, guessability, hashing and lockout.

A homeworker's phone is often shared with the household, so her balance is shown on USSD
only after a PIN of 4 to 6 digits. A PIN that a family member would guess first is
refused when it is set: every digit the same (``0000``), an ascending or descending run
(``1234``, ``4321``, ``123456``), or a two-digit pair repeated (``1212``).

PINs are stored as Argon2id hashes (argon2-cffi) of the PIN *peppered* first: a keyed
hash with a key from ``UPAH_SECRET_KEYS`` (:func:`payments.pii.pepper`), which lives
outside the database. With at most a million PINs no stretching makes offline guessing
slow — a stolen table of plain Argon2 hashes falls in hours — and many people use the same
digits for their bank card or mobile-money wallet; without the key the table gives
nothing. Argon2's parameters are moderate — 16 MiB, 2 passes, 1 lane, about 20 ms of one
core on the standard machine — because a check happens once per USSD session, on a 2-core
server, inside a gateway's 15-second budget. Online, the lockout below protects a PIN.

A stored hash reads ``pin1.<key id>.<Argon2 hash>``. After a key rotation (a new key put
first), a PIN made with the older key still verifies and is rehashed with the new one at
her next right PIN (:func:`needs_rehash`); so is a hash from before peppering (a bare
Argon2 hash). Retiring a key makes the PINs still made with it unusable until reset.

Lockout, as a pure rule: the third wrong PIN in a row locks the menu for 15 minutes
(:func:`after_failure`) and starts a fresh count of three; a right PIN resets the count
(:func:`after_success`).
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from payments import pii
from payments.errors import PaymentsError, ValidationFailed

MIN_LENGTH = 4
MAX_LENGTH = 6
MAX_TRIES = 3
LOCK_DURATION = timedelta(minutes=15)

TIME_COST = 2
MEMORY_COST_KIB = 16 * 1024
PARALLELISM = 1

FORMAT = "pin1"
PEPPER_PURPOSE = "ussd_pin"

_PIN = re.compile(rf"[0-9]{{{MIN_LENGTH},{MAX_LENGTH}}}")

HASHING_SLOTS = max(1, os.cpu_count() or 1)
_hashing = threading.BoundedSemaphore(HASHING_SLOTS)
"""Argon2 runs in request threads (it releases the GIL). Dozens of them hashing at once on a
2-core server only share the cores, each with its own 16 MiB, and starve the cheap screens
(first screen, balance) of CPU; at most one hash per core runs, the rest wait their turn."""


class InvalidPin(ValidationFailed):
    """A PIN that is not 4–6 ASCII digits."""

    code = "invalid_pin"


class InvalidPinHash(PaymentsError):
    """A stored hash that is not an Argon2 hash: corrupt data, never a wrong PIN."""

    code = "invalid_pin_hash"


def _hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB, parallelism=PARALLELISM)


def valid_pin_format(pin: str) -> bool:
    """True for 4 to 6 ASCII digits (not other scripts' digits, no spaces)."""
    return isinstance(pin, str) and _PIN.fullmatch(pin) is not None


def is_trivial(pin: str) -> bool:
    """True for PINs guessed first: one digit repeated, a run up or down, a pair repeated."""
    if not valid_pin_format(pin):
        return False
    digits = [int(ch) for ch in pin]
    steps = {b - a for a, b in itertools.pairwise(digits)}
    if steps <= {0} or steps == {1} or steps == {-1}:
        return True
    return len(pin) % 2 == 0 and pin == pin[:2] * (len(pin) // 2)


def hash_pin(pin: str, *, keyring: pii.Keyring) -> str:
    """Pepper a well-formed PIN with the primary key and hash it with Argon2id; refuse a
    malformed one before spending CPU."""
    if not valid_pin_format(pin):
        raise InvalidPin("a PIN is 4 to 6 digits")
    key_id, peppered = pii.pepper(keyring, pin, purpose=PEPPER_PURPOSE)
    with _hashing:
        return f"{FORMAT}.{key_id}.{_hasher().hash(peppered)}"


def verify_pin(*, pin_hash: str, pin: str, keyring: pii.Keyring) -> bool:
    """True if ``pin`` matches the stored hash; a malformed PIN is simply wrong."""
    if not valid_pin_format(pin):
        return False
    key_id, encoded = _parts(pin_hash)
    secret: str | bytes = pin
    if key_id is not None:
        try:
            secret = pii.pepper(keyring, pin, purpose=PEPPER_PURPOSE, key_id=key_id)[1]
        except pii.InvalidKey as exc:
            raise InvalidPinHash("the stored PIN hash was made with a key no longer configured") from exc
    try:
        with _hashing:
            return _hasher().verify(encoded, secret)
    except VerifyMismatchError:
        return False
    except (InvalidHashError, VerificationError) as exc:
        raise InvalidPinHash("the stored PIN hash is not a valid Argon2 hash") from exc


def needs_rehash(pin_hash: str, *, keyring: pii.Keyring) -> bool:
    """True if a hash was made without pepper, with an older key or with other parameters:
    rehash after the next right PIN."""
    key_id, encoded = _parts(pin_hash)
    if key_id != keyring.primary_key_id:
        return True
    try:
        return _hasher().check_needs_rehash(encoded)
    except (InvalidHashError, ValueError):
        return True


def _parts(pin_hash: str) -> tuple[str | None, str]:
    """(key id, Argon2 hash) of a stored hash; the key id is None for a hash from before
    peppering (a bare Argon2 hash)."""
    prefix, _, rest = pin_hash.partition(".")
    if prefix != FORMAT:
        return None, pin_hash
    key_id, _, encoded = rest.partition(".")
    if not key_id or not encoded:
        raise InvalidPinHash("the stored PIN hash is malformed")
    return key_id, encoded


@dataclass(frozen=True, slots=True, kw_only=True)
class Lockout:
    """Consecutive wrong PINs so far, and until when the menu is locked (if it is)."""

    failures: int
    locked_until: datetime | None


def _check_aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now


def after_failure(failures: int, *, now: datetime) -> Lockout:
    """Count one more wrong PIN; the third in a row locks for 15 minutes and restarts the count."""
    _check_aware(now)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise ValueError("failures must be a non-negative int")
    count = failures + 1
    if count >= MAX_TRIES:
        return Lockout(failures=0, locked_until=now + LOCK_DURATION)
    return Lockout(failures=count, locked_until=None)


def after_success() -> Lockout:
    """A right PIN clears the count of wrong ones."""
    return Lockout(failures=0, locked_until=None)


def is_locked(locked_until: datetime | None, *, now: datetime) -> bool:
    """True while a lock set by :func:`after_failure` is still running."""
    _check_aware(now)
    return locked_until is not None and now < locked_until


def tries_left(failures: int) -> int:
    """Wrong PINs still allowed before the lock (never below zero)."""
    return max(MAX_TRIES - failures, 0)
