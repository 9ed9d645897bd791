"""Clearing a homeworker's USSD PIN: she forgot it, or it was made with a key since retired.

An organisation she works with clears it; nobody but she ever chooses the new one, from her
own phone at her next dial, and an SMS tells her it happened.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select, update

from integrations.sms_senders import SandboxSmsSender
from ledger import atomic
from payments import messages, pins
from payments.messages import Language
from payments.parties import Role
from payments.tables import HomeworkerRow, UssdSessionRow
from tests.api.conftest import Actor, make_key, new_org
from tests.channels.conftest import (
    App,
    Worker,
    login,
    pending_sms,
    register_worker,
    relay_sms,
    set_pin,
    stored,
)

PIN = "583927"
NEW_PIN = "720461"
WRONG = "583928"


@pytest.fixture
def worker(app: App, buyer: Actor) -> Worker:
    return register_worker(app, buyer)


def reset(app: App, actor: Actor, worker: Worker) -> dict[str, object]:
    r = app.client.post(f"/v1/homeworkers/{worker.id}/pin-reset", headers=actor.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def lock_out(app: App, worker: Worker) -> None:
    for _ in range(pins.MAX_TRIES):
        dial = app.gateway.dial(worker.phone)
        dial.start()
        dial.pin(WRONG)
    assert stored(app, worker).pin_locked_until is not None


def test_after_a_reset_she_makes_a_new_pin_at_her_next_dial(app: App, buyer: Actor, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    assert reset(app, buyer, worker) == {"homeworker_id": worker.id, "pin_cleared": True}
    assert stored(app, worker).pin_hash is None
    set_pin(app, worker, NEW_PIN)
    assert "Belum dibayar" in login(app, worker, NEW_PIN).press("1")


def test_the_old_pin_no_longer_opens_the_menu(app: App, buyer: Actor, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    reset(app, buyer, worker)
    set_pin(app, worker, NEW_PIN)
    dial = app.gateway.dial(worker.phone)
    dial.start()
    assert dial.pin(PIN).text.startswith("PIN salah")


def test_a_reset_lifts_the_lock_and_forgets_the_wrong_tries(app: App, buyer: Actor, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    lock_out(app, worker)
    reset(app, buyer, worker)
    row = stored(app, worker)
    assert (row.pin_failures, row.pin_locked_until) == (0, None)
    set_pin(app, worker, NEW_PIN)


def test_she_is_told_by_sms_in_her_language(app: App, buyer: Actor, sandbox_sms: SandboxSmsSender) -> None:
    worker = register_worker(app, buyer, language="en")
    set_pin(app, worker, PIN)
    reset(app, buyer, worker)
    assert relay_sms(app, sandbox_sms, {worker.id}) == ["sent"]
    assert sandbox_sms.to(worker.phone) == [messages.pin_reset_notice(lang=Language.EN)]


def test_a_session_opened_with_the_old_pin_ends_at_the_reset(app: App, buyer: Actor, worker: Worker) -> None:
    set_pin(app, worker, PIN)
    dial = login(app, worker, PIN)
    reset(app, buyer, worker)
    with app.factory() as s:
        assert (
            s.execute(select(UssdSessionRow).where(UssdSessionRow.homeworker_id == worker.id)).first() is None
        )
    ended = dial.press("1")
    assert ended.ended and "Sesi telah berakhir" in ended


def test_without_a_pin_there_is_nothing_to_clear_and_no_sms(app: App, buyer: Actor, worker: Worker) -> None:
    assert reset(app, buyer, worker) == {"homeworker_id": worker.id, "pin_cleared": False}
    assert pending_sms(app.factory, {worker.id}) == []


def test_a_pin_made_with_a_retired_key_is_cleared_and_made_again(
    app: App, buyer: Actor, worker: Worker
) -> None:
    set_pin(app, worker, PIN)
    made = stored(app, worker).pin_hash
    assert made is not None
    retired = "pin1.retired-key." + made.split(".", 2)[2]
    with atomic(app.factory) as s:
        s.execute(update(HomeworkerRow).where(HomeworkerRow.id == worker.id).values(pin_hash=retired))
    dial = app.gateway.dial(worker.phone)
    dial.start()
    unusable = dial.pin(PIN)
    assert unusable.ended and unusable.text.startswith("PIN Anda tidak dapat diperiksa lagi")
    reset(app, buyer, worker)
    set_pin(app, worker, NEW_PIN)
    assert "Belum dibayar" in login(app, worker, NEW_PIN).press("1")


def test_the_intermediary_that_registered_her_can_clear_it(app: App, admin: Actor) -> None:
    intermediary = make_key(app.factory, Role.INTERMEDIARY, new_org(app.client, admin, "intermediary"))
    worker = register_worker(app, intermediary)
    set_pin(app, worker, PIN)
    assert reset(app, intermediary, worker)["pin_cleared"] is True


def test_an_auditor_cannot_clear_a_pin(app: App, admin: Actor, buyer: Actor, worker: Worker) -> None:
    auditor = make_key(app.factory, Role.AUDITOR, buyer.organization_id)
    set_pin(app, worker, PIN)
    r = app.client.post(f"/v1/homeworkers/{worker.id}/pin-reset", headers=auditor.headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert stored(app, worker).pin_hash is not None


def test_another_organisation_cannot_clear_her_pin(app: App, admin: Actor, worker: Worker) -> None:
    stranger = make_key(app.factory, Role.BUYER, new_org(app.client, admin, "buyer"))
    set_pin(app, worker, PIN)
    r = app.client.post(f"/v1/homeworkers/{worker.id}/pin-reset", headers=stranger.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert stored(app, worker).pin_hash is not None
    assert pending_sms(app.factory, {worker.id}) == []


def test_the_log_names_her_id_not_her_phone(
    app: App, buyer: Actor, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    set_pin(app, worker, PIN)
    caplog.set_level(logging.INFO)
    reset(app, buyer, worker)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"PIN reset for homeworker {worker.id}" in logged
    assert worker.phone[3:] not in logged
