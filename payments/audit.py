"""What an auditor may see, and the three-way check of what homeworkers were paid.

Scope: an admin or a platform-wide auditor sees everything; an organisation's auditor, and
the organisation's own keys, see that organisation's books — its ledger accounts (owner
``org:{id}``), and, for a buyer, the earned accounts of the homeworkers it owes. Anything
else answers ``NotFound``, exactly as if it did not exist.

The three-way check compares, for each homeworker and buyer over a period, three sources
that are kept apart on purpose:

1. **agreed** — recomputed from the operational records: pieces accepted × the order's
   agreed rate (by the one rounding rule, cumulatively per assignment) plus the agreed
   adjustments (allowances, bonuses, advances; less advance recoveries);
2. **ledger earnings** — what the ledger credited to her earned account in the period
   from anything that is not a payout;
3. **received + still owed** — what the provider confirmed into her wallet (payout
   events, net of reversals) plus the change in what is still owed (her earned balance,
   plus payouts sent but not yet confirmed).

``agreed = ledger earnings`` and ``owed at start + ledger earnings = received + owed at
end``; any difference is listed (beancount-style: records, not exceptions).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, or_, select, update
from sqlalchemy.orm import Session

from ledger.tables import AccountRow, EntryRow, PostingRow, table_of
from payments import rates
from payments.errors import Forbidden, NotFound, ValidationFailed
from payments.parties import OrganizationKind, Principal, Role
from payments.payout_states import PayoutStatus
from payments.tables import (
    AdjustmentRow,
    DeliveryRow,
    DisputeRow,
    EarningsAccountRow,
    HomeworkerLinkRow,
    OrderRow,
    OrganizationRow,
    PayoutEventRow,
    PayoutRow,
)

_accounts = table_of(AccountRow)
_entries = table_of(EntryRow)
_postings = table_of(PostingRow)
_earnings = table_of(EarningsAccountRow)
_orgs = table_of(OrganizationRow)
_orders = table_of(OrderRow)
_deliveries = table_of(DeliveryRow)
_adjustments = table_of(AdjustmentRow)
_payouts = table_of(PayoutRow)
_events = table_of(PayoutEventRow)
_disputes = table_of(DisputeRow)
_links = table_of(HomeworkerLinkRow)

IN_FLIGHT = frozenset({PayoutStatus.SUBMITTED.value, PayoutStatus.UNKNOWN.value})
ADJUSTMENT_SIGN = {"allowance": 1, "bonus": 1, "advance": 1, "recovery": -1}
PAYOUT_ENTRY_PREFIX = "payout:"


# --- scope -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose books a principal sees: ``buyer_ids`` None means every buyer."""

    organization_id: int | None
    buyer_ids: frozenset[int] | None
    intermediary_id: int | None = None

    @property
    def platform_wide(self) -> bool:
        return self.organization_id is None

    @property
    def payout_buyers(self) -> frozenset[int] | None:
        """The buyers whose payouts this scope may count (None: all); none for an
        intermediary: a payout is the buyer's to its homeworker, and not all of a buyer's
        work goes through it."""
        return frozenset() if self.intermediary_id is not None else self.buyer_ids


def scope_of(session: Session, *, principal: Principal, allow: Iterable[Role]) -> Scope:
    """The principal's scope for an audit read, or Forbidden for a role not in ``allow``."""
    principal.require(*allow)
    if principal.platform_wide:
        return Scope(None, None)
    org_id = principal.organization_id
    kind = session.execute(select(_orgs.c.kind).where(_orgs.c.id == org_id)).scalar_one_or_none()
    if kind == OrganizationKind.INTERMEDIARY.value:
        buyers = session.execute(
            select(_orders.c.buyer_id).where(_orders.c.intermediary_id == org_id).distinct()
        ).scalars()
        return Scope(org_id, frozenset(int(b) for b in buyers), intermediary_id=org_id)
    return Scope(org_id, frozenset({org_id}) if org_id is not None else frozenset())


def accounts_in_scope(session: Session, *, principal: Principal) -> frozenset[int] | None:
    """The ledger accounts a principal may read; None means all of them."""
    if principal.platform_wide:
        return None
    org_id = principal.organization_id
    owned = select(_accounts.c.id).where(_accounts.c.owner == f"org:{org_id}")
    earned = select(_earnings.c.account_id).where(_earnings.c.buyer_id == org_id)
    return frozenset(int(a) for a in session.execute(owned.union(earned)).scalars())


def check_account_visible(session: Session, *, principal: Principal, account_id: int) -> None:
    """Statements: an auditor or the account's owner; anyone else gets NotFound."""
    principal.require(Role.AUDITOR, Role.ADMIN, Role.BUYER, Role.INTERMEDIARY)
    visible = accounts_in_scope(session, principal=principal)
    exists = session.execute(select(_accounts.c.id).where(_accounts.c.id == account_id)).first()
    if exists is None or (visible is not None and account_id not in visible):
        raise NotFound("account not found")


# --- the three-way check ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Difference:
    kind: str
    amount: int
    message: str


@dataclass(frozen=True, slots=True)
class ThreeWayLine:
    homeworker_id: int
    buyer_id: int
    account_id: int
    pieces_accepted: int
    agreed_earnings: int
    agreed_adjustments: int
    ledger_earnings: int
    received: int
    owed_at_start: int
    owed_at_end: int
    differences: list[Difference] = field(default_factory=list)

    @property
    def agreed(self) -> int:
        return self.agreed_earnings + self.agreed_adjustments

    @property
    def ok(self) -> bool:
        return not self.differences


@dataclass(frozen=True, slots=True)
class ThreeWayReport:
    start: datetime | None
    end: datetime | None
    lines: list[ThreeWayLine]

    @property
    def ok(self) -> bool:
        return all(line.ok for line in self.lines)

    @property
    def differences(self) -> int:
        return sum(len(line.differences) for line in self.lines)


def three_way(
    session: Session,
    *,
    principal: Principal,
    start: datetime | None,
    end: datetime | None,
    homeworker_id: int | None = None,
) -> ThreeWayReport:
    """Agreed = ledger earnings = received + still owed, per homeworker and buyer, over a period."""
    scope = scope_of(session, principal=principal, allow=(Role.AUDITOR, Role.ADMIN, Role.BUYER))
    if scope.intermediary_id is not None:
        raise Forbidden("the three-way check is per buyer: ask a buyer's or the platform's auditor")
    if start is not None and end is not None and start > end:
        raise ValidationFailed("the period ends before it starts", field="from")
    pairs_query = select(_earnings.c.homeworker_id, _earnings.c.buyer_id, _earnings.c.account_id)
    if scope.buyer_ids is not None:
        pairs_query = pairs_query.where(_earnings.c.buyer_id.in_(sorted(scope.buyer_ids)))
    if homeworker_id is not None:
        pairs_query = pairs_query.where(_earnings.c.homeworker_id == homeworker_id)
    pairs = {(int(h), int(b)): int(a) for h, b, a in session.execute(pairs_query)}
    if homeworker_id is not None and not pairs:
        raise NotFound("homeworker not found")
    if not pairs:
        return ThreeWayReport(start, end, [])
    ledger = _ledger_sums(session, list(pairs.values()), start, end)
    agreed = agreed_amounts(session, pairs=set(pairs), start=start, end=end)
    receipts = _provider_side(session, pairs=set(pairs), start=start, end=end)
    lines = []
    for (h, b), account_id in sorted(pairs.items()):
        earned_start, earned_end, ledger_earnings = ledger.get(account_id, (0, 0, 0))
        pieces, agreed_earnings, agreed_adjustments = agreed.get((h, b), (0, 0, 0))
        received, flight_start, flight_end = receipts.get((h, b), (0, 0, 0))
        owed_start, owed_end = earned_start + flight_start, earned_end + flight_end
        differences = []
        if agreed_earnings + agreed_adjustments != ledger_earnings:
            gap = ledger_earnings - agreed_earnings - agreed_adjustments
            differences.append(
                Difference(
                    "agreed_vs_ledger",
                    gap,
                    f"the ledger credited {ledger_earnings}, the accepted pieces and adjustments "
                    f"come to {agreed_earnings + agreed_adjustments} ({gap:+d})",
                )
            )
        gap = owed_start + ledger_earnings - received - owed_end
        if gap:
            differences.append(
                Difference(
                    "ledger_vs_received_and_owed",
                    gap,
                    f"owed {owed_start} + earned {ledger_earnings} − received {received} should leave "
                    f"{owed_start + ledger_earnings - received} owed; {owed_end} is ({gap:+d} unaccounted)",
                )
            )
        lines.append(
            ThreeWayLine(
                h,
                b,
                account_id,
                pieces,
                agreed_earnings,
                agreed_adjustments,
                ledger_earnings,
                received,
                owed_start,
                owed_end,
                differences,
            )
        )
    return ThreeWayReport(start, end, lines)


def _in(column: Any, start: datetime | None, end: datetime | None) -> Any:
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column <= end)
    return and_(*conditions) if conditions else None


def _ledger_sums(
    session: Session, account_ids: list[int], start: datetime | None, end: datetime | None
) -> dict[int, tuple[int, int, int]]:
    """Per earned account: balance before ``start``, balance at ``end``, non-payout credits in between."""
    at = _entries.c.effective_at
    before = at < start if start is not None else None
    upto = at <= end if end is not None else None
    in_period = _in(at, start, end)
    not_payout = ~_entries.c.key.startswith(PAYOUT_ENTRY_PREFIX)
    amount = _postings.c.amount

    def total(condition: Any) -> Any:
        if condition is None:
            return func.coalesce(func.sum(-amount), 0)
        return func.coalesce(func.sum(case((condition, -amount), else_=0)), 0)

    query = (
        select(
            _postings.c.account_id,
            total(before) if before is not None else literal(0),
            total(upto),
            total(and_(not_payout, in_period) if in_period is not None else not_payout),
        )
        .select_from(_postings.join(_entries, _entries.c.id == _postings.c.entry_id))
        .where(_postings.c.account_id.in_(account_ids))
        .group_by(_postings.c.account_id)
    )
    return {int(a): (int(s or 0), int(e or 0), int(p or 0)) for a, s, e, p in session.execute(query)}


def agreed_amounts(
    session: Session, *, pairs: set[tuple[int, int]], start: datetime | None, end: datetime | None
) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(pieces accepted, agreed earnings, agreed adjustments) per (homeworker, buyer), recomputed."""
    result: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    homeworkers = sorted({h for h, _ in pairs})
    for credit in delivery_credits(session, homeworker_ids=homeworkers, end=end):
        key = (credit.homeworker_id, credit.buyer_id)
        if key in pairs and (start is None or credit.at >= start):
            result[key][0] += credit.pieces
            result[key][1] += credit.earning
    query = select(
        _adjustments.c.homeworker_id,
        _adjustments.c.buyer_id,
        _adjustments.c.kind,
        func.sum(_adjustments.c.amount),
    ).where(_adjustments.c.homeworker_id.in_(homeworkers))
    period = _in(_adjustments.c.created_at, start, end)
    if period is not None:
        query = query.where(period)
    for h, b, kind, total in session.execute(
        query.group_by(_adjustments.c.homeworker_id, _adjustments.c.buyer_id, _adjustments.c.kind)
    ):
        if (int(h), int(b)) in pairs:
            result[(int(h), int(b))][2] += ADJUSTMENT_SIGN.get(kind, 0) * int(total)
    return {k: (v[0], v[1], v[2]) for k, v in result.items()}


@dataclass(frozen=True, slots=True)
class DeliveryCredit:
    """One confirmed delivery's earning, recomputed from the order's agreed rate."""

    delivery_id: int
    order_id: int
    homeworker_id: int
    buyer_id: int
    intermediary_id: int | None
    at: datetime
    pieces: int
    earning: int
    rate: Decimal
    unit: rates.Unit
    minutes_per_piece: Decimal


def delivery_credits(
    session: Session, *, homeworker_ids: list[int] | None, end: datetime | None
) -> list[DeliveryCredit]:
    """Every confirmed delivery up to ``end``, with its earning recomputed cumulatively per assignment."""
    query = (
        select(
            _deliveries.c.id,
            _deliveries.c.order_id,
            _deliveries.c.homeworker_id,
            _deliveries.c.accepted,
            _deliveries.c.confirmed_at,
            _orders.c.buyer_id,
            _orders.c.intermediary_id,
            _orders.c.rate,
            _orders.c.unit,
            _orders.c.minutes_per_piece,
        )
        .join(_orders, _orders.c.id == _deliveries.c.order_id)
        .where(_deliveries.c.status == "confirmed")
        .order_by(
            _deliveries.c.order_id, _deliveries.c.homeworker_id, _deliveries.c.confirmed_at, _deliveries.c.id
        )
    )
    if homeworker_ids is not None:
        query = query.where(_deliveries.c.homeworker_id.in_(homeworker_ids))
    if end is not None:
        query = query.where(_deliveries.c.confirmed_at <= end)
    before: dict[tuple[int, int], int] = defaultdict(int)
    credits = []
    for r in session.execute(query):
        accepted = int(r.accepted or 0)
        key = (int(r.order_id), int(r.homeworker_id))
        unit = rates.Unit(r.unit)
        rate = Decimal(r.rate)
        earning = rates.cumulative_earning(before=before[key], accepted=accepted, rate=rate, unit=unit)
        before[key] += accepted
        credits.append(
            DeliveryCredit(
                int(r.id),
                int(r.order_id),
                int(r.homeworker_id),
                int(r.buyer_id),
                int(r.intermediary_id) if r.intermediary_id is not None else None,
                r.confirmed_at,
                accepted,
                earning,
                rate,
                unit,
                Decimal(r.minutes_per_piece),
            )
        )
    credits.sort(key=lambda c: (c.at, c.delivery_id))
    return credits


@dataclass(frozen=True, slots=True)
class PayoutEvent:
    payout_id: int
    homeworker_id: int
    buyer_id: int
    amount: int
    to_status: str
    at: datetime


def payout_events(
    session: Session, *, homeworker_ids: list[int] | None, end: datetime | None
) -> list[PayoutEvent]:
    """Every state change of the payouts, in order: the provider's side of the story."""
    query = (
        select(
            _events.c.payout_id,
            _payouts.c.homeworker_id,
            _payouts.c.buyer_id,
            _payouts.c.amount,
            _events.c.to_status,
            _events.c.created_at,
        )
        .join(_payouts, _payouts.c.id == _events.c.payout_id)
        .order_by(_events.c.created_at, _events.c.id)
    )
    if homeworker_ids is not None:
        query = query.where(_payouts.c.homeworker_id.in_(homeworker_ids))
    if end is not None:
        query = query.where(_events.c.created_at <= end)
    return [PayoutEvent(int(p), int(h), int(b), int(a), s, t) for p, h, b, a, s, t in session.execute(query)]


def _provider_side(
    session: Session, *, pairs: set[tuple[int, int]], start: datetime | None, end: datetime | None
) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(received in period, in flight before start, in flight at end) per (homeworker, buyer)."""
    status_at_start: dict[int, str] = {}
    status_now: dict[int, str] = {}
    owner: dict[int, tuple[tuple[int, int], int]] = {}
    received: dict[tuple[int, int], int] = defaultdict(int)
    for e in payout_events(session, homeworker_ids=sorted({h for h, _ in pairs}), end=end):
        key = (e.homeworker_id, e.buyer_id)
        if key not in pairs:
            continue
        owner[e.payout_id] = (key, e.amount)
        if start is not None and e.at < start:
            status_at_start[e.payout_id] = e.to_status
        else:
            if e.to_status == PayoutStatus.SUCCEEDED.value:
                received[key] += e.amount
            elif e.to_status == PayoutStatus.REVERSED.value:
                received[key] -= e.amount
        status_now[e.payout_id] = e.to_status
    result: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for key, amount in received.items():
        result[key][0] = amount
    for payout_id, (key, amount) in owner.items():
        if status_at_start.get(payout_id) in IN_FLIGHT:
            result[key][1] += amount
        if status_now.get(payout_id) in IN_FLIGHT:
            result[key][2] += amount
    return {k: (v[0], v[1], v[2]) for k, v in result.items()}


# --- exports ---------------------------------------------------------------------------------------------

PAYOUT_COLUMNS = (
    "payout_id",
    "run_id",
    "buyer_id",
    "homeworker_id",
    "amount",
    "currency",
    "fee",
    "status",
    "reference",
    "idempotency_key",
    "provider",
    "provider_reference",
    "channel",
    "pieces",
    "failure_code",
    "created_at",
    "submitted_at",
    "settled_at",
)


def payouts_csv(
    session: Session, *, principal: Principal, start: datetime | None, end: datetime | None
) -> str:
    """Every payout in scope created in the period; no wallet numbers (personal data stays sealed)."""
    scope = scope_of(session, principal=principal, allow=(Role.AUDITOR, Role.ADMIN, Role.BUYER))
    query = select(
        *[_payouts.c[name] for name in PAYOUT_COLUMNS if name != "payout_id"], _payouts.c.id
    ).order_by(_payouts.c.id)
    if scope.buyer_ids is not None:
        query = query.where(_payouts.c.buyer_id.in_(sorted(scope.buyer_ids)))
    if scope.intermediary_id is not None:
        return _csv(PAYOUT_COLUMNS, [])
    period = _in(_payouts.c.created_at, start, end)
    if period is not None:
        query = query.where(period)
    rows = []
    for r in session.execute(query):
        values = r._mapping
        rows.append([values["id"]] + [_cell(values[name]) for name in PAYOUT_COLUMNS if name != "payout_id"])
    return _csv(PAYOUT_COLUMNS, rows)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _csv(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(rows)
    return buffer.getvalue()


# --- dispute notes ---------------------------------------------------------------------------------------

MAX_DISPUTE_NOTE = 2000


def add_dispute_note(
    session: Session, *, principal: Principal, dispute_id: int, text: str, now: datetime
) -> list[Any]:
    """An auditor's note on a homeworker's dispute; notes are only ever appended. Returns all notes."""
    principal.require(Role.AUDITOR, Role.ADMIN)
    text = text.strip()
    if not text or len(text) > MAX_DISPUTE_NOTE:
        raise ValidationFailed(f"a note of 1 to {MAX_DISPUTE_NOTE} characters is needed", field="note")
    query = select(_disputes).where(_disputes.c.id == dispute_id).with_for_update()
    visible = disputes_in_scope(session, principal=principal)
    row = session.execute(query if visible is None else query.where(visible)).first()
    if row is None:
        raise NotFound("dispute not found")
    notes = [
        *list(row.notes or []),
        {"at": now.isoformat(), "by": principal.role.value, "key_id": principal.key_id, "text": text},
    ]
    session.execute(update(_disputes).where(_disputes.c.id == dispute_id).values(notes=notes))
    return notes


def disputes_in_scope(session: Session, *, principal: Principal) -> ColumnElement[bool] | None:
    """The disputes a principal may see, as a filter (None: all, platform-wide): those naming
    its organisation and, for a buyer, those of its homeworkers that name no buyer. An
    intermediary's keys never see one, whatever their role: she may be complaining about it."""
    if principal.platform_wide:
        return None
    org = principal.organization_id
    kind = session.execute(select(_orgs.c.kind).where(_orgs.c.id == org)).scalar_one_or_none()
    mine = _disputes.c.buyer_id == org
    if kind != OrganizationKind.BUYER.value:
        return mine
    linked = exists().where(
        _links.c.homeworker_id == _disputes.c.homeworker_id, _links.c.organization_id == org
    )
    return or_(mine, and_(_disputes.c.buyer_id.is_(None), linked))


__all__ = [
    "DeliveryCredit",
    "Difference",
    "PayoutEvent",
    "Scope",
    "ThreeWayLine",
    "ThreeWayReport",
    "accounts_in_scope",
    "add_dispute_note",
    "agreed_amounts",
    "check_account_visible",
    "delivery_credits",
    "payout_events",
    "payouts_csv",
    "scope_of",
    "three_way",
]
