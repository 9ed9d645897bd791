"""The chart of accounts: which ledger account holds what, named by a stable code.

| account | type | holds |
| --- | --- | --- |
| platform:cash:IDR | asset | money the platform holds at banks and providers |
| org:{id}:available | liability | a buyer's funds not yet committed |
| order:{id}:held | liability | funds committed to one work order |
| hw:{id}:buyer:{id}:earned | liability | what a homeworker is owed by one buyer |
| org:{id}:commission | liability | what an intermediary has earned in commission |
| provider:{name}:in_flight | liability | payouts sent to a provider, not yet confirmed |
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ledger import Account, AccountType, journal

CURRENCY = "IDR"


def platform_cash(session: Session, *, now: datetime) -> Account:
    return _open(session, f"platform:cash:{CURRENCY}", AccountType.ASSET, "platform", now, no_overdraft=False)


def organization_available(session: Session, *, organization_id: int, now: datetime) -> Account:
    return _open(
        session, f"org:{organization_id}:available", AccountType.LIABILITY, f"org:{organization_id}", now
    )


def organization_commission(session: Session, *, organization_id: int, now: datetime) -> Account:
    return _open(
        session, f"org:{organization_id}:commission", AccountType.LIABILITY, f"org:{organization_id}", now
    )


def order_held(session: Session, *, order_id: int, buyer_id: int, now: datetime) -> Account:
    return _open(session, f"order:{order_id}:held", AccountType.LIABILITY, f"org:{buyer_id}", now)


def earnings(session: Session, *, homeworker_id: int, buyer_id: int, now: datetime) -> Account:
    return _open(
        session,
        f"hw:{homeworker_id}:buyer:{buyer_id}:earned",
        AccountType.LIABILITY,
        f"hw:{homeworker_id}",
        now,
    )


def provider_in_flight(session: Session, *, provider: str, now: datetime) -> Account:
    return _open(
        session, f"provider:{provider}:in_flight", AccountType.LIABILITY, f"provider:{provider}", now
    )


def _open(
    session: Session, code: str, kind: AccountType, owner: str, now: datetime, *, no_overdraft: bool = True
) -> Account:
    found = journal.find_account_by_code(session, code)
    if found is not None:
        return found
    return journal.open_account(
        session, code=code, type=kind, currency=CURRENCY, owner=owner, now=now, no_overdraft=no_overdraft
    )
