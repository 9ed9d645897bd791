"""Work orders: the agreed rate, the pieces put out, and the buyer's funds held for them.

Posting an order holds enough of the buyer's available funds to pay every assigned piece
at the agreed rate plus the intermediary's commission (ledger: buyer available → the
order's own held account, so confirmations on different orders never contend). Closing or
cancelling releases what was not earned. Every order carries its fair-rate finding: the
effective hourly pay against each assigned homeworker's regional minimum wage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.orm import Session

from ledger import EntryDraft, Posting, journal
from ledger.money import MAX_AMOUNT
from ledger.tables import table_of
from payments import chart, outbox, parties, rates, wages
from payments.errors import (
    DuplicateReference,
    InvalidState,
    NotFound,
    RateBelowMinimumWage,
    ValidationFailed,
)
from payments.parties import OrganizationKind, Principal, Role
from payments.tables import AssignmentRow, DeliveryRow, HomeworkerRow, OrderRow

_orders = table_of(OrderRow)
_assignments = table_of(AssignmentRow)
_deliveries = table_of(DeliveryRow)
_workers = table_of(HomeworkerRow)

MAX_PIECES = 2**31 - 1


class OrderStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class AssignmentRequest:
    homeworker_id: int
    quantity: int


@dataclass(frozen=True, slots=True)
class Assignment:
    homeworker_id: int
    quantity: int
    delivered: int
    accepted: int
    rejected: int


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    buyer_id: int
    reference: str
    product: str
    rate: Decimal
    unit: rates.Unit
    currency: str
    minutes_per_piece: Decimal
    quantity: int
    deadline: date
    region: str
    intermediary_id: int | None
    commission: rates.Commission | None
    status: OrderStatus
    hold_amount: int
    held_remaining: int
    fair_rate: dict[str, Any]
    assignments: list[Assignment]
    created_at: datetime
    closed_at: datetime | None

    @property
    def accepted(self) -> int:
        return sum(a.accepted for a in self.assignments)

    @property
    def rejected(self) -> int:
        return sum(a.rejected for a in self.assignments)

    @property
    def delivered(self) -> int:
        return sum(a.delivered for a in self.assignments)


def post(
    session: Session,
    *,
    principal: Principal,
    reference: str,
    product: str,
    rate: Decimal,
    unit: rates.Unit,
    minutes_per_piece: Decimal,
    quantity: int,
    deadline: date,
    region: str,
    intermediary_id: int | None,
    commission: rates.Commission | None,
    assignments: Sequence[AssignmentRequest],
    policy: rates.FairRatePolicy,
    now: datetime,
) -> Order:
    """Post a work order and hold its funds; refused whole if anything is wrong."""
    principal.require(Role.BUYER)
    buyer_id = principal.organization_id
    assert buyer_id is not None
    reference = reference.strip()
    product = product.strip()
    _check(
        bool(reference) and len(reference) <= 100, "reference", "a reference of 1 to 100 characters is needed"
    )
    _check(
        bool(product) and len(product) <= 200, "product", "a product name of 1 to 200 characters is needed"
    )
    _check(0 < quantity <= MAX_PIECES, "quantity", f"quantity must be between 1 and {MAX_PIECES}")
    _check(deadline >= now.date(), "deadline", "the deadline is in the past")
    _check(wages.is_known_region(region), "region", f"unknown wage region {region!r}")
    _check(bool(assignments), "assignments", "assign the work to at least one homeworker")
    _check(
        len({a.homeworker_id for a in assignments}) == len(assignments),
        "assignments",
        "each homeworker appears once in the assignments",
    )
    for a in assignments:
        _check(0 < a.quantity <= MAX_PIECES, "assignments", "each assignment needs a positive quantity")
    _check(
        sum(a.quantity for a in assignments) <= quantity,
        "assignments",
        "assignments exceed the order's quantity",
    )
    if commission is not None and intermediary_id is None:
        raise ValidationFailed("a commission needs an intermediary", field="commission_rate")
    if intermediary_id is not None:
        intermediary = _intermediary(session, intermediary_id)
        commission_account = intermediary.commission_account_id
        assert commission_account is not None
    existing = session.execute(
        select(_orders.c.id).where(_orders.c.buyer_id == buyer_id, _orders.c.reference == reference)
    ).first()
    if existing is not None:
        raise DuplicateReference(f"order reference {reference!r} is already used", field="reference")

    findings = _fair_rate(
        session,
        rate=rate,
        unit=unit,
        minutes=minutes_per_piece,
        region=region,
        assignments=assignments,
        principal=principal,
        intermediary_id=intermediary_id,
        on=now.date(),
    )
    if policy is rates.FairRatePolicy.BLOCK and not findings["meets_benchmark"]:
        worst = findings["worst"]
        raise RateBelowMinimumWage(
            f"rate {rate} per {unit.value} pays {worst['effective_hourly']} an hour, below the "
            f"{worst['region']} benchmark of {worst['benchmark_hourly']}; "
            f"a fair rate is {worst['fair_rate']}",
            fair_rate=worst["fair_rate"],
            fair_rate_per_piece=worst["fair_rate_per_piece"],
            region=worst["region"],
            effective_hourly=worst["effective_hourly"],
            benchmark_hourly=worst["benchmark_hourly"],
        )
    if policy is rates.FairRatePolicy.OFF:
        findings = {"policy": "off"}
    else:
        findings["policy"] = policy.value

    hold = sum(
        rates.order_hold_amount(quantity=a.quantity, rate=rate, unit=unit, commission=commission)
        for a in assignments
    )
    if hold > MAX_AMOUNT:
        raise ValidationFailed(
            "the order's pieces at its rate come to more than the ledger can hold", field="quantity"
        )
    order_id = session.execute(
        insert(_orders).returning(_orders.c.id),
        {
            "buyer_id": buyer_id,
            "reference": reference,
            "product": product,
            "rate": rate,
            "unit": unit.value,
            "currency": chart.CURRENCY,
            "minutes_per_piece": minutes_per_piece,
            "quantity": quantity,
            "deadline": deadline,
            "region": region,
            "intermediary_id": intermediary_id,
            "commission_kind": commission.kind.value if commission else None,
            "commission_rate": commission.rate if commission else None,
            "status": OrderStatus.OPEN.value,
            "hold_amount": hold,
            "fair_rate": findings,
            "created_at": now,
        },
    ).scalar_one()
    held = chart.order_held(session, order_id=order_id, buyer_id=buyer_id, now=now)
    session.execute(update(_orders).where(_orders.c.id == order_id).values(held_account_id=held.id))
    session.execute(
        insert(_assignments),
        [
            {
                "order_id": order_id,
                "homeworker_id": a.homeworker_id,
                "quantity": a.quantity,
                "delivered": 0,
                "accepted": 0,
                "rejected": 0,
            }
            for a in assignments
        ],
    )
    for a in assignments:
        parties.link(session, homeworker_id=a.homeworker_id, organization_id=buyer_id, now=now)
        if intermediary_id is not None:
            parties.link(session, homeworker_id=a.homeworker_id, organization_id=intermediary_id, now=now)
        announce(session, order_id=order_id, homeworker_id=a.homeworker_id, now=now)
    if hold > 0:
        buyer = parties.get_organization(session, principal=principal, organization_id=buyer_id)
        assert buyer.available_account_id is not None
        journal.post(
            session,
            EntryDraft(
                key=f"order:{order_id}:hold",
                postings=(
                    Posting.debit(buyer.available_account_id, hold, chart.CURRENCY),
                    Posting.credit(held.id, hold, chart.CURRENCY),
                ),
                effective_at=now,
                description=f"hold for order {reference}",
                metadata={"kind": "order_hold", "order_id": order_id},
            ),
            now=now,
            remember_refusal=False,  # the order rolls back with it: its id may come again
        )
    return get(session, principal=principal, order_id=order_id)


def announce(session: Session, *, order_id: int, homeworker_id: int, now: datetime) -> None:
    """Queue the SMS telling her what she agreed to: rate, unit, quantity, deadline, hourly pay.

    Sent once per order and homeworker however often it is queued (the key dedupes it).
    """
    outbox.add(
        session,
        topic=outbox.SEND_SMS,
        payload={
            "kind": "order_assigned",
            "order_id": order_id,
            "homeworker_id": homeworker_id,
            "key": f"order_assigned:{order_id}:{homeworker_id}",
        },
        now=now,
    )


def get(session: Session, *, principal: Principal, order_id: int) -> Order:
    row = _visible_row(session, principal, order_id)
    return _order(session, row)


def check_visible(session: Session, *, principal: Principal, order_id: int) -> None:
    """NotFound unless the caller may see the order: ``get``'s check, without reading the rest."""
    _visible_row(session, principal, order_id)


def list_for(
    session: Session, *, principal: Principal, status: OrderStatus | None = None, limit: int = 100
) -> list[Order]:
    query = select(_orders).order_by(_orders.c.id.desc()).limit(limit)
    if not principal.platform_wide:
        query = query.where(
            (_orders.c.buyer_id == principal.organization_id)
            | (_orders.c.intermediary_id == principal.organization_id)
        )
    if status is not None:
        query = query.where(_orders.c.status == status.value)
    return [_order(session, row) for row in session.execute(query)]


def close(session: Session, *, principal: Principal, order_id: int, now: datetime) -> Order:
    """No more deliveries; the funds held and not earned go back to the buyer."""
    return _finish(session, principal=principal, order_id=order_id, status=OrderStatus.CLOSED, now=now)


def cancel(session: Session, *, principal: Principal, order_id: int, now: datetime) -> Order:
    """Call the work off; what was already earned stays earned, the rest of the hold is released."""
    return _finish(session, principal=principal, order_id=order_id, status=OrderStatus.CANCELLED, now=now)


def lock(session: Session, *, order_id: int) -> Row[Any]:
    """Lock an order row; confirmations on one order serialise on it."""
    return session.execute(select(_orders).where(_orders.c.id == order_id).with_for_update()).one()


def _finish(
    session: Session, *, principal: Principal, order_id: int, status: OrderStatus, now: datetime
) -> Order:
    principal.require(Role.BUYER)
    row = _visible_row(session, principal, order_id)
    if row.buyer_id != principal.organization_id:
        raise NotFound("order not found")
    row = lock(session, order_id=order_id)
    if row.status != OrderStatus.OPEN.value:
        raise InvalidState(f"order is already {row.status}", status=row.status)
    waiting = session.execute(
        select(func.count()).where(
            _deliveries.c.order_id == order_id, _deliveries.c.status == "awaiting_confirmation"
        )
    ).scalar_one()
    if waiting:
        raise InvalidState(
            f"confirm or reject the {waiting} deliveries awaiting confirmation first", waiting=waiting
        )
    remaining = journal.balance(session, row.held_account_id).posted
    if remaining > 0:
        buyer = parties.get_organization(session, principal=principal, organization_id=row.buyer_id)
        assert buyer.available_account_id is not None
        journal.post(
            session,
            EntryDraft(
                key=f"order:{order_id}:release",
                postings=(
                    Posting.debit(row.held_account_id, remaining, chart.CURRENCY),
                    Posting.credit(buyer.available_account_id, remaining, chart.CURRENCY),
                ),
                effective_at=now,
                description=f"release of the unused hold of order {row.reference} ({status.value})",
                metadata={"kind": "order_release", "order_id": order_id},
            ),
            now=now,
        )
    session.execute(
        update(_orders).where(_orders.c.id == order_id).values(status=status.value, closed_at=now)
    )
    return get(session, principal=principal, order_id=order_id)


def _visible_row(session: Session, principal: Principal, order_id: int) -> Row[Any]:
    row = session.execute(select(_orders).where(_orders.c.id == order_id)).first()
    if row is None:
        raise NotFound("order not found")
    if principal.platform_wide or principal.organization_id in (row.buyer_id, row.intermediary_id):
        return row
    raise NotFound("order not found")


def commission_of(row: Row[Any]) -> rates.Commission | None:
    if row.commission_kind is None:
        return None
    return rates.Commission(kind=rates.CommissionKind(row.commission_kind), rate=Decimal(row.commission_rate))


def _order(session: Session, row: Row[Any]) -> Order:
    assignments = [
        Assignment(a.homeworker_id, a.quantity, a.delivered, a.accepted, a.rejected)
        for a in session.execute(
            select(_assignments)
            .where(_assignments.c.order_id == row.id)
            .order_by(_assignments.c.homeworker_id)
        )
    ]
    held = journal.balance(session, row.held_account_id).posted if row.held_account_id else 0
    return Order(
        id=row.id,
        buyer_id=row.buyer_id,
        reference=row.reference,
        product=row.product,
        rate=Decimal(rates.plain(Decimal(row.rate))),
        unit=rates.Unit(row.unit),
        currency=row.currency,
        minutes_per_piece=Decimal(row.minutes_per_piece),
        quantity=row.quantity,
        deadline=row.deadline,
        region=row.region,
        intermediary_id=row.intermediary_id,
        commission=commission_of(row),
        status=OrderStatus(row.status),
        hold_amount=row.hold_amount,
        held_remaining=held,
        fair_rate=row.fair_rate,
        assignments=assignments,
        created_at=row.created_at,
        closed_at=row.closed_at,
    )


def _intermediary(session: Session, intermediary_id: int) -> parties.Organization:
    admin = Principal(key_id=0, role=Role.ADMIN, organization_id=None)
    try:
        org = parties.get_organization(session, principal=admin, organization_id=intermediary_id)
    except NotFound:
        raise ValidationFailed("unknown intermediary", field="intermediary_id") from None
    if org.kind is not OrganizationKind.INTERMEDIARY:
        raise ValidationFailed(
            "intermediary_id names an organisation that is not an intermediary", field="intermediary_id"
        )
    return org


def _fair_rate(
    session: Session,
    *,
    rate: Decimal,
    unit: rates.Unit,
    minutes: Decimal,
    region: str,
    assignments: Sequence[AssignmentRequest],
    principal: Principal,
    intermediary_id: int | None,
    on: date,
) -> dict[str, Any]:
    """Assess the rate against the order's region and each assigned homeworker's region."""
    regions: dict[int | None, str] = {None: region}
    for a in assignments:
        try:
            parties.check_visible(session, principal=principal, homeworker_id=a.homeworker_id)
        except NotFound:
            if intermediary_id is None or not _visible_to(session, intermediary_id, a.homeworker_id):
                raise ValidationFailed(
                    f"homeworker {a.homeworker_id} not found", field="assignments"
                ) from None
        regions[a.homeworker_id] = session.execute(
            select(_workers.c.region).where(_workers.c.id == a.homeworker_id)
        ).scalar_one()
    per_worker: dict[str, Any] = {}
    worst: dict[str, Any] | None = None
    for worker, where in regions.items():
        finding = finding_dict(
            rates.assess(rate=rate, minutes_per_piece=minutes, region=where, on=on, unit=unit)
        )
        if worker is not None:
            per_worker[str(worker)] = finding
        if worst is None or Decimal(finding["shortfall_ratio"]) > Decimal(worst["shortfall_ratio"]):
            worst = finding
    assert worst is not None
    order_finding = finding_dict(
        rates.assess(rate=rate, minutes_per_piece=minutes, region=region, on=on, unit=unit)
    )
    return {
        **order_finding,
        "meets_benchmark": all(f["meets_benchmark"] for f in [order_finding, *per_worker.values()]),
        "homeworkers": per_worker,
        "worst": worst,
        "note": "a benchmark against the regional minimum wage (UMK/UMP ÷ 173 hours), not a legal finding",
    }


def finding_dict(finding: rates.FairRateFinding) -> dict[str, Any]:
    return {
        "region": finding.region,
        "on": finding.on.isoformat(),
        "unit": finding.unit.value,
        "rate": str(finding.rate),
        "effective_hourly": str(finding.effective_hourly),
        "benchmark_hourly": str(finding.benchmark_hourly),
        "fair_rate": str(finding.fair_rate),
        "fair_rate_per_piece": str(finding.fair_rate_per_piece),
        "meets_benchmark": finding.meets_benchmark,
        "shortfall_ratio": str(finding.shortfall_ratio),
        "benchmark_source": f"{finding.benchmark.kind} {finding.benchmark.region_name} from "
        f"{finding.benchmark.effective_from.isoformat()} ({finding.benchmark.source})",
    }


def _visible_to(session: Session, organization_id: int, homeworker_id: int) -> bool:
    probe = Principal(key_id=0, role=Role.INTERMEDIARY, organization_id=organization_id)
    try:
        parties.check_visible(session, principal=probe, homeworker_id=homeworker_id)
    except NotFound:
        return False
    return True


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ValidationFailed(message, field=field)
