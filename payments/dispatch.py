"""Sending payouts through a provider — exactly once, whatever fails.

Every step is its own database transaction, and no transaction is open during an HTTP
call. The order of steps is what makes a crash anywhere safe:

1. ``created → submitted`` commits first: the earned hold is captured into an entry
   (her earned balance → the provider's in-flight account) and the attempt is recorded.
   Only then is the instruction sent, with the payout's one idempotency key.
2. The provider's answer is applied in a second transaction. A timeout, 5xx or
   unreadable answer makes the payout ``unknown``: from there only a status query by the
   idempotency key (or a callback) decides; a payment instruction is sent again only when
   the provider says it never received one (``not_found``, and never for an instruction it
   acknowledged with a reference) or refused it unprocessed (429 on the send itself), and
   then with the same key, so the provider can never pay twice.
3. ``succeeded`` settles in-flight against platform cash and charges the buyer the fee;
   ``failed`` returns the money to her earned balance (the dispatch entry is reversed)
   and releases the fee hold; ``succeeded → reversed`` owes her the money again.

A crash between 1 and 2 leaves a ``submitted`` payout with no answer; the sweeper asks
the provider about it. A callback is recorded as it arrives and applied by a worker through
the same transitions, so duplicates and out-of-order deliveries change nothing.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, func, select, text, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, sessionmaker

from integrations.providers.base import (
    CallbackEvent,
    InvalidCallback,
    OutcomeUnknown,
    PayoutProvider,
    ProviderError,
    RateLimited,
    TransferRejected,
    TransferRequest,
    TransferResult,
    TransferStatus,
)
from ledger import EntryDraft, Posting, atomic, journal
from ledger.atomic import alone
from ledger.bulk import update_rows
from ledger.errors import InsufficientFunds
from ledger.tables import insert_or_ignore, table_of
from payments import chart, outbox, parties, pii
from payments.payout_states import PayoutStatus, RunStatus, transition
from payments.payouts import Event, conflict_hold_key, record_event, record_events
from payments.tables import HomeworkerRow, PayoutEventRow, PayoutRow, PayoutRunRow, ProviderCallbackRow

log = logging.getLogger(__name__)

_payouts = table_of(PayoutRow)
_runs = table_of(PayoutRunRow)
_workers = table_of(HomeworkerRow)
_callbacks = table_of(ProviderCallbackRow)
_events = table_of(PayoutEventRow)

UNREGISTERED_WALLET_LIMIT = 2_000_000
REGISTERED_WALLET_LIMIT = 20_000_000

UNRESOLVED = (PayoutStatus.CREATED.value, PayoutStatus.SUBMITTED.value, PayoutStatus.UNKNOWN.value)
FIRST_POLL = timedelta(seconds=10)
"""After a provider accepts a payout, its callback normally settles it; ask ourselves only if none came.

Each later question waits about as long again as the payout has already been pending (at most
``max_backoff``): a slow payout is asked about a few times, never every few seconds for hours."""

CALLBACK_PENDING = "pending"
"""The outcome of a callback recorded and not yet applied."""

STATUS_LEASE = timedelta(seconds=60)
"""An unknown payout's question is claimed for this long while it is asked (longer than a
status query may take), so that a second delivery of it, or the sweep's, does not ask too and
start a second chain of questions; a question lost in a crash is asked again after it."""

DEFINITIVE_REJECTIONS = frozenset(
    {
        "insufficient_balance",
        "invalid_account",
        "name_mismatch",
        "limit_exceeded",
        "invalid_request",
        "channel_not_supported",
        "unsupported_currency",
        "rejected_by_channel",
    }
)


@dataclass
class Dispatcher:
    """What dispatching needs: databases, providers, keys, a clock and a random source."""

    sessions: sessionmaker[Session]
    providers: Mapping[str, PayoutProvider]
    keyring: pii.Keyring
    clock: Callable[[], datetime]
    callback_url: Callable[[str], str | None] = field(default=lambda _provider: None)
    rng: random.Random = field(default_factory=random.Random)
    stale_after: timedelta = timedelta(minutes=2)
    max_backoff: timedelta = timedelta(minutes=30)
    send_concurrency: int = 8
    _account_ids: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    # --- sending -------------------------------------------------------------------------------

    def dispatch(self, payout_id: int) -> PayoutStatus:
        """Send a created payout, or resend one the provider never received. Idempotent."""
        prepared = self._prepare(payout_id)
        if isinstance(prepared, PayoutStatus):
            return prepared
        outcome = self._send(prepared)
        with atomic(self.sessions) as s:
            return self._settle_send_in(s, _lock(s, payout_id), outcome, now=self.clock())

    def dispatch_many(self, payout_ids: Sequence[int]) -> dict[int, PayoutStatus]:
        """Dispatch a batch: one transaction to submit them all, the instructions sent
        concurrently, then the answers applied. The same steps, in the same order, as
        ``dispatch`` — so a crash anywhere is as safe."""
        statuses: dict[int, PayoutStatus] = {}
        ready: dict[int, _Send] = {}
        now = self.clock()
        with atomic(self.sessions) as s:
            for payout_id, found in self._submit_many_in(s, _lock_many(s, payout_ids), now).items():
                if isinstance(found, _Send):
                    ready[payout_id] = found
                elif found is None:
                    statuses[payout_id] = PayoutStatus.CREATED  # needs a first-payment wallet check
                else:
                    statuses[payout_id] = found
        for payout_id in [i for i, st in statuses.items() if st is PayoutStatus.CREATED]:
            statuses[payout_id] = self.dispatch(payout_id)
        if not ready:
            return statuses
        with ThreadPoolExecutor(max_workers=min(self.send_concurrency, len(ready))) as pool:
            outcomes = dict(zip(ready, pool.map(self._send, ready.values()), strict=True))
        statuses.update(self._settle_sends(outcomes))
        return statuses

    def _settle_sends(
        self, outcomes: Mapping[int, TransferResult | ProviderError]
    ) -> dict[int, PayoutStatus]:
        """Apply a batch's answers. The usual one, "accepted", touches no ledger account, so
        all of those are applied in one transaction, with one status check queued for the
        lot in case no callback comes; every other answer is applied in a transaction of its
        own, exactly as ``dispatch`` does (a transaction that locks several payouts never
        waits for a ledger account a callback holding one of them may be waiting for)."""
        statuses: dict[int, PayoutStatus] = {}
        accepted = {
            payout_id: outcome
            for payout_id, outcome in outcomes.items()
            if isinstance(outcome, TransferResult) and outcome.status is TransferStatus.PENDING
        }
        if accepted:
            now = self.clock()
            with atomic(self.sessions) as s:
                poll: list[int] = []
                poll_after = FIRST_POLL
                references: list[dict[str, Any]] = []
                rescheduled: list[int] = []
                for row in _lock_many(s, list(accepted)):
                    result = accepted[row.id]
                    if row.status != PayoutStatus.SUBMITTED.value:  # a callback came first, or …
                        statuses[row.id] = self._apply_in(s, row, result, source="send", now=now)
                        continue
                    if result.provider_reference and not row.provider_reference:
                        references.append({"id": row.id, "provider_reference": result.provider_reference})
                    if row.next_attempt_at is not None:
                        rescheduled.append(row.id)
                    poll.append(row.id)
                    poll_after = max(poll_after, self._poll_delay(row.submitted_at, now, None))
                    statuses[row.id] = PayoutStatus.SUBMITTED
                update_rows(
                    s,
                    _payouts,
                    references,
                    key="id",
                    assign=lambda v: {"provider_reference": v["provider_reference"]},
                )
                if rescheduled:  # it has the instruction: a resend put down meanwhile is void
                    s.execute(
                        update(_payouts).where(_payouts.c.id.in_(rescheduled)).values(next_attempt_at=None)
                    )
                if poll:  # accepted: ask again later, in case no callback comes
                    outbox.add(
                        s,
                        topic=outbox.RESOLVE_BATCH,
                        payload={"payout_ids": poll},
                        now=now,
                        available_at=now + poll_after,
                    )
        for payout_id, outcome in outcomes.items():
            if payout_id not in accepted:
                with atomic(self.sessions) as s:
                    statuses[payout_id] = self._settle_send_in(
                        s, _lock(s, payout_id), outcome, now=self.clock()
                    )
        return statuses

    def _send(self, send: _Send) -> TransferResult | ProviderError:
        try:
            return self.providers[send.provider].send(send.request)
        except ProviderError as exc:
            return exc

    def _settle_send_in(
        self, s: Session, row: Row[Any], outcome: TransferResult | ProviderError, *, now: datetime
    ) -> PayoutStatus:
        """The answer to a payment instruction, whatever it was, applied within ``s``."""
        if isinstance(outcome, TransferResult):
            return self._apply_in(s, row, outcome, source="send", now=now)
        if isinstance(outcome, RateLimited):
            return self._reschedule_in(
                s, row, reason="rate_limited", retry_after=outcome.retry_after, now=now
            )
        if isinstance(outcome, TransferRejected) and outcome.code in DEFINITIVE_REJECTIONS:
            return self._fail_guarded_in(
                s, row, code=outcome.code, reason=outcome.message or outcome.code, source="send", now=now
            )
        reason = str(outcome) if isinstance(outcome, OutcomeUnknown) and str(outcome) else outcome.code
        return self._mark_unknown_in(s, row, reason=reason or "outcome unknown", source="send", now=now)

    def resolve(self, payout_id: int, *, queued: bool = False) -> PayoutStatus:
        """Ask the provider what became of a payout whose outcome we do not know.

        ``queued``: a question from the schedule (a task), asked only if the unknown payout is
        due — not one another delivery of it, or the sweep, is asking (see ``STATUS_LEASE``).
        """
        now = self.clock()
        with atomic(self.sessions) as s:
            row = _lock(s, payout_id)
            status = PayoutStatus(row.status)
            if status not in (PayoutStatus.UNKNOWN, PayoutStatus.SUBMITTED):
                return status
            if status is PayoutStatus.UNKNOWN:
                if queued and row.next_attempt_at is not None and row.next_attempt_at > now:
                    return status
                s.execute(
                    update(_payouts)
                    .where(_payouts.c.id == payout_id)
                    .values(next_attempt_at=now + STATUS_LEASE)
                )
            key, reference, provider_name = row.idempotency_key, row.provider_reference, row.provider
        try:
            result = self.providers[provider_name].status(idempotency_key=key, provider_reference=reference)
        except RateLimited as exc:
            return self._ask_later(payout_id, reason="status query rate limited", retry_after=exc.retry_after)
        except ProviderError as exc:
            return self._mark_unknown(payout_id, reason=f"status query: {exc.code}", source="status")
        if result.status is TransferStatus.NOT_FOUND:
            if reference:  # it acknowledged this instruction: sending again could pay her twice
                return self._mark_unknown(
                    payout_id, reason="the provider does not find a payout it acknowledged", source="status"
                )
            return self._never_received(payout_id)
        return self._apply(payout_id, result, source="status")

    def resolve_many(self, payout_ids: Sequence[int], *, queued: bool = False) -> dict[int, PayoutStatus]:
        """``resolve`` for those of ``payout_ids`` still unresolved (one query skips the settled)."""
        with self.sessions() as s:
            open_ids = (
                s.execute(
                    select(_payouts.c.id)
                    .where(
                        _payouts.c.id.in_(list(payout_ids)),
                        _payouts.c.status.in_([PayoutStatus.SUBMITTED.value, PayoutStatus.UNKNOWN.value]),
                    )
                    .order_by(_payouts.c.id)
                )
                .scalars()
                .all()
            )
        return {payout_id: self.resolve(payout_id, queued=queued) for payout_id in open_ids}

    def due(self, *, limit: int = 200) -> tuple[list[int], list[int]]:
        """(to send, to ask about): resends that are due, and unknown or stale payouts.

        A submitted payout is the provider's to settle, and asked about on a schedule of its
        own (see ``FIRST_POLL``); so is an unknown one (its backoff). The sweep asks only once
        that question is ``stale_after`` overdue — it was lost in a crash — so it never doubles
        the schedule it backs up."""
        now = self.clock()
        with self.sessions() as s:
            resend = (
                s.execute(
                    select(_payouts.c.id)
                    .join(_runs, _runs.c.id == _payouts.c.run_id)
                    .where(
                        (
                            _payouts.c.status.in_([PayoutStatus.SUBMITTED.value, PayoutStatus.CREATED.value])
                            & (_payouts.c.next_attempt_at <= now)
                            & _payouts.c.provider_reference.is_(None)  # acknowledged: never sent again
                        )
                        | (  # created in a dispatching run, and its task was lost (a worker crash)
                            (_payouts.c.status == PayoutStatus.CREATED.value)
                            & _payouts.c.next_attempt_at.is_(None)
                            & (_runs.c.status == RunStatus.DISPATCHING.value)
                            & (_payouts.c.updated_at <= now - self.stale_after)
                        )
                    )
                    .order_by(_payouts.c.id)
                    .limit(limit)
                )
                .scalars()
                .all()
            )
            ask = (
                s.execute(
                    select(_payouts.c.id)
                    .where(
                        _payouts.c.status == PayoutStatus.UNKNOWN.value,
                        _payouts.c.next_attempt_at.is_(None)
                        | (_payouts.c.next_attempt_at <= now - self.stale_after),
                    )
                    .order_by(_payouts.c.id)
                    .limit(limit)
                )
                .scalars()
                .all()
            )
            pending = s.execute(
                select(_payouts.c.id, _payouts.c.submitted_at, _payouts.c.updated_at).where(
                    _payouts.c.status == PayoutStatus.SUBMITTED.value,
                    _payouts.c.next_attempt_at.is_(None),
                    _payouts.c.updated_at <= now - self.stale_after - FIRST_POLL,
                )
            ).all()
        overdue = [
            p.id
            for p in pending
            if p.updated_at + self._longest_poll(p.submitted_at, p.updated_at) + self.stale_after <= now
        ]
        return list(resend), sorted([*ask, *overdue])[:limit]

    # --- callbacks -----------------------------------------------------------------------------

    def record_callback(self, provider_name: str, *, headers: Mapping[str, str], body: bytes) -> int | None:
        """Authenticate a provider callback and record it, with the task that applies it, in
        one transaction; its id, or None for an event already recorded (a duplicate).

        Raises InvalidCallback for a bad signature — the caller answers 401 and nothing is
        recorded. The provider is answered once its callback is safe in the database, never
        kept waiting on the payout's ledger accounts: ``apply_callback`` (a worker task)
        applies it. Every authenticated callback is recorded, matched or not.
        """
        provider = self.providers.get(provider_name)
        if provider is None:
            raise InvalidCallback("unknown provider")
        now = self.clock()
        event = provider.parse_callback(headers=headers, body=body, now=now)
        values = {
            "provider": provider_name,
            "event_id": event.event_id,
            "payout_id": None,
            "status": event.status.value,
            "payload": _event_payload(event),
            "outcome": CALLBACK_PENDING,
            "received_at": now,
        }
        if self.sessions.kw["bind"].dialect.name == "postgresql":
            rows = alone(self.sessions, _RECORD_IN_ONE_STATEMENT, values)
            return int(rows[0].id) if rows else None
        with atomic(self.sessions) as s:
            recorded = s.execute(
                insert_or_ignore(s, _callbacks, ["provider", "event_id"]).returning(_callbacks.c.id), values
            ).scalar_one_or_none()
            if recorded is not None:
                outbox.add(s, topic=outbox.APPLY_CALLBACK, payload={"callback_id": recorded}, now=now)
        return recorded

    def apply_callback(self, callback_id: int) -> str:
        """Apply a recorded callback through the state machine, in one transaction with its
        outcome; returns what was done with it. Idempotent: a callback already applied is
        answered with what was done then."""
        now = self.clock()
        with atomic(self.sessions) as s:
            recorded = s.execute(
                select(_callbacks).where(_callbacks.c.id == callback_id).with_for_update()
            ).first()
            if recorded is None:
                raise LookupError(f"no callback {callback_id} is recorded")
            if recorded.outcome != CALLBACK_PENDING:
                return _said(recorded.outcome)
            event = _event_of(recorded.payload)
            row = _find_payout(s, recorded.provider, event)
            outcome = self._callback_outcome(s, row, event, now)
            s.execute(
                update(_callbacks)
                .where(_callbacks.c.id == callback_id)
                .values(payout_id=row.id if row else None, outcome=outcome)
            )
            if outcome == "resend":  # a status answer that comes as a callback (M-Pesa's)
                assert row is not None
                self._never_received_in(s, row, source="callback", now=now)
            if outcome == "conflict":
                assert row is not None
                self._freeze_in(s, row, source="callback", now=now)
            if outcome == "apply":
                assert row is not None
                result = TransferResult(
                    event.status, event.provider_reference, event.failure_code, None, event.status.value
                )
                self._apply_in(s, row, result, source="callback", now=now)
            return _said(outcome)

    def apply_callbacks(self, callback_ids: Sequence[int]) -> dict[int, str]:
        """``apply_callback`` for a group, what was done with each. The common case, a payout's
        first word of success, is applied for the whole group in one transaction, set-based;
        every other callback (failures, reversals, repeats about one payout, callbacks found
        by reference alone) in a transaction of its own after it, exactly as one at a time.

        Locks are taken as ``apply_callback`` takes them — callbacks, then payouts (each in id
        order), then ledger accounts — so groups never deadlock with each other or with it.
        """
        done: dict[int, str] = {}
        one_by_one: list[int] = []
        now = self.clock()
        with atomic(self.sessions) as s:
            pending: list[tuple[Row[Any], CallbackEvent]] = []
            for recorded in s.execute(
                select(_callbacks)
                .where(_callbacks.c.id.in_(sorted(set(callback_ids))))
                .order_by(_callbacks.c.id)
                .with_for_update()
            ):
                if recorded.outcome == CALLBACK_PENDING:
                    pending.append((recorded, _event_of(recorded.payload)))
                else:
                    done[recorded.id] = _said(recorded.outcome)
            by_key = _lock_by_keys(
                s, [(r.provider, e.idempotency_key) for r, e in pending if e.idempotency_key]
            )
            settled: list[tuple[Row[Any], Row[Any]]] = []
            for recorded, event in pending:
                key = (recorded.provider, event.idempotency_key or "")
                row = by_key.pop(key, None)  # one per payout: a second waits for the first
                if (
                    row is None
                    or event.status is not TransferStatus.SUCCEEDED
                    or self._callback_outcome(s, row, event, now) != "apply"
                ):
                    one_by_one.append(recorded.id)
                    continue
                settled.append((recorded, row))
            if settled:
                self._succeed_many_in(s, settled, now)
                done.update({recorded.id: "applied" for recorded, _ in settled})
        for callback_id in one_by_one:
            done[callback_id] = self.apply_callback(callback_id)
        return done

    def unapplied_callbacks(self, *, limit: int = 200) -> list[int]:
        """Callbacks recorded at least ``stale_after`` ago and still not applied: their task
        was lost (the outbox and the queue's redelivery make that rare); the sweep queues them
        again."""
        with self.sessions() as s:
            return list(
                s.execute(
                    select(_callbacks.c.id)
                    .where(
                        _callbacks.c.outcome == CALLBACK_PENDING,
                        _callbacks.c.received_at <= self.clock() - self.stale_after,
                    )
                    .order_by(_callbacks.c.id)
                    .limit(limit)
                ).scalars()
            )

    # --- transitions ---------------------------------------------------------------------------

    def _prepare(self, payout_id: int) -> _Send | PayoutStatus:
        """Submit (commit) before sending: the one place a payout moves to ``submitted``."""
        now = self.clock()
        with atomic(self.sessions) as s:
            row = _lock(s, payout_id)
            found = self._submit_ready_in(s, row, now)
            if found is not None:
                return found
            send = self._request(s, row)
        valid = self._validate(send)  # a wallet never paid before: ask the provider first
        now = self.clock()
        with atomic(self.sessions) as s:
            row = _lock(s, payout_id)
            # Another delivery of this task may have validated, submitted and sent it while we
            # asked: the answer is then about a payout no longer ours to fail or put off.
            if row.status != PayoutStatus.CREATED.value:
                return PayoutStatus(row.status)
            if valid is None:
                return self._reschedule_in(
                    s, row, reason="wallet validation unavailable", retry_after=None, now=now
                )
            if not valid:
                self._fail_in(
                    s,
                    row,
                    code="invalid_account",
                    reason="the wallet or its holder's name is not valid",
                    source="precheck",
                    now=now,
                )
                return PayoutStatus.FAILED
            s.execute(
                update(_workers).where(_workers.c.id == row.homeworker_id).values(wallet_verified_at=now)
            )
            found = self._submit_ready_in(s, row, now)
        assert found is not None  # her wallet is verified now
        return found

    def _submit_ready_in(self, s: Session, row: Row[Any], now: datetime) -> _Send | PayoutStatus | None:
        """Within ``s``: submit a payout that is ready and return what to send; or its status
        when there is nothing to send; or None when its wallet must be validated first."""
        return self._submit_many_in(s, [row], now)[row.id]

    def _submit_many_in(
        self, s: Session, rows: Sequence[Row[Any]], now: datetime
    ) -> dict[int, _Send | PayoutStatus | None]:
        """``_submit_ready_in`` for locked payouts, set-based: what they need is read in one
        query per table, and their rows and events written in one statement each. Each
        payout's dispatch entry captures its own hold, the batch's all together."""
        found: dict[int, _Send | PayoutStatus | None] = {}
        if not rows:
            return found
        runs: dict[int, str] = {
            r.id: r.status
            for r in s.execute(
                select(_runs.c.id, _runs.c.status).where(_runs.c.id.in_({r.run_id for r in rows}))
            )
        }
        workers = {
            w.id: w
            for w in s.execute(
                select(
                    _workers.c.id,
                    _workers.c.wallet_registered,
                    _workers.c.wallet_verified_at,
                    _workers.c.name_enc,
                ).where(_workers.c.id.in_({r.homeworker_id for r in rows}))
            )
        }
        resent: list[Row[Any]] = []
        capturing: list[tuple[Row[Any], EntryDraft]] = []
        for row in rows:
            status = PayoutStatus(row.status)
            worker = workers[row.homeworker_id]
            if (
                status is PayoutStatus.SUBMITTED
                and row.next_attempt_at is not None
                and row.next_attempt_at <= now
                and not row.provider_reference  # acknowledged: never sent again
            ):
                resent.append(row)
                found[row.id] = self._request_for(row, worker.name_enc)
                continue
            if (
                status is not PayoutStatus.CREATED
                or (row.next_attempt_at is not None and row.next_attempt_at > now)
                or runs[row.run_id] != RunStatus.DISPATCHING.value
            ):
                found[row.id] = status
                continue
            limit = REGISTERED_WALLET_LIMIT if worker.wallet_registered else UNREGISTERED_WALLET_LIMIT
            if row.amount > limit:
                self._fail_in(
                    s,
                    row,
                    code="limit_exceeded",
                    source="precheck",
                    now=now,
                    reason=f"the wallet can hold at most {limit} rupiah",
                )
                found[row.id] = PayoutStatus.FAILED
                continue
            if worker.wallet_verified_at is None:
                found[row.id] = None
                continue
            transition(status, target=PayoutStatus.SUBMITTED)
            capturing.append((row, self._dispatch_entry(s, row, now)))
            found[row.id] = self._request_for(row, worker.name_enc)
        if resent:
            update_rows(
                s,
                _payouts,
                [{"id": r.id, "attempts": r.attempts + 1} for r in resent],
                key="id",
                assign=lambda v: {"attempts": v["attempts"], "next_attempt_at": None, "updated_at": now},
            )
            record_events(
                s,
                [
                    Event(
                        r.id,
                        PayoutStatus.SUBMITTED,
                        PayoutStatus.SUBMITTED,
                        "resend",
                        {"attempt": r.attempts + 1},
                    )
                    for r in resent
                ],
                now=now,
            )
        if capturing:
            entry_ids = journal.capture_holds(s, [(r.hold_id, draft) for r, draft in capturing], now=now)
            submitted = [(r, entry_id) for (r, _), entry_id in zip(capturing, entry_ids, strict=True)]
            update_rows(
                s,
                _payouts,
                [
                    {"id": r.id, "dispatch_entry_id": entry_id, "attempts": r.attempts + 1}
                    for r, entry_id in submitted
                ],
                key="id",
                assign=lambda v: {
                    "status": PayoutStatus.SUBMITTED.value,
                    "dispatch_entry_id": v["dispatch_entry_id"],
                    "attempts": v["attempts"],
                    "submitted_at": now,
                    "next_attempt_at": None,
                    "updated_at": now,
                },
            )
            record_events(
                s,
                [
                    Event(
                        r.id,
                        PayoutStatus(r.status),
                        PayoutStatus.SUBMITTED,
                        "dispatch",
                        {"attempt": r.attempts + 1},
                    )
                    for r, _ in submitted
                ],
                now=now,
            )
        return found

    def _validate(self, send: _Send) -> bool | None:
        """Ask the provider about a wallet never paid before; None when it could not answer."""
        try:
            check = self.providers[send.provider].validate_account(
                channel=send.request.channel,
                account=send.request.account,
                holder_name=send.request.account_holder_name,
            )
        except ProviderError:
            return None
        return check.valid

    def _request(self, s: Session, row: Row[Any]) -> _Send:
        name_enc = s.execute(
            select(_workers.c.name_enc).where(_workers.c.id == row.homeworker_id)
        ).scalar_one()
        return self._request_for(row, name_enc)

    def _request_for(self, row: Row[Any], name_enc: Any) -> _Send:
        request = TransferRequest(
            idempotency_key=row.idempotency_key,
            reference=row.reference,
            amount=row.amount,
            currency=row.currency,
            channel=row.channel,
            account=pii.decrypt(self.keyring, row.account_enc, context="homeworker.wallet"),
            account_holder_name=pii.decrypt(self.keyring, name_enc, context="homeworker.name"),
            description=f"Upah {row.reference}",
            callback_url=self.callback_url(row.provider),
        )
        return _Send(row.provider, request)

    def _dispatch_entry(self, s: Session, row: Row[Any], now: datetime) -> EntryDraft:
        """The dispatch entry: her earned hold captured into the provider's in-flight account."""
        return EntryDraft(
            key=f"payout:{row.id}:dispatch",
            postings=(
                Posting.debit(row.earned_account_id, row.amount, row.currency),
                Posting.credit(self._in_flight_id(s, row.provider, now), row.amount, row.currency),
            ),
            effective_at=now,
            description=f"payout {row.reference} sent to {row.provider}",
            metadata={
                "kind": "payout_dispatched",
                "payout_id": row.id,
                "homeworker_id": row.homeworker_id,
            },
        )

    # --- the two platform accounts every payout touches, looked up once per process ----------

    def _in_flight_id(self, s: Session, provider: str, now: datetime) -> int:
        key = f"in_flight:{provider}"
        cached = self._account_ids.get(key)
        if cached is None:
            cached = self._remember(s, key, chart.provider_in_flight(s, provider=provider, now=now).id)
        return cached

    def _cash_id(self, s: Session, now: datetime) -> int:
        cached = self._account_ids.get("cash")
        if cached is None:
            cached = self._remember(s, "cash", chart.platform_cash(s, now=now).id)
        return cached

    def _remember(self, s: Session, key: str, account_id: int) -> int:
        """Cache an account id once the transaction that found (or opened) it has committed:
        an account opened by a transaction that rolls back must not be remembered."""
        pending: dict[str, int] | None = s.info.get("dispatch_accounts")
        if pending is None:
            pending = s.info["dispatch_accounts"] = {}
            found = pending
            sa_event.listen(s, "after_commit", lambda _s: self._account_ids.update(found), once=True)
        pending[key] = account_id
        return account_id

    def _apply(self, payout_id: int, result: TransferResult, *, source: str) -> PayoutStatus:
        with atomic(self.sessions) as s:
            return self._apply_in(s, _lock(s, payout_id), result, source=source, now=self.clock())

    def _apply_in(
        self, s: Session, row: Row[Any], result: TransferResult, *, source: str, now: datetime
    ) -> PayoutStatus:
        """What the provider said, applied through the state machine (within ``s``)."""
        payout_id = row.id
        status = PayoutStatus(row.status)
        if result.provider_reference and not row.provider_reference:
            s.execute(
                update(_payouts)
                .where(_payouts.c.id == payout_id)
                .values(provider_reference=result.provider_reference)
            )
        if result.status is TransferStatus.PENDING:
            if status is PayoutStatus.UNKNOWN:
                self._backoff_in(s, row, now, reason="provider says pending")
            elif status is PayoutStatus.SUBMITTED:  # accepted: ask again later, in case no callback comes
                if row.next_attempt_at is not None:  # it has the instruction: nothing to send again
                    s.execute(update(_payouts).where(_payouts.c.id == payout_id).values(next_attempt_at=None))
                self._poll_later_in(s, row, now, retry_after=None)
            return status
        if result.status is TransferStatus.SUCCEEDED:
            if status in (PayoutStatus.SUBMITTED, PayoutStatus.UNKNOWN):
                self._succeed_in(s, row, source, now)
                return PayoutStatus.SUCCEEDED
            if status is PayoutStatus.FAILED:
                self._freeze_in(s, row, source=source, now=now)
            return status
        if result.status is TransferStatus.FAILED:
            if status in (PayoutStatus.SUBMITTED, PayoutStatus.UNKNOWN):
                self._fail_in(
                    s,
                    row,
                    code=result.failure_code or "provider_failure",
                    source=source,
                    now=now,
                    reason=result.failure_message or result.raw_status or "the provider failed it",
                )
                return PayoutStatus.FAILED
            return status
        if result.status is TransferStatus.REVERSED:
            if status in (PayoutStatus.SUBMITTED, PayoutStatus.UNKNOWN):
                self._succeed_in(s, row, source, now)
                row = _lock(s, payout_id)
                status = PayoutStatus.SUCCEEDED
            if status is PayoutStatus.SUCCEEDED:
                self._reverse_in(s, row, source, now)
                return PayoutStatus.REVERSED
            return status
        return status

    def _succeed_in(self, s: Session, row: Row[Any], source: str, now: datetime) -> None:
        transition(PayoutStatus(row.status), target=PayoutStatus.SUCCEEDED)
        # the payout's own rows first; the postings to the two accounts every settlement
        # touches last, so that their row locks are held for as short a time as possible
        self._finish_in(s, row, PayoutStatus.SUCCEEDED, source, now, {})
        journal.post(s, self._settle_entry(s, row, now), now=now)
        if row.fee_hold_id is not None:
            journal.capture_hold(s, hold_id=row.fee_hold_id, draft=self._fee_entry(s, row, now), now=now)

    def _succeed_many_in(
        self, s: Session, settled: Sequence[tuple[Row[Any], Row[Any]]], now: datetime
    ) -> None:
        """``_succeed_in`` for each (callback, payout) of a group of first callbacks of success,
        set-based, with the callbacks' outcomes; in the same order of locks and writes."""
        for _, row in settled:
            transition(PayoutStatus(row.status), target=PayoutStatus.SUCCEEDED)
        update_rows(
            s,
            _callbacks,
            [{"id": callback.id, "payout_id": row.id} for callback, row in settled],
            key="id",
            assign=lambda v: {"payout_id": v["payout_id"], "outcome": "apply"},
        )
        update_rows(
            s,
            _payouts,
            [
                {"id": row.id, "provider_reference": callback.payload["provider_reference"]}
                for callback, row in settled
            ],
            key="id",
            assign=lambda v: {
                "status": PayoutStatus.SUCCEEDED.value,
                "settled_at": now,
                "next_attempt_at": None,
                "updated_at": now,
                "provider_reference": func.coalesce(_payouts.c.provider_reference, v["provider_reference"]),
            },
        )
        rows = [row for _, row in settled]
        record_events(
            s,
            [Event(r.id, PayoutStatus(r.status), PayoutStatus.SUCCEEDED, "callback", {}) for r in rows],
            now=now,
        )
        outbox.add_many(
            s,
            topic=outbox.SEND_SMS,
            payloads=[{"kind": "payout_succeeded", "payout_id": r.id} for r in rows],
            now=now,
        )
        for run_id in sorted({r.run_id for r in rows}):
            self._complete_run_in(s, run_id, now)
        journal.post_many(s, [self._settle_entry(s, r, now) for r in rows], now=now)
        fees = [(r.fee_hold_id, self._fee_entry(s, r, now)) for r in rows if r.fee_hold_id is not None]
        journal.capture_holds(s, fees, now=now)

    def _settle_entry(self, s: Session, row: Row[Any], now: datetime) -> EntryDraft:
        """The provider paid her: in-flight settled against platform cash."""
        return EntryDraft(
            key=f"payout:{row.id}:settle",
            postings=(
                Posting.debit(self._in_flight_id(s, row.provider, now), row.amount, row.currency),
                Posting.credit(self._cash_id(s, now), row.amount, row.currency),
            ),
            effective_at=now,
            description=f"payout {row.reference} confirmed by {row.provider}",
            metadata={"kind": "payout_succeeded", "payout_id": row.id, "homeworker_id": row.homeworker_id},
        )

    def _fee_entry(self, s: Session, row: Row[Any], now: datetime) -> EntryDraft:
        """The provider's fee for a paid payout, charged to the buyer (its fee hold's capture)."""
        available_id = self._buyer_available_id(s, row.buyer_id)
        return EntryDraft(
            key=f"payout:{row.id}:fee",
            postings=(
                Posting.debit(available_id, row.fee, row.currency),
                Posting.credit(self._cash_id(s, now), row.fee, row.currency),
            ),
            effective_at=now,
            description=f"provider fee for payout {row.reference}, paid by the buyer",
            metadata={"kind": "provider_fee", "payout_id": row.id},
        )

    def _buyer_available_id(self, s: Session, buyer_id: int) -> int:
        buyer = parties.get_organization(s, principal=_platform(), organization_id=buyer_id)
        assert buyer.available_account_id is not None
        return buyer.available_account_id

    def _fail_in(
        self, s: Session, row: Row[Any], *, code: str, reason: str, source: str, now: datetime
    ) -> None:
        status = PayoutStatus(row.status)
        transition(status, target=PayoutStatus.FAILED)
        # Every account this return touches, locked first in the ledger's order: her earnings
        # (and the provider's in-flight account) and the buyer's, whose fee hold is voided
        # last. Taken as the writes come, hers came before the buyer's, the reverse of a run
        # being created for the buyer, and the two deadlocked.
        touched = {row.earned_account_id}
        if row.dispatch_entry_id is not None:
            touched.add(self._in_flight_id(s, row.provider, now))
        if row.fee_hold_id is not None:
            touched.add(journal.get_hold(s, row.fee_hold_id).account_id)
        journal.lock_accounts(s, touched)
        if row.dispatch_entry_id is not None:
            journal.reverse(
                s,
                entry_id=row.dispatch_entry_id,
                key=f"payout:{row.id}:return",
                reason=f"payout failed ({code}): the money stays owed to her",
                now=now,
            )
        elif row.hold_id is not None:
            journal.void_hold(s, hold_id=row.hold_id, now=now)
        if row.fee_hold_id is not None:
            journal.void_hold(s, hold_id=row.fee_hold_id, now=now)
        s.execute(
            update(_payouts)
            .where(_payouts.c.id == row.id)
            .values(failure_code=code, failure_reason=reason[:500])
        )
        self._finish_in(s, row, PayoutStatus.FAILED, source, now, {"code": code})

    def _freeze_in(self, s: Session, row: Row[Any], *, source: str, now: datetime) -> None:
        """The provider says it paid a payout that failed, whose money went back to her earnings:
        hold that much of them, so that no later run pays it a second time. The payout stays
        ``failed`` (the ledger follows our records); the hold (key ``payout:{id}:conflict``) and
        the payout's history say why. Which answer was true is for reconciliation against the
        provider's statement: an admin then settles it (``payments.conflicts``)."""
        try:
            journal.place_hold(
                s,
                key=conflict_hold_key(row.id),
                account_id=row.earned_account_id,
                amount=row.amount,
                now=now,
                metadata={"kind": "payout_conflict", "payout_id": row.id},
            )
            held = True
        except InsufficientFunds:
            held = False
            log.error(
                "payout %s: the provider says it paid after it failed, and her earnings no longer "
                "hold the amount: it may have been paid twice; reconcile it",
                row.id,
            )
        else:
            log.error(
                "payout %s: the provider says it paid after it failed; the amount is held from her "
                "earnings until reconciliation settles it",
                row.id,
            )
        record_event(
            s,
            payout_id=row.id,
            from_status=PayoutStatus.FAILED,
            to_status=PayoutStatus.FAILED,
            source=source,
            detail={"conflict": "the provider says it paid", "amount_held": held},
            now=now,
        )

    def _reverse_in(self, s: Session, row: Row[Any], source: str, now: datetime) -> None:
        transition(PayoutStatus(row.status), target=PayoutStatus.REVERSED)
        journal.post(
            s,
            EntryDraft(
                key=f"payout:{row.id}:reversed",
                postings=(
                    Posting.debit(self._cash_id(s, now), row.amount, row.currency),
                    Posting.credit(row.earned_account_id, row.amount, row.currency),
                ),
                effective_at=now,
                description=f"payout {row.reference} reversed by {row.provider}: owed to her again",
                metadata={"kind": "payout_reversed", "payout_id": row.id, "homeworker_id": row.homeworker_id},
            ),
            now=now,
        )
        self._finish_in(s, row, PayoutStatus.REVERSED, source, now, {})

    def _finish_in(
        self,
        s: Session,
        row: Row[Any],
        status: PayoutStatus,
        source: str,
        now: datetime,
        detail: dict[str, Any],
    ) -> None:
        s.execute(
            update(_payouts)
            .where(_payouts.c.id == row.id)
            .values(status=status.value, settled_at=now, next_attempt_at=None, updated_at=now)
        )
        record_event(
            s,
            payout_id=row.id,
            from_status=PayoutStatus(row.status),
            to_status=status,
            source=source,
            detail=detail,
            now=now,
        )
        outbox.add(
            s, topic=outbox.SEND_SMS, payload={"kind": f"payout_{status.value}", "payout_id": row.id}, now=now
        )
        self._complete_run_in(s, row.run_id, now)

    def _complete_run_in(self, s: Session, run_id: int, now: datetime) -> None:
        """The run is complete once none of its payouts is unresolved (one statement).

        Two settlements committing at once may each still see the other's payout open, so
        neither completes the run: :meth:`complete_runs` (the sweep) closes what they missed.
        """
        _complete_runs_in(s, now, run_id=run_id)

    def complete_runs(self) -> int:
        """Complete every dispatching run whose payouts all have an outcome; how many were."""
        with atomic(self.sessions) as s:
            return _complete_runs_in(s, self.clock())

    def _fail_guarded_in(
        self, s: Session, row: Row[Any], *, code: str, reason: str, source: str, now: datetime
    ) -> PayoutStatus:
        status = PayoutStatus(row.status)
        if status not in (PayoutStatus.CREATED, PayoutStatus.SUBMITTED, PayoutStatus.UNKNOWN):
            return status
        self._fail_in(s, row, code=code, reason=reason, source=source, now=now)
        return PayoutStatus.FAILED

    def _mark_unknown(self, payout_id: int, *, reason: str, source: str) -> PayoutStatus:
        with atomic(self.sessions) as s:
            return self._mark_unknown_in(
                s, _lock(s, payout_id), reason=reason, source=source, now=self.clock()
            )

    def _mark_unknown_in(
        self, s: Session, row: Row[Any], *, reason: str, source: str, now: datetime
    ) -> PayoutStatus:
        status = PayoutStatus(row.status)
        if status not in (PayoutStatus.SUBMITTED, PayoutStatus.UNKNOWN):
            return status
        if status is PayoutStatus.SUBMITTED:
            s.execute(
                update(_payouts)
                .where(_payouts.c.id == row.id)
                .values(status=PayoutStatus.UNKNOWN.value, updated_at=now)
            )
            record_event(
                s,
                payout_id=row.id,
                from_status=status,
                to_status=PayoutStatus.UNKNOWN,
                source=source,
                detail={"reason": reason[:200]},
                now=now,
            )
        self._backoff_in(s, row, now, reason=reason)
        return PayoutStatus.UNKNOWN

    def _never_received(self, payout_id: int) -> PayoutStatus:
        with atomic(self.sessions) as s:
            return self._never_received_in(s, _lock(s, payout_id), source="status", now=self.clock())

    def _never_received_in(self, s: Session, row: Row[Any], *, source: str, now: datetime) -> PayoutStatus:
        """The provider has no instruction under our key: send it again, with the same key."""
        payout_id = row.id
        status = PayoutStatus(row.status)
        if status not in (PayoutStatus.UNKNOWN, PayoutStatus.SUBMITTED):
            return status
        if row.provider_reference:  # it acknowledged the instruction since: the answer is stale
            if status is PayoutStatus.SUBMITTED:
                self._poll_later_in(s, row, now, retry_after=None)
            else:
                self._backoff_in(s, row, now, reason="provider acknowledged it, then could not find it")
            return status
        if status is PayoutStatus.UNKNOWN:
            transition(status, target=PayoutStatus.SUBMITTED)
        s.execute(
            update(_payouts)
            .where(_payouts.c.id == payout_id)
            .values(status=PayoutStatus.SUBMITTED.value, next_attempt_at=now, updated_at=now)
        )
        record_event(
            s,
            payout_id=payout_id,
            from_status=status,
            to_status=PayoutStatus.SUBMITTED,
            source=source,
            detail={"reason": "provider never received it; resend with the same key"},
            now=now,
        )
        outbox.add(s, topic=outbox.DISPATCH_PAYOUT, payload={"payout_id": payout_id}, now=now)
        return PayoutStatus.SUBMITTED

    def _reschedule_in(
        self,
        s: Session,
        row: Row[Any],
        *,
        reason: str,
        retry_after: float | None,
        now: datetime,
    ) -> PayoutStatus:
        """Send again later — the provider refused the instruction unprocessed (429), or the
        wallet could not be checked. Only for a payment instruction: a status query that
        fails goes to ``_ask_later`` (``next_attempt_at`` on a submitted payout means "send")."""
        status = PayoutStatus(row.status)
        if status is PayoutStatus.SUBMITTED and row.provider_reference:
            # a status answer recorded its acknowledgement while this resend was refused
            self._poll_later_in(s, row, now, retry_after=retry_after)
            return status
        tries = row.attempts
        if status is PayoutStatus.CREATED:  # nothing sent yet: count the times it was put off
            tries += _backoffs(s, row.id)
        delay = self._delay(tries, retry_after)
        s.execute(
            update(_payouts)
            .where(_payouts.c.id == row.id)
            .values(next_attempt_at=now + delay, updated_at=now)
        )
        _record_backoff(s, row.id, status, reason=reason, delay=delay, now=now)
        topic = outbox.DISPATCH_PAYOUT if status is not PayoutStatus.UNKNOWN else outbox.RESOLVE_PAYOUT
        outbox.add(s, topic=topic, payload={"payout_id": row.id}, now=now, available_at=now + delay)
        return status

    def _ask_later(self, payout_id: int, *, reason: str, retry_after: float | None) -> PayoutStatus:
        """A status query could not be answered now (429): ask again later, in the state it is
        in. The first instruction may still be pending at the provider, so this never sends."""
        now = self.clock()
        with atomic(self.sessions) as s:
            row = _lock(s, payout_id)
            status = PayoutStatus(row.status)
            if status is PayoutStatus.UNKNOWN:
                delay = self._backoff_in(s, row, now, reason=reason, retry_after=retry_after)
            elif status is PayoutStatus.SUBMITTED:
                delay = self._poll_later_in(s, row, now, retry_after=retry_after)
            else:  # settled meanwhile (a callback)
                return status
            _record_backoff(s, row.id, status, reason=reason, delay=delay, now=now)
        return status

    def _poll_later_in(
        self, s: Session, row: Row[Any], now: datetime, *, retry_after: float | None
    ) -> timedelta:
        """Queue the next status query for a submitted payout; it stays submitted, with no
        ``next_attempt_at`` (that would send it again). ``updated_at`` marks the question as
        asked, so the sweep (``due``) leaves it to this schedule."""
        delay = self._poll_delay(row.submitted_at, now, retry_after)
        s.execute(update(_payouts).where(_payouts.c.id == row.id).values(updated_at=now))
        outbox.add(
            s, topic=outbox.RESOLVE_PAYOUT, payload={"payout_id": row.id}, now=now, available_at=now + delay
        )
        return delay

    def _poll_delay(
        self, submitted_at: datetime | None, now: datetime, retry_after: float | None
    ) -> timedelta:
        """About as long again as it has been pending, with jitter: the questions about one
        payout thin out exponentially without counting them. Never sooner than Retry-After."""
        longest = self._longest_poll(submitted_at, now).total_seconds()
        delay = self.rng.uniform(max(FIRST_POLL.total_seconds(), longest / 2), longest)
        return timedelta(seconds=max(delay, retry_after or 0))

    def _longest_poll(self, submitted_at: datetime | None, asked_at: datetime) -> timedelta:
        """The longest ``_poll_delay`` after a question asked at ``asked_at`` (Retry-After aside)."""
        pending = asked_at - submitted_at if submitted_at is not None else timedelta(0)
        return min(self.max_backoff, max(FIRST_POLL, pending))

    def _backoff_in(
        self, s: Session, row: Row[Any], now: datetime, *, reason: str, retry_after: float | None = None
    ) -> timedelta:
        delay = self._delay(row.attempts, retry_after)
        s.execute(
            update(_payouts)
            .where(_payouts.c.id == row.id)
            .values(next_attempt_at=now + delay, attempts=row.attempts + 1, updated_at=now)
        )
        outbox.add(
            s, topic=outbox.RESOLVE_PAYOUT, payload={"payout_id": row.id}, now=now, available_at=now + delay
        )
        del reason
        return delay

    def _delay(self, attempts: int, retry_after: float | None) -> timedelta:
        """Exponential backoff with full jitter, bounded; never sooner than the provider asked."""
        base = min(self.max_backoff.total_seconds(), 0.5 * 2 ** min(attempts, 16))
        delay = self.rng.uniform(base / 2, base)
        return timedelta(seconds=max(min(delay, self.max_backoff.total_seconds()), retry_after or 0))

    def _callback_outcome(self, s: Session, row: Row[Any] | None, event: CallbackEvent, now: datetime) -> str:
        del now
        if row is None:
            return "unknown_payout"
        if event.amount is not None and event.amount != row.amount:
            return "amount_mismatch"
        status = PayoutStatus(row.status)
        if event.status is TransferStatus.NOT_FOUND:  # it never received the instruction
            if status in (PayoutStatus.SUBMITTED, PayoutStatus.UNKNOWN) and not row.provider_reference:
                return "resend"
            return "no_change"
        target = {
            TransferStatus.SUCCEEDED: PayoutStatus.SUCCEEDED,
            TransferStatus.FAILED: PayoutStatus.FAILED,
            TransferStatus.REVERSED: PayoutStatus.REVERSED,
        }.get(event.status)
        if target is None or target is status:
            return "no_change"
        if status is PayoutStatus.FAILED and target is PayoutStatus.SUCCEEDED:
            return "conflict"  # we returned the money; the provider says it paid: reconciliation must look
        if status in (PayoutStatus.SUBMITTED, PayoutStatus.UNKNOWN) or (
            status is PayoutStatus.SUCCEEDED and target is PayoutStatus.REVERSED
        ):
            return "apply"
        return "out_of_order"


@dataclass(frozen=True, slots=True)
class _Send:
    provider: str
    request: TransferRequest


def _record_backoff(
    s: Session, payout_id: int, status: PayoutStatus, *, reason: str, delay: timedelta, now: datetime
) -> None:
    """The payout's history says why it waits, and for how long (it stays in its state)."""
    record_event(
        s,
        payout_id=payout_id,
        from_status=status,
        to_status=status,
        source="backoff",
        detail={"reason": reason, "retry_in_seconds": round(delay.total_seconds(), 3)},
        now=now,
    )


def _backoffs(s: Session, payout_id: int) -> int:
    """How many times the payout was put off (``_record_backoff``), so that a wallet check
    down for long is asked less and less often, as a send would be."""
    return int(
        s.execute(
            select(func.count()).where(_events.c.payout_id == payout_id, _events.c.source == "backoff")
        ).scalar_one()
    )


def _lock_many(s: Session, payout_ids: Sequence[int]) -> list[Row[Any]]:
    """Lock payouts in id order (one global order: no deadlocks between batches)."""
    return list(
        s.execute(
            select(_payouts)
            .where(_payouts.c.id.in_(sorted(set(payout_ids))))
            .order_by(_payouts.c.id)
            .with_for_update()
        )
    )


def _lock_by_keys(s: Session, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Row[Any]]:
    """The payouts with these (provider, idempotency key)s, locked in id order (found by the
    keys' unique index: each key is one payout's, whichever its provider)."""
    if not keys:
        return {}
    rows = s.execute(
        select(_payouts)
        .where(_payouts.c.idempotency_key.in_(sorted({key for _, key in keys})))
        .order_by(_payouts.c.id)
        .with_for_update()
    )
    wanted = set(keys)
    return {(r.provider, r.idempotency_key): r for r in rows if (r.provider, r.idempotency_key) in wanted}


def _lock(s: Session, payout_id: int) -> Row[Any]:
    return s.execute(select(_payouts).where(_payouts.c.id == payout_id).with_for_update()).one()


def _find_payout(s: Session, provider: str, event: CallbackEvent) -> Row[Any] | None:
    """The payout a callback is about, locked (duplicates of one event queue up behind it)."""
    if event.idempotency_key:
        row = s.execute(
            select(_payouts)
            .where(_payouts.c.idempotency_key == event.idempotency_key, _payouts.c.provider == provider)
            .with_for_update()
        ).first()
        if row is not None:
            return row
    if event.provider_reference:
        return s.execute(
            select(_payouts)
            .where(_payouts.c.provider_reference == event.provider_reference, _payouts.c.provider == provider)
            .with_for_update()
        ).first()
    return None


# PostgreSQL: the callback and the message that applies it, written by one statement (run
# alone, in one round trip: half the callback endpoint's CPU went to a unit of work's three);
# no row for a duplicate.
_RECORD_IN_ONE_STATEMENT = text(
    """
    WITH recorded AS (
        INSERT INTO provider_callbacks (provider, event_id, status, payload, outcome, received_at)
        VALUES (:provider, :event_id, :status, :payload, :outcome, :received_at)
        ON CONFLICT (provider, event_id) DO NOTHING
        RETURNING id
    ), message AS (
        INSERT INTO outbox (topic, payload, available_at, created_at)
        SELECT :topic, jsonb_build_object('callback_id', id), :received_at, :received_at
        FROM recorded
    )
    SELECT id FROM recorded
    """
).bindparams(bindparam("payload", type_=_callbacks.c.payload.type), bindparam("topic", outbox.APPLY_CALLBACK))


def _event_payload(event: CallbackEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "idempotency_key": event.idempotency_key,
        "provider_reference": event.provider_reference,
        "status": event.status.value,
        "amount": event.amount,
        "currency": event.currency,
        "failure_code": event.failure_code,
    }


def _event_of(payload: Mapping[str, Any]) -> CallbackEvent:
    """A recorded callback's event, as ``_event_payload`` stored it."""
    return CallbackEvent(
        event_id=payload["event_id"],
        idempotency_key=payload["idempotency_key"],
        provider_reference=payload["provider_reference"],
        status=TransferStatus(payload["status"]),
        amount=payload["amount"],
        currency=payload["currency"],
        failure_code=payload["failure_code"],
    )


def _said(outcome: str) -> str:
    return "applied" if outcome == "apply" else outcome


def _platform() -> parties.Principal:
    return parties.Principal(key_id=0, role=parties.Role.ADMIN, organization_id=None)


def _complete_runs_in(s: Session, now: datetime, *, run_id: int | None = None) -> int:
    still_open = (
        select(_payouts.c.id)
        .where(_payouts.c.run_id == _runs.c.id, _payouts.c.status.in_(UNRESOLVED))
        .exists()
    )
    query = update(_runs).where(_runs.c.status == RunStatus.DISPATCHING.value, ~still_open)
    if run_id is not None:
        query = query.where(_runs.c.id == run_id)
    result = s.execute(query.values(status=RunStatus.COMPLETED.value, completed_at=now))
    return int(result.rowcount)  # type: ignore[attr-defined]
