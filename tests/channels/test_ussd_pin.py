"""The USSD PIN: set on first use, hashed, checked once per session, locked after three wrong tries."""

from __future__ import annotations

import logging

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text, update

from integrations.sms_senders import SandboxSmsSender
from ledger import atomic
from payments import messages
from payments.messages import Language
from payments.tables import HomeworkerRow, UssdSessionRow
from tests.api.conftest import Actor
from tests.channels.conftest import App, Worker, login, register_worker, relay_sms, set_pin, stored

PIN = "583927"
WRONG = "583928"


@pytest.fixture
def worker(app: App, buyer: Actor) -> Worker:
    return register_worker(app, buyer)


def test_the_pin_is_stored_only_as_a_peppered_argon2id_hash(app: App, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    row = stored(app, worker)
    assert row.pin_hash is not None
    assert row.pin_hash.startswith(f"pin1.{app.keyring.primary_key_id}.$argon2id$")
    assert PIN not in row.pin_hash
    with app.factory() as s:
        tags = s.execute(select(UssdSessionRow.pin_tag)).scalars().all()
    assert all(PIN not in (tag or "") for tag in tags)


def test_a_pin_hashed_before_peppering_still_opens_the_menu_and_is_rehashed_with_pepper(
    app: App, worker: Worker
) -> None:
    bare = PasswordHasher(time_cost=2, memory_cost=16 * 1024, parallelism=1).hash(PIN)
    with atomic(app.factory) as s:
        s.execute(update(HomeworkerRow).where(HomeworkerRow.id == worker.id).values(pin_hash=bare))
    wrong = app.gateway.dial(worker.phone)
    wrong.start()
    wrong.pin(WRONG)
    assert stored(app, worker).pin_hash == bare
    dial = login(app, worker, PIN)
    assert "Belum dibayar" in dial.press("1")
    upgraded = stored(app, worker).pin_hash
    assert upgraded is not None and upgraded.startswith(f"pin1.{app.keyring.primary_key_id}.")
    assert "Belum dibayar" in login(app, worker, PIN).press("1")


@pytest.mark.parametrize("guessable", ["1234", "0000", "4321", "1212", "123456", "999999"])
def test_a_guessable_pin_is_refused_and_asked_again(app: App, worker: Worker, guessable: str) -> None:
    dial = app.gateway.dial(worker.phone)
    dial.start()
    refused = dial.press(guessable)  # the refusal names examples, so 1234 may appear on it
    assert refused.kind == "CON"
    assert (
        refused.text == "PIN mudah ditebak (1234, 0000, 1212).\nSelamat datang di Upah.\nBuat PIN 4-6 angka:"
    )
    assert stored(app, worker).pin_hash is None


@pytest.mark.parametrize("bad", ["12", "1234567", "58a9", " ", "٥٨٣٩", "5839#"])
def test_a_pin_that_is_not_4_to_6_digits_is_refused(app: App, worker: Worker, bad: str) -> None:
    dial = app.gateway.dial(worker.phone)
    dial.start()
    refused = dial.press(bad)
    assert refused.kind == "CON" and refused.text.startswith("PIN harus 4-6 angka.")


def test_an_empty_first_answer_shows_the_same_screen_again(app: App, worker: Worker) -> None:
    dial = app.gateway.dial(worker.phone)
    first = dial.start()
    assert dial.press("").text == first.text  # the gateway sends text="" again: nothing was typed


def test_the_pin_must_be_typed_the_same_twice(app: App, worker: Worker) -> None:
    dial = app.gateway.dial(worker.phone)
    dial.start()
    dial.pin(PIN)
    mismatch = dial.pin(WRONG)
    assert mismatch.kind == "CON" and mismatch.text.startswith("PIN tidak sama.\nSelamat datang")
    assert stored(app, worker).pin_hash is None


def test_no_figure_is_shown_before_the_pin(app: App, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    dial = app.gateway.dial(worker.phone)
    dial.start()
    assert dial.press("1").text.startswith("PIN harus 4-6 angka.\nUpah\nMasukkan PIN Anda:")


def test_the_pin_is_checked_once_per_session_not_on_every_screen(app: App, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    dial = login(app, worker, PIN)
    good_hash = stored(app, worker).pin_hash
    with atomic(app.factory) as s:  # a hash Argon2 cannot read: touching it again would fail loudly
        s.execute(update(HomeworkerRow).where(HomeworkerRow.id == worker.id).values(pin_hash="corrupt"))
    assert "Belum dibayar" in dial.press("1")
    assert "Saldo" in dial.press("0")
    assert "Pembayaran terakhir" in dial.press("2")

    fresh = app.gateway.dial(worker.phone)
    fresh.start()
    assert fresh.pin(PIN).text.startswith("PIN Anda tidak dapat diperiksa lagi")  # a new session does check
    with atomic(app.factory) as s:
        s.execute(update(HomeworkerRow).where(HomeworkerRow.id == worker.id).values(pin_hash=good_hash))


def test_a_session_verdict_holds_only_for_the_pin_it_was_given(app: App, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    dial = login(app, worker, PIN)
    forged = app.gateway.ussd(session_id=dial.id, phone=worker.phone, text=f"{WRONG}*1")
    assert forged.ended and forged.text == "Sesi telah berakhir. Silakan hubungi Upah lagi."


def test_three_wrong_pins_lock_the_menu_for_15_minutes_and_she_is_told_by_sms(
    app: App, worker: Worker, sandbox_sms: SandboxSmsSender
) -> None:
    set_pin(app, worker, PIN)
    first = app.gateway.dial(worker.phone)
    first.start()
    assert first.pin(WRONG).text == "PIN salah. Sisa 2 kali coba, lalu menu terkunci 15 menit."
    assert first.pin(WRONG).ended  # the session is over; a replay does not count again
    assert stored(app, worker).pin_failures == 1

    second = app.gateway.dial(worker.phone)
    second.start()
    assert second.pin(WRONG).text == "PIN salah. Sisa 1 kali coba, lalu menu terkunci 15 menit."
    third = app.gateway.dial(worker.phone)
    third.start()
    locked = third.pin(WRONG)
    assert locked.ended
    assert locked.text == "Menu terkunci karena 3 kali PIN salah. Coba lagi dalam 15 menit."

    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent"]
    assert sandbox_sms.to(worker.phone) == [messages.pin_locked_notice(lang=Language.ID)]

    later = app.gateway.dial(worker.phone)
    assert later.start().text.startswith("Menu terkunci")  # even the right PIN waits
    app.clock.advance(minutes=14)
    assert app.gateway.dial(worker.phone).start().text.endswith("Coba lagi dalam 1 menit.")
    app.clock.advance(minutes=1, seconds=1)
    login(app, worker, PIN)
    row = stored(app, worker)
    assert row.pin_failures == 0
    assert relay_sms(app, sandbox_sms, {worker.id}) == []  # one lock, one SMS


def test_a_right_pin_clears_earlier_wrong_tries(app: App, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    for _ in range(2):
        dial = app.gateway.dial(worker.phone)
        dial.start()
        dial.pin(WRONG)
    assert stored(app, worker).pin_failures == 2
    login(app, worker, PIN)
    assert stored(app, worker).pin_failures == 0


def test_a_session_ends_after_three_minutes_without_a_key_press(app: App, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    dial = login(app, worker, PIN)
    app.clock.advance(minutes=2, seconds=50)
    assert dial.press("1").kind == "CON"
    app.clock.advance(minutes=3, seconds=1)
    expired = dial.press("0")
    assert expired.ended and expired.text == "Sesi telah berakhir. Silakan hubungi Upah lagi."


def test_a_session_belongs_to_the_phone_that_opened_it(app: App, buyer: Actor, worker: Worker) -> None:
    other = register_worker(app, buyer)
    set_pin(app, worker, PIN)
    set_pin(app, other, PIN)
    dial = login(app, worker, PIN)
    stolen = app.gateway.ussd(session_id=dial.id, phone=other.phone, text=f"{PIN}*1")
    assert stolen.ended and "Sesi telah berakhir" in stolen


def test_no_pin_ever_reaches_the_logs(app: App, worker: Worker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    set_pin(app, worker, PIN)
    dial = login(app, worker, PIN)
    dial.press("6")
    dial.pin("864213")
    dial.pin("864213")
    wrong = app.gateway.dial(worker.phone)
    wrong.start()
    wrong.pin(WRONG)
    with atomic(app.factory) as s:
        s.execute(update(HomeworkerRow).where(HomeworkerRow.id == worker.id).values(pin_hash="corrupt"))
    failing = app.gateway.dial(worker.phone)
    failing.start()
    assert failing.pin("864213").ended  # a PIN that cannot be checked: a clean END, logged without the PIN
    text = "\n".join(caplog.messages) + "\n".join(r.exc_text or "" for r in caplog.records)
    assert "cannot be checked" in text
    for pin in (PIN, WRONG, "864213"):
        assert pin not in text


def test_a_database_failure_at_the_pin_is_a_clean_end_logged_without_the_pin(
    app: App, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    set_pin(app, worker, PIN)
    refuse = f"""
        CREATE FUNCTION refuse_pin_tries() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused {worker.id}'; END $$;
        CREATE TRIGGER refuse_pin_tries BEFORE UPDATE OF pin_ok ON ussd_sessions
            FOR EACH ROW EXECUTE FUNCTION refuse_pin_tries();
    """
    with atomic(app.factory) as s:
        s.execute(text(refuse))
    try:
        caplog.set_level(logging.DEBUG)
        failing = app.gateway.dial(worker.phone)
        failing.start()
        screen = failing.pin(PIN)
    finally:
        with atomic(app.factory) as s:
            s.execute(text("DROP TRIGGER refuse_pin_tries ON ussd_sessions"))
            s.execute(text("DROP FUNCTION refuse_pin_tries()"))
    assert screen.ended and screen.text.startswith("Maaf, layanan Upah sedang gangguan.")
    logged = "\n".join(caplog.messages) + "\n".join(r.exc_text or "" for r in caplog.records)
    assert "ussd turn failed" in logged
    assert PIN not in logged


def change_pin(app: App, worker: Worker, old: str, new: str) -> None:
    dial = login(app, worker, old)
    assert dial.press("6").kind == "CON"
    assert dial.pin(new).kind == "CON"
    saved = dial.pin(new)
    assert saved.ended and "tersimpan" in saved


def test_changing_her_pin_ends_every_session_opened_with_the_old_one(app: App, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    other = login(app, worker, PIN)  # someone who knew the old PIN, still in the menu
    change_pin(app, worker, PIN, "749163")
    after = other.press("1")
    assert after.ended and "Sesi telah berakhir" in after


def test_a_session_opened_with_the_old_pin_cannot_replace_her_new_one(app: App, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    other = login(app, worker, PIN)
    change_pin(app, worker, PIN, "749163")
    assert other.press("6").ended
    login(app, worker, "749163")
