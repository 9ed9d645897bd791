"""Phone numbers: every local spelling is one E.164 key; masks hide the middle."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import carrier

from integrations.phones import (
    DEMO_PREFIX,
    InvalidPhone,
    demo_number,
    is_demo,
    mask,
    normalise,
)

E164 = "+6281234567890"


@pytest.mark.parametrize(
    "written",
    [
        "081234567890",
        "0812-3456-7890",
        "0812 3456 7890",
        "(0812) 3456-7890",
        "6281234567890",
        "+6281234567890",
        "+62 812 3456 7890",
        "+62-812-3456-7890",
        "  081234567890  ",
    ],
)
def test_indonesian_local_and_international_forms_normalise_to_e164(written: str) -> None:
    assert normalise(written) == E164


@pytest.mark.parametrize(
    "text",
    ["", "   ", "abc", "08123", "0812345678901234", "+62 840 1234 5678", "+999 1234"],
)
def test_text_that_is_not_a_valid_number_is_refused(text: str) -> None:
    with pytest.raises(InvalidPhone):
        normalise(text)


def test_invalid_phone_carries_its_error_code() -> None:
    with pytest.raises(InvalidPhone) as caught:
        normalise("not a phone")
    assert caught.value.code == "invalid_phone"


def test_absurdly_long_input_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidPhone):
        normalise("0812" + "3" * 100)


def test_a_foreign_number_in_international_form_keeps_its_country() -> None:
    assert normalise("+60 12-345 6789") == "+60123456789"


def test_default_region_reads_local_numbers_of_another_country() -> None:
    assert normalise("012-345 6789", default_region="MY") == "+60123456789"


def test_mask_keeps_country_code_first_three_and_last_four_digits() -> None:
    assert mask("+6281234567890") == "+62812****7890"


def test_mask_hides_as_many_digits_as_it_removes() -> None:
    assert mask("+628123455678") == "+62812***5678"


def test_mask_of_a_nine_digit_landline_still_hides_the_middle() -> None:
    assert mask("+62215551234") == "+62215**1234"


def test_mask_of_a_number_under_nine_digits_keeps_only_the_last_two() -> None:
    assert mask("+6261123456") == "+62******56"


def test_mask_refuses_a_number_that_is_not_e164() -> None:
    with pytest.raises(InvalidPhone):
        mask("081234567890")


def test_mask_refuses_garbage_after_the_plus() -> None:
    with pytest.raises(InvalidPhone):
        mask("+abc")


@given(st.integers(min_value=0, max_value=99_999))
def test_demo_numbers_are_valid_e164_in_the_demo_range(index: int) -> None:
    number = demo_number(index)
    assert normalise(number) == number
    assert is_demo(number)


@given(st.integers(min_value=0, max_value=99_999))
def test_demo_numbers_belong_to_no_operator(index: int) -> None:
    parsed = phonenumbers.parse(demo_number(index), None)
    assert carrier.name_for_number(parsed, "en") == ""


def test_demo_range_is_a_mobile_range() -> None:
    parsed = phonenumbers.parse(DEMO_PREFIX + "000001", None)
    assert phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE


def test_real_operator_numbers_are_not_demo_numbers() -> None:
    assert not is_demo("+6281234567890")


def test_demo_number_index_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidPhone):
        demo_number(100_000)


@given(st.integers(min_value=100_000_000, max_value=999_999_999))
def test_mask_never_shows_the_middle_digits(middle: int) -> None:
    number = normalise(f"0812{middle}")
    masked = mask(number)
    national = number[3:]
    assert masked == "+62" + national[:3] + "*" * (len(national) - 7) + national[-4:]
