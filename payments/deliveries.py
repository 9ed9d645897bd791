"""Deliveries: pieces handed in, then confirmed as accepted or rejected by the buyer.

Confirming is the moment money becomes owed: one ledger entry moves the earning from the
order's held funds to the homeworker's earned balance and the commission to the
intermediary, and — when she has an outstanding advance (kasbon) — recovers part of it,
never more than half of this earning. The order row is locked first, so concurrent
confirmations on one order never accept more pieces than were put out; her earnings account
with the buyer is locked next, so confirmations on different orders never recover one
advance twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, cast, overload

from sqlalchemy import (
    BigInteger,
    Result,
    Row,
    and_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.expression import Executable

from ledger import EntryDraft, Posting, journal
from ledger.tables import table_of
from payments import adjustments, chart, orders, parties, rates
from payments.errors import InvalidState, NotFound, OverDelivery, ValidationFailed
from payments.parties import Principal, Role
from payments.tables import AdjustmentRow, AssignmentRow, DeliveryRow, EarningsAccountRow, OrderRow

_deliveries = table_of(DeliveryRow)
_assignments = table_of(AssignmentRow)
_orders = table_of(OrderRow)
_earnings = table_of(EarningsAccountRow)
_adjustments = table_of(AdjustmentRow)


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
    """Split a delivery into accepted and rejected pieces and post what is now owed.

    Round trips are what a confirmation costs, so it reads in two statements: the order row
    locked (every confirmation and delivery on an order serialises on it, so nothing below
    can change under us) and then her earnings account with this buyer (every recovery and
    advance between them serialises on it, whatever the order, so two confirmations cannot
    both recover one advance); then the delivery and her assignment locked together with the
    order's accepted total and her outstanding advance; one posting, two updates, and the
    delivery as written comes back from its UPDATE (no re-read).
    """
    principal.require(Role.BUYER)
    order_row = _execute(session, _LOCK_ORDER, {"delivery_id": delivery_id}).first()
    if order_row is None or order_row.buyer_id != principal.organization_id:
        raise NotFound("delivery not found")
    row = _locked_for_confirmation(session, delivery_id, buyer_id=order_row.buyer_id)
    delivery = row if row is not None else _row(session, delivery_id, for_update=True)
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
    if row is None:
        raise ValidationFailed("this homeworker is not assigned to the order", field="homeworker_id")
    if (
        row.assignment_accepted + accepted > row.assignment_quantity
        or row.order_accepted + accepted > order_row.quantity
    ):
        raise OverDelivery(
            "accepting these pieces would exceed what was put out",
            assigned=row.assignment_quantity,
            already_accepted=row.assignment_accepted,
            order_quantity=order_row.quantity,
        )
    amounts = rates.delivery_amounts(
        before=row.assignment_accepted,
        accepted=accepted,
        rate=Decimal(order_row.rate),
        unit=rates.Unit(order_row.unit),
        commission=orders.commission_of(order_row),
    )
    earned_account = order_row.earned_account
    outstanding = int(row.outstanding_advance)
    # Only read under her account's lock is the outstanding advance hers to recover: without
    # an account when the order was locked, an advance paid since is left for her next one.
    recovered = 0
    if earned_account is not None and outstanding > 0:
        recovered = rates.cap_deductions(payment=amounts.earning, requested=outstanding)
    if earned_account is None:  # her first earning from this buyer: open the account
        earned_account = parties.earnings_account(
            session, homeworker_id=delivery.homeworker_id, buyer_id=order_row.buyer_id, now=now
        )
    entry_id = None
    if amounts.total > 0:
        postings = [Posting.debit(order_row.held_account_id, amounts.total, chart.CURRENCY)]
        if amounts.earning:  # a piece worth under half a rupiah may round to nothing, its commission not
            postings.append(Posting.credit(earned_account, amounts.earning, chart.CURRENCY))
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
    _execute(
        session,
        _COUNT_ON_ASSIGNMENT,
        {
            "of_order": delivery.order_id,
            "of_homeworker": delivery.homeworker_id,
            "add_accepted": accepted,
            "add_rejected": rejected,
        },
    )
    written = _execute(
        session,
        _MARK_CONFIRMED,
        {
            "delivery_id": delivery_id,
            "new_status": DeliveryStatus.CONFIRMED.value,
            "new_accepted": accepted,
            "new_rejected": rejected,
            "new_reason": reason,
            "new_earning": amounts.earning,
            "new_commission": amounts.commission,
            "new_recovered": recovered,
            "new_entry_id": entry_id,
            "new_confirmed_at": now,
        },
    ).one()
    return _delivery(written)


def _locked_for_confirmation(session: Session, delivery_id: int, *, buyer_id: int) -> Row[Any] | None:
    """The delivery and her assignment, both locked (the caller holds the order's lock), with
    what the confirmation needs beside them; None if she has no assignment on the order."""
    return _execute(session, _LOCK_DELIVERY, {"delivery_id": delivery_id, "buyer_id": buyer_id}).first()


def _confirmation_statements() -> tuple[Executable, Executable, Executable, Executable]:
    """Built once: a confirmation's statements, with bound parameters."""
    delivery_id = bindparam("delivery_id", type_=BigInteger)
    locked_order = (
        select(_orders)
        .where(
            _orders.c.id
            == select(_deliveries.c.order_id).where(_deliveries.c.id == delivery_id).scalar_subquery()
        )
        .with_for_update()
        .subquery("locked_order")
    )
    # Locked in a sub-select over the locked order, so PostgreSQL takes it after the order's
    # lock (FOR UPDATE is refused on the nullable side of an outer join, and one in the next
    # statement would come too late: that statement's snapshot, taken before the wait, would
    # read the outstanding advance as it was before the confirmation it waited for).
    earned_account = (
        select(_earnings.c.account_id)
        .where(
            _earnings.c.buyer_id == locked_order.c.buyer_id,
            _earnings.c.homeworker_id
            == select(_deliveries.c.homeworker_id).where(_deliveries.c.id == delivery_id).scalar_subquery(),
        )
        .with_for_update()
        .scalar_subquery()
    )
    lock_order = select(locked_order, earned_account.label("earned_account"))
    others = _assignments.alias("order_assignments")
    buyer = bindparam("buyer_id", type_=BigInteger)
    order_accepted = (
        select(func.coalesce(func.sum(others.c.accepted), 0))
        .where(others.c.order_id == _deliveries.c.order_id)
        .scalar_subquery()
    )
    outstanding = adjustments.outstanding_advance_of(_deliveries.c.homeworker_id, buyer)
    lock_delivery = (
        select(
            _deliveries,
            _assignments.c.quantity.label("assignment_quantity"),
            _assignments.c.accepted.label("assignment_accepted"),
            order_accepted.label("order_accepted"),
            outstanding.label("outstanding_advance"),
        )
        .select_from(
            _deliveries.join(
                _assignments,
                and_(
                    _assignments.c.order_id == _deliveries.c.order_id,
                    _assignments.c.homeworker_id == _deliveries.c.homeworker_id,
                ),
            )
        )
        .where(_deliveries.c.id == bindparam("delivery_id", type_=BigInteger))
        .with_for_update(of=[_deliveries, _assignments])
    )
    count = (
        update(_assignments)
        .where(
            _assignments.c.order_id == bindparam("of_order", type_=BigInteger),
            _assignments.c.homeworker_id == bindparam("of_homeworker", type_=BigInteger),
        )
        .values(
            accepted=_assignments.c.accepted + bindparam("add_accepted", type_=BigInteger),
            rejected=_assignments.c.rejected + bindparam("add_rejected", type_=BigInteger),
        )
    )
    names = (
        "status",
        "accepted",
        "rejected",
        "reason",
        "earning",
        "commission",
        "recovered",
        "entry_id",
        "confirmed_at",
    )
    mark = (
        update(_deliveries)
        .where(_deliveries.c.id == bindparam("delivery_id", type_=BigInteger))
        .values({name: bindparam(f"new_{name}", type_=_deliveries.c[name].type) for name in names})
        .returning(*_deliveries.c)
    )
    return lock_order, lock_delivery, count, mark


_LOCK_ORDER, _LOCK_DELIVERY, _COUNT_ON_ASSIGNMENT, _MARK_CONFIRMED = _confirmation_statements()
_DRIVER_SQL: dict[int, tuple[str, dict[str, Any]]] = {}


def _execute(session: Session, statement: Executable, params: dict[str, Any]) -> Result[Any]:
    """Run a prebuilt statement. On psycopg its SQL is compiled once and sent as is, skipping
    SQLAlchemy's per-call cache key, bind and result processing (as ``journal.post`` does);
    elsewhere (SQLite) through SQLAlchemy as usual."""
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        return connection.execute(statement, params)
    compiled = _DRIVER_SQL.get(id(statement))
    if compiled is None:
        done = cast(ClauseElement, statement).compile(
            dialect=dialect, compile_kwargs={"render_postcompile": True}
        )
        compiled = str(done), {k: v for k, v in done.params.items() if k not in params}
        _DRIVER_SQL[id(statement)] = compiled
    sql, constants = compiled
    return connection.exec_driver_sql(sql, {**constants, **params} if constants else params)


def get(session: Session, *, principal: Principal, delivery_id: int) -> Delivery:
    row = _row(session, delivery_id)
    orders.check_visible(session, principal=principal, order_id=row.order_id)
    return _delivery(row)


def list_for_order(session: Session, *, principal: Principal, order_id: int) -> list[Delivery]:
    orders.check_visible(session, principal=principal, order_id=order_id)
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
        recorded_at=_utc(row.recorded_at),
        confirmed_at=_utc(row.confirmed_at),
    )


@overload
def _utc(moment: datetime) -> datetime: ...
@overload
def _utc(moment: None) -> None: ...
def _utc(moment: datetime | None) -> datetime | None:
    """Aware UTC, as the column type gives it (rows read through driver-level SQL skip it)."""
    return moment.astimezone(UTC) if moment is not None and moment.tzinfo is not None else moment


def _platform() -> Principal:
    return Principal(key_id=0, role=Role.ADMIN, organization_id=None)
