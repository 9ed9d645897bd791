"""Self-service over USSD and SMS: the menu tree as rules, and screens that always fit."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.sms import SMS_LIMIT, is_gsm7
from integrations.ussd import UssdReply, render
from payments.messages import LIMIT, Language
from payments.payout_states import PayoutStatus
from payments.rates import Unit
from payments.selfservice import (
    MAX_STEPS,
    ChangePin,
    CheckPin,
    DisputeKind,
    OpenDispute,
    PayoutLine,
    SetLanguage,
    SetPin,
    UssdOutcome,
    WorkerView,
    WorkLine,
    invalid_request,
    service_unavailable,
    session_expired,
    sms_reply,
    unknown_number,
    ussd_screen,
)

NOW = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
PIN = "4821"
NEW_PIN = "5827"

PAYOUTS = [
    PayoutLine(day=date(2026, 3, 8), amount=250_000, status=PayoutStatus.SUCCEEDED),
    PayoutLine(day=date(2026, 3, 1), amount=125_500, status=PayoutStatus.UNKNOWN),
    PayoutLine(day=date(2026, 2, 22), amount=90_000, status=PayoutStatus.FAILED),
    PayoutLine(day=date(2026, 2, 15), amount=80_000, status=PayoutStatus.SUCCEEDED),
]
WORK = [
    WorkLine(
        order_ref="ORD-17",
        product="Sandal jepit",
        rate=Decimal(1000),
        unit=Unit.PASANG,
        pieces_left=40,
        deadline=date(2026, 3, 20),
    ),
    WorkLine(
        order_ref="ORD-18",
        product="Bulu kok",
        rate=Decimal(2000),
        unit=Unit.SLOP,
        pieces_left=240,
        deadline=date(2026, 3, 25),
    ),
]
LONG_WORK = [
    WorkLine(
        order_ref=f"ORD-TANGERANG-2026-{n:04d}",
        product="Selimut bayi rajut motif gajah dan jerapah",
        rate=Decimal("999999.9999"),
        unit=Unit.PASANG,
        pieces_left=999_999,
        deadline=date(2026, 12, 31),
    )
    for n in range(8)
]
HUGE = 9_999_999_999


def view(**overrides: Any) -> WorkerView:
    base: dict[str, Any] = {
        "homeworker_id": 7,
        "language": Language.ID,
        "pin_set": True,
        "locked_until": None,
        "owed": 125_000,
        "on_hold": 25_000,
        "paid_this_month": 300_000,
        "recent_payouts": PAYOUTS,
        "open_work": WORK,
    }
    return WorkerView(**(base | overrides))


def screen(v: WorkerView, *steps: str, pin_ok: bool | None = True, **kw: Any) -> UssdOutcome:
    return ussd_screen(v, list(steps), pin_ok=pin_ok, now=NOW, **kw)


def shown(outcome: UssdOutcome) -> str:
    assert outcome.text is not None
    return outcome.text


# First use: creating a PIN


def test_first_use_asks_to_create_a_pin() -> None:
    outcome = screen(view(pin_set=False))
    assert "Buat PIN 4-6 angka" in shown(outcome)
    assert not outcome.end


def test_a_new_pin_is_asked_for_twice() -> None:
    assert "Ketik ulang PIN" in shown(screen(view(pin_set=False), NEW_PIN))


def test_matching_pins_set_the_pin_and_end_the_session() -> None:
    outcome = screen(view(pin_set=False), NEW_PIN, NEW_PIN)
    assert outcome.action == SetPin(NEW_PIN)
    assert outcome.end


@pytest.mark.parametrize("trivial", ["1234", "0000", "4321", "123456", "1212"])
def test_a_guessable_new_pin_is_refused(trivial: str) -> None:
    outcome = screen(view(pin_set=False), trivial)
    assert "mudah ditebak" in shown(outcome)
    assert outcome.action is None


@pytest.mark.parametrize("malformed", ["12", "abcd", "", "1234567"])
def test_a_malformed_new_pin_is_refused(malformed: str) -> None:
    assert "PIN harus 4-6 angka" in shown(screen(view(pin_set=False), malformed))


def test_mismatched_pins_start_again_with_a_note() -> None:
    text = shown(screen(view(pin_set=False), NEW_PIN, "5828"))
    assert text.startswith("PIN tidak sama.")
    assert "Buat PIN" in text


def test_a_pin_can_be_created_after_a_refusal() -> None:
    outcome = screen(view(pin_set=False), "1234", NEW_PIN, NEW_PIN)
    assert outcome.action == SetPin(NEW_PIN)


def test_answers_after_the_pin_was_set_end_the_session_without_setting_it_again() -> None:
    outcome = screen(view(pin_set=False), NEW_PIN, NEW_PIN, "1")
    assert outcome.end
    assert outcome.action is None


def test_three_refused_new_pins_end_the_session() -> None:
    outcome = screen(view(pin_set=False), "1234", "0000", "ab")
    assert outcome.end
    assert outcome.action is None


# Logging in


def test_a_homeworker_with_a_pin_is_asked_for_it_first() -> None:
    assert "Masukkan PIN" in shown(screen(view()))


def test_a_pin_not_yet_checked_asks_the_caller_to_check_it() -> None:
    outcome = screen(view(), PIN, pin_ok=None)
    assert outcome.action == CheckPin(PIN)
    assert outcome.text is None


def test_a_pin_is_checked_before_any_menu_choice_is_followed() -> None:
    outcome = screen(view(), PIN, "1", pin_ok=None)
    assert outcome.action == CheckPin(PIN)


def test_a_right_pin_opens_the_main_menu() -> None:
    text = shown(screen(view(), PIN))
    for item in (
        "1 Saldo",
        "2 Pembayaran terakhir",
        "3 Pekerjaan",
        "4 Lapor masalah",
        "5 Bahasa",
        "6 Ganti PIN",
    ):
        assert item in text


def test_a_wrong_pin_ends_the_session_with_the_tries_left() -> None:
    outcome = screen(view(pin_failures=1), PIN, pin_ok=False)
    assert outcome.end
    assert "Sisa 2 kali" in shown(outcome)


def test_a_malformed_pin_is_asked_for_again_without_a_check() -> None:
    outcome = screen(view(), "abc")
    assert "PIN harus 4-6 angka" in shown(outcome)
    assert outcome.action is None


def test_the_first_well_formed_answer_is_the_pin_checked() -> None:
    assert screen(view(), "12", PIN, pin_ok=None).action == CheckPin(PIN)


def test_three_malformed_pins_end_the_session() -> None:
    assert screen(view(), "a", "b", "c").end


def test_a_locked_menu_ends_at_once_with_the_minutes_left() -> None:
    outcome = screen(view(locked_until=NOW + timedelta(minutes=14, seconds=10)))
    assert outcome.end
    assert "15 menit" in shown(outcome)


def test_a_locked_menu_never_asks_for_a_pin_check() -> None:
    outcome = screen(view(locked_until=NOW + timedelta(minutes=5)), PIN, pin_ok=None)
    assert outcome.action is None
    assert outcome.end


def test_the_third_wrong_pin_shows_the_lock() -> None:
    locked = view(locked_until=NOW + timedelta(minutes=15))
    assert "terkunci" in shown(screen(locked, PIN, pin_ok=False))


def test_an_expired_lock_asks_for_the_pin_again() -> None:
    assert "Masukkan PIN" in shown(screen(view(locked_until=NOW)))


# The menu


def test_balance_shows_owed_in_process_and_paid_this_month() -> None:
    text = shown(screen(view(), PIN, "1"))
    assert "Belum dibayar: Rp125.000" in text
    assert "Dalam proses: Rp25.000" in text
    assert "Dibayar bulan ini: Rp300.000" in text


def test_last_payments_show_the_three_newest() -> None:
    text = shown(screen(view(), PIN, "2"))
    assert "08/03 Rp250.000 berhasil" in text
    assert "01/03 Rp125.500 diproses" in text
    assert "22/02 Rp90.000 gagal" in text
    assert "15/02" not in text


def test_last_payments_say_so_when_there_are_none() -> None:
    assert "Belum ada pembayaran" in shown(screen(view(recent_payouts=[]), PIN, "2"))


def test_open_work_shows_order_product_rate_pieces_left_and_deadline() -> None:
    text = shown(screen(view(), PIN, "3"))
    assert "ORD-17 Sandal jepit Rp1.000/pasang sisa 40 s/d 20/03" in text
    assert "ORD-18 Bulu kok Rp2.000/slop sisa 240 s/d 25/03" in text


def test_open_work_that_does_not_fit_is_counted() -> None:
    text = shown(screen(view(open_work=LONG_WORK), PIN, "3"))
    assert "lagi" in text
    assert len(text) <= LIMIT


def test_open_work_says_so_when_there_is_none() -> None:
    assert "Tidak ada pekerjaan" in shown(screen(view(open_work=[]), PIN, "3"))


@pytest.mark.parametrize("choice", ["1", "2", "3", "4", "5"])
def test_zero_goes_back_to_the_main_menu(choice: str) -> None:
    assert "6 Ganti PIN" in shown(screen(view(), PIN, choice, "0"))


def test_an_unknown_choice_reshows_the_menu_with_a_note() -> None:
    outcome = screen(view(), PIN, "9")
    assert shown(outcome).startswith("Pilihan tidak valid.")
    assert "1 Saldo" in shown(outcome)
    assert not outcome.end


@pytest.mark.parametrize("answer", ["", "x", "12", " ", "*"])
def test_letters_and_empty_answers_reshow_the_screen(answer: str) -> None:
    outcome = screen(view(), PIN, "1", answer)
    assert "Pilihan tidak valid." in shown(outcome)
    assert "Belum dibayar" in shown(outcome)


def test_three_invalid_answers_in_a_row_end_the_session() -> None:
    outcome = screen(view(), PIN, "9", "x", "")
    assert outcome.end
    assert "Terlalu banyak" in shown(outcome)


def test_a_valid_answer_resets_the_count_of_invalid_ones() -> None:
    outcome = screen(view(), PIN, "9", "x", "1", "9", "0")
    assert not outcome.end


def test_too_many_answers_end_the_session() -> None:
    outcome = screen(view(), PIN, *(["1", "0"] * MAX_STEPS))
    assert outcome.end
    assert outcome.action is None


# Reporting a problem


@pytest.mark.parametrize(
    ("choice", "kind"),
    [
        ("1", DisputeKind.NOT_PAID),
        ("2", DisputeKind.WRONG_AMOUNT),
        ("3", DisputeKind.PIECES_NOT_COUNTED),
        ("4", DisputeKind.OTHER),
    ],
)
def test_choosing_a_problem_asks_the_caller_to_open_a_dispute(choice: str, kind: DisputeKind) -> None:
    outcome = screen(view(), PIN, "4", choice)
    assert outcome.action == OpenDispute(kind)
    assert outcome.text is None


def test_the_report_menu_lists_the_four_problems() -> None:
    text = shown(screen(view(), PIN, "4"))
    for item in ("1 Belum dibayar", "2 Jumlah salah", "3 Setoran tidak dihitung", "4 Lainnya"):
        assert item in text


def test_an_opened_dispute_ends_with_its_reference_code() -> None:
    outcome = screen(view(), PIN, "4", "2", dispute_ref="DSP-7KQ2")
    assert outcome.end
    assert outcome.action is None
    assert "DSP-7KQ2" in shown(outcome)


# Language


def test_choosing_english_records_it_and_shows_the_menu_in_english() -> None:
    outcome = screen(view(), PIN, "5", "2")
    assert outcome.action == SetLanguage(Language.EN)
    assert shown(outcome).startswith("Language: English")
    assert "1 Balance" in shown(outcome)


def test_choosing_bahasa_indonesia_records_it() -> None:
    outcome = screen(view(language=Language.EN), PIN, "5", "1")
    assert outcome.action == SetLanguage(Language.ID)
    assert "1 Saldo" in shown(outcome)


def test_a_language_chosen_earlier_in_the_session_is_not_recorded_again() -> None:
    outcome = screen(view(language=Language.EN), PIN, "5", "2", "1")
    assert outcome.action is None
    assert "Owed to you" in shown(outcome)


def test_the_menu_speaks_the_homeworkers_language() -> None:
    assert "Enter your PIN" in shown(screen(view(language=Language.EN)))


# Changing the PIN


def test_a_new_pin_entered_twice_changes_the_pin() -> None:
    outcome = screen(view(), PIN, "6", NEW_PIN, NEW_PIN)
    assert outcome.action == ChangePin(old=PIN, new=NEW_PIN)
    assert outcome.end


def test_a_guessable_replacement_pin_is_refused() -> None:
    outcome = screen(view(), PIN, "6", "1111")
    assert "mudah ditebak" in shown(outcome)
    assert outcome.action is None


def test_a_mismatched_replacement_pin_starts_again() -> None:
    outcome = screen(view(), PIN, "6", NEW_PIN, "5828")
    assert shown(outcome).startswith("PIN tidak sama.")
    assert "PIN baru" in shown(outcome)
    assert outcome.action is None


# Fixed screens


@pytest.mark.parametrize("lang", list(Language))
@pytest.mark.parametrize("make", [unknown_number, session_expired, invalid_request, service_unavailable])
def test_fixed_end_screens_exist_in_both_languages(make: Any, lang: Language) -> None:
    outcome = make(lang)
    assert outcome.end
    assert outcome.action is None
    assert len(shown(outcome)) <= LIMIT


def test_an_unknown_number_reveals_nothing_about_any_account() -> None:
    text = shown(unknown_number())
    assert "Rp" not in text
    assert "PIN" not in text


def test_the_view_carries_no_nik_phone_or_wallet_number() -> None:
    names = {field.name for field in dataclasses.fields(WorkerView)}
    assert not names & {"nik", "phone", "wallet", "wallet_account", "name"}


# Every screen fits


answers_st = st.lists(
    st.sampled_from(["", "0", "1", "2", "3", "4", "5", "6", "9", "x", PIN, NEW_PIN, "1234"]),
    max_size=MAX_STEPS + 2,
)
views_st = st.builds(
    view,
    language=st.sampled_from(list(Language)),
    pin_set=st.booleans(),
    owed=st.just(HUGE),
    on_hold=st.just(HUGE),
    paid_this_month=st.just(HUGE),
    recent_payouts=st.just(
        [PayoutLine(day=date(2026, 12, 28), amount=HUGE, status=PayoutStatus.REVERSED)] * 3
    ),
    open_work=st.sampled_from([[], WORK, LONG_WORK]),
    pin_failures=st.integers(0, 2),
)


@given(
    views_st,
    answers_st,
    st.sampled_from([None, True, False]),
    st.sampled_from([None, "DSP-2026-000000123456"]),
)
@settings(max_examples=400)
def test_any_answers_give_a_screen_that_renders_or_an_action_never_an_error(
    v: WorkerView, answers: list[str], pin_ok: bool | None, ref: str | None
) -> None:
    outcome = ussd_screen(v, answers, pin_ok=pin_ok, now=NOW, dispute_ref=ref)
    if outcome.text is None:
        assert isinstance(outcome.action, CheckPin | OpenDispute)
        return
    assert len(outcome.text) <= LIMIT
    assert is_gsm7(outcome.text)
    render(UssdReply(text=outcome.text, end=outcome.end))


# SMS


@pytest.mark.parametrize("command", ["SALDO", "saldo", "Saldo!", " saldo ", "SALDO."])
def test_saldo_in_any_case_or_punctuation_answers_the_balance(command: str) -> None:
    assert "belum dibayar Rp125.000" in sms_reply(view(), command)


def test_bal_answers_the_balance_in_english() -> None:
    assert "owed to you Rp125.000" in sms_reply(view(), "bal")


def test_an_indonesian_command_answers_in_her_language() -> None:
    assert "owed to you" in sms_reply(view(language=Language.EN), "SALDO")


def test_an_english_command_answers_in_english_whatever_her_language() -> None:
    assert "Upah, last payments" in sms_reply(view(language=Language.ID), "HIST")


def test_riwayat_lists_the_three_newest_payouts() -> None:
    reply = sms_reply(view(), "RIWAYAT")
    assert "08/03 Rp250.000 berhasil" in reply
    assert "15/02" not in reply


def test_riwayat_without_payouts_says_so() -> None:
    assert "belum ada pembayaran" in sms_reply(view(recent_payouts=[]), "riwayat")


def test_tarif_lists_open_work_with_rates() -> None:
    reply = sms_reply(view(), "TARIF")
    assert "ORD-18 Bulu kok Rp2.000/slop" in reply


def test_rates_without_open_work_says_so_in_english() -> None:
    assert sms_reply(view(open_work=[]), "rates") == "Upah: no open work."


def test_bantuan_answers_help_with_the_pin_warning() -> None:
    assert "Upah tidak pernah meminta PIN Anda" in sms_reply(view(), "BANTUAN")


def test_help_answers_in_english() -> None:
    assert "Upah never asks for your PIN" in sms_reply(view(), "help")


@pytest.mark.parametrize("command", ["", "halo", "1234", "SALD0"])
def test_an_unknown_command_answers_help_in_her_language(command: str) -> None:
    assert sms_reply(view(), command).startswith("Upah: kirim SALDO")


def test_words_after_a_command_are_ignored() -> None:
    assert "belum dibayar" in sms_reply(view(), "saldo?? tolong")


@given(
    st.sampled_from(["saldo", "bal", "riwayat", "hist", "tarif", "rates", "bantuan", "help", "?"]),
    st.sampled_from(list(Language)),
    st.sampled_from([[], WORK, LONG_WORK]),
)
def test_every_sms_reply_fits_one_gsm7_message(command: str, lang: Language, work: list[WorkLine]) -> None:
    v = view(language=lang, owed=HUGE, on_hold=HUGE, paid_this_month=HUGE, open_work=work)
    reply = sms_reply(v, command)
    assert is_gsm7(reply)
    assert len(reply) <= SMS_LIMIT


def test_punctuation_inside_a_command_word_is_dropped() -> None:
    assert "belum dibayar" in sms_reply(view(), "s.a.l.d.o")
