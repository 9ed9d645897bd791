"""Money owed to a homeworker outside piece work: allowances, bonuses, and advances.

An allowance (tunjangan listrik) or a bonus (THR) moves buyer funds to her earned balance.
An advance (kasbon) does the same now and is recovered later from her earnings — never
more than half of any one earning (DOMAIN.md) — each recovery its own visible line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, case, func, insert, literal, or_, select
from sqlalchemy.orm import Session

from ledger import EntryDraft, Posting, journal
from ledger.tables import table_of
from payments import chart, parties
from payments.errors import ValidationFailed
from payments.parties import Principal, Role
from payments.tables import AdjustmentRow

_adjustments = table_of(AdjustmentRow)


class AdjustmentKind(StrEnum):
    ALLOWANCE = "allowance"
    BONUS = "bonus"
    ADVANCE = "advance"
    RECOVERY = "recovery"


@dataclass(frozen=True, slots=True)
class Adjustment:
    id: int
    buyer_id: int
    homeworker_id: int
    kind: AdjustmentKind
    amount: int
    memo: str
    delivery_id: int | None
    entry_id: int | None
    created_at: datetime


def add(
    session: Session,
    *,
    principal: Principal,
    homeworker_id: int,
    kind: AdjustmentKind,
    amount: int,
    memo: str,
    now: datetime,
) -> Adjustment:
    """Pay an allowance, bonus or advance from the buyer's available funds."""
    principal.require(Role.BUYER)
    buyer_id = principal.organization_id
    assert buyer_id is not None
    parties.check_visible(session, principal=principal, homeworker_id=homeworker_id)
    if kind is AdjustmentKind.RECOVERY:
        raise ValidationFailed("recoveries are made from earnings, not entered by hand", field="kind")
    memo = memo.strip()
    if not memo or len(memo) > 500:
        raise ValidationFailed("a memo of 1 to 500 characters says what this is for", field="memo")
    if amount <= 0:
        raise ValidationFailed("amount must be positive", field="amount")
    buyer = parties.get_organization(session, principal=principal, organization_id=buyer_id)
    assert buyer.available_account_id is not None
    earned = parties.earnings_account(
        session, homeworker_id=homeworker_id, buyer_id=buyer_id, now=now, for_update=True
    )
    adjustment_id = session.execute(
        insert(_adjustments).returning(_adjustments.c.id),
        {
            "buyer_id": buyer_id,
            "homeworker_id": homeworker_id,
            "kind": kind.value,
            "amount": amount,
            "memo": memo,
            "entry_id": None,
            "created_at": now,
        },
    ).scalar_one()
    entry = journal.post(
        session,
        EntryDraft(
            key=f"adjustment:{adjustment_id}",
            postings=(
                Posting.debit(buyer.available_account_id, amount, chart.CURRENCY),
                Posting.credit(earned, amount, chart.CURRENCY),
            ),
            effective_at=now,
            description=f"{kind.value}: {memo}",
            metadata={"kind": kind.value, "adjustment_id": adjustment_id, "homeworker_id": homeworker_id},
        ),
        now=now,
        remember_refusal=False,  # the adjustment rolls back with it: its id may come again
    )
    session.execute(_adjustments.update().where(_adjustments.c.id == adjustment_id).values(entry_id=entry.id))
    return _get(session, adjustment_id)


def outstanding_advance(session: Session, *, homeworker_id: int, buyer_id: int) -> int:
    """Advances not yet recovered."""
    return int(session.execute(select(outstanding_advance_of(homeworker_id, buyer_id))).scalar_one())


def outstanding_advance_of(homeworker_id: Any, buyer_id: Any) -> Any:
    """Advances minus recoveries, as a scalar subquery, for a homeworker and buyer given as
    values or as columns of an enclosing query (the confirmation reads it beside its locks)."""
    return (
        select(
            func.coalesce(
                func.sum(
                    case(
                        (_adjustments.c.kind == literal(AdjustmentKind.ADVANCE.value), _adjustments.c.amount),
                        else_=-_adjustments.c.amount,
                    )
                ),
                0,
            )
        )
        .where(
            _adjustments.c.homeworker_id == homeworker_id,
            _adjustments.c.buyer_id == buyer_id,
            # not IN (…): an expanding parameter would stop the confirmation compiling it once
            or_(
                _adjustments.c.kind == literal(AdjustmentKind.ADVANCE.value),
                _adjustments.c.kind == literal(AdjustmentKind.RECOVERY.value),
            ),
        )
        .scalar_subquery()
    )


def record_recovery(
    session: Session,
    *,
    buyer_id: int,
    homeworker_id: int,
    amount: int,
    delivery_id: int,
    entry_id: int | None,
    now: datetime,
) -> None:
    session.execute(
        insert(_adjustments),
        {
            "buyer_id": buyer_id,
            "homeworker_id": homeworker_id,
            "kind": AdjustmentKind.RECOVERY.value,
            "amount": amount,
            "memo": f"advance recovered from delivery {delivery_id}",
            "delivery_id": delivery_id,
            "entry_id": entry_id,
            "created_at": now,
        },
    )


def list_for(
    session: Session,
    *,
    homeworker_id: int,
    buyer_id: int | None,
    start: datetime | None,
    end: datetime | None,
) -> list[Adjustment]:
    query = (
        select(_adjustments).where(_adjustments.c.homeworker_id == homeworker_id).order_by(_adjustments.c.id)
    )
    if buyer_id is not None:
        query = query.where(_adjustments.c.buyer_id == buyer_id)
    if start is not None:
        query = query.where(_adjustments.c.created_at >= start)
    if end is not None:
        query = query.where(_adjustments.c.created_at <= end)
    return [_to(r) for r in session.execute(query)]


def _get(session: Session, adjustment_id: int) -> Adjustment:
    return _to(session.execute(select(_adjustments).where(_adjustments.c.id == adjustment_id)).one())


def _to(r: Row[Any]) -> Adjustment:
    return Adjustment(
        id=r.id,
        buyer_id=r.buyer_id,
        homeworker_id=r.homeworker_id,
        kind=AdjustmentKind(r.kind),
        amount=r.amount,
        memo=r.memo,
        delivery_id=r.delivery_id,
        entry_id=r.entry_id,
        created_at=r.created_at,
    )
