"""Holds: two-phase reservations against an account's available balance.

A hold is placed (pending) and then resolves exactly once: captured (in full or in part;
the rest is released), voided, or expired by the sweeper. An expired hold can never be
captured, even if the sweeper has not reached it yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ledger.errors import HoldExpired, HoldNotPending


class HoldStatus(StrEnum):
    PENDING = "pending"
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Hold:
    id: int
    key: str
    account_id: int
    amount: int
    currency: str
    status: HoldStatus
    expires_at: datetime | None
    captured_amount: int
    entry_id: int | None


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and now >= expires_at


def check_resolvable(
    status: HoldStatus, expires_at: datetime | None, now: datetime, *, capturing: bool
) -> None:
    """Raise unless a hold in this state may be resolved now."""
    if status is not HoldStatus.PENDING:
        raise HoldNotPending(f"hold is {status.value}, not pending", status=status.value)
    if capturing and is_expired(expires_at, now):
        raise HoldExpired("hold has expired and can no longer be captured")
