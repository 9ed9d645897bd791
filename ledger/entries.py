"""Journal entries: two or more postings that sum to zero per currency.

A draft is checked here, before anything touches a database: amounts are non-zero
integers within int64, every currency balances, and the draft's canonical content is
what idempotency compares — so a retried request with the same key and the same content
is recognised, and one with different content is refused naming the field that differs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.errors import InvalidEntry, UnbalancedEntry
from ledger.money import MAX_AMOUNT, check_amount, check_currency

JsonObject = Mapping[str, Any]

MAX_ACCOUNT_ID = 2**63 - 1
"""Account ids are the database's bigint ids: positive, within int64."""


@dataclass(frozen=True, slots=True)
class Posting:
    """One line of an entry: ``amount`` is signed, debit positive, credit negative."""

    account_id: int
    amount: int
    currency: str

    @staticmethod
    def debit(account_id: int, amount: int, currency: str) -> Posting:
        return Posting(account_id, check_amount(amount), currency)

    @staticmethod
    def credit(account_id: int, amount: int, currency: str) -> Posting:
        return Posting(account_id, -check_amount(amount), currency)


@dataclass(frozen=True, slots=True)
class EntryDraft:
    key: str
    postings: tuple[Posting, ...]
    effective_at: datetime
    description: str = ""
    metadata: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: int
    key: str
    postings: tuple[Posting, ...]
    effective_at: datetime
    created_at: datetime
    description: str
    metadata: JsonObject
    reverses_id: int | None


def check_balanced(draft: EntryDraft) -> None:
    """Raise unless the draft is a well-formed, balanced entry."""
    if not draft.key or len(draft.key) > 200 or _unstorable(draft.key):
        raise InvalidEntry(
            "an entry needs an idempotency key of 1 to 200 characters, none of them NUL or a lone surrogate"
        )
    if draft.effective_at.tzinfo is None:
        raise InvalidEntry("effective_at must be timezone-aware")
    if len(draft.postings) < 2:
        raise InvalidEntry("an entry needs at least two postings")
    totals: dict[str, int] = {}
    for posting in draft.postings:
        account_id, amount, currency = posting.account_id, posting.amount, posting.currency
        if type(account_id) is not int and (isinstance(account_id, bool) or not isinstance(account_id, int)):
            raise InvalidEntry("a posting names its account by its integer id")
        if not 0 < account_id <= MAX_ACCOUNT_ID:
            raise InvalidEntry("a posting names its account by its id, a positive 64-bit integer")
        check_currency(currency)
        if type(amount) is not int and (isinstance(amount, bool) or not isinstance(amount, int)):
            raise InvalidEntry("posting amounts must be integers")
        check_amount(abs(amount))
        totals[currency] = totals.get(currency, 0) + amount
    unbalanced = {cur: total for cur, total in totals.items() if total != 0}
    if unbalanced:
        raise UnbalancedEntry(
            "postings do not sum to zero per currency",
            imbalance={cur: str(total) for cur, total in unbalanced.items()},
        )
    if _unstorable(draft.description):
        raise InvalidEntry("a description may not contain NUL characters or lone surrogates")
    if draft.metadata:  # most entries carry none: spare them the serialising
        try:
            json.dumps(dict(draft.metadata), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:  # NaN and infinities are not JSON: PostgreSQL refuses them
            raise InvalidEntry("metadata must be JSON-serialisable, without NaN or infinities") from exc
        if _holds_unstorable(draft.metadata):
            raise InvalidEntry("metadata may not contain NUL characters or lone surrogates")


def _unstorable(text: str) -> bool:
    """True for text a database cannot store as it is: a NUL (PostgreSQL's text and jsonb
    refuse it, SQLite would keep it) or a lone surrogate (not Unicode: PostgreSQL refuses it,
    quoting the text back in its error)."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _holds_unstorable(value: object) -> bool:
    """True if any string of a JSON value, keys included, is unstorable."""
    if isinstance(value, str):
        return _unstorable(value)
    if isinstance(value, Mapping):
        return any(_holds_unstorable(k) or _holds_unstorable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_unstorable(v) for v in value)
    return False


def reversal_of(entry: JournalEntry, *, key: str, reason: str, effective_at: datetime) -> EntryDraft:
    """The mirror entry that undoes ``entry``."""
    return EntryDraft(
        key=key,
        postings=tuple(Posting(p.account_id, -p.amount, p.currency) for p in entry.postings),
        effective_at=effective_at,
        description=f"reversal of entry {entry.id}: {reason}",
        metadata={"reverses": entry.id, "reason": reason},
    )


def canonical_content(draft: EntryDraft) -> dict[str, Any]:
    """The fields idempotency compares, in a stable form."""
    return {
        "postings": sorted([p.account_id, p.amount, p.currency] for p in draft.postings),
        "effective_at": draft.effective_at.isoformat(),
        "description": draft.description,
        "metadata": json.loads(json.dumps(dict(draft.metadata), sort_keys=True)) if draft.metadata else {},
    }


def first_difference(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> str | None:
    """Name the first field where two canonical contents differ."""
    for name in ("postings", "effective_at", "description", "metadata"):
        if stored.get(name) != requested.get(name):
            return name
    return None


def imbalance_total(postings: Sequence[Posting]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for p in postings:
        totals[p.currency] += p.amount
    return dict(totals)


__all__ = [
    "MAX_AMOUNT",
    "EntryDraft",
    "JournalEntry",
    "Posting",
    "canonical_content",
    "check_balanced",
    "first_difference",
    "reversal_of",
]
