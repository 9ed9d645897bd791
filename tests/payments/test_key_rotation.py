"""Rotating UPAH_SECRET_KEYS: a new key put first, old rows rewritten, the old key dropped.

Each test has a database of its own (SQLite and PostgreSQL): a rotation reads whole tables.
K1 is the key the rows were first written with, K2 the new one put before it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

from integrations import phones
from integrations.sms_senders import SandboxSmsSender
from ledger import atomic
from ledger.tables import Base
from payments import channels, idempotency, parties, pii, rotation, selfservice
from payments.errors import DuplicateReference
from payments.tables import HomeworkerRow, IdempotencyRow, PayoutRow
from tests.conftest import create_pg_database, drop_pg_database
from tests.payments.scenario import Buyer, earn, make_buyer, make_worker, run
from upah.db import make_engine, make_session_factory
from upah.migrate import upgrade

K1_TEXT, K2_TEXT = pii.generate_key(), pii.generate_key()
K1 = pii.Keyring.from_keys([K1_TEXT])
ROTATING = pii.Keyring.from_keys([K2_TEXT, K1_TEXT])
K2 = pii.Keyring.from_keys([K2_TEXT])
PIN = "583927"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    postgres = request.param == "postgresql"
    url = create_pg_database("upah_rot") if postgres else f"sqlite:///{tmp_path / 'rotation.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    if postgres:
        drop_pg_database(url)


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def buyer(factory: sessionmaker[Session]) -> Buyer:
    return make_buyer(factory)


def rotate_all(factory: sessionmaker[Session], keyring: pii.Keyring, *, limit: int = 2) -> dict[str, int]:
    """What ``upah keys rotate`` does, in batches of ``limit``: rows rewritten per table."""
    rewritten = {}
    for target in rotation.TARGETS:
        rewritten[target.name] = 0
        after = None
        while True:
            with atomic(factory) as s:
                batch = rotation.rotate_batch(s, keyring=keyring, target=target, after=after, limit=limit)
            if batch.last is None:
                break
            assert batch.unreadable == 0
            rewritten[target.name] += batch.rewritten
            after = batch.last
    return rewritten


def phone_of(factory: sessionmaker[Session], worker_id: int, keyring: pii.Keyring) -> str:
    with factory() as s:
        token = s.execute(select(HomeworkerRow.phone_enc).where(HomeworkerRow.id == worker_id)).scalar_one()
    return pii.decrypt(keyring, token, context="homeworker.phone")


def homeworker_row(factory: sessionmaker[Session], worker_id: int) -> HomeworkerRow:
    with factory() as s:
        return s.execute(select(HomeworkerRow).where(HomeworkerRow.id == worker_id)).scalar_one()


def first_screen(factory: sessionmaker[Session], keyring: pii.Keyring, phone: str) -> channels.UssdTurn:
    return channels.ussd_turn(
        factory, keyring=keyring, session_id=uuid.uuid4().hex, phone=phone, steps=[], now=datetime.now(UTC)
    )


def register(
    factory: sessionmaker[Session], buyer: Buyer, keyring: pii.Keyring, phone: str, nik: str | None = None
) -> parties.Homeworker:
    now = datetime.now(UTC)
    with atomic(factory) as s:
        return parties.register_homeworker(
            s,
            principal=buyer.principal,
            keyring=keyring,
            name="Sri Wahyuni",
            phone=phone,
            region="ID-JK",
            wallet_provider="dana",
            wallet_account=phone,
            nik=nik,
            consent_at=now,
            language="id",
            now=now,
        )


def new_phone() -> str:
    return phones.demo_number(uuid.uuid4().int % 100_000)


def new_nik() -> str:
    return f"3173{uuid.uuid4().int % 10**12:012d}"


# --- while both keys are in the ring -------------------------------------------------------------


def test_after_a_new_key_is_put_first_ussd_still_finds_her_by_phone(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    worker = make_worker(factory, buyer, keyring=K1)
    turn = first_screen(factory, ROTATING, phone_of(factory, worker, K1))
    assert turn.outcome != selfservice.unknown_number()


def test_after_a_new_key_is_put_first_an_sms_from_her_phone_is_answered(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    worker = make_worker(factory, buyer, keyring=K1)
    with atomic(factory) as s:
        outcome = channels.receive_sms(
            s,
            keyring=ROTATING,
            sender=phone_of(factory, worker, K1),
            text="SALDO",
            dedupe_key=uuid.uuid4().hex,
            now=datetime.now(UTC),
        )
    assert outcome == "queued"


def test_after_a_new_key_is_put_first_her_phone_cannot_be_registered_again(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    phone = new_phone()
    register(factory, buyer, K1, phone)
    with pytest.raises(DuplicateReference) as refused:
        register(factory, buyer, ROTATING, phone)
    assert refused.value.details["field"] == "phone"


def test_after_a_new_key_is_put_first_her_nik_cannot_be_registered_again(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    nik = new_nik()
    register(factory, buyer, K1, new_phone(), nik=nik)
    with pytest.raises(DuplicateReference) as refused:
        register(factory, buyer, ROTATING, new_phone(), nik=nik)
    assert refused.value.details["field"] == "nik"


def test_after_a_new_key_is_put_first_new_registrations_are_sealed_and_indexed_with_it(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    worker = register(factory, buyer, ROTATING, new_phone(), nik=new_nik())
    row = homeworker_row(factory, worker.id)
    assert {pii.index_key_id(row.phone_index), pii.index_key_id(row.nik_index or "")} == {K2.primary_key_id}
    assert {pii.token_key_id(t) for t in (row.name_enc, row.phone_enc, row.nik_enc or "")} == {
        K2.primary_key_id
    }


def test_a_ussd_session_begun_before_the_new_key_goes_on_after_it(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    phone = phone_of(factory, make_worker(factory, buyer, keyring=K1), K1)
    now = datetime.now(UTC)
    for steps in ([], [PIN], [PIN, PIN]):  # her first use: she sets a PIN
        channels.ussd_turn(factory, keyring=K1, session_id="setup", phone=phone, steps=steps, now=now)
    session_id = uuid.uuid4().hex
    for steps in ([], [PIN]):  # logged in while the service ran with K1 alone
        channels.ussd_turn(factory, keyring=K1, session_id=session_id, phone=phone, steps=steps, now=now)
    turn = channels.ussd_turn(  # ...and the next key press reaches a restarted service
        factory, keyring=ROTATING, session_id=session_id, phone=phone, steps=[PIN, "1"], now=now
    )
    assert turn.outcome != selfservice.session_expired() and not turn.outcome.end


# --- the rotation --------------------------------------------------------------------------------


def test_rotation_leaves_every_homeworker_readable_with_the_new_key_alone(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    workers = [register(factory, buyer, K1, new_phone(), nik=new_nik()).id for _ in range(5)]
    rotate_all(factory, ROTATING)
    with factory() as s:
        found = [
            parties.get_homeworker(s, principal=buyer.principal, keyring=K2, homeworker_id=w) for w in workers
        ]
    assert {w.name for w in found} == {"Sri Wahyuni"}


def test_rotation_leaves_her_found_by_phone_with_the_new_key_alone(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    phone = new_phone()
    worker = register(factory, buyer, K1, phone).id
    rotate_all(factory, ROTATING)
    with factory() as s:
        assert parties.find_homeworker_by_phone(s, keyring=K2, phone=phone) == worker
    assert first_screen(factory, K2, phone).outcome != selfservice.unknown_number()


def test_rotation_leaves_her_nik_refused_for_a_second_registration_with_the_new_key_alone(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    nik = new_nik()
    register(factory, buyer, K1, new_phone(), nik=nik)
    rotate_all(factory, ROTATING)
    with pytest.raises(DuplicateReference):
        register(factory, buyer, K2, new_phone(), nik=nik)


def test_rotation_leaves_payout_accounts_readable_with_the_new_key_alone(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    worker = make_worker(factory, buyer, keyring=K1)
    earn(factory, buyer, worker, 20_000)
    run(factory, buyer)
    rotate_all(factory, ROTATING)
    with factory() as s:
        token = s.execute(select(PayoutRow.account_enc).where(PayoutRow.homeworker_id == worker)).scalar_one()
    assert pii.decrypt(K2, token, context="homeworker.wallet") == phone_of(factory, worker, K2)


def test_rotation_leaves_sms_records_readable_with_the_new_key_alone(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    worker = make_worker(factory, buyer, keyring=K1)
    sender = SandboxSmsSender()
    payload = {"kind": "pin_locked", "homeworker_id": worker, "key": f"lock:{uuid.uuid4()}"}
    assert (
        channels.deliver_sms(
            factory, keyring=K1, sender=sender, payload=payload, clock=lambda: datetime.now(UTC)
        )
        == "sent"
    )
    rotate_all(factory, ROTATING)
    with factory() as s:
        sent = channels.list_sent(s, keyring=K2, provider=sender.name)
    assert [(m.homeworker_id, m.to) for m in sent] == [(worker, phone_of(factory, worker, K2))]


def test_rotation_reseals_stored_idempotency_responses(factory: sessionmaker[Session]) -> None:
    body = b'{"name": "Sri Wahyuni"}'
    with atomic(factory) as s:
        s.execute(
            insert(IdempotencyRow),
            [
                {
                    "principal": "k1",
                    "key": "sealed",
                    "request_hash": "h",
                    "body": idempotency.seal(K1, body),
                    "created_at": datetime.now(UTC),
                },
                {
                    "principal": "k1",
                    "key": "raw",
                    "request_hash": "h",
                    "body": body,
                    "created_at": datetime.now(UTC),
                },
                {"principal": "k1", "key": "running", "request_hash": "h", "created_at": datetime.now(UTC)},
            ],
        )
    assert rotate_all(factory, ROTATING)["idempotency_keys"] == 1
    with factory() as s:
        stored = {r.key: r.body for r in s.execute(select(IdempotencyRow.key, IdempotencyRow.body))}
    assert idempotency.unseal(K2, stored["sealed"] or b"") == body
    assert (stored["raw"], stored["running"]) == (body, None)


def test_rotation_leaves_rows_already_on_the_new_key_as_they_are(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    worker = register(factory, buyer, ROTATING, new_phone()).id
    before = homeworker_row(factory, worker)
    assert rotate_all(factory, ROTATING)["homeworkers"] == 0
    after = homeworker_row(factory, worker)
    assert (after.name_enc, after.phone_enc, after.phone_index) == (
        before.name_enc,
        before.phone_enc,
        before.phone_index,
    )


def test_a_second_rotation_rewrites_nothing(factory: sessionmaker[Session], buyer: Buyer) -> None:
    for _ in range(3):
        make_worker(factory, buyer, keyring=K1)
    assert rotate_all(factory, ROTATING)["homeworkers"] == 3
    assert set(rotate_all(factory, ROTATING).values()) == {0}


def test_a_row_no_key_opens_is_counted_unreadable_and_the_rest_rotate(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    stranger = pii.Keyring.from_keys([pii.generate_key()])
    lost = make_worker(factory, buyer, keyring=stranger)
    kept = make_worker(factory, buyer, keyring=K1)
    target = rotation.TARGETS[0]
    with atomic(factory) as s:
        batch = rotation.rotate_batch(s, keyring=ROTATING, target=target)
    assert (batch.rewritten, batch.unreadable) == (1, 1)
    assert pii.token_key_id(homeworker_row(factory, lost).phone_enc) == stranger.primary_key_id
    assert pii.token_key_id(homeworker_row(factory, kept).phone_enc) == K2.primary_key_id


def test_status_counts_the_rows_left_on_an_older_key(factory: sessionmaker[Session], buyer: Buyer) -> None:
    make_worker(factory, buyer, keyring=K1)
    make_worker(factory, buyer, keyring=ROTATING)
    with factory() as s:
        counts = {c.table: (c.rows, c.stale) for c in rotation.status(s, keyring=ROTATING)}
    assert counts["homeworkers"] == (2, 1)


def test_status_counts_pins_still_made_with_an_older_key(
    factory: sessionmaker[Session], buyer: Buyer
) -> None:
    phone = phone_of(factory, make_worker(factory, buyer, keyring=K1), K1)
    now = datetime.now(UTC)
    for steps in ([], [PIN], [PIN, PIN]):
        channels.ussd_turn(factory, keyring=K1, session_id="setup", phone=phone, steps=steps, now=now)
    with factory() as s:
        assert rotation.stale_pins(s, keyring=ROTATING) == 1
        assert rotation.stale_pins(s, keyring=K1) == 0


def test_every_sealed_column_and_blind_index_in_the_schema_is_rotated() -> None:
    covered = {
        (t.name, column)
        for t in rotation.TARGETS
        for column in [s.column for s in t.sealed] + [i.column for i in t.indexes]
    }
    in_schema = {
        (table.name, column.name)
        for table in Base.metadata.tables.values()
        for column in table.columns
        if column.name.endswith(("_enc", "_index"))
    }
    assert in_schema <= covered
