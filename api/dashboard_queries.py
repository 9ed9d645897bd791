"""Read-only views the dashboard needs and the domain does not offer as functions (yet).

Each takes the caller's scope, exactly as the API would: a buyer sees its own runs, payouts
and disputes; a platform-wide key sees all. Figures here are for display; the books of
record are the ledger and ``payments.reports``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.dashboard_text import WIB
from ledger.tables import table_of
from payments import parties, pii
from payments.errors import NotFound
from payments.payout_states import PayoutStatus, RunStatus
from payments.tables import (
    DeliveryRow,
    DisputeRow,
    OrderRow,
    PayoutRow,
    PayoutRunRow,
    ReconciliationExceptionRow,
    ReconciliationRunRow,
)

_runs = table_of(PayoutRunRow)
_payouts = table_of(PayoutRow)
_disputes = table_of(DisputeRow)
_deliveries = table_of(DeliveryRow)
_orders = table_of(OrderRow)
_recon_runs = table_of(ReconciliationRunRow)
_recon_exceptions = table_of(ReconciliationExceptionRow)

BuyerScope = frozenset[int] | None
"""The buyers whose books a caller sees; None is every buyer."""

WAIT_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("wait.lt_1h", 3600),
    ("wait.1h_6h", 6 * 3600),
    ("wait.6h_24h", 86400),
    ("wait.1d_3d", 3 * 86400),
    ("wait.3d_7d", 7 * 86400),
    ("wait.gt_7d", None),
)


@dataclass(frozen=True, slots=True)
class RunLine:
    id: int
    status: RunStatus
    count: int
    total: int
    fee: int
    created_by: int
    created_at: datetime
    approved_at: datetime | None
    completed_at: datetime | None


def _limit_to(query: Any, column: Any, buyers: BuyerScope) -> Any:
    return query if buyers is None else query.where(column.in_(sorted(buyers)))


def payout_runs(session: Session, *, buyers: BuyerScope, limit: int = 30) -> list[RunLine]:
    """Payout runs, those awaiting approval first, then newest first."""
    awaiting = (_runs.c.status == RunStatus.AWAITING_APPROVAL.value).desc()
    query = (
        _limit_to(select(_runs), _runs.c.buyer_id, buyers).order_by(awaiting, _runs.c.id.desc()).limit(limit)
    )
    return [
        RunLine(
            r.id,
            RunStatus(r.status),
            r._mapping["count"],
            r.total,
            r.fee,
            r.created_by,
            r.created_at,
            r.approved_at,
            r.completed_at,
        )
        for r in session.execute(query)
    ]


def count_runs_awaiting(session: Session, *, buyers: BuyerScope) -> int:
    query = select(func.count()).where(_runs.c.status == RunStatus.AWAITING_APPROVAL.value)
    return int(session.execute(_limit_to(query, _runs.c.buyer_id, buyers)).scalar_one())


def dispute_notes(session: Session, *, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The notes on each dispute (``channels.Dispute`` does not carry them)."""
    if not ids:
        return {}
    rows = session.execute(select(_disputes.c.id, _disputes.c.notes).where(_disputes.c.id.in_(ids)))
    return {int(i): [n for n in (notes or []) if isinstance(n, dict)] for i, notes in rows}


def count_open_exceptions(session: Session, *, organization_id: int | None) -> int:
    """Open reconciliation exceptions in runs the caller may see."""
    query = (
        select(func.count())
        .select_from(_recon_exceptions.join(_recon_runs, _recon_runs.c.id == _recon_exceptions.c.run_id))
        .where(_recon_exceptions.c.status == "open")
    )
    if organization_id is not None:
        query = query.where(_recon_runs.c.organization_id == organization_id)
    return int(session.execute(query).scalar_one())


def payouts_by_day(
    session: Session, *, buyers: BuyerScope, today: date, days: int = 30
) -> list[tuple[date, int]]:
    """Rupiah confirmed into wallets per day (WIB) for the last ``days`` days, zeros included."""
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=WIB)
    query = select(_payouts.c.settled_at, _payouts.c.amount).where(
        _payouts.c.status == PayoutStatus.SUCCEEDED.value, _payouts.c.settled_at >= since
    )
    totals: dict[date, int] = defaultdict(int)
    for settled_at, amount in session.execute(_limit_to(query, _payouts.c.buyer_id, buyers)):
        totals[_aware(settled_at).astimezone(WIB).date()] += int(amount)
    return [(first + timedelta(days=i), totals.get(first + timedelta(days=i), 0)) for i in range(days)]


def waits(session: Session, *, buyers: BuyerScope, limit: int = 20_000) -> list[int]:
    """Seconds from each confirmed delivery to the provider's confirmation of the first payout
    to her (from the same buyer) created at or after that confirmation; unpaid ones are left out."""
    delivered = (
        select(_orders.c.buyer_id, _deliveries.c.homeworker_id, _deliveries.c.confirmed_at)
        .join(_orders, _orders.c.id == _deliveries.c.order_id)
        .where(_deliveries.c.confirmed_at.is_not(None))
        .order_by(_deliveries.c.id.desc())
        .limit(limit)
    )
    paid = select(
        _payouts.c.buyer_id, _payouts.c.homeworker_id, _payouts.c.created_at, _payouts.c.settled_at
    ).where(_payouts.c.status == PayoutStatus.SUCCEEDED.value, _payouts.c.settled_at.is_not(None))
    by_pair: dict[tuple[int, int], list[tuple[datetime, datetime]]] = defaultdict(list)
    for buyer_id, homeworker_id, created_at, settled_at in session.execute(
        _limit_to(paid, _payouts.c.buyer_id, buyers)
    ):
        by_pair[(buyer_id, homeworker_id)].append((_aware(created_at), _aware(settled_at)))
    for found in by_pair.values():
        found.sort()
    out: list[int] = []
    for buyer_id, homeworker_id, confirmed_at in session.execute(
        _limit_to(delivered, _orders.c.buyer_id, buyers)
    ):
        found = by_pair.get((buyer_id, homeworker_id), [])
        at = _aware(confirmed_at)
        i = bisect_left([created for created, _ in found], at)
        if i < len(found):
            out.append(max(0, int((found[i][1] - at).total_seconds())))
    return out


def wait_histogram(seconds: list[int]) -> list[tuple[str, int]]:
    counts = dict.fromkeys((key for key, _ in WAIT_BUCKETS), 0)
    for s in seconds:
        for key, upper in WAIT_BUCKETS:
            if upper is None or s < upper:
                counts[key] += 1
                break
    return list(counts.items())


def homeworker_names(
    session: Session, *, principal: parties.Principal, keyring: pii.Keyring, ids: set[int]
) -> dict[int, str]:
    """Names of the homeworkers the caller may see (decrypted for display only; never logged)."""
    names: dict[int, str] = {}
    for homeworker_id in sorted(ids):
        try:
            worker = parties.get_homeworker(
                session, principal=principal, keyring=keyring, homeworker_id=homeworker_id
            )
        except NotFound:
            continue
        names[homeworker_id] = worker.name
    return names


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
