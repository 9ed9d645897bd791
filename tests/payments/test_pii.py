"""Personal data at rest: AES-GCM tokens, key rotation, tampering, blind indexes."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments.pii import (
    DecryptionFailed,
    InvalidKey,
    Keyring,
    blind_index,
    blind_indexes,
    decrypt,
    encrypt,
    generate_key,
    index_key_id,
    needs_reencrypt,
    needs_reindex,
    reencrypt,
    token_key_id,
)

OLD = generate_key()
NEW = generate_key()
PHONE = "+6282000000001"
NIK = "3173014107900001"


def ring(*keys: str) -> Keyring:
    return Keyring.from_string(",".join(keys))


def test_a_generated_key_is_32_bytes_of_urlsafe_base64() -> None:
    assert len(base64.urlsafe_b64decode(generate_key())) == 32


def test_generated_keys_differ() -> None:
    assert generate_key() != generate_key()


@given(st.text(max_size=200))
@settings(max_examples=50)
def test_encrypting_then_decrypting_gives_back_the_text(plaintext: str) -> None:
    keyring = ring(OLD)
    assert decrypt(keyring, encrypt(keyring, plaintext)) == plaintext


def test_ciphertext_contains_no_plaintext() -> None:
    token = encrypt(ring(OLD), PHONE)
    assert PHONE not in token
    assert "82000000001" not in token


def test_the_same_text_encrypts_differently_each_time() -> None:
    keyring = ring(OLD)
    assert encrypt(keyring, PHONE) != encrypt(keyring, PHONE)


def test_old_ciphertext_decrypts_after_a_new_key_is_prepended() -> None:
    token = encrypt(ring(OLD), NIK)
    assert decrypt(ring(NEW, OLD), token) == NIK


def test_after_rotation_the_new_key_encrypts() -> None:
    rotated = ring(NEW, OLD)
    token = encrypt(rotated, NIK)
    assert token_key_id(token) == rotated.primary_key_id == ring(NEW).primary_key_id


def test_after_rotation_old_tokens_need_reencrypting() -> None:
    token = encrypt(ring(OLD), NIK)
    assert needs_reencrypt(ring(NEW, OLD), token)


def test_tokens_from_the_primary_key_need_no_reencrypting() -> None:
    rotated = ring(NEW, OLD)
    assert not needs_reencrypt(rotated, encrypt(rotated, NIK))


def test_a_token_whose_key_was_dropped_is_refused() -> None:
    token = encrypt(ring(OLD), NIK)
    with pytest.raises(DecryptionFailed) as caught:
        decrypt(ring(NEW), token)
    assert caught.value.code == "decryption_failed"


def test_a_tampered_ciphertext_is_refused() -> None:
    keyring = ring(OLD)
    token = encrypt(keyring, PHONE)
    head, payload = token.rsplit(".", 1)
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    with pytest.raises(DecryptionFailed):
        decrypt(keyring, f"{head}.{flipped}")


def test_a_token_relabelled_to_another_key_is_refused() -> None:
    keyring = ring(NEW, OLD)
    token = encrypt(keyring, PHONE)
    version, _, payload = token.split(".")
    with pytest.raises(DecryptionFailed):
        decrypt(keyring, f"{version}.{keyring.key_ids[1]}.{payload}")


def test_a_token_moved_to_another_field_is_refused() -> None:
    keyring = ring(OLD)
    token = encrypt(keyring, PHONE, context="homeworker.phone")
    with pytest.raises(DecryptionFailed):
        decrypt(keyring, token, context="homeworker.wallet")


def test_a_token_opens_in_its_own_field() -> None:
    keyring = ring(OLD)
    token = encrypt(keyring, PHONE, context="homeworker.phone")
    assert decrypt(keyring, token, context="homeworker.phone") == PHONE


@pytest.mark.parametrize("token", ["", "garbage", "pii1.abc", "pii2.x.y", "pii1.k.!!!!", "pii1.k.AAAA"])
def test_a_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(DecryptionFailed):
        decrypt(ring(OLD), token)


def test_the_blind_index_is_stable_for_the_same_value() -> None:
    keyring = ring(OLD)
    assert blind_index(keyring, PHONE, purpose="phone") == blind_index(keyring, PHONE, purpose="phone")


def test_an_index_made_before_prepending_a_new_key_is_still_looked_up() -> None:
    before = blind_index(ring(OLD), PHONE, purpose="phone")
    assert before in blind_indexes(ring(NEW, OLD), PHONE, purpose="phone")


def test_the_blind_index_is_made_with_the_primary_key_and_says_so() -> None:
    rotated = ring(NEW, OLD)
    index = blind_index(rotated, PHONE, purpose="phone")
    assert index_key_id(index) == rotated.primary_key_id == ring(NEW).primary_key_id


def test_the_lookup_indexes_are_one_per_key_primary_first() -> None:
    indexes = blind_indexes(ring(NEW, OLD), PHONE, purpose="phone")
    assert indexes == (
        blind_index(ring(NEW), PHONE, purpose="phone"),
        blind_index(ring(OLD), PHONE, purpose="phone"),
    )


def test_only_an_older_keys_index_needs_reindexing() -> None:
    rotated = ring(NEW, OLD)
    assert needs_reindex(rotated, blind_index(ring(OLD), PHONE, purpose="phone"))
    assert not needs_reindex(rotated, blind_index(rotated, PHONE, purpose="phone"))


def test_reencrypt_seals_an_old_token_with_the_primary_key_in_its_context() -> None:
    old = encrypt(ring(OLD), PHONE, context="homeworker.phone")
    fresh = reencrypt(ring(NEW, OLD), old, context="homeworker.phone")
    assert decrypt(ring(NEW), fresh, context="homeworker.phone") == PHONE


def test_reencrypt_leaves_a_current_token_as_it_is() -> None:
    current = encrypt(ring(NEW, OLD), PHONE, context="homeworker.phone")
    assert reencrypt(ring(NEW, OLD), current, context="homeworker.phone") == current


def test_reencrypt_refuses_a_token_of_another_field() -> None:
    old = encrypt(ring(OLD), PHONE, context="homeworker.phone")
    with pytest.raises(DecryptionFailed):
        reencrypt(ring(NEW, OLD), old, context="homeworker.wallet")


def test_the_blind_index_differs_by_purpose() -> None:
    keyring = ring(OLD)
    assert blind_index(keyring, NIK, purpose="nik") != blind_index(keyring, NIK, purpose="phone")


def test_the_blind_index_differs_by_value() -> None:
    keyring = ring(OLD)
    assert blind_index(keyring, PHONE, purpose="phone") != blind_index(
        keyring, "+6282000000002", purpose="phone"
    )


def test_the_blind_index_differs_by_key() -> None:
    assert blind_index(ring(OLD), PHONE, purpose="phone") != blind_index(ring(NEW), PHONE, purpose="phone")


def test_the_blind_index_contains_no_plaintext() -> None:
    assert "82000000001" not in blind_index(ring(OLD), PHONE, purpose="phone")


def test_a_blind_index_purpose_must_be_a_short_name() -> None:
    with pytest.raises(ValueError, match="purpose"):
        blind_index(ring(OLD), PHONE, purpose="Phone Number")


@pytest.mark.parametrize(
    "keys",
    [
        "",
        " , ",
        "short",
        "A" * 44,
        base64.urlsafe_b64encode(b"x" * 16).decode(),
        base64.urlsafe_b64encode(b"x" * 33).decode(),
        "!" * 43 + "=",
    ],
)
def test_an_unusable_key_list_is_refused_with_a_clear_error(keys: str) -> None:
    with pytest.raises(InvalidKey) as caught:
        Keyring.from_string(keys)
    assert caught.value.code == "invalid_key"


def test_the_same_key_twice_is_refused() -> None:
    with pytest.raises(InvalidKey, match="twice"):
        ring(OLD, OLD)


def test_keys_without_padding_and_with_spaces_or_trailing_commas_are_read() -> None:
    keyring = Keyring.from_string(f" {NEW.rstrip('=')} , {OLD},")
    assert keyring.key_ids == ring(NEW, OLD).key_ids


def test_a_keyring_never_shows_its_keys() -> None:
    keyring = ring(NEW, OLD)
    assert NEW not in repr(keyring)
    assert OLD not in repr(keyring)
    assert NEW.rstrip("=")[:20] not in str(keyring)
