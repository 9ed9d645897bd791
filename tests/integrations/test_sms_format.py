"""SMS gateway format: GSM-7 counting and inbound command parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.phones import demo_number
from integrations.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SMS_LIMIT,
    MalformedSms,
    NotGsm7,
    command_words,
    fits_one_sms,
    gsm7_length,
    is_gsm7,
    parse_inbound,
)

SENDER = demo_number(7)

basic_text = st.text(alphabet=sorted(GSM7_BASIC), max_size=300)
gsm7_text = st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION), max_size=300)


def test_plain_indonesian_text_is_gsm7() -> None:
    assert is_gsm7("Upah: saldo Anda Rp25.000. Kirim BANTUAN untuk info.")


@pytest.mark.parametrize("char", ["’", "“", "—", "…", "😀", "\u00a0", "`"])
def test_curly_quotes_dashes_emoji_and_backtick_are_not_gsm7(char: str) -> None:
    assert not is_gsm7(f"Upah{char}")


def test_the_escape_code_itself_is_not_text() -> None:
    assert not is_gsm7("\x1b")


def test_accented_letters_of_the_basic_set_are_gsm7() -> None:
    assert is_gsm7("é è ü Ñ à")


@given(basic_text)
def test_basic_characters_count_once(text: str) -> None:
    assert gsm7_length(text) == len(text)


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_extension_characters_count_twice(char: str) -> None:
    assert gsm7_length(char) == 2


@given(gsm7_text)
def test_length_is_characters_plus_one_per_extension_character(text: str) -> None:
    assert gsm7_length(text) == len(text) + sum(ch in GSM7_EXTENSION for ch in text)


def test_length_of_non_gsm7_text_is_refused() -> None:
    with pytest.raises(NotGsm7):
        gsm7_length("Rp25.000 “lunas”")


def test_exactly_160_basic_characters_fit_one_sms() -> None:
    assert fits_one_sms("a" * SMS_LIMIT)


def test_161_basic_characters_do_not_fit_one_sms() -> None:
    assert not fits_one_sms("a" * (SMS_LIMIT + 1))


def test_extension_characters_can_push_a_160_character_text_over_the_limit() -> None:
    assert not fits_one_sms("a" * (SMS_LIMIT - 1) + "€")


def test_one_curly_quote_makes_a_short_text_not_fit() -> None:
    assert not fits_one_sms("Saldo Anda’s")


def test_inbound_form_with_from_to_text_is_parsed() -> None:
    sms = parse_inbound({"from": SENDER, "to": "98765", "text": "SALDO"})
    assert (sms.sender, sms.to, sms.text, sms.command) == (SENDER, "98765", "SALDO", "saldo")


def test_twilio_style_form_is_parsed() -> None:
    sms = parse_inbound({"From": SENDER, "To": "+15005550006", "Body": "help"})
    assert (sms.sender, sms.to, sms.command) == (SENDER, "+15005550006", "help")


def test_sender_in_local_form_is_normalised_to_e164() -> None:
    sms = parse_inbound({"from": "0820-0000-0007", "to": "98765", "text": "saldo"})
    assert sms.sender == SENDER


@pytest.mark.parametrize("text", ["Saldo!", "  saldo ", "SALDO.", "saldo?!", "'saldo'", "s.a.l.d.o"])
def test_command_is_stripped_case_folded_and_without_punctuation(text: str) -> None:
    assert parse_inbound({"from": SENDER, "to": "1", "text": text}).command == "saldo"


def test_words_after_the_command_are_kept_as_arguments() -> None:
    sms = parse_inbound({"from": SENDER, "to": "1", "text": "Tarif  ORD-17,  besok"})
    assert (sms.command, sms.args) == ("tarif", ("ord17", "besok"))


def test_empty_text_has_an_empty_command() -> None:
    assert parse_inbound({"from": SENDER, "to": "1", "text": "   "}).command == ""


def test_gateway_extra_fields_are_ignored() -> None:
    form = {"from": SENDER, "to": "1", "text": "bal", "id": "abc", "linkId": "x", "date": "2026"}
    assert parse_inbound(form).command == "bal"


@pytest.mark.parametrize("missing", ["from", "to", "text"])
def test_a_form_missing_a_field_is_malformed(missing: str) -> None:
    form = {"from": SENDER, "to": "1", "text": "saldo"}
    del form[missing]
    with pytest.raises(MalformedSms):
        parse_inbound(form)


def test_a_sender_that_is_not_a_phone_number_is_malformed() -> None:
    with pytest.raises(MalformedSms) as caught:
        parse_inbound({"from": "UPAH-INFO", "to": "1", "text": "saldo"})
    assert caught.value.code == "malformed_sms"


def test_an_overlong_inbound_text_is_malformed() -> None:
    with pytest.raises(MalformedSms):
        parse_inbound({"from": SENDER, "to": "1", "text": "saldo " * 400})


@given(st.text(max_size=200))
def test_command_words_never_contain_punctuation_or_spaces(text: str) -> None:
    for word in command_words(text):
        assert word
        assert not any(ch.isspace() for ch in word)
        assert word == word.casefold()
