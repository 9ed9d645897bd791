"""Payouts through a real Celery worker on Redis, to the sandbox provider over HTTP — exactly
once, even with faults injected and the worker killed with SIGKILL mid-run."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ledger import atomic, journal, reports
from payments import deliveries, orders, parties, payouts, pii, rates
from payments.dispatch import CALLBACK_PENDING
from payments.payout_states import PayoutStatus
from payments.tables import PayoutEventRow, PayoutRow, ProviderCallbackRow
from tests.payments.scenario import Buyer, make_buyer, make_worker
from tests.workers.conftest import Stack

TERMINAL = {PayoutStatus.SUCCEEDED.value, PayoutStatus.FAILED.value, PayoutStatus.REVERSED.value}


def bulk_earnings(
    factory: sessionmaker[Session], buyer: Buyer, workers: list[int], amounts: list[int]
) -> None:
    """One order for everyone, each delivery confirmed: she is owed ``amount`` (Rp 1 a piece)."""
    now = datetime.now(UTC)
    with atomic(factory) as s:
        order = orders.post(
            s,
            principal=buyer.principal,
            reference=f"bulk-{now.timestamp()}",
            product="bulk",
            rate=Decimal(1),
            unit=rates.Unit.PIECE,
            minutes_per_piece=Decimal("0.01"),
            quantity=sum(amounts),
            deadline=(now + timedelta(days=7)).date(),
            region="ID-JK",
            intermediary_id=None,
            commission=None,
            assignments=[orders.AssignmentRequest(w, a) for w, a in zip(workers, amounts, strict=True)],
            policy=rates.FairRatePolicy.OFF,
            now=now,
        )
        for worker, amount in zip(workers, amounts, strict=True):
            d = deliveries.record(
                s, principal=buyer.principal, order_id=order.id, homeworker_id=worker, pieces=amount, now=now
            )
            deliveries.confirm(
                s,
                principal=buyer.principal,
                delivery_id=d.id,
                accepted=amount,
                rejected=0,
                reason=None,
                now=now,
            )


def statuses(factory: sessionmaker[Session], run_id: int) -> Counter[str]:
    with factory() as s:
        rows = s.execute(
            select(PayoutRow.status, func.count())
            .where(PayoutRow.run_id == run_id)
            .group_by(PayoutRow.status)
        )
        return Counter(dict(rows.all()))


def wait_until(predicate: object, *, timeout: float, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out; worker log:\n{stack.worker_log()}")


def start_run(
    stack: Stack, factory: sessionmaker[Session], count: int, amount_of: object
) -> tuple[Buyer, list[int], dict[int, int], int]:
    keyring = pii.Keyring.from_string(stack.env["UPAH_SECRET_KEYS"])
    buyer = make_buyer(factory, funds=10**12)
    workers = [make_worker(factory, buyer, keyring=keyring) for _ in range(count)]
    amounts = [amount_of(i) for i in range(count)]  # type: ignore[operator]
    bulk_earnings(factory, buyer, workers, amounts)
    policy = payouts.RunPolicy(
        provider="sandbox", minimum_payout=1, approval_threshold=10**15, fee_per_payout=1_000
    )
    with atomic(factory) as s:
        the_run = payouts.create_run(s, principal=buyer.principal, policy=policy, now=datetime.now(UTC))
    return buyer, workers, dict(zip(workers, amounts, strict=True)), the_run.id


def test_a_worker_pays_a_small_run(stack: Stack, pg_factory: sessionmaker[Session]) -> None:
    stack.start_worker(concurrency=2)
    buyer, workers, owed, run_id = start_run(stack, pg_factory, 3, lambda i: 10_000 + i)
    wait_until(lambda: statuses(pg_factory, run_id).get("succeeded") == 3, timeout=60, stack=stack)
    paid = {p["idempotency_key"]: p for p in stack.sandbox.get("/v1/payouts").json()["payouts"]}
    with pg_factory() as s:
        for row in s.execute(select(PayoutRow).where(PayoutRow.run_id == run_id)).scalars():
            assert paid[row.idempotency_key]["amount"] == owed[row.homeworker_id]
        assert reports.check_integrity(s) == []
    del buyer, workers


@pytest.mark.slow
def test_five_hundred_payouts_survive_faults_and_two_sigkills_exactly_once(
    stack: Stack, pg_factory: sessionmaker[Session]
) -> None:
    stack.sandbox.set_faults(
        timeout_paid=0.03,
        timeout_unpaid=0.03,
        error_5xx=0.03,
        error_5xx_paid=0.03,
        rate_limit=0.04,
        duplicate_callback=0.03,
        out_of_order_callback=0.03,
        reverse=0.01,
        reverse_after_seconds=0.5,
        seed=20261122,
    )
    # a few wallets over the unregistered limit fail definitively; the rest are ordinary amounts
    buyer, workers, owed, run_id = start_run(
        stack, pg_factory, 500, lambda i: 2_100_000 if i % 100 == 7 else 25_000 + 37 * i
    )
    stack.start_worker()
    for kill_after in (120, 280):
        wait_until(
            lambda n=kill_after: sum(statuses(pg_factory, run_id)[s] for s in TERMINAL) >= n,
            timeout=240,
            stack=stack,
        )
        stack.kill_worker()
        stack.start_worker()
    wait_until(
        lambda: sum(statuses(pg_factory, run_id)[s] for s in TERMINAL) == 500, timeout=300, stack=stack
    )
    time.sleep(1.5)  # let late reversals arrive
    wait_until(lambda: sum(statuses(pg_factory, run_id)[s] for s in TERMINAL) == 500, timeout=60, stack=stack)

    record = stack.sandbox.get("/v1/payouts").json()
    at_provider = {p["idempotency_key"]: p for p in record["payouts"]}
    assert record["summary"]["references_paid_more_than_once"] == []
    with pg_factory() as s:
        rows = s.execute(select(PayoutRow).where(PayoutRow.run_id == run_id)).scalars().all()
        assert len(rows) == 500
        assert len({r.homeworker_id for r in rows}) == 500
        for row in rows:
            provider = at_provider.get(row.idempotency_key)
            if row.status == PayoutStatus.SUCCEEDED.value:
                assert (
                    provider is not None
                    and provider["paid"]
                    and provider["amount"] == owed[row.homeworker_id]
                )
            elif row.status == PayoutStatus.FAILED.value:
                assert provider is None or not provider["ever_paid"], row.idempotency_key
            else:
                assert provider is not None and provider["status"] == "reversed"
            accounts = parties.earnings_accounts(s, homeworker_id=row.homeworker_id)
            still_owed = sum(journal.balance(s, a).posted for a in accounts.values())
            paid = row.amount if row.status == PayoutStatus.SUCCEEDED.value else 0
            assert still_owed + paid == owed[row.homeworker_id]
        assert reports.check_integrity(s) == []
    assert Counter(r.status for r in rows)["failed"] >= 5
    delivered = {
        c["event_id"] for c in stack.sandbox.get("/v1/callbacks").json()["callbacks"] if c["deliveries"]
    }

    def unapplied() -> set[str]:
        """Delivered callbacks not recorded, or recorded and not applied yet."""
        with pg_factory() as s:
            applied = s.execute(
                select(ProviderCallbackRow.event_id).where(
                    ProviderCallbackRow.event_id.in_(delivered),
                    ProviderCallbackRow.outcome != CALLBACK_PENDING,
                )
            )
            return delivered - set(applied.scalars())

    assert len(delivered) >= 450  # the provider reported on (nearly) every payout it received
    wait_until(lambda: not unapplied(), timeout=60, stack=stack)  # every callback applied, each once
    with pg_factory() as s:
        went_unknown = s.execute(
            select(func.count(func.distinct(PayoutEventRow.payout_id))).where(
                PayoutEventRow.to_status == "unknown"
            )
        ).scalar_one()
    assert went_unknown >= 10  # the faults really happened, and were resolved by status, not resent blindly
    with pg_factory() as s:
        submitted_twice = s.execute(
            select(func.count()).select_from(
                select(PayoutEventRow.payout_id)
                .where(PayoutEventRow.to_status == "submitted")
                .group_by(PayoutEventRow.payout_id)
                .having(func.count() > 1)
                .subquery()
            )
        ).scalar_one()
    assert submitted_twice >= 1  # instructions the provider never got were sent again, under their one key
    del buyer, workers
