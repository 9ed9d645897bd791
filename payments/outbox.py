"""The transactional outbox: work for the queue, written in the same transaction as the
state that needs it, and relayed to the queue after commit by the worker — so a crash
between commit and enqueue loses nothing, and nothing is enqueued for a rolled-back change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert, select, update
from sqlalchemy.orm import Session

from ledger.bulk import insert_rows
from ledger.tables import table_of
from payments.tables import OutboxRow

_outbox = table_of(OutboxRow)

DISPATCH_PAYOUT = "payouts.dispatch"
DISPATCH_BATCH = "payouts.dispatch_batch"
RESOLVE_PAYOUT = "payouts.resolve"
RESOLVE_BATCH = "payouts.resolve_batch"
SEND_SMS = "sms.send"
APPLY_CALLBACK = "payouts.apply_callback"


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    topic: str
    payload: dict[str, Any]


def add(
    session: Session,
    *,
    topic: str,
    payload: dict[str, Any],
    now: datetime,
    available_at: datetime | None = None,
) -> None:
    session.execute(
        insert(_outbox),
        {"topic": topic, "payload": payload, "available_at": available_at or now, "created_at": now},
    )


def add_many(session: Session, *, topic: str, payloads: list[dict[str, Any]], now: datetime) -> None:
    insert_rows(
        session,
        _outbox,
        [{"topic": topic, "payload": p, "available_at": now, "created_at": now} for p in payloads],
    )


def relay(session: Session, *, send: Callable[[Message], None], now: datetime, limit: int = 500) -> int:
    """Hand due messages to ``send`` (the queue) and mark them relayed; returns how many.

    Rows are locked with SKIP LOCKED on PostgreSQL so several relays never send one twice;
    a crash after sending and before commit sends again, which is why every task is idempotent.
    """
    query = (
        select(_outbox.c.id, _outbox.c.topic, _outbox.c.payload)
        .where(_outbox.c.relayed_at.is_(None), _outbox.c.available_at <= now)
        .order_by(_outbox.c.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = session.execute(query).all()
    for row in rows:
        send(Message(row.id, row.topic, row.payload))
    if rows:
        session.execute(update(_outbox).where(_outbox.c.id.in_([r.id for r in rows])).values(relayed_at=now))
    return len(rows)


def purge(session: Session, *, now: datetime, older_than: timedelta, limit: int = 10_000) -> int:
    """Forget up to ``limit`` messages relayed before ``now - older_than``; returns how many.

    Every payout, callback and SMS leaves a message; once relayed it is only history (the
    payouts' events and the SMS record keep what happened), and the table would otherwise grow
    for ever. A message never relayed is kept whatever its age. Bounded, so that one call is a
    short transaction: the task calls again until fewer are left.
    """
    if older_than <= timedelta(0):
        raise ValueError("the retention must be positive: a message being relayed would be forgotten")
    old = (
        select(_outbox.c.id)
        .where(_outbox.c.relayed_at.is_not(None), _outbox.c.relayed_at < now - older_than)
        .order_by(_outbox.c.id)
        .limit(limit)
    )
    result = cast(
        "CursorResult[Any]", session.execute(delete(_outbox).where(_outbox.c.id.in_(old.scalar_subquery())))
    )
    return int(result.rowcount or 0)
