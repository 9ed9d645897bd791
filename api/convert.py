"""Domain objects to response bodies."""

from __future__ import annotations

from datetime import UTC, datetime

from api import schemas as s
from payments import adjustments, deliveries, orders, parties, rates, statements
from payments.errors import ValidationFailed


def money(amount: int) -> s.Money:
    return s.Money.of(amount)


def organization(org: parties.Organization) -> s.OrganizationRead:
    return s.OrganizationRead(id=org.id, name=org.name, kind=org.kind.value, created_at=org.created_at)


def homeworker(w: parties.Homeworker) -> s.HomeworkerRead:
    return s.HomeworkerRead(
        id=w.id,
        name=w.name,
        phone=w.phone_masked,
        region=w.region,
        wallet=s.WalletRead(
            provider=w.wallet_provider, account=w.wallet_account_masked, registered=w.wallet_registered
        ),
        language=w.language,
        consent_at=w.consent_at,
        has_nik=w.has_nik,
        created_at=w.created_at,
    )


def order(o: orders.Order) -> s.OrderRead:
    return s.OrderRead(
        id=o.id,
        buyer_id=o.buyer_id,
        reference=o.reference,
        product=o.product,
        piece_rate=s.Rate(rate=rates.plain(o.rate), currency="IDR", unit=o.unit.value),
        minutes_per_piece=rates.plain(o.minutes_per_piece),
        quantity=o.quantity,
        deadline=o.deadline,
        region=o.region,
        intermediary_id=o.intermediary_id,
        commission_rate=s.CommissionRead(kind=o.commission.kind.value, rate=rates.plain(o.commission.rate))
        if o.commission
        else None,
        status=o.status.value,
        hold=money(o.hold_amount),
        held_remaining=money(o.held_remaining),
        progress=s.OrderProgress(delivered=o.delivered, accepted=o.accepted, rejected=o.rejected),
        fair_rate=o.fair_rate,
        assignments=[
            s.AssignmentRead(
                homeworker_id=a.homeworker_id,
                quantity=a.quantity,
                delivered=a.delivered,
                accepted=a.accepted,
                rejected=a.rejected,
            )
            for a in o.assignments
        ],
        created_at=o.created_at,
        closed_at=o.closed_at,
    )


def delivery(d: deliveries.Delivery) -> s.DeliveryRead:
    return s.DeliveryRead(
        id=d.id,
        order_id=d.order_id,
        homeworker_id=d.homeworker_id,
        pieces=d.pieces,
        status=d.status.value,
        accepted=d.accepted,
        rejected=d.rejected,
        reason=d.reason,
        earning=money(d.earning) if d.earning is not None else None,
        commission=money(d.commission) if d.commission is not None else None,
        advance_recovered=money(d.recovered) if d.recovered is not None else None,
        entry_id=d.entry_id,
        recorded_at=d.recorded_at,
        confirmed_at=d.confirmed_at,
    )


def adjustment(a: adjustments.Adjustment) -> s.AdjustmentRead:
    return s.AdjustmentRead(
        id=a.id,
        homeworker_id=a.homeworker_id,
        kind=a.kind.value,
        amount=money(a.amount),
        memo=a.memo,
        entry_id=a.entry_id,
        created_at=a.created_at,
    )


def payslip(p: statements.Payslip) -> s.PayslipRead:
    return s.PayslipRead(
        homeworker_id=p.homeworker_id,
        name=p.name,
        region=p.region,
        period_from=p.start,
        period_to=p.end,
        opening_balance=money(p.opening_balance),
        orders=[
            s.PayslipOrderRead(
                order_id=o.order_id,
                reference=o.reference,
                product=o.product,
                piece_rate=s.Rate(rate=rates.plain(o.rate), currency="IDR", unit=o.unit),
                delivered=o.delivered,
                accepted=o.accepted,
                rejected=o.rejected,
                rejection_reasons=o.rejection_reasons,
                earnings=money(o.earnings),
                effective_hourly=o.effective_hourly,
                benchmark_hourly=o.benchmark_hourly,
                meets_benchmark=o.meets_benchmark,
            )
            for o in p.orders
        ],
        adjustments=[adjustment(a) for a in p.adjustments],
        payouts=[s.PayslipPayoutRead(**{**line, "amount": money(line["amount"])}) for line in p.payouts],
        closing_balance=money(p.closing_balance),
        totals={k: money(v) for k, v in p.totals.items()},
    )


def moment(value: datetime | None) -> datetime | None:
    """A query's date or time in UTC (a naive one is read as UTC); one that has no UTC
    equivalent in years 1 to 9999 is the caller's mistake, not a 500."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValidationFailed("dates must fall within the years 1 to 9999 in UTC", field="period") from exc
