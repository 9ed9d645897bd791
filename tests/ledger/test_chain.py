"""Tamper evidence: the chain, its signed checkpoints, and verify naming the first break."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from ledger import AccountType, atomic, chain, journal, reports, sealing
from tests.factories import fund, make_account, transfer
from upah.db import make_engine, make_session_factory

KEY = chain.load_private_key(chain.generate_private_key_text())


def _book(factory: sessionmaker[Session], entries: int) -> list[int]:
    ids = []
    with atomic(factory) as s:
        a, b = make_account(s, type=AccountType.LIABILITY), make_account(s, type=AccountType.LIABILITY)
        ids.append(fund(s, a, 10_000).id)
        ids.extend(
            journal.post(s, transfer(a.id, b.id, 10 + i), now=datetime.now(UTC)).id
            for i in range(entries - 1)
        )
    with atomic(factory) as s:
        sealing.seal(s, now=datetime.now(UTC), signing_key=KEY, checkpoint_every=4)
    return ids


@pytest.fixture
def fresh(fresh_pg_url: str) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    engine = make_engine(fresh_pg_url)
    yield engine, make_session_factory(engine)
    engine.dispose()


def test_digest_changes_when_any_posting_changes() -> None:
    item = chain.SealInput(
        1, "k", datetime(2026, 1, 1, tzinfo=UTC), "", {}, None, [(1, 5, "IDR"), (2, -5, "IDR")]
    )
    altered = chain.SealInput(
        1, "k", datetime(2026, 1, 1, tzinfo=UTC), "", {}, None, [(1, 6, "IDR"), (2, -6, "IDR")]
    )
    assert chain.digest(chain.GENESIS, 1, item) != chain.digest(chain.GENESIS, 1, altered)


def test_checkpoint_signature_verifies_with_the_public_key_only() -> None:
    signature = chain.sign_checkpoint(KEY, 7, "ab" * 32)
    assert chain.verify_checkpoint(chain.public_key_pem(KEY), 7, "ab" * 32, signature)
    assert not chain.verify_checkpoint(chain.public_key_pem(KEY), 7, "cd" * 32, signature)


def test_pem_and_base64_signing_keys_both_load() -> None:
    from cryptography.hazmat.primitives import serialization

    pem = KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    assert chain.public_key_pem(chain.load_private_key(pem)) == chain.public_key_pem(KEY)


def test_an_untouched_ledger_verifies(fresh: tuple[Engine, sessionmaker[Session]]) -> None:
    _, factory = fresh
    _book(factory, 10)
    with factory() as s:
        report = reports.verify_chain(s)
    assert report.ok, report.problems
    assert (report.entries_checked, report.checkpoints_checked, report.unsealed) == (10, 2, 0)


def test_sealing_twice_seals_only_new_entries(fresh: tuple[Engine, sessionmaker[Session]]) -> None:
    _, factory = fresh
    _book(factory, 3)
    with atomic(factory) as s:
        assert sealing.seal(s, now=datetime.now(UTC), signing_key=KEY) == 0


def test_an_amount_changed_with_raw_sql_and_triggers_disabled_is_named_by_sequence(
    fresh: tuple[Engine, sessionmaker[Session]],
) -> None:
    engine, factory = fresh
    ids = _book(factory, 10)
    target = ids[6]
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE ledger_postings DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE ledger_postings SET amount = -amount WHERE entry_id = :e"), {"e": target})
        conn.execute(text("ALTER TABLE ledger_postings ENABLE TRIGGER USER"))
    with factory() as s:
        report = reports.verify_chain(s)
        seq = s.execute(text("SELECT seq FROM ledger_seals WHERE entry_id = :e"), {"e": target}).scalar_one()
    assert not report.ok
    assert report.first_break is not None
    assert report.first_break.seq == seq
    assert report.first_break.kind == "digest_mismatch"


def test_a_rebuilt_chain_fails_its_signed_checkpoint(fresh: tuple[Engine, sessionmaker[Session]]) -> None:
    engine, factory = fresh
    _book(factory, 8)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE ledger_seals DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE ledger_seals SET digest = repeat('0', 64) WHERE seq = 4"))
        conn.execute(text("ALTER TABLE ledger_seals ENABLE TRIGGER USER"))
    with factory() as s:
        report = reports.verify_chain(s)
    assert not report.ok
    assert report.first_break is not None and report.first_break.seq == 4
