"""PINs: format, guessable PINs refused, peppered Argon2 hashes, and the lockout rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from hypothesis import given
from hypothesis import strategies as st

from payments import pii
from payments.pins import (
    LOCK_DURATION,
    MAX_TRIES,
    InvalidPin,
    InvalidPinHash,
    after_failure,
    after_success,
    hash_pin,
    is_locked,
    is_trivial,
    needs_rehash,
    tries_left,
    valid_pin_format,
    verify_pin,
)

NOW = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
KEY = pii.generate_key()
KEYS = pii.Keyring.from_keys([KEY])


@pytest.mark.parametrize("pin", ["4821", "48213", "482913", "0917"])
def test_four_to_six_digits_is_a_pin(pin: str) -> None:
    assert valid_pin_format(pin)


@pytest.mark.parametrize("pin", ["", "482", "4829135", "48a1", " 4821", "4821 ", "48-21", "١٢٣٤"])
def test_anything_else_is_not_a_pin(pin: str) -> None:
    assert not valid_pin_format(pin)


@pytest.mark.parametrize("pin", ["0000", "1111", "999999", "55555"])
def test_one_digit_repeated_is_trivial(pin: str) -> None:
    assert is_trivial(pin)


@pytest.mark.parametrize("pin", ["1234", "123456", "3456", "56789", "0123"])
def test_an_ascending_run_is_trivial(pin: str) -> None:
    assert is_trivial(pin)


@pytest.mark.parametrize("pin", ["4321", "654321", "9876", "3210"])
def test_a_descending_run_is_trivial(pin: str) -> None:
    assert is_trivial(pin)


@pytest.mark.parametrize("pin", ["1212", "696969", "0101"])
def test_a_repeated_pair_is_trivial(pin: str) -> None:
    assert is_trivial(pin)


@pytest.mark.parametrize("pin", ["4821", "1235", "9870", "1122", "2580", "12312"])
def test_an_irregular_pin_is_not_trivial(pin: str) -> None:
    assert not is_trivial(pin)


def test_a_malformed_pin_is_not_called_trivial() -> None:
    assert not is_trivial("abcd")


def test_a_hashed_pin_verifies() -> None:
    assert verify_pin(pin_hash=hash_pin("4821", keyring=KEYS), pin="4821", keyring=KEYS)


def test_a_wrong_pin_does_not_verify() -> None:
    assert not verify_pin(pin_hash=hash_pin("4821", keyring=KEYS), pin="4822", keyring=KEYS)


def test_a_malformed_pin_never_verifies() -> None:
    assert not verify_pin(pin_hash=hash_pin("4821", keyring=KEYS), pin="4821 ", keyring=KEYS)


def test_the_hash_names_its_key_holds_argon2id_and_does_not_contain_the_pin() -> None:
    stored = hash_pin("482913", keyring=KEYS)
    assert stored.startswith(f"pin1.{KEYS.primary_key_id}.$argon2id$")
    assert "482913" not in stored


def test_the_argon2_hash_is_of_the_peppered_pin_so_the_table_alone_cannot_check_a_guess() -> None:
    argon2_part = hash_pin("482913", keyring=KEYS).split(".", 2)[2]
    with pytest.raises(VerifyMismatchError):
        PasswordHasher().verify(argon2_part, "482913")


def test_a_pin_hashed_under_other_keys_does_not_verify() -> None:
    other = pii.Keyring.from_keys([pii.generate_key()])
    stored = hash_pin("4821", keyring=other)
    with pytest.raises(InvalidPinHash):
        verify_pin(pin_hash=stored, pin="4821", keyring=KEYS)


def test_after_a_rotation_an_older_keys_hash_verifies_and_needs_a_rehash() -> None:
    rotated = pii.Keyring.from_keys([pii.generate_key(), KEY])
    stored = hash_pin("4821", keyring=KEYS)
    assert verify_pin(pin_hash=stored, pin="4821", keyring=rotated)
    assert needs_rehash(stored, keyring=rotated)
    assert not needs_rehash(hash_pin("4821", keyring=rotated), keyring=rotated)


def test_a_hash_from_before_peppering_verifies_and_needs_a_rehash() -> None:
    bare = PasswordHasher(time_cost=2, memory_cost=16 * 1024, parallelism=1).hash("4821")
    assert verify_pin(pin_hash=bare, pin="4821", keyring=KEYS)
    assert not verify_pin(pin_hash=bare, pin="4822", keyring=KEYS)
    assert needs_rehash(bare, keyring=KEYS)


def test_hashing_the_same_pin_twice_gives_different_hashes() -> None:
    assert hash_pin("4821", keyring=KEYS) != hash_pin("4821", keyring=KEYS)


def test_a_malformed_pin_is_refused_before_hashing() -> None:
    with pytest.raises(InvalidPin) as caught:
        hash_pin("48a1", keyring=KEYS)
    assert caught.value.code == "invalid_pin"


@pytest.mark.parametrize("corrupt", ["not-a-hash", "pin1.", "pin1.abc", f"pin1.{KEYS.primary_key_id}.nope"])
def test_a_corrupt_stored_hash_is_an_error_not_a_wrong_pin(corrupt: str) -> None:
    with pytest.raises(InvalidPinHash):
        verify_pin(pin_hash=corrupt, pin="4821", keyring=KEYS)


def test_a_hash_made_with_the_current_parameters_and_key_needs_no_rehash() -> None:
    assert not needs_rehash(hash_pin("4821", keyring=KEYS), keyring=KEYS)


def test_a_hash_made_with_other_parameters_needs_a_rehash() -> None:
    key_id, peppered = pii.pepper(KEYS, "4821", purpose="ussd_pin")
    old = f"pin1.{key_id}." + PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(peppered)
    assert needs_rehash(old, keyring=KEYS)
    assert verify_pin(pin_hash=old, pin="4821", keyring=KEYS)


def test_a_first_wrong_pin_counts_without_locking() -> None:
    state = after_failure(0, now=NOW)
    assert (state.failures, state.locked_until) == (1, None)


def test_the_third_wrong_pin_locks_for_fifteen_minutes() -> None:
    state = after_failure(MAX_TRIES - 1, now=NOW)
    assert state.locked_until == NOW + timedelta(minutes=15)


def test_a_lock_restarts_the_count_of_wrong_pins() -> None:
    assert after_failure(MAX_TRIES - 1, now=NOW).failures == 0


def test_three_wrong_pins_in_a_row_lock_the_menu() -> None:
    failures, locked = 0, None
    for _ in range(3):
        state = after_failure(failures, now=NOW)
        failures, locked = state.failures, state.locked_until
    assert locked == NOW + LOCK_DURATION


def test_a_right_pin_clears_the_count() -> None:
    assert after_success().failures == 0


def test_the_lock_holds_until_its_end() -> None:
    until = NOW + LOCK_DURATION
    assert is_locked(until, now=until - timedelta(seconds=1))


def test_the_lock_is_over_at_its_end() -> None:
    until = NOW + LOCK_DURATION
    assert not is_locked(until, now=until)


def test_no_lock_means_not_locked() -> None:
    assert not is_locked(None, now=NOW)


def test_a_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        after_failure(0, now=datetime(2026, 3, 10, 8, 0))


def test_a_negative_failure_count_is_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        after_failure(-1, now=NOW)


@pytest.mark.parametrize(("failures", "left"), [(0, 3), (1, 2), (2, 1), (3, 0), (7, 0)])
def test_tries_left_counts_down_to_zero(failures: int, left: int) -> None:
    assert tries_left(failures) == left


@given(st.integers(min_value=0, max_value=MAX_TRIES - 1))
def test_a_lock_only_ever_lasts_fifteen_minutes(failures: int) -> None:
    state = after_failure(failures, now=NOW)
    assert state.locked_until in (None, NOW + LOCK_DURATION)
