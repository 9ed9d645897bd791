"""What a homeworker is owed and was paid: her balance and her payslip.

A payslip's period runs from ``start`` up to, not including, ``end``: consecutive periods
(January, then February) count each delivery, adjustment and payout once, and one's closing
balance is the next one's opening.

A buyer sees only what it owes her; an intermediary what the buyers of its orders owe
her; the platform and platform-wide auditors see everything. Figures come from the
ledger (her earned accounts, one per buyer), the deliveries and adjustments, and the
payouts — so the payslip adds up to the ledger by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import journal, reports
from ledger.tables import table_of
from payments import adjustments, messages, orders, parties, payouts, pii, rates
from payments.parties import Principal, Role
from payments.tables import DeliveryRow, OrderRow

_deliveries = table_of(DeliveryRow)
_orders = table_of(OrderRow)


@dataclass(frozen=True, slots=True)
class HomeworkerBalance:
    homeworker_id: int
    earned: int
    """Owed now, not yet paid out."""
    pending: int
    """In payouts under way (sent, not yet confirmed)."""
    paid: int
    """Confirmed into her wallet."""
    awaiting_confirmation: int
    """Pieces handed in, not yet confirmed (count, not money)."""


@dataclass(frozen=True, slots=True)
class PayslipOrderLine:
    order_id: int
    reference: str
    product: str
    rate: Decimal
    unit: str
    delivered: int
    accepted: int
    rejected: int
    rejection_reasons: list[str]
    earnings: int
    effective_hourly: str
    benchmark_hourly: str
    meets_benchmark: bool


@dataclass(frozen=True, slots=True)
class Payslip:
    homeworker_id: int
    name: str
    region: str
    start: datetime | None
    end: datetime | None
    opening_balance: int
    orders: list[PayslipOrderLine]
    adjustments: list[adjustments.Adjustment]
    payouts: list[dict[str, Any]]
    closing_balance: int
    totals: dict[str, int] = field(default_factory=dict)


def buyers_in_scope(session: Session, *, principal: Principal, homeworker_id: int) -> list[int] | None:
    """Which buyers' books this principal may see for her; None means all."""
    parties.check_visible(session, principal=principal, homeworker_id=homeworker_id)
    if principal.platform_wide:
        return None
    if principal.role is Role.BUYER or principal.role is Role.AUDITOR:
        return [principal.organization_id] if principal.organization_id is not None else []
    rows = session.execute(
        select(_orders.c.buyer_id).where(_orders.c.intermediary_id == principal.organization_id).distinct()
    ).scalars()
    return [int(b) for b in rows]


def balance(
    session: Session,
    *,
    principal: Principal,
    homeworker_id: int,
) -> HomeworkerBalance:
    buyers = buyers_in_scope(session, principal=principal, homeworker_id=homeworker_id)
    accounts = _accounts(session, homeworker_id, buyers)
    earned = sum(journal.balance(session, a).available for a in accounts.values())
    pending, paid = payouts.totals_for_homeworker(
        session, homeworker_id=homeworker_id, buyer_ids=list(accounts)
    )
    query = (
        select(_deliveries.c.pieces)
        .join(_orders, _orders.c.id == _deliveries.c.order_id)
        .where(_deliveries.c.homeworker_id == homeworker_id, _deliveries.c.status == "awaiting_confirmation")
    )
    if buyers is not None:
        query = query.where(_orders.c.buyer_id.in_(buyers))
    waiting = sum(int(p) for p in session.execute(query).scalars())
    return HomeworkerBalance(homeworker_id, earned, pending, paid, waiting)


def payslip(
    session: Session,
    *,
    principal: Principal,
    keyring: pii.Keyring,
    homeworker_id: int,
    start: datetime | None,
    end: datetime | None,
) -> Payslip:
    buyers = buyers_in_scope(session, principal=principal, homeworker_id=homeworker_id)
    worker = parties.get_homeworker(
        session, principal=principal, keyring=keyring, homeworker_id=homeworker_id
    )
    accounts = _accounts(session, homeworker_id, buyers)
    last = end - timedelta(microseconds=1) if end is not None else None  # the last moment in it
    opening = closing = 0
    for account_id in accounts.values():
        st = reports.statement(session, account_id=account_id, start=start, end=last)
        opening += st.opening_balance
        closing += st.closing_balance
    query = (
        select(
            _deliveries,
            _orders.c.reference,
            _orders.c.product,
            _orders.c.rate,
            _orders.c.unit,
            _orders.c.minutes_per_piece,
            _orders.c.buyer_id,
        )
        .join(_orders, _orders.c.id == _deliveries.c.order_id)
        .where(_deliveries.c.homeworker_id == homeworker_id, _deliveries.c.status == "confirmed")
        .order_by(_deliveries.c.order_id, _deliveries.c.id)
    )
    if buyers is not None:
        query = query.where(_orders.c.buyer_id.in_(buyers))
    if start is not None:
        query = query.where(_deliveries.c.confirmed_at >= start)
    if last is not None:
        query = query.where(_deliveries.c.confirmed_at <= last)
    lines: dict[int, dict[str, Any]] = {}
    for row in session.execute(query):
        line = lines.setdefault(
            row.order_id,
            {
                "row": row,
                "delivered": 0,
                "accepted": 0,
                "rejected": 0,
                "reasons": [],
                "earnings": 0,
            },
        )
        line["delivered"] += row.pieces
        line["accepted"] += row.accepted or 0
        line["rejected"] += row.rejected or 0
        line["earnings"] += row.earning or 0
        if row.reason:
            line["reasons"].append(row.reason)
    order_lines = []
    for order_id, line in lines.items():
        row = line["row"]
        on = (row.confirmed_at or datetime.now(UTC)).date()
        finding = _finding(
            Decimal(row.rate), rates.Unit(row.unit), Decimal(row.minutes_per_piece), worker.region, on
        )
        order_lines.append(
            PayslipOrderLine(
                order_id=order_id,
                reference=row.reference,
                product=row.product,
                rate=Decimal(rates.plain(Decimal(row.rate))),
                unit=row.unit,
                delivered=line["delivered"],
                accepted=line["accepted"],
                rejected=line["rejected"],
                rejection_reasons=line["reasons"],
                earnings=line["earnings"],
                effective_hourly=finding["effective_hourly"],
                benchmark_hourly=finding["benchmark_hourly"],
                meets_benchmark=finding["meets_benchmark"],
            )
        )
    adjustment_list = [
        a
        for a in adjustments.list_for(
            session, homeworker_id=homeworker_id, buyer_id=None, start=start, end=last
        )
        if buyers is None or a.buyer_id in buyers
    ]
    paid_out = payouts.lines_for_homeworker(
        session, homeworker_id=homeworker_id, buyer_ids=list(accounts), start=start, end=last
    )
    totals = {
        "earnings": sum(line.earnings for line in order_lines),
        "allowances": sum(a.amount for a in adjustment_list if a.kind.value in ("allowance", "bonus")),
        "advances": sum(a.amount for a in adjustment_list if a.kind.value == "advance"),
        "deductions": sum(a.amount for a in adjustment_list if a.kind.value == "recovery"),
        "paid": sum(int(p["amount"]) for p in paid_out if p.get("status") == "succeeded"),
    }
    return Payslip(
        homeworker_id,
        worker.name,
        worker.region,
        start,
        end,
        opening,
        order_lines,
        adjustment_list,
        paid_out,
        closing,
        totals,
    )


def render_text(slip: Payslip, *, language: messages.Language = messages.Language.EN) -> str:
    """A payslip a person can read (and print)."""
    rp = messages.format_rupiah
    last = slip.end - timedelta(microseconds=1) if slip.end is not None else None
    period = f"{_day(slip.start)} – {_day(last)}"
    out = [
        f"UPAH PAYSLIP — {slip.name} ({slip.region})",
        f"Period: {period}",
        "",
        f"Opening balance owed: {rp(slip.opening_balance)}",
        "",
    ]
    out.append("Work")
    if not slip.orders:
        out.append("  (no confirmed deliveries in this period)")
    for line in slip.orders:
        out.append(f"  {line.reference} {line.product}: rate {rates.plain(line.rate)} per {line.unit}")
        out.append(
            f"    delivered {line.delivered}, accepted {line.accepted}, rejected {line.rejected}"
            + (f" ({'; '.join(line.rejection_reasons)})" if line.rejection_reasons else "")
        )
        verdict = "meets" if line.meets_benchmark else "BELOW"
        out.append(
            f"    earned {rp(line.earnings)}; effective {line.effective_hourly}/hour, "
            f"{verdict} the regional benchmark {line.benchmark_hourly}/hour"
        )
    out += ["", "Adjustments"]
    if not slip.adjustments:
        out.append("  (none)")
    for adj in slip.adjustments:
        sign = "-" if adj.kind.value == "recovery" else "+"
        out.append(f"  {adj.created_at:%Y-%m-%d} {adj.kind.value}: {sign}{rp(adj.amount)} — {adj.memo}")
    out += ["", "Payouts"]
    if not slip.payouts:
        out.append("  (none)")
    for p in slip.payouts:
        out.append(
            f"  {p.get('date', '')} {rp(int(p['amount']))} {p.get('status', '')} ref {p.get('reference', '')}"
        )
    out += [
        "",
        f"Closing balance owed: {rp(slip.closing_balance)}",
        "Upah never asks for your PIN."
        if language is messages.Language.EN
        else "Upah tidak pernah meminta PIN Anda.",
    ]
    return "\n".join(out) + "\n"


def _accounts(session: Session, homeworker_id: int, buyers: list[int] | None) -> dict[int, int]:
    accounts = parties.earnings_accounts(session, homeworker_id=homeworker_id)
    return {b: a for b, a in accounts.items() if buyers is None or b in buyers}


def _finding(rate: Decimal, unit: rates.Unit, minutes: Decimal, region: str, on: date) -> dict[str, Any]:
    return orders.finding_dict(
        rates.assess(rate=rate, minutes_per_piece=minutes, region=region, on=on, unit=unit)
    )


def _day(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "…"
