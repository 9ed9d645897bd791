"""Builders with unique references, so tests share a database without colliding."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from ledger import Account, AccountType, EntryDraft, JournalEntry, Posting
from ledger import journal as journal_api


def ref(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def make_account(
    session: Session,
    *,
    type: AccountType = AccountType.ASSET,
    currency: str = "IDR",
    no_overdraft: bool = False,
    owner: str = "test",
) -> Account:
    return journal_api.open_account(
        session,
        code=ref("acct"),
        type=type,
        currency=currency,
        owner=owner,
        now=datetime.now(UTC),
        no_overdraft=no_overdraft,
    )


def transfer(
    source: int,
    target: int,
    amount: int,
    *,
    key: str | None = None,
    currency: str = "IDR",
    metadata: dict[str, object] | None = None,
) -> EntryDraft:
    """Credit ``source``, debit ``target``: for two liability accounts, money moves source → target."""
    return EntryDraft(
        key=key or ref("e"),
        postings=(Posting.debit(source, amount, currency), Posting.credit(target, amount, currency)),
        effective_at=datetime.now(UTC),
        metadata=metadata or {},
    )


def fund(session: Session, account: Account, amount: int) -> JournalEntry:
    """Give a liability account ``amount`` from a fresh cash (asset) account."""
    cash = make_account(session, type=AccountType.ASSET)
    draft = EntryDraft(
        key=ref("fund"),
        postings=(
            Posting.debit(cash.id, amount, account.currency),
            Posting.credit(account.id, amount, account.currency),
        ),
        effective_at=datetime.now(UTC),
    )
    return journal_api.post(session, draft, now=datetime.now(UTC))
