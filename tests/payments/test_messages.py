"""The message catalogue: complete in both languages, GSM-7 only, one screen or SMS each."""

from __future__ import annotations

import string
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.sms import SMS_LIMIT, gsm7_length, is_gsm7
from integrations.ussd import SCREEN_LIMIT
from payments.messages import (
    CATALOGUE,
    LIMIT,
    FailureReason,
    Language,
    MessageDoesNotFit,
    MessageKey,
    format_date,
    format_number,
    format_period,
    format_rate,
    format_rupiah,
    join_lines,
    order_assigned_notice,
    payout_failed_notice,
    payout_line,
    payout_succeeded_notice,
    pin_locked_notice,
    plain,
    shorten,
    status_word,
    text,
    unit_name,
    work_line,
)
from payments.payout_states import PayoutStatus
from payments.rates import Unit

HUGE = 9_999_999_999
"""Rp9.999.999.999: far above any homeworker's balance, so every real amount fits."""

LONG_PARAMS: dict[str, str | int] = {
    "owed": format_rupiah(HUGE),
    "on_hold": format_rupiah(HUGE),
    "paid": format_rupiah(HUGE),
    "amount": format_rupiah(HUGE),
    "tries": 2,
    "minutes": 15,
    "reference": "DSP-2026-000000123456",
    "lines": "",
    "count": 99,
    "date": "28/12",
    "status": "dibatalkan",
    "order_ref": "ORD-TANGERANG-2026-0001",
    "product": "Sandal jepit karet anak motif bunga “premium” – ekspor",
    "rate": "Rp999.999,9999",
    "unit": "pasang",
    "pieces_left": 999_999,
    "deadline": "31/12",
    "pieces": 9_999_999,
    "period": "01/12-31/12",
    "reason": "dompet Anda sudah mencapai batas saldo",
    "quantity": 999_999,
    "hourly": "Rp999.999",
    "benchmark": "Rp999.999",
}

KEYS_AND_LANGUAGES = [(key, lang) for key in MessageKey for lang in Language]


def params_for(key: MessageKey, lang: Language) -> dict[str, str | int]:
    names = {field for _, field, _, _ in string.Formatter().parse(CATALOGUE[key][lang]) if field}
    return {name: LONG_PARAMS[name] for name in names}


def test_every_key_has_both_languages() -> None:
    assert all(set(CATALOGUE[key]) == set(Language) for key in MessageKey)


def test_the_catalogue_has_no_entry_without_a_key() -> None:
    assert set(CATALOGUE) == set(MessageKey)


def test_both_languages_take_the_same_parameters() -> None:
    for key in MessageKey:
        assert params_for(key, Language.ID).keys() == params_for(key, Language.EN).keys(), key


def test_language_values_are_lower_case_codes() -> None:
    assert [lang.value for lang in Language] == ["id", "en"]


@pytest.mark.parametrize(("key", "lang"), KEYS_AND_LANGUAGES)
def test_every_message_with_long_parameters_is_gsm7(key: MessageKey, lang: Language) -> None:
    assert is_gsm7(text(key, lang, **params_for(key, lang)))


@pytest.mark.parametrize(("key", "lang"), KEYS_AND_LANGUAGES)
def test_every_message_with_long_parameters_fits_one_sms_or_screen(key: MessageKey, lang: Language) -> None:
    message = text(key, lang, **params_for(key, lang))
    assert gsm7_length(message) <= LIMIT == SMS_LIMIT
    assert len("CON " + message) <= SCREEN_LIMIT


def test_a_long_product_name_is_shortened_by_the_catalogue() -> None:
    line = text(MessageKey.WORK_LINE, Language.ID, **params_for(MessageKey.WORK_LINE, Language.ID))
    assert "Sandal jepit ka." in line
    assert "premium" not in line


def test_a_message_over_the_limit_is_refused_not_cut() -> None:
    with pytest.raises(MessageDoesNotFit):
        text(MessageKey.SMS_HISTORY, Language.ID, lines="x" * 200)


def test_parameters_cannot_break_the_layout_with_newlines() -> None:
    message = text(MessageKey.SMS_HISTORY, Language.EN, lines="a\nb")
    assert message.count("\n") == 1


@pytest.mark.parametrize(
    ("amount", "shown"),
    [(0, "Rp0"), (500, "Rp500"), (25_000, "Rp25.000"), (1_250_000, "Rp1.250.000"), (-25_000, "-Rp25.000")],
)
def test_rupiah_use_dot_thousands_and_no_decimals(amount: int, shown: str) -> None:
    assert format_rupiah(amount) == shown


def test_rupiah_formatting_takes_only_int_amounts() -> None:
    with pytest.raises(TypeError):
        format_rupiah(Decimal(25_000))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "shown"),
    [
        (Decimal(1250), "Rp1.250"),
        (Decimal("12.5"), "Rp12,5"),
        (Decimal("12.50"), "Rp12,5"),
        (Decimal("0.0001"), "Rp0,0001"),
        (Decimal("1000.25"), "Rp1.000,25"),
    ],
)
def test_rates_show_exactly_with_a_decimal_comma(rate: Decimal, shown: str) -> None:
    assert format_rate(rate) == shown


def test_counts_use_dot_thousands() -> None:
    assert format_number(1_250) == "1.250"


def test_dates_are_day_and_month() -> None:
    assert format_date(date(2026, 3, 5)) == "05/03"


def test_a_period_shows_both_ends() -> None:
    assert format_period(date(2026, 3, 1), date(2026, 3, 15)) == "01/03-15/03"


def test_a_one_day_period_shows_one_date() -> None:
    assert format_period(date(2026, 3, 1), date(2026, 3, 1)) == "01/03"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Sandal “Bunga” – anak", 'Sandal "Bunga" - anak'),
        ("Kain’s", "Kain's"),
        ("Café crème", "Cafe creme"),
        ("Tas [besar] {x} ~ ^ |", "Tas (besar) (x) - /"),
        ("Selimut 😀 bayi", "Selimut bayi"),
        ("a\nb\tc", "a b c"),
    ],
)
def test_plain_reduces_text_to_safe_gsm7_ascii(raw: str, clean: str) -> None:
    assert plain(raw) == clean


@given(st.text(max_size=100))
def test_plain_output_is_always_gsm7_on_one_line(raw: str) -> None:
    cleaned = plain(raw)
    assert is_gsm7(cleaned)
    assert "\n" not in cleaned
    assert gsm7_length(cleaned) == len(cleaned)


def test_shorten_marks_a_cut_with_a_dot() -> None:
    assert shorten("Selimut bayi motif", 10) == "Selimut b."


def test_shorten_leaves_short_text_alone() -> None:
    assert shorten("Selimut", 10) == "Selimut"


@given(st.text(max_size=60), st.integers(min_value=2, max_value=30))
def test_shorten_never_exceeds_its_width(value: str, width: int) -> None:
    assert len(shorten(value, width)) <= width


def test_join_lines_keeps_what_fits_and_counts_the_rest() -> None:
    joined = join_lines(["x" * 50] * 5, head="Pekerjaan:", tail="0 Kembali", lang=Language.ID)
    assert joined.endswith("+3 lagi\n0 Kembali")
    assert len(joined) <= LIMIT


def test_join_lines_keeps_every_line_when_they_fit() -> None:
    assert join_lines(["a", "b"], head="H", lang=Language.EN) == "H\na\nb"


@pytest.mark.parametrize("status", list(PayoutStatus))
def test_every_payout_status_has_words_in_both_languages(status: PayoutStatus) -> None:
    assert status_word(status, Language.ID)
    assert status_word(status, Language.EN)


def test_a_payout_in_flight_reads_as_processing() -> None:
    assert status_word(PayoutStatus.UNKNOWN, Language.ID) == "diproses"


@pytest.mark.parametrize("unit", list(Unit))
def test_every_unit_has_a_name_in_both_languages(unit: Unit) -> None:
    assert unit_name(unit, Language.ID)
    assert unit_name(unit, Language.EN)


def test_a_payout_line_reads_date_amount_status() -> None:
    line = payout_line(day=date(2026, 3, 5), amount=250_000, status=PayoutStatus.SUCCEEDED, lang=Language.ID)
    assert line == "05/03 Rp250.000 berhasil"


def test_a_work_line_reads_ref_product_rate_left_and_deadline() -> None:
    line = work_line(
        order_ref="ORD-17",
        product="Bulu kok",
        rate=Decimal(2000),
        unit=Unit.SLOP,
        pieces_left=240,
        deadline=date(2026, 3, 20),
        lang=Language.ID,
    )
    assert line == "ORD-17 Bulu kok Rp2.000/slop sisa 240 s/d 20/03"


@pytest.mark.parametrize("lang", list(Language))
def test_the_payout_notice_says_amount_pieces_period_reference_and_pin_warning(
    lang: Language,
) -> None:
    notice = payout_succeeded_notice(
        lang=lang,
        amount=1_234_567,
        pieces=9_876,
        period_start=date(2026, 3, 1),
        period_end=date(2026, 3, 15),
        reference="PO-000123",
    )
    assert all(part in notice for part in ("Rp1.234.567", "9.876", "01/03-15/03", "PO-000123"))
    warning = "Upah tidak pernah meminta PIN Anda" if lang is Language.ID else "Upah never asks for your PIN"
    assert warning in notice
    assert is_gsm7(notice)
    assert len(notice) <= SMS_LIMIT


@pytest.mark.parametrize("lang", list(Language))
@pytest.mark.parametrize("reason", list(FailureReason))
def test_the_failure_notice_gives_the_reason_and_says_the_money_is_still_owed(
    lang: Language, reason: FailureReason
) -> None:
    notice = payout_failed_notice(lang=lang, amount=HUGE, reason=reason, reference="PO-2026-0000001")
    owed = "tetap tercatat sebagai hak Anda" if lang is Language.ID else "still owed to you"
    assert owed in notice
    assert is_gsm7(notice)
    assert len(notice) <= SMS_LIMIT


def test_the_wallet_limit_failure_is_explained_in_plain_words() -> None:
    notice = payout_failed_notice(
        lang=Language.ID, amount=250_000, reason=FailureReason.WALLET_LIMIT, reference="PO-1"
    )
    assert "batas saldo" in notice


@pytest.mark.parametrize("lang", list(Language))
@pytest.mark.parametrize("unit", list(Unit))
def test_the_order_notice_fits_with_long_names_and_large_numbers(lang: Language, unit: Unit) -> None:
    notice = order_assigned_notice(
        lang=lang,
        order_ref="ORD-TANGERANG-2026-0001",
        product="Selimut bayi rajut motif gajah dan jerapah",
        quantity=999_999,
        rate=Decimal("999999.9999"),
        unit=unit,
        deadline=date(2026, 12, 31),
        effective_hourly=Decimal("999999.49"),
        benchmark_hourly=Decimal("33120.67"),
    )
    assert is_gsm7(notice)
    assert len(notice) <= SMS_LIMIT


def test_the_order_notice_shows_hourly_pay_against_the_benchmark() -> None:
    notice = order_assigned_notice(
        lang=Language.ID,
        order_ref="ORD-17",
        product="Sandal",
        quantity=200,
        rate=Decimal(1000),
        unit=Unit.PASANG,
        deadline=date(2026, 3, 20),
        effective_hourly=Decimal(10_000),
        benchmark_hourly=Decimal("33120.67"),
    )
    assert "Rp10.000" in notice
    assert "Rp33.121" in notice


@pytest.mark.parametrize("lang", list(Language))
def test_the_pin_locked_notice_warns_that_upah_never_asks_for_a_pin(lang: Language) -> None:
    notice = pin_locked_notice(lang=lang)
    assert "PIN" in notice
    assert len(notice) <= SMS_LIMIT
