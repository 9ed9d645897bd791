"""HMAC webhook signatures and shared tokens: who sent this, and is it fresh?"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from integrations.signatures import SignatureError, replay_key, sign, verify, verify_token

SECRET = b"whsec-test-secret"
OTHER_SECRET = b"whsec-next-secret"
BODY = b'{"event_id":"evt_1","status":"succeeded"}'
NOW = 1_750_000_000


def test_sign_produces_timestamp_and_hmac_of_timestamp_dot_body():
    expected = hmac.new(SECRET, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, timestamp=NOW) == f"t={NOW},v1={expected}"


def test_verify_returns_the_signed_timestamp():
    header = sign(SECRET, BODY, timestamp=NOW - 10)
    assert verify(SECRET, header, BODY, now=NOW) == NOW - 10


def test_verify_rejects_a_changed_body():
    header = sign(SECRET, BODY, timestamp=NOW)
    with pytest.raises(SignatureError):
        verify(SECRET, header, BODY.replace(b"succeeded", b"failed"), now=NOW)


def test_verify_rejects_the_wrong_secret():
    header = sign(OTHER_SECRET, BODY, timestamp=NOW)
    with pytest.raises(SignatureError):
        verify(SECRET, header, BODY, now=NOW)


def test_verify_rejects_a_timestamp_swapped_into_a_captured_signature():
    _, signature = sign(SECRET, BODY, timestamp=NOW - 3600).split(",")
    with pytest.raises(SignatureError):
        verify(SECRET, f"t={NOW},{signature}", BODY, now=NOW)


def test_verify_rejects_a_signature_older_than_the_tolerance():
    header = sign(SECRET, BODY, timestamp=NOW - 301)
    with pytest.raises(SignatureError, match="too old"):
        verify(SECRET, header, BODY, now=NOW, tolerance=300)


def test_verify_rejects_a_timestamp_too_far_in_the_future():
    header = sign(SECRET, BODY, timestamp=NOW + 301)
    with pytest.raises(SignatureError, match="future"):
        verify(SECRET, header, BODY, now=NOW, tolerance=300)


def test_verify_accepts_any_of_several_v1_values_during_secret_rotation():
    old = sign(OTHER_SECRET, BODY, timestamp=NOW)
    new = sign(SECRET, BODY, timestamp=NOW).split(",")[1]
    assert verify(SECRET, f"{old},{new}", BODY, now=NOW) == NOW


def test_verify_ignores_unknown_signature_schemes():
    header = sign(SECRET, BODY, timestamp=NOW) + ",v0=abc"
    assert verify(SECRET, header, BODY, now=NOW) == NOW


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "v1=" + "a" * 64,
        f"t={NOW}",
        f"t=abc,v1={'a' * 64}",
        f"t={NOW},v1=nothex",
        f"t={NOW},t={NOW},v1={'a' * 64}",
        f"t=-{NOW},v1={'a' * 64}",
        "t=1,v1=" + "a" * 5000,
    ],
)
def test_verify_rejects_missing_or_malformed_headers(header):
    with pytest.raises(SignatureError):
        verify(SECRET, header, BODY, now=NOW)


def test_verify_refuses_to_work_without_a_secret():
    header = sign(SECRET, BODY, timestamp=NOW)
    with pytest.raises(SignatureError):
        verify(b"", header, BODY, now=NOW)


def test_sign_refuses_an_empty_secret():
    with pytest.raises(ValueError, match="empty secret"):
        sign(b"", BODY, timestamp=NOW)


def test_signature_error_carries_the_api_error_code():
    with pytest.raises(SignatureError) as caught:
        verify(SECRET, None, BODY, now=NOW)
    assert caught.value.code == "invalid_signature"


def test_verify_token_accepts_the_exact_token():
    verify_token("xnd-callback-token", "xnd-callback-token")


@pytest.mark.parametrize("given", [None, "", "xnd-callback-toke", "XND-CALLBACK-TOKEN", "ŧoken"])
def test_verify_token_rejects_anything_else(given):
    with pytest.raises(SignatureError):
        verify_token("xnd-callback-token", given)


def test_verify_token_refuses_an_empty_expected_token():
    with pytest.raises(SignatureError):
        verify_token("", "")


def test_replay_key_is_the_same_for_the_same_header():
    header = sign(SECRET, BODY, timestamp=NOW)
    assert replay_key(header, BODY) == replay_key(header, BODY)


def test_replay_key_ignores_spacing_and_case_of_the_same_signature():
    header = sign(SECRET, BODY, timestamp=NOW)
    t_part, v_part = header.split(",")
    assert replay_key(f"{t_part}, {v_part.upper().replace('V1=', 'v1=')}", BODY) == replay_key(header, BODY)


def test_replay_key_is_the_same_for_a_replay_padded_with_more_signatures():
    header = sign(SECRET, BODY, timestamp=NOW)
    v_part = header.split(",")[1]
    padded = f"{header},{v_part},v1={'0' * 64}"
    assert verify(SECRET, padded, BODY, now=NOW) == NOW
    assert replay_key(padded, BODY) == replay_key(header, BODY)


def test_replay_key_differs_for_a_resent_message_with_a_new_timestamp():
    first = sign(SECRET, BODY, timestamp=NOW)
    second = sign(SECRET, BODY, timestamp=NOW + 1)
    assert replay_key(first, BODY) != replay_key(second, BODY)


def test_replay_key_rejects_a_malformed_header():
    with pytest.raises(SignatureError):
        replay_key("nonsense", BODY)
