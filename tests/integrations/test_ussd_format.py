"""USSD gateway format: the request's answers, and CON/END replies the gateway will deliver."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.phones import demo_number
from integrations.sms import NotGsm7
from integrations.ussd import (
    MAX_STEPS,
    MAX_TEXT,
    SCREEN_LIMIT,
    MalformedUssd,
    ScreenTooLong,
    UssdReply,
    parse_request,
    render,
    split_steps,
)

PHONE = demo_number(3)


def form(text: str | None = "", **overrides: str) -> dict[str, str]:
    base = {"sessionId": "ATUid_1", "serviceCode": "*384*1234#", "phoneNumber": PHONE}
    if text is not None:
        base["text"] = text
    return base | overrides


def test_empty_text_is_the_first_screen_with_no_answers() -> None:
    assert parse_request(form("")).steps == ()


def test_missing_text_is_the_first_screen() -> None:
    assert parse_request(form(None)).steps == ()


def test_text_is_split_on_stars_into_answers() -> None:
    assert parse_request(form("4821*1*0")).steps == ("4821", "1", "0")


def test_an_empty_answer_is_kept_as_an_empty_step() -> None:
    assert split_steps("4821**2") == ("4821", "", "2")


def test_spaces_around_answers_are_stripped() -> None:
    assert split_steps(" 4821 * 1") == ("4821", "1")


def test_request_fields_are_read() -> None:
    request = parse_request(form("1"))
    assert (request.session_id, request.service_code, request.text) == ("ATUid_1", "*384*1234#", "1")


def test_phone_number_is_normalised_to_e164() -> None:
    assert parse_request(form("", phoneNumber="0820 0000 0003")).phone_number == PHONE


@pytest.mark.parametrize("field", ["sessionId", "serviceCode", "phoneNumber"])
def test_a_request_missing_a_field_is_malformed(field: str) -> None:
    request = form("")
    del request[field]
    with pytest.raises(MalformedUssd):
        parse_request(request)


def test_a_blank_session_id_is_malformed() -> None:
    with pytest.raises(MalformedUssd):
        parse_request(form("", sessionId="  "))


def test_an_overlong_session_id_is_malformed() -> None:
    with pytest.raises(MalformedUssd):
        parse_request(form("", sessionId="s" * 101))


def test_more_than_the_maximum_answers_is_malformed() -> None:
    with pytest.raises(MalformedUssd):
        parse_request(form("*".join(["1"] * (MAX_STEPS + 1))))


def test_the_maximum_number_of_answers_is_accepted() -> None:
    assert len(parse_request(form("*".join(["1"] * MAX_STEPS))).steps) == MAX_STEPS


def test_text_longer_than_the_maximum_is_malformed() -> None:
    with pytest.raises(MalformedUssd) as caught:
        parse_request(form("1" * (MAX_TEXT + 1)))
    assert caught.value.code == "malformed_ussd"


def test_a_phone_number_that_is_not_valid_is_malformed() -> None:
    with pytest.raises(MalformedUssd):
        parse_request(form("", phoneNumber="12345"))


def test_a_continuing_screen_starts_with_con() -> None:
    assert render(UssdReply(text="1 Saldo", end=False)) == "CON 1 Saldo"


def test_a_final_screen_starts_with_end() -> None:
    assert render(UssdReply(text="Terima kasih", end=True)) == "END Terima kasih"


def test_a_reply_of_exactly_the_gateway_limit_is_rendered() -> None:
    body = render(UssdReply(text="a" * (SCREEN_LIMIT - 4), end=True))
    assert len(body) == SCREEN_LIMIT


def test_a_reply_over_the_gateway_limit_is_refused() -> None:
    with pytest.raises(ScreenTooLong) as caught:
        render(UssdReply(text="a" * (SCREEN_LIMIT - 3), end=False))
    assert caught.value.code == "screen_too_long"


def test_extension_characters_count_twice_against_the_limit() -> None:
    with pytest.raises(ScreenTooLong):
        render(UssdReply(text="a" * (SCREEN_LIMIT - 5) + "€", end=True))


def test_a_reply_outside_gsm7_is_refused() -> None:
    with pytest.raises(NotGsm7):
        render(UssdReply(text="Saldo “Rp25.000”", end=True))


@given(st.lists(st.text(alphabet="0123456789", max_size=6), min_size=1, max_size=MAX_STEPS))
def test_joined_answers_split_back_into_the_same_steps(answers: list[str]) -> None:
    text = "*".join(answers)
    if text == "":
        return
    assert split_steps(text) == tuple(answers)


@given(st.text(max_size=MAX_TEXT))
def test_any_text_parses_or_is_malformed_never_crashes(text: str) -> None:
    try:
        request = parse_request(form(text))
    except MalformedUssd:
        return
    assert len(request.steps) <= MAX_STEPS
