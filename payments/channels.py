"""The homeworker channels' database side: USSD turns, SMS commands, notices, disputes.

:mod:`payments.selfservice` decides every screen and reply from a :class:`WorkerView`; this
module loads that view, performs the actions the menu asks for, and keeps what must
outlive one request:

- **USSD sessions** (``ussd_sessions``). The gateway resends every answer on each key
  press, so the PIN — always the first well-formed answer — arrives with every request.
  It is checked with Argon2 *once per session*: the verdict is stored with a keyed hash of
  the session id and that PIN (never the PIN), and later requests reuse it only if their
  PIN answer hashes the same. A session belongs to the phone that opened it, must start
  on the first screen, and ends after :data:`SESSION_TIMEOUT` without a request. The
  Argon2 work runs outside any database transaction, in the caller's worker thread.
- **Figures are loaded only for screens that show them.** The screen is drawn first from a
  view without figures; only if probe views with different balance, payouts or open work
  would draw a different screen are those figures read from the ledger.
- **PIN tries** are counted on the homeworker row under a row lock (:mod:`payments.pins`):
  the third wrong PIN in a row locks the menu for 15 minutes and queues an SMS telling her.
  Changing her PIN, or an organisation clearing it at her request (:func:`reset_pin`), ends
  every session of hers: a session's verdict belongs to the PIN it was given.
- **Disputes** ("report a problem") get a short reference code, once per USSD session, and
  are visible to her buyer(s) and auditors (:func:`list_disputes`) — never to intermediaries,
  who may be the very people she is reporting.
- **Outbound SMS** go through the transactional outbox (topic ``sms.send``) with a payload
  that names a homeworker, a payout or an order — never a phone number or a figure. The
  worker's task calls :func:`deliver_sms`, which composes the text at send time in her
  language, records it once per dedupe key in ``sms_messages`` (recipient and text sealed
  with the personal-data keys) and hands it to an :class:`~integrations.sms_senders.SmsSender`.
  Delivery is at-least-once: a crash between the gateway's answer and our record sends again.

Nothing here logs a phone number, a PIN or a figure: IDs and codes only.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, Row, RowMapping, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import Executable

from integrations import phones
from integrations.sms_senders import SmsRejected, SmsSender, SmsTemporaryFailure
from ledger import atomic
from ledger.atomic import alone
from ledger.tables import AccountRow, insert_or_ignore, table_of
from payments import audit, messages, outbox, parties, payouts, pii, pins, rates, selfservice
from payments.errors import PaymentsError
from payments.messages import FailureReason, Language
from payments.parties import Principal, Role
from payments.payout_states import PayoutStatus
from payments.selfservice import (
    ChangePin,
    CheckPin,
    DisputeKind,
    OpenDispute,
    PayoutLine,
    SetLanguage,
    SetPin,
    UssdOutcome,
    WorkerView,
    WorkLine,
)
from payments.tables import (
    AssignmentRow,
    DisputeRow,
    EarningsAccountRow,
    HomeworkerLinkRow,
    HomeworkerRow,
    OrderRow,
    OrganizationRow,
    PayoutRow,
    SmsMessageRow,
    UssdSessionRow,
)

log = logging.getLogger(__name__)

_workers = table_of(HomeworkerRow)
_sessions = table_of(UssdSessionRow)
_disputes = table_of(DisputeRow)
_links = table_of(HomeworkerLinkRow)
_orgs = table_of(OrganizationRow)
_orders = table_of(OrderRow)
_assignments = table_of(AssignmentRow)
_payouts = table_of(PayoutRow)
_sms = table_of(SmsMessageRow)
_earnings = table_of(EarningsAccountRow)
_ledger_accounts = table_of(AccountRow)

SESSION_TIMEOUT = timedelta(minutes=3)
"""A USSD session with no request for this long is over (gateways give up long before)."""

SEND_CLAIM = timedelta(seconds=60)
"""How long one delivery attempt owns a message before another may try it."""

WIB = timezone(timedelta(hours=7), "WIB")
"""Western Indonesia Time (Java, Sumatra): "this month" and payout dates are hers, not UTC's.
Indonesia keeps no daylight saving, so a fixed offset is exact."""

OPEN_WORK_LIMIT = 20
DISPUTE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""No 0/O or 1/I: a code read aloud over a phone or copied from a small screen."""

SMS_COMMAND_WORDS = frozenset(
    {"saldo", "riwayat", "tarif", "bantuan", "bal", "balance", "hist", "history", "rates", "help"}
)
"""Command words kept in an outbox payload; anything else she wrote is stored as ''."""

_FAILURE_REASONS = {
    "limit_exceeded": FailureReason.WALLET_LIMIT,
    "name_mismatch": FailureReason.NAME_MISMATCH,
    "invalid_account": FailureReason.ACCOUNT_NOT_FOUND,
    "account_not_found": FailureReason.ACCOUNT_NOT_FOUND,
    "account_blocked": FailureReason.ACCOUNT_BLOCKED,
}


# --- the view -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Worker:
    id: int
    language: Language
    pin_hash: str | None
    pin_failures: int
    locked_until: datetime | None


def _worker(row: RowMapping) -> _Worker:
    return _Worker(
        int(row["id"]),
        _language(row["language"]),
        row["pin_hash"],
        int(row["pin_failures"] or 0),
        row["pin_locked_until"],
    )


def _language(stored: str) -> Language:
    try:
        return Language(stored)
    except ValueError:
        return Language.ID


_WORKER_COLUMNS = (
    _workers.c.id,
    _workers.c.language,
    _workers.c.pin_hash,
    _workers.c.pin_failures,
    _workers.c.pin_locked_until,
)


def _phone_indexes(keyring: pii.Keyring, phone: str) -> tuple[str, ...] | None:
    """Her phone's blind index under every key: during a key rotation her row may still
    carry an older key's index."""
    try:
        e164 = phones.normalise(phone)
    except phones.InvalidPhone:
        return None
    return pii.blind_indexes(keyring, e164, purpose="phone")


def _worker_by_index(session: Session, indexes: tuple[str, ...]) -> _Worker | None:
    query = select(*_WORKER_COLUMNS).where(_workers.c.phone_index.in_(indexes))
    row = session.execute(query).mappings().first()
    return _worker(row) if row is not None else None


def _worker_by_phone(session: Session, keyring: pii.Keyring, phone: str) -> _Worker | None:
    indexes = _phone_indexes(keyring, phone)
    return _worker_by_index(session, indexes) if indexes is not None else None


def _worker_by_id(session: Session, homeworker_id: int, *, lock: bool = False) -> _Worker | None:
    query = select(*_WORKER_COLUMNS).where(_workers.c.id == homeworker_id)
    if lock:
        query = query.with_for_update()
    row = session.execute(query).mappings().first()
    return _worker(row) if row is not None else None


def _base_view(worker: _Worker) -> WorkerView:
    return WorkerView(
        homeworker_id=worker.id,
        language=worker.language,
        pin_set=worker.pin_hash is not None,
        locked_until=worker.locked_until,
        owed=0,
        on_hold=0,
        paid_this_month=0,
        pin_failures=worker.pin_failures,
    )


def month_start(now: datetime) -> datetime:
    """The start of her calendar month (WIB), as a UTC instant."""
    local = now.astimezone(WIB)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def local_date(moment: datetime) -> date:
    return moment.astimezone(WIB).date()


def _with_balance(session: Session, view: WorkerView, now: datetime) -> WorkerView:
    """Her figures in one statement (one round trip), as ``statements.balance`` gives them to
    the platform (the channel speaks for it: every buyer she works for): what is owed on her
    earned accounts (available = posted − held), payouts under way from those buyers, and
    payouts settled into her wallet this month."""
    worker_id = view.homeworker_id
    owed = (
        select(func.coalesce(func.sum(_ledger_accounts.c.balance - _ledger_accounts.c.held), 0))
        .select_from(_earnings.join(_ledger_accounts, _ledger_accounts.c.id == _earnings.c.account_id))
        .where(_earnings.c.homeworker_id == worker_id)
        .scalar_subquery()
    )
    on_hold = (
        select(func.coalesce(func.sum(_payouts.c.amount), 0))
        .where(
            _payouts.c.homeworker_id == worker_id,
            _payouts.c.status.in_(payouts.IN_FLIGHT),
            _payouts.c.buyer_id.in_(
                select(_earnings.c.buyer_id).where(_earnings.c.homeworker_id == worker_id)
            ),
        )
        .scalar_subquery()
    )
    paid = (
        select(func.coalesce(func.sum(_payouts.c.amount), 0))
        .where(
            _payouts.c.homeworker_id == worker_id,
            _payouts.c.status == PayoutStatus.SUCCEEDED.value,
            _payouts.c.settled_at >= month_start(now),
        )
        .scalar_subquery()
    )
    row = session.execute(select(owed.label("owed"), on_hold.label("on_hold"), paid.label("paid"))).one()
    return replace(view, owed=int(row.owed), on_hold=int(row.on_hold), paid_this_month=int(row.paid))


def _with_payouts(session: Session, view: WorkerView, now: datetime) -> WorkerView:
    del now
    recent = payouts.recent_for_homeworker(
        session, homeworker_id=view.homeworker_id, buyer_ids=None, limit=selfservice.RECENT_PAYOUTS
    )
    lines = tuple(
        PayoutLine(day=local_date(p.settled_at or p.created_at), amount=p.amount, status=p.status)
        for p in recent
    )
    return replace(view, recent_payouts=lines)


def _with_work(session: Session, view: WorkerView, now: datetime) -> WorkerView:
    del now
    return replace(view, open_work=tuple(open_work(session, homeworker_id=view.homeworker_id)))


def open_work(session: Session, *, homeworker_id: int, limit: int = OPEN_WORK_LIMIT) -> list[WorkLine]:
    """Her open assignments with pieces still to hand in, soonest deadline first.

    Pieces left = assigned − accepted − awaiting confirmation; rejected pieces are to redo.
    """
    rows = session.execute(
        select(
            _orders.c.reference,
            _orders.c.product,
            _orders.c.rate,
            _orders.c.unit,
            _orders.c.deadline,
            _assignments.c.quantity,
            _assignments.c.delivered,
            _assignments.c.accepted,
            _assignments.c.rejected,
        )
        .join(_orders, _orders.c.id == _assignments.c.order_id)
        .where(_assignments.c.homeworker_id == homeworker_id, _orders.c.status == "open")
        .order_by(_orders.c.deadline, _orders.c.id)
        .limit(limit)
    ).all()
    lines = []
    for r in rows:
        awaiting = r.delivered - r.accepted - r.rejected
        left = r.quantity - r.accepted - awaiting
        if left <= 0:
            continue
        lines.append(
            WorkLine(
                order_ref=r.reference,
                product=r.product,
                rate=Decimal(r.rate),
                unit=rates.Unit(r.unit),
                pieces_left=int(left),
                deadline=r.deadline,
            )
        )
    return lines


def worker_view(session: Session, *, homeworker_id: int, now: datetime) -> WorkerView | None:
    """Everything the self-service may show her (every figure loaded)."""
    worker = _worker_by_id(session, homeworker_id)
    if worker is None:
        return None
    view = _base_view(worker)
    for load in (_with_balance, _with_payouts, _with_work):
        view = load(session, view, now)
    return view


_PROBE_DAY = date(2000, 1, 1)
_PROBES: tuple[
    tuple[Callable[[WorkerView], WorkerView], Callable[[Session, WorkerView, datetime], WorkerView]], ...
] = (
    (lambda v: replace(v, owed=1, on_hold=2, paid_this_month=3), _with_balance),
    (
        lambda v: replace(
            v, recent_payouts=(PayoutLine(day=_PROBE_DAY, amount=1, status=PayoutStatus.SUCCEEDED),)
        ),
        _with_payouts,
    ),
    (
        lambda v: replace(
            v,
            open_work=(
                WorkLine(
                    order_ref="P",
                    product="P",
                    rate=Decimal(1),
                    unit=rates.Unit.PIECE,
                    pieces_left=1,
                    deadline=_PROBE_DAY,
                ),
            ),
        ),
        _with_work,
    ),
)


# --- USSD ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UssdTurn:
    """The screen to render, and whether an SMS was queued (so the caller can nudge the relay)."""

    outcome: UssdOutcome
    sms_queued: bool = False


@dataclass(frozen=True, slots=True)
class _Context:
    session_id: str
    worker: _Worker
    steps: tuple[str, ...]
    verdict: bool | None
    dispute_ref: str | None
    now: datetime


@dataclass(frozen=True, slots=True)
class _Job:
    """CPU work (Argon2) to do outside the transaction, and the screen that follows it."""

    action: CheckPin | SetPin | ChangePin
    outcome: UssdOutcome


def _pin_tag(keyring: pii.Keyring, session_id: str, pin: str) -> str:
    return pii.blind_index(keyring, f"{session_id}\n{pin}", purpose="ussd_pin")


def _pin_tag_matches(keyring: pii.Keyring, session_id: str, pin: str, stored: str | None) -> bool:
    """True if ``stored`` is this PIN's tag under any key: a session may span the restart that
    puts a new key first."""
    tags = pii.blind_indexes(keyring, f"{session_id}\n{pin}", purpose="ussd_pin")
    return any(hmac.compare_digest(tag, stored or "") for tag in tags)


def login_pin(steps: Sequence[str]) -> str | None:
    """The answer the menu takes as her PIN: the first well-formed one (see selfservice)."""
    return next((step.strip() for step in steps if pins.valid_pin_format(step.strip())), None)


def _draw(session: Session, ctx: _Context) -> UssdOutcome:
    """The screen for these answers, reading only the figures that this screen shows."""
    base = _base_view(ctx.worker)

    def screen(view: WorkerView) -> UssdOutcome:
        return selfservice.ussd_screen(
            view, ctx.steps, pin_ok=ctx.verdict, now=ctx.now, dispute_ref=ctx.dispute_ref
        )

    first = screen(base)
    view = base
    for probe, load in _PROBES:
        if screen(probe(base)) != first:
            view = load(session, view, ctx.now)
    return first if view is base else screen(view)


def _session_row(session: Session, session_id: str, *, lock: bool) -> Row[Any] | None:
    query = select(_sessions).where(_sessions.c.session_id == session_id)
    if lock:
        query = query.with_for_update()
    return session.execute(query).first()


def _open(
    session: Session,
    *,
    keyring: pii.Keyring,
    session_id: str,
    phone: str,
    steps: tuple[str, ...],
    now: datetime,
    timeout: timedelta,
) -> _Context | UssdOutcome:
    indexes = _phone_indexes(keyring, phone)
    if indexes is None:
        return selfservice.unknown_number()
    postgres = session.get_bind().dialect.name == "postgresql"
    if steps and postgres:  # (SQLite cannot return the joined row's columns)
        # The usual next key press: one statement finds her, checks that the session is hers
        # and still running, touches it and locks its row (as the FOR UPDATE below would).
        found = (
            session.execute(
                update(_sessions)
                .where(
                    _sessions.c.session_id == session_id,
                    _sessions.c.homeworker_id == _workers.c.id,
                    _workers.c.phone_index.in_(indexes),
                    _sessions.c.last_seen_at >= now - timeout,
                )
                .values(last_seen_at=now)
                .returning(*_WORKER_COLUMNS, _sessions.c.pin_ok, _sessions.c.pin_tag, _sessions.c.dispute_ref)
            )
            .mappings()
            .first()
        )
        if found is not None:
            return _resumed(keyring, session_id, _worker(found), found, steps, now)
    worker = _worker_by_index(session, indexes)
    if worker is None:
        return selfservice.unknown_number()
    lang = worker.language
    if not steps:  # her first screen: a new session, unless the gateway sent this one before
        created = session.execute(
            insert_or_ignore(session, _sessions, ["session_id"])
            .values(session_id=session_id, homeworker_id=worker.id, created_at=now, last_seen_at=now)
            .returning(_sessions.c.session_id)
        ).first()
        if created is not None:
            return _Context(session_id, worker, steps, None, None, now)
    row = _session_row(session, session_id, lock=True)
    if row is None:
        if steps:
            return selfservice.session_expired(lang)
        session.execute(
            insert(_sessions),
            {"session_id": session_id, "homeworker_id": worker.id, "created_at": now, "last_seen_at": now},
        )
        return _Context(session_id, worker, steps, None, None, now)
    if row.homeworker_id != worker.id or now - row.last_seen_at > timeout:
        return selfservice.session_expired(lang)
    session.execute(update(_sessions).where(_sessions.c.session_id == session_id).values(last_seen_at=now))
    return _resumed(keyring, session_id, worker, row._mapping, steps, now)


def _resumed(
    keyring: pii.Keyring,
    session_id: str,
    worker: _Worker,
    row: RowMapping,
    steps: tuple[str, ...],
    now: datetime,
) -> _Context | UssdOutcome:
    """A running session's context; a cached PIN verdict holds only for the PIN it was for."""
    verdict = row["pin_ok"]
    if verdict is not None:
        pin = login_pin(steps)
        if pin is None or not _pin_tag_matches(keyring, session_id, pin, row["pin_tag"]):
            return selfservice.session_expired(worker.language)
    return _Context(session_id, worker, steps, verdict, row["dispute_ref"], now)


def _advance(session: Session, ctx: _Context) -> UssdOutcome | _Job:
    """Draw the screen and perform any action that needs only the database."""
    outcome = _draw(session, ctx)
    action = outcome.action
    if action is None:
        return outcome
    if isinstance(action, SetLanguage):
        session.execute(
            update(_workers).where(_workers.c.id == ctx.worker.id).values(language=action.language.value)
        )
        return outcome
    if isinstance(action, OpenDispute):
        reference = open_dispute(
            session,
            homeworker_id=ctx.worker.id,
            kind=action.kind,
            channel="ussd",
            session_id=ctx.session_id,
            now=ctx.now,
        )
        session.execute(
            update(_sessions).where(_sessions.c.session_id == ctx.session_id).values(dispute_ref=reference)
        )
        done = _draw(session, replace(ctx, dispute_ref=reference))
        return done if done.action is None else selfservice.service_unavailable(ctx.worker.language)
    return _Job(action, outcome)


def ussd_turn(
    sessions: sessionmaker[Session],
    *,
    keyring: pii.Keyring,
    session_id: str,
    phone: str,
    steps: Sequence[str],
    now: datetime,
    timeout: timedelta = SESSION_TIMEOUT,
) -> UssdTurn:
    """Answer one USSD request: the next screen, with every action it implies performed."""
    answers = tuple(step.strip() for step in steps)
    with atomic(sessions) as session:
        opened = _open(
            session,
            keyring=keyring,
            session_id=session_id,
            phone=phone,
            steps=answers,
            now=now,
            timeout=timeout,
        )
        if isinstance(opened, UssdOutcome):
            return UssdTurn(opened)
        ctx = opened
        step = _advance(session, ctx)
    if isinstance(step, UssdOutcome):
        return UssdTurn(step)
    action = step.action
    if isinstance(action, CheckPin):
        return _check_pin(sessions, keyring=keyring, ctx=ctx, pin=action.pin)
    if isinstance(action, SetPin):
        return _set_pin(sessions, keyring=keyring, ctx=ctx, pin=action.pin, outcome=step.outcome)
    return _change_pin(sessions, keyring=keyring, ctx=ctx, new=action.new, outcome=step.outcome)


def _check_pin(sessions: sessionmaker[Session], *, keyring: pii.Keyring, ctx: _Context, pin: str) -> UssdTurn:
    stored = ctx.worker.pin_hash
    assert stored is not None, "the menu asks for a PIN only once one is set"
    try:
        ok = pins.verify_pin(pin_hash=stored, pin=pin, keyring=keyring)
    except pins.InvalidPinHash:
        log.warning(
            "ussd PIN of homeworker %d cannot be checked (retired key or corrupt hash)", ctx.worker.id
        )
        return UssdTurn(selfservice.pin_unusable(ctx.worker.language))
    stale = ok and pins.needs_rehash(stored, keyring=keyring)
    rehashed = pins.hash_pin(pin, keyring=keyring) if stale else None
    tag = _pin_tag(keyring, ctx.session_id, pin)
    lang = ctx.worker.language
    with atomic(sessions) as session:
        row = _session_row(session, ctx.session_id, lock=True)  # session, then worker: as in _open
        worker = _worker_by_id(session, ctx.worker.id, lock=True)
        if worker is None or row is None or row.homeworker_id != worker.id or worker.pin_hash != stored:
            return UssdTurn(selfservice.session_expired(lang))  # purged, or her PIN changed meanwhile
        queued = False
        if row.pin_ok is None:
            worker, queued = _record_try(session, worker=worker, ok=ok, rehashed=rehashed, now=ctx.now)
            session.execute(
                update(_sessions)
                .where(_sessions.c.session_id == ctx.session_id)
                .values(pin_ok=ok, pin_tag=tag)
            )
            verdict = ok
        elif _pin_tag_matches(keyring, ctx.session_id, pin, row.pin_tag):
            verdict = bool(row.pin_ok)  # a concurrent request of this session recorded it first
        else:
            return UssdTurn(selfservice.session_expired(lang))
        step = _advance(session, replace(ctx, worker=worker, verdict=verdict))
        if isinstance(step, UssdOutcome):
            return UssdTurn(step, queued)
    # A PIN check and a PIN change in one request: a replayed path, not a person at a keypad.
    return UssdTurn(selfservice.session_expired(lang), queued)


def _record_try(
    session: Session, *, worker: _Worker, ok: bool, rehashed: str | None, now: datetime
) -> tuple[_Worker, bool]:
    """Count a PIN try on her row (locked by the caller): her row as it now is, and True if the
    try locked the menu (SMS queued)."""
    if pins.is_locked(worker.locked_until, now=now):
        return worker, False  # locked meanwhile by another session: the screen says so, nothing to count
    values: dict[str, Any] = {}
    if ok:
        if worker.pin_failures:
            values["pin_failures"] = 0
        if rehashed is not None:
            values["pin_hash"] = rehashed
    else:
        lockout = pins.after_failure(worker.pin_failures, now=now)
        values["pin_failures"] = lockout.failures
        values["pin_locked_until"] = lockout.locked_until
    if values:
        session.execute(update(_workers).where(_workers.c.id == worker.id).values(**values))
        worker = replace(
            worker,
            pin_hash=values.get("pin_hash", worker.pin_hash),
            pin_failures=values.get("pin_failures", worker.pin_failures),
            locked_until=values.get("pin_locked_until", worker.locked_until),
        )
    if ok or values.get("pin_locked_until") is None:
        return worker, False
    locked_until = values["pin_locked_until"]
    log.info("ussd menu locked for homeworker %d after wrong PINs", worker.id)
    outbox.add(
        session,
        topic=outbox.SEND_SMS,
        payload={
            "kind": "pin_locked",
            "homeworker_id": worker.id,
            "key": f"pin_locked:{worker.id}:{locked_until.isoformat()}",
        },
        now=now,
    )
    return worker, True


def _set_pin(
    sessions: sessionmaker[Session], *, keyring: pii.Keyring, ctx: _Context, pin: str, outcome: UssdOutcome
) -> UssdTurn:
    hashed = pins.hash_pin(pin, keyring=keyring)
    with atomic(sessions) as session:
        changed = _affected(
            session,
            update(_workers)
            .where(_workers.c.id == ctx.worker.id, _workers.c.pin_hash.is_(None))
            .values(pin_hash=hashed, pin_failures=0, pin_locked_until=None),
        )
    if not changed:  # another session set one first: start again with that one
        return UssdTurn(selfservice.session_expired(ctx.worker.language))
    log.info("ussd PIN set for homeworker %d", ctx.worker.id)
    return UssdTurn(outcome)


def _change_pin(
    sessions: sessionmaker[Session], *, keyring: pii.Keyring, ctx: _Context, new: str, outcome: UssdOutcome
) -> UssdTurn:
    """Replace the PIN this session logged in with (its verdict is bound to that PIN)."""
    if ctx.verdict is not True or ctx.worker.pin_hash is None:
        return UssdTurn(selfservice.session_expired(ctx.worker.language))
    hashed = pins.hash_pin(new, keyring=keyring)
    with atomic(sessions) as session:
        changed = _affected(
            session,
            update(_workers)
            .where(_workers.c.id == ctx.worker.id, _workers.c.pin_hash == ctx.worker.pin_hash)
            .values(pin_hash=hashed, pin_failures=0, pin_locked_until=None),
        )
        if changed:  # whoever else is in her menu on the old PIN is out: that may be why she changed it
            session.execute(delete(_sessions).where(_sessions.c.homeworker_id == ctx.worker.id))
    if not changed:
        return UssdTurn(selfservice.session_expired(ctx.worker.language))
    log.info("ussd PIN changed for homeworker %d", ctx.worker.id)
    return UssdTurn(outcome)


@dataclass(frozen=True, slots=True)
class PinReset:
    homeworker_id: int
    reset: bool
    """False when she had no PIN to forget (nothing changed, no SMS)."""


def reset_pin(session: Session, *, principal: Principal, homeworker_id: int, now: datetime) -> PinReset:
    """Forget her PIN, its wrong tries and its lock, at her request through an organisation
    she works with: she forgot it, or it was made with a key since retired (:mod:`payments.pins`).

    Nobody else ever learns or chooses a PIN: she makes a new one from her own phone at her
    next dial, as on first use. Her USSD sessions end (none goes on with the old PIN's
    verdict), and an SMS tells her, in case she did not ask for it.
    """
    principal.require(Role.ADMIN, Role.BUYER, Role.INTERMEDIARY)
    parties.check_visible(session, principal=principal, homeworker_id=homeworker_id)
    worker = _worker_by_id(session, homeworker_id, lock=True)
    assert worker is not None
    if worker.pin_hash is None:
        return PinReset(homeworker_id, reset=False)
    session.execute(
        update(_workers)
        .where(_workers.c.id == homeworker_id)
        .values(pin_hash=None, pin_failures=0, pin_locked_until=None)
    )
    session.execute(delete(_sessions).where(_sessions.c.homeworker_id == homeworker_id))
    outbox.add(
        session,
        topic=outbox.SEND_SMS,
        payload={
            "kind": "pin_reset",
            "homeworker_id": homeworker_id,
            "key": f"pin_reset:{homeworker_id}:{now.isoformat()}",
        },
        now=now,
    )
    log.info("ussd PIN reset for homeworker %d by API key %d", homeworker_id, principal.key_id)
    return PinReset(homeworker_id, reset=True)


def purge_ussd_sessions(session: Session, *, now: datetime, older_than: timedelta = timedelta(days=1)) -> int:
    """Forget sessions long over (a beat task may call this); returns how many."""
    return _affected(session, delete(_sessions).where(_sessions.c.last_seen_at < now - older_than))


def _affected(session: Session, statement: Executable) -> int:
    """Rows an UPDATE or DELETE changed."""
    result = cast("CursorResult[Any]", session.execute(statement))
    return int(result.rowcount or 0)


# --- disputes -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dispute:
    id: int
    reference: str
    homeworker_id: int
    buyer_id: int | None
    """The buyer it concerns when she works for exactly one; None means all her buyers see it."""
    kind: DisputeKind
    channel: str
    status: str
    created_at: datetime
    resolved_at: datetime | None


def _new_reference() -> str:
    return "LP-" + "".join(secrets.choice(DISPUTE_ALPHABET) for _ in range(6))


def _buyers_of(session: Session, homeworker_id: int) -> set[int]:
    """The buyers she works for: every buyer organisation linked to her (orders link them)."""
    rows = session.execute(
        select(_links.c.organization_id)
        .join(_orgs, _orgs.c.id == _links.c.organization_id)
        .where(_links.c.homeworker_id == homeworker_id, _orgs.c.kind == "buyer")
    ).scalars()
    return {int(b) for b in rows}


def open_dispute(
    session: Session,
    *,
    homeworker_id: int,
    kind: DisputeKind,
    channel: str,
    session_id: str | None,
    now: datetime,
) -> str:
    """Record a reported problem and return its code; one per USSD session (idempotent)."""
    if session_id is not None:
        existing = session.execute(
            select(_disputes.c.reference, _disputes.c.homeworker_id).where(
                _disputes.c.session_id == session_id
            )
        ).first()
        if existing is not None and existing.homeworker_id == homeworker_id:
            return str(existing.reference)
        if existing is not None:  # a gateway that reuses session ids, days later: not hers to see
            session_id = None
    buyers = _buyers_of(session, homeworker_id)
    reference = _new_reference()
    while session.execute(select(exists().where(_disputes.c.reference == reference))).scalar():
        reference = _new_reference()
    session.execute(
        insert(_disputes),
        {
            "reference": reference,
            "homeworker_id": homeworker_id,
            "buyer_id": next(iter(buyers)) if len(buyers) == 1 else None,
            "kind": kind.value,
            "channel": channel,
            "session_id": session_id,
            "status": "open",
            "notes": [],
            "created_at": now,
        },
    )
    log.info("dispute %s (%s) opened by homeworker %d over %s", reference, kind.value, homeworker_id, channel)
    return reference


def list_disputes(
    session: Session,
    *,
    principal: Principal,
    status: str | None = None,
    homeworker_id: int | None = None,
    limit: int = 100,
) -> list[Dispute]:
    """Disputes a buyer or auditor may see (:func:`audit.disputes_in_scope`), newest first."""
    principal.require(Role.BUYER, Role.AUDITOR, Role.ADMIN)
    query = select(_disputes).order_by(_disputes.c.id.desc()).limit(min(max(limit, 1), 1000))
    visible = audit.disputes_in_scope(session, principal=principal)
    if visible is not None:
        query = query.where(visible)
    if status is not None:
        query = query.where(_disputes.c.status == status)
    if homeworker_id is not None:
        query = query.where(_disputes.c.homeworker_id == homeworker_id)
    return [
        Dispute(
            id=r.id,
            reference=r.reference,
            homeworker_id=r.homeworker_id,
            buyer_id=r.buyer_id,
            kind=DisputeKind(r.kind),
            channel=r.channel,
            status=r.status,
            created_at=r.created_at,
            resolved_at=r.resolved_at,
        )
        for r in session.execute(query)
    ]


# --- SMS: inbound commands and notices ------------------------------------------------------------


def receive_sms(
    session: Session, *, keyring: pii.Keyring, sender: str, text: str, dedupe_key: str, now: datetime
) -> str:
    """Queue the reply to an SMS command for the registered number that sent it.

    Returns ``"queued"``, or ``"unknown_number"`` for a number Upah does not know: that
    number gets no reply at all, which reveals nothing and cannot be used to make Upah
    text strangers at its own cost.
    """
    worker = _worker_by_phone(session, keyring, sender)
    if worker is None:
        return "unknown_number"
    command = selfservice.sms_command(text)
    outbox.add(
        session,
        topic=outbox.SEND_SMS,
        payload={
            "kind": "sms_reply",
            "homeworker_id": worker.id,
            "command": command if command in SMS_COMMAND_WORDS else "",
            "key": f"sms_reply:{dedupe_key}"[:200],
        },
        now=now,
    )
    return "queued"


@dataclass(frozen=True, slots=True)
class _Composed:
    homeworker_id: int
    kind: str
    key: str
    text: str | None
    """None: nothing to say for this event (recorded as skipped)."""


def _int(payload: Mapping[str, Any], name: str) -> int | None:
    value = payload.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _compose_all(
    session: Session, payloads: Sequence[Mapping[str, Any]], now: datetime
) -> list[_Composed | None]:
    """The messages outbox payloads stand for, in her language; None for one we cannot read.
    Payout notices, most of a group, are read together."""
    payout_ids = {_int(p, "payout_id") for p in payloads if str(p.get("kind", "")).startswith("payout_")}
    payout_ids.discard(None)
    found = (
        {
            r.id: r
            for r in session.execute(
                select(_payouts, _workers.c.language.label("her_language"))
                .join(_workers, _workers.c.id == _payouts.c.homeworker_id)
                .where(_payouts.c.id.in_(payout_ids))
            )
        }
        if payout_ids
        else {}
    )
    composed: list[_Composed | None] = []
    for payload in payloads:
        kind = payload.get("kind")
        if not (isinstance(kind, str) and kind.startswith("payout_")):
            composed.append(_compose(session, payload, now))
            continue
        payout_id = _int(payload, "payout_id")
        row = found.get(payout_id) if payout_id is not None else None
        if row is None:
            composed.append(None)
            continue
        text = _payout_text(kind, row, _language(row.her_language))
        composed.append(_Composed(row.homeworker_id, kind, f"{kind}:{payout_id}", text))
    return composed


def _compose(session: Session, payload: Mapping[str, Any], now: datetime) -> _Composed | None:
    """The message a payload other than a payout notice stands for; None if we cannot read it."""
    kind = payload.get("kind")
    if not isinstance(kind, str):
        return None
    key = payload.get("key")
    homeworker_id = _int(payload, "homeworker_id")
    if homeworker_id is None or not isinstance(key, str) or not key:
        return None
    worker = _worker_by_id(session, homeworker_id)
    if worker is None:
        return None
    lang = worker.language
    text: str | None
    if kind == "pin_locked":
        text = messages.pin_locked_notice(lang=lang)
    elif kind == "pin_reset":
        text = messages.pin_reset_notice(lang=lang)
    elif kind == "sms_reply":
        view = worker_view(session, homeworker_id=homeworker_id, now=now)
        assert view is not None
        command = payload.get("command")
        text = selfservice.sms_reply(view, command if isinstance(command, str) else "")
    elif kind == "order_assigned":
        order_id = _int(payload, "order_id")
        text = _order_text(session, order_id, homeworker_id, lang) if order_id is not None else None
    else:
        return None
    return _Composed(homeworker_id, kind, key[:200], text)


def _payout_text(kind: str, row: Row[Any], lang: Language) -> str | None:
    if kind == "payout_succeeded":
        settled = row.settled_at or row.created_at
        return messages.payout_succeeded_notice(
            lang=lang,
            amount=row.amount,
            pieces=row.pieces,
            period_start=local_date(row.period_from or row.created_at),
            period_end=local_date(row.period_to or settled),
            reference=row.reference,
        )
    if kind == "payout_failed":
        reason = _FAILURE_REASONS.get(row.failure_code or "", FailureReason.OTHER)
        return messages.payout_failed_notice(
            lang=lang, amount=row.amount, reason=reason, reference=row.reference
        )
    if kind == "payout_reversed":
        return messages.payout_reversed_notice(lang=lang, amount=row.amount, reference=row.reference)
    return None


def _order_text(session: Session, order_id: int, homeworker_id: int, lang: Language) -> str | None:
    row = session.execute(
        select(_orders, _assignments.c.quantity.label("assigned"), _workers.c.region.label("worker_region"))
        .join(_assignments, _assignments.c.order_id == _orders.c.id)
        .join(_workers, _workers.c.id == _assignments.c.homeworker_id)
        .where(_orders.c.id == order_id, _assignments.c.homeworker_id == homeworker_id)
    ).first()
    if row is None:
        return None
    unit = rates.Unit(row.unit)
    try:
        finding = rates.assess(
            rate=Decimal(row.rate),
            minutes_per_piece=Decimal(row.minutes_per_piece),
            region=row.worker_region,
            on=local_date(row.created_at),
            unit=unit,
        )
    except PaymentsError:
        log.warning("no wage benchmark for order %d's notice to homeworker %d", order_id, homeworker_id)
        return None
    return messages.order_assigned_notice(
        lang=lang,
        order_ref=row.reference,
        product=row.product,
        quantity=int(row.assigned),
        rate=Decimal(row.rate),
        unit=unit,
        deadline=row.deadline,
        effective_hourly=finding.effective_hourly,
        benchmark_hourly=finding.benchmark_hourly,
    )


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    to: str
    text: str
    until: datetime


_Claim = _Claimed | str | SmsTemporaryFailure
"""A message claimed for sending; what is already known of one done (its status, or
"skipped"); or, for one another attempt is sending, the failure to retry it with."""


def _claim_group(
    session: Session, *, keyring: pii.Keyring, payloads: Sequence[Mapping[str, Any]], now: datetime
) -> list[_Claim]:
    """Record and claim a group's messages, in a few statements whatever its size; each
    payload's claim in its place. A message already done answers its status; one another
    attempt is sending (or named twice in the group) answers the failure to retry it with."""
    claims: list[_Claim] = ["skipped"] * len(payloads)
    composed = _compose_all(session, payloads, now)
    keys = sorted({c.key for c in composed if c is not None})
    known = (
        {
            r.dedupe_key: r
            for r in session.execute(
                select(_sms).where(_sms.c.dedupe_key.in_(keys)).order_by(_sms.c.id).with_for_update()
            )
        }
        if keys
        else {}
    )
    until = now + SEND_CLAIM
    fresh: list[tuple[int, _Composed]] = []
    reclaimed: list[int] = []
    taken: dict[str, datetime] = {}  # claimed here, or by another attempt: until when
    for i, c in enumerate(composed):
        if c is None:
            log.warning("sms payload of kind %r could not be read; dropped", payloads[i].get("kind"))
            continue
        row = known.get(c.key)
        if row is not None and row.status == "pending" and row.claimed_until is not None:
            taken.setdefault(c.key, row.claimed_until)
        if c.key in taken and taken[c.key] > now:
            claims[i] = SmsTemporaryFailure(
                "busy",
                "another attempt is sending this message",
                retry_after=(taken[c.key] - now).total_seconds(),
            )
        elif row is None:
            fresh.append((i, c))
            taken[c.key] = until
        elif row.status != "pending":
            claims[i] = str(row.status)
        else:
            reclaimed.append(row.id)
            to = pii.decrypt(keyring, row.to_enc, context="sms.to")
            claims[i] = _Claimed(row.id, to, pii.decrypt(keyring, row.text_enc, context="sms.text"), until)
            taken[c.key] = until
    if reclaimed:
        session.execute(update(_sms).where(_sms.c.id.in_(reclaimed)).values(claimed_until=until))
    fresh.sort(key=lambda f: f[1].key)  # in key order: two groups naming one message never deadlock
    recorded = _record_fresh(session, keyring=keyring, fresh=[c for _, c in fresh], now=now) if fresh else []
    for (i, c), (message_id, to) in zip(fresh, recorded, strict=True):
        claims[i] = _Claimed(message_id, to, c.text, until) if c.text else "skipped"
    return claims


def _record_fresh(
    session: Session, *, keyring: pii.Keyring, fresh: list[_Composed], now: datetime
) -> list[tuple[int, str]]:
    """Insert messages not recorded before, claimed (or skipped: nothing to say); each one's id
    and the number it goes to, in order."""
    homeworkers = {c.homeworker_id for c in fresh}
    phone_of = select(_workers.c.id, _workers.c.phone_enc).where(_workers.c.id.in_(homeworkers))
    sealed = {int(r.id): r.phone_enc for r in session.execute(phone_of)}
    numbers = [pii.decrypt(keyring, sealed[c.homeworker_id], context="homeworker.phone") for c in fresh]
    rows = [
        {
            "dedupe_key": c.key,
            "homeworker_id": c.homeworker_id,
            "kind": c.kind,
            "status": "pending" if c.text else "skipped",
            "to_enc": pii.encrypt(keyring, to, context="sms.to"),
            "to_masked": phones.mask(to),
            "text_enc": pii.encrypt(keyring, c.text, context="sms.text") if c.text else None,
            "attempts": 0,
            "claimed_until": now + SEND_CLAIM if c.text else None,
            "created_at": now,
        }
        for c, to in zip(fresh, numbers, strict=True)
    ]
    ids = session.execute(insert(_sms).returning(_sms.c.id, sort_by_parameter_order=True), rows).scalars()
    return list(zip((int(message_id) for message_id in ids), numbers, strict=True))


def deliver_sms(
    sessions: sessionmaker[Session],
    *,
    keyring: pii.Keyring,
    sender: SmsSender,
    payload: Mapping[str, Any],
    clock: Callable[[], datetime],
) -> str:
    """Send the SMS an outbox payload stands for, once; the body of the ``sms.send`` task.

    Returns ``"sent"``, ``"failed"`` (the gateway refused it for good) or ``"skipped"``
    (nothing to say, or an unreadable payload). Raises :class:`SmsTemporaryFailure` when the
    task should retry later (its ``retry_after`` when known). Never holds a database
    transaction open across the gateway call.
    """
    [claim] = _claim_all(sessions, keyring=keyring, payloads=[payload], clock=clock)
    return _send_claimed(sessions, sender=sender, claim=claim, clock=clock)


def deliver_sms_many(
    sessions: sessionmaker[Session],
    *,
    keyring: pii.Keyring,
    sender: SmsSender,
    payloads: Sequence[Mapping[str, Any]],
    clock: Callable[[], datetime],
) -> list[str | Exception]:
    """``deliver_sms`` for a group, each payload's outcome in its place: what ``deliver_sms``
    would have raised comes back as the value (:class:`SmsTemporaryFailure`: try it later).

    The group is claimed in one transaction, then each message is sent and its outcome
    recorded in a transaction of its own, as ``deliver_sms`` does: a crash mid-group sends at
    most the message in flight twice; the others, still claimed, wait out their claim and
    go out once. A message whose claim ran out before its turn (a slow gateway) is claimed
    again on its own. If claiming the group fails (a concurrent attempt, or one message that
    cannot be read, say sealed with a retired key), each is claimed alone, so that one
    message's failure is its own.
    """
    try:
        claims: list[_Claim] | None = _claim_all(sessions, keyring=keyring, payloads=payloads, clock=clock)
    except Exception as exc:
        log.warning(
            "a group of %d sms could not be claimed together (%s); each alone",
            len(payloads),
            type(exc).__name__,
        )
        claims = None
    outcomes: list[str | Exception] = []
    for i, payload in enumerate(payloads):
        claim = claims[i] if claims is not None else None
        try:
            if claim is None or (isinstance(claim, _Claimed) and clock() >= claim.until):
                [claim] = _claim_all(sessions, keyring=keyring, payloads=[payload], clock=clock)
            outcomes.append(_send_claimed(sessions, sender=sender, claim=claim, clock=clock))
        except Exception as exc:  # each message's failure is its own: the caller retries that one
            outcomes.append(exc)
    return outcomes


def _claim_all(
    sessions: sessionmaker[Session],
    *,
    keyring: pii.Keyring,
    payloads: Sequence[Mapping[str, Any]],
    clock: Callable[[], datetime],
) -> list[_Claim]:
    """Record and claim the messages in one transaction."""
    try:
        with atomic(sessions) as session:
            now = clock()
            return _claim_group(session, keyring=keyring, payloads=payloads, now=now)
    except IntegrityError as exc:  # a concurrent attempt inserted the same message first
        raise SmsTemporaryFailure("busy", "another attempt is recording this message", retry_after=5) from exc


def _send_claimed(
    sessions: sessionmaker[Session], *, sender: SmsSender, claim: _Claim, clock: Callable[[], datetime]
) -> str:
    if isinstance(claim, SmsTemporaryFailure):
        raise claim
    if isinstance(claim, str):
        return claim
    try:
        sent = sender.send(to=claim.to, text=claim.text)
    except SmsRejected as exc:
        _finish(sessions, claim.id, status="failed", provider=sender.name, error=exc.code, now=clock())
        log.warning("sms %d refused by %s (%s)", claim.id, sender.name, exc.code)
        return "failed"
    except SmsTemporaryFailure as exc:
        _finish(sessions, claim.id, status="pending", provider=sender.name, error=exc.code, now=clock())
        log.info("sms %d not taken by %s now (%s); will retry", claim.id, sender.name, exc.code)
        raise
    _finish(
        sessions,
        claim.id,
        status="sent",
        provider=sender.name,
        error=None,
        now=clock(),
        gateway_id=sent.message_id[:64],
    )
    return "sent"


_FINISH = (
    update(_sms)
    .where(_sms.c.id == bindparam("message_id"))
    .values(
        status=bindparam("status"),
        provider=bindparam("provider"),
        error=bindparam("error"),
        attempts=_sms.c.attempts + 1,
        claimed_until=None,
        sent_at=bindparam("sent_at"),
        provider_message_id=bindparam("gateway_id"),
    )
)
"""Built once: a group's messages are finished one by one, each in a statement of its own."""


def _finish(
    sessions: sessionmaker[Session],
    row_id: int,
    *,
    status: str,
    provider: str,
    error: str | None,
    now: datetime,
    gateway_id: str | None = None,
) -> None:
    """Record an attempt's outcome (a message is claimed while it is tried, so it was not sent
    before: ``sent_at`` and the gateway's id are set only when it is sent now)."""
    sent = status == "sent"
    alone(
        sessions,
        _FINISH,
        {
            "message_id": row_id,
            "status": status,
            "provider": provider,
            "error": error[:64] if error else None,
            "sent_at": now if sent else None,
            "gateway_id": gateway_id if sent else None,
        },
    )


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message as the sandbox listing shows it."""

    to: str
    """Full for fictitious demo numbers, masked for any other."""
    text: str
    sent_at: datetime
    kind: str
    homeworker_id: int


def list_sent(
    session: Session, *, keyring: pii.Keyring, provider: str, limit: int = 100
) -> list[SentMessage]:
    """Messages a gateway took, newest first (for ``GET /v1/sandbox/sms``)."""
    rows = session.execute(
        select(_sms)
        .where(_sms.c.provider == provider, _sms.c.status == "sent")
        .order_by(_sms.c.sent_at.desc(), _sms.c.id.desc())
        .limit(min(max(limit, 1), 1000))
    )
    found = []
    for r in rows:
        try:
            to = pii.decrypt(keyring, r.to_enc, context="sms.to")
            text = pii.decrypt(keyring, r.text_enc, context="sms.text")
        except pii.DecryptionFailed:  # sealed with a key no longer in the ring
            log.warning("sms %d cannot be opened with the current keys; not listed", r.id)
            continue
        found.append(
            SentMessage(
                to=to if phones.is_demo(to) else r.to_masked,
                text=text,
                sent_at=r.sent_at,
                kind=r.kind,
                homeworker_id=r.homeworker_id,
            )
        )
    return found
