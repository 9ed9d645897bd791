"""Payouts reach the wallet exactly once, whatever the provider does (real sandbox, PostgreSQL)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from integrations.providers.base import InvalidCallback, TransferResult, TransferStatus
from integrations.providers.sandbox import SandboxProvider
from ledger import atomic, journal, reports
from ledger.tables import EntryRow
from payments import outbox, parties, payouts, pii
from payments.dispatch import CALLBACK_PENDING, FIRST_POLL, Dispatcher
from payments.payout_states import PayoutStatus, RunStatus
from payments.tables import (
    HomeworkerRow,
    OutboxRow,
    PayoutEventRow,
    PayoutRunRow,
    ProviderCallbackRow,
)
from tests.payments.scenario import (
    KEYRING,
    SANDBOX_SECRET,
    Buyer,
    callback_body,
    deliver_callback,
    earn,
    earned,
    failed_then_paid,
    key_of,
    make_worker,
    run,
    signed,
)
from tests.sandbox import LiveSandbox


def paid_at_sandbox(sandbox: LiveSandbox, key: str) -> list[dict[str, object]]:
    return [p for p in sandbox.get("/v1/payouts").json()["payouts"] if p["idempotency_key"] == key]


def test_a_run_pays_what_she_is_owed_and_the_buyer_pays_the_fee(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 125_000)
    the_run = run(pg_factory, buyer)
    assert (the_run.count, the_run.total, the_run.fee) == (1, 125_000, 2_500)
    payout = the_run.payouts[0]
    assert dispatcher.dispatch(payout.id) in (PayoutStatus.SUBMITTED, PayoutStatus.SUCCEEDED)
    assert dispatcher.resolve(payout.id) is PayoutStatus.SUCCEEDED
    assert earned(pg_factory, buyer, worker) == 0
    with pg_factory() as s:
        assert payouts.get_run(s, principal=buyer.principal, run_id=the_run.id).status is RunStatus.COMPLETED
        balance = parties.organization_balance(
            s, principal=buyer.principal, organization_id=buyer.principal.organization_id or 0
        )
        assert balance.available == 100_000_000 - 125_000 - 2_500
        assert reports.check_integrity(s) == []
    [record] = paid_at_sandbox(sandbox, key_of(pg_factory, payout.id))
    assert record["amount"] == 125_000


def test_the_same_earnings_are_never_in_two_runs(pg_factory: sessionmaker[Session], buyer: Buyer) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 50_000)
    first, second = run(pg_factory, buyer), run(pg_factory, buyer)
    assert first.count == 1
    assert second.count == 0


def test_a_run_never_holds_a_zero_payout_whatever_the_minimum(
    pg_factory: sessionmaker[Session], buyer: Buyer
) -> None:
    policy = payouts.RunPolicy(
        provider="sandbox", minimum_payout=0, approval_threshold=10**12, fee_per_payout=0
    )
    earn(pg_factory, buyer, make_worker(pg_factory, buyer), 50_000)
    assert run(pg_factory, buyer, policy).count == 1  # her earnings account is now all held
    earn(pg_factory, buyer, make_worker(pg_factory, buyer), 10_000)
    assert [p.amount for p in run(pg_factory, buyer, policy).payouts] == [10_000]


def test_a_timeout_that_paid_is_resolved_by_status_never_by_a_second_instruction(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 80_000)
    payout = run(pg_factory, buyer).payouts[0]
    sandbox.set_faults(timeout_paid=1.0, stall_seconds=3)
    assert dispatcher.dispatch(payout.id) is PayoutStatus.UNKNOWN
    sandbox.set_faults()
    assert dispatcher.dispatch(payout.id) is PayoutStatus.UNKNOWN  # dispatching again sends nothing
    assert dispatcher.resolve(payout.id) is PayoutStatus.SUCCEEDED
    [record] = paid_at_sandbox(sandbox, key_of(pg_factory, payout.id))
    assert record["received_count"] == 1


def test_a_timeout_that_never_arrived_is_resent_with_the_same_key(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 70_000)
    payout = run(pg_factory, buyer).payouts[0]
    sandbox.set_faults(timeout_unpaid=1.0, stall_seconds=3)
    assert dispatcher.dispatch(payout.id) is PayoutStatus.UNKNOWN
    sandbox.set_faults()
    assert dispatcher.resolve(payout.id) is PayoutStatus.SUBMITTED
    dispatcher.dispatch(payout.id)
    assert dispatcher.resolve(payout.id) is PayoutStatus.SUCCEEDED
    records = paid_at_sandbox(sandbox, key_of(pg_factory, payout.id))
    assert len(records) == 1
    assert earned(pg_factory, buyer, worker) == 0


def test_a_5xx_leaves_the_outcome_unknown_not_failed(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 60_000)
    payout = run(pg_factory, buyer).payouts[0]
    sandbox.set_faults(error_5xx_paid=1.0)
    assert dispatcher.dispatch(payout.id) is PayoutStatus.UNKNOWN
    sandbox.set_faults()
    assert dispatcher.resolve(payout.id) is PayoutStatus.SUCCEEDED


def test_429_is_retried_later_with_the_same_key(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 40_000)
    payout = run(pg_factory, buyer).payouts[0]
    sandbox.set_faults(rate_limit=1.0)
    assert dispatcher.dispatch(payout.id) is PayoutStatus.SUBMITTED
    sandbox.set_faults()
    time.sleep(1.1)  # the sandbox asked for Retry-After: 1
    dispatcher.dispatch(payout.id)
    assert dispatcher.resolve(payout.id) is PayoutStatus.SUCCEEDED
    assert len(paid_at_sandbox(sandbox, key_of(pg_factory, payout.id))) == 1


def test_a_payout_beyond_an_unregistered_wallets_limit_fails_before_sending_and_stays_owed(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 2_500_000)
    payout = run(pg_factory, buyer).payouts[0]
    assert dispatcher.dispatch(payout.id) is PayoutStatus.FAILED
    with pg_factory() as s:
        failed = payouts.get(s, principal=buyer.principal, payout_id=payout.id)
        assert failed.failure_code == "limit_exceeded"
        assert reports.check_integrity(s) == []
    assert earned(pg_factory, buyer, worker) == 2_500_000
    assert paid_at_sandbox(sandbox, key_of(pg_factory, payout.id)) == []


def test_once_her_wallet_is_registered_the_next_run_pays_what_the_limit_refused(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 2_500_000)
    assert dispatcher.dispatch(run(pg_factory, buyer).payouts[0].id) is PayoutStatus.FAILED
    with atomic(pg_factory) as s:  # she upgrades at her provider, and shows the buyer
        parties.set_wallet_registered(s, principal=buyer.principal, homeworker_id=worker, registered=True)
        sealed = s.execute(
            select(HomeworkerRow.wallet_account_enc).where(HomeworkerRow.id == worker)
        ).scalar_one()
    wallet = {
        "account": pii.decrypt(KEYRING, sealed, context="homeworker.wallet"),
        "holder_name": "Siti Aminah",
    }
    requests.post(
        f"{sandbox.url}/v1/wallets", json={**wallet, "registered": True}, timeout=5
    ).raise_for_status()
    payout = run(pg_factory, buyer).payouts[0]
    assert payout.amount == 2_500_000
    dispatcher.dispatch(payout.id)
    assert dispatcher.resolve(payout.id) is PayoutStatus.SUCCEEDED
    assert earned(pg_factory, buyer, worker) == 0


def test_a_provider_side_wallet_limit_failure_returns_the_money(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 1_500_000)
    first = run(pg_factory, buyer).payouts[0]
    dispatcher.dispatch(first.id)
    assert dispatcher.resolve(first.id) is PayoutStatus.SUCCEEDED
    earn(pg_factory, buyer, worker, 900_000)  # 1.5m + 0.9m would pass the Rp 2m limit at the wallet
    second = run(pg_factory, buyer).payouts[0]
    dispatcher.dispatch(second.id)
    assert dispatcher.resolve(second.id) is PayoutStatus.FAILED
    assert earned(pg_factory, buyer, worker) == 900_000
    with pg_factory() as s:
        assert reports.check_integrity(s) == []


def test_an_invalid_wallet_fails_the_pre_send_check(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 30_000)
    payout = run(pg_factory, buyer).payouts[0]
    with pg_factory() as s:
        from payments.pii import decrypt
        from payments.tables import PayoutRow

        account = decrypt(KEYRING, s.get_one(PayoutRow, payout.id).account_enc, context="homeworker.wallet")
    sandbox.set_faults(invalid_accounts=[account])
    assert dispatcher.dispatch(payout.id) is PayoutStatus.FAILED
    assert earned(pg_factory, buyer, worker) == 30_000


def test_a_run_above_the_threshold_waits_for_a_second_key(
    pg_factory: sessionmaker[Session], buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 30_000)
    policy = payouts.RunPolicy(
        provider="sandbox", minimum_payout=1_000, approval_threshold=10_000, fee_per_payout=0
    )
    waiting = run(pg_factory, buyer, policy)
    assert waiting.status is RunStatus.AWAITING_APPROVAL
    from payments.errors import Forbidden

    with pytest.raises(Forbidden), atomic(pg_factory) as s:
        payouts.approve_run(s, principal=buyer.principal, run_id=waiting.id, now=datetime.now(UTC))
    with atomic(pg_factory) as s:
        approved = payouts.approve_run(s, principal=buyer.checker, run_id=waiting.id, now=datetime.now(UTC))
    assert approved.status is RunStatus.DISPATCHING


def test_an_unapproved_run_is_not_dispatched(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 30_000)
    policy = payouts.RunPolicy(
        provider="sandbox", minimum_payout=1_000, approval_threshold=10_000, fee_per_payout=0
    )
    waiting = run(pg_factory, buyer, policy)
    assert dispatcher.dispatch(waiting.payouts[0].id) is PayoutStatus.CREATED


def unknown_payout(
    factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> payouts.Payout:
    """A Rp 20,000 payout whose send timed out (the provider paid it): its outcome is unknown."""
    worker = make_worker(factory, buyer)
    earn(factory, buyer, worker, 20_000)
    payout = run(factory, buyer).payouts[0]
    sandbox.set_faults(timeout_paid=1.0, stall_seconds=3)
    dispatcher.dispatch(payout.id)
    return payout


def paid_callback(
    factory: sessionmaker[Session], payout: payouts.Payout, event: str
) -> tuple[dict[str, str], bytes]:
    return signed(callback_body(payout.id, key_of(factory, payout.id), "succeeded", payout.amount, event))


def test_a_callback_settles_an_unknown_payout_and_its_duplicate_changes_nothing(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    payout = unknown_payout(pg_factory, dispatcher, sandbox, buyer)
    headers, raw = paid_callback(pg_factory, payout, "evt-1")
    assert deliver_callback(dispatcher, "sandbox", headers=headers, body=raw) == "applied"
    assert deliver_callback(dispatcher, "sandbox", headers=headers, body=raw) == "duplicate"
    with pg_factory() as s:
        assert payouts.get(s, principal=buyer.principal, payout_id=payout.id).status is PayoutStatus.SUCCEEDED
        assert reports.check_integrity(s) == []


def pending_callbacks(factory: sessionmaker[Session]) -> list[str]:
    with factory() as s:
        return list(
            s.execute(
                select(ProviderCallbackRow.event_id).where(ProviderCallbackRow.outcome == CALLBACK_PENDING)
            ).scalars()
        )


def test_a_recorded_callback_changes_nothing_until_a_worker_applies_it(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    payout = unknown_payout(pg_factory, dispatcher, sandbox, buyer)
    event = f"evt-{payout.id}-recorded"
    headers, raw = paid_callback(pg_factory, payout, event)
    recorded = dispatcher.record_callback("sandbox", headers=headers, body=raw)
    assert recorded is not None and event in pending_callbacks(pg_factory)
    with pg_factory() as s:
        assert payouts.get(s, principal=buyer.principal, payout_id=payout.id).status is PayoutStatus.UNKNOWN
        queued = select(OutboxRow.payload).where(OutboxRow.topic == outbox.APPLY_CALLBACK)
        assert {"callback_id": recorded} in list(s.execute(queued).scalars())
    assert dispatcher.apply_callback(recorded) == "applied"
    assert event not in pending_callbacks(pg_factory)
    with pg_factory() as s:
        assert payouts.get(s, principal=buyer.principal, payout_id=payout.id).status is PayoutStatus.SUCCEEDED


def test_a_callback_applied_twice_settles_its_payout_once(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    payout = unknown_payout(pg_factory, dispatcher, sandbox, buyer)
    headers, raw = paid_callback(pg_factory, payout, f"evt-{payout.id}-twice")
    recorded = dispatcher.record_callback("sandbox", headers=headers, body=raw)
    assert recorded is not None
    assert dispatcher.apply_callback(recorded) == "applied"
    count_entries = select(func.count()).select_from(EntryRow)
    count_events = select(func.count()).where(PayoutEventRow.payout_id == payout.id)
    with pg_factory() as s:
        entries, events = s.execute(count_entries).scalar_one(), s.execute(count_events).scalar_one()
    assert dispatcher.apply_callback(recorded) == "applied"  # a task delivered again
    with pg_factory() as s:
        assert s.execute(count_entries).scalar_one() == entries
        assert s.execute(count_events).scalar_one() == events
        assert reports.check_integrity(s) == []


def test_the_sweep_finds_a_callback_left_unapplied_only_once_it_is_stale(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher
) -> None:
    headers, raw = signed(callback_body(0, "no-such-key", "succeeded", 5_000, "evt-left-unapplied"))
    recorded = dispatcher.record_callback("sandbox", headers=headers, body=raw)
    assert recorded is not None
    assert recorded not in dispatcher.unapplied_callbacks()
    later = replace(dispatcher, clock=lambda: datetime.now(UTC) + dispatcher.stale_after)
    assert recorded in later.unapplied_callbacks()
    assert dispatcher.apply_callback(recorded) == "unknown_payout"
    assert recorded not in later.unapplied_callbacks()


def test_a_callback_is_recorded_with_the_one_message_that_applies_it_and_a_repeat_writes_neither(
    factory: sessionmaker[Session],
) -> None:
    provider = SandboxProvider("http://127.0.0.1:9", SANDBOX_SECRET)  # never called: recording is local
    receiving = Dispatcher(
        sessions=factory, providers={"sandbox": provider}, keyring=KEYRING, clock=lambda: datetime.now(UTC)
    )
    event = f"evt-recorded-{time.time_ns()}"
    headers, raw = signed(callback_body(0, "no-such-key", "succeeded", 5_000, event))
    first = receiving.record_callback("sandbox", headers=headers, body=raw)
    again = receiving.record_callback("sandbox", headers=headers, body=raw)
    assert first is not None and again is None
    with factory() as s:
        [row] = s.execute(select(ProviderCallbackRow).where(ProviderCallbackRow.event_id == event)).scalars()
        messages = s.execute(
            select(OutboxRow.topic, OutboxRow.available_at).where(OutboxRow.payload == {"callback_id": first})
        ).all()
    assert (row.id, row.outcome, row.status, row.payout_id) == (first, CALLBACK_PENDING, "succeeded", None)
    assert row.payload["idempotency_key"] == "no-such-key"
    assert [m.topic for m in messages] == [outbox.APPLY_CALLBACK]
    assert messages[0].available_at == row.received_at


def test_a_callback_with_a_bad_signature_is_refused_and_not_recorded(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher
) -> None:
    raw = json.dumps(callback_body(0, "no-such-key", "succeeded", 5_000, "evt-forged")).encode()
    with pytest.raises(InvalidCallback):
        dispatcher.record_callback("sandbox", headers={"X-Sandbox-Signature": "t=1,v1=00"}, body=raw)
    with pg_factory() as s:
        forged = select(ProviderCallbackRow).where(ProviderCallbackRow.event_id == "evt-forged")
        assert s.execute(forged).first() is None


def test_a_callback_for_an_unknown_payout_is_recorded_not_dropped(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher
) -> None:
    headers, raw = signed(callback_body(0, "no-such-key", "succeeded", 5_000, "evt-stranger"))
    assert deliver_callback(dispatcher, "sandbox", headers=headers, body=raw) == "unknown_payout"
    with pg_factory() as s:
        row = s.execute(
            select(ProviderCallbackRow).where(ProviderCallbackRow.event_id == "evt-stranger")
        ).scalar_one()
        assert row.outcome == "unknown_payout"


def test_a_success_callback_after_a_failure_holds_the_amount_so_no_later_run_pays_it_twice(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    payout = failed_then_paid(pg_factory, dispatcher, buyer, worker)
    headers, raw = signed(
        callback_body(payout.id, key_of(pg_factory, payout.id), "succeeded", 50_000, f"evt-ok-{payout.id}")
    )
    assert deliver_callback(dispatcher, "sandbox", headers=headers, body=raw) == "conflict"
    assert earned(pg_factory, buyer, worker) == 0
    assert run(pg_factory, buyer).count == 0
    with pg_factory() as s:
        found = payouts.get(s, principal=buyer.principal, payout_id=payout.id)
        assert found.status is PayoutStatus.FAILED
        hold = journal.find_hold_by_key(s, f"payout:{payout.id}:conflict")
        assert hold is not None and hold.amount == 50_000
        assert reports.check_integrity(s) == []


def test_a_status_answer_of_success_for_a_payout_failed_meanwhile_holds_the_amount(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    """The status query went out while the payout was submitted; a failure callback was
    applied before its answer (succeeded) came back to be applied."""
    worker = make_worker(pg_factory, buyer)
    payout = failed_then_paid(pg_factory, dispatcher, buyer, worker)
    answer = TransferResult(TransferStatus.SUCCEEDED, f"sbx-{payout.id}", raw_status="succeeded")
    assert dispatcher._apply(payout.id, answer, source="status") is PayoutStatus.FAILED
    assert earned(pg_factory, buyer, worker) == 0
    assert run(pg_factory, buyer).count == 0
    with pg_factory() as s:
        assert reports.check_integrity(s) == []


def test_a_success_after_a_failure_whose_money_is_already_held_again_is_only_recorded(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    payout = failed_then_paid(pg_factory, dispatcher, buyer, worker)
    assert run(pg_factory, buyer).count == 1  # a new payout holds the returned money
    headers, raw = signed(
        callback_body(payout.id, key_of(pg_factory, payout.id), "succeeded", 50_000, f"evt-ok-{payout.id}")
    )
    assert deliver_callback(dispatcher, "sandbox", headers=headers, body=raw) == "conflict"
    with pg_factory() as s:
        assert journal.find_hold_by_key(s, f"payout:{payout.id}:conflict") is None
        assert reports.check_integrity(s) == []


def test_a_stale_pending_callback_after_success_changes_nothing(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 20_000)
    payout = run(pg_factory, buyer).payouts[0]
    dispatcher.dispatch(payout.id)
    dispatcher.resolve(payout.id)
    headers, raw = signed(
        callback_body(payout.id, key_of(pg_factory, payout.id), "failed", 20_000, "evt-late")
    )
    assert deliver_callback(dispatcher, "sandbox", headers=headers, body=raw) == "out_of_order"
    with pg_factory() as s:
        assert payouts.get(s, principal=buyer.principal, payout_id=payout.id).status is PayoutStatus.SUCCEEDED


def test_a_later_reversal_owes_her_the_money_again(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 20_000)
    payout = run(pg_factory, buyer).payouts[0]
    dispatcher.dispatch(payout.id)
    dispatcher.resolve(payout.id)
    headers, raw = signed(
        callback_body(payout.id, key_of(pg_factory, payout.id), "reversed", 20_000, "evt-rev")
    )
    assert deliver_callback(dispatcher, "sandbox", headers=headers, body=raw) == "applied"
    assert earned(pg_factory, buyer, worker) == 20_000
    with pg_factory() as s:
        assert reports.check_integrity(s) == []


def test_each_outcome_queues_an_sms_notice(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    worker = make_worker(pg_factory, buyer)
    earn(pg_factory, buyer, worker, 20_000)
    payout = run(pg_factory, buyer).payouts[0]
    dispatcher.dispatch(payout.id)
    dispatcher.resolve(payout.id)
    sent: list[outbox.Message] = []
    with atomic(pg_factory) as s:
        outbox.relay(s, send=sent.append, now=datetime.now(UTC), limit=10_000)
    assert {"kind": "payout_succeeded", "payout_id": payout.id} in [m.payload for m in sent]


def test_a_batch_is_submitted_together_sent_concurrently_and_each_answer_applied(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, sandbox: LiveSandbox, buyer: Buyer
) -> None:
    workers = [make_worker(pg_factory, buyer) for _ in range(5)]
    for i, worker in enumerate(workers):
        earn(pg_factory, buyer, worker, 2_500_000 if i == 0 else 10_000 + i)
    first = run(pg_factory, buyer)
    # wallets are checked with the provider before their first payout; do it once, one by one
    statuses = dispatcher.dispatch_many([p.id for p in first.payouts])
    assert sorted(s.value for s in statuses.values()) == [
        "failed",
        "submitted",
        "submitted",
        "submitted",
        "submitted",
    ]
    for worker in workers[1:]:
        earn(pg_factory, buyer, worker, 5_000)
    second = run(pg_factory, buyer)
    sandbox.set_faults(timeout_paid=1.0, stall_seconds=3)
    statuses = dispatcher.dispatch_many([p.id for p in second.payouts])
    ordinary = [p for p in second.payouts if p.homeworker_id != workers[0]]
    assert {statuses[p.id] for p in ordinary} == {PayoutStatus.UNKNOWN}  # over her wallet's limit again
    sandbox.set_faults()
    for payout in [*first.payouts, *second.payouts]:
        dispatcher.resolve(payout.id)
    with pg_factory() as s:
        done = [payouts.get(s, principal=buyer.principal, payout_id=p.id).status for p in ordinary]
        assert done == [PayoutStatus.SUCCEEDED] * 4
        assert reports.check_integrity(s) == []
    for payout in ordinary:
        assert len(paid_at_sandbox(sandbox, key_of(pg_factory, payout.id))) == 1


def test_a_batchs_accepted_payouts_get_one_status_check_which_skips_the_settled(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer
) -> None:
    workers = [make_worker(pg_factory, buyer) for _ in range(3)]
    for i, worker in enumerate(workers):
        earn(pg_factory, buyer, worker, 10_000 + i)
    ids = [p.id for p in run(pg_factory, buyer).payouts]
    for payout_id in ids:  # each wallet checked once, before its first payout
        dispatcher.dispatch(payout_id)
    for worker in workers:
        earn(pg_factory, buyer, worker, 5_000)
    second = [p.id for p in run(pg_factory, buyer).payouts]
    assert set(dispatcher.dispatch_many(second).values()) == {PayoutStatus.SUBMITTED}
    sent: list[outbox.Message] = []
    with atomic(pg_factory) as s:  # the check is due later: nothing now
        outbox.relay(s, send=sent.append, now=datetime.now(UTC), limit=10_000)
    with atomic(pg_factory) as s:
        outbox.relay(s, send=sent.append, now=datetime.now(UTC) + FIRST_POLL * 10, limit=10_000)
    checks = [
        m.payload
        for m in sent
        if m.topic == outbox.RESOLVE_BATCH and set(m.payload["payout_ids"]) & set(second)
    ]
    assert checks == [{"payout_ids": sorted(second)}]
    assert dispatcher.resolve(second[0]) is PayoutStatus.SUCCEEDED
    resolved = dispatcher.resolve_many(second)
    assert resolved == dict.fromkeys(second[1:], PayoutStatus.SUCCEEDED)


def _run_of_two(pg_factory: sessionmaker[Session], buyer: Buyer) -> payouts.PayoutRun:
    for amount in (30_000, 40_000):
        earn(pg_factory, buyer, make_worker(pg_factory, buyer), amount)
    return run(pg_factory, buyer)


def _pay(dispatcher: Dispatcher, payout_id: int) -> None:
    assert dispatcher.dispatch(payout_id) in (PayoutStatus.SUBMITTED, PayoutStatus.SUCCEEDED)
    assert dispatcher.resolve(payout_id) is PayoutStatus.SUCCEEDED


def test_a_run_whose_last_settlements_raced_is_completed_by_the_sweep(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer
) -> None:
    the_run = _run_of_two(pg_factory, buyer)
    for payout in the_run.payouts:
        _pay(dispatcher, payout.id)
    with atomic(pg_factory) as s:  # as if each settlement had still seen the other's payout open
        s.execute(
            update(PayoutRunRow)
            .where(PayoutRunRow.id == the_run.id)
            .values(status=RunStatus.DISPATCHING.value, completed_at=None)
        )
    assert dispatcher.complete_runs() >= 1
    with pg_factory() as s:
        assert payouts.get_run(s, principal=buyer.principal, run_id=the_run.id).status is RunStatus.COMPLETED


def test_the_sweep_leaves_a_run_with_an_open_payout_dispatching(
    pg_factory: sessionmaker[Session], dispatcher: Dispatcher, buyer: Buyer
) -> None:
    the_run = _run_of_two(pg_factory, buyer)
    _pay(dispatcher, the_run.payouts[0].id)
    dispatcher.complete_runs()
    with pg_factory() as s:
        assert (
            payouts.get_run(s, principal=buyer.principal, run_id=the_run.id).status is RunStatus.DISPATCHING
        )
