"""The only writer of the ledger: accounts, entries, holds, reversals.

Every function works inside the caller's database transaction (one per use-case) and
never commits, but ``post_committed``: one entry as a transaction of its own. Within a
transaction, the accounts an operation touches are locked in one global order (by id)
before their balances are read, so concurrent postings never deadlock and never overdraw;
balances are materialised in the same transaction as the postings.
Everything is checked before the first write, so a refused operation writes nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.accounts import Account, AccountStatus, AccountType, Balance, sign
from ledger.bulk import insert_rows_returning_ids, update_rows
from ledger.driver import Driver
from ledger.entries import (
    EntryDraft,
    JournalEntry,
    Posting,
    canonical_content,
    check_balanced,
    first_difference,
    reversal_of,
)
from ledger.errors import (
    AccountNotFound,
    AccountNotOpen,
    AlreadyReversed,
    ConcurrencyExhausted,
    CurrencyMismatch,
    EntryNotFound,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidEntry,
    LedgerError,
)
from ledger.holds import Hold, HoldStatus, check_resolvable
from ledger.money import check_amount, check_currency
from ledger.tables import (
    AccountRow,
    EntryRow,
    HoldRow,
    PostingRow,
    RejectionRow,
    insert_or_ignore,
    is_postgresql,
    table_of,
)

_accounts = table_of(AccountRow)
_entries = table_of(EntryRow)
_postings = table_of(PostingRow)
_holds = table_of(HoldRow)
_rejections = table_of(RejectionRow)


# --- accounts ---------------------------------------------------------------------------


def open_account(
    session: Session,
    *,
    code: str,
    type: AccountType,
    currency: str,
    owner: str,
    now: datetime,
    no_overdraft: bool = False,
) -> Account:
    """Open an account, or return the one already opened under ``code`` with the same terms."""
    check_currency(currency)
    existing = find_account_by_code(session, code)
    if existing is not None:
        if (existing.type, existing.currency, existing.owner, existing.no_overdraft) != (
            type,
            currency,
            owner,
            no_overdraft,
        ):
            raise IdempotencyConflict(f"account {code!r} exists with other terms", field="account")
        return existing
    _insert_ignore(
        session,
        _accounts,
        {
            "code": code,
            "type": type.value,
            "currency": currency,
            "owner": owner,
            "no_overdraft": no_overdraft,
            "status": AccountStatus.OPEN.value,
            "balance": 0,
            "held": 0,
            "created_at": now,
        },
        ["code"],
    )
    account = find_account_by_code(session, code)
    assert account is not None
    return account


def find_account_by_code(session: Session, code: str) -> Account | None:
    row = session.execute(select(_accounts).where(_accounts.c.code == code)).first()
    return _account(row) if row is not None else None


def get_account(session: Session, account_id: int) -> Account:
    row = session.execute(select(_accounts).where(_accounts.c.id == account_id)).first()
    if row is None:
        raise AccountNotFound(f"account {account_id} does not exist", account_id=account_id)
    return _account(row)


def set_account_status(session: Session, *, account_id: int, status: AccountStatus) -> Account:
    """Freeze, unfreeze or close an account; only an empty account with no holds may close."""
    account = _lock_accounts(session, [account_id])[account_id]
    if account.status is AccountStatus.CLOSED:
        raise AccountNotOpen("a closed account stays closed", account_id=account_id)
    if status is AccountStatus.CLOSED and (account.balance != 0 or account.held != 0):
        raise InvalidEntry("only an account with zero balance and no holds can be closed")
    session.execute(update(_accounts).where(_accounts.c.id == account_id).values(status=status.value))
    return get_account(session, account_id)


# --- entries ------------------------------------------------------------------------------


def post(
    session: Session, draft: EntryDraft, *, now: datetime, remember_refusal: bool = True
) -> JournalEntry:
    """Post a balanced entry atomically, or return the entry already posted under its key.

    A key refused for lack of funds is remembered by the unit of work, so that it keeps being
    refused. ``remember_refusal=False`` is for a key made from a row the same unit of work
    creates: the refusal rolls that row back, and SQLite may give its id to the next row, so
    the key would then name a different request.
    """
    try:
        return _post(session, draft, now=now, reverses_id=None, released={})
    except InsufficientFunds as exc:
        if not remember_refusal:
            exc.details.pop("key", None)
            exc.details.pop("content", None)
        raise


def post_many(session: Session, drafts: Sequence[EntryDraft], *, now: datetime) -> list[int]:
    """Post a batch of entries in one transaction with set-based writes; returns their ids.

    For bulk work (imports, benchmarks, ``capture_holds``). All or nothing; keys already posted
    are replayed.
    """
    if not drafts:
        return []
    _check_moment(now)
    contents = []
    for draft in drafts:
        check_balanced(draft)
        contents.append(canonical_content(draft))
    if len({d.key for d in drafts}) != len(drafts):
        raise InvalidEntry("a batch may not repeat an idempotency key")
    if is_postgresql(session):
        return _post_many_pg(session, drafts, contents, now=now)
    replayed = _existing_ids(session, drafts, contents)
    fresh = [(d, c) for d, c in zip(drafts, contents, strict=True) if d.key not in replayed]
    if fresh:
        accounts = _lock_accounts(session, {p.account_id for d, _ in fresh for p in d.postings})
        deltas: dict[int, int] = defaultdict(int)
        for draft, content in fresh:
            _check_postings(accounts, draft, content, deltas, released={})
        rows = session.execute(
            insert(_entries).returning(_entries.c.id, _entries.c.key, sort_by_parameter_order=True),
            [_entry_values(d, c, now, None) for d, c in fresh],
        ).all()
        ids = {r.key: r.id for r in rows}
        session.execute(
            insert(_postings),
            [
                {
                    "entry_id": ids[d.key],
                    "account_id": p.account_id,
                    "amount": p.amount,
                    "currency": p.currency,
                }
                for d, _ in fresh
                for p in d.postings
            ],
        )
        _apply_deltas(session, accounts, deltas)
        replayed.update(ids)
    return [replayed[d.key] for d in drafts]


def reverse(session: Session, *, entry_id: int, key: str, reason: str, now: datetime) -> JournalEntry:
    """Undo an entry with its mirror image, linked to it; an entry is reversed at most once."""
    if not reason.strip():
        raise InvalidEntry("a reversal needs a reason")
    original = get_entry(session, entry_id)
    prior = session.execute(
        select(_entries.c.id, _entries.c.key).where(_entries.c.reverses_id == entry_id)
    ).first()
    if prior is not None and prior.key != key:
        raise AlreadyReversed(
            f"entry {entry_id} was already reversed by entry {prior.id}", reversal_id=prior.id
        )
    # A retry with the key comes later than the reversal it repeats, or than the refusal it
    # meets again: compare it at that one's time.
    if prior is not None:
        effective_at = get_entry(session, prior.id).effective_at
    else:
        refused = session.execute(select(_rejections.c.content).where(_rejections.c.key == key)).scalar()
        at = refused.get("effective_at") if refused else None  # a hold's refusal has no time
        effective_at = datetime.fromisoformat(at) if isinstance(at, str) else now
    draft = reversal_of(original, key=key, reason=reason, effective_at=effective_at)
    return _post(session, draft, now=now, reverses_id=entry_id, released={})


def get_entry(session: Session, entry_id: int) -> JournalEntry:
    row = session.execute(select(_entries).where(_entries.c.id == entry_id)).first()
    if row is None:
        raise EntryNotFound(f"entry {entry_id} does not exist", entry_id=entry_id)
    return _entry(session, row)


def find_entry_by_key(session: Session, key: str) -> JournalEntry | None:
    row = session.execute(select(_entries).where(_entries.c.key == key)).first()
    return _entry(session, row) if row is not None else None


# --- holds ----------------------------------------------------------------------------------


def place_hold(
    session: Session,
    *,
    key: str,
    account_id: int,
    amount: int,
    now: datetime,
    expires_at: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Hold:
    """Reserve ``amount`` of an account's available balance until captured, voided or expired."""
    check_amount(amount)
    if not key or len(key) > 200:
        raise InvalidEntry("a hold needs an idempotency key of 1 to 200 characters")
    content = {"account_id": account_id, "amount": amount, "expires_at": _iso(expires_at)}
    existing = find_hold_by_key(session, key)
    if existing is not None:
        stored = {
            "account_id": existing.account_id,
            "amount": existing.amount,
            "expires_at": _iso(existing.expires_at),
        }
        _raise_on_difference(key, stored, content)
        return existing
    _replay_rejection(session, key, content)
    account = _lock_accounts(session, [account_id])[account_id]
    _check_open(account)
    if account.no_overdraft and account.available < amount:
        raise InsufficientFunds(
            f"account {account_id} has {account.available} available, the hold needs {amount}",
            account_id=account_id,
            available=str(account.available),
            key=key,
            content=content,
        )
    hold_id = session.execute(
        insert(_holds).returning(_holds.c.id),
        {
            "key": key,
            "account_id": account_id,
            "amount": amount,
            "currency": account.currency,
            "status": HoldStatus.PENDING.value,
            "expires_at": expires_at,
            "captured_amount": 0,
            "metadata": dict(metadata or {}),
            "created_at": now,
        },
    ).scalar_one()
    session.execute(
        update(_accounts).where(_accounts.c.id == account_id).values(held=_accounts.c.held + amount)
    )
    return get_hold(session, hold_id)


@dataclass(frozen=True, slots=True)
class HoldRequest:
    key: str
    account_id: int
    amount: int
    expires_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def place_holds(session: Session, requests: Sequence[HoldRequest], *, now: datetime) -> list[int]:
    """Place many holds at once with set-based writes; all or nothing. Returns their ids in order.

    The same checks as ``place_hold``: accounts locked in id order, open, and with enough
    available for every hold on them together.
    """
    if not requests:
        return []
    for r in requests:
        check_amount(r.amount)
        if not r.key or len(r.key) > 200:
            raise InvalidEntry("a hold needs an idempotency key of 1 to 200 characters")
    keys = [r.key for r in requests]
    if len(set(keys)) != len(keys):
        raise InvalidEntry("a batch may not repeat a hold key")
    taken = session.execute(select(_holds.c.key).where(_holds.c.key.in_(keys)).limit(1)).first()
    if taken is not None:
        raise IdempotencyConflict(f"hold key {taken.key!r} is already used", field="key")
    accounts = _lock_accounts(session, {r.account_id for r in requests})
    needed: dict[int, int] = defaultdict(int)
    for r in requests:
        needed[r.account_id] += r.amount
    for account_id, amount in needed.items():
        account = accounts[account_id]
        _check_open(account)
        if account.no_overdraft and account.available < amount:
            raise InsufficientFunds(
                f"account {account_id} has {account.available} available, the holds need {amount}",
                account_id=account_id,
                available=str(account.available),
            )
    ids = insert_rows_returning_ids(
        session,
        _holds,
        [
            {
                "key": r.key,
                "account_id": r.account_id,
                "amount": r.amount,
                "currency": accounts[r.account_id].currency,
                "status": HoldStatus.PENDING.value,
                "expires_at": r.expires_at,
                "captured_amount": 0,
                "metadata": dict(r.metadata),
                "created_at": now,
            }
            for r in requests
        ],
    )
    update_rows(
        session,
        _accounts,
        [{"id": aid, "held": n} for aid, n in sorted(needed.items())],  # "held": what is added
        key="id",
        assign=lambda v: {"held": _accounts.c.held + v["held"]},
    )
    return ids


def lock_accounts(session: Session, account_ids: Iterable[int]) -> None:
    """Lock accounts, in the ledger's one order (by id), for the rest of the transaction.

    For a unit of work that writes rows referring to accounts (a foreign key takes a share
    lock on each) before it posts or holds on them: taking the lowest-numbered accounts it
    will need first keeps it in the order every posting takes, so that it cannot deadlock
    with one.
    """
    _lock_accounts(session, account_ids)


def capture_hold(session: Session, *, hold_id: int, draft: EntryDraft, now: datetime) -> JournalEntry:
    """Post ``draft`` against the hold; it must take at most the held amount from the held account.

    The rest of the hold is released. A hold resolves once: capturing again with the same
    draft key replays the entry, anything else is refused. A pending hold is captured only by
    a new entry: a key some other entry already has would mark the hold captured (and free
    its funds) while no money moved.
    """
    hold = _lock_hold(session, hold_id)
    if hold.status is HoldStatus.CAPTURED and hold.entry_id is not None:
        entry = get_entry(session, hold.entry_id)
        if entry.key == draft.key:
            return _post(session, draft, now=now, reverses_id=None, released={})
    check_resolvable(hold.status, hold.expires_at, now, capturing=True)
    check_balanced(draft)
    account = get_account(session, hold.account_id)
    taken = -sign(account.type) * sum(p.amount for p in draft.postings if p.account_id == hold.account_id)
    if taken <= 0 or taken > hold.amount:
        raise InvalidEntry(
            f"a capture must take between 1 and {hold.amount} from account {hold.account_id}",
            captured=str(taken),
        )
    entry = _post(
        session, draft, now=now, reverses_id=None, released={hold.account_id: hold.amount}, fresh=True
    )
    session.execute(
        update(_holds)
        .where(_holds.c.id == hold_id)
        .values(status=HoldStatus.CAPTURED.value, captured_amount=taken, entry_id=entry.id, resolved_at=now)
    )
    session.execute(
        update(_accounts).where(_accounts.c.id == hold.account_id).values(held=_accounts.c.held - hold.amount)
    )
    return entry


def capture_holds(
    session: Session, captures: Sequence[tuple[int, EntryDraft]], *, now: datetime
) -> list[int]:
    """``capture_hold`` for each ``(hold_id, draft)``, set-based; the entries' ids, in order.

    For a batch of fresh captures (a dispatch batch), at a few statements whatever its size:
    the holds are locked (by id), then every account the entries touch (by id, as a posting
    locks them); the holds' funds are released and the entries posted together by
    ``post_many``. All or nothing. A batch with a hold that is not pending, or a draft key an
    entry already has (checked once the holds are locked), is captured hold by hold by
    ``capture_hold``, with its replays and refusals.
    """
    if not captures:
        return []
    hold_ids = [hold_id for hold_id, _ in captures]
    if len(set(hold_ids)) != len(hold_ids):
        raise InvalidEntry("a batch may not capture a hold twice")
    holds = {
        hold.id: hold
        for hold in map(
            _hold,
            session.execute(
                select(_holds).where(_holds.c.id.in_(hold_ids)).order_by(_holds.c.id).with_for_update()
            ),
        )
    }
    for hold_id in hold_ids:
        if hold_id not in holds:
            raise HoldNotFound(f"hold {hold_id} does not exist", hold_id=hold_id)
    keys = [draft.key for _, draft in captures]
    posted = session.execute(select(_entries.c.key).where(_entries.c.key.in_(keys)).limit(1)).first()
    if posted is not None or any(h.status is not HoldStatus.PENDING for h in holds.values()):
        return [capture_hold(session, hold_id=h, draft=d, now=now).id for h, d in captures]
    for hold_id, draft in captures:
        check_resolvable(holds[hold_id].status, holds[hold_id].expires_at, now, capturing=True)
        check_balanced(draft)
    accounts = _lock_accounts(
        session,
        {p.account_id for _, d in captures for p in d.postings} | {h.account_id for h in holds.values()},
    )
    taken: dict[int, int] = {}
    released: dict[int, int] = defaultdict(int)
    for hold_id, draft in captures:
        hold = holds[hold_id]
        account_type = accounts[hold.account_id].type
        amount = -sign(account_type) * sum(
            p.amount for p in draft.postings if p.account_id == hold.account_id
        )
        if amount <= 0 or amount > hold.amount:
            raise InvalidEntry(
                f"a capture must take between 1 and {hold.amount} from account {hold.account_id}",
                captured=str(amount),
            )
        taken[hold_id] = amount
        released[hold.account_id] += hold.amount
    update_rows(
        session,
        _accounts,
        [{"id": aid, "held": n} for aid, n in sorted(released.items())],  # "held": what is released
        key="id",
        assign=lambda v: {"held": _accounts.c.held - v["held"]},
    )
    entry_ids = post_many(session, [draft for _, draft in captures], now=now)
    update_rows(
        session,
        _holds,
        [
            {"id": hold_id, "captured_amount": taken[hold_id], "entry_id": entry_id}
            for hold_id, entry_id in zip(hold_ids, entry_ids, strict=True)
        ],
        key="id",
        assign=lambda v: {
            "status": HoldStatus.CAPTURED.value,
            "captured_amount": v["captured_amount"],
            "entry_id": v["entry_id"],
            "resolved_at": now,
        },
    )
    return entry_ids


def void_hold(session: Session, *, hold_id: int, now: datetime) -> Hold:
    """Release a pending hold in full. Voiding a voided hold again is a no-op."""
    hold = _lock_hold(session, hold_id)
    if hold.status is HoldStatus.VOIDED:
        return hold
    check_resolvable(hold.status, hold.expires_at, now, capturing=False)
    _release(session, hold, HoldStatus.VOIDED, now)
    return get_hold(session, hold_id)


def expire_holds(session: Session, *, now: datetime, limit: int = 1000) -> int:
    """The sweeper: void pending holds whose time has passed. Returns how many it expired.

    Locks as a capture or a void does — holds first, then their accounts (in id order) — but
    all the batch's holds before any account, skipping holds a capture or void has locked
    (they are resolved there, or expired by the next sweep): taking a hold while holding an
    account locked for the previous one could deadlock with such a capture or void.
    """
    due = (
        select(_holds)
        .where(_holds.c.status == HoldStatus.PENDING.value, _holds.c.expires_at <= now)
        .order_by(_holds.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    holds = [_hold(row) for row in session.execute(due)]
    _lock_accounts(session, [hold.account_id for hold in holds])
    for hold in holds:
        _release(session, hold, HoldStatus.EXPIRED, now)
    return len(holds)


def get_hold(session: Session, hold_id: int) -> Hold:
    row = session.execute(select(_holds).where(_holds.c.id == hold_id)).first()
    if row is None:
        raise HoldNotFound(f"hold {hold_id} does not exist", hold_id=hold_id)
    return _hold(row)


def find_hold_by_key(session: Session, key: str) -> Hold | None:
    row = session.execute(select(_holds).where(_holds.c.key == key)).first()
    return _hold(row) if row is not None else None


# --- balances -------------------------------------------------------------------------------


def balance(session: Session, account_id: int, *, as_of: datetime | None = None) -> Balance:
    """The materialised balance now, or the balance from the postings at ``as_of``."""
    account = get_account(session, account_id)
    if as_of is None:
        return Balance(account.id, account.currency, account.balance, account.held)
    return Balance(account.id, account.currency, balance_as_of(session, account, as_of), 0)


def balance_as_of(session: Session, account: Account, as_of: datetime) -> int:
    total = session.execute(
        select(func.coalesce(func.sum(_postings.c.amount), 0))
        .select_from(_postings.join(_entries, _entries.c.id == _postings.c.entry_id))
        .where(_postings.c.account_id == account.id, _entries.c.effective_at <= as_of)
    ).scalar_one()
    return sign(account.type) * int(total)


# --- idempotent refusals --------------------------------------------------------------------


def record_rejection(session: Session, error: InsufficientFunds, *, now: datetime) -> None:
    """Remember that a key's first use failed for lack of funds, so that it keeps failing.

    Called by the unit of work in a fresh transaction after the failed one rolled back.
    """
    key = error.details.get("key")
    content = error.details.get("content")
    if not isinstance(key, str) or not isinstance(content, dict):
        return
    _insert_ignore(
        session,
        _rejections,
        {"key": key, "code": error.code, "message": error.message, "content": content, "created_at": now},
        ["key"],
    )


# --- internals --------------------------------------------------------------------------------

# The two posting functions' calls (migrations 0002 and 0007), sent by ledger.driver.
_POST_ENTRY = "SELECT status, entry_id, detail FROM ledger_post_entry({}, {}, {}, {}, {}, {}, {}, {}, {})"
_POST_ENTRIES = "SELECT status, idx, entry_ids, detail FROM ledger_post_entries({}, {}, {}, {}, {}, {}, {})"


def _json(value: bytes | None) -> Any:
    return json.loads(value) if value is not None else None


def _post_one_pg(
    session: Session,
    draft: EntryDraft,
    content: dict[str, Any],
    *,
    now: datetime,
    reverses_id: int | None,
    released: Mapping[int, int],
    fresh: bool,
) -> JournalEntry:
    """PostgreSQL: one entry in one round trip, with the BEGIN of a fresh unit of work (migration
    0002's ledger_post_entry)."""
    db = Driver.of(session)
    raw_status, entry_id, detail = db.call(
        _POST_ENTRY, *_entry_literals(db, draft, content, now=now, reverses_id=reverses_id, released=released)
    )
    assert raw_status is not None
    status = raw_status.decode()
    if status == "posted":
        assert entry_id is not None
        return _posted(int(entry_id), draft, now=now, reverses_id=reverses_id)
    if status == "replayed":
        assert entry_id is not None
        return _replayed(get_entry(session, int(entry_id)), fresh=fresh)
    if status == "raced":  # a concurrent transaction committed the same key first
        replay = _replay(session, draft.key, content)
        assert replay is not None
        return _replayed(replay, fresh=fresh)
    raise _refusal(status, _json(detail) or {}, draft.key, content)


def post_committed(db: Driver, draft: EntryDraft, *, now: datetime) -> JournalEntry | None:
    """PostgreSQL: post ``draft`` as a transaction of its own, committed in the same round trip,
    on a connection outside any transaction; the one function here that commits.

    Returns the entry if it was posted. Any other answer (a replay, a conflict, a refusal)
    wrote nothing, and None tells the caller to ask again with ``post`` in a unit of work,
    which answers it in full: its exceptions, its replay, its memory of refusals.
    """
    _check_moment(now)
    check_balanced(draft)
    content = canonical_content(draft)
    raw_status, entry_id, _ = db.call_committed(
        _POST_ENTRY, *_entry_literals(db, draft, content, now=now, reverses_id=None, released={})
    )
    if raw_status != b"posted":
        return None
    assert entry_id is not None
    return _posted(int(entry_id), draft, now=now, reverses_id=None)


def _entry_literals(
    db: Driver,
    draft: EntryDraft,
    content: dict[str, Any],
    *,
    now: datetime,
    reverses_id: int | None,
    released: Mapping[int, int],
) -> tuple[str, ...]:
    """The arguments of ledger_post_entry, in order."""
    release_account, release_amount = next(iter(released.items()), (None, 0))
    postings = draft.postings
    return (
        db.text(draft.key),
        db.text(json.dumps(content), "jsonb"),
        db.number(reverses_id),
        db.integers((p.account_id for p in postings), "bigint"),
        db.integers((p.amount for p in postings), "bigint"),
        db.currencies(p.currency for p in postings),
        db.moment(now),
        db.number(release_account),
        db.number(release_amount),
    )


def _posted(entry_id: int, draft: EntryDraft, *, now: datetime, reverses_id: int | None) -> JournalEntry:
    """The entry just written from ``draft``, without reading it back."""
    return JournalEntry(
        entry_id,
        draft.key,
        draft.postings,
        draft.effective_at,
        now,
        draft.description,
        dict(draft.metadata),
        reverses_id,
    )


def _post_many_pg(
    session: Session, drafts: Sequence[EntryDraft], contents: Sequence[dict[str, Any]], *, now: datetime
) -> list[int]:
    """PostgreSQL: a batch in one round trip, set-based (migration 0007's ledger_post_entries)."""
    entry_idx: list[int] = []
    accounts: list[int] = []
    amounts: list[int] = []
    currencies: list[str] = []
    for i, draft in enumerate(drafts, start=1):
        for posting in draft.postings:
            entry_idx.append(i)
            accounts.append(posting.account_id)
            amounts.append(posting.amount)
            currencies.append(posting.currency)
    db = Driver.of(session)
    try:
        status, idx, entry_ids, detail = db.call(
            _POST_ENTRIES,
            db.texts(d.key for d in drafts),
            db.text(json.dumps(contents), "jsonb"),
            db.integers(entry_idx, "int"),
            db.integers(accounts, "bigint"),
            db.integers(amounts, "bigint"),
            db.currencies(currencies),
            db.moment(now),
        )
    except IntegrityError as exc:
        if getattr(getattr(exc.orig, "diag", None), "constraint_name", None) != "uq_ledger_entries_key":
            raise
        raise ConcurrencyExhausted(
            "another transaction posted some of these keys at the same time; retry the batch"
        ) from exc
    assert status is not None
    if status in (b"posted", b"replayed"):
        assert entry_ids is not None
        return [int(i) for i in entry_ids[1:-1].split(b",")]
    position = (int(idx) if idx is not None else 1) - 1
    raise _refusal(status.decode(), _json(detail) or {}, drafts[position].key, contents[position])


def _refusal(status: str, detail: Mapping[str, Any], key: str, content: dict[str, Any]) -> LedgerError:
    """The exception for a refusal status of the PostgreSQL functions: the Python path's own."""
    if status == "conflict":
        _raise_on_difference(key, detail, content)
        return IdempotencyConflict(
            f"idempotency key {key!r} was used with different content", field="content"
        )
    if status == "rejected":
        _raise_on_difference(key, detail["content"], content)
        return InsufficientFunds(detail["message"], replayed=True)
    if status == "account_not_found":
        return AccountNotFound(
            f"account {detail['account_id']} does not exist", account_id=detail["account_id"]
        )
    if status == "account_not_open":
        return AccountNotOpen(
            f"account {detail['account_id']} is {detail['status']}",
            account_id=detail["account_id"],
            status=detail["status"],
        )
    if status == "currency_mismatch":
        return CurrencyMismatch(
            f"account {detail['account_id']} holds {detail['account_currency']}, "
            f"the posting is in {detail['currency']}",
            account_id=detail["account_id"],
        )
    if status == "insufficient_funds":
        return InsufficientFunds(
            f"account {detail['account_id']} has {detail['available']} available, "
            f"the entry needs {detail['needed']}",
            account_id=detail["account_id"],
            available=str(detail["available"]),
            key=key,
            content=content,
        )
    raise AssertionError(f"unknown status {status!r} from the ledger's posting function")


@dataclass(slots=True)
class _Locked:
    id: int
    type: AccountType
    currency: str
    no_overdraft: bool
    status: AccountStatus
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


def _post(
    session: Session,
    draft: EntryDraft,
    *,
    now: datetime,
    reverses_id: int | None,
    released: Mapping[int, int],
    fresh: bool = False,
) -> JournalEntry:
    """Post ``draft``, or replay the entry already posted under its key (with ``fresh``: refuse
    to, for callers that must move money now)."""
    _check_moment(now)
    check_balanced(draft)
    content = canonical_content(draft)
    if is_postgresql(session):
        return _post_one_pg(
            session, draft, content, now=now, reverses_id=reverses_id, released=released, fresh=fresh
        )
    replay = _replay(session, draft.key, content)
    if replay is not None:
        return _replayed(replay, fresh=fresh)
    accounts = _lock_accounts(session, {p.account_id for p in draft.postings})
    deltas: dict[int, int] = defaultdict(int)
    _check_postings(accounts, draft, content, deltas, released=released)
    values = _entry_values(draft, content, now, reverses_id)
    inserted = _insert_ignore(session, _entries, values, ["key"], returning=True)
    if inserted is None:  # a concurrent request with the same key won the race
        replay = _replay(session, draft.key, content)
        assert replay is not None
        return _replayed(replay, fresh=fresh)
    entry_id = inserted
    session.execute(
        insert(_postings),
        [
            {"entry_id": entry_id, "account_id": p.account_id, "amount": p.amount, "currency": p.currency}
            for p in draft.postings
        ],
    )
    _apply_deltas(session, accounts, deltas)
    return _posted(entry_id, draft, now=now, reverses_id=reverses_id)


def _check_moment(now: datetime) -> None:
    """A naive time would be read as UTC by PostgreSQL and refused by SQLite: refuse it on both."""
    if now.tzinfo is None:
        raise InvalidEntry("the posting time must be timezone-aware")


def _replayed(entry: JournalEntry, *, fresh: bool) -> JournalEntry:
    if fresh:
        raise IdempotencyConflict(
            f"idempotency key {entry.key!r} already belongs to entry {entry.id}; this needs a new entry",
            field="key",
        )
    return entry


def _check_postings(
    accounts: Mapping[int, _Locked],
    draft: EntryDraft,
    content: dict[str, Any],
    deltas: dict[int, int],
    *,
    released: Mapping[int, int],
) -> None:
    """Check one draft against the locked accounts and fold its deltas in; writes nothing."""
    mine: dict[int, int] = defaultdict(int)
    for posting in draft.postings:
        account = accounts[posting.account_id]
        _check_open(account)
        if account.currency != posting.currency:
            raise CurrencyMismatch(
                f"account {account.id} holds {account.currency}, the posting is in {posting.currency}",
                account_id=account.id,
            )
        mine[account.id] += sign(account.type) * posting.amount
    for account_id, delta in mine.items():
        account = accounts[account_id]
        deltas[account_id] += delta
        if not account.no_overdraft or delta >= 0:
            continue
        available = account.balance + deltas[account_id] - account.held + released.get(account_id, 0)
        if available < 0:
            raise InsufficientFunds(
                f"account {account_id} has {available - delta} available, the entry needs {-delta}",
                account_id=account_id,
                available=str(available - delta),
                key=draft.key,
                content=content,
            )


def _apply_deltas(session: Session, accounts: Mapping[int, _Locked], deltas: Mapping[int, int]) -> None:
    changed = [{"id": aid, "balance": d} for aid, d in sorted(deltas.items()) if d != 0]
    update_rows(
        session,
        _accounts,
        changed,  # "balance": its change
        key="id",
        assign=lambda v: {"balance": _accounts.c.balance + v["balance"]},
    )
    for row in changed:
        accounts[row["id"]].balance += row["balance"]


def _lock_accounts(session: Session, ids: Iterable[int]) -> dict[int, _Locked]:
    wanted = sorted(set(ids))
    rows = session.execute(
        select(
            _accounts.c.id,
            _accounts.c.type,
            _accounts.c.currency,
            _accounts.c.no_overdraft,
            _accounts.c.status,
            _accounts.c.balance,
            _accounts.c.held,
        )
        .where(_accounts.c.id.in_(wanted))
        .order_by(_accounts.c.id)
        .with_for_update()
    ).all()
    found = {
        r.id: _Locked(
            r.id, AccountType(r.type), r.currency, r.no_overdraft, AccountStatus(r.status), r.balance, r.held
        )
        for r in rows
    }
    missing = [i for i in wanted if i not in found]
    if missing:
        raise AccountNotFound(f"account {missing[0]} does not exist", account_id=missing[0])
    return found


def _check_open(account: _Locked | Account) -> None:
    if account.status is not AccountStatus.OPEN:
        raise AccountNotOpen(
            f"account {account.id} is {account.status.value}",
            account_id=account.id,
            status=account.status.value,
        )


def _lock_hold(session: Session, hold_id: int) -> Hold:
    row = session.execute(select(_holds).where(_holds.c.id == hold_id).with_for_update()).first()
    if row is None:
        raise HoldNotFound(f"hold {hold_id} does not exist", hold_id=hold_id)
    return _hold(row)


def _release(session: Session, hold: Hold, status: HoldStatus, now: datetime) -> None:
    _lock_accounts(session, [hold.account_id])
    session.execute(update(_holds).where(_holds.c.id == hold.id).values(status=status.value, resolved_at=now))
    session.execute(
        update(_accounts).where(_accounts.c.id == hold.account_id).values(held=_accounts.c.held - hold.amount)
    )


def _replay(session: Session, key: str, content: dict[str, Any]) -> JournalEntry | None:
    row = session.execute(select(_entries).where(_entries.c.key == key)).first()
    if row is None:
        _replay_rejection(session, key, content)
        return None
    _raise_on_difference(key, row.content, content)
    return _entry(session, row)


def _replay_rejection(session: Session, key: str, content: dict[str, Any]) -> None:
    rejected = session.execute(select(_rejections).where(_rejections.c.key == key)).first()
    if rejected is None:
        return
    _raise_on_difference(key, rejected.content, content)
    raise InsufficientFunds(rejected.message, replayed=True)


def _raise_on_difference(key: str, stored: Mapping[str, Any], requested: Mapping[str, Any]) -> None:
    if "postings" in requested:
        differing = first_difference(stored, requested)
    else:
        differing = next((k for k in requested if stored.get(k) != requested[k]), None)
    if differing is not None:
        raise IdempotencyConflict(
            f"idempotency key {key!r} was used with a different {differing}", field=differing
        )


def _existing_ids(
    session: Session, drafts: Sequence[EntryDraft], contents: Sequence[dict[str, Any]]
) -> dict[str, int]:
    keys = [d.key for d in drafts]
    found = {
        r.key: r
        for r in session.execute(
            select(_entries.c.id, _entries.c.key, _entries.c.content).where(_entries.c.key.in_(keys))
        )
    }
    out: dict[str, int] = {}
    for draft, content in zip(drafts, contents, strict=True):
        row = found.get(draft.key)
        if row is not None:
            _raise_on_difference(draft.key, row.content, content)
            out[draft.key] = row.id
    # as migration 0007's ledger_post_entries: conflicts first, then the first remembered refusal
    refused = {
        r.key: r
        for r in session.execute(
            select(_rejections.c.key, _rejections.c.content, _rejections.c.message).where(
                _rejections.c.key.in_(keys)
            )
        )
    }
    for draft, content in zip(drafts, contents, strict=True):
        rejection = refused.get(draft.key)
        if rejection is not None:
            _raise_on_difference(draft.key, rejection.content, content)
            raise InsufficientFunds(rejection.message, replayed=True)
    return out


def _entry_values(
    draft: EntryDraft, content: dict[str, Any], now: datetime, reverses_id: int | None
) -> dict[str, Any]:
    return {
        "key": draft.key,
        "description": draft.description,
        "metadata": dict(draft.metadata),
        "effective_at": draft.effective_at,
        "created_at": now,
        "reverses_id": reverses_id,
        "content": content,
    }


def _insert_ignore(
    session: Session, table: Any, values: dict[str, Any], conflict: list[str], *, returning: bool = False
) -> int | None:
    stmt = insert_or_ignore(session, table, conflict).values(values)
    if returning:
        return session.execute(stmt.returning(table.c.id)).scalar_one_or_none()
    session.execute(stmt)
    return None


def _account(row: Row[Any]) -> Account:
    return Account(
        id=row.id,
        code=row.code,
        type=AccountType(row.type),
        currency=row.currency,
        owner=row.owner,
        no_overdraft=row.no_overdraft,
        status=AccountStatus(row.status),
        balance=row.balance,
        held=row.held,
    )


def _entry(session: Session, row: Row[Any]) -> JournalEntry:
    postings = session.execute(
        select(_postings.c.account_id, _postings.c.amount, _postings.c.currency)
        .where(_postings.c.entry_id == row.id)
        .order_by(_postings.c.id)
    ).all()
    return JournalEntry(
        id=row.id,
        key=row.key,
        postings=tuple(Posting(p.account_id, p.amount, p.currency) for p in postings),
        effective_at=row.effective_at,
        created_at=row.created_at,
        description=row.description,
        metadata=row.metadata,
        reverses_id=row.reverses_id,
    )


def _hold(row: Row[Any]) -> Hold:
    return Hold(
        id=row.id,
        key=row.key,
        account_id=row.account_id,
        amount=row.amount,
        currency=row.currency,
        status=HoldStatus(row.status),
        expires_at=row.expires_at,
        captured_amount=row.captured_amount,
        entry_id=row.entry_id,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
