"""Whole USSD menu walks through the real HTTP app, in Bahasa Indonesia and in English.

Every screen on the way is checked by the gateway helper: CON/END, at most 160 characters,
GSM-7 only, no PIN echoed.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from payments import channels
from tests.api.conftest import TODAY, Actor, confirm, deliver, post_order
from tests.channels.conftest import App, Worker, login, register_worker, set_pin

PIN = "583927"
NEW_PIN = "719264"


@pytest.fixture
def worker(app: App, buyer: Actor) -> Worker:
    """Owed Rp10.000, Rp20.000 in a payout under way, one order with 40 pairs left."""
    worker = register_worker(app, buyer)
    order = post_order(
        app.client,
        buyer,
        worker.id,
        reference="PO-SANDAL-7",
        product="Sandal insole gluing",
        deadline=(TODAY + timedelta(days=10)).isoformat(),
    )
    first = deliver(app.client, buyer, order["id"], worker.id, 40)
    confirm(app.client, buyer, first["id"], 40)
    run = app.client.post("/v1/payout-runs", json={}, headers=buyer.headers)
    assert run.status_code == 201, run.text
    assert run.json()["total"]["amount"] == "20000"
    second = deliver(app.client, buyer, order["id"], worker.id, 20)
    confirm(app.client, buyer, second["id"], 20)
    return worker


def deadline_text() -> str:
    day = TODAY + timedelta(days=10)
    return f"{day.day:02d}/{day.month:02d}"


def test_a_new_homeworker_creates_her_pin_first_and_then_logs_in(app: App, worker: Worker) -> None:
    dial = app.gateway.dial(worker.phone)
    welcome = dial.start()
    assert welcome.kind == "CON"
    assert welcome.text == "Selamat datang di Upah.\nBuat PIN 4-6 angka:"
    assert dial.pin(PIN).text == "Ketik ulang PIN Anda:"
    saved = dial.pin(PIN)
    assert saved.ended and saved.text.startswith("PIN Anda tersimpan.")

    again = app.gateway.dial(worker.phone)
    assert again.start().text == "Upah\nMasukkan PIN Anda:"
    menu = again.pin(PIN)
    assert menu.text == (
        "Upah\n1 Saldo\n2 Pembayaran terakhir\n3 Pekerjaan\n4 Lapor masalah\n5 Bahasa\n6 Ganti PIN"
    )


def test_the_whole_menu_in_bahasa_indonesia(app: App, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    dial = login(app, worker, PIN)

    balance = dial.press("1")
    assert balance.kind == "CON"
    assert balance.text == (
        "Belum dibayar: Rp10.000\nDalam proses: Rp20.000\nDibayar bulan ini: Rp0\n0 Kembali"
    )
    assert "Saldo" in dial.press("0")

    payments = dial.press("2")
    assert payments.text.startswith("Pembayaran terakhir:\n")
    day = channels.local_date(app.clock.now).strftime("%d/%m")  # her date (WIB), not the server's
    assert f"{day} Rp20.000 diproses" in payments.text, payments.text
    assert payments.text.endswith("0 Kembali")
    dial.press("0")

    work = dial.press("3")
    assert work.text.startswith("Pekerjaan:\n")
    assert f"PO-SANDAL-7 Sandal insole g. Rp500/pasang sisa 40 s/d {deadline_text()}" in work.text
    dial.press("0")

    report = dial.press("4")
    assert report.text == (
        "Lapor masalah:\n1 Belum dibayar\n2 Jumlah salah\n3 Setoran tidak dihitung\n4 Lainnya\n0 Kembali"
    )
    dial.press("0")

    language = dial.press("5")
    assert language.text == "Pilih bahasa:\n1 Bahasa Indonesia\n2 English\n0 Kembali"
    dial.press("0")

    assert dial.press("6").text == "Masukkan PIN baru (4-6 angka):"
    assert dial.pin(NEW_PIN).text == "Ketik ulang PIN baru:"
    changed = dial.pin(NEW_PIN)
    assert changed.ended and changed.text.startswith("PIN baru tersimpan.")

    old = app.gateway.dial(worker.phone)
    old.start()
    assert old.pin(PIN).text.startswith("PIN salah. Sisa 2 kali coba")
    login(app, worker, NEW_PIN)


def test_the_whole_menu_in_english_once_she_chose_it(app: App, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    dial = login(app, worker, PIN)
    dial.press("5")
    chosen = dial.press("2")
    assert chosen.kind == "CON"
    assert chosen.text.startswith("Language: English\n1 Balance\n2 Last payments")

    dial = app.gateway.dial(worker.phone)
    assert dial.start().text == "Upah\nEnter your PIN:"  # remembered for her
    menu = dial.pin(PIN)
    assert (
        menu.text
        == "Upah\n1 Balance\n2 Last payments\n3 Open work\n4 Report a problem\n5 Language\n6 Change PIN"
    )
    assert dial.press("1").text == (
        "Owed to you: Rp10.000\nIn process: Rp20.000\nPaid this month: Rp0\n0 Back"
    )
    dial.press("0")
    payments = dial.press("2")
    assert payments.text.startswith("Last payments:\n") and "Rp20.000 processing" in payments.text
    dial.press("0")
    work = dial.press("3")
    assert f"PO-SANDAL-7 Sandal insole g. Rp500/pair 40 left by {deadline_text()}" in work.text
    dial.press("0")
    assert dial.press("4").text.startswith("Report a problem:\n1 Not paid")
    done = dial.press("2")
    assert done.ended
    assert re.fullmatch(
        r"Report received\. Code: LP-[A-HJ-NP-Z2-9]{6}\. Upah staff will contact you\. Keep this code\.",
        done.text,
    )

    dial = login(app, worker, PIN)
    dial.press("5")
    back = dial.press("1")
    assert back.text.startswith("Bahasa: Indonesia\n1 Saldo")
    assert app.gateway.dial(worker.phone).start().text == "Upah\nMasukkan PIN Anda:"


def test_going_back_and_wrong_choices_redraw_the_screen(app: App, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    dial = login(app, worker, PIN)
    wrong = dial.press("9")
    assert wrong.kind == "CON" and wrong.text.startswith("Pilihan tidak valid.\nUpah\n1 Saldo")
    letters = dial.press("abc")
    assert letters.kind == "CON" and letters.text.startswith("Pilihan tidak valid.")
    assert dial.press("").ended  # the third invalid answer in a row ends it politely


def test_a_homeworker_with_nothing_yet_sees_zeros_and_plain_words(app: App, buyer: Actor) -> None:
    worker = register_worker(app, buyer)
    set_pin(app, worker, PIN)
    dial = login(app, worker, PIN)
    assert "Belum dibayar: Rp0" in dial.press("1")
    dial.press("0")
    assert "Belum ada pembayaran." in dial.press("2")
    dial.press("0")
    assert "Tidak ada pekerjaan terbuka." in dial.press("3")


def test_her_figures_are_the_ones_her_buyer_sees(app: App, buyer: Actor, worker: Worker) -> None:
    seen = app.client.get(f"/v1/homeworkers/{worker.id}/balance", headers=buyer.headers).json()
    set_pin(app, worker, PIN)
    balance = login(app, worker, PIN).press("1")
    assert f"Belum dibayar: Rp{int(seen['earned']['amount']):,}".replace(",", ".") in balance
    assert f"Dalam proses: Rp{int(seen['pending']['amount']):,}".replace(",", ".") in balance


def test_the_gateway_contract_is_in_the_openapi_schema(app: App) -> None:
    schema = app.client.get("/openapi.json").json()
    ussd = schema["paths"]["/v1/gateway/ussd"]["post"]
    assert {p["name"] for p in ussd["parameters"]} >= {"X-Upah-Signature", "X-Upah-Gateway-Token"}
    assert "application/x-www-form-urlencoded" in ussd["requestBody"]["content"]
    assert "text/plain" in ussd["responses"]["200"]["content"]
    sms = schema["paths"]["/v1/gateway/sms"]["post"]
    assert {p["name"] for p in sms["parameters"]} >= {"X-Upah-Signature", "X-Twilio-Signature"}
    assert "/v1/disputes" in schema["paths"] and "/v1/sandbox/sms" in schema["paths"]
