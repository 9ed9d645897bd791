"""USSD PINs: format, guessability, hashing and lockout.

A homeworker's phone is often shared with the household, so her balance is shown on USSD
only after a PIN of 4 to 6 digits. A PIN that a family member would guess first is
refused when it is set: every digit the same (``0000``), an ascending or descending run
(``1234``, ``4321``, ``123456``), or a two-digit pair repeated (``1212``).

PINs are stored as Argon2id hashes (argon2-cffi). Parameters are moderate —
16 MiB, 2 passes, 1 lane, about 20 ms of one core on the standard machine — because a
check happens once per USSD session, on a 2-core server, inside a gateway's 15-second
budget. With at most a million PINs no hash makes offline guessing slow; what protects a
PIN is the lockout below and keeping the hashes (and the database) private.

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

from payments.errors import PaymentsError, ValidationFailed

MIN_LENGTH = 4
MAX_LENGTH = 6
MAX_TRIES = 3
LOCK_DURATION = timedelta(minutes=15)

TIME_COST = 2
MEMORY_COST_KIB = 16 * 1024
PARALLELISM = 1

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


def hash_pin(pin: str) -> str:
    """Hash a well-formed PIN with Argon2id; refuse a malformed one before spending CPU."""
    if not valid_pin_format(pin):
        raise InvalidPin("a PIN is 4 to 6 digits")
    with _hashing:
        return _hasher().hash(pin)


def verify_pin(*, pin_hash: str, pin: str) -> bool:
    """True if ``pin`` matches the stored hash; a malformed PIN is simply wrong."""
    if not valid_pin_format(pin):
        return False
    try:
        with _hashing:
            return _hasher().verify(pin_hash, pin)
    except VerifyMismatchError:
        return False
    except (InvalidHashError, VerificationError) as exc:
        raise InvalidPinHash("the stored PIN hash is not a valid Argon2 hash") from exc


def needs_rehash(pin_hash: str) -> bool:
    """True if a hash was made with other parameters: rehash after the next right PIN."""
    return _hasher().check_needs_rehash(pin_hash)


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
