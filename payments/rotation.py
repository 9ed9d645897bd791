"""Key rotation: every sealed field and blind index rewritten with the primary key.

After a new key is put first in ``UPAH_SECRET_KEYS`` (:mod:`payments.pii` gives the whole
procedure), new values are sealed and indexed with it, and old rows stay readable and
findable while the old key stays in the ring. This module rewrites the old rows, so that
the old key can then be dropped: each value sealed with an older key is sealed again with
the primary key *in its own context*, and each blind index made with an older key is
recomputed from the value it indexes.

:data:`TARGETS` lists every sealed column of the schema with its context; a test checks
that no ``*_enc`` or ``*_index`` column is missing. :func:`rotate_batch` rewrites up to
``limit`` rows of one table that still need it, in key order after a given key, locking
them (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's write transactions lock the whole
database) so that a concurrent update is never overwritten with a stale value. The caller
runs each batch in its own transaction. Only rows still on an older key are selected, so a
run that stops may simply be started again, and a second run rewrites nothing.

USSD PIN hashes are not here: a PIN is peppered with a key before hashing and can be
hashed again only from the PIN itself, at her next right PIN (:mod:`payments.pins`);
:func:`stale_pins` counts those still made with an older key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, LargeBinary, Table, and_, func, literal, or_, select, tuple_, update
from sqlalchemy.orm import Session

from ledger.tables import table_of
from payments import idempotency, pii, pins
from payments.tables import HomeworkerRow, IdempotencyRow, PayoutRow, SmsMessageRow

log = logging.getLogger(__name__)

DEFAULT_BATCH = 500
_TOKEN_PREFIX = f"{pii.TOKEN_VERSION}."


@dataclass(frozen=True, slots=True)
class Sealed:
    """A column of :func:`pii.encrypt` tokens, all sealed in one context.

    ``binary`` columns hold the token as ASCII bytes, or (rows from before sealing) raw
    bytes that are left as they are.
    """

    column: str
    context: str
    binary: bool = False


@dataclass(frozen=True, slots=True)
class Indexed:
    """A blind-index column, recomputed from the sealed column ``source`` that holds its value."""

    column: str
    source: Sealed
    purpose: str


@dataclass(frozen=True, slots=True)
class Target:
    """One table's sealed columns and blind indexes."""

    table: Table
    sealed: tuple[Sealed, ...]
    indexes: tuple[Indexed, ...] = ()

    @property
    def name(self) -> str:
        return self.table.name


_PHONE = Sealed("phone_enc", "homeworker.phone")
_NIK = Sealed("nik_enc", "homeworker.nik")

TARGETS: tuple[Target, ...] = (
    Target(
        table_of(HomeworkerRow),
        sealed=(
            Sealed("name_enc", "homeworker.name"),
            _PHONE,
            _NIK,
            Sealed("wallet_account_enc", "homeworker.wallet"),
        ),
        indexes=(Indexed("phone_index", _PHONE, "phone"), Indexed("nik_index", _NIK, "nik")),
    ),
    # A payout keeps a copy of her wallet token as it was at the run (payouts.create_run).
    Target(table_of(PayoutRow), sealed=(Sealed("account_enc", "homeworker.wallet"),)),
    Target(table_of(SmsMessageRow), sealed=(Sealed("to_enc", "sms.to"), Sealed("text_enc", "sms.text"))),
    Target(table_of(IdempotencyRow), sealed=(Sealed("body", idempotency.CONTEXT, binary=True),)),
)


@dataclass(frozen=True, slots=True)
class Count:
    """One table: its rows, and how many of them still hold a value or index of an older key."""

    table: str
    rows: int
    stale: int

    @property
    def current(self) -> int:
        return self.rows - self.stale


@dataclass(frozen=True, slots=True)
class Batch:
    """What one batch did. ``last`` is the key of the last row it looked at (to start the next
    batch after), None when no row was left."""

    rewritten: int
    unreadable: int
    last: tuple[Any, ...] | None


def _stale(target: Target, keyring: pii.Keyring) -> ColumnElement[bool]:
    """Rows with a token or index not made with the primary key (key ids may hold ``_``,
    a LIKE wildcard: hence ``autoescape``)."""
    kid = keyring.primary_key_id
    current = f"{_TOKEN_PREFIX}{kid}."
    checks: list[ColumnElement[bool]] = []
    for sealed in target.sealed:
        column = target.table.c[sealed.column]
        if sealed.binary:
            any_token, this_key = _TOKEN_PREFIX.encode(), current.encode()
            checks.append(
                and_(
                    func.substr(column, 1, len(any_token)) == literal(any_token, LargeBinary),
                    func.substr(column, 1, len(this_key)) != literal(this_key, LargeBinary),
                )
            )
        else:
            checks.append(and_(column.is_not(None), ~column.startswith(current, autoescape=True)))
    for indexed in target.indexes:
        column = target.table.c[indexed.column]
        checks.append(and_(column.is_not(None), ~column.startswith(f"{kid}.", autoescape=True)))
    return or_(*checks)


def _token(sealed: Sealed, stored: Any) -> str | None:
    """The token in a stored value; None for no value, or a raw (never sealed) binary one."""
    if stored is None:
        return None
    if not sealed.binary:
        return str(stored)
    if not bytes(stored).startswith(_TOKEN_PREFIX.encode()):
        return None
    try:
        return bytes(stored).decode("ascii")
    except UnicodeDecodeError as exc:
        raise pii.DecryptionFailed("a sealed binary value is ASCII") from exc


def _rewritten(target: Target, keyring: pii.Keyring, row: Any) -> dict[str, Any]:
    """The new values of a row's stale columns; raises :class:`pii.DecryptionFailed` if one
    cannot be opened."""
    values: dict[str, Any] = {}
    for sealed in target.sealed:
        token = _token(sealed, row[sealed.column])
        if token is not None and pii.needs_reencrypt(keyring, token):
            fresh = pii.reencrypt(keyring, token, context=sealed.context)
            values[sealed.column] = fresh.encode("ascii") if sealed.binary else fresh
    for indexed in target.indexes:
        index = row[indexed.column]
        if index is None or not pii.needs_reindex(keyring, index):
            continue
        token = _token(indexed.source, row[indexed.source.column])
        if token is None:
            raise pii.DecryptionFailed(f"{indexed.column} is set but {indexed.source.column} is empty")
        plain = pii.decrypt(keyring, token, context=indexed.source.context)
        values[indexed.column] = pii.blind_index(keyring, plain, purpose=indexed.purpose)
    return values


def rotate_batch(
    session: Session,
    *,
    keyring: pii.Keyring,
    target: Target,
    after: tuple[Any, ...] | None = None,
    limit: int = DEFAULT_BATCH,
) -> Batch:
    """Rewrite with the primary key up to ``limit`` rows of ``target`` still on an older key,
    the first ones in key order after ``after``; lock them while doing so.

    A value no key of the ring opens (its key was dropped, or the row was altered) is left
    as it is and counted as unreadable; it is logged by table and row key, never by content.
    """
    key = list(target.table.primary_key.columns)
    columns = {column.name: column for column in key}
    for sealed in target.sealed:
        columns[sealed.column] = target.table.c[sealed.column]
    for indexed in target.indexes:
        columns[indexed.column] = target.table.c[indexed.column]
    query = select(*columns.values()).where(_stale(target, keyring)).order_by(*key).limit(limit)
    if after is not None:
        query = query.where(tuple_(*key) > tuple_(*(literal(v) for v in after)))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    rows = session.execute(query).mappings().all()
    rewritten = unreadable = 0
    for row in rows:
        where = tuple(row[column.name] for column in key)
        try:
            values = _rewritten(target, keyring, row)
        except pii.DecryptionFailed as exc:
            unreadable += 1
            log.warning("keys: %s row %s opens with no key of the ring: %s", target.name, where, exc)
            continue
        if values:
            session.execute(
                update(target.table).where(*(c == v for c, v in zip(key, where, strict=True))).values(values)
            )
            rewritten += 1
    last = tuple(rows[-1][column.name] for column in key) if rows else None
    return Batch(rewritten=rewritten, unreadable=unreadable, last=last)


def status(session: Session, *, keyring: pii.Keyring) -> list[Count]:
    """For every table of :data:`TARGETS`: its rows, and how many are still on an older key."""
    counts = []
    for target in TARGETS:
        rows, stale = session.execute(
            select(func.count(), func.count().filter(_stale(target, keyring))).select_from(target.table)
        ).one()
        counts.append(Count(target.name, int(rows), int(stale)))
    return counts


def stale_pins(session: Session, *, keyring: pii.Keyring) -> int:
    """How many USSD PIN hashes are still peppered with an older key (rehashed at her next
    right PIN; unusable, so to be reset, once that key is dropped)."""
    column = table_of(HomeworkerRow).c.pin_hash
    prefix = f"{pins.FORMAT}."
    current = f"{prefix}{keyring.primary_key_id}."
    query = select(func.count()).where(
        column.startswith(prefix, autoescape=True), ~column.startswith(current, autoescape=True)
    )
    return int(session.execute(query).scalar_one())
