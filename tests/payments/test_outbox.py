"""The outbox forgets what it relayed long ago, never what it has yet to relay (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ledger import atomic
from payments import outbox
from payments.tables import OutboxRow

WEEK = timedelta(days=7)


def add(factory: sessionmaker[Session], *, created: datetime, relayed: datetime | None) -> int:
    with atomic(factory) as s:
        row = OutboxRow(
            topic=outbox.SEND_SMS,
            payload={"kind": "test"},
            available_at=created,
            relayed_at=relayed,
            created_at=created,
        )
        s.add(row)
        s.flush()
        return row.id


def present(factory: sessionmaker[Session], ids: list[int]) -> set[int]:
    with factory() as s:
        return set(s.execute(select(OutboxRow.id).where(OutboxRow.id.in_(ids))).scalars())


def test_messages_relayed_before_the_retention_are_forgotten_and_the_others_kept(
    factory: sessionmaker[Session],
) -> None:
    now = datetime.now(UTC)
    old_relayed = add(factory, created=now - 2 * WEEK, relayed=now - 2 * WEEK)
    old_waiting = add(factory, created=now - 2 * WEEK, relayed=None)
    recently_relayed = add(factory, created=now - 2 * WEEK, relayed=now - WEEK + timedelta(hours=1))
    with atomic(factory) as s:
        assert outbox.purge(s, now=now, older_than=WEEK) >= 1
    assert present(factory, [old_relayed, old_waiting, recently_relayed]) == {old_waiting, recently_relayed}


def test_a_purge_forgets_at_most_its_limit_at_a_time(factory: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    with atomic(factory) as s:  # earlier tests' old messages go first
        while outbox.purge(s, now=now, older_than=WEEK):
            pass
    ids = [add(factory, created=now - 2 * WEEK, relayed=now - 2 * WEEK) for _ in range(3)]
    with atomic(factory) as s:
        assert outbox.purge(s, now=now, older_than=WEEK, limit=2) == 2
    assert len(present(factory, ids)) == 1


def test_a_retention_of_nothing_is_refused(factory: sessionmaker[Session]) -> None:
    with atomic(factory) as s, pytest.raises(ValueError, match="positive"):
        outbox.purge(s, now=datetime.now(UTC), older_than=timedelta(0))
