"""Upah's double-entry ledger: accounts, balanced journal entries, holds, and proof.

Knows nothing of orders, HTTP or queues. The public API is what this module exports.
"""

from ledger.accounts import Account, AccountStatus, AccountType, Balance, sign
from ledger.atomic import atomic, post_alone, retrying
from ledger.entries import EntryDraft, JournalEntry, Posting
from ledger.errors import LedgerError
from ledger.holds import Hold, HoldStatus
from ledger.money import Money, parse_amount, ratio_split, round_minor

__all__ = [
    "Account",
    "AccountStatus",
    "AccountType",
    "Balance",
    "EntryDraft",
    "Hold",
    "HoldStatus",
    "JournalEntry",
    "LedgerError",
    "Money",
    "Posting",
    "atomic",
    "parse_amount",
    "post_alone",
    "ratio_split",
    "retrying",
    "round_minor",
    "sign",
]
