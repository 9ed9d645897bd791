"""A group of recorded callbacks applied together (``Dispatcher.apply_callbacks``, the worker's
task) leaves exactly what applying them one at a time leaves, on real PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ledger import journal, reports
from payments import parties
from payments.dispatch import Dispatcher
from payments.payout_states import PayoutStatus
from payments.tables import OutboxRow, PayoutEventRow, PayoutRow, PayoutRunRow
from tests.payments.scenario import admin, callback_body, earn, key_of, make_buyer, make_worker, run, signed


def submitted_run(factory: sessionmaker[Session], dispatcher: Dispatcher, amounts: list[int]) -> list[int]:
    """A run of payouts for new homeworkers, sent and accepted by the provider (no callback yet)."""
    buyer = make_buyer(factory)
    for amount in amounts:
        earn(factory, buyer, make_worker(factory, buyer), amount)
    payouts = [p.id for p in run(factory, buyer).payouts]
    assert set(dispatcher.dispatch_many(payouts).values()) == {PayoutStatus.SUBMITTED}
    return payouts


def record(
    factory: sessionmaker[Session], dispatcher: Dispatcher, payout_id: int, status: str, event: str
) -> int:
    with factory() as s:
        amount = s.execute(select(PayoutRow.amount).where(PayoutRow.id == payout_id)).scalar_one()
    headers, raw = signed(callback_body(payout_id, key_of(factory, payout_id), status, amount, event))
    recorded = dispatcher.record_callback("sandbox", headers=headers, body=raw)
    assert recorded is not None
    return recorded


def what_happened(factory: sessionmaker[Session], payout_ids: list[int]) -> list[Any]:
    """Per payout: its status, its history, the SMS it queued, her balance and its holds; and
    whether its run completed — everything but ids and times."""
    found = []
    with factory() as s:
        for payout_id in payout_ids:
            row = s.execute(select(PayoutRow).where(PayoutRow.id == payout_id)).scalar_one()
            history = s.execute(
                select(PayoutEventRow.from_status, PayoutEventRow.to_status, PayoutEventRow.source)
                .where(PayoutEventRow.payout_id == payout_id)
                .order_by(PayoutEventRow.id)
            ).all()
            sms = [
                p["kind"]
                for p in s.execute(select(OutboxRow.payload).where(OutboxRow.topic == "sms.send")).scalars()
                if p.get("payout_id") == payout_id
            ]
            earned = journal.balance(s, row.earned_account_id)
            holds = [journal.get_hold(s, h).status for h in (row.hold_id, row.fee_hold_id) if h is not None]
            run_status = s.execute(
                select(PayoutRunRow.status).where(PayoutRunRow.id == row.run_id)
            ).scalar_one()
            found.append(
                (
                    row.status,
                    row.provider_reference is not None,
                    history,
                    sms,
                    earned.posted,
                    earned.held,
                    holds,
                )
            )
            found.append(run_status)
        assert reports.check_integrity(s) == []
    return found


def test_a_group_of_success_callbacks_leaves_what_one_at_a_time_leaves(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher
) -> None:
    results = []
    for together in (False, True):
        payouts = submitted_run(pg_factory, dispatcher, [20_000, 30_000, 45_000])
        recorded = [record(pg_factory, dispatcher, p, "succeeded", f"evt-{p}-ok") for p in payouts]
        if together:
            assert dispatcher.apply_callbacks(recorded) == dict.fromkeys(recorded, "applied")
        else:
            assert [dispatcher.apply_callback(r) for r in recorded] == ["applied"] * 3
        results.append(what_happened(pg_factory, payouts))
    one_at_a_time, together_ = results
    assert together_ == one_at_a_time
    assert together_[0][0] == PayoutStatus.SUCCEEDED.value and together_[-1] == "completed"


def test_a_group_charges_each_paid_payouts_fee_to_its_buyer(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher
) -> None:
    payouts = submitted_run(pg_factory, dispatcher, [20_000, 30_000])
    with pg_factory() as s:
        buyer_id, fee = s.execute(
            select(PayoutRow.buyer_id, PayoutRow.fee).where(PayoutRow.id == payouts[0])
        ).one()
        account = parties.get_organization(
            s, principal=admin(), organization_id=buyer_id
        ).available_account_id
        assert account is not None and fee > 0
        before = journal.balance(s, account)
    group = [record(pg_factory, dispatcher, p, "succeeded", f"evt-{p}-fee") for p in payouts]
    assert dispatcher.apply_callbacks(group) == dict.fromkeys(group, "applied")
    with pg_factory() as s:
        after = journal.balance(s, account)
    assert (before.posted - after.posted, before.held - after.held) == (2 * fee, 2 * fee)


def test_failures_and_repeats_in_a_group_are_applied_one_at_a_time_after_it(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher
) -> None:
    paid, failed = submitted_run(pg_factory, dispatcher, [20_000, 30_000])
    group = [
        record(pg_factory, dispatcher, paid, "succeeded", f"evt-{paid}-ok"),
        record(pg_factory, dispatcher, failed, "failed", f"evt-{failed}-failed"),
        record(pg_factory, dispatcher, paid, "succeeded", f"evt-{paid}-again"),
    ]
    assert dispatcher.apply_callbacks(group) == {
        group[0]: "applied",
        group[1]: "applied",
        group[2]: "no_change",
    }
    [(paid_status, *_), _, (failed_status, *_), _] = what_happened(pg_factory, [paid, failed])
    assert (paid_status, failed_status) == (PayoutStatus.SUCCEEDED.value, PayoutStatus.FAILED.value)


def test_a_group_applied_again_changes_nothing(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher
) -> None:
    payouts = submitted_run(pg_factory, dispatcher, [20_000, 30_000])
    group = [record(pg_factory, dispatcher, p, "succeeded", f"evt-{p}-twice") for p in payouts]
    dispatcher.apply_callbacks(group)
    before = what_happened(pg_factory, payouts)
    assert dispatcher.apply_callbacks(group) == dict.fromkeys(group, "applied")  # the task delivered again
    assert what_happened(pg_factory, payouts) == before
