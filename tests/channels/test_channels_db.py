"""payments.channels on both databases: the embedded default (SQLite) behaves like production."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from integrations.sms_senders import SandboxSmsSender, SentSms, SmsTemporaryFailure
from ledger import atomic
from payments import channels, outbox
from payments.selfservice import DisputeKind
from payments.tables import DisputeRow, OutboxRow, SmsMessageRow, UssdSessionRow
from tests.payments.scenario import KEYRING, make_buyer, make_worker
from upah.migrate import alembic_config, upgrade

PIN = "583927"


def phone_of(factory: sessionmaker[Session], worker_id: int) -> str:
    from payments import pii
    from payments.tables import HomeworkerRow

    with factory() as s:
        token = s.execute(select(HomeworkerRow.phone_enc).where(HomeworkerRow.id == worker_id)).scalar_one()
    return pii.decrypt(KEYRING, token, context="homeworker.phone")


class Dial:
    def __init__(self, factory: sessionmaker[Session], phone: str, now: datetime) -> None:
        self.factory, self.phone, self.now = factory, phone, now
        self.id = uuid.uuid4().hex
        self.steps: list[str] = []

    def send(self, *answers: str) -> str:
        self.steps.extend(answers)
        turn = channels.ussd_turn(
            self.factory,
            keyring=KEYRING,
            session_id=self.id,
            phone=self.phone,
            steps=self.steps,
            now=self.now,
        )
        assert turn.outcome.text is not None
        return ("END " if turn.outcome.end else "CON ") + turn.outcome.text


def test_first_use_login_and_balance(factory: sessionmaker[Session]) -> None:
    buyer = make_buyer(factory)
    worker = make_worker(factory, buyer)
    from tests.payments.scenario import earn

    earn(factory, buyer, worker, 12_500)
    phone, now = phone_of(factory, worker), datetime.now(UTC)
    first = Dial(factory, phone, now)
    assert first.send().startswith("CON Selamat datang")
    first.send(PIN)
    assert first.send(PIN).startswith("END PIN Anda tersimpan")
    dial = Dial(factory, phone, now)
    dial.send()
    assert dial.send(PIN).startswith("CON Upah\n1 Saldo")
    assert dial.send("1").startswith("CON Belum dibayar: Rp12.500\n")
    with factory() as s:
        row = s.execute(select(UssdSessionRow).where(UssdSessionRow.session_id == dial.id)).scalar_one()
    assert row.pin_ok is True and row.homeworker_id == worker and PIN not in (row.pin_tag or "")


def test_three_wrong_pins_lock_and_queue_one_sms(factory: sessionmaker[Session]) -> None:
    buyer = make_buyer(factory)
    worker = make_worker(factory, buyer)
    phone, now = phone_of(factory, worker), datetime.now(UTC)
    setup = Dial(factory, phone, now)
    setup.send()
    setup.send(PIN)
    setup.send(PIN)
    screens = []
    for _ in range(3):
        dial = Dial(factory, phone, now)
        dial.send()
        screens.append(dial.send("111999"))
    assert screens[-1].startswith("END Menu terkunci")
    with factory() as s:
        queued = [
            p
            for p in s.execute(select(OutboxRow.payload).where(OutboxRow.topic == outbox.SEND_SMS)).scalars()
            if p.get("homeworker_id") == worker
        ]
    assert [p["kind"] for p in queued] == ["pin_locked"]
    sender = SandboxSmsSender()
    assert (
        channels.deliver_sms(factory, keyring=KEYRING, sender=sender, payload=queued[0], clock=lambda: now)
        == "sent"
    )
    assert (
        channels.deliver_sms(factory, keyring=KEYRING, sender=sender, payload=queued[0], clock=lambda: now)
        == "sent"
    )
    assert len(sender.to(phone)) == 1


class Flaky:
    """A sender that is busy once, then takes everything."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    def send(self, *, to: str, text: str) -> SentSms:
        self.calls += 1
        if self.calls == 1:
            raise SmsTemporaryFailure("http_503", "try later")
        return SentSms(message_id=f"F{self.calls}", status="queued")


def test_a_message_claimed_by_a_running_attempt_waits(factory: sessionmaker[Session]) -> None:
    buyer = make_buyer(factory)
    worker = make_worker(factory, buyer)
    now = datetime.now(UTC)
    payload = {
        "kind": "sms_reply",
        "homeworker_id": worker,
        "command": "help",
        "key": f"sms_reply:{uuid.uuid4()}",
    }
    flaky = Flaky()
    with pytest.raises(SmsTemporaryFailure):
        channels.deliver_sms(factory, keyring=KEYRING, sender=flaky, payload=payload, clock=lambda: now)
    assert (
        channels.deliver_sms(factory, keyring=KEYRING, sender=flaky, payload=payload, clock=lambda: now)
        == "sent"
    )
    with factory() as s:
        row = s.execute(select(SmsMessageRow).where(SmsMessageRow.dedupe_key == payload["key"])).scalar_one()
    assert (row.status, row.attempts, row.provider_message_id) == ("sent", 2, "F2")

    claimed = {
        "kind": "sms_reply",
        "homeworker_id": worker,
        "command": "",
        "key": f"sms_reply:{uuid.uuid4()}",
    }

    class Crashing:
        name = "crashing"

        def send(self, *, to: str, text: str) -> SentSms:
            raise RuntimeError("the worker died mid-send")

    with pytest.raises(RuntimeError):
        channels.deliver_sms(factory, keyring=KEYRING, sender=Crashing(), payload=claimed, clock=lambda: now)
    with pytest.raises(SmsTemporaryFailure) as busy:  # still claimed by the attempt that died
        channels.deliver_sms(
            factory, keyring=KEYRING, sender=SandboxSmsSender(), payload=claimed, clock=lambda: now
        )
    assert busy.value.code == "busy" and 0 < (busy.value.retry_after or 0) <= 60
    later = now + channels.SEND_CLAIM + timedelta(seconds=1)
    assert (
        channels.deliver_sms(
            factory, keyring=KEYRING, sender=SandboxSmsSender(), payload=claimed, clock=lambda: later
        )
        == "sent"
    )


def replies(worker: int, count: int) -> list[dict[str, object]]:
    return [
        {"kind": "sms_reply", "homeworker_id": worker, "command": "help", "key": f"sms_reply:{uuid.uuid4()}"}
        for _ in range(count)
    ]


def sms_rows(factory: sessionmaker[Session], payloads: list[dict[str, object]]) -> list[tuple[str, int]]:
    with factory() as s:
        rows = {
            r.dedupe_key: (r.status, r.attempts)
            for r in s.execute(
                select(SmsMessageRow).where(SmsMessageRow.dedupe_key.in_([p["key"] for p in payloads]))
            ).scalars()
        }
    return [rows[str(p["key"])] for p in payloads]


def test_a_group_of_messages_is_sent_once_each(factory: sessionmaker[Session]) -> None:
    worker = make_worker(factory, make_buyer(factory))
    payloads, sender, now = replies(worker, 3), SandboxSmsSender(), datetime.now(UTC)
    first = channels.deliver_sms_many(
        factory, keyring=KEYRING, sender=sender, payloads=payloads, clock=lambda: now
    )
    again = channels.deliver_sms_many(
        factory, keyring=KEYRING, sender=sender, payloads=payloads, clock=lambda: now
    )
    assert (first, again) == (["sent"] * 3, ["sent"] * 3)
    assert len(sender.to(phone_of(factory, worker))) == 3
    assert sms_rows(factory, payloads) == [("sent", 1)] * 3


def test_one_message_the_gateway_cannot_take_now_holds_up_no_other_in_its_group(
    factory: sessionmaker[Session],
) -> None:
    worker = make_worker(factory, make_buyer(factory))
    payloads, flaky, now = replies(worker, 3), Flaky(), datetime.now(UTC)
    outcomes = channels.deliver_sms_many(
        factory, keyring=KEYRING, sender=flaky, payloads=payloads, clock=lambda: now
    )
    assert isinstance(outcomes[0], SmsTemporaryFailure) and outcomes[1:] == ["sent", "sent"]
    assert sms_rows(factory, payloads) == [("pending", 1), ("sent", 1), ("sent", 1)]


def test_a_message_named_twice_in_a_group_is_sent_once(factory: sessionmaker[Session]) -> None:
    worker = make_worker(factory, make_buyer(factory))
    [payload] = replies(worker, 1)
    sender, now = SandboxSmsSender(), datetime.now(UTC)
    outcomes = channels.deliver_sms_many(
        factory, keyring=KEYRING, sender=sender, payloads=[payload, payload], clock=lambda: now
    )
    assert outcomes[0] == "sent" and isinstance(outcomes[1], SmsTemporaryFailure)
    assert len(sender.to(phone_of(factory, worker))) == 1


def test_a_payload_that_cannot_be_read_is_skipped_and_the_rest_of_its_group_sent(
    factory: sessionmaker[Session],
) -> None:
    worker = make_worker(factory, make_buyer(factory))
    unreadable = [{"kind": "payout_succeeded", "payout_id": 10**12}, {"kind": "no_such_kind"}]
    payloads, sender, now = (
        [unreadable[0], *replies(worker, 1), unreadable[1]],
        SandboxSmsSender(),
        datetime.now(UTC),
    )
    outcomes = channels.deliver_sms_many(
        factory, keyring=KEYRING, sender=sender, payloads=payloads, clock=lambda: now
    )
    assert outcomes == ["skipped", "sent", "skipped"]


def test_a_message_that_cannot_be_opened_holds_up_no_other_in_its_group(
    factory: sessionmaker[Session],
) -> None:
    from payments import pii

    buyer = make_buyer(factory)
    retired = pii.Keyring.from_keys([pii.generate_key()])
    sealed_elsewhere, worker = make_worker(factory, buyer, keyring=retired), make_worker(factory, buyer)
    payloads, sender = [*replies(sealed_elsewhere, 1), *replies(worker, 1)], SandboxSmsSender()
    now = datetime.now(UTC)
    outcomes = channels.deliver_sms_many(
        factory, keyring=KEYRING, sender=sender, payloads=payloads, clock=lambda: now
    )
    assert isinstance(outcomes[0], pii.DecryptionFailed) and outcomes[1] == "sent"
    assert len(sender.to(phone_of(factory, worker))) == 1


class Dying:
    """A gateway that takes one message, then the worker process dies."""

    name = "dying"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, *, to: str, text: str) -> SentSms:
        if self.sent:
            raise SystemExit("killed")
        self.sent.append(text)
        return SentSms(message_id="D1", status="queued")


def test_after_a_crash_mid_group_the_unsent_messages_wait_out_their_claim_and_go_out_once(
    factory: sessionmaker[Session],
) -> None:
    worker = make_worker(factory, make_buyer(factory))
    payloads, now = replies(worker, 3), datetime.now(UTC)
    with pytest.raises(SystemExit):
        channels.deliver_sms_many(
            factory, keyring=KEYRING, sender=Dying(), payloads=payloads, clock=lambda: now
        )
    sender = SandboxSmsSender()
    soon = channels.deliver_sms_many(
        factory, keyring=KEYRING, sender=sender, payloads=payloads, clock=lambda: now
    )
    assert soon[0] == "sent" and all(
        isinstance(o, SmsTemporaryFailure) and o.code == "busy" for o in soon[1:]
    )
    later = now + channels.SEND_CLAIM + timedelta(seconds=1)
    after = channels.deliver_sms_many(
        factory, keyring=KEYRING, sender=sender, payloads=payloads, clock=lambda: later
    )
    assert after == ["sent"] * 3
    assert len(sender.to(phone_of(factory, worker))) == 2
    assert sms_rows(factory, payloads) == [("sent", 1)] * 3


def test_a_message_whose_group_claim_ran_out_is_not_sent_again_after_another_attempt_sent_it(
    factory: sessionmaker[Session],
) -> None:
    worker = make_worker(factory, make_buyer(factory))
    payloads, now = replies(worker, 2), datetime.now(UTC)
    late = now + channels.SEND_CLAIM + timedelta(seconds=1)
    clock = [now]
    other = SandboxSmsSender()

    class Slow:
        """Takes longer than the claim; meanwhile another attempt sends the second message."""

        name = "slow"

        def __init__(self) -> None:
            self.texts: list[str] = []

        def send(self, *, to: str, text: str) -> SentSms:
            self.texts.append(text)
            if len(self.texts) == 1:
                clock[0] = late
                assert (
                    channels.deliver_sms(
                        factory, keyring=KEYRING, sender=other, payload=payloads[1], clock=lambda: late
                    )
                    == "sent"
                )
            return SentSms(message_id=f"S{len(self.texts)}", status="queued")

    slow = Slow()
    outcomes = channels.deliver_sms_many(
        factory, keyring=KEYRING, sender=slow, payloads=payloads, clock=lambda: clock[0]
    )
    assert outcomes == ["sent", "sent"]
    assert (len(slow.texts), len(other.to(phone_of(factory, worker)))) == (1, 1)


def test_a_dispute_is_opened_once_per_session(factory: sessionmaker[Session]) -> None:
    buyer = make_buyer(factory)
    worker = make_worker(factory, buyer)
    now = datetime.now(UTC)
    session_id = uuid.uuid4().hex
    with atomic(factory) as s:
        first = channels.open_dispute(
            s, homeworker_id=worker, kind=DisputeKind.NOT_PAID, channel="ussd", session_id=session_id, now=now
        )
        again = channels.open_dispute(
            s, homeworker_id=worker, kind=DisputeKind.NOT_PAID, channel="ussd", session_id=session_id, now=now
        )
    assert first == again and first.startswith("LP-") and len(first) == 9
    with factory() as s:
        row = s.execute(select(DisputeRow).where(DisputeRow.reference == first)).scalar_one()
    assert row.buyer_id == buyer.principal.organization_id and row.kind == "not_paid"


def test_old_sessions_are_purged(factory: sessionmaker[Session]) -> None:
    buyer = make_buyer(factory)
    worker = make_worker(factory, buyer)
    long_ago = datetime.now(UTC) - timedelta(days=3)
    dial = Dial(factory, phone_of(factory, worker), long_ago)
    dial.send()
    with atomic(factory) as s:
        assert channels.purge_ussd_sessions(s, now=datetime.now(UTC)) >= 1
    with factory() as s:
        assert s.execute(select(UssdSessionRow).where(UssdSessionRow.session_id == dial.id)).first() is None


@pytest.mark.parametrize(
    ("now", "start"),
    [
        (datetime(2026, 3, 31, 20, 0, tzinfo=UTC), datetime(2026, 3, 31, 17, 0, tzinfo=UTC)),  # 1 April WIB
        (datetime(2026, 3, 15, 9, 0, tzinfo=UTC), datetime(2026, 2, 28, 17, 0, tzinfo=UTC)),
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), datetime(2025, 12, 31, 17, 0, tzinfo=UTC)),
    ],
)
def test_this_month_is_her_month_in_western_indonesia_time(now: datetime, start: datetime) -> None:
    assert channels.month_start(now) == start


def test_the_channels_migration_goes_down_and_up_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'channels.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "0004")
    engine = create_engine(url)
    assert not {"ussd_sessions", "sms_messages"} & set(inspect(engine).get_table_names())
    engine.dispose()
    upgrade(url)
    engine = create_engine(url)
    assert {"ussd_sessions", "sms_messages"} <= set(inspect(engine).get_table_names())
    engine.dispose()
