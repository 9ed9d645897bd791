"""Reconciliation: a provider's settlement statement against the ledger's payouts.

An auditor proves two things with it: every rupiah the ledger says was paid arrived at the
provider, and nothing arrived that the ledger does not know. The statement is parsed
strictly first — a bad file is refused with the line that is wrong, and nothing is stored.
Then each statement line is matched to a payout:

1. by an identifier: the provider's own id for the payout, our payout reference, or our
   idempotency key (one key per payout for its whole life, so it names exactly one payout);
2. failing that, by amount + wallet + a date window — only when the line carries no
   identifier that contradicts the payout (a line naming another instruction is never
   taken for this one: that is how a double payment would hide).

Every line and every payout the ledger says was paid lands in exactly one class:

| class | meaning |
| --- | --- |
| ``matched`` | same payout, same amount, consistent status |
| ``missing_at_provider`` | the ledger says paid (or reversed) in the period; no line shows it |
| ``unknown_at_provider`` | a line the ledger knows nothing about |
| ``amount_mismatch`` | same payout, different amount or currency |
| ``duplicate`` | a second (third, …) line for one payout |
| ``status_mismatch`` | same payout and amount; e.g. reversed there, succeeded here |

The matching is a pure function (:func:`match`) tested on in-memory records; the run is
stored with the input's SHA-256 and a digest of the report, so the same file against the
same books gives the same report, provably. Each exception can be annotated, resolved and
reopened with a note; notes are append-only, so a resolved exception keeps its history.

Formats: the sandbox provider's ``/v1/statement.csv`` (its ``reference`` column is *our*
payout reference, ``idempotency_key`` our key; it has no provider id) and Xendit's
transactions report (``Reference`` is the ``reference_id`` we send, which is our
idempotency key; ``Product ID`` is Xendit's payout id). Amounts are integers in the minor
unit; a decimal amount is refused, naming the line.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import json
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from itertools import compress, repeat
from operator import attrgetter, is_not, itemgetter, not_
from typing import Any, NamedTuple

from sqlalchemy import DateTime, Row, func, insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from integrations import phones
from ledger.tables import table_of
from payments import pii
from payments.errors import InvalidState, NotFound, ValidationFailed
from payments.parties import Principal, Role
from payments.payout_states import PayoutStatus
from payments.tables import (
    PayoutEventRow,
    PayoutRow,
    ReconciliationExceptionRow,
    ReconciliationNoteRow,
    ReconciliationRunRow,
)

_payouts = table_of(PayoutRow)
_events = table_of(PayoutEventRow)
_runs = table_of(ReconciliationRunRow)
_exceptions = table_of(ReconciliationExceptionRow)
_notes = table_of(ReconciliationNoteRow)

MAX_STATEMENT_BYTES = 64 * 1024 * 1024
MAX_LINES = 2_000_000
MAX_ID_LENGTH = 200
DEFAULT_WINDOW = timedelta(days=3)
MAX_NOTE_LENGTH = 2000


_gc_lock = threading.Lock()
_gc_state = {"pauses": 0, "was_enabled": False}


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects.

    Reconciling 100,000 lines makes about a million tuples and strings and not one reference
    cycle; on Python 3.11 the collector's repeated passes over them cost more than the work
    itself. Reference counting still frees everything; collection resumes afterwards.
    Nested and concurrent pauses are counted, so the collector resumes after the last.
    """
    with _gc_lock:
        if _gc_state["pauses"] == 0:
            _gc_state["was_enabled"] = gc.isenabled()
            gc.disable()
        _gc_state["pauses"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state["pauses"] -= 1
            if _gc_state["pauses"] == 0 and _gc_state["was_enabled"]:
                gc.enable()


class ReconClass(StrEnum):
    MATCHED = "matched"
    MISSING_AT_PROVIDER = "missing_at_provider"
    UNKNOWN_AT_PROVIDER = "unknown_at_provider"
    AMOUNT_MISMATCH = "amount_mismatch"
    DUPLICATE = "duplicate"
    STATUS_MISMATCH = "status_mismatch"


CLASSES = tuple(ReconClass)
EXCEPTION_CLASSES = tuple(c for c in ReconClass if c is not ReconClass.MATCHED)


class ProviderStatus(StrEnum):
    """A statement line's status, in our words."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERSED = "reversed"
    PENDING = "pending"


class StatementFormat(StrEnum):
    SANDBOX = "sandbox"
    XENDIT = "xendit"


PROVIDER_FORMATS: dict[str, StatementFormat] = {
    "sandbox": StatementFormat.SANDBOX,
    "xendit": StatementFormat.XENDIT,
}


class Source(StrEnum):
    API = "api"
    CLI = "cli"
    NIGHTLY = "nightly"


class NoteAction(StrEnum):
    NOTE = "note"
    RESOLVE = "resolve"
    REOPEN = "reopen"


class InvalidStatement(ValidationFailed):
    """A statement that cannot be read as the provider's format; names the line when it can."""

    code = "invalid_statement"

    def __init__(self, message: str, *, line: int | None = None, **details: Any) -> None:
        text = f"line {line}: {message}" if line is not None else message
        super().__init__(text, line=line, **details)
        self.line = line


# --- statement formats ------------------------------------------------------------------------

SANDBOX_COLUMNS = ("reference", "idempotency_key", "account", "amount", "currency", "status", "settled_at")

_SANDBOX_STATUSES = {
    "succeeded": ProviderStatus.SUCCEEDED,
    "failed": ProviderStatus.FAILED,
    "reversed": ProviderStatus.REVERSED,
    "accepted": ProviderStatus.PENDING,
    "pending": ProviderStatus.PENDING,
}

XENDIT_REQUIRED = ("reference", "product id", "status", "amount", "currency")
XENDIT_DATE_COLUMNS = (
    "updated date iso",
    "updated date",
    "completed date iso",
    "completed date",
    "settlement date iso",
    "settlement date",
    "created date iso",
    "created date",
)
XENDIT_PAYOUT_TYPES = frozenset({"DISBURSEMENT", "BATCH_DISBURSEMENT", "PAYOUT", "REMITTANCE_PAYOUT"})
_XENDIT_STATUSES = {
    "SUCCEEDED": ProviderStatus.SUCCEEDED,
    "SUCCESS": ProviderStatus.SUCCEEDED,
    "SUCCESSFUL": ProviderStatus.SUCCEEDED,
    "COMPLETED": ProviderStatus.SUCCEEDED,
    "FAILED": ProviderStatus.FAILED,
    "CANCELLED": ProviderStatus.FAILED,
    "EXPIRED": ProviderStatus.FAILED,
    "VOIDED": ProviderStatus.FAILED,
    "COMPLIANCE_REJECTED": ProviderStatus.FAILED,
    "REVERSED": ProviderStatus.REVERSED,
    "PENDING": ProviderStatus.PENDING,
    "ACCEPTED": ProviderStatus.PENDING,
    "REQUESTED": ProviderStatus.PENDING,
    "LOCKED": ProviderStatus.PENDING,
    "READY": ProviderStatus.PENDING,
    "PENDING_COMPLIANCE_ASSESSMENT": ProviderStatus.PENDING,
}

_CURRENCY = re.compile(r"[A-Z]{3}")
_FROM_ISO = datetime.fromisoformat
_CURRENCIES = frozenset({"IDR", "USD", "SGD", "MYR", "PHP", "THB", "VND", "KES"})
_DECIMAL = re.compile(r"-?[0-9][0-9,]*[.,][0-9]+|-?[0-9]+[eE][+-]?[0-9]+")


class StatementLine(NamedTuple):
    """One payment instruction as the provider reports it."""

    line: int
    """The physical line of the file where the record ends (the header is line 1)."""
    reference: str | None
    """Our payout reference, when the format carries it."""
    idempotency_key: str | None
    provider_reference: str | None
    """The provider's own id for the instruction."""
    account: str | None
    amount: int
    currency: str
    status: ProviderStatus
    raw_status: str
    at: datetime | None
    """When the provider settled (or last updated) it."""


@dataclass(frozen=True, slots=True)
class Statement:
    provider: str
    format: StatementFormat
    sha256: str
    size: int
    lines: tuple[StatementLine, ...]
    skipped: int = 0
    """Rows of other transaction types (a Xendit report lists payments and fees too)."""


def parse_statement(data: bytes | str, *, provider: str) -> Statement:
    """Read a provider's statement strictly, or raise :class:`InvalidStatement` naming the line."""
    with gc_paused():
        return _parse_statement(data, provider=provider)


def _parse_statement(data: bytes | str, *, provider: str) -> Statement:
    fmt = PROVIDER_FORMATS.get(provider)
    if fmt is None:
        raise InvalidStatement(
            f"no statement format is known for provider {provider!r}; "
            f"use one of {', '.join(sorted(PROVIDER_FORMATS))}",
            field="provider",
        )
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_STATEMENT_BYTES:
        raise InvalidStatement(
            f"the statement is {len(raw)} bytes; at most {MAX_STATEMENT_BYTES} are read", field="statement"
        )
    sha = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidStatement(
            "is not UTF-8 text (is this a CSV statement?)", line=raw.count(b"\n", 0, exc.start) + 1
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise InvalidStatement("contains binary data (a NUL byte)", line=text.count("\n", 0, nul) + 1)
    if not text or text.isspace():
        raise InvalidStatement("the statement is empty", field="statement")
    if fmt is StatementFormat.SANDBOX and '"' not in text and "\r" not in text:
        fast = _sandbox_fast(text)
        if fast is not None:
            return Statement(provider, fmt, sha, len(raw), fast, 0)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        detected = _detect(header)
        if detected is not fmt:
            _refuse_header(header, fmt, detected)
        parse_row = _sandbox_row if fmt is StatementFormat.SANDBOX else _xendit_parser(header)
        lines: list[StatementLine] = []
        skipped = 0
        normal_header = [_norm(h) for h in header]
        width = len(header)
        for row in reader:
            number = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                raise InvalidStatement(f"has {len(row)} fields; the header has {width}", line=number)
            if row[0] == header[0] and [_norm(v) for v in row] == normal_header:
                raise InvalidStatement("repeats the header (two statements pasted together?)", line=number)
            parsed = parse_row(row, number)
            if parsed is None:
                skipped += 1
                continue
            lines.append(parsed)
            if len(lines) > MAX_LINES:
                raise InvalidStatement(f"a statement may hold at most {MAX_LINES} lines", line=number)
    except csv.Error as exc:
        raise InvalidStatement(f"is not valid CSV ({exc})", line=reader.line_num) from None
    except StopIteration:
        raise InvalidStatement("the statement is empty", field="statement") from None
    return Statement(provider, fmt, sha, len(raw), tuple(lines), skipped)


def _norm(name: str) -> str:
    return " ".join(name.replace("\ufeff", "").split()).lower()


def _detect(header: Sequence[str]) -> StatementFormat | None:
    names = [_norm(h) for h in header]
    if tuple(names) == SANDBOX_COLUMNS:
        return StatementFormat.SANDBOX
    if set(XENDIT_REQUIRED) <= set(names):
        return StatementFormat.XENDIT
    return None


def _refuse_header(header: Sequence[str], fmt: StatementFormat, detected: StatementFormat | None) -> None:
    if detected is not None:
        raise InvalidStatement(
            f"this is a {detected.value} statement, not a {fmt.value} one: check the provider",
            line=1,
            field="provider",
        )
    names = [_norm(h) for h in header]
    expected = SANDBOX_COLUMNS if fmt is StatementFormat.SANDBOX else XENDIT_REQUIRED
    missing = [c for c in expected if c not in names]
    unexpected = [n for n in names if n not in expected] if fmt is StatementFormat.SANDBOX else []
    if len(set(names)) != len(names):
        problem = "repeats a column"
    elif missing:
        problem = f"lacks {', '.join(missing)}"
    else:
        problem = f"has unexpected columns {', '.join(unexpected) or '(order differs)'}"
    raise InvalidStatement(
        f"the header does not match the {fmt.value} statement columns ({', '.join(expected)}): it {problem}",
        line=1,
        missing=missing,
    )


def _amount(text: str, number: int, *, allow_sign: bool = False) -> int:
    value = text.strip()
    if allow_sign and value.startswith("-"):
        value = value[1:]
    if value.isascii() and value.isdigit() and len(value) <= 18:
        amount = int(value)
        if amount <= 0:
            raise InvalidStatement("amount must be a positive whole number", line=number, column="amount")
        return amount
    if _DECIMAL.fullmatch(value):
        raise InvalidStatement(
            f"amount {text!r} is not a whole number of the minor unit (amounts are integers, never decimals)",
            line=number,
            column="amount",
        )
    raise InvalidStatement(f"amount {text!r} is not a number", line=number, column="amount")


def _ident(text: str, number: int, column: str) -> str | None:
    value = text.strip()
    if len(value) > MAX_ID_LENGTH:
        raise InvalidStatement(
            f"{column} is longer than {MAX_ID_LENGTH} characters", line=number, column=column
        )
    return value or None


def _currency(text: str, number: int) -> str:
    value = text.strip().upper()
    if not _CURRENCY.fullmatch(value):
        raise InvalidStatement(f"currency {text!r} is not an ISO 4217 code", line=number, column="currency")
    return value


def _moment(text: str, number: int, column: str) -> datetime | None:
    value = text.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
        except ValueError:
            raise InvalidStatement(
                f"{column} {text!r} is not an ISO 8601 time", line=number, column=column
            ) from None
    if moment.tzinfo is UTC:
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _sandbox_row(row: list[str], number: int) -> StatementLine:
    """One sandbox line; the common, clean case costs one pass with no regular expressions."""
    reference, key, account, amount, currency, status, settled_at = row
    mapped = _SANDBOX_STATUSES.get(status)
    raw_status = status
    if mapped is None:
        raw_status = status.strip()
        mapped = _SANDBOX_STATUSES.get(raw_status.lower())
        if mapped is None:
            raise InvalidStatement(f"status {status!r} is not a sandbox status", line=number, column="status")
    if amount.isdigit() and amount.isascii() and len(amount) <= 18 and amount[0] != "0":
        value = int(amount)
    else:
        value = _amount(amount, number)
    try:
        at = _FROM_ISO(settled_at) if settled_at else None
    except ValueError:
        at = _moment(settled_at, number, "settled_at")
    else:
        if at is not None and at.tzinfo is not UTC:
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return StatementLine(
        number,
        (reference.strip() or None)
        if len(reference) <= MAX_ID_LENGTH
        else _ident(reference, number, "reference"),
        (key.strip() or None) if len(key) <= MAX_ID_LENGTH else _ident(key, number, "idempotency_key"),
        None,
        (account.strip() or None) if len(account) <= MAX_ID_LENGTH else _ident(account, number, "account"),
        value,
        currency if currency in _CURRENCIES else _currency(currency, number),
        mapped,
        raw_status,
        at,
    )


def _sandbox_fast(text: str) -> tuple[StatementLine, ...] | None:
    """A clean sandbox statement without quotes or carriage returns, checked and converted a
    column at a time, or None.

    None sends the statement through the line-by-line parser, which finds and names the
    first bad line; so this path only ever accepts what that one would, and faster. Such a
    statement has one record per physical line (line = record + 1), and a record is its line
    split at the commas; when every line has its six commas, the whole body split at commas
    and line ends holds the columns at every seventh field (at three times the speed of
    ``csv.reader``).
    """
    split = str.split
    body = text.removesuffix("\n")
    end = body.find("\n")
    header = split(body if end < 0 else body[:end], ",")
    if _detect(header) is not StatementFormat.SANDBOX:
        return None
    if end < 0:
        return ()
    body = body[end + 1 :]
    width = len(SANDBOX_COLUMNS)
    records = split(body, "\n")
    if len(records) > MAX_LINES or set(map(str.count, records, repeat(","))) != {width - 1}:
        return None
    fields = split(body.replace("\n", ","), ",")
    columns = [fields[i::width] for i in range(width)]
    refs, keys, accounts, amounts, currencies, statuses, times = columns
    if header[0] in refs and any(
        [column[i] for column in columns] == header for i, ref in enumerate(refs) if ref == header[0]
    ):
        return None
    for column in (refs, keys, accounts):
        if max(map(len, column)) > MAX_ID_LENGTH:
            return None
    if not (all(map(str.isdigit, amounts)) and all(map(str.isascii, amounts))):
        return None
    if max(map(len, amounts)) > 18 or not set(currencies) <= _CURRENCIES:
        return None
    values = list(map(int, amounts))
    if min(values) <= 0 or not set(statuses) <= _SANDBOX_STATUSES.keys() or not all(times):
        return None
    try:
        moments = list(map(_FROM_ISO, times))
    except ValueError:
        return None
    if set(map(attrgetter("tzinfo"), moments)) != {UTC}:
        moments = [m.replace(tzinfo=UTC) if m.tzinfo is None else m.astimezone(UTC) for m in moments]
    strip = str.strip
    return tuple(
        map(
            partial(tuple.__new__, StatementLine),
            zip(
                range(2, len(records) + 2),
                [v or None for v in map(strip, refs)],
                [v or None for v in map(strip, keys)],
                repeat(None),
                [v or None for v in map(strip, accounts)],
                values,
                currencies,
                map(_SANDBOX_STATUSES.__getitem__, statuses),
                statuses,
                moments,
                strict=False,
            ),
        )
    )


def _xendit_parser(header: Sequence[str]) -> Callable[[list[str], int], StatementLine | None]:
    names = [_norm(h) for h in header]
    at = {name: i for i, name in reversed(list(enumerate(names)))}
    ref, pid, status_i, amount_i, cur = (at[c] for c in XENDIT_REQUIRED)
    type_i = at.get("type")
    account_i = at.get("account number")
    date_i = next((at[c] for c in XENDIT_DATE_COLUMNS if c in at), None)
    date_name = names[date_i] if date_i is not None else ""

    def parse(row: list[str], number: int) -> StatementLine | None:
        if type_i is not None and row[type_i].strip().upper() not in XENDIT_PAYOUT_TYPES:
            return None
        raw_status = row[status_i].strip()
        mapped = _XENDIT_STATUSES.get(raw_status.upper())
        if mapped is None:
            raise InvalidStatement(
                f"status {raw_status!r} is not a Xendit status", line=number, column="status"
            )
        return StatementLine(
            number,
            None,
            _ident(row[ref], number, "reference"),
            _ident(row[pid], number, "product id"),
            _ident(row[account_i], number, "account number") if account_i is not None else None,
            _amount(row[amount_i], number, allow_sign=True),
            _currency(row[cur], number),
            mapped,
            raw_status,
            _moment(row[date_i], number, date_name) if date_i is not None else None,
        )

    return parse


# --- matching (pure) -----------------------------------------------------------------------------


class LedgerPayout(NamedTuple):
    """What reconciliation needs of a payout; the wallet is looked up only when needed."""

    id: int
    buyer_id: int
    reference: str
    idempotency_key: str
    provider_reference: str | None
    amount: int
    currency: str
    status: str
    at: datetime | None
    """When the instruction went to the provider (submitted, else created)."""


class Finding(NamedTuple):
    """One line's (or one missing payout's) class, with what it was matched to and how."""

    kind: ReconClass
    line: StatementLine | None
    payout: LedgerPayout | None
    matched_by: str | None
    message: str


_CONSISTENT: defaultdict[str, ProviderStatus | None] = defaultdict(
    lambda: None,
    {
        PayoutStatus.SUCCEEDED.value: ProviderStatus.SUCCEEDED,
        PayoutStatus.FAILED.value: ProviderStatus.FAILED,
        PayoutStatus.REVERSED.value: ProviderStatus.REVERSED,
        PayoutStatus.SUBMITTED.value: ProviderStatus.PENDING,
        PayoutStatus.UNKNOWN.value: ProviderStatus.PENDING,
        PayoutStatus.CREATED.value: None,
    },
)
"""The one provider status that agrees with each of ours (none for a payout never sent)."""
EXPECTED_AT_PROVIDER = frozenset({PayoutStatus.SUCCEEDED.value, PayoutStatus.REVERSED.value})
_ID = attrgetter("id")
_REFERENCE = attrgetter("reference")
_KEY = attrgetter("idempotency_key")
_PROVIDER_REFERENCE = attrgetter("provider_reference")
_AMOUNT = attrgetter("amount")
_STATUS = attrgetter("status")


Matched = tuple["StatementLine", "LedgerPayout", str]
"""A line, the payout it shows, and how it was recognised."""


def match(
    lines: Sequence[StatementLine],
    payouts: Iterable[LedgerPayout],
    *,
    window: timedelta = DEFAULT_WINDOW,
    period: tuple[datetime | None, datetime | None] = (None, None),
    wallets: Callable[[Sequence[LedgerPayout]], Mapping[int, str | None]] = lambda _ps: {},
) -> list[Finding]:
    """Classify every line, and every payout the ledger says was paid in ``period``.

    ``wallets`` gives payouts' wallet numbers (E.164) — asked once, only for the
    amount+wallet+date candidates. Findings come in line order, then missing payouts by id:
    deterministic.
    """
    matched, exceptions = classify(lines, payouts, window=window, period=period, wallets=wallets)
    findings = [Finding(ReconClass.MATCHED, line, payout, how, "") for line, payout, how in matched]
    findings += exceptions
    last = 1 << 62
    findings.sort(key=lambda f: (f.line.line if f.line else last, f.payout.id if f.payout else 0))
    return findings


def classify(
    lines: Sequence[StatementLine],
    payouts: Iterable[LedgerPayout],
    *,
    window: timedelta = DEFAULT_WINDOW,
    period: tuple[datetime | None, datetime | None] = (None, None),
    wallets: Callable[[Sequence[LedgerPayout]], Mapping[int, str | None]] = lambda _ps: {},
) -> tuple[list[Matched], list[Finding]]:
    """:func:`match`, as the matched lines (in line order) and the exceptions (sorted).

    The form a run stores: 100,000 matched lines need no finding of their own. The common
    case — a line carrying our reference and no provider id, the only line for its payout,
    agreeing with it — is decided a column at a time; every other line goes through the
    rules one by one (:func:`_by_identifier`, then amount + wallet + date).
    """
    every = payouts if isinstance(payouts, list) else list(payouts)
    by_reference = dict(zip(map(_REFERENCE, every), every, strict=True))
    named_by_provider = any(map(_PROVIDER_REFERENCE, lines))
    by_provider_ref = (
        {p.provider_reference: p for p in every if p.provider_reference} if named_by_provider else {}
    )
    first: dict[int, tuple[StatementLine, LedgerPayout, str]] = {}
    more: dict[int, list[tuple[StatementLine, str]]] = defaultdict(list)
    # 1. Lines found by our reference, when no line names a provider id (which comes first).
    if named_by_provider:
        quick_lines: list[StatementLine] = []
        quick_payouts: list[LedgerPayout] = []
        rest = list(lines)
    else:
        hits = list(map(by_reference.get, map(_REFERENCE, lines)))
        found = list(map(is_not, hits, repeat(None)))
        quick_lines = list(compress(lines, found))
        quick_payouts = list(compress(hits, found))  # type: ignore[arg-type]
        rest = list(compress(lines, map(not_, found)))
    ids = list(map(_ID, quick_payouts))
    found_by_reference = list(zip(quick_lines, quick_payouts, repeat("reference")))
    # Built backwards, so that a payout with two lines keeps its first; the others are "more".
    first = dict(zip(reversed(ids), reversed(found_by_reference), strict=True))
    if len(first) != len(ids):
        firsts = map(itemgetter(0), map(first.__getitem__, ids))
        for line, payout, how in compress(found_by_reference, map(is_not, firsts, quick_lines)):
            more[payout.id].append((line, how))
    # 2. Everything else, rule by rule.
    by_key = dict(zip(map(_KEY, every), every, strict=True)) if rest else {}
    unmatched: list[StatementLine] = []
    for line in rest:
        hit = _by_identifier(line, by_provider_ref, by_reference, by_key)
        if hit is None:
            unmatched.append(line)
        elif hit[0].id in first:
            more[hit[0].id].append((line, hit[1]))
        else:
            first[hit[0].id] = (line, hit[0], hit[1])
    strays: list[StatementLine] = []
    if unmatched:
        pool: dict[tuple[int, str], list[LedgerPayout]] = defaultdict(list)
        amounts = {line.amount for line in unmatched}
        for p in compress(every, map(amounts.__contains__, map(_AMOUNT, every))):
            if p.id not in first and p.status != PayoutStatus.CREATED.value and p.at is not None:
                pool[(p.amount, p.currency)].append(p)
        candidates = {
            p.id: p
            for line in unmatched
            if line.at is not None and line.account
            for p in pool.get((line.amount, line.currency), ())
            if p.at is not None and abs(line.at - p.at) <= window and not _contradicts(line, p)
        }
        known = wallets(list(candidates.values())) if candidates else {}
        e164 = {a: _e164(a) for a in {line.account for line in unmatched if line.account}}
        for line in unmatched:
            chosen = _by_amount_wallet_date(line, pool, window, known, first, e164)
            if chosen is None:
                strays.append(line)
            else:
                first[chosen.id] = (line, chosen, "amount_wallet_date")
    # 3. One line per payout: it matches if it agrees with the payout.
    singles = list(compress(first.values(), map(not_, map(more.__contains__, first))))
    agree = [_agrees(payout, line) for line, payout, _how in singles]
    matched: list[Matched] = list(compress(singles, agree))
    exceptions = [_compare(payout, line, how) for line, payout, how in compress(singles, map(not_, agree))]
    # 4. Payouts with two or more lines: the first that agrees is the match, the rest duplicates.
    for payout_id, extra in more.items():
        line, payout, how = first[payout_id]
        ordered = sorted([(line, how), *extra], key=lambda h: h[0].line)
        primary = next((h for h in ordered if _agrees(payout, h[0])), ordered[0])
        verdict = _compare(payout, primary[0], primary[1])
        if verdict.kind is ReconClass.MATCHED:
            matched.append((primary[0], payout, primary[1]))
        else:
            exceptions.append(verdict)
        exceptions.extend(
            Finding(
                ReconClass.DUPLICATE,
                dup,
                payout,
                dup_how,
                f"a second statement line for payout {payout.reference} "
                f"(line {primary[0].line} is the first)",
            )
            for dup, dup_how in ordered
            if dup is not primary[0]
        )
    exceptions.extend(
        Finding(
            ReconClass.UNKNOWN_AT_PROVIDER,
            line,
            None,
            None,
            f"the statement shows {line.amount} {line.currency} ({line.status.value}) "
            "that no payout of ours explains",
        )
        for line in strays
    )
    start, end = period
    paid = list(compress(every, map(EXPECTED_AT_PROVIDER.__contains__, map(_STATUS, every))))
    for p in compress(paid, map(not_, map(first.__contains__, map(_ID, paid)))):
        if p.at is None:
            continue
        if (start is None or p.at >= start) and (end is None or p.at <= end):
            exceptions.append(
                Finding(
                    ReconClass.MISSING_AT_PROVIDER,
                    None,
                    p,
                    None,
                    f"the ledger says payout {p.reference} was {p.status}; the statement does not show it",
                )
            )
    matched.sort(key=itemgetter(0))  # by line: each line is matched at most once
    last = 1 << 62
    exceptions.sort(key=lambda f: (f.line.line if f.line else last, f.payout.id if f.payout else 0))
    return matched, exceptions


def _by_identifier(
    line: StatementLine,
    by_provider_ref: dict[str, LedgerPayout],
    by_reference: dict[str, LedgerPayout],
    by_key: dict[str, LedgerPayout],
) -> tuple[LedgerPayout, str] | None:
    """The provider's id first, then our reference or idempotency key (either column may hold either)."""
    pref = line.provider_reference
    if pref:
        found = by_provider_ref.get(pref)
        if found is not None:
            return found, "provider_reference"
    for ours in (line.reference, line.idempotency_key):
        if ours:
            found = by_reference.get(ours)
            if found is not None:
                return found, "reference"
            found = by_key.get(ours)
            if found is not None:
                return found, "idempotency_key"
    return None


def _contradicts(line: StatementLine, payout: LedgerPayout) -> bool:
    """True when the line names an instruction other than this payout."""
    ours = {payout.reference, payout.idempotency_key}
    if any(value and value not in ours for value in (line.reference, line.idempotency_key)):
        return True
    return bool(
        line.provider_reference
        and payout.provider_reference
        and line.provider_reference != payout.provider_reference
    )


def _by_amount_wallet_date(
    line: StatementLine,
    pool: dict[tuple[int, str], list[LedgerPayout]],
    window: timedelta,
    wallets: Mapping[int, str | None],
    claimed: Mapping[int, object],
    e164: Mapping[str, str],
) -> LedgerPayout | None:
    if line.at is None or not line.account:
        return None
    account = e164[line.account]
    best: tuple[timedelta, int, LedgerPayout] | None = None
    for p in pool.get((line.amount, line.currency), ()):
        if p.id in claimed or p.at is None or _contradicts(line, p):
            continue
        gap = abs(line.at - p.at)
        if gap > window:
            continue
        if wallets.get(p.id) != account:
            continue
        if best is None or (gap, p.id) < (best[0], best[1]):
            best = (gap, p.id, p)
    return best[2] if best is not None else None


def _agrees(payout: LedgerPayout, line: StatementLine) -> bool:
    return (
        payout.amount == line.amount
        and payout.currency == line.currency
        and line.status is _CONSISTENT[payout.status]
    )


def _compare(payout: LedgerPayout, line: StatementLine, how: str) -> Finding:
    if payout.amount != line.amount or payout.currency != line.currency:
        return Finding(
            ReconClass.AMOUNT_MISMATCH,
            line,
            payout,
            how,
            f"payout {payout.reference} is {payout.amount} {payout.currency} here, "
            f"{line.amount} {line.currency} at the provider",
        )
    if line.status is not _CONSISTENT[payout.status]:
        return Finding(
            ReconClass.STATUS_MISMATCH,
            line,
            payout,
            how,
            f"payout {payout.reference} is {payout.status} here, {line.status.value} at the provider",
        )
    return Finding(ReconClass.MATCHED, line, payout, how, "")


def _e164(account: str) -> str:
    try:
        return phones.normalise(account)
    except phones.InvalidPhone:
        return account.strip()


def mask_account(account: str | None) -> str | None:
    """A wallet number as an auditor may see it stored: recognisable, not diallable."""
    if not account:
        return None
    try:
        return phones.mask(_e164(account))
    except phones.InvalidPhone:
        return "*" * max(len(account) - 2, 0) + account[-2:]


# --- runs -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Note:
    id: int
    action: NoteAction
    text: str
    key_id: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReconException:
    id: int
    run_id: int
    kind: ReconClass
    line: int | None
    payout_id: int | None
    buyer_id: int | None
    reference: str | None
    provider_reference: str | None
    ledger_amount: int | None
    provider_amount: int | None
    ledger_status: str | None
    provider_status: str | None
    detail: dict[str, Any]
    status: str
    resolved_at: datetime | None
    resolved_by: int | None
    created_at: datetime
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    provider: str
    statement_format: StatementFormat
    input_sha256: str
    input_bytes: int
    lines: int
    organization_id: int | None
    created_by: int | None
    source: Source
    period_from: datetime | None
    period_to: datetime | None
    window_seconds: int
    summary: dict[str, int]
    report_sha256: str
    created_at: datetime
    exceptions: list[ReconException]


def reconcile(
    session: Session,
    *,
    statement: Statement,
    principal: Principal | None,
    source: Source,
    keyring: pii.Keyring | None,
    now: datetime,
    period_from: datetime | None = None,
    period_to: datetime | None = None,
    window: timedelta = DEFAULT_WINDOW,
    payouts: Callable[[], list[LedgerPayout]] | None = None,
) -> Run:
    """Match a parsed statement against the payouts in the caller's scope and store the run.

    ``principal`` None is the system (CLI, nightly task): platform-wide. An organisation's
    auditor sees only its payouts; lines of other organisations' payouts found by reference
    or provider id are counted as ``out_of_scope`` and not stored (lines without either are
    matched by wallet to its own payouts only). Without a keyring, nothing is matched by wallet.
    ``payouts`` collects the provider's payouts when the caller started loading them
    already (:func:`loading_payouts`).
    """
    organization_id = _authorise(principal)
    if window < timedelta(0) or window > timedelta(days=31):
        raise ValidationFailed("the date window is between 0 and 31 days", field="window")
    if period_from is None and period_to is None:
        moments = [line.at for line in statement.lines if line.at is not None]
        if moments:
            period_from, period_to = min(moments), max(moments)
    if period_from is not None and period_to is not None and period_from > period_to:
        raise ValidationFailed("the period ends before it starts", field="from")
    loading = nullcontext(payouts) if payouts else loading_payouts(session, provider=statement.provider)
    with gc_paused(), loading as loaded:
        return _reconcile(
            session,
            statement=statement,
            payouts=loaded(),
            principal=principal,
            organization_id=organization_id,
            source=source,
            keyring=keyring,
            now=now,
            period_from=period_from,
            period_to=period_to,
            window=window,
        )


def reconcile_statement(
    session: Session,
    *,
    data: bytes | str,
    provider: str,
    principal: Principal | None,
    source: Source,
    keyring: pii.Keyring | None,
    now: datetime,
    period_from: datetime | None = None,
    period_to: datetime | None = None,
    window: timedelta = DEFAULT_WINDOW,
) -> Run:
    """Parse a provider's statement and reconcile it: what the API, the CLI and the nightly task call.

    A bad statement raises :class:`InvalidStatement` before anything is written. The
    database selects the payouts while the statement is parsed.
    """
    _authorise(principal)
    with loading_payouts(session, provider=provider) as payouts:
        return reconcile(
            session,
            statement=parse_statement(data, provider=provider),
            principal=principal,
            source=source,
            keyring=keyring,
            now=now,
            period_from=period_from,
            period_to=period_to,
            window=window,
            payouts=payouts,
        )


def _reconcile(
    session: Session,
    *,
    statement: Statement,
    payouts: list[LedgerPayout],
    principal: Principal | None,
    organization_id: int | None,
    source: Source,
    keyring: pii.Keyring | None,
    now: datetime,
    period_from: datetime | None,
    period_to: datetime | None,
    window: timedelta,
) -> Run:
    matched, exceptions = classify(
        statement.lines,
        payouts,
        window=window,
        period=(period_from, period_to),
        wallets=_wallet_lookup(session, keyring, organization_id),
    )
    everything = len(matched) + len(exceptions)
    if organization_id is not None:
        matched = [m for m in matched if m[1].buyer_id == organization_id]
        exceptions = [f for f in exceptions if _visible(f, organization_id)]
    counts = Counter(f.kind for f in exceptions)
    summary = {c.value: counts.get(c, 0) for c in CLASSES}
    summary[ReconClass.MATCHED.value] = len(matched)
    summary["lines"] = len(statement.lines)
    summary["skipped"] = statement.skipped
    summary["out_of_scope"] = everything - len(matched) - len(exceptions)
    masked: dict[str | None, str | None] = {}
    exception_rows = [_exception_values(f, now, masked) for f in exceptions]
    matches_json = _pairs_json(
        map(attrgetter("line"), map(itemgetter(0), matched)), map(_ID, map(itemgetter(1), matched))
    )
    report_sha = _report_digest(
        statement, period_from, period_to, window, summary, matches_json, exception_rows
    )
    run = session.execute(
        insert(_runs).returning(*_RUN_COLUMNS),
        {
            "provider": statement.provider,
            "statement_format": statement.format.value,
            "input_sha256": statement.sha256,
            "input_bytes": statement.size,
            "lines": len(statement.lines),
            "organization_id": organization_id,
            "created_by": principal.key_id if principal is not None and principal.key_id else None,
            "source": source.value,
            "period_from": period_from,
            "period_to": period_to,
            "window_seconds": int(window.total_seconds()),
            "summary": summary,
            "matches": matches_json,
            "report_sha256": report_sha,
            "created_at": now,
        },
    ).one()
    stored = _store_exceptions(session, [{**row, "run_id": run.id} for row in exception_rows])
    return _run_of(run, [_exception_of(r, []) for r in stored])


def _store_exceptions(session: Session, rows: list[dict[str, Any]]) -> Sequence[Row[Any]]:
    """Insert a run's exceptions and read them back as stored, in order.

    On PostgreSQL they travel as one JSON document unpacked by the server: binding each of
    hundreds of rows' fifteen values one by one cost several times as much.
    """
    if not rows:
        return []
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        return session.execute(
            insert(_exceptions).returning(*_exceptions.c, sort_by_parameter_order=True), rows
        ).all()
    names = ", ".join(rows[0])  # our own column names, never input
    query = sql_text(
        f"INSERT INTO {_exceptions.name} ({names}) SELECT {names}"  # noqa: S608
        " FROM jsonb_array_elements(CAST(:rows AS jsonb)) WITH ORDINALITY AS e(doc, n)"
        f" CROSS JOIN LATERAL jsonb_populate_record(NULL::{_exceptions.name}, e.doc)"
        " ORDER BY e.n RETURNING *"
    ).columns(*_exceptions.c)
    document = json.dumps(rows, default=datetime.isoformat, separators=(",", ":"))
    return sorted(session.execute(query, {"rows": document}).all(), key=attrgetter("id"))


def _pairs_json(lines: Iterable[int], payout_ids: Iterable[int]) -> str:
    """``[[line, payout_id], ...]`` as compact JSON, written directly (a third of json.dumps' time)."""
    pairs = "],[".join(map("{},{}".format, lines, payout_ids))
    return f"[[{pairs}]]" if pairs else "[]"


@contextmanager
def loading_payouts(session: Session, *, provider: str) -> Iterator[Callable[[], list[LedgerPayout]]]:
    """Every payout sent through ``provider`` that the provider could have seen: selected
    while the caller goes on (parsing the statement), collected by calling what this yields.

    On PostgreSQL the query waits on its socket in a thread, with the interpreter free; the
    rows become tuples in the caller's thread when it collects them, so the parse and the
    conversion never contend. Either way, the connection is free again when this exits.
    """
    query = select(
        _payouts.c.id,
        _payouts.c.buyer_id,
        _payouts.c.reference,
        _payouts.c.idempotency_key,
        _payouts.c.provider_reference,
        _payouts.c.amount,
        _payouts.c.currency,
        _payouts.c.status,
        func.coalesce(_payouts.c.submitted_at, _payouts.c.created_at, type_=DateTime(timezone=True)),
    ).where(_payouts.c.provider == provider)
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        yield lambda: [
            LedgerPayout(*r[:8], r[8].replace(tzinfo=UTC) if r[8] is not None else None)
            for r in session.execute(query)
        ]
        return
    # 100,000 rows: fetched straight from the driver, in binary (timestamptz arrives aware), a
    # third of the time of building result rows for them.
    compiled = query.compile(dialect=connection.dialect)
    cursor = connection.connection.dbapi_connection.cursor(binary=True)  # type: ignore[union-attr]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upah-payouts") as thread:
        selected = thread.submit(cursor.execute, str(compiled), compiled.params)

        def collect() -> list[LedgerPayout]:
            selected.result()
            return list(map(partial(tuple.__new__, LedgerPayout), cursor.fetchall()))

        try:
            yield collect
        finally:
            futures.wait([selected])
            cursor.close()


def _wallet_lookup(
    session: Session, keyring: pii.Keyring | None, organization_id: int | None
) -> Callable[[Sequence[LedgerPayout]], dict[int, str | None]]:
    """Decrypt the wallets of the given payouts, read in one query; nothing without a keyring.

    For an organisation's auditor only its own payouts' wallets: a line without our reference
    is then never matched by wallet to another organisation's payout, so a made-up line
    (a wallet, an amount, a day) cannot tell that auditor whether another buyer paid it.
    """

    def wallets(candidates: Sequence[LedgerPayout]) -> dict[int, str | None]:
        if keyring is None or not candidates:
            return {}
        found: dict[int, str | None] = {}
        ids = [p.id for p in candidates if organization_id is None or p.buyer_id == organization_id]
        for chunk in range(0, len(ids), 10_000):
            query = select(_payouts.c.id, _payouts.c.account_enc).where(
                _payouts.c.id.in_(ids[chunk : chunk + 10_000])
            )
            for payout_id, token in session.execute(query):
                found[payout_id] = pii.decrypt(keyring, token, context="homeworker.wallet")
        return found

    return wallets


def _authorise(principal: Principal | None) -> int | None:
    if principal is None:
        return None
    principal.require(Role.AUDITOR, Role.ADMIN)
    return principal.organization_id


def _visible(finding: Finding, organization_id: int | None) -> bool:
    if organization_id is None or finding.payout is None:
        return True
    return finding.payout.buyer_id == organization_id


def _exception_values(f: Finding, now: datetime, masked: dict[str | None, str | None]) -> dict[str, Any]:
    line, payout = f.line, f.payout
    if line is not None and line.account not in masked:
        masked[line.account] = mask_account(line.account)
    detail: dict[str, Any] = {"message": f.message}
    if f.matched_by:
        detail["matched_by"] = f.matched_by
    if line is not None:
        detail["statement"] = {
            "reference": line.reference,
            "idempotency_key": line.idempotency_key,
            "provider_reference": line.provider_reference,
            "account": masked[line.account],
            "amount": line.amount,
            "currency": line.currency,
            "status": line.raw_status,
            "at": line.at.isoformat() if line.at else None,
        }
    if payout is not None:
        detail["currency"] = payout.currency
    return {
        "kind": f.kind.value,
        "line": line.line if line else None,
        "payout_id": payout.id if payout else None,
        "buyer_id": payout.buyer_id if payout else None,
        "reference": payout.reference if payout else (line.reference if line else None),
        "provider_reference": (line.provider_reference if line else None)
        or (payout.provider_reference if payout else None),
        "ledger_amount": payout.amount if payout else None,
        "provider_amount": line.amount if line else None,
        "ledger_status": payout.status if payout else None,
        "provider_status": line.status.value if line else None,
        "detail": detail,
        "status": "open",
        "created_at": now,
    }


def _report_digest(
    statement: Statement,
    start: datetime | None,
    end: datetime | None,
    window: timedelta,
    summary: dict[str, int],
    matches_json: str,
    exceptions: list[dict[str, Any]],
) -> str:
    """SHA-256 of the report's content (not its id or time): same file + same books → same digest."""
    doc = {
        "provider": statement.provider,
        "format": statement.format.value,
        "input_sha256": statement.sha256,
        "period": [start.isoformat() if start else None, end.isoformat() if end else None],
        "window_seconds": int(window.total_seconds()),
        "summary": summary,
        "matches_sha256": hashlib.sha256(matches_json.encode()).hexdigest(),
        "exceptions": [{k: v for k, v in e.items() if k not in ("created_at", "status")} for e in exceptions],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def get_run(session: Session, *, principal: Principal, run_id: int) -> Run:
    _check_run(session, principal, run_id)
    return _load_run(session, run_id)


def list_runs(session: Session, *, principal: Principal, limit: int = 50) -> list[Run]:
    principal.require(Role.AUDITOR, Role.ADMIN)
    query = select(_runs.c.id).order_by(_runs.c.id.desc()).limit(min(max(limit, 1), 500))
    if not principal.platform_wide:
        query = query.where(_runs.c.organization_id == principal.organization_id)
    return [_load_run(session, rid, with_exceptions=False) for rid in session.execute(query).scalars()]


def annotate(
    session: Session,
    *,
    principal: Principal,
    run_id: int,
    exception_id: int,
    action: NoteAction,
    text: str,
    now: datetime,
) -> ReconException:
    """Add a note to an exception; ``resolve`` and ``reopen`` change its status, keeping the history."""
    _check_run(session, principal, run_id)
    text = text.strip()
    if not text or len(text) > MAX_NOTE_LENGTH:
        raise ValidationFailed(f"a note of 1 to {MAX_NOTE_LENGTH} characters is needed", field="note")
    row = session.execute(
        select(_exceptions)
        .where(_exceptions.c.id == exception_id, _exceptions.c.run_id == run_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound("exception not found")
    key_id = principal.key_id or None
    if action is NoteAction.RESOLVE:
        if row.status == "resolved":
            raise InvalidState("this exception is already resolved", status=row.status)
        session.execute(
            update(_exceptions)
            .where(_exceptions.c.id == exception_id)
            .values(status="resolved", resolved_at=now, resolved_by=key_id)
        )
    elif action is NoteAction.REOPEN:
        if row.status != "resolved":
            raise InvalidState("only a resolved exception can be reopened", status=row.status)
        session.execute(
            update(_exceptions)
            .where(_exceptions.c.id == exception_id)
            .values(status="open", resolved_at=None, resolved_by=None)
        )
    session.execute(
        insert(_notes),
        {
            "exception_id": exception_id,
            "action": action.value,
            "text": text,
            "key_id": key_id,
            "created_at": now,
        },
    )
    return _exceptions_of(session, run_id, only=exception_id)[0]


REPORT_COLUMNS = (
    "line",
    "class",
    "payout_id",
    "reference",
    "provider_reference",
    "ledger_amount",
    "provider_amount",
    "currency",
    "ledger_status",
    "provider_status",
    "exception_id",
    "exception_status",
    "notes",
    "message",
)


def report_csv(session: Session, *, principal: Principal, run_id: int) -> str:
    """Every line of the run with its class, and every missing payout: the auditor's working file."""
    run = get_run(session, principal=principal, run_id=run_id)
    matches = json.loads(session.execute(select(_runs.c.matches).where(_runs.c.id == run_id)).scalar_one())
    ids = [int(pid) for _line, pid in matches]
    details: dict[int, Any] = {}
    for chunk in range(0, len(ids), 10_000):
        for r in session.execute(
            select(
                _payouts.c.id,
                _payouts.c.reference,
                _payouts.c.provider_reference,
                _payouts.c.amount,
                _payouts.c.currency,
                _payouts.c.status,
            ).where(_payouts.c.id.in_(ids[chunk : chunk + 10_000]))
        ):
            details[r.id] = r
    rows: list[tuple[int, list[Any]]] = []
    for line, pid in matches:
        p = details.get(int(pid))
        known = (
            [p.reference, p.provider_reference or "", p.amount, p.amount, p.currency, p.status]
            if p
            else [""] * 6
        )
        rows.append((int(line), [line, ReconClass.MATCHED.value, pid, *known, "", "", "", "", ""]))
    for e in run.exceptions:
        rows.append(
            (
                e.line if e.line is not None else 1 << 62,
                [
                    e.line if e.line is not None else "",
                    e.kind.value,
                    e.payout_id or "",
                    e.reference or "",
                    e.provider_reference or "",
                    "" if e.ledger_amount is None else e.ledger_amount,
                    "" if e.provider_amount is None else e.provider_amount,
                    (e.detail.get("statement") or {}).get("currency") or e.detail.get("currency") or "",
                    e.ledger_status or "",
                    e.provider_status or "",
                    e.id,
                    e.status,
                    " | ".join(f"{n.action.value}: {n.text}" for n in e.notes),
                    e.detail.get("message", ""),
                ],
            )
        )
    rows.sort(key=lambda item: (item[0], str(item[1][2])))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    writer.writerows(values for _key, values in rows)
    return buffer.getvalue()


def _check_run(session: Session, principal: Principal, run_id: int) -> None:
    principal.require(Role.AUDITOR, Role.ADMIN)
    owner = session.execute(select(_runs.c.id, _runs.c.organization_id).where(_runs.c.id == run_id)).first()
    if owner is None or not (principal.platform_wide or owner.organization_id == principal.organization_id):
        raise NotFound("reconciliation run not found")


_RUN_COLUMNS = [c for c in _runs.c if c.name != "matches"]
"""A run without its matches (one pair per matched line: read only for the CSV report)."""


def _load_run(session: Session, run_id: int, *, with_exceptions: bool = True) -> Run:
    r = session.execute(select(*_RUN_COLUMNS).where(_runs.c.id == run_id)).one()
    return _run_of(r, _exceptions_of(session, run_id) if with_exceptions else [])


def _run_of(r: Row[Any], exceptions: list[ReconException]) -> Run:
    return Run(
        id=r.id,
        provider=r.provider,
        statement_format=StatementFormat(r.statement_format),
        input_sha256=r.input_sha256,
        input_bytes=r.input_bytes,
        lines=r.lines,
        organization_id=r.organization_id,
        created_by=r.created_by,
        source=Source(r.source),
        period_from=r.period_from,
        period_to=r.period_to,
        window_seconds=r.window_seconds,
        summary={k: int(v) for k, v in r.summary.items()},
        report_sha256=r.report_sha256,
        created_at=r.created_at,
        exceptions=exceptions,
    )


def _exceptions_of(session: Session, run_id: int, *, only: int | None = None) -> list[ReconException]:
    query = select(_exceptions).where(_exceptions.c.run_id == run_id).order_by(_exceptions.c.id)
    if only is not None:
        query = query.where(_exceptions.c.id == only)
    rows = session.execute(query).all()
    notes: dict[int, list[Note]] = defaultdict(list)
    if rows:
        note_query = select(_notes).order_by(_notes.c.id)
        note_query = (
            note_query.where(_notes.c.exception_id == only)
            if only is not None
            else note_query.where(
                _notes.c.exception_id.in_(select(_exceptions.c.id).where(_exceptions.c.run_id == run_id))
            )
        )
        for n in session.execute(note_query):
            notes[n.exception_id].append(Note(n.id, NoteAction(n.action), n.text, n.key_id, n.created_at))
    return [_exception_of(r, notes.get(r.id, [])) for r in rows]


def _exception_of(r: Row[Any], notes: list[Note]) -> ReconException:
    return ReconException(
        id=r.id,
        run_id=r.run_id,
        kind=ReconClass(r.kind),
        line=r.line,
        payout_id=r.payout_id,
        buyer_id=r.buyer_id,
        reference=r.reference,
        provider_reference=r.provider_reference,
        ledger_amount=r.ledger_amount,
        provider_amount=r.provider_amount,
        ledger_status=r.ledger_status,
        provider_status=r.provider_status,
        detail=dict(r.detail),
        status=r.status,
        resolved_at=r.resolved_at,
        resolved_by=r.resolved_by,
        created_at=r.created_at,
        notes=notes,
    )


# --- the nightly check ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StuckPayout:
    payout_id: int
    buyer_id: int
    homeworker_id: int
    reference: str
    amount: int
    unknown_since: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class NightlyResult:
    run: Run
    stuck: list[StuckPayout]


def stuck_unknown(
    session: Session, *, older_than: timedelta, now: datetime, provider: str | None = None
) -> list[StuckPayout]:
    """Payouts whose outcome has been unknown for longer than ``older_than``."""
    entered = (
        select(_events.c.payout_id, func.max(_events.c.created_at).label("since"))
        .where(
            _events.c.to_status == PayoutStatus.UNKNOWN.value,
            _events.c.from_status != PayoutStatus.UNKNOWN.value,
        )
        .group_by(_events.c.payout_id)
        .subquery()
    )
    since = func.coalesce(entered.c.since, _payouts.c.submitted_at, _payouts.c.created_at)
    query = (
        select(
            _payouts.c.id,
            _payouts.c.buyer_id,
            _payouts.c.homeworker_id,
            _payouts.c.reference,
            _payouts.c.amount,
            _payouts.c.attempts,
            entered.c.since,
            _payouts.c.submitted_at,
            _payouts.c.created_at,
        )
        .outerjoin(entered, entered.c.payout_id == _payouts.c.id)
        .where(_payouts.c.status == PayoutStatus.UNKNOWN.value, since <= now - older_than)
        .order_by(_payouts.c.id)
    )
    if provider is not None:
        query = query.where(_payouts.c.provider == provider)
    return [
        StuckPayout(
            r.id,
            r.buyer_id,
            r.homeworker_id,
            r.reference,
            r.amount,
            r.since or r.submitted_at or r.created_at,
            r.attempts,
        )
        for r in session.execute(query)
    ]


def nightly(
    session: Session,
    *,
    statement_csv: str,
    provider: str,
    stuck_after: timedelta,
    now: datetime,
    keyring: pii.Keyring | None = None,
) -> NightlyResult:
    """The scheduled check: reconcile the provider's full statement up to now, list stuck payouts.

    The sandbox statement covers the provider's whole history, so the period runs from the
    beginning to ``now``. A bad statement raises :class:`InvalidStatement` and stores nothing.
    """
    run = reconcile_statement(
        session,
        data=statement_csv,
        provider=provider,
        principal=None,
        source=Source.NIGHTLY,
        keyring=keyring,
        now=now,
        period_from=None,
        period_to=now,
    )
    return NightlyResult(run, stuck_unknown(session, older_than=stuck_after, now=now, provider=provider))
