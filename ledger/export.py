"""The books in formats auditors' own tools read: Beancount, and CSV.

The Beancount export is a complete, checkable book: an ``open`` directive per account
(with its currency, so a posting in the wrong currency is an error), one transaction per
journal entry carrying its id, key, time, hash-chain seal and metadata, and a ``balance``
assertion for every account at the start of each day after it moved. ``bean-check`` from
the beancount package must accept it, and must refuse it when any posting is altered: one
changed leg unbalances its transaction, both legs changed break the next day's balances.

Dates are the UTC date of each entry's ``effective_at``. Amounts are the ledger's own
integers in the minor unit: Beancount's sign convention is ours (debits positive), so a
liability's balance shows negative, as Beancount expects.

A scoped export (``account_ids``) holds the entries touching those accounts, with all their
postings, and balance assertions only for the accounts in scope — for shared accounts
(platform cash, a provider's in-flight account) a part of their postings proves nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TextIO

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ledger.accounts import AccountType
from ledger.tables import AccountRow, CheckpointRow, EntryRow, PostingRow, SealRow, table_of

_accounts = table_of(AccountRow)
_entries = table_of(EntryRow)
_postings = table_of(PostingRow)
_seals = table_of(SealRow)
_checkpoints = table_of(CheckpointRow)

ROOTS = {
    AccountType.ASSET: "Assets",
    AccountType.LIABILITY: "Liabilities",
    AccountType.EQUITY: "Equity",
    AccountType.INCOME: "Income",
    AccountType.EXPENSE: "Expenses",
}
_COMPONENT_JUNK = re.compile(r"[^A-Za-z0-9-]+")
_META_KEY = re.compile(r"[a-z][a-zA-Z0-9_-]*")
_RESERVED = frozenset(
    {
        "entry_id",
        "key",
        "effective_at",
        "reverses_id",
        "chain_seq",
        "chain_digest",
        "metadata",
        "filename",
        "lineno",
    }
)
BATCH = 5000


@dataclass(frozen=True, slots=True)
class ExportSummary:
    accounts: int
    entries: int
    postings: int
    balance_assertions: int


def account_name(account_type: AccountType, code: str) -> str:
    """Beancount name of an account: ``hw:3:buyer:5:earned`` → ``Liabilities:Hw:3:Buyer:5:Earned``."""
    parts = [ROOTS[account_type]]
    for raw in code.split(":"):
        part = _COMPONENT_JUNK.sub("-", raw).strip("-") or "X"
        parts.append(part[0].upper() + part[1:])
    return ":".join(parts)


def write_beancount(
    session: Session,
    out: TextIO,
    *,
    account_ids: Collection[int] | None = None,
    title: str = "Upah ledger",
) -> ExportSummary:
    """Write the books (or the entries touching ``account_ids``) as a Beancount file."""
    scope = None if account_ids is None else frozenset(account_ids)
    names, currencies, opens = _accounts_for(session, scope)
    out.write(f"; {title}: exported from the Upah ledger. Amounts are integers in the minor unit.\n")
    out.write(f'option "title" {_string(title)}\n')
    for currency in sorted(set(currencies.values())):
        out.write(f'option "operating_currency" "{currency}"\n')
    out.write("\n")
    for account_id in sorted(opens, key=lambda a: (opens[a][0], a)):
        opened, code = opens[account_id]
        out.write(f"{opened.isoformat()} open {names[account_id]} {currencies[account_id]}\n")
        out.write(f"  account_id: {account_id}\n  code: {_string(code)}\n")
    out.write("\n")
    if scope is None:
        _write_checkpoints(session, out)
    running: dict[int, int] = {}
    touched: set[int] = set()
    day: date | None = None
    entries = postings = assertions = 0
    for entry, lines in _entries_with_postings(session, scope):
        entry_day = _utc_date(entry["effective_at"])
        if day is not None and entry_day != day and touched:
            assertions += _write_balances(out, day, touched, running, names, currencies, scope)
            touched = set()
        day = entry_day
        _write_transaction(out, entry, lines, names)
        entries += 1
        for account_id, amount, _currency in lines:
            running[account_id] = running.get(account_id, 0) + amount
            touched.add(account_id)
            postings += 1
    if day is not None and touched:
        assertions += _write_balances(out, day, touched, running, names, currencies, scope)
    return ExportSummary(len(opens), entries, postings, assertions)


def beancount_text(session: Session, *, account_ids: Collection[int] | None = None) -> str:
    buffer = io.StringIO()
    write_beancount(session, buffer, account_ids=account_ids)
    return buffer.getvalue()


ENTRY_COLUMNS = (
    "entry_id",
    "key",
    "effective_at",
    "created_at",
    "description",
    "reverses_id",
    "account_id",
    "account_code",
    "amount",
    "currency",
    "chain_seq",
    "chain_digest",
    "metadata",
)


def write_entries_csv(
    session: Session,
    out: TextIO,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    account_ids: Collection[int] | None = None,
) -> int:
    """One row per posting: signed amount (debit positive) in the minor unit. Returns rows written."""
    scope = None if account_ids is None else frozenset(account_ids)
    codes = dict(session.execute(select(_accounts.c.id, _accounts.c.code)).all())
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ENTRY_COLUMNS)
    rows = 0
    for entry, lines in _entries_with_postings(session, scope, start=start, end=end):
        for account_id, amount, currency in lines:
            writer.writerow(
                [
                    entry["id"],
                    entry["key"],
                    entry["effective_at"].isoformat(),
                    entry["created_at"].isoformat(),
                    entry["description"],
                    entry["reverses_id"] if entry["reverses_id"] is not None else "",
                    account_id,
                    codes.get(account_id, ""),
                    amount,
                    currency,
                    entry["seq"] if entry["seq"] is not None else "",
                    entry["digest"] or "",
                    json.dumps(entry["metadata"], sort_keys=True, separators=(",", ":")),
                ]
            )
            rows += 1
    return rows


# --- internals ----------------------------------------------------------------------------------


def _utc_date(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def _string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n")
    return f'"{escaped}"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    return _string(json.dumps(value, sort_keys=True, separators=(",", ":")))


def _accounts_for(
    session: Session, scope: frozenset[int] | None
) -> tuple[dict[int, str], dict[int, str], dict[int, tuple[date, str]]]:
    """Names and currencies of every account; the open date of each account the export uses."""
    first = (
        select(_postings.c.account_id, func.min(_entries.c.effective_at).label("first"))
        .select_from(_postings.join(_entries, _entries.c.id == _postings.c.entry_id))
        .group_by(_postings.c.account_id)
    )
    if scope is not None:
        first = first.where(_postings.c.entry_id.in_(_touching(scope)))
    first_use = {r.account_id: r.first for r in session.execute(first)}
    names: dict[int, str] = {}
    currencies: dict[int, str] = {}
    opens: dict[int, tuple[date, str]] = {}
    taken: set[str] = set()
    for row in session.execute(
        select(
            _accounts.c.id, _accounts.c.code, _accounts.c.type, _accounts.c.currency, _accounts.c.created_at
        ).order_by(_accounts.c.id)
    ):
        name = account_name(AccountType(row.type), row.code)
        if name in taken:
            name = f"{name}-{row.id}"
        taken.add(name)
        names[row.id] = name
        currencies[row.id] = row.currency
        used = first_use.get(row.id)
        if used is not None or scope is None or row.id in scope:
            opened = _utc_date(row.created_at)
            if used is not None:
                opened = min(opened, _utc_date(used))
            opens[row.id] = (opened, row.code)
    return names, currencies, opens


def _touching(scope: frozenset[int]) -> Select[tuple[int]]:
    return select(_postings.c.entry_id).where(_postings.c.account_id.in_(sorted(scope))).distinct()


def _entries_with_postings(
    session: Session,
    scope: frozenset[int] | None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Iterator[tuple[dict[str, Any], list[tuple[int, int, str]]]]:
    """Entries in (effective_at, id) order, each with its postings in id order, read in batches."""
    query = (
        select(
            _entries.c.id,
            _entries.c.key,
            _entries.c.effective_at,
            _entries.c.created_at,
            _entries.c.description,
            _entries.c["metadata"].label("meta"),
            _entries.c.reverses_id,
            _seals.c.seq,
            _seals.c.digest,
            _postings.c.account_id,
            _postings.c.amount,
            _postings.c.currency,
        )
        .select_from(
            _entries.join(_postings, _postings.c.entry_id == _entries.c.id).outerjoin(
                _seals, _seals.c.entry_id == _entries.c.id
            )
        )
        .order_by(_entries.c.effective_at, _entries.c.id, _postings.c.id)
    )
    if scope is not None:
        query = query.where(_entries.c.id.in_(_touching(scope)))
    if start is not None:
        query = query.where(_entries.c.effective_at >= start)
    if end is not None:
        query = query.where(_entries.c.effective_at <= end)
    current: dict[str, Any] | None = None
    lines: list[tuple[int, int, str]] = []
    for row in session.execute(query.execution_options(yield_per=BATCH)):
        if current is None or current["id"] != row.id:
            if current is not None:
                yield current, lines
            current = {
                "id": row.id,
                "key": row.key,
                "effective_at": row.effective_at,
                "created_at": row.created_at,
                "description": row.description,
                "metadata": row.meta,
                "reverses_id": row.reverses_id,
                "seq": row.seq,
                "digest": row.digest,
            }
            lines = []
        lines.append((row.account_id, int(row.amount), row.currency))
    if current is not None:
        yield current, lines


def _write_transaction(
    out: TextIO, entry: dict[str, Any], lines: list[tuple[int, int, str]], names: dict[int, str]
) -> None:
    links = f" ^entry-{entry['id']}"
    if entry["reverses_id"] is not None:
        links += f" ^entry-{entry['reverses_id']}"
    out.write(
        f"{_utc_date(entry['effective_at']).isoformat()} * {_string(entry['description'] or '')}{links}\n"
    )
    out.write(f"  entry_id: {entry['id']}\n")
    out.write(f"  key: {_string(entry['key'])}\n")
    out.write(f"  effective_at: {_string(entry['effective_at'].isoformat())}\n")
    if entry["reverses_id"] is not None:
        out.write(f"  reverses_id: {entry['reverses_id']}\n")
    if entry["seq"] is not None:
        out.write(f"  chain_seq: {entry['seq']}\n  chain_digest: {_string(entry['digest'])}\n")
    metadata = entry["metadata"] if isinstance(entry["metadata"], dict) else {}
    for name in sorted(metadata):
        if _META_KEY.fullmatch(name) and name not in _RESERVED:
            out.write(f"  {name}: {_value(metadata[name])}\n")
    out.write(
        f"  metadata: {_string(json.dumps(entry['metadata'], sort_keys=True, separators=(',', ':')))}\n"
    )
    for account_id, amount, currency in lines:
        out.write(f"  {names[account_id]}  {amount} {currency}\n")
    out.write("\n")


def _write_balances(
    out: TextIO,
    day: date,
    touched: set[int],
    running: dict[int, int],
    names: dict[int, str],
    currencies: dict[int, str],
    scope: frozenset[int] | None,
) -> int:
    """Each account's balance at the start of the next day: what the day's entries left it at."""
    written = 0
    next_day = (day + timedelta(days=1)).isoformat()
    for account_id in sorted(touched):
        if scope is not None and account_id not in scope:
            continue
        out.write(f"{next_day} balance {names[account_id]}  {running[account_id]} {currencies[account_id]}\n")
        written += 1
    out.write("\n")
    return written


def _write_checkpoints(session: Session, out: TextIO) -> None:
    """The signed checkpoints, so an auditor holding the public key can check them from the file."""
    keys: list[str] = []
    for cp in session.execute(select(_checkpoints).order_by(_checkpoints.c.seq, _checkpoints.c.id)):
        if cp.public_key not in keys:
            keys.append(cp.public_key)
        out.write(
            f'{_utc_date(cp.created_at).isoformat()} custom "upah-checkpoint" {cp.seq} '
            f"{_string(cp.digest)} {_string(cp.signature)} {keys.index(cp.public_key)}\n"
        )
    for index, key in enumerate(keys):
        out.write(f"; checkpoint key {index}:\n")
        for line in key.strip().splitlines():
            out.write(f";   {line}\n")
    if keys:
        out.write("\n")
