"""Accounts: what kind of thing an account is, and which side is its normal side.

Postings carry signed amounts, debit positive and credit negative, so that every entry
sums to zero. An account's *balance* is expressed on its normal side: assets and
expenses grow with debits, liabilities, equity and income with credits. ``sign()`` is
the one place that rule lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    INCOME = "income"
    EXPENSE = "expense"


class AccountStatus(StrEnum):
    OPEN = "open"
    FROZEN = "frozen"
    CLOSED = "closed"


DEBIT_NORMAL = frozenset({AccountType.ASSET, AccountType.EXPENSE})


def sign(account_type: AccountType) -> int:
    """+1 where a debit (positive posting) raises the balance, -1 where a credit does."""
    return 1 if account_type in DEBIT_NORMAL else -1


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    code: str
    type: AccountType
    currency: str
    owner: str
    no_overdraft: bool
    status: AccountStatus
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's balance on its normal side; ``available = posted - held``."""

    account_id: int
    currency: str
    posted: int
    held: int

    @property
    def available(self) -> int:
        return self.posted - self.held
