"""The ledger's exception tree. Every error carries a machine-readable ``code``.

LedgerError
├── InvalidEntry            invalid_entry
│   ├── UnbalancedEntry     unbalanced_entry
│   ├── InvalidAmount       invalid_amount
│   │   └── AmountOutOfRange amount_out_of_range
│   └── CurrencyMismatch    currency_mismatch
├── AccountNotFound         account_not_found
├── EntryNotFound           entry_not_found
├── HoldNotFound            hold_not_found
├── AccountNotOpen          account_closed (frozen or closed)
├── InsufficientFunds       insufficient_funds
├── IdempotencyConflict     idempotency_conflict
├── HoldNotPending          hold_not_pending
│   └── HoldExpired         hold_expired
├── AlreadyReversed         already_reversed
└── ConcurrencyExhausted    concurrency_exhausted
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    code = "ledger_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidEntry(LedgerError):
    code = "invalid_entry"


class UnbalancedEntry(InvalidEntry):
    code = "unbalanced_entry"


class InvalidAmount(InvalidEntry):
    code = "invalid_amount"


class AmountOutOfRange(InvalidAmount):
    code = "amount_out_of_range"


class CurrencyMismatch(InvalidEntry):
    code = "currency_mismatch"


class AccountNotFound(LedgerError):
    code = "account_not_found"


class EntryNotFound(LedgerError):
    code = "entry_not_found"


class HoldNotFound(LedgerError):
    code = "hold_not_found"


class AccountNotOpen(LedgerError):
    code = "account_closed"


class InsufficientFunds(LedgerError):
    code = "insufficient_funds"


class IdempotencyConflict(LedgerError):
    code = "idempotency_conflict"


class HoldNotPending(LedgerError):
    code = "hold_not_pending"


class HoldExpired(HoldNotPending):
    code = "hold_expired"


class AlreadyReversed(LedgerError):
    code = "already_reversed"


class ConcurrencyExhausted(LedgerError):
    code = "concurrency_exhausted"
