"""Read-only questions an auditor asks of the ledger.

Checks return lists of problem records instead of raising, so that one report can show
every break at once (the beancount way).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ledger import chain
from ledger.accounts import AccountType, sign
from ledger.errors import AccountNotFound
from ledger.tables import AccountRow, CheckpointRow, EntryRow, HoldRow, PostingRow, SealRow, table_of

_accounts = table_of(AccountRow)
_entries = table_of(EntryRow)
_postings = table_of(PostingRow)
_seals = table_of(SealRow)
_checkpoints = table_of(CheckpointRow)
_holds = table_of(HoldRow)


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    message: str
    account_id: int | None = None
    seq: int | None = None
    entry_id: int | None = None


@dataclass(frozen=True, slots=True)
class TrialBalanceLine:
    account_id: int
    code: str
    type: AccountType
    currency: str
    debit: int
    credit: int

    @property
    def balance(self) -> int:
        return sign(self.type) * (self.debit - self.credit)


@dataclass(frozen=True, slots=True)
class TrialBalance:
    as_of: datetime | None
    lines: list[TrialBalanceLine]
    totals: dict[str, tuple[int, int]]  # currency -> (debits, credits)

    @property
    def balanced(self) -> bool:
        return all(d == c for d, c in self.totals.values())


@dataclass(frozen=True, slots=True)
class StatementLine:
    entry_id: int
    effective_at: datetime
    description: str
    amount: int  # on the account's normal side
    running_balance: int


@dataclass(frozen=True, slots=True)
class Statement:
    account_id: int
    currency: str
    opening_balance: int
    lines: list[StatementLine]
    closing_balance: int


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    entries_checked: int
    checkpoints_checked: int
    unsealed: int
    first_break: Problem | None
    problems: list[Problem] = field(default_factory=list)


def trial_balance(session: Session, *, as_of: datetime | None = None) -> TrialBalance:
    """Every account's debits and credits (from the postings) at ``as_of``, totals per currency."""
    debit = func.coalesce(func.sum(case((_postings.c.amount > 0, _postings.c.amount), else_=0)), 0)
    credit = func.coalesce(func.sum(case((_postings.c.amount < 0, -_postings.c.amount), else_=0)), 0)
    joined = _postings.join(_entries, _entries.c.id == _postings.c.entry_id)
    sums = select(_postings.c.account_id, debit.label("debit"), credit.label("credit")).select_from(joined)
    if as_of is not None:
        sums = sums.where(_entries.c.effective_at <= as_of)
    per_account = {
        r.account_id: (int(r.debit), int(r.credit))
        for r in session.execute(sums.group_by(_postings.c.account_id))
    }
    lines = []
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in session.execute(select(_accounts).order_by(_accounts.c.id)):
        d, c = per_account.get(row.id, (0, 0))
        lines.append(TrialBalanceLine(row.id, row.code, AccountType(row.type), row.currency, d, c))
        totals[row.currency][0] += d
        totals[row.currency][1] += c
    return TrialBalance(as_of, lines, {cur: (d, c) for cur, (d, c) in totals.items()})


def statement(
    session: Session, *, account_id: int, start: datetime | None, end: datetime | None
) -> Statement:
    """Opening balance at ``start``, each entry with its running balance, closing at ``end``."""
    account = session.execute(select(_accounts).where(_accounts.c.id == account_id)).first()
    if account is None:
        raise AccountNotFound(f"account {account_id} does not exist", account_id=account_id)
    s = sign(AccountType(account.type))
    opening = 0
    if start is not None:
        opening = s * int(
            session.execute(
                select(func.coalesce(func.sum(_postings.c.amount), 0))
                .select_from(_postings.join(_entries, _entries.c.id == _postings.c.entry_id))
                .where(_postings.c.account_id == account_id, _entries.c.effective_at < start)
            ).scalar_one()
        )
    query = (
        select(
            _entries.c.id,
            _entries.c.effective_at,
            _entries.c.description,
            func.sum(_postings.c.amount).label("amount"),
        )
        .select_from(_postings.join(_entries, _entries.c.id == _postings.c.entry_id))
        .where(_postings.c.account_id == account_id)
        .group_by(_entries.c.id, _entries.c.effective_at, _entries.c.description)
        .order_by(_entries.c.effective_at, _entries.c.id)
    )
    if start is not None:
        query = query.where(_entries.c.effective_at >= start)
    if end is not None:
        query = query.where(_entries.c.effective_at <= end)
    running = opening
    lines = []
    for row in session.execute(query):
        amount = s * int(row.amount)
        running += amount
        lines.append(StatementLine(row.id, row.effective_at, row.description, amount, running))
    return Statement(account_id, account.currency, opening, lines, running)


def check_integrity(session: Session) -> list[Problem]:
    """Every materialised balance equals its postings, every currency and entry sums to zero,
    every account's held amount equals its pending holds, and no account that may not be
    overdrawn is."""
    problems: list[Problem] = []
    sums = dict(
        session.execute(
            select(_postings.c.account_id, func.sum(_postings.c.amount)).group_by(_postings.c.account_id)
        ).all()
    )
    pending = dict(
        session.execute(
            select(_holds.c.account_id, func.sum(_holds.c.amount))
            .where(_holds.c.status == "pending")
            .group_by(_holds.c.account_id)
        ).all()
    )
    for row in session.execute(
        select(
            _accounts.c.id, _accounts.c.type, _accounts.c.balance, _accounts.c.held, _accounts.c.no_overdraft
        )
    ):
        expected = sign(AccountType(row.type)) * int(sums.get(row.id, 0))
        if row.balance != expected:
            problems.append(
                Problem(
                    "balance_mismatch",
                    f"account {row.id} shows {row.balance}, its postings sum to {expected}",
                    account_id=row.id,
                )
            )
        if row.held != int(pending.get(row.id, 0)):
            problems.append(
                Problem(
                    "held_mismatch",
                    f"account {row.id} holds {row.held}, its pending holds sum to {pending.get(row.id, 0)}",
                    account_id=row.id,
                )
            )
        if row.no_overdraft and row.balance - row.held < 0:
            problems.append(
                Problem(
                    "overdrawn",
                    f"account {row.id} may not be overdrawn and has {row.balance - row.held} available",
                    account_id=row.id,
                )
            )
    for cur, total in session.execute(
        select(_postings.c.currency, func.sum(_postings.c.amount)).group_by(_postings.c.currency)
    ):
        if int(total) != 0:
            problems.append(Problem("currency_unbalanced", f"postings in {cur} sum to {total}, not zero"))
    unbalanced = (
        session.execute(
            select(_postings.c.entry_id)
            .group_by(_postings.c.entry_id, _postings.c.currency)
            .having(func.sum(_postings.c.amount) != 0)
            .limit(10)
        )
        .scalars()
        .all()
    )
    problems.extend(
        Problem("entry_unbalanced", f"entry {eid} does not sum to zero", entry_id=eid) for eid in unbalanced
    )
    return problems


def verify_chain(session: Session, *, batch: int = 2000) -> VerifyReport:
    """Recompute every seal's digest, check every checkpoint's signature, run the integrity check."""
    problems: list[Problem] = []
    checked = 0
    prev = chain.GENESIS
    digests: dict[int, str] = {}
    checkpoint_seqs = set(session.execute(select(_checkpoints.c.seq)).scalars())
    last_seq = 0
    for seal_batch in _seal_batches(session, batch):
        inputs = {item.entry_id: item for item in seal_inputs(session, [s.entry_id for s in seal_batch])}
        for seal in seal_batch:
            if seal.seq != last_seq + 1:
                problems.append(Problem("chain_gap", f"seal {last_seq + 1} is missing", seq=last_seq + 1))
            last_seq = seal.seq
            item = inputs.get(seal.entry_id)
            if item is None:
                problems.append(
                    Problem(
                        "entry_missing",
                        f"sealed entry {seal.entry_id} is gone",
                        seq=seal.seq,
                        entry_id=seal.entry_id,
                    )
                )
                prev = seal.digest
                continue
            expected = chain.digest(prev, seal.seq, item)
            if expected != seal.digest:
                problems.append(
                    Problem(
                        "digest_mismatch",
                        f"entry {seal.entry_id} at seq {seal.seq} does not match its seal",
                        seq=seal.seq,
                        entry_id=seal.entry_id,
                    )
                )
            prev = seal.digest
            if seal.seq in checkpoint_seqs:
                digests[seal.seq] = expected
            checked += 1
    checkpoints = 0
    for cp in session.execute(select(_checkpoints).order_by(_checkpoints.c.seq)):
        checkpoints += 1
        if not chain.verify_checkpoint(cp.public_key, cp.seq, cp.digest, cp.signature):
            problems.append(
                Problem("bad_signature", f"checkpoint at seq {cp.seq} has an invalid signature", seq=cp.seq)
            )
        elif digests.get(cp.seq) != cp.digest:
            problems.append(
                Problem(
                    "checkpoint_mismatch",
                    f"the chain at seq {cp.seq} differs from its signed checkpoint",
                    seq=cp.seq,
                )
            )
    unsealed = int(
        session.execute(
            select(func.count()).select_from(_entries).where(_entries.c.id.not_in(select(_seals.c.entry_id)))
        ).scalar_one()
    )
    problems.extend(check_integrity(session))
    chain_breaks = sorted((p for p in problems if p.seq is not None), key=lambda p: p.seq or 0)
    first = chain_breaks[0] if chain_breaks else (problems[0] if problems else None)
    return VerifyReport(not problems, checked, checkpoints, unsealed, first, problems)


def seal_inputs(session: Session, entry_ids: Sequence[int]) -> list[chain.SealInput]:
    """The entries with their postings, in the order given, as the chain encodes them."""
    if not entry_ids:
        return []
    postings: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for p in session.execute(
        select(_postings.c.entry_id, _postings.c.account_id, _postings.c.amount, _postings.c.currency)
        .where(_postings.c.entry_id.in_(entry_ids))
        .order_by(_postings.c.id)
    ):
        postings[p.entry_id].append((p.account_id, p.amount, p.currency))
    rows = {r.id: r for r in session.execute(select(_entries).where(_entries.c.id.in_(entry_ids)))}
    return [
        chain.SealInput(
            entry_id=r.id,
            key=r.key,
            effective_at=r.effective_at,
            description=r.description,
            metadata=r.metadata,
            reverses_id=r.reverses_id,
            postings=postings[r.id],
        )
        for r in (rows[i] for i in entry_ids if i in rows)
    ]


def _seal_batches(session: Session, size: int) -> Iterator[list[SealRow]]:
    after = 0
    while True:
        rows = session.execute(
            select(_seals.c.seq, _seals.c.entry_id, _seals.c.digest)
            .where(_seals.c.seq > after)
            .order_by(_seals.c.seq)
            .limit(size)
        ).all()
        if not rows:
            return
        yield rows  # type: ignore[misc]
        after = rows[-1].seq
