"""The pilot report: did what was agreed reach the homeworkers, how fast, and at what rates.

For the work accepted in a period (its cohort: delivery earnings recomputed from the agreed
rates, plus agreed allowances, bonuses and advances) the report follows the money into the
wallets. Payouts confirmed by the provider are allocated to what each homeworker was owed
by each buyer first-in, first-out — the oldest unpaid rupiah is paid first, as a payout
drains her whole earned balance; a reversal at the provider un-pays exactly what that
payout had paid. From that allocation:

* **leakage** = 1 − received ÷ agreed, for the cohort, as of the end of the period: what
  was agreed and has not (yet) reached her wallet;
* **time to payment** = from a delivery's confirmation to the provider's confirmation of
  the payout that completed its payment: median and 95th percentile (nearest rank), in
  whole seconds;
* **benchmark share** = share of the accepted pieces (and of their earnings) whose rate
  meets the regional minimum-wage benchmark for her region on the confirmation date;
* payouts and amounts, and disputes opened and resolved.

Each figure is given in total and by region (hers), buyer and intermediary (adjustments
have none: ``direct``). Ratios are decimal strings with four places; money is integers.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.tables import table_of
from payments import audit, rates, wages
from payments.errors import ValidationFailed
from payments.parties import Principal, Role
from payments.payout_states import PayoutStatus
from payments.tables import AdjustmentRow, DisputeRow, HomeworkerRow, OrganizationRow, PayoutRow

_adjustments = table_of(AdjustmentRow)
_disputes = table_of(DisputeRow)
_workers = table_of(HomeworkerRow)
_orgs = table_of(OrganizationRow)
_payouts = table_of(PayoutRow)

RATIO = Decimal("0.0001")
DIRECT = "direct"
DIMENSIONS = ("region", "buyer", "intermediary")


@dataclass
class _Credit:
    """Something agreed as owed to her, and how much of it has been paid (FIFO)."""

    homeworker_id: int
    buyer_id: int
    intermediary_id: int | None
    at: datetime
    amount: int
    delivery: audit.DeliveryCredit | None
    remaining: int = 0
    paid_at: datetime | None = None
    payouts: set[int] = field(default_factory=set)


@dataclass
class Group:
    """The pilot's figures for one region, buyer or intermediary (or the total)."""

    key: str
    name: str | None = None
    agreed: int = 0
    received: int = 0
    payouts: set[int] = field(default_factory=set)
    deliveries: int = 0
    deliveries_paid: int = 0
    pieces_accepted: int = 0
    pieces_meeting_benchmark: int = 0
    pieces_assessed: int = 0
    earnings_assessed: int = 0
    earnings_meeting_benchmark: int = 0
    waits: list[int] = field(default_factory=list)
    disputes_opened: int = 0
    disputes_resolved: int = 0

    @property
    def owed(self) -> int:
        return self.agreed - self.received

    def as_dict(self) -> dict[str, Any]:
        waits = sorted(self.waits)
        return {
            "key": self.key,
            "name": self.name,
            "agreed": self.agreed,
            "received": self.received,
            "owed": self.owed,
            "leakage": ratio(self.agreed - self.received, self.agreed),
            "payouts": len(self.payouts),
            "deliveries": self.deliveries,
            "deliveries_paid": self.deliveries_paid,
            "pieces_accepted": self.pieces_accepted,
            "pieces_meeting_benchmark": self.pieces_meeting_benchmark,
            "share_meeting_benchmark": ratio(self.pieces_meeting_benchmark, self.pieces_assessed),
            "earnings_meeting_benchmark": self.earnings_meeting_benchmark,
            "share_of_earnings_meeting_benchmark": ratio(
                self.earnings_meeting_benchmark, self.earnings_assessed
            ),
            "time_to_payment_seconds": {
                "median": median(waits),
                "p95": percentile(waits, 95),
                "count": len(waits),
            },
            "disputes_opened": self.disputes_opened,
            "disputes_resolved": self.disputes_resolved,
        }


@dataclass(frozen=True, slots=True)
class PilotReport:
    start: datetime | None
    end: datetime
    organization_id: int | None
    total: dict[str, Any]
    by: dict[str, list[dict[str, Any]]]
    payouts: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": {"from": self.start.isoformat() if self.start else None, "to": self.end.isoformat()},
            "scope": {"organization_id": self.organization_id},
            "total": self.total,
            "by_region": self.by["region"],
            "by_buyer": self.by["buyer"],
            "by_intermediary": self.by["intermediary"],
            "payouts": self.payouts,
        }


def ratio(numerator: int, denominator: int) -> str | None:
    """A share as a decimal string with four places; None when there is nothing to divide."""
    if denominator == 0:
        return None
    return str((Decimal(numerator) / Decimal(denominator)).quantize(RATIO, rounding=ROUND_HALF_EVEN))


def median(sorted_values: list[int]) -> int | None:
    """The median of sorted whole numbers, floored to a whole number."""
    n = len(sorted_values)
    if n == 0:
        return None
    if n % 2:
        return sorted_values[n // 2]
    return (sorted_values[n // 2 - 1] + sorted_values[n // 2]) // 2


def percentile(sorted_values: list[int], p: int) -> int | None:
    """The nearest-rank percentile: the smallest value with at least p% of values at or below it."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, -(-p * n // 100))
    return sorted_values[rank - 1]


def pilot(
    session: Session,
    *,
    principal: Principal,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> PilotReport:
    """The pilot report for the principal's scope (auditor, admin, or a buyer for itself)."""
    scope = audit.scope_of(session, principal=principal, allow=(Role.AUDITOR, Role.ADMIN, Role.BUYER))
    end = end or now
    if start is not None and start > end:
        raise ValidationFailed("the period ends before it starts", field="from")
    region_of = dict(session.execute(select(_workers.c.id, _workers.c.region)).all())
    org_names = dict(session.execute(select(_orgs.c.id, _orgs.c.name)).all())
    credits = _credits(session, scope=scope, end=end)
    _allocate(credits, audit.payout_events(session, homeworker_ids=None, end=end))
    total = Group("total")
    groups: dict[str, dict[str, Group]] = {d: {} for d in DIMENSIONS}

    def targets(homeworker_id: int, buyer_id: int | None, intermediary: str | None) -> list[Group]:
        keys = {
            "region": region_of.get(homeworker_id, "unknown"),
            "buyer": str(buyer_id) if buyer_id is not None else None,
            "intermediary": intermediary,
        }
        found = [total]
        for dimension, key in keys.items():
            if key is None:
                continue
            group = groups[dimension].get(key)
            if group is None:
                name = None
                if dimension == "buyer" and buyer_id is not None:
                    name = org_names.get(buyer_id)
                elif dimension == "intermediary" and key != DIRECT:
                    name = org_names.get(int(key))
                group = groups[dimension][key] = Group(key, name)
            found.append(group)
        return found

    assessments: dict[tuple[int, str, date], bool | None] = {}
    for c in credits:
        if start is not None and c.at < start:
            continue
        if scope.intermediary_id is not None and c.intermediary_id != scope.intermediary_id:
            continue
        intermediary = str(c.intermediary_id) if c.intermediary_id is not None else DIRECT
        meets = None
        if c.delivery is not None:
            meets = _meets(assessments, c.delivery, region_of.get(c.homeworker_id, ""))
        for g in targets(c.homeworker_id, c.buyer_id, intermediary):
            g.agreed += c.amount
            g.received += c.amount - c.remaining
            g.payouts |= c.payouts
            if c.delivery is None:
                continue
            g.deliveries += 1
            g.pieces_accepted += c.delivery.pieces
            if meets is not None:
                g.pieces_assessed += c.delivery.pieces
                g.earnings_assessed += c.amount
                if meets:
                    g.pieces_meeting_benchmark += c.delivery.pieces
                    g.earnings_meeting_benchmark += c.amount
            if c.remaining == 0 and c.paid_at is not None:
                g.deliveries_paid += 1
                g.waits.append(max(0, int((c.paid_at - c.at).total_seconds())))
    _disputes_into(session, scope=scope, start=start, end=end, targets=targets)
    by = {
        dimension: [g.as_dict() for _key, g in sorted(found.items(), key=lambda kv: _sort_key(kv[0]))]
        for dimension, found in groups.items()
    }
    return PilotReport(
        start, end, scope.organization_id, total.as_dict(), by, _payout_totals(session, scope, start, end)
    )


def _sort_key(key: str) -> tuple[int, str]:
    return (0, f"{int(key):020d}") if key.isdigit() else (1, key)


def _meets(
    cache: dict[tuple[int, str, date], bool | None], d: audit.DeliveryCredit, region: str
) -> bool | None:
    on = d.at.astimezone(UTC).date()
    key = (d.order_id, region, on)
    if key not in cache:
        try:
            cache[key] = rates.assess(
                rate=d.rate, minutes_per_piece=d.minutes_per_piece, region=region, on=on, unit=d.unit
            ).meets_benchmark
        except (wages.UnknownRegion, wages.NoWageForDate, rates.InvalidRate):
            cache[key] = None
    return cache[key]


def _credits(session: Session, *, scope: audit.Scope, end: datetime) -> list[_Credit]:
    """Everything agreed up to ``end`` for the buyers in scope, oldest first."""
    credits: list[_Credit] = []
    for d in audit.delivery_credits(session, homeworker_ids=None, end=end):
        if scope.buyer_ids is None or d.buyer_id in scope.buyer_ids:
            credits.append(_Credit(d.homeworker_id, d.buyer_id, d.intermediary_id, d.at, d.earning, d))
    recoveries: dict[int, int] = defaultdict(int)
    query = select(_adjustments).where(_adjustments.c.created_at <= end).order_by(_adjustments.c.id)
    if scope.buyer_ids is not None:
        query = query.where(_adjustments.c.buyer_id.in_(sorted(scope.buyer_ids)))
    for a in session.execute(query):
        if a.kind == "recovery":
            if a.delivery_id is not None:
                recoveries[int(a.delivery_id)] += int(a.amount)
            continue
        credits.append(
            _Credit(int(a.homeworker_id), int(a.buyer_id), None, a.created_at, int(a.amount), None)
        )
    for c in credits:
        if c.delivery is not None:
            c.amount -= recoveries.get(c.delivery.delivery_id, 0)
        c.remaining = c.amount
    credits.sort(key=lambda c: (c.at, 0 if c.delivery else 1, c.delivery.delivery_id if c.delivery else 0))
    return [c for c in credits if c.amount > 0]


def _allocate(credits: list[_Credit], events: Iterable[audit.PayoutEvent]) -> None:
    """Pay the oldest unpaid credits first with each confirmed payout; undo a reversed one."""
    queues: dict[tuple[int, int], list[_Credit]] = defaultdict(list)
    for c in credits:
        queues[(c.homeworker_id, c.buyer_id)].append(c)
    allocations: dict[int, list[tuple[_Credit, int]]] = {}
    for e in events:
        queue = queues.get((e.homeworker_id, e.buyer_id))
        if queue is None:
            continue
        if e.to_status == PayoutStatus.SUCCEEDED.value and e.payout_id not in allocations:
            left, taken = e.amount, []
            for c in queue:
                if left == 0:
                    break
                if c.remaining == 0:
                    continue
                portion = min(left, c.remaining)
                c.remaining -= portion
                c.payouts.add(e.payout_id)
                left -= portion
                taken.append((c, portion))
                if c.remaining == 0:
                    c.paid_at = e.at
            allocations[e.payout_id] = taken
        elif e.to_status == PayoutStatus.REVERSED.value and e.payout_id in allocations:
            for c, portion in allocations.pop(e.payout_id):
                c.remaining += portion
                c.payouts.discard(e.payout_id)
                c.paid_at = None


def _disputes_into(
    session: Session, *, scope: audit.Scope, start: datetime | None, end: datetime, targets: Any
) -> None:
    if scope.intermediary_id is not None:
        return
    query = select(
        _disputes.c.homeworker_id, _disputes.c.buyer_id, _disputes.c.created_at, _disputes.c.resolved_at
    )
    if scope.buyer_ids is not None:
        query = query.where(_disputes.c.buyer_id.in_(sorted(scope.buyer_ids)))
    for h, b, opened, resolved in session.execute(query):
        intermediary = None
        for g in targets(int(h), int(b) if b is not None else None, intermediary):
            if (start is None or opened >= start) and opened <= end:
                g.disputes_opened += 1
            if resolved is not None and (start is None or resolved >= start) and resolved <= end:
                g.disputes_resolved += 1


def _payout_totals(
    session: Session, scope: audit.Scope, start: datetime | None, end: datetime
) -> dict[str, Any]:
    """Payouts created in the period, by status (count and amount)."""
    query = select(_payouts.c.status, func.count(), func.coalesce(func.sum(_payouts.c.amount), 0)).where(
        _payouts.c.created_at <= end
    )
    if start is not None:
        query = query.where(_payouts.c.created_at >= start)
    if scope.payout_buyers is not None:
        query = query.where(_payouts.c.buyer_id.in_(sorted(scope.payout_buyers)))
    by_status = {s.value: {"count": 0, "amount": 0} for s in PayoutStatus}
    for status, count, amount in session.execute(query.group_by(_payouts.c.status)):
        by_status[status] = {"count": int(count), "amount": int(amount)}
    return {
        "count": sum(v["count"] for v in by_status.values()),
        "amount": sum(v["amount"] for v in by_status.values()),
        "by_status": by_status,
    }


CSV_COLUMNS = ("dimension", "key", "name", "metric", "value")


def pilot_csv(report: PilotReport) -> str:
    """The report in long form — one figure per row — for spreadsheets and statistics tools."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    period = report.as_dict()["period"]
    writer.writerow(["period", "", "", "from", period["from"] or ""])
    writer.writerow(["period", "", "", "to", period["to"]])
    sections = [("total", [report.total])] + [(d, report.by[d]) for d in DIMENSIONS]
    for dimension, groups in sections:
        for g in groups:
            for metric, value in _flat(g):
                writer.writerow(
                    [dimension, g["key"], g["name"] or "", metric, "" if value is None else value]
                )
    for status, figures in report.payouts["by_status"].items():
        writer.writerow(["payouts", status, "", "count", figures["count"]])
        writer.writerow(["payouts", status, "", "amount", figures["amount"]])
    return buffer.getvalue()


def _flat(group: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, value in group.items():
        if name in ("key", "name"):
            continue
        if isinstance(value, dict):
            out.extend((f"{name}.{inner}", v) for inner, v in value.items())
        else:
            out.append((name, value))
    return out
