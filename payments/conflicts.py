"""A payout the provider says it paid after we had failed it: settled by reconciliation.

When that happens the dispatcher holds the amount in her earnings (hold key
``payout:{id}:conflict``) so that no later run pays it again, and leaves the payout
``failed``. Only the provider's statement can say which answer was true, and an admin who
has read it settles the conflict here — one transaction either way:

- the provider paid her: the hold is captured as the payout's dispatch, in-flight is
  settled against platform cash, the buyer is charged the provider's fee, and the payout
  becomes ``succeeded`` (the one way out of ``failed``); she is told by SMS;
- it did not: the hold is voided, and her earnings are paid by the next run.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ledger import EntryDraft, Posting, journal
from ledger.holds import HoldStatus
from ledger.tables import table_of
from payments import chart, outbox, parties
from payments.errors import InvalidState, NotFound, ValidationFailed
from payments.parties import Principal, Role
from payments.payout_states import PayoutStatus, settle_conflict
from payments.payouts import Payout, conflict_hold_key, get, record_event
from payments.tables import PayoutRow

_payouts = table_of(PayoutRow)


def resolve(
    session: Session, *, principal: Principal, payout_id: int, provider_paid: bool, reason: str, now: datetime
) -> Payout:
    """Settle a payout's conflict as the provider's statement shows: paid to her, or not."""
    principal.require(Role.ADMIN)
    if not reason.strip():
        raise ValidationFailed("say why: the provider statement or case this rests on", field="reason")
    row = session.execute(select(_payouts).where(_payouts.c.id == payout_id).with_for_update()).first()
    if row is None:
        raise NotFound("payout not found")
    hold = journal.find_hold_by_key(session, conflict_hold_key(row.id))
    if row.status != PayoutStatus.FAILED.value or hold is None or hold.status is not HoldStatus.PENDING:
        raise InvalidState("this payout has no conflict to settle", status=row.status)
    record_event(
        session,
        payout_id=row.id,
        from_status=PayoutStatus.FAILED,
        to_status=settle_conflict(PayoutStatus(row.status)) if provider_paid else PayoutStatus.FAILED,
        source="reconciliation",
        detail={
            "conflict": "the provider paid" if provider_paid else "the provider did not pay",
            "by_key": principal.key_id,
            "reason": reason.strip()[:500],
        },
        now=now,
    )
    if not provider_paid:
        journal.void_hold(session, hold_id=hold.id, now=now)
        return get(session, principal=principal, payout_id=payout_id)
    buyer = parties.get_organization(session, principal=principal, organization_id=row.buyer_id)
    in_flight = chart.provider_in_flight(session, provider=row.provider, now=now).id
    cash = chart.platform_cash(session, now=now).id
    journal.lock_accounts(session, {row.earned_account_id, buyer.available_account_id, in_flight, cash})
    session.execute(
        update(_payouts)
        .where(_payouts.c.id == row.id)
        .values(
            status=PayoutStatus.SUCCEEDED.value,
            failure_code=None,
            failure_reason=None,
            settled_at=now,
            updated_at=now,
        )
    )
    outbox.add(
        session, topic=outbox.SEND_SMS, payload={"kind": "payout_succeeded", "payout_id": row.id}, now=now
    )

    def entry(step: str, debit: int, credit: int, amount: int, description: str) -> EntryDraft:
        return EntryDraft(
            key=f"payout:{row.id}:conflict:{step}",
            postings=(
                Posting.debit(debit, amount, row.currency),
                Posting.credit(credit, amount, row.currency),
            ),
            effective_at=now,
            description=f"payout {row.reference}: {description}",
            metadata={
                "kind": f"payout_conflict_{step}",
                "payout_id": row.id,
                "homeworker_id": row.homeworker_id,
            },
        )

    journal.capture_hold(
        session,
        hold_id=hold.id,
        draft=entry(
            "dispatch", row.earned_account_id, in_flight, row.amount, "paid by the provider after it failed"
        ),
        now=now,
    )
    journal.post(
        session,
        entry("settle", in_flight, cash, row.amount, "confirmed by the provider's statement"),
        now=now,
    )
    if row.fee:
        fee = entry("fee", buyer.available_account_id, cash, row.fee, "provider fee, paid by the buyer")
        journal.post(session, fee, now=now)
    return get(session, principal=principal, payout_id=payout_id)
