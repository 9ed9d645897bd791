"""Deliveries: pieces handed in, then confirmed as accepted or rejected by the buyer.

Confirming is the moment money becomes owed: one ledger entry moves the earning from the
order's held funds to the homeworker's earned balance and the commission to the
intermediary, and — when she has an outstanding advance (kasbon) — recovers part of it,
never more than half of this earning. The order row is locked first, so concurrent
confirmations on one order never accept more pieces than were put out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.orm import Session

from ledger import EntryDraft, Posting, journal
from ledger.tables import table_of
from payments import adjustments, chart, orders, parties, rates
from payments.errors import InvalidState, NotFound, OverDelivery, ValidationFailed
from payments.parties import Principal, Role
from payments.tables import AssignmentRow, DeliveryRow

_deliveries = table_of(DeliveryRow)
_assignments = table_of(AssignmentRow)


class DeliveryStatus(StrEnum):
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    CONFIRMED = "confirmed"


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    order_id: int
    homeworker_id: int
    pieces: int
    status: DeliveryStatus
    accepted: int | None
    rejected: int | None
    reason: str | None
    earning: int | None
    commission: int | None
    recovered: int | None
    entry_id: int | None
    recorded_at: datetime
    confirmed_at: datetime | None


def record(
    session: Session, *, principal: Principal, order_id: int, homeworker_id: int, pieces: int, now: datetime
) -> Delivery:
    """Pieces handed in by a homeworker, awaiting the buyer's confirmation."""
    principal.require(Role.BUYER, Role.INTERMEDIARY)
    order = orders.get(session, principal=principal, order_id=order_id)
    if not 0 < pieces <= orders.MAX_PIECES:
        raise ValidationFailed(f"pieces must be between 1 and {orders.MAX_PIECES}", field="pieces")
    row = orders.lock(session, order_id=order_id)
    if row.status != orders.OrderStatus.OPEN.value:
        raise InvalidState(f"order is {row.status} and takes no more deliveries", status=row.status)
    assignment = _assignment(session, order_id, homeworker_id, for_update=True)
    waiting = _awaiting(session, order_id, homeworker_id)
    room = assignment.quantity - assignment.accepted - waiting
    if pieces > room:
        raise OverDelivery(
            f"only {max(room, 0)} more pieces can be delivered on this assignment",
            assigned=assignment.quantity,
            accepted=assignment.accepted,
            awaiting=waiting,
        )
    delivery_id = session.execute(
        insert(_deliveries).returning(_deliveries.c.id),
        {
            "order_id": order.id,
            "homeworker_id": homeworker_id,
            "pieces": pieces,
            "status": DeliveryStatus.AWAITING_CONFIRMATION.value,
            "recorded_by": principal.organization_id,
            "recorded_at": now,
        },
    ).scalar_one()
    session.execute(
        update(_assignments)
        .where(_assignments.c.order_id == order_id, _assignments.c.homeworker_id == homeworker_id)
        .values(delivered=_assignments.c.delivered + pieces)
    )
    return get(session, principal=principal, delivery_id=delivery_id)


def confirm(
    session: Session,
    *,
    principal: Principal,
    delivery_id: int,
    accepted: int,
    rejected: int,
    reason: str | None,
    now: datetime,
) -> Delivery:
    """Split a delivery into accepted and rejected pieces and post what is now owed."""
    principal.require(Role.BUYER)
    delivery = _row(session, delivery_id)
    order_row = orders.lock(session, order_id=delivery.order_id)
    if order_row.buyer_id != principal.organization_id:
        raise NotFound("delivery not found")
    delivery = _row(session, delivery_id, for_update=True)
    if delivery.status != DeliveryStatus.AWAITING_CONFIRMATION.value:
        raise InvalidState("this delivery is already confirmed", status=delivery.status)
    if accepted < 0 or rejected < 0 or accepted > orders.MAX_PIECES or rejected > orders.MAX_PIECES:
        raise ValidationFailed("accepted and rejected are counts of pieces, 0 or more", field="accepted")
    if accepted + rejected != delivery.pieces:
        raise ValidationFailed(
            f"accepted + rejected must equal the {delivery.pieces} pieces delivered", field="accepted"
        )
    reason = (reason or "").strip() or None
    if rejected and not reason:
        raise ValidationFailed("say why pieces were rejected", field="reason")
    if reason and len(reason) > 500:
        raise ValidationFailed("the reason is at most 500 characters", field="reason")
    assignment = _assignment(session, delivery.order_id, delivery.homeworker_id, for_update=True)
    order_accepted = session.execute(
        select(func.coalesce(func.sum(_assignments.c.accepted), 0)).where(
            _assignments.c.order_id == delivery.order_id
        )
    ).scalar_one()
    if assignment.accepted + accepted > assignment.quantity or order_accepted + accepted > order_row.quantity:
        raise OverDelivery(
            "accepting these pieces would exceed what was put out",
            assigned=assignment.quantity,
            already_accepted=assignment.accepted,
            order_quantity=order_row.quantity,
        )
    amounts = rates.delivery_amounts(
        before=assignment.accepted,
        accepted=accepted,
        rate=Decimal(order_row.rate),
        unit=rates.Unit(order_row.unit),
        commission=orders.commission_of(order_row),
    )
    earned_account = parties.earnings_account(
        session, homeworker_id=delivery.homeworker_id, buyer_id=order_row.buyer_id, now=now
    )
    outstanding = adjustments.outstanding_advance(
        session, homeworker_id=delivery.homeworker_id, buyer_id=order_row.buyer_id
    )
    recovered = rates.cap_deductions(payment=amounts.earning, requested=outstanding) if outstanding else 0
    entry_id = None
    if amounts.total > 0:
        postings = [
            Posting.debit(order_row.held_account_id, amounts.total, chart.CURRENCY),
            Posting.credit(earned_account, amounts.earning, chart.CURRENCY),
        ]
        if amounts.commission:
            intermediary = parties.get_organization(
                session, principal=_platform(), organization_id=order_row.intermediary_id
            )
            assert intermediary.commission_account_id is not None
            postings.append(
                Posting.credit(intermediary.commission_account_id, amounts.commission, chart.CURRENCY)
            )
        if recovered:
            buyer = parties.get_organization(
                session, principal=_platform(), organization_id=order_row.buyer_id
            )
            assert buyer.available_account_id is not None
            postings += [
                Posting.debit(earned_account, recovered, chart.CURRENCY),
                Posting.credit(buyer.available_account_id, recovered, chart.CURRENCY),
            ]
        entry_id = journal.post(
            session,
            EntryDraft(
                key=f"delivery:{delivery_id}:confirm",
                postings=tuple(postings),
                effective_at=now,
                description=f"order {order_row.reference}: {accepted} accepted, {rejected} rejected",
                metadata={
                    "kind": "delivery_confirmed",
                    "delivery_id": delivery_id,
                    "order_id": order_row.id,
                    "homeworker_id": delivery.homeworker_id,
                    "accepted": accepted,
                    "rejected": rejected,
                    "rate": str(order_row.rate),
                    "unit": order_row.unit,
                    "earning": amounts.earning,
                    "commission": amounts.commission,
                    "advance_recovered": recovered,
                },
            ),
            now=now,
        ).id
    if recovered:
        adjustments.record_recovery(
            session,
            buyer_id=order_row.buyer_id,
            homeworker_id=delivery.homeworker_id,
            amount=recovered,
            delivery_id=delivery_id,
            entry_id=entry_id,
            now=now,
        )
    session.execute(
        update(_assignments)
        .where(
            _assignments.c.order_id == delivery.order_id,
            _assignments.c.homeworker_id == delivery.homeworker_id,
        )
        .values(accepted=_assignments.c.accepted + accepted, rejected=_assignments.c.rejected + rejected)
    )
    session.execute(
        update(_deliveries)
        .where(_deliveries.c.id == delivery_id)
        .values(
            status=DeliveryStatus.CONFIRMED.value,
            accepted=accepted,
            rejected=rejected,
            reason=reason,
            earning=amounts.earning,
            commission=amounts.commission,
            recovered=recovered,
            entry_id=entry_id,
            confirmed_at=now,
        )
    )
    return get(session, principal=principal, delivery_id=delivery_id)


def get(session: Session, *, principal: Principal, delivery_id: int) -> Delivery:
    row = _row(session, delivery_id)
    orders.get(session, principal=principal, order_id=row.order_id)
    return _delivery(row)


def list_for_order(session: Session, *, principal: Principal, order_id: int) -> list[Delivery]:
    orders.get(session, principal=principal, order_id=order_id)
    rows = session.execute(
        select(_deliveries).where(_deliveries.c.order_id == order_id).order_by(_deliveries.c.id)
    )
    return [_delivery(r) for r in rows]


def list_awaiting(session: Session, *, principal: Principal) -> list[Delivery]:
    """Deliveries awaiting this buyer's confirmation."""
    from payments.tables import OrderRow

    order_table = table_of(OrderRow)
    query = (
        select(_deliveries)
        .join(order_table, order_table.c.id == _deliveries.c.order_id)
        .where(_deliveries.c.status == DeliveryStatus.AWAITING_CONFIRMATION.value)
        .order_by(_deliveries.c.id)
    )
    if not principal.platform_wide:
        query = query.where(order_table.c.buyer_id == principal.organization_id)
    return [_delivery(r) for r in session.execute(query)]


def _awaiting(session: Session, order_id: int, homeworker_id: int) -> int:
    return int(
        session.execute(
            select(func.coalesce(func.sum(_deliveries.c.pieces), 0)).where(
                _deliveries.c.order_id == order_id,
                _deliveries.c.homeworker_id == homeworker_id,
                _deliveries.c.status == DeliveryStatus.AWAITING_CONFIRMATION.value,
            )
        ).scalar_one()
    )


def _assignment(session: Session, order_id: int, homeworker_id: int, *, for_update: bool = False) -> Row[Any]:
    query = select(_assignments).where(
        _assignments.c.order_id == order_id, _assignments.c.homeworker_id == homeworker_id
    )
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    if row is None:
        raise ValidationFailed("this homeworker is not assigned to the order", field="homeworker_id")
    return row


def _row(session: Session, delivery_id: int, *, for_update: bool = False) -> Row[Any]:
    query = select(_deliveries).where(_deliveries.c.id == delivery_id)
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    if row is None:
        raise NotFound("delivery not found")
    return row


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(
        id=row.id,
        order_id=row.order_id,
        homeworker_id=row.homeworker_id,
        pieces=row.pieces,
        status=DeliveryStatus(row.status),
        accepted=row.accepted,
        rejected=row.rejected,
        reason=row.reason,
        earning=row.earning,
        commission=row.commission,
        recovered=row.recovered,
        entry_id=row.entry_id,
        recorded_at=row.recorded_at,
        confirmed_at=row.confirmed_at,
    )


def _platform() -> Principal:
    return Principal(key_id=0, role=Role.ADMIN, organization_id=None)
