"""Payout runs: what each homeworker is owed by a buyer, paid straight to her wallet.

A run creates one payout per homeworker whose earned balance with the buyer is at least
the minimum payout. Each payout reserves its amount with a ledger hold on her earned
account the moment it is created — so the same earnings can never be put in two payouts,
whatever runs overlap — and a hold on the buyer's funds for the provider fee, which the
buyer pays, never the homeworker. A run above the approval threshold waits for a second
key of the same organisation (maker–checker). An admin key may create a run for a named
buyer — the same run that buyer would create — but only a buyer key of that organisation
approves it. Sending is asynchronous: see dispatch.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, String, and_, cast, func, insert, literal, select, update
from sqlalchemy.orm import Session

from ledger import journal
from ledger.bulk import insert_rows, insert_rows_returning_ids, update_rows
from ledger.holds import HoldStatus
from ledger.tables import AccountRow, HoldRow, table_of
from payments import outbox, parties
from payments.errors import Forbidden, InvalidState, NotFound, ValidationFailed
from payments.parties import OrganizationKind, Principal, Role
from payments.payout_states import PayoutStatus, RunStatus, run_transition
from payments.tables import (
    DeliveryRow,
    EarningsAccountRow,
    HomeworkerRow,
    OrderRow,
    PayoutEventRow,
    PayoutRow,
    PayoutRunRow,
)

_runs = table_of(PayoutRunRow)
_payouts = table_of(PayoutRow)
_events = table_of(PayoutEventRow)
_earnings = table_of(EarningsAccountRow)
_accounts = table_of(AccountRow)
_holds = table_of(HoldRow)
_workers = table_of(HomeworkerRow)
_deliveries = table_of(DeliveryRow)
_orders = table_of(OrderRow)

DISPATCH_BATCH_SIZE = 25
"""Payouts per dispatch task: one transaction to submit, concurrent sends, one to apply."""

IN_FLIGHT = (PayoutStatus.SUBMITTED.value, PayoutStatus.UNKNOWN.value, PayoutStatus.CREATED.value)


@dataclass(frozen=True, slots=True)
class RunPolicy:
    """The deployment's rules for runs (from settings)."""

    provider: str
    minimum_payout: int
    approval_threshold: int
    fee_per_payout: int


@dataclass(frozen=True, slots=True)
class Payout:
    id: int
    run_id: int
    buyer_id: int
    homeworker_id: int
    amount: int
    fee: int
    status: PayoutStatus
    reference: str
    provider: str
    provider_reference: str | None
    failure_code: str | None
    failure_reason: str | None
    attempts: int
    created_at: datetime
    submitted_at: datetime | None
    settled_at: datetime | None
    conflict_held: int | None = None
    """What is held from her earnings while a conflict about this payout awaits an admin's
    settlement (the provider said it paid a payout we had failed): money she has but cannot
    be paid until then. None when there is no such conflict."""


_CONFLICT_KEY = ("payout:", ":conflict")
"""What a conflict hold's key holds either side of the payout's id."""


def conflict_hold_key(payout_id: int) -> str:
    """The key of the hold a conflict about the payout places on her earnings."""
    before, after = _CONFLICT_KEY
    return f"{before}{payout_id}{after}"


@dataclass(frozen=True, slots=True)
class PayoutRun:
    id: int
    buyer_id: int
    status: RunStatus
    count: int
    total: int
    fee: int
    created_by: int
    approved_by: int | None
    created_at: datetime
    approved_at: datetime | None
    completed_at: datetime | None
    payouts: list[Payout]


def create_run(
    session: Session,
    *,
    principal: Principal,
    policy: RunPolicy,
    now: datetime,
    buyer_id: int | None = None,
) -> PayoutRun:
    """One payout per homeworker owed at least the minimum; dispatched now, or after approval.

    A buyer key pays for its own organisation (``buyer_id`` may only name it); an admin key
    names the buyer and creates exactly the run that buyer would, awaiting approval by a
    buyer key of that organisation above the threshold — the admin can never approve it.
    """
    buyer = _run_buyer(session, principal=principal, buyer_id=buyer_id)
    buyer_id = buyer.id
    assert buyer.available_account_id is not None
    # The buyer's account (opened before any of her earnings accounts) first: the payouts
    # written below take share locks on her accounts, and an advance or a recovery locks the
    # buyer's account and then hers; taken the other way round, the two deadlocked.
    journal.lock_accounts(session, [buyer.available_account_id])
    owed = session.execute(
        select(
            _earnings.c.homeworker_id,
            _earnings.c.account_id,
            (_accounts.c.balance - _accounts.c.held).label("free"),
        )
        .join(_accounts, _accounts.c.id == _earnings.c.account_id)
        .where(
            _earnings.c.buyer_id == buyer_id,
            _accounts.c.balance - _accounts.c.held >= max(1, policy.minimum_payout),  # never a Rp 0 payout
        )
        .order_by(_earnings.c.homeworker_id)
    ).all()
    run_id = session.execute(
        insert(_runs).returning(_runs.c.id),
        {
            "buyer_id": buyer_id,
            "status": RunStatus.CREATED.value,
            "count": 0,
            "total": 0,
            "fee": 0,
            "created_by": principal.key_id,
            "created_at": now,
        },
    ).scalar_one()
    _create_payouts(
        session,
        run_id=run_id,
        buyer_id=buyer_id,
        owed=owed,
        policy=policy,
        buyer_available=buyer.available_account_id,
        now=now,
    )
    total = sum(int(row.free) for row in owed)
    fees = policy.fee_per_payout * len(owed)
    status = RunStatus.AWAITING_APPROVAL if total > policy.approval_threshold else RunStatus.DISPATCHING
    if not owed:
        status = RunStatus.COMPLETED
    session.execute(
        update(_runs)
        .where(_runs.c.id == run_id)
        .values(
            status=status.value,
            count=len(owed),
            total=total,
            fee=fees,
            completed_at=now if status is RunStatus.COMPLETED else None,
        )
    )
    if status is RunStatus.DISPATCHING:
        _enqueue_dispatch(session, run_id=run_id, now=now)
    return get_run(session, principal=principal, run_id=run_id)


def approve_run(session: Session, *, principal: Principal, run_id: int, now: datetime) -> PayoutRun:
    """The checker: a different key of the same organisation releases a large run."""
    principal.require(Role.BUYER)
    run = _run_row(session, principal, run_id, for_update=True)
    if run.status != RunStatus.AWAITING_APPROVAL.value:
        raise InvalidState(f"run is {run.status}, not awaiting approval", status=run.status)
    if run.created_by == principal.key_id:
        raise Forbidden("the key that created a run cannot approve it; a second person must")
    session.execute(
        update(_runs)
        .where(_runs.c.id == run_id)
        .values(status=RunStatus.DISPATCHING.value, approved_by=principal.key_id, approved_at=now)
    )
    _enqueue_dispatch(session, run_id=run_id, now=now)
    return get_run(session, principal=principal, run_id=run_id)


def reject_run(session: Session, *, principal: Principal, run_id: int, now: datetime) -> PayoutRun:
    """A run awaiting approval that will not be approved: its payouts fail as never sent
    (``run_rejected``) and what they held goes back — her earnings to be paid in a later
    run, the buyer's fees to its available balance. Without this a run nobody approved kept
    her money held for ever. A buyer key of the organisation (the checker, or the maker
    withdrawing it) or an admin key may reject it; the run is then ``rejected`` (ended: its
    ``completed_at`` says when)."""
    principal.require(Role.BUYER, Role.ADMIN)
    run = _run_row(session, principal, run_id, for_update=True)
    if run.status != RunStatus.AWAITING_APPROVAL.value:
        raise InvalidState(f"run is {run.status}, not awaiting approval", status=run.status)
    rows = session.execute(
        select(_payouts).where(_payouts.c.run_id == run_id).order_by(_payouts.c.id).with_for_update()
    ).all()
    buyer = _run_buyer(session, principal=principal, buyer_id=run.buyer_id)
    assert buyer.available_account_id is not None
    # the buyer's account and all of hers in the ledger's order, before any hold is voided
    journal.lock_accounts(session, {buyer.available_account_id, *(row.earned_account_id for row in rows)})
    for row in rows:
        for hold_id in (row.hold_id, row.fee_hold_id):
            if hold_id is not None:
                journal.void_hold(session, hold_id=hold_id, now=now)
    session.execute(
        update(_payouts)
        .where(_payouts.c.run_id == run_id)
        .values(
            status=PayoutStatus.FAILED.value,
            failure_code="run_rejected",
            failure_reason="the run was rejected before it was approved; nothing was sent",
            settled_at=now,
            updated_at=now,
        )
    )
    record_events(
        session,
        [
            Event(row.id, PayoutStatus.CREATED, PayoutStatus.FAILED, "rejected", {"by_key": principal.key_id})
            for row in rows
        ],
        now=now,
    )
    status = run_transition(RunStatus(run.status), target=RunStatus.REJECTED)
    session.execute(update(_runs).where(_runs.c.id == run_id).values(status=status.value, completed_at=now))
    return get_run(session, principal=principal, run_id=run_id)


def get_run(session: Session, *, principal: Principal, run_id: int) -> PayoutRun:
    row = _run_row(session, principal, run_id)
    payouts = [
        _payout(r)
        for r in session.execute(_select_payouts().where(_payouts.c.run_id == run_id).order_by(_payouts.c.id))
    ]
    return PayoutRun(
        row.id,
        row.buyer_id,
        RunStatus(row.status),
        row._mapping["count"],
        row.total,
        row.fee,
        row.created_by,
        row.approved_by,
        row.created_at,
        row.approved_at,
        row.completed_at,
        payouts,
    )


def get(session: Session, *, principal: Principal, payout_id: int) -> Payout:
    row = session.execute(_select_payouts().where(_payouts.c.id == payout_id)).first()
    if row is None or not _may_see(principal, row.buyer_id):
        raise NotFound("payout not found")
    return _payout(row)


def list_for(
    session: Session, *, principal: Principal, status: PayoutStatus | None, limit: int = 100
) -> list[Payout]:
    query = _select_payouts().order_by(_payouts.c.id.desc()).limit(min(max(limit, 1), 1000))
    if not principal.platform_wide:
        if principal.role is Role.INTERMEDIARY:
            return []
        query = query.where(_payouts.c.buyer_id == principal.organization_id)
    if status is not None:
        query = query.where(_payouts.c.status == status.value)
    return [_payout(r) for r in session.execute(query)]


def events(session: Session, *, payout_id: int) -> list[dict[str, Any]]:
    rows = session.execute(select(_events).where(_events.c.payout_id == payout_id).order_by(_events.c.id))
    return [
        {
            "from": r.from_status,
            "to": r.to_status,
            "source": r.source,
            "detail": r.detail,
            "at": r.created_at.isoformat(),
        }
        for r in rows
    ]


def recent_for_homeworker(
    session: Session, *, homeworker_id: int, buyer_ids: Sequence[int] | None, limit: int = 3
) -> list[Payout]:
    """Her latest payouts, newest first (USSD shows three)."""
    query = (
        _select_payouts()
        .where(_payouts.c.homeworker_id == homeworker_id)
        .order_by(_payouts.c.id.desc())
        .limit(limit)
    )
    if buyer_ids is not None:
        query = query.where(_payouts.c.buyer_id.in_(list(buyer_ids)))
    return [_payout(r) for r in session.execute(query)]


def totals_for_homeworker(
    session: Session, *, homeworker_id: int, buyer_ids: Sequence[int] | None, since: datetime | None = None
) -> tuple[int, int]:
    """(under way, paid): payouts sent but not settled, and payouts confirmed (since a date)."""
    base = select(_payouts.c.status, func.coalesce(func.sum(_payouts.c.amount), 0)).where(
        _payouts.c.homeworker_id == homeworker_id
    )
    if buyer_ids is not None:
        base = base.where(_payouts.c.buyer_id.in_(list(buyer_ids)))
    if since is not None:
        base = base.where(_payouts.c.settled_at >= since)
    sums = {status: int(total) for status, total in session.execute(base.group_by(_payouts.c.status))}
    pending = sum(sums.get(s, 0) for s in IN_FLIGHT)
    return pending, sums.get(PayoutStatus.SUCCEEDED.value, 0)


def lines_for_homeworker(
    session: Session,
    *,
    homeworker_id: int,
    buyer_ids: Sequence[int] | None,
    start: datetime | None,
    end: datetime | None,
) -> list[dict[str, Any]]:
    """Payouts for the payslip."""
    query = select(_payouts).where(_payouts.c.homeworker_id == homeworker_id).order_by(_payouts.c.id)
    if buyer_ids is not None:
        query = query.where(_payouts.c.buyer_id.in_(list(buyer_ids)))
    if start is not None:
        query = query.where(_payouts.c.created_at >= start)
    if end is not None:
        query = query.where(_payouts.c.created_at <= end)
    return [
        {
            "id": r.id,
            "date": (r.settled_at or r.created_at).date().isoformat(),
            "amount": r.amount,
            "status": r.status,
            "reference": r.reference,
            "failure_reason": r.failure_reason,
        }
        for r in session.execute(query)
    ]


# --- internals ------------------------------------------------------------------------------------


def _create_payouts(
    session: Session,
    *,
    run_id: int,
    buyer_id: int,
    owed: Sequence[Any],
    policy: RunPolicy,
    buyer_available: int,
    now: datetime,
) -> None:
    """The run's payouts, their holds and events, written set-based (a run may pay thousands)."""
    if not owed:
        return
    worker_ids = [row.homeworker_id for row in owed]
    wallets = {
        w.id: w
        for w in session.execute(
            select(_workers.c.id, _workers.c.wallet_channel, _workers.c.wallet_account_enc).where(
                _workers.c.id.in_(worker_ids)
            )
        )
    }
    last = (  # her last payout that paid, or may still pay: a failed or reversed one returned its money
        select(_payouts.c.homeworker_id, func.max(_payouts.c.created_at).label("at"))
        .where(
            _payouts.c.buyer_id == buyer_id,
            _payouts.c.homeworker_id.in_(worker_ids),
            _payouts.c.status.not_in([PayoutStatus.FAILED.value, PayoutStatus.REVERSED.value]),
        )
        .group_by(_payouts.c.homeworker_id)
        .subquery()
    )
    since = {row.homeworker_id: row.at for row in session.execute(select(last))}
    pieces = dict(
        session.execute(
            select(_deliveries.c.homeworker_id, func.sum(_deliveries.c.accepted))
            .join(_orders, _orders.c.id == _deliveries.c.order_id)
            .outerjoin(last, last.c.homeworker_id == _deliveries.c.homeworker_id)
            .where(
                _orders.c.buyer_id == buyer_id,
                _deliveries.c.status == "confirmed",
                _deliveries.c.homeworker_id.in_(worker_ids),
                (last.c.at.is_(None)) | (_deliveries.c.confirmed_at > last.c.at),
            )
            .group_by(_deliveries.c.homeworker_id)
        ).all()
    )
    ids = insert_rows_returning_ids(
        session,
        _payouts,
        [
            {
                "run_id": run_id,
                "buyer_id": buyer_id,
                "homeworker_id": row.homeworker_id,
                "amount": int(row.free),
                "currency": "IDR",
                "fee": policy.fee_per_payout,
                "status": PayoutStatus.CREATED.value,
                "idempotency_key": f"upah-payout-{secrets.token_hex(12)}",
                "reference": f"UPH{secrets.token_hex(5).upper()}",
                "provider": policy.provider,
                "channel": wallets[row.homeworker_id].wallet_channel,
                "account_enc": wallets[row.homeworker_id].wallet_account_enc,
                "earned_account_id": row.account_id,
                "pieces": int(pieces.get(row.homeworker_id) or 0),
                "period_from": since.get(row.homeworker_id),
                "period_to": now,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for row in owed
        ],
    )
    # Her earnings and the buyer's fees are held in one call, which locks every account in
    # the ledger's one order (by id), as every posting does.
    requests = [
        journal.HoldRequest(
            f"payout:{pid}:earned", row.account_id, int(row.free), metadata={"payout_id": pid}
        )
        for pid, row in zip(ids, owed, strict=True)
    ]
    if policy.fee_per_payout:
        requests += [
            journal.HoldRequest(
                f"payout:{pid}:fee", buyer_available, policy.fee_per_payout, metadata={"payout_id": pid}
            )
            for pid in ids
        ]
    placed = journal.place_holds(session, requests, now=now)
    holds = placed[: len(ids)]
    fee_holds: list[int | None] = list(placed[len(ids) :]) if policy.fee_per_payout else [None] * len(ids)
    update_rows(
        session,
        _payouts,
        [{"id": i, "hold_id": h, "fee_hold_id": f} for i, h, f in zip(ids, holds, fee_holds, strict=True)],
        key="id",
        assign=lambda v: {"hold_id": v["hold_id"], "fee_hold_id": v["fee_hold_id"]},
    )
    insert_rows(
        session,
        _events,
        [
            {
                "payout_id": pid,
                "from_status": None,
                "to_status": PayoutStatus.CREATED.value,
                "source": "run",
                "detail": {"run_id": run_id},
                "created_at": now,
            }
            for pid in ids
        ],
    )


def record_event(
    session: Session,
    *,
    payout_id: int,
    from_status: PayoutStatus | None,
    to_status: PayoutStatus,
    source: str,
    detail: dict[str, Any],
    now: datetime,
) -> None:
    session.execute(
        insert(_events),
        {
            "payout_id": payout_id,
            "from_status": from_status.value if from_status else None,
            "to_status": to_status.value,
            "source": source,
            "detail": detail,
            "created_at": now,
        },
    )


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a payout's history, for ``record_events``."""

    payout_id: int
    from_status: PayoutStatus | None
    to_status: PayoutStatus
    source: str
    detail: dict[str, Any]


def record_events(session: Session, events: Sequence[Event], *, now: datetime) -> None:
    """``record_event`` for many payouts in one statement."""
    insert_rows(
        session,
        _events,
        [
            {
                "payout_id": e.payout_id,
                "from_status": e.from_status.value if e.from_status else None,
                "to_status": e.to_status.value,
                "source": e.source,
                "detail": e.detail,
                "created_at": now,
            }
            for e in events
        ],
    )


def _enqueue_dispatch(session: Session, *, run_id: int, now: datetime) -> None:
    ids = (
        session.execute(
            select(_payouts.c.id).where(
                _payouts.c.run_id == run_id, _payouts.c.status == PayoutStatus.CREATED.value
            )
        )
        .scalars()
        .all()
    )
    batches = [list(ids[i : i + DISPATCH_BATCH_SIZE]) for i in range(0, len(ids), DISPATCH_BATCH_SIZE)]
    outbox.add_many(
        session, topic=outbox.DISPATCH_BATCH, payloads=[{"payout_ids": b} for b in batches], now=now
    )


def _run_buyer(session: Session, *, principal: Principal, buyer_id: int | None) -> parties.Organization:
    """The buyer organisation a run pays for; refused before anything is written."""
    principal.require(Role.BUYER, Role.ADMIN)
    if principal.role is Role.BUYER:
        assert principal.organization_id is not None
        if buyer_id is not None and buyer_id != principal.organization_id:
            raise NotFound("organisation not found")  # another organisation's does not exist for you
        return parties.get_organization(
            session, principal=principal, organization_id=principal.organization_id
        )
    if buyer_id is None:
        raise ValidationFailed(
            'buyer_id: an admin key must name the buyer organisation the run pays for: {"buyer_id": N}',
            field="buyer_id",
        )
    buyer = parties.get_organization(session, principal=principal, organization_id=buyer_id)
    if buyer.kind is not OrganizationKind.BUYER:
        raise ValidationFailed(
            f"buyer_id: organisation {buyer.id} is not a buyer but an {buyer.kind.value}; "
            "a payout run pays what a buyer owes",
            field="buyer_id",
        )
    return buyer


def _run_row(session: Session, principal: Principal, run_id: int, *, for_update: bool = False) -> Row[Any]:
    query = select(_runs).where(_runs.c.id == run_id)
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).first()
    if row is None or not _may_see(principal, row.buyer_id):
        raise NotFound("payout run not found")
    return row


def _may_see(principal: Principal, buyer_id: int) -> bool:
    return principal.platform_wide or principal.organization_id == buyer_id


def _select_payouts() -> Select[Any]:
    """Payouts, each with the amount of its pending conflict hold, if any."""
    before, after = _CONFLICT_KEY
    key = literal(before) + cast(_payouts.c.id, String) + literal(after)  # conflict_hold_key, in SQL
    conflict = and_(_holds.c.key == key, _holds.c.status == HoldStatus.PENDING.value)
    return select(_payouts, _holds.c.amount.label("conflict_held")).select_from(
        _payouts.outerjoin(_holds, conflict)
    )


def _payout(r: Row[Any]) -> Payout:
    return Payout(
        r.id,
        r.run_id,
        r.buyer_id,
        r.homeworker_id,
        r.amount,
        r.fee,
        PayoutStatus(r.status),
        r.reference,
        r.provider,
        r.provider_reference,
        r.failure_code,
        r.failure_reason,
        r.attempts,
        r.created_at,
        r.submitted_at,
        r.settled_at,
        r.conflict_held,
    )
